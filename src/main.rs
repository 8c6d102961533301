//! The floopy-gateway binary: command line, configuration, and the Pingora
//! server with its services. Wiring only.

#[global_allocator]
static ALLOCATOR: floopy_gateway::alloc::Allocator = floopy_gateway::alloc::Allocator;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use floopy_control_db::admin::AdminArgs;
use floopy_gateway::config::{self, Config, ControlSource, LogSinkConfig};
use floopy_gateway::control_source::cache::read_cache;
use floopy_gateway::control_source::sync::{initial_load, ControlSync};
use floopy_gateway::header_deadline::HeaderDeadline;
use floopy_gateway::health::HealthApp;
use floopy_gateway::limits::clock::SystemClock;
use floopy_gateway::limits::persistence::SpendPersistence;
use floopy_gateway::limits::Limiter;
use floopy_gateway::logs::clickhouse::ClickHouseSink;
use floopy_gateway::logs::file::FileSink;
use floopy_gateway::logs::kafka::KafkaSink;
use floopy_gateway::logs::LogSink;
use floopy_gateway::metrics::Metrics;
use floopy_gateway::proxy::Gateway;
use floopy_gateway::reload::{install_sighup_handler, Reloader, RunningTls};
use floopy_gateway::snapshot::{ConfigParts, SnapshotStore};
use floopy_gateway::tls::{CertificateSet, CertificateWatch, Certificates};
use floopy_model::ControlData;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// floopy-gateway: an LLM API gateway. Authenticates every request by its
/// API key, attributes it to a project, enforces its environment's limits,
/// forwards it to the provider of its model, prices and logs it.
#[derive(Debug, Parser)]
#[command(
    name = "floopy-gateway",
    version,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// The YAML configuration.
    #[arg(short, long, value_name = "FILE", default_value = "conf/gateway.yaml")]
    config: PathBuf,
    /// Validate configuration files and exit (non-zero on errors); provider
    /// hosts are not resolved.
    #[arg(long, value_name = "FILE", num_args = 1.., conflicts_with_all = ["upgrade", "daemon"])]
    check_config: Vec<PathBuf>,
    /// Take the listening sockets of a running gateway (graceful upgrade).
    #[arg(short, long)]
    upgrade: bool,
    /// Run in the background.
    #[arg(short, long)]
    daemon: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage the control database without SQL (orgs, projects, keys, limits).
    Admin(AdminArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Admin(args)) = cli.command {
        return admin(args);
    }
    if !cli.check_config.is_empty() {
        return check_configs(&cli.check_config);
    }
    init_tracing();
    floopy_gateway::timeline::init_from_env();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floopy-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A runtime for the few things done outside Pingora's services: before the
/// server starts (first load, spend restore) and after it stopped (the last
/// save), and the admin command.
fn block_on<F: std::future::Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a tokio runtime")?;
    Ok(runtime.block_on(future))
}

