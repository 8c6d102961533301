//! The floopy-control binary: command line and wiring only.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use floopy_control::app;
use floopy_control::auth::{check_password, hash_password};
use floopy_control::config;
use floopy_control::state::{self, AppState};
use floopy_control_db::tables::{members, orgs};
use floopy_control_db::Actor;
use floopy_model::validate::{check_length, NAME_CHARS};
use floopy_model::Plan;
use uuid::Uuid;

/// floopy-control: the management API of floopy (organizations, projects,
/// API keys, members, limits).
#[derive(Debug, Parser)]
#[command(name = "floopy-control", version)]
struct Cli {
    /// The YAML configuration.
    #[arg(
        short,
        long,
        value_name = "FILE",
        default_value = "conf/control/control.yaml",
        global = true
    )]
    config: PathBuf,
    /// Validate configuration files and exit (non-zero on errors); the same
    /// as the `check-config` command.
    #[arg(long, value_name = "FILE", num_args = 1..)]
    check_config: Vec<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Validate configuration files and exit (non-zero on errors).
    CheckConfig {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print the OpenAPI document of the API.
    Openapi,
    /// Create the first organization and its owner. The password is read
    /// from standard input (one line), never from the command line.
    Bootstrap {
        /// The organization's name.
        #[arg(long)]
        org_name: String,
        /// free, starter, pro or enterprise.
        #[arg(long, default_value = "free", value_parser = parse_plan)]
        plan: Plan,
        /// The owner's email (their login).
        #[arg(long)]
        email: String,
        /// The owner's display name.
        #[arg(long)]
        name: String,
    },
}

fn parse_plan(value: &str) -> Result<Plan, String> {
    Plan::parse(value)
        .ok_or_else(|| format!("{value:?} is not one of free, starter, pro, enterprise"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.check_config.is_empty() {
        return check_configs(&cli.check_config);
    }
    init_tracing();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig { files } => return check_configs(&files),
        Command::Openapi => {
            println!("{}", floopy_control::openapi::document());
            return ExitCode::SUCCESS;
        }
        Command::Serve => run(serve(cli.config)),
        Command::Bootstrap {
            org_name,
            plan,
            email,
            name,
        } => run(bootstrap(cli.config, org_name, plan, email, name)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("floopy-control: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(future: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?
        .block_on(future)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLOOPY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("FLOOPY_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        // Colour only on a terminal: files and pipes get plain text.
        let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        builder.with_ansi(ansi).init();
    }
}

fn check_configs(files: &[PathBuf]) -> ExitCode {
    let mut ok = true;
    for file in files {
        match config::load(file) {
            Ok(_) => println!("{}: ok", file.display()),
            Err(e) => {
                ok = false;
                eprintln!("{}: {e}", file.display());
            }
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Connects, migrates, and returns the state every handler shares.
async fn prepare(path: PathBuf) -> anyhow::Result<AppState> {
    let config = config::load(&path).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    let mut conn = config
        .db
        .connect("floopy-control", std::time::Duration::from_secs(5))
        .await?;
    floopy_control_db::migrate::migrate(&mut conn.client)
        .await
        .with_context(|| format!("migrating the control database {}", config.db.target()))?;
    let pool = state::pool(&config)?;
    let analytics = config
        .clickhouse
        .as_ref()
        .map(|ch| Arc::new(floopy_control::analytics::Analytics::new(ch)));
    Ok(AppState {
        pool,
        config: Arc::new(config),
        metrics: Arc::default(),
        analytics,
    })
}

async fn serve(path: PathBuf) -> anyhow::Result<()> {
    let state = prepare(path).await?;
    let listener = tokio::net::TcpListener::bind(state.config.listen)
        .await
        .with_context(|| format!("listening on {}", state.config.listen))?;
    // Scripts and tests wait for this line and read the real port from it.
    println!("floopy-control listening on {}", listener.local_addr()?);
    tracing::info!(listen = %listener.local_addr()?, "floopy-control serving");
    tokio::spawn(floopy_control::budgets::run(
        state.config.db.clone(),
        state.config.budget_evaluation,
    ));
    tokio::spawn(floopy_control::webhooks::run(
        state.config.db.clone(),
        state.config.delivery,
    ));
    if let (Some(analytics), Some(ch)) = (&state.analytics, &state.config.clickhouse) {
        tokio::spawn(floopy_control::rollup::run(
            state.config.db.clone(),
            analytics.clone(),
            ch.rollup_interval,
        ));
    }
    app::serve(listener, state).await?;
    tracing::info!("floopy-control stopped");
    Ok(())
}

async fn bootstrap(
    path: PathBuf,
    org_name: String,
    plan: Plan,
    email: String,
    name: String,
) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\n', '\r']).to_string();
    check_password(&password).map_err(|e| anyhow::anyhow!("the password {e}"))?;
    check_length(&org_name, NAME_CHARS).map_err(|e| anyhow::anyhow!("--org-name {e}"))?;
    check_length(&name, NAME_CHARS).map_err(|e| anyhow::anyhow!("--name {e}"))?;
    let email = email.trim().to_lowercase();
    let state = prepare(path).await?;
    let hash = hash_password(password)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut db = state.pool.get().await?;
    let tx = db.transaction().await?;
    let user = members::insert_user(&tx, &email, Some(&name), &hash)
        .await
        .with_context(|| format!("creating the user {email}"))?;
    let org = Uuid::now_v7();
    orgs::insert(&tx, Actor::person(org, user), org, &org_name, plan).await?;
    members::join_org(&tx, org, user, "owner").await?;
    tx.commit().await?;
    println!("org id:  {org}\nuser id: {user}");
    Ok(())
}
