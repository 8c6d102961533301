//! Postgres for the tests: a database and role of its own per test, and the
//! `floopy-gateway admin` command.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

use tokio_postgres::NoTls;

pub fn admin_url() -> String {
    std::env::var("FLOOPY_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A database of its own, owned by a role of its own (so a test can lock
/// the gateway out of it), dropped at the end.
pub struct TestDb {
    pub name: String,
    admin: tokio_postgres::Client,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let (admin, conn) = tokio_postgres::connect(&admin_url(), NoTls)
            .await
            .expect("the test Postgres (FLOOPY_TEST_PG) is reachable");
        tokio::spawn(conn);
        let name = format!("floopy_t_{}", uuid::Uuid::now_v7().simple());
        for sql in [
            format!("CREATE ROLE {name} LOGIN"),
            format!("CREATE DATABASE {name} OWNER {name}"),
        ] {
            admin.batch_execute(&sql).await.unwrap();
        }
        TestDb { name, admin }
    }

    /// The URL of the test database, as its own role.
    pub fn url(&self) -> String {
        let mut config: tokio_postgres::Config = admin_url().parse().unwrap();
        config.user(&self.name).dbname(&self.name);
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        format!("postgres://{}@{host}:{port}/{}", self.name, self.name)
    }

    /// The test database as the superuser (works while the role is locked
    /// out).
    pub fn superuser_url(&self) -> String {
        let mut config: tokio_postgres::Config = admin_url().parse().unwrap();
        config.dbname(&self.name);
        let host = match &config.get_hosts()[0] {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "postgres://{}@{host}:{port}/{}",
            config.get_user().unwrap_or("postgres"),
            self.name
        )
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url(), NoTls).await.unwrap();
        tokio::spawn(conn);
        client
    }

    /// Ends the gateway's connections; with `lock_out`, it cannot come back
    /// until `let_in`.
    pub async fn cut_gateway(&self, lock_out: bool) {
        if lock_out {
            self.admin
                .batch_execute(&format!("ALTER ROLE {} NOLOGIN", self.name))
                .await
                .unwrap();
        }
        self.admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                  WHERE datname = $1 AND application_name = 'floopy-gateway'",
                &[&self.name],
            )
            .await
            .unwrap();
    }

    /// Whether each of the gateway's connections to this database uses
    /// TLS (`pg_stat_ssl`), as the superuser sees them.
    pub async fn gateway_connections_use_tls(&self) -> Vec<bool> {
        self.admin
            .query(
                "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid
                  WHERE a.datname = $1 AND a.application_name = 'floopy-gateway'",
                &[&self.name],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    /// The server's certificate file (`ssl_cert_file`), with `ssl` on.
    pub async fn server_certificate(&self) -> String {
        let ssl: String = self.admin.query_one("SHOW ssl", &[]).await.unwrap().get(0);
        assert_eq!(
            ssl, "on",
            "the test Postgres must have TLS on (scripts/start-postgres.sh turns it on)"
        );
        self.admin
            .query_one("SHOW ssl_cert_file", &[])
            .await
            .unwrap()
            .get(0)
    }

    pub async fn let_in(&self) {
        self.admin
            .batch_execute(&format!("ALTER ROLE {} LOGIN", self.name))
            .await
            .unwrap();
    }

    pub async fn drop_db(self) {
        for sql in [
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            format!("DROP ROLE IF EXISTS {}", self.name),
        ] {
            self.admin.batch_execute(&sql).await.unwrap();
        }
    }
}

/// Runs `floopy-gateway admin` against `url`; returns stdout, or panics
/// with stderr.
pub fn admin(url: &str, args: &[&str]) -> String {
    let out = admin_output(url, args);
    assert!(
        out.status.success(),
        "admin {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn admin_output(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_floopy-gateway"))
        .arg("admin")
        .arg("--database-url")
        .arg(url)
        .args(args)
        .output()
        .unwrap()
}

/// (key id, key string) of `admin create-key`.
pub fn create_key(url: &str, args: &[&str]) -> (String, String) {
    let out = admin(url, &[&["create-key"], args].concat());
    let field = |name: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| panic!("no {name} in {out}"))
    };
    (field("key id:"), field("key:"))
}

pub fn postgres_control(url: &str, extra: &str) -> String {
    format!(
        "control:\n  source: postgres\n  url: \"{url}\"\n  poll_interval_ms: 200\n  max_staleness_seconds: 1\n{extra}"
    )
}
