//! The dashboard in a real headless Chromium: floopy-control with a real
//! ClickHouse 18.16 and Postgres, a real gateway writing its request logs
//! straight into ClickHouse, and the fake provider. The browser steps are in
//! `tests/browser/dashboard.py` (Playwright, Debian's chromium): sign in,
//! create a project (a bad slug first), create a locked production key and
//! read its secret once, send requests through the gateway with it, find
//! them in the requests list and the widgets at their cost, switch
//! projects, a member who sees neither settings nor another project, and a
//! budget breach that revokes the key, shown with its alert, then restored.
//! Every step saves a screenshot under `target/tmp/dashboard/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::clickhouse::ClickHouse;
use common::*;

/// The Python with Playwright: `FLOOPY_PYTHON` (scripts/install-kafka-tools.sh
/// prints it), else the venv that script makes.
fn python() -> String {
    if let Ok(p) = std::env::var("FLOOPY_PYTHON") {
        return p;
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let venv = format!("{home}/.cache/floopy/venv/bin/python");
    assert!(
        std::path::Path::new(&venv).exists(),
        "no Python with Playwright: run scripts/install-kafka-tools.sh (it makes {venv}) or set FLOOPY_PYTHON"
    );
    venv
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_headless_chromium_from_sign_in_to_a_budget_breach() {
    let chromium = std::env::var("FLOOPY_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        std::path::Path::new(&chromium).exists(),
        "{chromium} is missing: scripts/install-deps.sh installs Debian's chromium"
    );
    let ch = ClickHouse::start_with_tables().await;
    let db = TestDb::create().await;
    let control = Control::start(
        &db,
        &format!(
            "clickhouse: {{url: \"{}\", rollup_interval_ms: 200}}\nbudgets: {{evaluate_every_ms: 250}}\n",
            ch.http.trim_end_matches('/')
        ),
    )
    .await;
    let (_org, _owner) = control.bootstrap("Acme", "starter", "owner@acme.test");
    let provider = floopy_fake_provider::FakeProvider::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let gateway = Gateway::start_into_clickhouse(&db, &provider, &ch).await;

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let _ = std::fs::remove_dir_all(&shots);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/dashboard.py");
    std::fs::create_dir_all(&shots).unwrap();
    let (out_path, err_path) = (shots.join("stdout.txt"), shots.join("stderr.txt"));
    let mut child = std::process::Command::new(python())
        .arg(&script)
        .env("CONTROL_URL", &control.base)
        .env("GATEWAY_CHAT_URL", &gateway.chat)
        .env("DATABASE_URL", db.url())
        .env("OWNER_EMAIL", "owner@acme.test")
        .env("OWNER_PASSWORD", PASSWORD)
        .env("SHOTS_DIR", &shots)
        .env("CHROMIUM", &chromium)
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(300) {
            let _ = child.kill();
            panic!(
                "the browser test did not finish within 5 minutes:\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let out = std::process::Output {
        status,
        stdout: std::fs::read(&out_path).unwrap_or_default(),
        stderr: std::fs::read(&err_path).unwrap_or_default(),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser test failed ({}):\n{stdout}\n{stderr}\nfloopy-control's log:\n{}\nscreenshots: {}",
        out.status,
        control.stderr(),
        shots.display()
    );
    assert!(stdout.contains("dashboard: every step passed"), "{stdout}");
    // Every step left its screenshot.
    let pngs = std::fs::read_dir(&shots)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "png"))
        })
        .count();
    let steps = stdout.lines().filter(|l| l.starts_with("step ")).count();
    assert!(steps >= 20, "{stdout}");
    assert_eq!(pngs, steps, "one screenshot per step");
    drop(gateway);
    drop(control);
    db.drop_db().await;
    drop(ch);
}
