//! HTTPS providers: the gateway connects with TLS and SNI, verifies the
//! certificate (against a configured CA file here), and refuses a
//! certificate that does not name the host.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use common::*;
use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{NameType, Ssl, SslAcceptor, SslMethod};
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509NameBuilder, X509};

/// A self-signed certificate for `localhost`.
fn self_signed() -> (X509, PKey<Private>) {
    let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "localhost").unwrap();
    let name = name.build();
    let mut cert = X509::builder().unwrap();
    cert.set_version(2).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    let serial = openssl::bn::BigNum::from_u32(1)
        .unwrap()
        .to_asn1_integer()
        .unwrap();
    cert.set_serial_number(&serial).unwrap();
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .build(&cert.x509v3_context(None, None))
        .unwrap();
    cert.append_extension(san).unwrap();
    cert.sign(&key, MessageDigest::sha256()).unwrap();
    (cert.build(), key)
}

/// A TLS terminator in front of the fake provider. Records the SNI names
/// clients sent.
async fn tls_front(
    upstream: SocketAddr,
    cert: &X509,
    key: &PKey<Private>,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    acceptor.set_certificate(cert).unwrap();
    acceptor.set_private_key(key).unwrap();
    let acceptor = Arc::new(acceptor.build());
    let listener = tokio::net::TcpListener::bind("localhost:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let snis = Arc::new(Mutex::new(Vec::new()));
    let seen = snis.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let ssl = Ssl::new(acceptor.context()).unwrap();
                let mut tls = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
                if std::pin::Pin::new(&mut tls).accept().await.is_err() {
                    return;
                }
                let sni = tls
                    .ssl()
                    .servername(NameType::HOST_NAME)
                    .unwrap_or("")
                    .to_string();
                seen.lock().unwrap().push(sni);
                let mut up = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    (addr, snis)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_provider_with_sni_and_certificate_verification() {
    let provider = start_provider().await;
    let (cert, key) = self_signed();
    let (front, snis) = tls_front(provider.local_addr(), &cert, &key).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert.to_pem().unwrap()).unwrap();
    let providers = format!(
        r#"  - {{ name: tls-ok, kind: openai, base_url: "https://localhost:{port}", ca_file: "{ca}", models: [tls-model] }}
  - {{ name: tls-wrong-host, kind: openai, base_url: "https://127.0.0.1:{port}", ca_file: "{ca}", models: [tls-wrong-host] }}
  - {{ name: tls-untrusted, kind: openai, base_url: "https://localhost:{port}", models: [tls-untrusted] }}"#,
        port = front.port(),
        ca = ca.display()
    );
    let gw = Gateway::start(
        &provider,
        Options {
            extra_providers: providers,
            ..Options::default()
        },
    )
    .await;

    let send = |model: &str| {
        client()
            .post(gw.url("/v1/chat/completions"))
            .header("authorization", format!("Bearer {KEY_FREE}"))
            .header("x-fake-prompt-tokens", "3")
            .body(format!(
                r#"{{"model":"{model}","stream":true,"messages":[]}}"#
            ))
            .send()
    };

    let resp = send("tls-model").await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.text().await.unwrap();
    assert!(body.contains("tok1"), "the stream came through TLS: {body}");
    assert!(
        snis.lock().unwrap().iter().any(|s| s == "localhost"),
        "SNI was sent: {:?}",
        snis.lock().unwrap()
    );

    for model in ["tls-wrong-host", "tls-untrusted"] {
        let resp = send(model).await.unwrap();
        assert_eq!(
            resp.status(),
            502,
            "{model}: a certificate that cannot be verified is refused"
        );
        assert_eq!(error_code(resp).await, "upstream_unreachable", "{model}");
    }
}
