//! Connecting to the control database: the connection string, its TLS
//! settings, and the task that drives a connection and forwards its
//! notifications.
//!
//! TLS follows libpq's `sslmode` and `sslrootcert` URL parameters, so an
//! operator writes the URL they already use with `psql`:
//!
//! | `sslmode`     | TLS                | certificate checked                              |
//! |---------------|--------------------|--------------------------------------------------|
//! | `disable`     | never              | -                                                |
//! | `prefer`      | when offered (default) | no (as libpq)                                |
//! | `require`     | always             | no (as libpq)                                    |
//! | `verify-ca`   | always             | signed by the CA                                 |
//! | `verify-full` | always             | signed by the CA and names the host              |
//!
//! The CA is `sslrootcert=PATH` (PEM), or the system's trust store when the
//! parameter is absent or `sslrootcert=system`. The file is read when the
//! URL is parsed, so a missing CA is a configuration error, not a failure at
//! the first connection.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;
use postgres_openssl::MakeTlsConnector;
use tokio::sync::mpsc;
use tokio_postgres::config::SslMode;
use tokio_postgres::{AsyncMessage, Client};

/// Why the control database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control database {target}: {}", with_causes(source))]
    Database {
        target: String,
        source: tokio_postgres::Error,
    },
    #[error("control database {target}: timed out after {seconds} s")]
    Timeout { target: String, seconds: u64 },
    #[error("control database {target}: invalid row in {table}: {message}")]
    InvalidRow {
        target: String,
        table: &'static str,
        message: String,
    },
    #[error("control database {target}: the connection closed")]
    Closed { target: String },
    #[error("control database url: {0}")]
    Url(#[from] UrlError),
}

/// An error and the errors that caused it, `: `-separated: the driver's own
/// message ("error performing TLS handshake") says little without its cause
/// ("certificate verify failed").
pub fn with_causes(error: &tokio_postgres::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(e) = cause {
        let more = e.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = e.source();
    }
    text
}

/// Why a connection string cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("must start with postgres:// or postgresql://")]
    Scheme,
    #[error("sslmode: {0:?} is not one of disable, prefer, require, verify-ca, verify-full")]
    SslMode(String),
    #[error("sslrootcert: cannot read {path}: {message}")]
    RootCert { path: String, message: String },
    #[error("sslrootcert: {0} holds no PEM certificate")]
    NoCertificate(String),
    #[error("sslrootcert is only for sslmode verify-ca or verify-full")]
    RootCertWithoutVerify,
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("not a valid connection string: {0}")]
    Invalid(String),
}

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl TlsMode {
    fn parse(value: &str) -> Result<TlsMode, UrlError> {
        Ok(match value {
            "disable" => TlsMode::Disable,
            "prefer" => TlsMode::Prefer,
            "require" => TlsMode::Require,
            "verify-ca" => TlsMode::VerifyCa,
            "verify-full" => TlsMode::VerifyFull,
            other => return Err(UrlError::SslMode(other.to_string())),
        })
    }

    fn verifies(self) -> bool {
        matches!(self, TlsMode::VerifyCa | TlsMode::VerifyFull)
    }
}

/// A parsed connection string, its TLS settings resolved (CA file read).
/// Cheap to clone.
#[derive(Clone)]
pub struct DbConfig(Arc<Settings>);

struct Settings {
    pg: tokio_postgres::Config,
    tls: MakeTlsConnector,
    mode: TlsMode,
    target: String,
}

impl std::fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: show only where it points.
        f.debug_struct("DbConfig")
            .field("target", &self.0.target)
            .field("mode", &self.0.mode)
            .finish()
    }
}