fn admin(args: AdminArgs) -> ExitCode {
    match block_on(floopy_control_db::admin::run(args)) {
        Ok(Ok(output)) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("floopy-gateway admin: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("floopy-gateway admin: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The control data to start with: the file's, or the control database's
/// (falling back to the cache file when the database is unreachable).
fn initial_control_data(source: &ControlSource) -> anyhow::Result<ControlData> {
    let postgres = match source {
        ControlSource::File(data) => return Ok(data.clone()),
        ControlSource::Postgres(postgres) => postgres,
    };
    match block_on(initial_load(postgres))? {
        Ok(data) => Ok(data),
        Err(e) => match &postgres.cache_file {
            Some(path) => {
                let data = read_cache(path).map_err(|cache| {
                    anyhow::anyhow!("{e}; and the cache file cannot be used: {cache}")
                })?;
                tracing::warn!(error = %e, cache = %path.display(), "control database unreachable at start; serving the cached control data until it is back");
                Ok(data)
            }
            None => Err(anyhow::anyhow!(
                "{e} (configure control.cache_file to start from the last known data when the database is down)"
            )),
        },
    }
}

fn check_configs(paths: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for path in paths {
        match config::load_with(path, config::Resolve::Skip) {
            Ok(_) => println!("{}: ok", path.display()),
            Err(errors) => {
                ok = false;
                for e in &errors.0 {
                    eprintln!("{}: {e}", path.display());
                }
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn init_tracing() {
    // Pingora logs through `log`; tracing-subscriber bridges it.
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLOOPY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let failures = floopy_gateway::log_noise::HandshakeFailures::default();
    if std::env::var("FLOOPY_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().finish().with(failures).init();
    } else {
        // Colour only on a terminal: files and pipes get plain text.
        let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        builder.with_ansi(ansi).finish().with(failures).init();
    }
}

fn server_conf(config: &Config, daemon: bool) -> ServerConf {
    let mut conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(config.server.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(config.server.graceful_shutdown_timeout_seconds),
        daemon,
        ..ServerConf::default()
    };
    if let Some(pid_file) = &config.server.pid_file {
        conf.pid_file.clone_from(pid_file);
    }
    if let Some(sock) = &config.server.upgrade_sock {
        conf.upgrade_sock.clone_from(sock);
    }
    conf
}

/// The TLS listener on `proxy`: its certificates (read and checked again
/// here), OpenSSL settings and HTTP/2 stream cap.
fn start_tls(
    tls: &config::TlsConfig,
    proxy: &mut Service<HeaderDeadline<pingora_proxy::HttpProxy<Gateway>>>,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<RunningTls> {
    let set = CertificateSet::load(tls, floopy_gateway::tls::now_unix())
        .map_err(|errors| anyhow::anyhow!("{}", config::ConfigErrors(errors)))?;
    let certificates = Certificates::new(set, tls, metrics.clone());
    let settings = floopy_gateway::tls::settings(tls, certificates.clone())?;
    proxy.add_tls_with_settings(&tls.listen.to_string(), None, settings);
    Ok(RunningTls {
        certificates,
        config: Arc::new(arc_swap::ArcSwap::from_pointee(tls.clone())),
    })
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = config::load(&cli.config).map_err(|errors| {
        anyhow::anyhow!("invalid configuration {}:\n{errors}", cli.config.display())
    })?;
    install_sighup_handler().context("installing the SIGHUP handler")?;

    let metrics = Arc::new(Metrics::default());
    let data = initial_control_data(&config.control)?;
    let store = Arc::new(SnapshotStore::new(ConfigParts::from_config(&config), data));
    let sink: Arc<dyn LogSink> = match &config.log_sink {
        LogSinkConfig::File {
            path,
            queue_capacity,
        } => Arc::new(
            FileSink::open(path, *queue_capacity, metrics.clone())
                .with_context(|| format!("opening the request log {}", path.display()))?,
        ),
        LogSinkConfig::Kafka(kafka) => Arc::new(
            KafkaSink::start(kafka, metrics.clone())
                .map_err(|e| anyhow::anyhow!("starting the kafka sink: {e}"))?,
        ),
        LogSinkConfig::ClickHouse(clickhouse) => Arc::new(
            ClickHouseSink::start(clickhouse, metrics.clone())
                .map_err(|e| anyhow::anyhow!("starting the clickhouse sink: {e}"))?,
        ),
    };

    // Month-to-date spend survives restarts: in the state file, or (with a
    // control database) exchanged with the other replicas and kept there.
    let limiter = Arc::new(Limiter::new(Arc::new(SystemClock)));
    let spend = SpendPersistence::choose(&config, limiter.clone(), metrics.clone());
    block_on(spend.restore())?.context("restoring month-to-date spend")?;

    let opt = Opt {
        upgrade: cli.upgrade,
        daemon: cli.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf(&config, cli.daemon));
    server.bootstrap();

    let gateway = Gateway::new(
        store.clone(),
        limiter.clone(),
        sink.clone(),
        metrics.clone(),
    );
    let mut app = pingora_proxy::http_proxy(&server.configuration, gateway);
    if let Some(tls) = &config.server.tls {
        let mut h2 = pingora_core::protocols::http::v2::server::default_h2_options();
        h2.max_concurrent_streams(tls.max_concurrent_streams);
        app.h2_options = Some(h2);
    }
    let mut proxy = Service::new(
        "floopy-gateway".to_string(),
        HeaderDeadline::new(app, config.server.header_timeout, metrics.clone()),
    );
    if let Some(listen) = config.server.listen {
        proxy.add_tcp(&listen.to_string());
    }
    let tls = match &config.server.tls {
        Some(tls) => Some(start_tls(tls, &mut proxy, &metrics)?),
        None => None,
    };
    server.add_service(proxy);
    if let Some(running) = &tls {
        server.add_service(background_service(
            "tls-certificate-watch",
            CertificateWatch {
                certificates: running.certificates.clone(),
                config: running.config.clone(),
                interval: running.config.load().watch_interval,
            },
        ));
    }

    let mut admin = Service::new(
        "floopy-admin".to_string(),
        HealthApp::new(
            store.clone(),
            metrics.clone(),
            sink.clone(),
            match &config.control {
                ControlSource::File(_) => None,
                ControlSource::Postgres(p) => Some(p.max_staleness),
            },
        ),
    );
    admin.add_tcp(&config.server.admin_listen.to_string());
    server.add_service(admin);

    server.add_service(background_service(
        "config-reload",
        Reloader {
            config_path: cli.config.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
            started: Arc::new(config.clone()),
            tls,
        },
    ));
    if let ControlSource::Postgres(source) = &config.control {
        server.add_service(background_service(
            "control-sync",
            ControlSync {
                source: source.clone(),
                store: store.clone(),
                metrics: metrics.clone(),
            },
        ));
    }
    server.add_service(background_service(spend.service_name(), spend.clone()));

    tracing::info!(
        listen = ?config.server.listen,
        tls_listen = ?config.server.tls.as_ref().map(|t| t.listen),
        admin = %config.server.admin_listen,
        gateway_id = %config.server.gateway_id,
        "floopy-gateway starting"
    );
    server.run(RunArgs::default());
    // The server has drained: write out every request log it accepted, and
    // the spend of the last requests.
    sink.shutdown();
    block_on(spend.save())?;
    tracing::info!("floopy-gateway stopped");
    Ok(())
}
