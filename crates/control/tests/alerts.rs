//! Budgets and alerts against the real Postgres: the evaluator at times
//! passed in (period rollover of a day, an ISO week and a month; thresholds
//! exactly at 50/80/100 %; a budget lowered below its spend; two replicas
//! evaluating at once), restore after a rollover, and alert delivery through
//! faults: the receiver down, floopy-control killed mid-delivery, the
//! database cut.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::receiver::{checked_once, Receiver};
use common::*;
use floopy_control::budgets::{evaluate, Evaluation};
use floopy_model::calendar::{date_ms, day_of};
use serde_json::json;
use uuid::Uuid;

const HOUR: u64 = 3_600_000;

/// Sets `replica`'s cumulative spend of `project` on the day of `at` (what
/// a gateway's exchange writes).
async fn set_spend(db: &TestDb, replica: &str, org: Uuid, project: Uuid, at: u64, micro: i64) {
    let day = i32::try_from(day_of(at)).unwrap();
    db.client
        .execute(
            "INSERT INTO replica_project_daily_usage (replica, org_id, project_id, day, settled_micro_usd)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (org_id, day, project_id, replica) DO UPDATE
               SET settled_micro_usd = EXCLUDED.settled_micro_usd",
            &[&replica, &org, &project, &day, &micro],
        )
        .await
        .unwrap();
}

/// A migrated database with an org and two projects.
struct Fixture {
    db: TestDb,
    org: Uuid,
    project: Uuid,
    other: Uuid,
}

async fn fixture() -> Fixture {
    let mut db = TestDb::create().await;
    floopy_control_db::migrate::migrate(&mut db.client)
        .await
        .unwrap();
    let (org, project, other) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    db.client
        .execute(
            "INSERT INTO organizations (id, name, plan) VALUES ($1, 'Acme', 'pro')",
            &[&org],
        )
        .await
        .unwrap();
    for (id, slug) in [(project, "one"), (other, "two")] {
        db.client
            .execute(
                "INSERT INTO projects (org_id, id, name, slug) VALUES ($1, $2, $3, $3)",
                &[&org, &id, &slug],
            )
            .await
            .unwrap();
    }
    Fixture {
        db,
        org,
        project,
        other,
    }
}

impl Fixture {
    /// Sets `replica`'s cumulative spend of `project` on the day of `at`
    /// (what a gateway's exchange writes).
    async fn spend(&self, replica: &str, project: Uuid, at: u64, micro: i64) {
        set_spend(&self.db, replica, self.org, project, at, micro).await;
    }

