//! The Postgres control source against the real Postgres on this machine
//! (`FLOOPY_TEST_PG`, default `postgres://postgres@127.0.0.1:5432/test`):
//! changes made with the admin command reach the request path within 2 s,
//! losing the database keeps the gateway serving and reconnecting, start-up
//! without the database, and the schema's constraints.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::pg::*;
use common::*;

async fn status(gw: &Gateway, key: &str, project: Option<&str>) -> u16 {
    let mut req = client()
        .post(gw.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {key}"))
        .body(r#"{"model":"gpt-4o","messages":[]}"#);
    if let Some(project) = project {
        req = req.header("floopy-project-id", project);
    }
    req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

/// Waits (at most `within`) until the request gets `expected`; returns how
/// long it took.
async fn eventually(
    gw: &Gateway,
    key: &str,
    project: Option<&str>,
    expected: u16,
    within: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let got = status(gw, key, project).await;
        if got == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "still {got} after {within:?}, expected {expected}:\n{}",
            gw.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn readyz(gw: &Gateway) -> u16 {
    reqwest::get(format!("http://{}/readyz", gw.admin))
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A gateway on the control database at `url`.
async fn start_on_postgres(provider: &floopy_fake_provider::FakeProvider, url: &str) -> Gateway {
    Gateway::start(
        provider,
        Options {
            control: Some(postgres_control(url, "")),
            ..Options::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_reach_the_request_path_within_two_seconds() {
    let db = TestDb::create().await;
    let url = db.url();
    let org = admin(&url, &["create-org", "--name", "Acme", "--plan", "pro"])
        .trim()
        .to_string();
    let project = admin(
        &url,
        &[
            "create-project",
            "--org",
            &org,
            "--name",
            "Checkout",
            "--slug",
            "checkout",
        ],
    )
    .trim()
    .to_string();
    let (_, key) = create_key(
        &url,
        &[
            "--org",
            &org,
            "--name",
            "dev",
            "--environment",
            "development",
        ],
    );
    let (_, locked) = create_key(
        &url,
        &["--org", &org, "--name", "locked", "--project", &project],
    );

    let provider = start_provider().await;
    let gw = start_on_postgres(&provider, &url).await;
    assert_eq!(status(&gw, &key, None).await, 200);
    assert_eq!(status(&gw, &key, Some(&project)).await, 200);
    assert_eq!(status(&gw, &locked, None).await, 200);
    assert_eq!(readyz(&gw).await, 200);

    // A new key works within 2 s.
    let (new_id, new_key) = create_key(&url, &["--org", &org, "--name", "new"]);
    let took = eventually(&gw, &new_key, None, 200, Duration::from_secs(2)).await;
    eprintln!("new key served after {took:?}");

    // A revoked key gets 401 within 2 s.
    admin(&url, &["revoke-key", "--key", &new_id]);
    eventually(&gw, &new_key, None, 401, Duration::from_secs(2)).await;

    // An archived project is no longer resolvable.
    admin(
        &url,
        &["archive-project", "--org", &org, "--project", &project],
    );
    eventually(&gw, &key, Some(&project), 404, Duration::from_secs(2)).await;
    eventually(&gw, &locked, None, 404, Duration::from_secs(2)).await;

    // Deleting it revokes the keys locked to it.
    admin(
        &url,
        &["delete-project", "--org", &org, "--project", &project],
    );
    eventually(&gw, &locked, None, 401, Duration::from_secs(2)).await;
    assert_eq!(
        status(&gw, &key, None).await,
        200,
        "other keys are untouched"
    );

    // Limits set in the database apply.
    admin(
        &url,
        &[
            "set-limits",
            "--org",
            &org,
            "--environment",
            "development",
            "--rpm",
            "1000",
        ],
    );
    let started = Instant::now();
    loop {
        let resp = client()
            .post(gw.url("/v1/chat/completions"))
            .header("authorization", format!("Bearer {key}"))
            .body(r#"{"model":"gpt-4o","messages":[]}"#)
            .send()
            .await
            .unwrap();
        if resp
            .headers()
            .get("x-ratelimit-limit-requests")
            .is_some_and(|v| v == "1000")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "limits not applied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(gw);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_database_fails_no_request_and_changes_made_meanwhile_arrive() {
    let db = TestDb::create().await;
    let url = db.url();
    let org = admin(&url, &["create-org", "--name", "Acme", "--plan", "pro"])
        .trim()
        .to_string();
    let (_, key) = create_key(
        &url,
        &[
            "--org",
            &org,
            "--name",
            "dev",
            "--environment",
            "production",
        ],
    );
    let provider = start_provider().await;
    let gw = Arc::new(
        Gateway::start(
            &provider,
            Options {
                control: Some(postgres_control(&url, "")),
                ..Options::default()
            },
        )
        .await,
    );

    // Load for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (gw, stop, ok, failed, key) = (
                gw.clone(),
                stop.clone(),
                ok.clone(),
                failed.clone(),
                key.clone(),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    if status(&gw, &key, None).await == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    // 1. The connection is killed mid-load: it reconnects by itself.
    tokio::time::sleep(Duration::from_millis(300)).await;
    db.cut_gateway(false).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // 2. The database refuses the gateway for a while; a key is created
    //    meanwhile. The gateway keeps serving, turns unready, and picks
    //    the change up once it is let back in.
    db.cut_gateway(true).await;
    let (_, new_key) = create_key(&db.superuser_url(), &["--org", &org, "--name", "meanwhile"]);
    let started = Instant::now();
    while readyz(&gw).await == 200 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "readyz stayed ready without the database"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = reqwest::get(format!("http://{}/readyz", gw.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(body.contains("control data last synced"), "{body}");
    assert_eq!(
        status(&gw, &new_key, None).await,
        401,
        "not seen while locked out"
    );
    db.let_in().await;
    let took = eventually(&gw, &new_key, None, 200, Duration::from_secs(8)).await;
    eprintln!("change made while disconnected served {took:?} after reconnection was allowed");
    assert_eq!(readyz(&gw).await, 200);

    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed");
    // Requests were answered all along (how many depends on how busy the
    // shared cores are: the whole suite runs beside this test).
    assert!(ok.load(Ordering::Relaxed) > 20, "the load ran");
    let metrics = gw.metrics().await;
    assert!(
        metric_value(&metrics, "floopy_control_errors_total") >= 1,
        "the lost connection is counted:\n{metrics}"
    );
    drop(gw);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_without_the_database_fails_fast_or_serves_from_the_cache() {
    let db = TestDb::create().await;
    let url = db.url();
    let org = admin(&url, &["create-org", "--name", "Acme", "--plan", "free"])
        .trim()
        .to_string();
    let (_, key) = create_key(&url, &["--org", &org, "--name", "dev"]);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("control-cache.json");

    // A first gateway writes the cache.
    let provider = start_provider().await;
    let cache_line = format!("  cache_file: \"{}\"\n", cache.display());
    let gw = Gateway::start(
        &provider,
        Options {
            control: Some(postgres_control(&url, &cache_line)),
            ..Options::default()
        },
    )
    .await;
    assert_eq!(status(&gw, &key, None).await, 200);
    let deadline = Instant::now() + Duration::from_secs(3);
    while !cache.exists() {
        assert!(Instant::now() < deadline, "no cache file written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(gw);

    // Without the database and without a cache: a clear error, at once.
    let dead = format!("postgres://nobody@127.0.0.1:{}/nowhere", free_port());
    let config = dir.path().join("dead.yaml");
    let rendered = render_config(
        &provider.base_url(),
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
        &dir.path().join("log.jsonl"),
        free_port(),
        &Options {
            control: Some(postgres_control(&dead, "")),
            ..Options::default()
        },
    );
    std::fs::write(&config, rendered).unwrap();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_floopy-gateway"))
        .arg("--config")
        .arg(&config)
        .env("FLOOPY_TEST_OPENAI_KEY", "sk")
        .env("FLOOPY_TEST_ANTHROPIC_KEY", "sk")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(started.elapsed() < Duration::from_secs(8), "fails fast");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("control database 127.0.0.1:"), "{stderr}");
    assert!(
        stderr.contains("cache_file"),
        "says what would help: {stderr}"
    );
    assert!(!stderr.contains("nobody@"), "no credentials in messages");

    // Locked out, with the cache: it starts and serves the cached keys.
    db.cut_gateway(true).await;
    let gw = Gateway::start(
        &provider,
        Options {
            control: Some(postgres_control(&url, &cache_line)),
            ..Options::default()
        },
    )
    .await;
    assert_eq!(status(&gw, &key, None).await, 200, "served from the cache");
    assert!(gw.stderr().contains("serving the cached control data"));
    drop(gw);
    db.let_in().await;
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_constraints_reject_bad_data_with_clear_messages() {
    let db = TestDb::create().await;
    let url = db.url();
    admin(&url, &["migrate"]);
    let org = admin(&url, &["create-org", "--name", "Acme", "--plan", "starter"])
        .trim()
        .to_string();
    let client = db.owner_client().await;
    let org_id: uuid::Uuid = org.parse().unwrap();

    let default: i64 = client
        .query_one("SELECT count(*) FROM projects WHERE org_id = $1 AND id = '00000000-0000-0000-0000-000000000000'", &[&org_id])
        .await
        .unwrap()
        .get(0);
    assert_eq!(default, 1, "the Default project is created with the org");

    let insert = |id: u128, name: String, slug: &str, description: Option<String>| {
        let client = &client;
        let slug = slug.to_string();
        async move {
            client
                .execute(
                    "INSERT INTO projects (org_id, id, name, slug, description) VALUES ($1, $2, $3, $4, $5)",
                    &[&org_id, &uuid::Uuid::from_u128(id), &name, &slug, &description],
                )
                .await
                .map(|_| ())
                .map_err(|e| e.as_db_error().map(|d| format!("{} {:?}", d.message(), d.constraint())).unwrap_or_default())
        }
    };
    let e = insert(1, "A".into(), "Bad Slug", None).await.unwrap_err();
    assert!(e.contains("projects_slug_format"), "{e}");
    let e = insert(1, "A".into(), "-a", None).await.unwrap_err();
    assert!(e.contains("projects_slug_format"), "{e}");
    let e = insert(1, "x".repeat(101), "ok", None).await.unwrap_err();
    assert!(e.contains("projects_name_length"), "{e}");
    let e = insert(1, "A".into(), "ok", Some("d".repeat(501)))
        .await
        .unwrap_err();
    assert!(e.contains("projects_description_length"), "{e}");
    insert(1, "A".into(), "checkout", None).await.unwrap();
    let e = insert(2, "B".into(), "checkout", None).await.unwrap_err();
    assert!(e.contains("projects_slug_unique_in_org"), "{e}");
    let e = insert(0, "Second Default".into(), "default-two", None)
        .await
        .unwrap_err();
    assert!(e.contains("projects_pkey"), "a second Default project: {e}");
    insert(3, "C".into(), "c", None).await.unwrap();
    let e = insert(4, "D".into(), "d", None).await.unwrap_err();
    assert!(
        e.contains("already has 3 of 3 projects"),
        "the starter quota: {e}"
    );

    let e = client
        .execute("DELETE FROM projects WHERE org_id = $1 AND id = '00000000-0000-0000-0000-000000000000'", &[&org_id])
        .await
        .unwrap_err();
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("cannot be deleted"),
        "{e:?}"
    );

    let e = client
        .execute(
            "INSERT INTO api_keys (id, org_id, name, key_hash, environment) VALUES ($1, $2, 'k', $3, 'prod')",
            &[&uuid::Uuid::from_u128(9), &org_id, &vec![0u8; 32]],
        )
        .await
        .unwrap_err();
    assert!(
        e.as_db_error()
            .unwrap()
            .message()
            .contains("invalid input value for enum floopy_environment"),
        "{e:?}"
    );

    // The admin command reports the database's reason and the constraint.
    let out = admin_output(
        &url,
        &[
            "create-project",
            "--org",
            &org,
            "--name",
            "E",
            "--slug",
            "e",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already has 3 of 3 projects"));
    let out = admin_output(
        &url,
        &[
            "create-project",
            "--org",
            &org,
            "--name",
            "E",
            "--slug",
            "Bad",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("'--slug <SLUG>': \"Bad\" is not a slug"),
        "the refusal names the flag and the value: {stderr}"
    );
    let out = admin_output(
        &url,
        &["set-limits", "--org", &org, "--environment", "prod"],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not one of development"));

    // Deleting the org takes its Default project with it.
    client
        .execute("DELETE FROM organizations WHERE id = $1", &[&org_id])
        .await
        .unwrap();
    let left: i64 = client
        .query_one("SELECT count(*) FROM projects", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
    drop(client);
    db.drop_db().await;
}

/// An org with one development key, made with the admin command; returns
/// the key string.
fn org_with_key(url: &str) -> String {
    let org = admin(url, &["create-org", "--name", "Acme", "--plan", "pro"])
        .trim()
        .to_string();
    create_key(url, &["--org", &org, "--name", "dev"]).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sighup_that_changes_the_control_source_is_refused_whole() {
    let db = TestDb::create().await;
    let url = db.url();
    let key = org_with_key(&url);
    let provider = start_provider().await;
    let gw = start_on_postgres(&provider, &url).await;
    assert_eq!(status(&gw, &key, None).await, 200);

    // The same file with the file control source (the default test data).
    let file_source = render_config(
        &gw.upstream,
        gw.addr,
        gw.admin,
        &gw.log_path,
        gw.dead_port,
        &Options::default(),
    );
    std::fs::write(&gw.config_path, file_source).unwrap();
    gw.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(3);
    while !gw
        .metrics()
        .await
        .contains("floopy_config_reload_failures_total 1\n")
    {
        assert!(
            Instant::now() < deadline,
            "the switch to the file source was not refused:\n{}",
            gw.stderr()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(
        gw.stderr()
            .contains("control.source: changed from postgres to file"),
        "the refusal names the field:\n{}",
        gw.stderr()
    );
    assert_eq!(
        status(&gw, KEY_FREE, None).await,
        401,
        "the file's keys were not swapped in"
    );
    assert_eq!(
        status(&gw, &key, None).await,
        200,
        "the database's are served"
    );
    // And the database still drives the snapshot.
    let (_, new_key) = create_key(&url, &["--org", &admin_org(&url), "--name", "new"]);
    eventually(&gw, &new_key, None, 200, Duration::from_secs(2)).await;
    drop(gw);
    db.drop_db().await;
}

/// The id of the one org in a test database.
fn admin_org(url: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-Atc", "SELECT id FROM organizations"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_database_is_reached_over_tls_as_sslmode_asks() {
    let db = TestDb::create().await;
    let url = db.url();
    let server_cert = db.server_certificate().await;
    let key = org_with_key(&url);

    // require: the gateway's own connections (sync and exchange) use TLS.
    let provider = start_provider().await;
    let gw = start_on_postgres(&provider, &format!("{url}?sslmode=require")).await;
    assert_eq!(status(&gw, &key, None).await, 200);
    let tls = db.gateway_connections_use_tls().await;
    assert!(!tls.is_empty(), "the gateway is connected");
    assert!(tls.iter().all(|&on| on), "every connection is TLS: {tls:?}");
    drop(gw);

    // verify-ca with the server's own (self-signed) certificate as the CA
    // connects; with another CA it is refused, and verify-full also checks
    // the name (the certificate names the machine, not 127.0.0.1).
    let verify_ca = format!("{url}?sslmode=verify-ca&sslrootcert={server_cert}");
    admin(&verify_ca, &["migrate"]);
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other-ca.pem");
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=another CA", "-keyout"])
        .arg(dir.path().join("other-ca.key"))
        .arg("-out")
        .arg(&other_ca)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    for (url, why) in [
        (
            format!("{url}?sslmode=verify-ca&sslrootcert={}", other_ca.display()),
            "a certificate of another CA",
        ),
        (
            format!("{url}?sslmode=verify-full&sslrootcert={server_cert}"),
            "a certificate for another name",
        ),
    ] {
        let out = admin_output(&url, &["migrate"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{why} must be refused");
        assert!(
            stderr.contains("certificate verify failed"),
            "{why}: {stderr}"
        );
    }

    // A CA file that cannot be read is a configuration error with its path.
    let config = dir.path().join("gateway.yaml");
    let bad = format!("{url}?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem");
    std::fs::write(
        &config,
        format!(
            "server: {{listen: \"127.0.0.1:1\", admin_listen: \"127.0.0.1:2\"}}\n{}log_sink: {{kind: file, path: x}}\n",
            postgres_control(&bad, "")
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_floopy-gateway"))
        .arg("--check-config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("control.url: sslrootcert: cannot read /nonexistent/ca.pem"),
        "{stderr}"
    );
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_age_and_control_staleness_are_told_apart() {
    let db = TestDb::create().await;
    let url = db.url();
    let key = org_with_key(&url);
    let provider = start_provider().await;
    let gw = start_on_postgres(&provider, &url).await;
    assert_eq!(status(&gw, &key, None).await, 200);
    // Nothing changes: the snapshot ages while every poll (200 ms)
    // confirms the data current.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let metrics = gw.metrics().await;
    let gauge = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
            .parse()
            .unwrap()
    };
    assert!(gauge("floopy_snapshot_age_seconds") >= 1.4, "{metrics}");
    assert!(gauge("floopy_control_staleness_seconds") < 0.6, "{metrics}");
    drop(gw);
    db.drop_db().await;
}
