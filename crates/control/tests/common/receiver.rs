//! A webhook receiver the alert tests run: it records every delivery
//! (headers and body) and answers as told: 200, an error status, or late.
//! It can stop listening and start again on the same port (a receiver
//! outage).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use serde_json::Value;

/// One delivery as received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub alert_id: String,
    pub signature: String,
    pub body: Vec<u8>,
}

impl Delivery {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

#[derive(Default)]
struct Shared {
    deliveries: Vec<Delivery>,
    /// Answer with this status (200 when unset).
    status: Option<u16>,
    /// Hold each answer this long.
    delay: Duration,
}

pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

async fn receive(
    State(shared): State<Arc<Mutex<Shared>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (status, delay) = {
        let mut s = shared.lock().unwrap();
        s.deliveries.push(Delivery {
            alert_id: header("floopy-alert-id"),
            signature: header("floopy-signature"),
            body: body.to_vec(),
        });
        (s.status.unwrap_or(200), s.delay)
    };
    tokio::time::sleep(delay).await;
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    /// Listening on a free port.
    pub async fn start() -> Receiver {
        let mut receiver = Receiver {
            addr: "127.0.0.1:0".parse().unwrap(),
            shared: Arc::default(),
            server: None,
        };
        receiver.listen().await;
        receiver
    }

    /// A receiver on a free port that is not listening yet (down).
    pub async fn down() -> Receiver {
        Receiver {
            addr: SocketAddr::from(([127, 0, 0, 1], super::free_port())),
            shared: Arc::default(),
            server: None,
        }
    }

    /// Starts listening (again) on its address.
    pub async fn listen(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(self.shared.clone());
        self.server = Some(tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        }));
    }

    /// Stops listening (connections are refused).
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn answer(&self, status: u16) {
        self.shared.lock().unwrap().status = Some(status);
    }

    pub fn hold(&self, delay: Duration) {
        self.shared.lock().unwrap().delay = delay;
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().unwrap().deliveries.clone()
    }

    /// Waits until `n` distinct alerts arrived; the deliveries so far.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Delivery> {
        let started = std::time::Instant::now();
        loop {
            let deliveries = self.deliveries();
            let mut ids: Vec<&str> = deliveries.iter().map(|d| d.alert_id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            if ids.len() >= n {
                return deliveries;
            }
            assert!(
                started.elapsed() < within,
                "{} of {n} alerts arrived within {within:?}: {deliveries:?}",
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Checks every delivery's signature under `secret`, that its header id is
/// its body's id, and that no alert id arrived twice; the bodies.
pub fn checked_once(deliveries: &[Delivery], secret: &str) -> Vec<Value> {
    let mut seen = std::collections::HashSet::new();
    deliveries
        .iter()
        .map(|d| {
            assert!(
                floopy_control::webhooks::verify(secret, &d.signature, &d.body),
                "bad signature {:?} on {}",
                d.signature,
                String::from_utf8_lossy(&d.body)
            );
            let body = d.json();
            assert_eq!(body["id"], d.alert_id.as_str());
            assert!(seen.insert(d.alert_id.clone()), "{} twice", d.alert_id);
            body
        })
        .collect()
}
