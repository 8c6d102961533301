//! Kafka for the tests: the real `tansu` broker (installed by
//! scripts/install-kafka-tools.sh; `FLOOPY_TANSU` points at the binary),
//! reached through a proxy the test can cut to make the broker unreachable,
//! and a consumer that reads a topic back.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;
use tokio::net::{TcpListener, TcpStream};

use super::free_port;

/// The request log topic of the tests (the gateway's default).
pub const TOPIC: &str = "floopy.request_logs";

/// The `log_sink` section of a gateway logging to `bootstrap` on `TOPIC`,
/// spooling to `spool`.
pub fn kafka_sink(bootstrap: &str, spool: &std::path::Path, timeout_ms: u64) -> String {
    format!(
        "log_sink:\n  kind: kafka\n  brokers: \"{bootstrap}\"\n  topic: \"{TOPIC}\"\n  feedback_topic: \"{}\"\n  spool_dir: \"{}\"\n  message_timeout_ms: {timeout_ms}\n  linger_ms: 5",
        super::clickhouse::feedback_topic(TOPIC),
        spool.display()
    )
}

/// Gateway options logging to `bootstrap` (see `kafka_sink`).
pub fn kafka_options(bootstrap: &str, spool: &std::path::Path, timeout_ms: u64) -> super::Options {
    super::Options {
        log_sink: Some(kafka_sink(bootstrap, spool, timeout_ms)),
        ..super::Options::default()
    }
}

/// How long the outage tests keep the broker away: `FLOOPY_OUTAGE_SECS`
/// (default 30).
pub fn outage() -> Duration {
    Duration::from_secs(
        std::env::var("FLOOPY_OUTAGE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30),
    )
}

pub fn tansu_binary() -> String {
    if let Ok(path) = std::env::var("FLOOPY_TANSU") {
        return path;
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let cached = format!("{home}/.cache/floopy/tansu/bin/tansu");
    assert!(
        std::path::Path::new(&cached).exists(),
        "no tansu broker: run scripts/install-kafka-tools.sh or set FLOOPY_TANSU"
    );
    cached
}

/// A TCP proxy that can refuse and cut every connection.
pub struct FaultProxy {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(listen: SocketAddr, target: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind(listen).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let down = Arc::new(AtomicBool::new(false));
        let flag = down.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if flag.load(Ordering::SeqCst) {
                    continue; // dropped: connection refused in effect
                }
                let flag = flag.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = async {
                            while !flag.load(Ordering::SeqCst) {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        } => {}
                    }
                });
            }
        });
        FaultProxy { addr, down, task }
    }

    /// Cuts every connection and refuses new ones until `up`.
    pub fn down(&self) {
        self.down.store(true, Ordering::SeqCst);
    }

    pub fn up(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A tansu broker (memory storage) that clients reach through a
/// `FaultProxy`: it advertises the proxy's address.
pub struct Broker {
    child: Child,
    pub proxy: FaultProxy,
    /// `host:port` clients use (the proxy).
    pub bootstrap: String,
    broker_port: u16,
}

impl Broker {
    pub async fn start() -> Broker {
        let broker_port = free_port();
        let proxy_port = free_port();
        let child = Command::new(tansu_binary())
            .args([
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                &format!("tcp://127.0.0.1:{broker_port}"),
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{proxy_port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tansu starts");
        let proxy = FaultProxy::start(
            format!("127.0.0.1:{proxy_port}").parse().unwrap(),
            format!("127.0.0.1:{broker_port}").parse().unwrap(),
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", broker_port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "tansu did not start listening");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Broker {
            child,
            bootstrap: format!("127.0.0.1:{proxy_port}"),
            proxy,
            broker_port,
        }
    }

    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(tansu_binary())
            .args([
                "topic",
                "create",
                topic,
                "--broker",
                &format!("tcp://127.0.0.1:{}", self.broker_port),
                "--partitions",
                &partitions.to_string(),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tansu topic create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `topic` from the beginning until `expected` messages arrived or
/// `within` passed; returns (key, payload) pairs.
pub fn consume(
    bootstrap: &str,
    topic: &str,
    expected: usize,
    within: Duration,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set(
            "group.id",
            format!("test-{}", uuid::Uuid::now_v7().simple()),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + within;
    while out.len() < expected && Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            out.push((
                message.key().unwrap_or_default().to_vec(),
                message.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    out
}
