//! The control database at scale: 1,000,000 API keys in Postgres.
//!
//! Measures, in one run against the real Postgres (`FLOOPY_BENCH_PG`,
//! default `postgres://postgres@127.0.0.1:5432/test`; a database
//! `floopy_bench_1m` is created and reused):
//! - the time to load all control data and build the snapshot,
//! - the memory the snapshot takes (process RSS before and after),
//! - the time from a key committed in Postgres to the key being served by a
//!   running sync (LISTEN/NOTIFY + full rebuild),
//! - lookups through the store while full rebuilds run: their p50/p99/max
//!   next to the same lookups with no rebuild (the baseline, same run).
//!
//! Run: `cargo bench --bench control_1m` (set FLOOPY_BENCH_KEYS for another
//! size).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use floopy_control_db::load::load_control;
use floopy_control_db::migrate::migrate;
use floopy_control_db::DbConfig;
use floopy_gateway::auth::authenticate;
use floopy_gateway::config::PostgresSource;
use floopy_gateway::control_source::sync::ControlSync;
use floopy_gateway::metrics::Metrics;
use floopy_gateway::pricing::PriceTable;
use floopy_gateway::snapshot::{ConfigParts, Settings, SnapshotStore};
use floopy_gateway::upstream::Routes;
use floopy_model::hash_key;
use pingora::services::background::BackgroundService;
use tokio_postgres::NoTls;

const DB: &str = "floopy_bench_1m";

fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

fn config_parts() -> ConfigParts {
    ConfigParts::new(
        Routes::default(),
        PriceTable::default(),
        Settings {
            max_body_bytes: 1 << 20,
            max_failed_auth_per_minute: 0,
            default_completion_tokens: 4096,
            gateway_id: "bench".into(),
        },
    )
}