    async fn budget(
        &self,
        project: Option<Uuid>,
        period: &str,
        amount: i64,
        action: &str,
        webhook: Option<(&str, &str)>,
    ) -> Uuid {
        let id = Uuid::now_v7();
        self.db
            .client
            .execute(
                "INSERT INTO budgets (id, org_id, project_id, amount_micro_usd, period, action, webhook_url, webhook_secret)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &id,
                    &self.org,
                    &project,
                    &amount,
                    &period,
                    &action,
                    &webhook.map(|w| w.0),
                    &webhook.map(|w| w.1),
                ],
            )
            .await
            .unwrap();
        id
    }

    /// The alerts of `source`: (period's first day, threshold), in order.
    async fn alerts(&self, source: Uuid) -> Vec<(i32, i32)> {
        self.db
            .client
            .query(
                "SELECT period, threshold FROM alerts WHERE source_id = $1 ORDER BY period, threshold",
                &[&source],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    }

    /// Evaluates at `now` on a connection of its own, retrying while
    /// another evaluator holds the lock.
    async fn evaluate(&self, now: u64) -> Evaluation {
        let (mut client, conn) = tokio_postgres::connect(&self.db.url(), tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        for _ in 0..100 {
            let done = evaluate(&mut client, now).await.unwrap();
            if done.ran {
                return done;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the evaluator lock was never free");
    }

    async fn key(&self, project: Option<Uuid>, default_project: Option<Uuid>) -> Uuid {
        let id = Uuid::now_v7();
        let hash = floopy_model::hash_key(id.to_string().as_bytes());
        self.db
            .client
            .execute(
                "INSERT INTO api_keys (id, org_id, name, key_hash, project_id, default_project_id)
                 VALUES ($1, $2, 'k', $3, $4, $5)",
                &[&id, &self.org, &hash.as_slice(), &project, &default_project],
            )
            .await
            .unwrap();
        id
    }

    /// floopy-control on the fixture's database (evaluating only when a
    /// test calls `evaluate`) and the token of an owner of the fixture's org.
    async fn control_with_an_owner(&self) -> (Control, String) {
        let control = Control::start(&self.db, "budgets: {evaluate_every_ms: 3600000}\n").await;
        let (_, owner) = control.bootstrap("Other", "pro", "owner@other.test");
        let token = token_for(&self.db, owner).await;
        self.db
            .client
            .execute(
                "INSERT INTO org_members (org_id, user_id, role) VALUES ($1, $2, 'owner')",
                &[&self.org, &owner],
            )
            .await
            .unwrap();
        (control, token)
    }

    /// The keys revoked, with the budget that revoked each.
    async fn revoked(&self) -> Vec<(Uuid, Option<Uuid>)> {
        let mut keys: Vec<(Uuid, Option<Uuid>)> = self
            .db
            .client
            .query(
                "SELECT id, revoked_by_budget FROM api_keys WHERE revoked_at IS NOT NULL",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        keys.sort();
        keys
    }
}

#[tokio::test]
async fn days_weeks_and_months_roll_over_at_midnight_utc() {
    let f = fixture().await;
    let p = Some(f.project);
    let day = f.budget(p, "day", 1_000_000, "alert", None).await;
    let week = f.budget(p, "week", 1_000_000, "alert", None).await;
    let month = f.budget(p, "month", 1_000_000, "alert", None).await;
    let all = [50, 80, 100];

    // Sunday 2026-11-29, one second before midnight: the whole amount.
    let sunday = date_ms(2026, 11, 30) - 1_000;
    f.spend("r1", f.project, sunday, 1_000_000).await;
    let done = f.evaluate(sunday).await;
    assert_eq!(done.alerts_fired, 9);
    for budget in [day, week, month] {
        let first = if budget == day {
            20_261_129
        } else if budget == week {
            20_261_123
        } else {
            20_261_101
        };
        let expected: Vec<(i32, i32)> = all.iter().map(|t| (first, *t)).collect();
        assert_eq!(f.alerts(budget).await, expected);
    }

    // Monday 00:00: a new day and a new ISO week, the same month.
    let monday = date_ms(2026, 11, 30);
    assert_eq!(f.evaluate(monday).await.alerts_fired, 0);
    // Spend on Monday from another replica (a restarted gateway).
    f.spend("r2", f.project, monday + HOUR, 600_000).await;
    assert_eq!(f.evaluate(monday + HOUR).await.alerts_fired, 2);
    assert_eq!(f.alerts(day).await[3..], [(20_261_130, 50)]);
    assert_eq!(f.alerts(week).await[3..], [(20_261_130, 50)]);
    assert_eq!(f.alerts(month).await.len(), 3, "fired once per period");

    // December 1st: a new day and month; the same week (Monday 30th).
    let dec1 = date_ms(2026, 12, 1);
    f.spend("r2", f.project, dec1, 300_000).await;
    assert_eq!(f.evaluate(dec1).await.alerts_fired, 1);
    assert_eq!(
        f.alerts(week).await[3..],
        [(20_261_130, 50), (20_261_130, 80)],
        "the week spans the months: 600,000 + 300,000"
    );
    assert_eq!(f.alerts(day).await.len(), 4, "30 % of the new day");
    assert_eq!(f.alerts(month).await.len(), 3, "30 % of December");
    let spent: i64 = f
        .db
        .client
        .query_one(
            "SELECT spent_micro_usd FROM budget_periods WHERE budget_id = $1 AND period = 20261201",
            &[&month],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(spent, 300_000);
    // The other project's spend counts for none of them.
    f.spend("r1", f.other, dec1, 9_000_000).await;
    assert_eq!(f.evaluate(dec1 + 1).await.alerts_fired, 0);
    // Spend by day is kept 62 days: older rows go at the next evaluation.
    f.spend("r1", f.project, dec1 - 63 * 24 * HOUR, 1).await;
    f.spend("r1", f.project, dec1 - 61 * 24 * HOUR, 1).await;
    f.evaluate(dec1 + 2).await;
    let days: Vec<i32> =
        f.db.client
            .query(
                "SELECT DISTINCT day FROM replica_project_daily_usage ORDER BY day",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
    assert_eq!(days, [20_261_001, 20_261_129, 20_261_130, 20_261_201]);
    f.db.drop_db().await;
}

#[tokio::test]
async fn thresholds_fire_exactly_at_their_percent_and_a_breach_revokes_the_scope_s_keys() {
    let f = fixture().await;
    let now = date_ms(2026, 11, 15) + 12 * HOUR;
    let budget = f
        .budget(
            Some(f.project),
            "month",
            1_000_000,
            "alert_and_revoke",
            None,
        )
        .await;
    let locked = f.key(Some(f.project), None).await;
    let defaulting = f.key(None, Some(f.project)).await;
    let elsewhere = f.key(Some(f.other), None).await;
    let org_wide = f.key(None, None).await;

    for (spent, fired) in [
        (499_999, vec![]),
        (500_000, vec![50]),
        (799_999, vec![50]),
        (800_000, vec![50, 80]),
        (999_999, vec![50, 80]),
    ] {
        f.spend("r1", f.project, now, spent).await;
        f.evaluate(now).await;
        let alerts: Vec<i32> = f.alerts(budget).await.iter().map(|a| a.1).collect();
        assert_eq!(alerts, fired, "at {spent}");
        assert!(f.revoked().await.is_empty(), "nothing revoked below 100 %");
    }
    f.spend("r1", f.project, now, 1_000_000).await;
    let done = f.evaluate(now).await;
    assert_eq!(
        (done.alerts_fired, done.keys_revoked),
        (2, 2),
        "the 100 % threshold and the revocation"
    );
    let mut expected = vec![(locked, Some(budget)), (defaulting, Some(budget))];
    expected.sort();
    assert_eq!(f.revoked().await, expected);
    let body: serde_json::Value =
        f.db.client
            .query_one(
                "SELECT body::text FROM alerts WHERE source_id = $1 AND threshold = 100 AND revocation = 0",
                &[&budget],
            )
            .await
            .unwrap()
            .get::<_, String>(0)
            .parse()
            .unwrap();
    assert_eq!(body["keys_revoked"], 2, "{body}");
    assert_eq!(body["spent_usd"], "1.000000", "{body}");
    assert_eq!(body["fired_at"], "2026-11-15T12:00:00.000Z");
    assert_eq!(
        f.db.client
            .query_one(
                "SELECT state FROM alerts WHERE threshold = 100 AND revocation = 0",
                &[],
            )
            .await
            .unwrap()
            .get::<_, String>(0),
        "recorded",
        "no webhook: listed, not delivered"
    );
    // Again: nothing more fires, nothing more is revoked.
    assert_eq!(
        f.evaluate(now + 1_000).await,
        Evaluation {
            ran: true,
            ..Default::default()
        }
    );
    let _ = (elsewhere, org_wide);

    // An org budget lowered below the spend fires at once.
    let org_budget = f.budget(None, "month", 10_000_000, "alert", None).await;
    assert_eq!(f.evaluate(now).await.alerts_fired, 0, "10 %");
    f.db.client
        .execute(
            "UPDATE budgets SET amount_micro_usd = 1500000 WHERE id = $1",
            &[&org_budget],
        )
        .await
        .unwrap();
    assert_eq!(f.evaluate(now).await.alerts_fired, 1, "66 %: 50 at once");
    f.db.client
        .execute(
            "UPDATE budgets SET amount_micro_usd = 900000 WHERE id = $1",
            &[&org_budget],
        )
        .await
        .unwrap();
    assert_eq!(
        f.evaluate(now).await.alerts_fired,
        2,
        "111 %: 80 and 100 at once"
    );
    assert_eq!(
        f.revoked().await.len(),
        2,
        "an alert budget revokes nothing"
    );
    f.db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evaluators_racing_fire_each_alert_once() {
    let f = fixture().await;
    let now = date_ms(2026, 11, 15);
    let mut budgets = Vec::new();
    for _ in 0..20 {
        budgets.push(f.budget(None, "day", 100, "alert", None).await);
    }
    f.spend("r1", f.project, now, 100).await;
    // Eight evaluators at once, each on its own connection.
    let mut racing = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let url = f.db.url();
        racing.spawn(async move {
            let (mut client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut fired = 0;
            for _ in 0..5 {
                fired += evaluate(&mut client, now).await.unwrap().alerts_fired;
            }
            fired
        });
    }
    let mut fired = 0;
    while let Some(n) = racing.join_next().await {
        fired += n.unwrap();
    }
    assert_eq!(fired, 60, "20 budgets, 3 thresholds, each once");
    let rows: i64 =
        f.db.client
            .query_one("SELECT count(*) FROM alerts", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(rows, 60);
    let audited: i64 =
        f.db.client
            .query_one(
                "SELECT count(*) FROM audit_log WHERE action = 'budget.threshold'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(audited, 60);
    f.db.drop_db().await;
}

#[tokio::test]
async fn alert_rules_fire_once_per_period_at_their_amount() {
    let f = fixture().await;
    let rule = Uuid::now_v7();
    f.db.client
        .execute(
            "INSERT INTO alert_rules (id, org_id, project_id, name, threshold_micro_usd, period, webhook_url, webhook_secret)
             VALUES ($1, $2, $3, 'r', 250000, 'week', 'http://127.0.0.1:9/hook', 'whsec_0123456789abcdef')",
            &[&rule, &f.org, &f.project],
        )
        .await
        .unwrap();
    let wednesday = date_ms(2026, 11, 25);
    f.spend("r1", f.project, wednesday, 249_999).await;
    assert_eq!(f.evaluate(wednesday).await.alerts_fired, 0);
    f.spend("r1", f.project, wednesday, 250_000).await;
    assert_eq!(f.evaluate(wednesday).await.alerts_fired, 1);
    f.spend("r1", f.project, wednesday, 900_000).await;
    assert_eq!(f.evaluate(wednesday).await.alerts_fired, 0, "once per week");
    let next_week = date_ms(2026, 11, 30);
    f.spend("r1", f.project, next_week, 250_000).await;
    assert_eq!(f.evaluate(next_week).await.alerts_fired, 1);
    assert_eq!(f.alerts(rule).await, [(20_261_123, 100), (20_261_130, 100)]);
    let state: String =
        f.db.client
            .query_one("SELECT state FROM alerts LIMIT 1", &[])
            .await
            .unwrap()
            .get(0);
    assert_eq!(state, "pending", "a rule always has a webhook");
    f.db.drop_db().await;
}

/// floopy-control with fast evaluation and delivery on `db_url`.
async fn control_on(db: &TestDb, db_url: Option<String>, alerts: &str) -> Control {
    let extra =
        format!("budgets: {{evaluate_every_ms: 200}}\nalerts: {{poll_ms: 100, {alerts}}}\n");
    match db_url {
        None => Control::start(db, &extra).await,
        Some(url) => Control::start_at(&url, &extra).await,
    }
}

/// An owner's token and a project-scoped budget of $1 with thresholds
/// `thresholds` delivering to `hook` with `secret`, through the API.
async fn budget_through_the_api(
    control: &Control,
    db: &TestDb,
    thresholds: &[i64],
    hook: &str,
    secret: &str,
) -> (String, Uuid, Uuid, Uuid) {
    let (org, owner) = control.bootstrap("Acme", "pro", "owner@acme.test");
    let token = token_for(db, owner).await;
    let http = reqwest::Client::new();
    let (status, p) = call(
        &http,
        "POST",
        &control.url(&format!("/v1/orgs/{org}/projects")),
        Some(&token),
        Some(json!({"name": "One", "slug": "one"})),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    let project: Uuid = p["id"].as_str().unwrap().parse().unwrap();
    let (status, b) = call(
        &http,
        "POST",
        &control.url(&format!("/v1/orgs/{org}/budgets")),
        Some(&token),
        Some(
            json!({"project_id": project, "amount_usd": 1, "thresholds": thresholds,
                    "webhook_url": hook, "webhook_secret": secret}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{b}");
    assert_eq!(b["webhook_secret"], secret);
    (
        token,
        org,
        project,
        b["id"].as_str().unwrap().parse().unwrap(),
    )
}

/// Sets the spend of `project` today (real time), as a gateway would.
async fn spend_today(db: &TestDb, org: Uuid, project: Uuid, micro: i64) {
    set_spend(
        db,
        "r1",
        org,
        project,
        floopy_control::budgets::now_ms(),
        micro,
    )
    .await;
}

/// The alerts as the API lists them, once `done` holds of them.
async fn alerts_when(
    control: &Control,
    token: &str,
    org: Uuid,
    within: Duration,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let (status, v) = call(
            &http,
            "GET",
            &control.url(&format!("/v1/orgs/{org}/alerts")),
            Some(token),
            None,
        )
        .await;
        assert_eq!(status, 200, "{v}");
        let alerts = v["data"].as_array().unwrap().clone();
        if done(&alerts) {
            return alerts;
        }
        assert!(
            started.elapsed() < within,
            "alerts after {within:?}: {alerts:#?}\n{}",
            control.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const SECRET: &str = "whsec_the_receivers_secret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_wait_for_a_receiver_that_is_down_and_arrive_once() {
    let db = TestDb::create().await;
    let mut receiver = Receiver::down().await;
    let control = control_on(&db, None, "retry_base_ms: 200, retry_max_ms: 800").await;
    let (token, org, project, _) =
        budget_through_the_api(&control, &db, &[50, 80, 100], &receiver.url(), SECRET).await;
    spend_today(&db, org, project, 1_000_000).await;
    // Refused connections, retried with backoff.
    let failing = alerts_when(&control, &token, org, Duration::from_secs(10), |a| {
        a.len() == 3 && a.iter().all(|a| a["attempts"].as_i64() >= Some(3))
    })
    .await;
    for alert in &failing {
        assert_eq!(alert["state"], "pending", "{alert}");
        assert!(alert["last_error"].as_str().unwrap().len() > 10, "{alert}");
        assert!(alert["next_attempt_at"].is_string(), "{alert}");
    }
    receiver.listen().await;
    receiver.wait_for(3, Duration::from_secs(5)).await;
    let delivered = alerts_when(&control, &token, org, Duration::from_secs(5), |a| {
        a.iter().all(|a| a["state"] == "delivered")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bodies = checked_once(&receiver.deliveries(), SECRET);
    assert_eq!(bodies.len(), 3);
    for alert in delivered {
        assert_eq!(alert["last_status"], 200);
        assert!(alert["delivered_at"].is_string());
        assert!(alert["next_attempt_at"].is_null());
    }
    drop(control);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_in_flight_when_floopy_control_is_killed_is_delivered_after_restart() {
    let db = TestDb::create().await;
    let receiver = Receiver::start().await;
    // The receiver holds its answer past the kill.
    receiver.hold(Duration::from_secs(30));
    let alerts = "delivery_timeout_ms: 3000, retry_base_ms: 200";
    let mut control = control_on(&db, None, alerts).await;
    let (token, org, project, _) =
        budget_through_the_api(&control, &db, &[100], &receiver.url(), SECRET).await;
    spend_today(&db, org, project, 1_000_000).await;
    receiver.wait_for(1, Duration::from_secs(5)).await;
    control.child.kill().unwrap();
    control.child.wait().unwrap();
    receiver.hold(Duration::ZERO);

    let restarted = control_on(&db, None, alerts).await;
    let delivered = alerts_when(&restarted, &token, org, Duration::from_secs(10), |a| {
        a.len() == 1 && a[0]["state"] == "delivered"
    })
    .await;
    // Sent twice (the first answer never came back), one alert by its id.
    let deliveries = receiver.deliveries();
    assert!(deliveries.len() >= 2, "{deliveries:?}");
    for d in &deliveries {
        assert!(floopy_control::webhooks::verify(
            SECRET,
            &d.signature,
            &d.body
        ));
        assert_eq!(d.alert_id, delivered[0]["id"].as_str().unwrap());
    }
    assert_eq!(delivered[0]["attempts"], deliveries.len() as i64);
    drop(restarted);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_cut_fires_nothing_twice() {
    let db = TestDb::create().await;
    let receiver = Receiver::start().await;
    let mut proxy = DbProxy::start().await;
    let control = control_on(&db, Some(proxy.url(&db)), "retry_base_ms: 200").await;
    let (token, org, project, budget) =
        budget_through_the_api(&control, &db, &[50, 80, 100], &receiver.url(), SECRET).await;
    spend_today(&db, org, project, 500_000).await;
    receiver.wait_for(1, Duration::from_secs(5)).await;
    // Recorded as delivered before the cut (else it is rightly sent again).
    alerts_when(&control, &token, org, Duration::from_secs(5), |a| {
        a.len() == 1 && a[0]["state"] == "delivered"
    })
    .await;

    // The database goes away for two seconds while the spend crosses the
    // other thresholds.
    proxy.cut();
    spend_today(&db, org, project, 1_000_000).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxy.restore().await;

    receiver.wait_for(3, Duration::from_secs(15)).await;
    alerts_when(&control, &token, org, Duration::from_secs(5), |a| {
        a.len() == 3 && a.iter().all(|a| a["state"] == "delivered")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let bodies = checked_once(&receiver.deliveries(), SECRET);
    let mut thresholds: Vec<i64> = bodies
        .iter()
        .map(|b| b["threshold_percent"].as_i64().unwrap())
        .collect();
    thresholds.sort_unstable();
    assert_eq!(thresholds, [50, 80, 100]);
    let audited: i64 = db
        .client
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = 'budget.threshold' AND object_id = $1",
            &[&budget.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(audited, 3, "each threshold recorded once");
    assert!(
        control.stderr().contains("retrying"),
        "the cut was seen: {}",
        control.stderr()
    );
    drop(control);
    drop(proxy);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_day_budget_s_keys_are_restored_the_next_day() {
    let f = fixture().await;
    let (control, token) = f.control_with_an_owner().await;
    let budget = f
        .budget(Some(f.project), "day", 1_000_000, "alert_and_revoke", None)
        .await;
    let key = f.key(Some(f.project), None).await;
    let yesterday = floopy_control::budgets::now_ms() - 24 * HOUR;
    f.spend("r1", f.project, yesterday, 1_000_000).await;
    assert_eq!(f.evaluate(yesterday).await.keys_revoked, 1);
    assert_eq!(f.revoked().await, [(key, Some(budget))]);

    // Today is a new day with no spend: the keys may come back.
    let http = reqwest::Client::new();
    let (status, v) = call(
        &http,
        "POST",
        &control.url(&format!("/v1/orgs/{}/budgets/{budget}/restore", f.org)),
        Some(&token),
        None,
    )
    .await;
    assert_eq!((status, v["keys_restored"].as_u64()), (200, Some(1)), "{v}");
    assert!(f.revoked().await.is_empty());
    drop(control);
    f.db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_rule_s_webhook_is_signed_with_the_secret_generated_for_it() {
    let db = TestDb::create().await;
    let receiver = Receiver::start().await;
    let control = control_on(&db, None, "retry_base_ms: 200").await;
    let (token, org, project, _) =
        budget_through_the_api(&control, &db, &[100], &receiver.url(), SECRET).await;
    let http = reqwest::Client::new();
    let (status, rule) = call(
        &http,
        "POST",
        &control.url(&format!("/v1/orgs/{org}/alert-rules")),
        Some(&token),
        Some(
            json!({"name": "Half a dollar a day", "project_id": project, "threshold_usd": 0.5,
                    "period": "day", "webhook_url": receiver.url()}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{rule}");
    let secret = rule["webhook_secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{rule}");
    let (_, read) = call(
        &http,
        "GET",
        &control.url(&format!(
            "/v1/orgs/{org}/alert-rules/{}",
            rule["id"].as_str().unwrap()
        )),
        Some(&token),
        None,
    )
    .await;
    assert!(read.get("webhook_secret").is_none(), "shown once: {read}");
    spend_today(&db, org, project, 600_000).await;
    let deliveries = receiver.wait_for(1, Duration::from_secs(5)).await;
    let bodies = checked_once(&deliveries, &secret);
    assert_eq!(bodies[0]["type"], "alert_rule.triggered");
    assert_eq!(bodies[0]["alert_rule"]["threshold_usd"], "0.500000");
    assert_eq!(bodies[0]["spent_usd"], "0.600000");
    assert_eq!(bodies[0]["period"]["kind"], "day");
    drop(control);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_never_answered_is_marked_failed_once_its_retries_run_out() {
    let db = TestDb::create().await;
    let receiver = Receiver::down().await;
    let control = control_on(
        &db,
        None,
        "retry_base_ms: 200, retry_max_ms: 400, retry_for_seconds: 2",
    )
    .await;
    let (token, org, project, _) =
        budget_through_the_api(&control, &db, &[100], &receiver.url(), SECRET).await;
    spend_today(&db, org, project, 1_000_000).await;
    let failed = alerts_when(&control, &token, org, Duration::from_secs(10), |a| {
        a.len() == 1 && a[0]["state"] == "failed"
    })
    .await;
    assert!(failed[0]["attempts"].as_i64().unwrap() >= 3, "{failed:?}");
    assert!(failed[0]["next_attempt_at"].is_null(), "{failed:?}");
    assert!(
        failed[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("error sending request"),
        "{failed:?}"
    );
    // Failed stays failed: no more attempts.
    let attempts = failed[0]["attempts"].clone();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = alerts_when(&control, &token, org, Duration::from_secs(1), |_| true).await;
    assert_eq!(again[0]["attempts"], attempts);
    drop(control);
    db.drop_db().await;
}

/// The revocation alerts of `budget`: (revocation number, keys revoked).
async fn revocations(db: &TestDb, budget: Uuid) -> Vec<(i32, i64)> {
    db.client
        .query(
            "SELECT revocation, body::text FROM alerts
              WHERE source_id = $1 AND revocation > 0 ORDER BY revocation",
            &[&budget],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let body: serde_json::Value = r.get::<_, String>(1).parse().unwrap();
            assert_eq!(body["type"], "budget.keys_revoked", "{body}");
            (r.get(0), body["keys_revoked"].as_i64().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_revocation_is_announced_and_a_revoked_key_comes_back_through_itself_or_the_budget_s_deletion(
) {
    let f = fixture().await;
    let (control, token) = f.control_with_an_owner().await;
    let http = reqwest::Client::new();
    let api = |method: &'static str, path: String, body: Option<serde_json::Value>| {
        let (http, token, url) = (http.clone(), token.clone(), control.url(&path));
        async move { call(&http, method, &url, Some(&token), body).await }
    };
    let org = f.org;
    let budget = f
        .budget(
            Some(f.project),
            "month",
            1_000_000,
            "alert_and_revoke",
            None,
        )
        .await;
    let key = f.key(Some(f.project), None).await;
    let now = floopy_control::budgets::now_ms();
    f.spend("r1", f.project, now, 1_000_000).await;
    assert_eq!(f.evaluate(now).await.keys_revoked, 1);
    assert_eq!(revocations(&f.db, budget).await, [(1, 1)]);

    // While the budget holds it, the key cannot come back through itself.
    let (status, v) = api("GET", format!("/v1/orgs/{org}/keys/{key}"), None).await;
    assert_eq!(
        (status, &v["revoked"], &v["restorable"]),
        (200, &json!(true), &json!(false)),
        "{v}"
    );
    let (status, v) = api("POST", format!("/v1/orgs/{org}/keys/{key}/restore"), None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("budget_exceeded")),
        "{v}"
    );

    // Raised above the spend, it no longer holds it: the key restores itself.
    let (status, v) = api(
        "PATCH",
        format!("/v1/orgs/{org}/budgets/{budget}"),
        Some(json!({"amount_usd": 1.5})),
    )
    .await;
    assert_eq!((status, v["keys_revoked"].as_i64()), (200, Some(1)), "{v}");
    let (status, v) = api("GET", format!("/v1/orgs/{org}/keys/{key}"), None).await;
    assert_eq!((status, &v["restorable"]), (200, &json!(true)), "{v}");
    let (status, v) = api("POST", format!("/v1/orgs/{org}/keys/{key}/restore"), None).await;
    assert_eq!(
        (status, &v["revoked"], &v["restorable"]),
        (200, &json!(false), &json!(false)),
        "{v}"
    );
    assert!(f.revoked().await.is_empty());

    // A second breach in the same period revokes again and says so again,
    // though the 100 % threshold fired already.
    f.spend("r1", f.project, now, 1_500_001).await;
    let done = f.evaluate(now).await;
    assert_eq!((done.keys_revoked, done.alerts_fired), (1, 1), "{done:?}");
    assert_eq!(revocations(&f.db, budget).await, [(1, 1), (2, 1)]);
    assert_eq!(f.evaluate(now + 1_000).await.alerts_fired, 0, "once each");
    let (status, v) = api(
        "GET",
        format!("/v1/orgs/{org}/alerts?source_id={budget}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let kinds: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "revocation",
            "revocation",
            "threshold",
            "threshold",
            "threshold"
        ],
        "newest first: {v}"
    );

    // Deleting the budget gives its keys back, audited.
    let (status, v) = api("DELETE", format!("/v1/orgs/{org}/budgets/{budget}"), None).await;
    assert_eq!(status, 204, "{v}");
    assert!(
        f.revoked().await.is_empty(),
        "the deleted budget's key is back"
    );
    let restored: serde_json::Value = f
        .db
        .client
        .query_one(
            "SELECT after::text FROM audit_log WHERE action = 'budget.restore' AND object_id = $1",
            &[&budget.to_string()],
        )
        .await
        .unwrap()
        .get::<_, String>(0)
        .parse()
        .unwrap();
    assert_eq!(restored["keys_restored"], 1, "{restored}");

    // A person's revocation is final, whatever a budget did before.
    let (status, _) = api("POST", format!("/v1/orgs/{org}/keys/{key}/revoke"), None).await;
    assert_eq!(status, 200);
    let (status, v) = api("POST", format!("/v1/orgs/{org}/keys/{key}/restore"), None).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("key_revoked_by_a_person")),
        "{v}"
    );
    drop(control);
    f.db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_a_budget_revoked_before_the_budget_was_deleted_can_be_restored() {
    // A key stranded by a deletion (revoked_by_budget set to NULL by the
    // foreign key), as the migration marks one found revoked at the time
    // of a `budget.revoke` entry: restorable through itself.
    let f = fixture().await;
    let (control, token) = f.control_with_an_owner().await;
    let key = f.key(None, None).await;
    f.db.client
        .execute(
            "UPDATE api_keys SET revoked_at = now(), revoked_by_a_budget = true WHERE id = $1",
            &[&key],
        )
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let url = control.url(&format!("/v1/orgs/{}/keys/{key}/restore", f.org));
    let (status, v) = call(&http, "POST", &url, Some(&token), None).await;
    assert_eq!((status, &v["revoked"]), (200, &json!(false)), "{v}");
    let audited: i64 =
        f.db.client
            .query_one(
                "SELECT count(*) FROM audit_log WHERE action = 'key.restore' AND object_id = $1",
                &[&key.to_string()],
            )
            .await
            .unwrap()
            .get(0);
    assert_eq!(audited, 1);
    drop(control);
    f.db.drop_db().await;
}

#[tokio::test]
async fn the_migration_marks_the_keys_a_since_deleted_budget_revoked_restorable() {
    // A database as it was before migration 6: a budget revoked a key and
    // was deleted (the key's revoked_by_budget set to NULL), a person
    // revoked another.
    let mut db = TestDb::create().await;
    db.client
        .batch_execute(
            "CREATE TABLE floopy_schema_migrations (
                 version integer PRIMARY KEY, name text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .unwrap();
    for (version, name, sql) in &floopy_control_db::migrate::MIGRATIONS[..5] {
        db.client.batch_execute(sql).await.unwrap();
        db.client
            .execute(
                "INSERT INTO floopy_schema_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await
            .unwrap();
    }
    let (org, by_budget, by_person) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    db.client
        .execute(
            "INSERT INTO organizations (id, name, plan) VALUES ($1, 'Acme', 'pro')",
            &[&org],
        )
        .await
        .unwrap();
    for key in [by_budget, by_person] {
        db.client
            .execute(
                "INSERT INTO api_keys (id, org_id, name, key_hash) VALUES ($1, $2, 'k', $3)",
                &[
                    &key,
                    &org,
                    &floopy_model::hash_key(key.to_string().as_bytes()).as_slice(),
                ],
            )
            .await
            .unwrap();
    }
    // The evaluator's transaction: the revocation and its audit entry.
    db.client
        .batch_execute(&format!(
            "BEGIN;
             UPDATE api_keys SET revoked_at = now() WHERE id = '{by_budget}';
             INSERT INTO audit_log (id, org_id, actor_id, action, object_type, object_id, after)
               VALUES ('{}', '{org}', NULL, 'budget.revoke', 'budget', '{}', '{{}}');
             COMMIT;",
            Uuid::now_v7(),
            Uuid::now_v7()
        ))
        .await
        .unwrap();
    db.client
        .execute(
            "UPDATE api_keys SET revoked_at = now() WHERE id = $1",
            &[&by_person],
        )
        .await
        .unwrap();
    assert_eq!(
        floopy_control_db::migrate::migrate(&mut db.client)
            .await
            .unwrap(),
        floopy_control_db::migrate::MIGRATIONS.len() - 5
    );
    let marked = |key: Uuid| {
        let client = &db.client;
        async move {
            client
                .query_one(
                    "SELECT revoked_by_a_budget FROM api_keys WHERE id = $1",
                    &[&key],
                )
                .await
                .unwrap()
                .get::<_, bool>(0)
        }
    };
    assert!(
        marked(by_budget).await,
        "revoked with a budget.revoke entry"
    );
    assert!(!marked(by_person).await, "revoked by a person");
    db.drop_db().await;
}
