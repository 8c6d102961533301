//! The gateway's TLS listener with real TLS clients and a test CA: HTTP/1.1
//! and HTTP/2 (curl), the certificate chosen by SNI, streaming over HTTP/2
//! with the usage handling unchanged, client certificates (mTLS), the
//! official `openai` Python client over HTTPS, certificates rotated under
//! load (no request fails; a broken certificate is refused and the old one
//! keeps serving), and `--check-config` naming every certificate problem.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslMethod};
use openssl::x509::extension::{BasicConstraints, SubjectAlternativeName};
use openssl::x509::{X509NameBuilder, X509};

/// A test CA and the files it signs, in a directory of their own.
struct Pki {
    dir: tempfile::TempDir,
    ca: X509,
    ca_key: PKey<Private>,
}

fn new_key() -> PKey<Private> {
    PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap()
}

fn name(cn: &str) -> openssl::x509::X509Name {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    name.build()
}

impl Pki {
    fn new() -> Pki {
        let ca_key = new_key();
        let mut ca = X509::builder().unwrap();
        ca.set_version(2).unwrap();
        ca.set_subject_name(&name("floopy test CA")).unwrap();
        ca.set_issuer_name(&name("floopy test CA")).unwrap();
        ca.set_pubkey(&ca_key).unwrap();
        ca.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        ca.set_not_after(&Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        ca.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        ca.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        ca.sign(&ca_key, MessageDigest::sha256()).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca: ca.build(),
            ca_key,
        };
        std::fs::write(pki.ca_path(), pki.ca.to_pem().unwrap()).unwrap();
        pki
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A certificate signed by the CA for `names` (none: no SAN and no CN),
    /// valid from `from` to `until` (Unix seconds).
    fn leaf(&self, names: &[&str], serial: u32, from: i64, until: i64) -> (X509, PKey<Private>) {
        let key = new_key();
        let mut cert = X509::builder().unwrap();
        cert.set_version(2).unwrap();
        let subject = match names.first() {
            Some(n) => name(n),
            None => {
                let mut b = X509NameBuilder::new().unwrap();
                b.append_entry_by_text("O", "nameless").unwrap();
                b.build()
            }
        };
        cert.set_subject_name(&subject).unwrap();
        cert.set_issuer_name(self.ca.subject_name()).unwrap();
        cert.set_pubkey(&key).unwrap();
        cert.set_not_before(&Asn1Time::from_unix(from).unwrap())
            .unwrap();
        cert.set_not_after(&Asn1Time::from_unix(until).unwrap())
            .unwrap();
        cert.set_serial_number(&BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap())
            .unwrap();
        if !names.is_empty() {
            let mut san = SubjectAlternativeName::new();
            for n in names {
                san.dns(n);
            }
            let san = san
                .build(&cert.x509v3_context(Some(&self.ca), None))
                .unwrap();
            cert.append_extension(san).unwrap();
        }
        cert.sign(&self.ca_key, MessageDigest::sha256()).unwrap();
        (cert.build(), key)
    }

    /// A valid certificate for `names` written as `<file>.pem` and
    /// `<file>.key`; the paths.
    fn issue(&self, file: &str, names: &[&str], serial: u32) -> (PathBuf, PathBuf) {
        let now = now();
        let (cert, key) = self.leaf(names, serial, now - 60, now + 7 * 86_400);
        self.write(file, &cert, &key)
    }

    fn write(&self, file: &str, cert: &X509, key: &PKey<Private>) -> (PathBuf, PathBuf) {
        let (c, k) = self.paths(file);
        replace(&c, &cert.to_pem().unwrap());
        replace(&k, &key.private_key_to_pem_pkcs8().unwrap());
        (c, k)
    }

    fn paths(&self, file: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join(format!("{file}.pem")),
            self.dir.path().join(format!("{file}.key")),
        )
    }
}

