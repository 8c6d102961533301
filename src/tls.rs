//! TLS on the proxy listener (OpenSSL, through Pingora): the certificates,
//! chosen per handshake by SNI, and their reload.
//!
//! The certificates live in one `ArcSwap<CertificateSet>`. A handshake
//! loads the set, picks the certificate for the client's server name (an
//! exact name, then a wildcard one label up, else the first certificate)
//! and hands it to OpenSSL. A reload (SIGHUP, or a file changed on disk)
//! reads and checks every file first, then swaps: a bad certificate or a
//! key that does not match is logged and the old set keeps serving.
//! Handshakes in progress finish with the set they loaded; connections
//! already open are not touched.
//!
//! The listener's other settings (address, TLS versions, client CA, HTTP/2)
//! are read at start.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use async_trait::async_trait;
use openssl::asn1::Asn1Time;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{NameType, SslRef, SslVerifyMode, SslVersion};
use openssl::x509::{X509Name, X509};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::tls::TlsRef;

use crate::config_error::ConfigError;
use crate::metrics::Metrics;

/// The TLS listener: where, which certificates (the first is the
/// default), and how clients may connect.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    pub certificates: Vec<CertificateFiles>,
    /// TLS 1.3 only; else 1.2 and 1.3.
    pub tls13_only: bool,
    pub client_ca: Option<PathBuf>,
    pub http2: bool,
    pub max_concurrent_streams: u32,
    pub watch_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Explicit SNI names; empty: the certificate's own.
    pub server_names: Vec<String>,
}

/// Seconds since the Unix epoch.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// One certificate, ready for handshakes.
pub struct Certificate {
    pub cert_path: PathBuf,
    /// The leaf first, then its chain.
    chain: Vec<X509>,
    key: PKey<Private>,
    /// The names it serves.
    pub names: Vec<String>,
    /// When it expires (Unix seconds).
    pub not_after: i64,
}

/// Every certificate of the listener, indexed by the names they serve.
pub struct CertificateSet {
    pub certificates: Vec<Arc<Certificate>>,
    exact: HashMap<String, usize>,
    /// `example.com` for `*.example.com`.
    wildcard: HashMap<String, usize>,
    /// What the files were when read, to notice a change.
    stamps: Vec<FileStamp>,
}

/// A file's modification time and length.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp(Option<SystemTime>, u64);

fn stamp(path: &Path) -> FileStamp {
    std::fs::metadata(path).map_or(FileStamp(None, 0), |m| {
        FileStamp(m.modified().ok(), m.len())
    })
}

fn files(certificates: &[CertificateFiles]) -> Vec<&Path> {
    certificates
        .iter()
        .flat_map(|c| [c.cert.as_path(), c.key.as_path()])
        .collect()
}

/// Unix seconds of an ASN.1 time.
fn unix_of(time: &openssl::asn1::Asn1TimeRef) -> Option<i64> {
    let epoch = Asn1Time::from_unix(0).ok()?;
    let diff = epoch.diff(time).ok()?;
    Some(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

fn load_one(
    files: &CertificateFiles,
    index: usize,
    now: i64,
) -> Result<Certificate, Vec<ConfigError>> {
    let at = |field: &str| format!("server.tls.certificates[{index}].{field}");
    let error = |field: &str, message: String| {
        vec![ConfigError {
            path: at(field),
            message,
        }]
    };
    let pem = std::fs::read(&files.cert)
        .map_err(|e| error("cert", format!("cannot read {}: {e}", files.cert.display())))?;
    let chain = X509::stack_from_pem(&pem).map_err(|e| {
        error(
            "cert",
            format!("{} is not PEM certificates: {e}", files.cert.display()),
        )
    })?;
    let Some(leaf) = chain.first() else {
        return Err(error(
            "cert",
            format!("{} holds no certificate", files.cert.display()),
        ));
    };
    let key_pem = std::fs::read(&files.key)
        .map_err(|e| error("key", format!("cannot read {}: {e}", files.key.display())))?;
    let key = PKey::private_key_from_pem(&key_pem).map_err(|e| {
        error(
            "key",
            format!("{} is not a PEM private key: {e}", files.key.display()),
        )
    })?;
    let matches = leaf
        .public_key()
        .map(|public| public.public_eq(&key))
        .unwrap_or(false);
    if !matches {
        return Err(error(
            "key",
            format!(
                "{} is not the key of the certificate {}",
                files.key.display(),
                files.cert.display()
            ),
        ));
    }
    let not_after = unix_of(leaf.not_after()).unwrap_or(0);
    if not_after <= now {
        return Err(error(
            "cert",
            format!("{} expired on {}", files.cert.display(), leaf.not_after()),
        ));
    }
    if unix_of(leaf.not_before()).is_some_and(|t| t > now) {
        return Err(error(
            "cert",
            format!(
                "{} is not valid before {}",
                files.cert.display(),
                leaf.not_before()
            ),
        ));
    }
    let names = if files.server_names.is_empty() {
        certificate_names(leaf)
    } else {
        files.server_names.clone()
    };
    if names.is_empty() {
        return Err(error(
            "server_names",
            format!(
                "{} names no host (no DNS subject alternative name or common name): list its names here",
                files.cert.display()
            ),
        ));
    }
    Ok(Certificate {
        cert_path: files.cert.clone(),
        chain,
        key,
        names,
        not_after,
    })
}

/// A certificate's DNS subject alternative names, else its common name,
/// lowercased.
fn certificate_names(cert: &X509) -> Vec<String> {
    let sans: Vec<String> = cert
        .subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.dnsname().map(str::to_ascii_lowercase))
                .collect()
        })
        .unwrap_or_default();
    if !sans.is_empty() {
        return sans;
    }
    cert.subject_name()
        .entries_by_nid(openssl::nid::Nid::COMMONNAME)
        .filter_map(|e| e.data().to_string().ok().map(|s| s.to_ascii_lowercase()))
        .collect()
}

