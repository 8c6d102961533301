//! Postgres for the tests: a database of its own per test, owned by a role
//! of its own, on the suite's server (`FLOOPY_TEST_PG`, which
//! scripts/start-postgres.sh starts with TLS on).

use tokio_postgres::NoTls;

pub fn admin_url() -> String {
    std::env::var("FLOOPY_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A database of its own, owned by a role of its own (so a test can lock
/// the gateway out of it), dropped by `drop_db`.
pub struct TestDb {
    pub name: String,
    /// The database as its own role, what the servers under test connect
    /// as: for a test to migrate it and to look at and change rows
    /// directly.
    pub client: tokio_postgres::Client,
    admin: tokio_postgres::Client,
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("the test Postgres (FLOOPY_TEST_PG) is reachable");
    tokio::spawn(conn);
    client
}

impl TestDb {
    pub async fn create() -> TestDb {
        let admin = connect(&admin_url()).await;
        let name = format!("floopy_t_{}", uuid::Uuid::now_v7().simple());
        for sql in [
            format!("CREATE ROLE {name} LOGIN"),
            format!("CREATE DATABASE {name} OWNER {name}"),
        ] {
            admin.batch_execute(&sql).await.unwrap();
        }
        let client = connect(&url_of(Some(&name), &name)).await;
        TestDb {
            name,
            client,
            admin,
        }
    }

    /// The URL of the test database, as its own role.
    pub fn url(&self) -> String {
        url_of(Some(&self.name), &self.name)
    }

    /// The test database as the superuser (works while the role is locked
    /// out).
    pub fn superuser_url(&self) -> String {
        url_of(None, &self.name)
    }

    /// Another connection as the database's own role.
    pub async fn owner_client(&self) -> tokio_postgres::Client {
        connect(&self.url()).await
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
        drop(self.client);
        for sql in [
            format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            format!("DROP ROLE IF EXISTS {}", self.name),
        ] {
            self.admin.batch_execute(&sql).await.unwrap();
        }
    }
}

/// The test database `name` as `user` (none: the suite's superuser).
fn url_of(user: Option<&str>, name: &str) -> String {
    let config: tokio_postgres::Config = admin_url().parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = user.or(config.get_user()).unwrap_or("postgres");
    format!("postgres://{user}@{host}:{port}/{name}")
}