impl DbConfig {
    /// Parses `postgres://user[:password]@host[:port]/db[?params]`, taking
    /// `sslmode` and `sslrootcert` out of the parameters (see the module
    /// documentation).
    pub fn parse(url: &str) -> Result<DbConfig, UrlError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(UrlError::Scheme);
        }
        let (base, query) = url.split_once('?').unwrap_or((url, ""));
        let mut mode = TlsMode::Prefer;
        let mut root_cert = None;
        let mut kept = Vec::new();
        for param in query.split('&').filter(|p| !p.is_empty()) {
            match param.split_once('=') {
                Some(("sslmode", value)) => mode = TlsMode::parse(value)?,
                Some(("sslrootcert", value)) => root_cert = Some(value.to_string()),
                _ => kept.push(param),
            }
        }
        if root_cert.is_some() && !mode.verifies() {
            return Err(UrlError::RootCertWithoutVerify);
        }
        let rest = if kept.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{}", kept.join("&"))
        };
        let mut pg: tokio_postgres::Config = rest
            .parse()
            .map_err(|e: tokio_postgres::Error| UrlError::Invalid(e.to_string()))?;
        pg.ssl_mode(match mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        });
        let tls = tls_connector(mode, root_cert.as_deref())?;
        let target = describe(&pg);
        Ok(DbConfig(Arc::new(Settings {
            pg,
            tls,
            mode,
            target,
        })))
    }

    /// `host:port/db`, without user or password: what messages show.
    pub fn target(&self) -> &str {
        &self.0.target
    }

    pub fn tls_mode(&self) -> TlsMode {
        self.0.mode
    }

    /// The driver's settings (for a connection pool), TLS mode included.
    pub fn postgres_config(&self) -> &tokio_postgres::Config {
        &self.0.pg
    }

    /// The TLS connector the `sslmode` asked for (for a connection pool).
    pub fn tls(&self) -> MakeTlsConnector {
        self.0.tls.clone()
    }

    /// Connects within `timeout` as `application_name` (unless the URL
    /// names one) and drives the connection in a task.
    pub async fn connect(
        &self,
        application_name: &str,
        timeout: Duration,
    ) -> Result<Connection, ControlError> {
        let target = self.0.target.clone();
        let db_error = |source| ControlError::Database {
            target: target.clone(),
            source,
        };
        let mut config = self.0.pg.clone();
        if config.get_application_name().is_none() {
            config.application_name(application_name);
        }
        config.connect_timeout(timeout);
        config.keepalives_idle(Duration::from_secs(10));
        let connecting = config.connect(self.0.tls.clone());
        let (client, mut connection) = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| ControlError::Timeout {
                target: target.clone(),
                seconds: timeout.as_secs(),
            })?
            .map_err(db_error)?;
        let (tx, notifications) = mpsc::unbounded_channel();
        let driver_target = target.clone();
        tokio::spawn(async move {
            let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(message) = messages.next().await {
                match message {
                    Ok(AsyncMessage::Notification(_)) => {
                        // The receiver is gone when the session ended; nothing to tell.
                        let _ = tx.send(());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(target = %driver_target, error = %e, "control database connection lost");
                        break;
                    }
                }
            }
        });
        Ok(Connection {
            client,
            notifications,
            target,
        })
    }
}

fn tls_connector(mode: TlsMode, root_cert: Option<&str>) -> Result<MakeTlsConnector, UrlError> {
    let tls_error = |e: openssl::error::ErrorStack| UrlError::Tls(e.to_string());
    // The builder starts out trusting the system's store.
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(tls_error)?;
    if mode.verifies() {
        match root_cert {
            None | Some("system") => {}
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| UrlError::RootCert {
                    path: path.to_string(),
                    message: e.to_string(),
                })?;
                let certs = X509::stack_from_pem(&pem).map_err(|e| UrlError::RootCert {
                    path: path.to_string(),
                    message: e.to_string(),
                })?;
                if certs.is_empty() {
                    return Err(UrlError::NoCertificate(path.to_string()));
                }
                // Only this CA: a certificate the system trusts is not enough.
                let mut store = X509StoreBuilder::new().map_err(tls_error)?;
                for cert in certs {
                    store.add_cert(cert).map_err(tls_error)?;
                }
                builder.set_cert_store(store.build());
            }
        }
        builder.set_verify(SslVerifyMode::PEER);
    } else {
        // libpq's prefer and require encrypt without checking the
        // certificate; verify-ca or verify-full are how to check it.
        builder.set_verify(SslVerifyMode::NONE);
    }
    let mut connector = MakeTlsConnector::new(builder.build());
    if mode != TlsMode::VerifyFull {
        connector.set_callback(|config, _host| {
            config.set_verify_hostname(false);
            Ok(())
        });
    }
    Ok(connector)
}

fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!("{host}:{port}/{}", config.get_dbname().unwrap_or(""))
}

/// A connection and the stream of its notifications; the stream ends when
/// the connection does.
pub struct Connection {
    pub client: Client,
    pub notifications: mpsc::UnboundedReceiver<()>,
    target: String,
}

impl Connection {
    /// `host:port/db` of this connection.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// A driver error on this connection, with its target.
    pub fn error(&self, source: tokio_postgres::Error) -> ControlError {
        ControlError::Database {
            target: self.target.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_read_and_removed_from_the_url() {
        let config = DbConfig::parse(
            "postgres://u@db.example:6543/control?sslmode=require&connect_timeout=3",
        )
        .unwrap();
        assert_eq!(config.tls_mode(), TlsMode::Require);
        assert_eq!(config.target(), "db.example:6543/control");
        let config = DbConfig::parse("postgresql://u@h/d").unwrap();
        assert_eq!(config.tls_mode(), TlsMode::Prefer, "libpq's default");
    }

    #[test]
    fn bad_tls_settings_are_errors_that_say_which() {
        assert_eq!(
            DbConfig::parse("postgres://u@h/d?sslmode=allow").unwrap_err(),
            UrlError::SslMode("allow".into())
        );
        assert_eq!(
            DbConfig::parse("postgres://u@h/d?sslmode=require&sslrootcert=/x.pem").unwrap_err(),
            UrlError::RootCertWithoutVerify
        );
        let err =
            DbConfig::parse("postgres://u@h/d?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem")
                .unwrap_err();
        assert!(
            matches!(&err, UrlError::RootCert { path, .. } if path == "/nonexistent/ca.pem"),
            "{err}"
        );
        assert_eq!(
            DbConfig::parse("mysql://u@h/d").unwrap_err(),
            UrlError::Scheme
        );
    }

    #[test]
    fn debug_never_shows_the_password() {
        let config = DbConfig::parse("postgres://u:hunter2@h/d").unwrap();
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
