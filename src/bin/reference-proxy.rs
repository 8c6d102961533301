//! `reference-proxy --listen ADDR --upstream ADDR [--threads N]`: the minimal
//! Pingora proxy kept as the performance reference for the side-by-side
//! benchmark against floopy-gateway.
//!
//! It has none of the gateway's features: no authentication, no body
//! reading, no routing, no usage accounting, no request logs. Every request
//! is forwarded as is to one upstream `host:port` over plain HTTP, with
//! Pingora's keep-alive connection pool. The server is built the same way as
//! the gateway's (same `ServerConf` shape, same proxy service), so the
//! difference measured between the two is the cost of the gateway's own work.

#[global_allocator]
static ALLOCATOR: floopy_gateway::alloc::Allocator = floopy_gateway::alloc::Allocator;

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;

use async_trait::async_trait;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::Server;
use pingora::upstreams::peer::HttpPeer;
use pingora_error::Result;
use pingora_proxy::{ProxyHttp, Session};

const USAGE: &str = "usage: reference-proxy --listen ADDR --upstream ADDR [--threads N]

  --listen ADDR    address to accept HTTP requests on, e.g. 127.0.0.1:8081
  --upstream ADDR  host:port every request is forwarded to over plain HTTP
  --threads N      worker threads of the proxy service (default: one per core)";

/// What the command line asks for.
struct Args {
    listen: SocketAddr,
    upstream: SocketAddr,
    threads: usize,
}

enum Command {
    Run(Args),
    Help,
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Command, String> {
    let mut listen = None;
    let mut upstream = None;
    let mut threads = None;
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        let mut value = |what: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{flag} needs {what}"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--listen" => {
                let v = value("an address, e.g. 127.0.0.1:8081")?;
                let addr = v
                    .parse()
                    .map_err(|_| format!("invalid --listen address '{v}': expected IP:PORT"))?;
                listen = Some(addr);
            }
            "--upstream" => {
                let v = value("an address, e.g. 127.0.0.1:18090")?;
                upstream = Some(resolve(&v)?);
            }
            "--threads" => {
                let v = value("a number of threads")?;
                let n: usize =
                    v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("invalid --threads '{v}': expected a number >= 1")
                    })?;
                threads = Some(n);
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok(Command::Run(Args {
        listen: listen.ok_or("--listen is required")?,
        upstream: upstream.ok_or("--upstream is required")?,
        threads: threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
    }))
}

/// `host:port` -> the first address it resolves to (once, at start).
fn resolve(value: &str) -> Result<SocketAddr, String> {
    value
        .to_socket_addrs()
        .map_err(|e| format!("invalid --upstream address '{value}': {e}"))?
        .next()
        .ok_or_else(|| format!("--upstream address '{value}' resolves to no address"))
}

/// The whole proxy: one peer, built once.
struct ReferenceProxy {
    peer: HttpPeer,
}

#[async_trait]
impl ProxyHttp for ReferenceProxy {
    type CTX = ();

    fn new_ctx(&self) -> Self::CTX {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        Ok(Box::new(self.peer.clone()))
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("reference-proxy: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };

    let conf = ServerConf {
        threads: args.threads,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(Opt::default(), conf);
    server.bootstrap();

    let proxy = ReferenceProxy {
        peer: HttpPeer::new(args.upstream, false, String::new()),
    };
    let mut service = pingora_proxy::http_proxy_service(&server.configuration, proxy);
    service.add_tcp(&args.listen.to_string());
    server.add_service(service);

    eprintln!(
        "reference-proxy listening on {} -> {} ({} threads)",
        args.listen, args.upstream, args.threads
    );
    server.run_forever()
}