/// Writes `bytes` to `path` by renaming a temporary file over it.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `server.tls` for `port` with these certificate files.
fn tls_section(port: u16, certificates: &[(PathBuf, PathBuf)], extra: &str) -> String {
    let mut s = format!(
        "  tls:\n    listen: \"127.0.0.1:{port}\"\n    watch_interval_ms: 200\n    certificates:\n"
    );
    for (cert, key) in certificates {
        s.push_str(&format!(
            "      - {{ cert: \"{}\", key: \"{}\" }}\n",
            cert.display(),
            key.display()
        ));
    }
    s.push_str(extra);
    s
}

/// The certificate the listener at `addr` presents for `sni` (none: no
/// SNI), verified against the CA.
fn presented(addr: SocketAddr, sni: Option<&str>, ca: &Path) -> X509 {
    let mut connector = SslConnector::builder(SslMethod::tls()).unwrap();
    connector.set_ca_file(ca).unwrap();
    let connector = connector.build();
    let mut config = connector.configure().unwrap();
    config.set_use_server_name_indication(sni.is_some());
    config.set_verify_hostname(false);
    let tcp = std::net::TcpStream::connect(addr).unwrap();
    let stream = config.connect(sni.unwrap_or("unnamed"), tcp).unwrap();
    stream.ssl().peer_certificate().unwrap()
}

/// Whether a second TLS 1.2 connection to `addr` resumes the first one's
/// session.
fn resumes(addr: SocketAddr, ca: &Path) -> bool {
    let mut connector = SslConnector::builder(SslMethod::tls()).unwrap();
    connector.set_ca_file(ca).unwrap();
    connector
        .set_max_proto_version(Some(openssl::ssl::SslVersion::TLS1_2))
        .unwrap();
    let connector = connector.build();
    let first = connector
        .connect(
            "api.floopy.test",
            std::net::TcpStream::connect(addr).unwrap(),
        )
        .unwrap();
    assert!(!first.ssl().session_reused());
    let session = first.ssl().session().unwrap().to_owned();
    let mut ssl = connector
        .configure()
        .unwrap()
        .into_ssl("api.floopy.test")
        .unwrap();
    // Safety: the session comes from a connection of the same context.
    unsafe { ssl.set_session(&session).unwrap() };
    let second = ssl
        .connect(std::net::TcpStream::connect(addr).unwrap())
        .unwrap();
    second.ssl().session_reused()
}