/// Lookups of existing keys through the store for `duration`; returns
/// their latencies, sorted.
fn lookups(store: &SnapshotStore, headers: &[Vec<u8>], duration: Duration) -> Vec<Duration> {
    let mut out = Vec::with_capacity(1 << 20);
    let end = Instant::now() + duration;
    let mut i = 0;
    while Instant::now() < end {
        let started = Instant::now();
        let snapshot = store.load();
        let ok = authenticate(&snapshot, Some(&headers[i % headers.len()])).is_ok();
        out.push(started.elapsed());
        assert!(ok);
        i += 1;
    }
    out.sort();
    out
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: u64 = std::env::var("FLOOPY_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let admin_url = std::env::var("FLOOPY_BENCH_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let (admin, conn) = tokio_postgres::connect(&admin_url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DB])
        .await
        .unwrap()
        .is_some();
    if !exists {
        admin
            .batch_execute(&format!("CREATE DATABASE {DB}"))
            .await
            .unwrap();
    }
    let mut config: tokio_postgres::Config = admin_url.parse().unwrap();
    config.dbname(DB);
    let url = format!(
        "postgres://{}@127.0.0.1:{}/{DB}",
        config.get_user().unwrap_or("postgres"),
        config.get_ports().first().copied().unwrap_or(5432)
    );
    let db = DbConfig::parse(&url).unwrap();
    let mut conn = db
        .connect("control_1m", Duration::from_secs(5))
        .await
        .unwrap();
    migrate(&mut conn.client).await.unwrap();

    // Seed: 1000 orgs, n keys spread over them (server-side, idempotent).
    let have: i64 = conn
        .client
        .query_one("SELECT count(*) FROM api_keys", &[])
        .await
        .unwrap()
        .get(0);
    if have != n as i64 {
        let seeding = Instant::now();
        conn.client
            .batch_execute(&format!(
                "TRUNCATE api_keys, projects, organizations CASCADE;
                 INSERT INTO organizations (id, name, plan)
                   SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(o), 12, '0'))::uuid, 'org ' || o, 'enterprise'
                     FROM generate_series(1, 1000) o;
                 INSERT INTO api_keys (id, org_id, name, key_hash, environment)
                   SELECT ('10000000-0000-4000-8000-' || lpad(to_hex(i), 12, '0'))::uuid,
                          ('00000000-0000-4000-8000-' || lpad(to_hex(1 + i % 1000), 12, '0'))::uuid,
                          'key ' || i,
                          sha256(convert_to('fpk_benchkey' || lpad(i::text, 32, '0'), 'UTF8')),
                          'production'
                     FROM generate_series(1, {n}) i;"
            ))
            .await
            .unwrap();
        println!(
            "seeded {n} keys in {:.1} s",
            seeding.elapsed().as_secs_f64()
        );
    }
    let headers: Vec<Vec<u8>> = (1..=10_000u64)
        .map(|i| format!("Bearer fpk_benchkey{i:032}").into_bytes())
        .collect();

    // 1. Load and build.
    let rss_before = rss_mib();
    let started = Instant::now();
    let (data, _) = load_control(&mut conn).await.unwrap();
    let loaded = started.elapsed();
    let store = Arc::new(SnapshotStore::new(config_parts(), data));
    let built = started.elapsed();
    let rss_after = rss_mib();
    println!(
        "load {n} keys: query {:.2} s, query + build {:.2} s; RSS {:.0} MiB -> {:.0} MiB (+{:.0} MiB, control data and snapshot)",
        loaded.as_secs_f64(),
        built.as_secs_f64(),
        rss_before,
        rss_after,
        rss_after - rss_before
    );
    assert_eq!(store.load().key_count as u64, n);

    // 2. Change to served, through the running sync.
    let (tx, rx) = tokio::sync::watch::channel(false);
    let sync = Arc::new(ControlSync {
        source: PostgresSource {
            url: url.clone(),
            db: db.clone(),
            poll_interval: Duration::from_secs(1),
            max_staleness: Duration::from_secs(30),
            cache_file: None,
        },
        store: store.clone(),
        metrics: Arc::new(Metrics::default()),
    });
    let sync_task = {
        let sync = sync.clone();
        tokio::spawn(async move { sync.start(rx).await })
    };
    tokio::time::sleep(Duration::from_secs(8)).await; // its first full load
    let mut visible = Vec::new();
    for round in 0..3 {
        let secret = format!("fpk_benchchange{round}{}", uuid::Uuid::now_v7().simple());
        let hash = hash_key(secret.as_bytes());
        let committed = Instant::now();
        conn.client
            .execute(
                "INSERT INTO api_keys (id, org_id, name, key_hash) VALUES ($1, '00000000-0000-4000-8000-000000000001', 'change', $2)",
                &[&uuid::Uuid::now_v7(), &hash.to_vec()],
            )
            .await
            .unwrap();
        while store.load().key(&hash).is_none() {
            assert!(
                committed.elapsed() < Duration::from_secs(60),
                "change never served"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        visible.push(committed.elapsed());
    }
    println!(
        "change committed -> served (LISTEN/NOTIFY, full rebuild of {n} keys): {:?}",
        visible
    );

    // 3. Lookups while rebuilds run, next to lookups without.
    let baseline = {
        let store = store.clone();
        let headers = headers.clone();
        tokio::task::spawn_blocking(move || lookups(&store, &headers, Duration::from_secs(3)))
            .await
            .unwrap()
    };
    let rebuilding = Arc::new(AtomicBool::new(true));
    let churn = {
        let db = db.clone();
        let rebuilding = rebuilding.clone();
        tokio::spawn(async move {
            let conn = db
                .connect("control_1m", Duration::from_secs(5))
                .await
                .unwrap();
            let mut rebuilds = 0;
            while rebuilding.load(Ordering::Relaxed) {
                conn.client
                    .execute("UPDATE organizations SET name = name WHERE id = '00000000-0000-4000-8000-000000000001'", &[])
                    .await
                    .unwrap();
                rebuilds += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            rebuilds
        })
    };
    let during = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || lookups(&store, &headers, Duration::from_secs(12)))
            .await
            .unwrap()
    };
    rebuilding.store(false, Ordering::Relaxed);
    let changes = churn.await.unwrap();
    for (name, l) in [("no rebuild", &baseline), ("during rebuilds", &during)] {
        println!(
            "lookups {name}: n={} p50={:?} p99={:?} p99.9={:?} max={:?}",
            l.len(),
            percentile(l, 0.5),
            percentile(l, 0.99),
            percentile(l, 0.999),
            l[l.len() - 1]
        );
    }
    println!("({changes} changes committed during the second run, each a full rebuild)");
    let _ = tx.send(true);
    let _ = sync_task.await;
}
