//! The floopy-gateway binary: command line, configuration, and the Pingora
//! server with its services. Wiring only.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use uuid::Uuid;

use floopy_gateway::admin::AdminApp;
use floopy_gateway::config::{self, Config, ControlSource, LogSinkConfig};
use floopy_gateway::control::cache::read_cache;
use floopy_gateway::control::postgres::{initial_load, ControlSync};
use floopy_gateway::fake_provider;
use floopy_gateway::limits::clock::SystemClock;
use floopy_gateway::limits::exchange::UsageExchange;
use floopy_gateway::limits::state::{sync_state, StateWriter};
use floopy_gateway::limits::Limiter;
use floopy_gateway::logs::file::FileSink;
use floopy_gateway::logs::kafka::KafkaSink;
use floopy_gateway::logs::LogSink;
use floopy_gateway::metrics::Metrics;
use floopy_gateway::model::ControlData;
use floopy_gateway::proxy::Gateway;
use floopy_gateway::reload::{install_sighup_handler, Reloader};
use floopy_gateway::snapshot::{ConfigParts, SnapshotStore};

const USAGE: &str = "usage: floopy-gateway [--config FILE] [--upgrade] [--daemon]
       floopy-gateway --check-config FILE [FILE...]
       floopy-gateway admin [--database-url URL] COMMAND ... (see: floopy-gateway admin help)

  --config FILE        the YAML configuration (default conf/gateway.yaml)
  --check-config FILE  validate configuration files and exit (non-zero on errors);
                       provider hosts are not resolved
  -u, --upgrade        take the listening sockets of a running gateway (graceful upgrade)
  -d, --daemon         run in the background";

struct Args {
    config: PathBuf,
    check: Vec<PathBuf>,
    upgrade: bool,
    daemon: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        config: PathBuf::from("conf/gateway.yaml"),
        check: Vec::new(),
        upgrade: false,
        daemon: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-c" | "--config" => {
                args.config = it.next().ok_or("--config needs a file")?.into();
            }
            "--check-config" => {
                args.check
                    .push(it.next().ok_or("--check-config needs a file")?.into());
                args.check.extend(it.by_ref().map(PathBuf::from));
            }
            "-u" | "--upgrade" => args.upgrade = true,
            "-d" | "--daemon" => args.daemon = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.first().is_some_and(|a| a == "admin") {
        return admin(&argv[1..]);
    }
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("floopy-gateway: {message}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    if !args.check.is_empty() {
        return check_configs(&args.check);
    }
    init_tracing();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floopy-gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn admin(args: &[String]) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("floopy-gateway admin: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(floopy_gateway::control::admin::run(args)) {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("floopy-gateway admin: {e}");
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(initial_load(postgres)) {
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

/// The exchange service, shared with `main` for the exchanges at start and
/// at shutdown.
struct SharedExchange(Arc<UsageExchange>);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for SharedExchange {
    async fn start(&self, shutdown: pingora::server::ShutdownWatch) {
        self.0.start(shutdown).await
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
    if std::env::var("FLOOPY_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
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

fn run(args: Args) -> anyhow::Result<()> {
    let config = config::load(&args.config).map_err(|errors| {
        anyhow::anyhow!("invalid configuration {}:\n{errors}", args.config.display())
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
    };

    // Month-to-date spend survives restarts through the state file.
    let limiter = Arc::new(Limiter::new(Arc::new(SystemClock)));
    if let ControlSource::File(_) = &config.control {
        sync_state(&config.state_file, &limiter).context("restoring month-to-date spend")?;
    }
    let state_writer = StateWriter {
        path: config.state_file.clone(),
        limiter: limiter.clone(),
    };
    // With a control database, spend and request counts are exchanged with
    // the other replicas through it (and kept there, not in the state file).
    let exchange = match &config.control {
        ControlSource::File(_) => None,
        ControlSource::Postgres(source) => Some(Arc::new(UsageExchange {
            url: source.url.clone(),
            replica: format!(
                "{}-{}",
                config.server.gateway_id,
                &Uuid::now_v7().simple().to_string()[20..]
            ),
            limiter: limiter.clone(),
            metrics: metrics.clone(),
            interval: config.exchange_interval,
        })),
    };
    if let Some(exchange) = &exchange {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(exchange.exchange_now());
    }

    let opt = Opt {
        upgrade: args.upgrade,
        daemon: args.daemon,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, server_conf(&config, args.daemon));
    server.bootstrap();

    let gateway = Gateway::new(
        store.clone(),
        limiter.clone(),
        sink.clone(),
        metrics.clone(),
    );
    let mut proxy = pingora_proxy::http_proxy_service_with_name(
        &server.configuration,
        gateway,
        "floopy-gateway",
    );
    proxy.add_tcp(&config.server.listen.to_string());
    server.add_service(proxy);

    let mut admin = Service::new(
        "floopy-admin".to_string(),
        AdminApp::new(
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
            config_path: args.config.clone(),
            store: store.clone(),
            metrics: metrics.clone(),
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
    match &exchange {
        Some(exchange) => {
            server.add_service(background_service(
                "usage-exchange",
                SharedExchange(exchange.clone()),
            ));
        }
        None => {
            server.add_service(background_service(
                "spend-state",
                StateWriter {
                    path: config.state_file.clone(),
                    limiter: limiter.clone(),
                },
            ));
        }
    }
    if let Some(listen) = config.fake_provider {
        server.add_service(background_service(
            "fake-provider",
            fake_provider::EmbeddedFakeProvider { listen },
        ));
    }

    tracing::info!(
        listen = %config.server.listen,
        admin = %config.server.admin_listen,
        gateway_id = %config.server.gateway_id,
        "floopy-gateway starting"
    );
    server.run(RunArgs::default());
    // The server has drained: write out every request log it accepted, and
    // the spend of the last requests.
    sink.shutdown();
    match &exchange {
        Some(exchange) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(exchange.exchange_now()),
        None => {
            state_writer.flush();
        }
    }
    tracing::info!("floopy-gateway stopped");
    Ok(())
}
