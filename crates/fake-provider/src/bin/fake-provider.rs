//! `fake-provider [--listen ADDR]`: runs the fake LLM provider (see
//! `floopy_fake_provider`) until killed.
//!
//! Prints exactly one line, `fake-provider listening on <ADDR>`, once the socket is bound, so
//! scripts can wait for it and learn the real port when `ADDR` uses port 0.

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use floopy_fake_provider::{serve, FakeProviderStats};
use tokio::net::TcpListener;

/// A fake OpenAI/Anthropic provider for tests, benchmarks and the quick start.
/// Request headers steer its answers (see the crate documentation).
#[derive(Parser)]
#[command(name = "fake-provider", version)]
struct Args {
    /// The address to listen on; port 0 picks a free port (printed).
    #[arg(long, default_value = "127.0.0.1:18090")]
    listen: SocketAddr,
}

fn announce(addr: SocketAddr) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "fake-provider listening on {addr}")?;
    // Whoever started us waits for this line, possibly through a pipe: do not leave it buffered.
    stdout.flush()
}

#[tokio::main]
async fn main() -> ExitCode {
    let Args { listen } = Args::parse();
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
