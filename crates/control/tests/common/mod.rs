//! A running floopy-control on a database of its own (the real Postgres the
//! test suite starts), with users for every role.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod receiver;

pub use floopy_test_kit::pg::{admin_url, TestDb};
pub use floopy_test_kit::{clickhouse, free_port};

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use floopy_fake_provider::FakeProvider;

use serde_json::Value;
use uuid::Uuid;

/// `target/debug` (or wherever this test binary's profile puts binaries).
pub fn bin_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

pub const PASSWORD: &str = "a long enough password";

/// The server, its base URL, and where its stderr goes.
pub struct Control {
    pub child: Child,
    pub base: String,
    pub config: std::path::PathBuf,
    pub stderr: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Control {
    pub async fn start(db: &TestDb, extra: &str) -> Control {
        Self::start_at(&db.url(), extra).await
    }

    /// On the database at `db_url`.
    pub async fn start_at(db_url: &str, extra: &str) -> Control {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("control.yaml");
        // A short grace period unless the test sets its own.
        let grace = if extra.contains("shutdown_grace_seconds") {
            ""
        } else {
            "shutdown_grace_seconds: 1\n"
        };
        std::fs::write(
            &config,
            format!(
                "listen: \"127.0.0.1:0\"\ndatabase:\n  url: \"{db_url}\"\nsessions:\n  secure_cookie: false\n{grace}{extra}"
            ),
        )
        .unwrap();
        let stderr = dir.path().join("stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_floopy-control"))
            .arg("--config")
            .arg(&config)
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).unwrap();
            line
        });
        let line = tokio::time::timeout(Duration::from_secs(20), line)
            .await
            .expect("floopy-control starts")
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("floopy-control listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {line:?}; stderr:\n{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default()
                )
            })
            .to_string();
        Control {
            child,
            base: format!("http://{addr}"),
            config,
            stderr,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Runs `floopy-control bootstrap`; returns (org id, user id).
    pub fn bootstrap(&self, org: &str, plan: &str, email: &str) -> (Uuid, Uuid) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_floopy-control"))
            .arg("--config")
            .arg(&self.config)
            .args([
                "bootstrap",
                "--org-name",
                org,
                "--plan",
                plan,
                "--email",
                email,
            ])
            .args(["--name", "Owner"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "bootstrap failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| Uuid::parse_str(v.trim()).unwrap())
                .unwrap_or_else(|| panic!("no {name} in {text}"))
        };
        (field("org id:"), field("user id:"))
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A personal access token for `user`, written straight to the database
/// (the API's own token creation is tested separately).
pub async fn token_for(db: &TestDb, user: Uuid) -> String {
    let token = floopy_control::auth::new_secret("fpu_").unwrap();
    db.client
        .execute(
            "INSERT INTO access_tokens (id, user_id, name, token_hash, prefix) VALUES ($1, $2, 't', $3, 'fpu_')",
            &[&Uuid::now_v7(), &user, &floopy_control::auth::secret_hash(&token)],
        )
        .await
        .unwrap();
    token
}

/// A user in `org` with `org_role`, and roles on projects; returns its id.
pub async fn user_in(db: &TestDb, org: Uuid, org_role: &str, projects: &[(Uuid, &str)]) -> Uuid {
    let user = Uuid::now_v7();
    db.client
        .execute(
            "INSERT INTO users (id, email, name) VALUES ($1, $2, 'U')",
            &[&user, &format!("{}@example.com", user.simple())],
        )
        .await
        .unwrap();
    db.client
        .execute(
            "INSERT INTO org_members (org_id, user_id, role) VALUES ($1, $2, $3::text::floopy_org_role)",
            &[&org, &user, &org_role],
        )
        .await
        .unwrap();
    for (project, role) in projects {
        db.client
            .execute(
                "INSERT INTO project_members (org_id, project_id, user_id, role)
                 VALUES ($1, $2, $3, $4::text::floopy_project_role)",
                &[&org, project, &user, role],
            )
            .await
            .unwrap();
    }
    user
}

/// Sends a request as `token` (none: no credentials); (status, body).
pub async fn call(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method.parse().unwrap(), url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A TCP proxy in front of the test Postgres that can cut every connection
/// and refuse new ones for a while (a database outage as its clients see
/// it).
pub struct DbProxy {
    pub port: u16,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl DbProxy {
    pub async fn start() -> DbProxy {
        let mut proxy = DbProxy {
            port: free_port(),
            server: None,
        };
        proxy.restore().await;
        proxy
    }

    /// `db`'s URL through the proxy.
    pub fn url(&self, db: &TestDb) -> String {
        let config: tokio_postgres::Config = admin_url().parse().unwrap();
        let port = config.get_ports().first().copied().unwrap_or(5432);
        db.url()
            .replace(&format!(":{port}/"), &format!(":{}/", self.port))
    }

    /// Closes every connection and stops accepting.
    pub fn cut(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }

    /// Accepts (again), forwarding to the test Postgres.
    pub async fn restore(&mut self) {
        let config: tokio_postgres::Config = admin_url().parse().unwrap();
        let upstream_port = config.get_ports().first().copied().unwrap_or(5432);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap();
        self.server = Some(tokio::spawn(async move {
            // Connections live in this task's set: aborting the task drops
            // them all.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                connections.spawn(async move {
                    if let Ok(mut upstream) =
                        tokio::net::TcpStream::connect(("127.0.0.1", upstream_port)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        }));
    }
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        self.cut();
    }
}

/// A floopy-gateway (the workspace's binary) on the control database of
/// `db`, in front of `provider`, pricing gpt-4o; killed when dropped.
pub struct Gateway {
    child: std::process::Child,
    pub chat: String,
    pub admin: String,
    pub log: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _spool: Option<tempfile::TempDir>,
}

impl Gateway {
    pub async fn start(db: &TestDb, provider: &FakeProvider) -> Gateway {
        Self::start_with(db, provider, "").await
    }

    /// With `log_sink` (a YAML flow mapping) instead of the JSON Lines file.
    pub async fn start_with(db: &TestDb, provider: &FakeProvider, log_sink: &str) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let (listen, admin) = (free_port(), free_port());
        let config = dir.path().join("gateway.yaml");
        let log = dir.path().join("logs.jsonl");
        let log_sink = if log_sink.is_empty() {
            format!("{{kind: file, path: \"{}\"}}", log.display())
        } else {
            log_sink.to_string()
        };
        std::fs::write(
            &config,
            format!(
                r#"server: {{listen: "127.0.0.1:{listen}", admin_listen: "127.0.0.1:{admin}", threads: 1, grace_period_seconds: 1, graceful_shutdown_timeout_seconds: 1}}
providers:
  - {{name: fake, kind: openai, base_url: "{}", models: [gpt-4o]}}
pricing:
  - {{model: gpt-4o, input_per_mtok_usd: 2.50, output_per_mtok_usd: 10.00}}
control: {{source: postgres, url: "{}", poll_interval_ms: 200}}
log_sink: {}
"#,
                provider.base_url(),
                db.url(),
                log_sink,
            ),
        )
        .unwrap();
        let bin = bin_dir().join("floopy-gateway");
        assert!(
            bin.exists(),
            "{} is built with the workspace (cargo build --workspace --bins)",
            bin.display()
        );
        let child = Command::new(&bin)
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let http = reqwest::Client::new();
        let started = Instant::now();
        while http
            .get(format!("http://127.0.0.1:{admin}/readyz"))
            .send()
            .await
            .map(|r| r.status() != 200)
            .unwrap_or(true)
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the gateway did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Gateway {
            child,
            chat: format!("http://127.0.0.1:{listen}/v1/chat/completions"),
            admin: format!("http://127.0.0.1:{admin}"),
            log,
            _dir: dir,
            _spool: None,
        }
    }

    /// With the direct ClickHouse sink into `ch` (its spool in a directory
    /// of the gateway's own).
    pub async fn start_into_clickhouse(
        db: &TestDb,
        provider: &FakeProvider,
        ch: &clickhouse::ClickHouse,
    ) -> Gateway {
        let spool = tempfile::tempdir().unwrap();
        let mut gateway = Self::start_with(
            db,
            provider,
            &format!(
                "{{kind: clickhouse, url: \"{}\", spool_dir: \"{}\"}}",
                ch.http.trim_end_matches('/'),
                spool.path().display()
            ),
        )
        .await;
        gateway._spool = Some(spool);
        gateway
    }

    /// The sum of `cost_micro_usd` of the logged requests of `project`.
    pub fn logged_cost(&self, project: &str) -> i64 {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["project_id"] == project)
            .map(|r| r["cost_micro_usd"].as_i64().unwrap())
            .sum()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