impl CertificateSet {
    /// Reads and checks every certificate of `config`: readable PEM, the
    /// key matching, valid at `now`, with names. `Err` lists every problem
    /// with its configuration path.
    pub fn load(config: &TlsConfig, now: i64) -> Result<CertificateSet, Vec<ConfigError>> {
        let stamps = files(&config.certificates).into_iter().map(stamp).collect();
        let mut errors = Vec::new();
        let mut certificates = Vec::new();
        for (i, files) in config.certificates.iter().enumerate() {
            match load_one(files, i, now) {
                Ok(c) => certificates.push(Arc::new(c)),
                Err(e) => errors.extend(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        // The first certificate naming a host serves it.
        for (i, cert) in certificates.iter().enumerate() {
            for name in &cert.names {
                match name.strip_prefix("*.") {
                    Some(parent) => wildcard.entry(parent.to_string()).or_insert(i),
                    None => exact.entry(name.clone()).or_insert(i),
                };
            }
        }
        Ok(CertificateSet {
            certificates,
            exact,
            wildcard,
            stamps,
        })
    }

    /// The certificate for a client's server name.
    pub fn select(&self, server_name: Option<&str>) -> &Arc<Certificate> {
        let index = server_name
            .map(str::to_ascii_lowercase)
            .and_then(|name| {
                self.exact.get(&name).copied().or_else(|| {
                    name.split_once('.')
                        .and_then(|(_, parent)| self.wildcard.get(parent).copied())
                })
            })
            .unwrap_or(0);
        &self.certificates[index]
    }
}

/// The client CA file is readable PEM with at least one certificate.
pub fn check_client_ca(path: &Path) -> Result<(), String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    match X509::stack_from_pem(&pem) {
        Ok(cas) if !cas.is_empty() => Ok(()),
        Ok(_) => Err(format!("{} holds no certificate", path.display())),
        Err(e) => Err(format!("{} is not PEM certificates: {e}", path.display())),
    }
}

/// The live certificates of the listener and the files they came from.
pub struct Certificates {
    current: ArcSwap<CertificateSet>,
    files: ArcSwap<Vec<CertificateFiles>>,
    metrics: Arc<Metrics>,
}

impl Certificates {
    pub fn new(set: CertificateSet, config: &TlsConfig, metrics: Arc<Metrics>) -> Arc<Self> {
        let certificates = Arc::new(Certificates {
            current: ArcSwap::from_pointee(set),
            files: ArcSwap::from_pointee(config.certificates.clone()),
            metrics,
        });
        certificates.publish_expiry();
        certificates
    }

    pub fn current(&self) -> arc_swap::Guard<Arc<CertificateSet>> {
        self.current.load()
    }

    /// Reads `config`'s certificates and, if they are all good, swaps them
    /// in; else the running ones stay and the problems are returned.
    pub fn reload(&self, config: &TlsConfig) -> Result<(), Vec<ConfigError>> {
        match CertificateSet::load(config, now_unix()) {
            Ok(set) => {
                self.swap(set, config);
                Ok(())
            }
            Err(errors) => {
                self.metrics.tls_reloads_failed.inc();
                Err(errors)
            }
        }
    }

    /// Swaps in a set read from `config`.
    pub fn swap(&self, set: CertificateSet, config: &TlsConfig) {
        self.current.store(Arc::new(set));
        self.files.store(Arc::new(config.certificates.clone()));
        self.publish_expiry();
        self.metrics.tls_reloads_ok.inc();
    }

    /// The files' stamps now, if any file changed since the running set
    /// was read.
    fn changed_on_disk(&self) -> Option<Vec<FileStamp>> {
        let files = self.files.load();
        let now: Vec<FileStamp> = self::files(&files).into_iter().map(stamp).collect();
        (now != self.current.load().stamps).then_some(now)
    }

    fn publish_expiry(&self) {
        let set = self.current.load();
        self.metrics.set_certificate_expiry(
            set.certificates
                .iter()
                .map(|c| (c.cert_path.display().to_string(), c.not_after))
                .collect(),
        );
    }
}

/// Hands the certificate for the client's server name to OpenSSL, in the
/// middle of each handshake.
pub struct CertificateSelector(pub Arc<Certificates>);

#[async_trait]
impl TlsAccept for CertificateSelector {
    async fn certificate_callback(&self, ssl: &mut TlsRef) {
        let set = self.0.current();
        let cert = set.select(ssl.servername(NameType::HOST_NAME));
        if let Err(e) = use_certificate(ssl, cert) {
            tracing::warn!(certificate = %cert.cert_path.display(), error = %e, "cannot use the certificate for a handshake");
        }
    }
}

fn use_certificate(ssl: &mut SslRef, cert: &Certificate) -> Result<(), openssl::error::ErrorStack> {
    use pingora_core::tls::ext;
    ext::ssl_use_certificate(ssl, &cert.chain[0])?;
    ext::ssl_use_private_key(ssl, &cert.key)?;
    for extra in &cert.chain[1..] {
        ext::ssl_add_chain_cert(ssl, extra)?;
    }
    Ok(())
}

/// The listener's TLS settings: Mozilla's intermediate profile (TLS 1.2 and
/// 1.3, AEAD ciphers with forward secrecy), or TLS 1.3 only; session
/// resumption (OpenSSL's session cache and tickets); HTTP/2 by ALPN; client
/// certificates required when a client CA is set.
pub fn settings(
    config: &TlsConfig,
    certificates: Arc<Certificates>,
) -> anyhow::Result<TlsSettings> {
    let mut settings = TlsSettings::with_callbacks(Box::new(CertificateSelector(certificates)))
        .map_err(|e| anyhow::anyhow!("TLS settings: {e}"))?;
    if config.tls13_only {
        settings.set_min_proto_version(Some(SslVersion::TLS1_3))?;
    }
    if config.http2 {
        settings.enable_h2();
    }
    // Resumed sessions must come from this listener (and, with client
    // certificates, are only resumed within it).
    settings.set_session_id_context(b"floopy-gateway")?;
    if let Some(ca) = &config.client_ca {
        settings.set_ca_file(ca)?;
        settings.set_client_ca_list(X509Name::load_client_ca_file(ca)?);
        settings.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    Ok(settings)
}

/// Watches the certificate files: when one changes, the set is reloaded
/// (prepare, then swap; a bad file is logged and the old set stays).
pub struct CertificateWatch {
    pub certificates: Arc<Certificates>,
    /// The running TLS configuration, replaced by a SIGHUP reload.
    pub config: Arc<ArcSwap<TlsConfig>>,
    pub interval: Duration,
}

#[async_trait]
impl BackgroundService for CertificateWatch {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Files that stay broken are tried, logged and counted in
        // `floopy_tls_reload_failures_total` once per change, not per tick.
        let mut failed = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let Some(stamps) = self.certificates.changed_on_disk() else {
                continue;
            };
            if failed.as_ref() == Some(&stamps) {
                continue;
            }
            let config = self.config.load();
            match self.certificates.reload(&config) {
                Ok(()) => {
                    tracing::info!("TLS certificates changed on disk: reloaded");
                    failed = None;
                }
                Err(errors) => {
                    for e in &errors {
                        tracing::error!(path = %e.path, error = %e.message, "TLS certificates changed on disk but are not valid; the running ones keep serving");
                    }
                    failed = Some(stamps);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asn1_times_convert_to_unix_seconds() {
        let t = Asn1Time::from_unix(1_800_000_000).unwrap();
        assert_eq!(unix_of(&t), Some(1_800_000_000));
    }
}
