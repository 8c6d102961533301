//! ClickHouse for the tests: a private ClickHouse 18.16 server (Debian's
//! `clickhouse-server`) with its own config, data dir and free ports, the
//! Kafka consumer reading from the start of a topic, and the newer
//! librdkafka of scripts/install-kafka-tools.sh (`FLOOPY_CH_LIBS`), which
//! speaks to tansu where Debian's does not.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;
pub use crate::repo_root;

pub struct ClickHouse {
    child: Child,
    pub http: String,
    pub dir: tempfile::TempDir,
}

fn ch_libs() -> String {
    std::env::var("FLOOPY_CH_LIBS").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        format!("{home}/.cache/floopy/librdkafka")
    })
}

impl ClickHouse {
    /// Starts a server on free ports. Retries on a port taken between
    /// choosing it and binding it (tests run in parallel).
    pub async fn start() -> ClickHouse {
        for _ in 0..5 {
            if let Some(ch) = Self::try_start().await {
                return ch;
            }
        }
        panic!("ClickHouse did not start after 5 attempts");
    }

    /// A server with the shipped tables of a deployment without Kafka
    /// (every file of conf/clickhouse/ but the Kafka side's).
    pub async fn start_with_tables() -> ClickHouse {
        let ch = Self::start().await;
        for path in sql_files("conf/clickhouse") {
            if !path.to_string_lossy().contains("kafka") {
                ch.run_file(&std::fs::read_to_string(&path).unwrap()).await;
            }
        }
        ch
    }

    async fn try_start() -> Option<ClickHouse> {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        let (tcp, http, interserver) = (free_port(), free_port(), free_port());
        let config = format!(
            r#"<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>{root}/server.log</log><errorlog>{root}/error.log</errorlog><console>0</console></logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>{tcp}</tcp_port>
    <http_port>{http}</http_port>
    <interserver_http_port>{interserver}</interserver_http_port>
    <path>{root}/data/</path>
    <tmp_path>{root}/tmp/</tmp_path>
    <user_files_path>{root}/user_files/</user_files_path>
    <format_schema_path>{root}/format_schemas/</format_schema_path>
    <users_config>{root}/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>268435456</mark_cache_size>
    <kafka><auto_offset_reset>smallest</auto_offset_reset></kafka>
</yandex>
"#
        );
        let users = r#"<?xml version="1.0"?>
<yandex>
    <profiles><default><max_memory_usage>2000000000</max_memory_usage><stream_flush_interval_ms>500</stream_flush_interval_ms></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></default></users>
    <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"#;
        std::fs::write(dir.path().join("config.xml"), config).unwrap();
        std::fs::write(dir.path().join("users.xml"), users).unwrap();
        let child = spawn_server(&root);
        let ch = ClickHouse {
            child,
            http: format!("http://127.0.0.1:{http}/"),
            dir,
        };
        ch.wait_ready().await.then_some(ch)
    }

    /// Stops the server (SIGKILL), as an outage.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the stopped server again, on its data and ports.
    pub async fn restart(&mut self) {
        self.child = spawn_server(&self.dir.path().display().to_string());
        assert!(
            self.wait_ready().await,
            "ClickHouse lost its port on restart"
        );
    }

    /// Waits for the server to answer; false when it lost its port.
    async fn wait_ready(&self) -> bool {
        let ch = self;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = reqwest::get(format!("{}ping", ch.http)).await {
                if r.status() == 200 {
                    break;
                }
            }
            if ch.log().contains("Address already in use") {
                eprintln!("ClickHouse lost a port to another test; trying other ports");
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "ClickHouse did not start:\n{}",
                ch.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }

    /// Runs one statement; returns its output, or panics with the error.
    pub async fn query(&self, sql: &str) -> String {
        let resp = reqwest::Client::new()
            .post(&self.http)
            .body(sql.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert!(status.is_success(), "ClickHouse refused {sql}:\n{body}");
        body
    }

    /// Runs every statement of a SQL file (split on `;` at line ends).
    pub async fn run_file(&self, sql: &str) {
        for statement in split_statements(sql) {
            self.query(&statement).await;
        }
    }
}

fn spawn_server(root: &str) -> Child {
    // A restart appends to the same log: forget the old lines' port errors.
    let _ = std::fs::remove_file(format!("{root}/error.log"));
    Command::new("clickhouse-server")
        .arg(format!("--config-file={root}/config.xml"))
        .env("LD_LIBRARY_PATH", ch_libs())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("clickhouse-server starts (scripts/install-kafka-tools.sh installs it)")
}

impl Drop for ClickHouse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The statements of a SQL file, comments removed.
pub fn split_statements(sql: &str) -> Vec<String> {
    let text: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(";\n")
        .chain(std::iter::once(""))
        .map(|s| s.trim().trim_end_matches(';').trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The shipped SQL files, in order, with the placeholders filled in.
pub fn shipped_sql(brokers: &str, topic: &str, group: &str) -> Vec<(PathBuf, String)> {
    sql_files("conf/clickhouse")
        .into_iter()
        .map(|p| {
            let sql = std::fs::read_to_string(&p)
                .unwrap()
                .replace("{{KAFKA_BROKERS}}", brokers)
                .replace("{{KAFKA_TOPIC}}", topic)
                .replace("{{KAFKA_FEEDBACK_TOPIC}}", &feedback_topic(topic))
                .replace("{{KAFKA_GROUP}}", group);
            (p, sql)
        })
        .collect()
}

/// The feedback topic the tests use beside a request log topic.
pub fn feedback_topic(topic: &str) -> String {
    format!("{topic}-feedback")
}

/// The analytics queries, with `org` filled in.
pub fn shipped_queries(org: &str) -> Vec<(PathBuf, String)> {
    sql_files("conf/clickhouse/queries")
        .into_iter()
        .map(|p| {
            let sql = std::fs::read_to_string(&p)
                .unwrap()
                .replace("{{ORG_ID}}", org);
            (p, sql)
        })
        .collect()
}

/// The `.sql` files of a directory of the repository, in name order.
pub fn sql_files(dir: &str) -> Vec<PathBuf> {
    let dir = repo_root().join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
}
