//! `fake-provider [--listen ADDR]`: runs the fake LLM provider (see
//! `floopy_gateway::fake_provider`) until killed.
//!
//! Prints exactly one line, `fake-provider listening on <ADDR>`, once the socket is bound, so
//! scripts can wait for it and learn the real port when `ADDR` uses port 0.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use floopy_gateway::fake_provider::{serve, FakeProviderStats};
use tokio::net::TcpListener;

const USAGE: &str = "usage: fake-provider [--listen ADDR]   (default 127.0.0.1:18090)";

/// What the command line asks for.
enum Command {
    Serve(SocketAddr),
    Help,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 18090));
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--listen" => args
                .next()
                .ok_or_else(|| "--listen needs an address, e.g. 127.0.0.1:18090".to_owned())?,
            other => match other.strip_prefix("--listen=") {
                Some(value) => value.to_owned(),
                None => return Err(format!("unknown argument '{other}'")),
            },
        };
        listen = value
            .parse()
            .map_err(|_| format!("invalid --listen address '{value}': expected IP:PORT"))?;
    }
    Ok(Command::Serve(listen))
}

fn announce(addr: SocketAddr) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "fake-provider listening on {addr}")?;
    // Whoever started us waits for this line, possibly through a pipe: do not leave it buffered.
    stdout.flush()
}

#[tokio::main]
async fn main() -> ExitCode {
    let listen = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Serve(listen)) => listen,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("fake-provider: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("fake-provider: cannot listen on {listen}: {err}");
            return ExitCode::FAILURE;
        }
    };
    let bound = match listener.local_addr() {
        Ok(bound) => bound,
        Err(err) => {
            eprintln!("fake-provider: cannot read the bound address: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(err) = announce(bound) {
        eprintln!("fake-provider: cannot write to stdout: {err}");
        return ExitCode::FAILURE;
    }
    serve(listener, Arc::new(FakeProviderStats::default())).await;
    ExitCode::SUCCESS
}