fn serial(cert: &X509) -> u32 {
    cert.serial_number()
        .to_bn()
        .unwrap()
        .to_dec_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// curl to the TLS listener as `host` (resolved to 127.0.0.1); (exit
/// status, body, HTTP status, HTTP version).
fn curl(
    port: u16,
    key: &str,
    host: &str,
    ca: &Path,
    body: &[u8],
    args: &[&str],
) -> (bool, String, u16, String) {
    let body_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(body_file.path(), body).unwrap();
    // The provider answering curl runs on this test's runtime: off it.
    let out = tokio::task::block_in_place(|| {
        Command::new("curl")
            .args(["-sS", "-N", "--max-time", "20"])
            .arg("--cacert")
            .arg(ca)
            .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
            .args(["-H", &format!("authorization: Bearer {key}")])
            .args(["-H", "content-type: application/json"])
            .arg("--data-binary")
            .arg(format!("@{}", body_file.path().display()))
            .args(["-w", "\n%{http_code} %{http_version}"])
            .args(args)
            .arg(format!("https://{host}:{port}/v1/chat/completions"))
            .output()
    })
    .expect("curl is installed (scripts/install-deps.sh)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", ""));
    let (code, version) = tail.split_once(' ').unwrap_or(("0", ""));
    (
        out.status.success(),
        body.to_string(),
        code.parse().unwrap_or(0),
        format!("{version}{}", String::from_utf8_lossy(&out.stderr)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_speaks_http1_and_http2_and_picks_the_certificate_by_sni() {
    let pki = Pki::new();
    let api = pki.issue("api", &["api.floopy.test", "localhost"], 10);
    let other = pki.issue("other", &["other.floopy.test", "*.wild.floopy.test"], 11);
    let port = free_port();
    let provider = start_provider().await;
    let gateway = Gateway::start(
        &provider,
        Options {
            extra_server: tls_section(port, &[api.clone(), other], ""),
            ..Options::default()
        },
    )
    .await;
    let tls_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ca = pki.ca_path();

    // SNI: an exact name, a wildcard, none, an unknown one (the default).
    for (sni, expected) in [
        (Some("api.floopy.test"), 10),
        (Some("other.floopy.test"), 11),
        (Some("a.wild.floopy.test"), 11),
        (Some("OTHER.floopy.test"), 11),
        (None, 10),
        (Some("unknown.example"), 10),
    ] {
        let ca = ca.clone();
        let cert = tokio::task::spawn_blocking(move || presented(tls_addr, sni, &ca))
            .await
            .unwrap();
        assert_eq!(serial(&cert), expected, "SNI {sni:?}");
    }

    let resumed = {
        let ca = ca.clone();
        tokio::task::spawn_blocking(move || resumes(tls_addr, &ca))
            .await
            .unwrap()
    };
    assert!(resumed, "a TLS session is resumed");

    let body = chat_body("gpt-4o", false, 200);
    let (ok, text, status, version) = curl(
        port,
        KEY_FREE,
        "api.floopy.test",
        &ca,
        &body,
        &["--http1.1"],
    );
    assert!(
        ok && status == 200 && version.starts_with("1.1"),
        "{status} {version}: {text}"
    );
    let (ok, text, status, version) = curl(
        port,
        KEY_FREE,
        "other.floopy.test",
        &ca,
        &body,
        &["--http2"],
    );
    assert!(
        ok && status == 200 && version.starts_with('2'),
        "{status} {version}: {text}"
    );
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["object"], "chat.completion");
    // Errors are the same over HTTP/2, also when they are answered before
    // a large body is read (the stream is not reset under the client).
    let wrong = "fpk_wrongkey00000000000000000000000000099";
    let large = chat_body("gpt-4o", false, 256 * 1024);
    for _ in 0..5 {
        let (_, text, status, version) =
            curl(port, wrong, "api.floopy.test", &ca, &large, &["--http2"]);
        assert!(
            status == 401 && version.starts_with('2'),
            "{status} {version}: {text}"
        );
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["error"]["code"], "invalid_api_key", "{json}");
    }

    // Streaming over HTTP/2: the same bytes as over plain HTTP/1.1, the
    // usage chunk the gateway asked for stripped, the usage priced.
    let stream = chat_body("gpt-4o", true, 200);
    let (ok, over_h2, status, version) = curl(
        port,
        KEY_FREE,
        "api.floopy.test",
        &ca,
        &stream,
        &["--http2"],
    );
    assert!(
        ok && status == 200 && version.starts_with('2'),
        "{status} {version}: {over_h2}"
    );
    let over_h1 = client()
        .post(gateway.url("/v1/chat/completions"))
        .bearer_auth(KEY_FREE)
        .header("content-type", "application/json")
        .body(stream.clone())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(over_h2, over_h1);
    assert!(over_h2.contains("data: [DONE]"), "{over_h2}");
    assert!(
        !over_h2.contains("\"usage\""),
        "the usage chunk is stripped: {over_h2}"
    );
    let records = gateway.wait_records(4).await;
    let streamed: Vec<&serde_json::Value> = records.iter().filter(|r| r["stream"] == 1).collect();
    assert_eq!(streamed.len(), 2, "{records:?}");
    assert!(streamed[0]["cost_micro_usd"].as_i64().unwrap() > 0);
    assert_eq!(streamed[0]["cost_micro_usd"], streamed[1]["cost_micro_usd"]);
    assert!(streamed[0]["completion_tokens"].as_i64().unwrap() > 0);
    assert_eq!(
        streamed[0]["completion_tokens"],
        streamed[1]["completion_tokens"]
    );
    assert_eq!(streamed[0]["prompt_tokens"], streamed[1]["prompt_tokens"]);

    // Expiry per certificate.
    let metrics = gateway.metrics().await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("floopy_tls_certificate_expiry_seconds{") && l.contains("api.pem"))
        .unwrap_or_else(|| panic!("{metrics}"));
    let seconds: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        (6.0 * 86_400.0..=7.0 * 86_400.0).contains(&seconds),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_client_ca_a_client_without_a_certificate_is_refused() {
    let pki = Pki::new();
    let api = pki.issue("api", &["api.floopy.test"], 10);
    let client_cert = pki.issue("client", &["client.floopy.test"], 12);
    let port = free_port();
    let provider = start_provider().await;
    let extra = format!("    client_ca: \"{}\"\n", pki.ca_path().display());
    let _gateway = Gateway::start(
        &provider,
        Options {
            extra_server: tls_section(port, &[api], &extra),
            ..Options::default()
        },
    )
    .await;
    let body = chat_body("gpt-4o", false, 100);
    let ca = pki.ca_path();
    let (ok, text, status, _) = curl(port, KEY_FREE, "api.floopy.test", &ca, &body, &[]);
    assert!(
        !ok && status == 0,
        "refused without a certificate: {status} {text}"
    );
    let (cert, key) = (
        client_cert.0.display().to_string(),
        client_cert.1.display().to_string(),
    );
    let (ok, text, status, version) = curl(
        port,
        KEY_FREE,
        "api.floopy.test",
        &ca,
        &body,
        &["--cert", &cert, "--key", &key],
    );
    assert!(ok && status == 200, "{status} {version}: {text}");
    // A certificate from another CA is refused too.
    let stranger = Pki::new();
    let (cert, key) = stranger.issue("client", &["client.floopy.test"], 13);
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let (ok, _, status, _) = curl(
        port,
        KEY_FREE,
        "api.floopy.test",
        &ca,
        &body,
        &["--cert", &cert, "--key", &key],
    );
    assert!(!ok && status == 0, "another CA's client certificate");
}

/// The Python with the `openai` client (scripts/install-kafka-tools.sh).
fn python() -> String {
    std::env::var("FLOOPY_PYTHON").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_default();
        format!("{home}/.cache/floopy/venv/bin/python")
    })
}

const OPENAI_OVER_HTTPS: &str = r#"
import os, ssl, sys
import httpx
from openai import OpenAI

context = ssl.create_default_context(cafile=os.environ["CA"])
client = OpenAI(
    base_url=os.environ["BASE_URL"],
    api_key=os.environ["KEY"],
    http_client=httpx.Client(verify=context),
)
reply = client.chat.completions.create(
    model="gpt-4o", messages=[{"role": "user", "content": "hello"}]
)
print("reply", reply.choices[0].message.content, reply.usage.total_tokens)
chunks = client.chat.completions.create(
    model="gpt-4o",
    messages=[{"role": "user", "content": "hello"}],
    stream=True,
    stream_options={"include_usage": True},
)
text, usage = "", None
for chunk in chunks:
    if chunk.choices:
        text += chunk.choices[0].delta.content or ""
    if chunk.usage:
        usage = chunk.usage.total_tokens
print("stream", len(text) > 0, usage)
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_python_client_over_https() {
    let python = python();
    assert!(
        Path::new(&python).exists(),
        "{python} is missing: run scripts/install-kafka-tools.sh (or set FLOOPY_PYTHON)"
    );
    let pki = Pki::new();
    let api = pki.issue("api", &["localhost"], 10);
    let port = free_port();
    let provider = start_provider().await;
    let gateway = Gateway::start(
        &provider,
        Options {
            extra_server: tls_section(port, &[api], ""),
            ..Options::default()
        },
    )
    .await;
    let out = tokio::task::block_in_place(|| {
        Command::new(&python)
            .args(["-c", OPENAI_OVER_HTTPS])
            .env("CA", pki.ca_path())
            .env("BASE_URL", format!("https://localhost:{port}/v1"))
            .env("KEY", KEY_FREE)
            .output()
            .unwrap()
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("reply ") && !lines[0].ends_with(" 0"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("stream True ") && !lines[1].ends_with("None"),
        "{stdout}"
    );
    let records = gateway.wait_records(2).await;
    assert!(records.iter().all(|r| r["status"] == 200), "{records:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_under_load_and_a_broken_one_is_refused() {
    let pki = Pki::new();
    let api = pki.issue("api", &["api.floopy.test"], 10);
    let port = free_port();
    let provider = start_provider().await;
    let gateway = Gateway::start(
        &provider,
        Options {
            extra_server: tls_section(port, std::slice::from_ref(&api), ""),
            ..Options::default()
        },
    )
    .await;
    let tls_addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let ca_pem = std::fs::read(pki.ca_path()).unwrap();
    let serving = |ca: PathBuf| async move {
        tokio::task::spawn_blocking(move || {
            serial(&presented(tls_addr, Some("api.floopy.test"), &ca))
        })
        .await
        .unwrap()
    };
    let wait_for = |expected: u32| {
        let ca = pki.ca_path();
        async move {
            let started = Instant::now();
            loop {
                if serving(ca.clone()).await == expected {
                    return started.elapsed();
                }
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "serial {expected} not served"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    assert_eq!(serving(pki.ca_path()).await, 10);

    // Clients all along: half on new connections (a handshake each), half
    // on kept-alive ones.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut builder = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca_pem).unwrap())
            .resolve("api.floopy.test", tls_addr)
            .timeout(Duration::from_secs(10));
        if i % 2 == 0 {
            builder = builder.pool_max_idle_per_host(0);
        }
        let http = builder.build().unwrap();
        let (stop, sent, failed) = (stop.clone(), sent.clone(), failed.clone());
        let url = format!("https://api.floopy.test:{port}/v1/chat/completions");
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let ok = http
                    .post(&url)
                    .bearer_auth(KEY_FREE)
                    .header("content-type", "application/json")
                    .body(chat_body("gpt-4o", false, 100))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                sent.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A rotated certificate (a secrets manager writing new files).
    pki.issue("api", &["api.floopy.test"], 20);
    let took = wait_for(20).await;
    eprintln!("a rotated certificate served after {took:?}");

    // A broken certificate: refused, the rotated one stays.
    let failures = |m: &str| metric_value(m, "floopy_tls_reload_failures_total");
    let metrics_before = gateway.metrics().await;
    replace(
        &api.0,
        b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(serving(pki.ca_path()).await, 20);
    // Four watch ticks with the same broken file: one failure, not four.
    assert_eq!(
        failures(&gateway.metrics().await),
        failures(&metrics_before) + 1,
        "a reload failure is counted once per change of the files"
    );
    // A key that is not the certificate's: refused too, also on SIGHUP.
    let now = now();
    let (cert, _) = pki.leaf(&["api.floopy.test"], 21, now - 60, now + 86_400);
    let (_, other_key) = pki.leaf(&["api.floopy.test"], 22, now - 60, now + 86_400);
    pki.write("api", &cert, &other_key);
    gateway.signal("HUP");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(serving(pki.ca_path()).await, 20);
    let metrics = gateway.metrics().await;
    assert!(
        failures(&metrics) >= failures(&metrics_before) + 2,
        "{metrics}"
    );
    let stderr = gateway.stderr();
    assert!(
        stderr.contains("is not the key of the certificate"),
        "{stderr}"
    );
    assert!(stderr.contains("is not PEM certificates"), "{stderr}");

    // Fixed files are taken again.
    pki.issue("api", &["api.floopy.test"], 30);
    wait_for(30).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (sent, failed) = (sent.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{sent} requests during the rotations, {failed} failed");
    assert!(sent > 50, "{sent}");
    assert_eq!(failed, 0, "no request failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_closed_before_a_handshake_are_counted_and_logged_once_a_minute() {
    let pki = Pki::new();
    let api = pki.issue("api", &["api.floopy.test"], 10);
    let port = free_port();
    let provider = start_provider().await;
    let gateway = Gateway::start(
        &provider,
        Options {
            extra_server: tls_section(port, &[api], ""),
            ..Options::default()
        },
    )
    .await;
    let counted = |m: &str| metric_value(m, "floopy_tls_handshake_failures_total");
    assert_eq!(counted(&gateway.metrics().await), 0);
    // A load balancer's health checks: connect, close.
    for _ in 0..20 {
        drop(std::net::TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    let started = Instant::now();
    while counted(&gateway.metrics().await) < 20 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{}",
            gateway.metrics().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(counted(&gateway.metrics().await), 20);
    let stderr = gateway.stderr();
    let logged = stderr.matches("Downstream handshake error").count();
    // One a minute: two if the run crossed a minute.
    assert!((1..=2).contains(&logged), "{logged} logged:\n{stderr}");
    // A real client still gets through.
    let body = chat_body("gpt-4o", false, 100);
    let (ok, text, status, _) = curl(
        port,
        KEY_FREE,
        "api.floopy.test",
        &pki.ca_path(),
        &body,
        &[],
    );
    assert!(ok && status == 200, "{status}: {text}");
    // The log is a file here, not a terminal: no colour codes in it.
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI escapes in a file:\n{stderr}"
    );
}

#[tokio::test]
async fn check_config_names_every_certificate_problem() {
    let pki = Pki::new();
    let now = now();
    let (expired, expired_key) = pki.leaf(&["old.floopy.test"], 40, now - 86_400, now - 3_600);
    let expired = pki.write("expired", &expired, &expired_key);
    let (cert, _) = pki.leaf(&["api.floopy.test"], 41, now - 60, now + 86_400);
    let (_, wrong_key) = pki.leaf(&["api.floopy.test"], 42, now - 60, now + 86_400);
    let mismatched = pki.write("mismatched", &cert, &wrong_key);
    let missing = (
        pki.dir.path().join("missing.pem"),
        pki.dir.path().join("missing.key"),
    );
    let (nameless, nameless_key) = pki.leaf(&[], 43, now - 60, now + 86_400);
    let nameless = pki.write("nameless", &nameless, &nameless_key);
    let extra = format!(
        "    min_version: \"1.1\"\n    client_ca: \"{}\"\n",
        pki.dir.path().join("no-ca.pem").display()
    );
    let config = render_config(
        "http://127.0.0.1:9",
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        &pki.dir.path().join("log.jsonl"),
        3,
        &Options {
            extra_server: tls_section(4, &[expired, mismatched, missing, nameless], &extra),
            ..Options::default()
        },
    );
    let path = pki.dir.path().join("gateway.yaml");
    std::fs::write(&path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_floopy-gateway"))
        .arg("--check-config")
        .arg(&path)
        .env("FLOOPY_TEST_OPENAI_KEY", "k")
        .env("FLOOPY_TEST_ANTHROPIC_KEY", "k")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "server.tls.min_version: \"1.1\" is not a TLS version",
        "server.tls.certificates[0].cert: ",
        " expired on ",
        "server.tls.certificates[1].key: ",
        "is not the key of the certificate",
        "server.tls.certificates[2].cert: cannot read",
        "server.tls.certificates[3].server_names: ",
        "names no host",
        "server.tls.client_ca: cannot read",
    ] {
        assert!(stderr.contains(expected), "{expected:?} in:\n{stderr}");
    }
}
