//! The management API against a running floopy-control and the real
//! Postgres: the permission matrix, validation, quotas, and the security
//! of sessions, CSRF, throttling and secrets.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use serde_json::{json, Value};
use uuid::Uuid;

/// Who calls, in the matrix's columns.
const CALLERS: [&str; 9] = [
    "owner",
    "admin",
    "manager of P",
    "manager",
    "admin of P",
    "member of P",
    "member",
    "other org",
    "anonymous",
];

/// One operation: a method, a path (with `{org}`, `{p}` for project P,
/// `{fresh}` for a project made for this call, `{key}` a key locked to P,
/// `{orgkey}` a key locked to none), a body, and the status each caller
/// gets, in `CALLERS` order.
struct Row {
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    expect: [u16; 9],
}

fn row(method: &'static str, path: &'static str, body: Option<Value>, expect: [u16; 9]) -> Row {
    Row {
        method,
        path,
        body,
        expect,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_against_every_operation() {
    let db = TestDb::create().await;
    let control = Control::start(&db, "").await;
    let (org, owner) = control.bootstrap("Acme", "enterprise", "owner@acme.test");
    let (_, stranger) = control.bootstrap("Other", "free", "owner@other.test");
    let http = reqwest::Client::new();
    let owner_token = token_for(&db, owner).await;

    let (status, p) = call(
        &http,
        "POST",
        &control.url(&format!("/v1/orgs/{org}/projects")),
        Some(&owner_token),
        Some(json!({"name": "Checkout", "slug": "checkout"})),
    )
    .await;
    assert_eq!(status, 201, "{p}");
    let p: Uuid = p["id"].as_str().unwrap().parse().unwrap();

    let mut tokens: Vec<Option<String>> = vec![Some(owner_token.clone())];
    for (role, projects) in [
        ("admin", vec![]),
        ("manager", vec![(p, "owner")]),
        ("manager", vec![]),
        ("member", vec![(p, "admin")]),
        ("member", vec![(p, "member")]),
        ("member", vec![]),
    ] {
        let user = user_in(&db, org, role, &projects).await;
        tokens.push(Some(token_for(&db, user).await));
    }
    tokens.push(Some(token_for(&db, stranger).await));
    tokens.push(None);

    // One row per operation; the columns are CALLERS.
    #[rustfmt::skip]
    let rows = [
        row("GET", "/v1/orgs/{org}", None, [200, 200, 200, 200, 200, 200, 200, 404, 401]),
        row("PATCH", "/v1/orgs/{org}", Some(json!({"name": "Acme"})), [200, 403, 403, 403, 403, 403, 403, 404, 401]),
        row("GET", "/v1/orgs/{org}/projects", None, [200, 200, 200, 200, 200, 200, 200, 404, 401]),
        row("POST", "/v1/orgs/{org}/projects", Some(json!({"name": "N", "slug": "{slug}"})), [201, 201, 201, 201, 403, 403, 403, 404, 401]),
        row("GET", "/v1/orgs/{org}/projects/{p}", None, [200, 200, 200, 404, 200, 200, 404, 404, 401]),
        row("PATCH", "/v1/orgs/{org}/projects/{p}", Some(json!({"description": "d"})), [200, 200, 200, 404, 200, 403, 404, 404, 401]),
        row("POST", "/v1/orgs/{org}/projects/{p}/archive", None, [200, 200, 200, 404, 200, 403, 404, 404, 401]),
        row("POST", "/v1/orgs/{org}/projects/{p}/unarchive", None, [200, 200, 200, 404, 200, 403, 404, 404, 401]),
        row("DELETE", "/v1/orgs/{org}/projects/{fresh}", None, [204, 204, 404, 404, 404, 404, 404, 404, 401]),
        row("GET", "/v1/orgs/{org}/keys", None, [200, 200, 200, 200, 200, 200, 200, 404, 401]),
        row("POST", "/v1/orgs/{org}/keys", Some(json!({"name": "k", "project_id": "{p}"})), [201, 201, 201, 404, 201, 403, 404, 404, 401]),
        row("POST", "/v1/orgs/{org}/keys", Some(json!({"name": "k"})), [201, 201, 403, 403, 403, 403, 403, 404, 401]),
        row("GET", "/v1/orgs/{org}/keys/{key}", None, [200, 200, 200, 404, 200, 200, 404, 404, 401]),
        row("PATCH", "/v1/orgs/{org}/keys/{key}", Some(json!({"name": "renamed"})), [200, 200, 200, 404, 200, 403, 404, 404, 401]),
        row("POST", "/v1/orgs/{org}/keys/{key}/revoke", None, [200, 200, 200, 404, 200, 403, 404, 404, 401]),
        row("POST", "/v1/orgs/{org}/keys/{key}/restore", None, [200, 200, 200, 404, 200, 403, 404, 404, 401]),
        row("GET", "/v1/orgs/{org}/keys/{orgkey}", None, [200, 200, 404, 404, 404, 404, 404, 404, 401]),
        row("POST", "/v1/orgs/{org}/keys/{orgkey}/revoke", None, [200, 200, 404, 404, 404, 404, 404, 404, 401]),
        row("GET", "/v1/orgs/{org}/limits", None, [200, 200, 403, 403, 403, 403, 403, 404, 401]),
        row("PUT", "/v1/orgs/{org}/limits/production", Some(json!({"rpm": 60})), [200, 200, 403, 403, 403, 403, 403, 404, 401]),
        row("GET", "/v1/orgs/{org}/audit", None, [200, 200, 403, 403, 403, 403, 403, 404, 401]),
        row("GET", "/v1/orgs/{org}/members", None, [200, 200, 200, 200, 200, 200, 200, 404, 401]),
        row("GET", "/v1/orgs/{org}/projects/{p}/members", None, [200, 200, 200, 404, 200, 200, 404, 404, 401]),
        row("PUT", "/v1/orgs/{org}/projects/{p}/members/{member}", Some(json!({"role": "member"})), [200, 200, 200, 404, 200, 403, 404, 404, 401]),
        row("PUT", "/v1/orgs/{org}/projects/{p}/members/{member}", Some(json!({"role": "owner"})), [200, 200, 200, 404, 403, 403, 404, 404, 401]),
        row("DELETE", "/v1/orgs/{org}/projects/{p}/members/{pmember}", None, [204, 204, 204, 404, 204, 403, 404, 404, 401]),
        row("PATCH", "/v1/orgs/{org}/members/{member}", Some(json!({"role": "manager"})), [200, 200, 403, 403, 403, 403, 403, 404, 401]),
        row("DELETE", "/v1/orgs/{org}/members/{member}", None, [204, 204, 403, 403, 403, 403, 403, 404, 401]),
        row("POST", "/v1/orgs/{org}/invitations", Some(json!({"email": "new@acme.test", "role": "member"})), [201, 201, 403, 403, 403, 403, 403, 404, 401]),
        row("POST", "/v1/orgs/{org}/invitations", Some(json!({"email": "boss@acme.test", "role": "owner"})), [201, 403, 403, 403, 403, 403, 403, 404, 401]),
        row("GET", "/v1/orgs/{org}/invitations", None, [200, 200, 403, 403, 403, 403, 403, 404, 401]),
        row("DELETE", "/v1/orgs/{org}/limits/production", None, [204, 204, 403, 403, 403, 403, 403, 404, 401]),
        row("GET", "/v1/orgs/{org}/budgets", None, [200, 200, 200, 200, 200, 200, 200, 404, 401]),
        row("POST", "/v1/orgs/{org}/budgets", Some(json!({"amount_usd": 5})), [201, 201, 403, 403, 403, 403, 403, 404, 401]),
        row("POST", "/v1/orgs/{org}/budgets", Some(json!({"amount_usd": 5, "project_id": "{p}"})), [201, 201, 201, 404, 201, 403, 404, 404, 401]),
        row("GET", "/v1/orgs/{org}/alert-rules", None, [200, 200, 200, 200, 200, 200, 200, 404, 401]),
        row("POST", "/v1/orgs/{org}/alert-rules", Some(json!({"threshold_usd": 5, "webhook_url": "https://hooks.example.com/a"})), [201, 201, 403, 403, 403, 403, 403, 404, 401]),
        row("POST", "/v1/orgs/{org}/alert-rules", Some(json!({"threshold_usd": 5, "webhook_url": "https://hooks.example.com/a", "project_id": "{p}"})), [201, 201, 201, 404, 201, 403, 404, 404, 401]),
        row("GET", "/v1/orgs/{org}/alerts", None, [200, 200, 200, 200, 200, 200, 200, 404, 401]),
    ];

    let mut failures = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        for (c, token) in tokens.iter().enumerate() {
            // Objects a call may consume are made anew, by the owner.
            let uses = |placeholder: &str| r.path.contains(placeholder);
            let fresh = if uses("{fresh}") {
                create(
                    &http,
                    &control,
                    &owner_token,
                    org,
                    "projects",
                    json!({"name": "F", "slug": format!("f-{i}-{c}")}),
                )
                .await
            } else {
                Uuid::nil()
            };
            let key = if uses("{key}") {
                create(
                    &http,
                    &control,
                    &owner_token,
                    org,
                    "keys",
                    json!({"name": "kp", "project_id": p}),
                )
                .await
            } else {
                Uuid::nil()
            };
            let orgkey = if uses("{orgkey}") {
                create(
                    &http,
                    &control,
                    &owner_token,
                    org,
                    "keys",
                    json!({"name": "ko"}),
                )
                .await
            } else {
                Uuid::nil()
            };
            // A plain org member, and one who is also a member of P.
            let member = if uses("{member}") || uses("{pmember}") {
                let projects = if uses("{pmember}") {
                    vec![(p, "member")]
                } else {
                    vec![]
                };
                user_in(&db, org, "member", &projects).await
            } else {
                Uuid::nil()
            };
            if r.method == "DELETE" && r.path.ends_with("/limits/production") {
                let url = control.url(&format!("/v1/orgs/{org}/limits/production"));
                let body = Some(json!({"rpm": 5}));
                assert_eq!(
                    call(&http, "PUT", &url, Some(&owner_token), body).await.0,
                    200
                );
            }
            let fill = |s: &str| {
                s.replace("{org}", &org.to_string())
                    .replace("{p}", &p.to_string())
                    .replace("{fresh}", &fresh.to_string())
                    .replace("{key}", &key.to_string())
                    .replace("{orgkey}", &orgkey.to_string())
                    .replace("{pmember}", &member.to_string())
                    .replace("{member}", &member.to_string())
                    .replace("{slug}", &format!("n-{i}-{c}"))
            };
            let body = r
                .body
                .as_ref()
                .map(|b| serde_json::from_str(&fill(&b.to_string())).unwrap());
            let (status, answer) = call(
                &http,
                r.method,
                &control.url(&fill(r.path)),
                token.as_deref(),
                body,
            )
            .await;
            if status != r.expect[c] {
                failures.push(format!(
                    "{} {} as {}: {} (expected {}) {answer}",
                    r.method, r.path, CALLERS[c], status, r.expect[c]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Members see only their projects (P, and none); the org's owner all.
    let listed = |token: Option<String>| {
        let (http, url) = (
            http.clone(),
            control.url(&format!("/v1/orgs/{org}/projects")),
        );
        async move {
            let (_, page) = call(&http, "GET", &url, token.as_deref(), None).await;
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        listed(tokens[5].clone()).await,
        [p.to_string()],
        "member of P"
    );
    assert!(
        listed(tokens[6].clone()).await.is_empty(),
        "member of nothing"
    );
    assert!(
        listed(tokens[0].clone()).await.len() > 2,
        "the owner sees them all"
    );
    drop(control);
    db.drop_db().await;
}

/// Creates a project or key as `token`; its id.
async fn create(
    http: &reqwest::Client,
    control: &Control,
    token: &str,
    org: Uuid,
    what: &str,
    body: Value,
) -> Uuid {
    let (status, v) = call(
        http,
        "POST",
        &control.url(&format!("/v1/orgs/{org}/{what}")),
        Some(token),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_names_every_field_and_writes_nothing() {
    let db = TestDb::create().await;
    let control = Control::start(&db, "").await;
    let (org, owner) = control.bootstrap("Acme", "enterprise", "owner@acme.test");
    let (other_org, _) = control.bootstrap("Other", "pro", "owner@other.test");
    let http = reqwest::Client::new();
    let token = token_for(&db, owner).await;
    let projects_url = control.url(&format!("/v1/orgs/{org}/projects"));
    let count = |table: &'static str| {
        let client = &db.client;
        async move {
            client
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    let projects_before = count("projects").await;

    let (status, v) = call(
        &http,
        "POST",
        &projects_url,
        Some(&token),
        Some(json!({
            "name": "x".repeat(101),
            "slug": "Not A Slug",
            "description": "d".repeat(501),
            "color": "red",
            "icon": "",
        })),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    let params: Vec<&str> = v["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["param"].as_str().unwrap())
        .collect();
    assert_eq!(
        params,
        ["name", "description", "icon", "slug", "color"],
        "{v}"
    );
    assert_eq!(v["error"]["code"], "invalid_request");

    for (body, param) in [
        (json!({"name": 5, "slug": "ok"}), "name"),
        (
            json!({"name": "ok", "slug": "ok", "colour": "#000000"}),
            "colour",
        ),
    ] {
        let (status, v) = call(&http, "POST", &projects_url, Some(&token), Some(body)).await;
        assert_eq!(status, 422, "{v}");
        assert_eq!(v["error"]["param"], param, "{v}");
    }
    let resp = http
        .post(&projects_url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_json");

    // The slug is unique in the org: the second is the slug field's error.
    let ok = json!({"name": "A", "slug": "same"});
    assert_eq!(
        call(&http, "POST", &projects_url, Some(&token), Some(ok.clone()))
            .await
            .0,
        201
    );
    let (status, v) = call(&http, "POST", &projects_url, Some(&token), Some(ok)).await;
    assert_eq!(
        (status, v["error"]["param"].as_str()),
        (422, Some("slug")),
        "{v}"
    );
    assert_eq!(
        count("projects").await,
        projects_before + 1,
        "only the good one was written"
    );

    // Keys: an unknown environment, a project of another org.
    let keys_url = control.url(&format!("/v1/orgs/{org}/keys"));
    let keys_before = count("api_keys").await;
    let (status, v) = call(
        &http,
        "POST",
        &keys_url,
        Some(&token),
        Some(json!({"name": "k", "environment": "prod"})),
    )
    .await;
    assert_eq!(
        (status, v["error"]["param"].as_str()),
        (422, Some("environment")),
        "{v}"
    );
    let foreign = Uuid::now_v7();
    db.client
        .execute(
            "INSERT INTO projects (org_id, id, name, slug) VALUES ($1, $2, 'Theirs', 'theirs')",
            &[&other_org, &foreign],
        )
        .await
        .unwrap();
    let (status, v) = call(
        &http,
        "POST",
        &keys_url,
        Some(&token),
        Some(json!({"name": "", "project_id": foreign, "default_project_id": Uuid::now_v7()})),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    let params: Vec<&str> = v["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["param"].as_str().unwrap())
        .collect();
    assert_eq!(params, ["name", "project_id", "default_project_id"]);
    // Budgets and alert rules: every bad field named.
    let fields_of = |v: &Value| -> Vec<String> {
        v["error"]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["param"].as_str().unwrap().to_string())
            .collect()
    };
    let (status, v) = call(
        &http,
        "POST",
        &control.url(&format!("/v1/orgs/{org}/budgets")),
        Some(&token),
        Some(
            json!({"amount_usd": 1, "period": "year", "webhook_url": "ftp://hooks.example.com",
                    "webhook_secret": "short"}),
        ),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(fields_of(&v), ["period", "webhook_url", "webhook_secret"]);
    let (status, v) = call(
        &http,
        "POST",
        &control.url(&format!("/v1/orgs/{org}/alert-rules")),
        Some(&token),
        Some(json!({"period": "week"})),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(fields_of(&v), ["threshold_usd", "webhook_url"]);
    let (status, v) = call(
        &http,
        "GET",
        &control.url(&format!("/v1/orgs/{org}/alerts?state=lost")),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(
        (status, fields_of(&v)),
        (422, vec!["state".to_string()]),
        "{v}"
    );
    // Limits: out of range.
    let (status, v) = call(
        &http,
        "PUT",
        &control.url(&format!("/v1/orgs/{org}/limits/production")),
        Some(&token),
        Some(json!({"rpm": 0, "monthly_cost_usd": -1})),
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["fields"].as_array().unwrap().len(), 2, "{v}");
    let (status, _) = call(
        &http,
        "PUT",
        &control.url(&format!("/v1/orgs/{org}/limits/prod")),
        Some(&token),
        Some(json!({"rpm": 5})),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(count("api_keys").await, keys_before, "no key was written");
    assert_eq!(count("environment_limits").await, 0, "no limit was written");
    drop(control);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_hold_exactly_even_under_concurrent_creates() {
    let db = TestDb::create().await;
    let control = Control::start(&db, "").await;
    let http = reqwest::Client::new();
    for (plan, quota) in [("free", 1), ("starter", 3), ("pro", 10)] {
        let (org, owner) = control.bootstrap(plan, plan, &format!("owner@{plan}.test"));
        let token = token_for(&db, owner).await;
        let url = control.url(&format!("/v1/orgs/{org}/projects"));
        // The Default project counts: quota - 1 more fit.
        for i in 1..quota {
            let body = json!({"name": "P", "slug": format!("p{i}")});
            assert_eq!(
                call(&http, "POST", &url, Some(&token), Some(body)).await.0,
                201,
                "{plan} #{i}"
            );
        }
        let (status, v) = call(
            &http,
            "POST",
            &url,
            Some(&token),
            Some(json!({"name": "P", "slug": "over"})),
        )
        .await;
        assert_eq!(status, 403, "{plan}: {v}");
        assert_eq!(v["error"]["code"], "plan_quota_exceeded");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("{plan} plan allows {quota} projects")),
            "{message}"
        );
    }

    // One below a starter quota, 20 creates at once: exactly one lands.
    let (org, owner) = control.bootstrap("race", "starter", "owner@race.test");
    let token = token_for(&db, owner).await;
    let url = control.url(&format!("/v1/orgs/{org}/projects"));
    assert_eq!(
        call(
            &http,
            "POST",
            &url,
            Some(&token),
            Some(json!({"name": "P", "slug": "first"}))
        )
        .await
        .0,
        201
    );
    let mut racers = Vec::new();
    for i in 0..20 {
        let (http, url, token) = (http.clone(), url.clone(), token.clone());
        racers.push(tokio::spawn(async move {
            call(
                &http,
                "POST",
                &url,
                Some(&token),
                Some(json!({"name": "R", "slug": format!("r{i}")})),
            )
            .await
            .0
        }));
    }
    let mut statuses = Vec::new();
    for r in racers {
        statuses.push(r.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 403),
        "{statuses:?}"
    );
    let n: i64 = db
        .client
        .query_one("SELECT count(*) FROM projects WHERE org_id = $1", &[&org])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 3);
    drop(control);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_csrf_throttling_and_secrets() {
    let db = TestDb::create().await;
    let control = Control::start(
        &db,
        "login_throttle: {max_failures_per_account: 3, max_failures_per_client: 50}\n",
    )
    .await;
    let (org, _) = control.bootstrap("Acme", "pro", "owner@acme.test");
    let http = reqwest::Client::new();

    // Login: the cookie's flags, and the CSRF token.
    let resp = http
        .post(control.url("/v1/auth/login"))
        .json(&json!({"email": "Owner@Acme.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(flag), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_string();
    let body: Value = resp.json().await.unwrap();
    let csrf = body["csrf_token"].as_str().unwrap().to_string();

    // Reads need no CSRF token; a change without it (or with a wrong one)
    // is refused, with it accepted.
    let me = http
        .get(control.url("/v1/me"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let create = |token: Option<&str>| {
        let mut req = http
            .post(control.url(&format!("/v1/orgs/{org}/projects")))
            .header("cookie", &session)
            .json(&json!({"name": "P", "slug": "p"}));
        if let Some(token) = token {
            req = req.header("x-csrf-token", token);
        }
        req.send()
    };
    let refused = create(None).await.unwrap();
    assert_eq!(refused.status(), 403);
    let v: Value = refused.json().await.unwrap();
    assert_eq!(v["error"]["code"], "csrf_token_invalid");
    assert_eq!(create(Some("wrong")).await.unwrap().status(), 403);
    assert_eq!(create(Some(&csrf)).await.unwrap().status(), 201);

    // A personal access token, shown once, then usable and revocable.
    let resp = http
        .post(control.url("/v1/tokens"))
        .header("cookie", &session)
        .header("x-csrf-token", &csrf)
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("fpu_"));
    let (status, list) = call(&http, "GET", &control.url("/v1/tokens"), Some(&token), None).await;
    assert_eq!(status, 200);
    assert!(
        !list.to_string().contains(&token),
        "a listing never shows the token"
    );
    let id = created["id"].as_str().unwrap();
    let (status, _) = call(
        &http,
        "DELETE",
        &control.url(&format!("/v1/tokens/{id}")),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        call(&http, "GET", &control.url("/v1/me"), Some(&token), None)
            .await
            .0,
        401
    );

    // Logout ends the session.
    let out = http
        .post(control.url("/v1/auth/logout"))
        .header("cookie", &session)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    let me = http
        .get(control.url("/v1/me"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);

    // Three failures throttle the account, even for the right password.
    for _ in 0..3 {
        let (status, _) = call(
            &http,
            "POST",
            &control.url("/v1/auth/login"),
            None,
            Some(json!({"email": "owner@acme.test", "password": "wrong password!"})),
        )
        .await;
        assert_eq!(status, 401);
    }
    let resp = http
        .post(control.url("/v1/auth/login"))
        .json(&json!({"email": "owner@acme.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));

    // Neither the password nor a token is in the logs or the audit log.
    let audit: String = db
        .client
        .query_one("SELECT coalesce(string_agg(action || coalesce(before::text, '') || coalesce(after::text, ''), ' '), '') FROM audit_log", &[])
        .await
        .unwrap()
        .get(0);
    assert!(
        audit.contains("token.create"),
        "the token's creation is audited: {audit}"
    );
    let stored: String = db
        .client
        .query_one(
            "SELECT coalesce(string_agg(password_hash, ' '), '') FROM users",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    for secret in [PASSWORD, token.as_str(), csrf.as_str(), "wrong password!"] {
        assert!(!audit.contains(secret), "a secret in the audit log");
        assert!(!control.stderr().contains(secret), "a secret in the logs");
        assert!(!stored.contains(secret), "a secret stored as is");
    }
    drop(control);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_project_and_the_last_owner_are_kept() {
    let db = TestDb::create().await;
    let control = Control::start(&db, "").await;
    let (org, owner) = control.bootstrap("Acme", "pro", "owner@acme.test");
    let http = reqwest::Client::new();
    let token = token_for(&db, owner).await;
    let default = Uuid::nil();
    for (method, path) in [
        ("DELETE", format!("/v1/orgs/{org}/projects/{default}")),
        ("POST", format!("/v1/orgs/{org}/projects/{default}/archive")),
    ] {
        let (status, v) = call(&http, method, &control.url(&path), Some(&token), None).await;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (409, Some("default_project")),
            "{method} {path}: {v}"
        );
    }
    let (status, v) = call(
        &http,
        "PATCH",
        &control.url(&format!("/v1/orgs/{org}/members/{owner}")),
        Some(&token),
        Some(json!({"role": "admin"})),
    )
    .await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (409, Some("last_owner")),
        "{v}"
    );
    // Deleting a project revokes the keys locked to it and clears it as a
    // default.
    let projects = control.url(&format!("/v1/orgs/{org}/projects"));
    let (_, doomed) = call(
        &http,
        "POST",
        &projects,
        Some(&token),
        Some(json!({"name": "D", "slug": "doomed"})),
    )
    .await;
    let doomed = doomed["id"].as_str().unwrap().to_string();
    let keys = control.url(&format!("/v1/orgs/{org}/keys"));
    let (_, locked) = call(
        &http,
        "POST",
        &keys,
        Some(&token),
        Some(json!({"name": "l", "project_id": doomed})),
    )
    .await;
    let (_, defaulted) = call(
        &http,
        "POST",
        &keys,
        Some(&token),
        Some(json!({"name": "d", "default_project_id": doomed})),
    )
    .await;
    let (status, _) = call(
        &http,
        "DELETE",
        &format!("{projects}/{doomed}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 204);
    for (key, revoked) in [(&locked, true), (&defaulted, false)] {
        let id = key["id"].as_str().unwrap();
        let (_, now) = call(&http, "GET", &format!("{keys}/{id}"), Some(&token), None).await;
        assert_eq!(now["revoked"], revoked, "{now}");
        assert!(now["default_project_id"].is_null(), "{now}");
    }

    // The audit log reads back, newest first, paginated.
    let (status, page) = call(
        &http,
        "GET",
        &control.url(&format!("/v1/orgs/{org}/audit?limit=1")),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    drop(control);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_is_a_one_time_way_in() {
    let db = TestDb::create().await;
    let control = Control::start(&db, "").await;
    let (org, owner) = control.bootstrap("Acme", "pro", "owner@acme.test");
    let http = reqwest::Client::new();
    let token = token_for(&db, owner).await;
    let invitations = control.url(&format!("/v1/orgs/{org}/invitations"));
    let body = json!({"email": "Ann@Acme.test", "role": "manager"});
    let (status, invitation) = call(&http, "POST", &invitations, Some(&token), Some(body)).await;
    assert_eq!(status, 201, "{invitation}");
    let secret = invitation["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with("fpi_"));
    let accept = control.url("/v1/invitations/accept");

    // A new user must give a name and a good password; nothing is written
    // until they do.
    let short = json!({"token": secret, "password": "short"});
    let (status, v) = call(&http, "POST", &accept, None, Some(short)).await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["fields"].as_array().unwrap().len(), 2, "{v}");
    let good = json!({"token": secret, "name": "Ann", "password": PASSWORD});
    let (status, joined) = call(&http, "POST", &accept, None, Some(good.clone())).await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["role"], "manager");
    assert_eq!(
        call(&http, "POST", &accept, None, Some(good)).await.0,
        404,
        "once only"
    );

    // Ann signs in with what she chose, and sees the org with her role.
    let resp = http
        .post(control.url("/v1/auth/login"))
        .json(&json!({"email": "ann@acme.test", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_string();
    let session = cookie.split(';').next().unwrap().to_string();
    let me = http.get(control.url("/v1/me")).header("cookie", session);
    let me: Value = me.send().await.unwrap().json().await.unwrap();
    assert_eq!(me["orgs"][0]["role"], "manager", "{me}");

    // A revoked invitation no longer works.
    let body = json!({"email": "bob@acme.test", "role": "member"});
    let (_, second) = call(&http, "POST", &invitations, Some(&token), Some(body)).await;
    let id = second["id"].as_str().unwrap();
    let revoke = control.url(&format!("/v1/orgs/{org}/invitations/{id}"));
    assert_eq!(
        call(&http, "DELETE", &revoke, Some(&token), None).await.0,
        204
    );
    let bob = json!({"token": second["token"], "name": "Bob", "password": PASSWORD});
    assert_eq!(call(&http, "POST", &accept, None, Some(bob)).await.0, 404);

    // An existing user accepts signed in as themselves, never with a
    // password (the token's holder could guess it).
    let (other_org, carol) = control.bootstrap("Other", "free", "carol@other.test");
    let body = json!({"email": "carol@other.test", "role": "member"});
    let (_, third) = call(&http, "POST", &invitations, Some(&token), Some(body)).await;
    let carol_accepts = json!({"token": third["token"]});
    let (status, v) = call(&http, "POST", &accept, None, Some(carol_accepts.clone())).await;
    assert_eq!(status, 401, "{v}");
    let ann: Uuid = joined["user_id"].as_str().unwrap().parse().unwrap();
    let ann_token = token_for(&db, ann).await;
    let (status, _) = call(
        &http,
        "POST",
        &accept,
        Some(&ann_token),
        Some(carol_accepts.clone()),
    )
    .await;
    assert_eq!(status, 403, "someone else's invitation");
    let carol_token = token_for(&db, carol).await;
    let (status, v) = call(
        &http,
        "POST",
        &accept,
        Some(&carol_token),
        Some(carol_accepts),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_ne!(other_org, org);

    // An invitation works only while its inviter may still make it.
    let admin = user_in(&db, org, "admin", &[]).await;
    let admin_token = token_for(&db, admin).await;
    let body = json!({"email": "dave@acme.test", "role": "member"});
    let (_, fourth) = call(&http, "POST", &invitations, Some(&admin_token), Some(body)).await;
    let demote = control.url(&format!("/v1/orgs/{org}/members/{admin}"));
    let (status, _) = call(
        &http,
        "PATCH",
        &demote,
        Some(&token),
        Some(json!({"role": "member"})),
    )
    .await;
    assert_eq!(status, 200);
    let dave = json!({"token": fourth["token"], "name": "Dave", "password": PASSWORD});
    assert_eq!(call(&http, "POST", &accept, None, Some(dave)).await.0, 404);

    // Only JSON bodies (a form from another site is refused unread).
    let form = http
        .post(&accept)
        .header("content-type", "text/plain")
        .body("{\"token\": \"x\", \"password\": \"y\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    drop(control);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_page_with_a_cursor_and_other_fields_are_checked_too() {
    let db = TestDb::create().await;
    let control = Control::start(&db, "").await;
    let (org, owner) = control.bootstrap("Acme", "pro", "owner@acme.test");
    let http = reqwest::Client::new();
    let token = token_for(&db, owner).await;
    let projects = control.url(&format!("/v1/orgs/{org}/projects"));
    for i in 0..4 {
        let body = json!({"name": "P", "slug": format!("p{i}")});
        assert_eq!(
            call(&http, "POST", &projects, Some(&token), Some(body))
                .await
                .0,
            201
        );
    }
    // Five projects (Default included), two a page: 2 + 2 + 1, every one once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let url = match &cursor {
            None => format!("{projects}?limit=2"),
            Some(c) => format!("{projects}?limit=2&cursor={c}"),
        };
        let (status, page) = call(&http, "GET", &url, Some(&token), None).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        for p in page["data"].as_array().unwrap() {
            seen.push(p["id"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!((pages, seen.len()), (3, 5));
    seen.dedup();
    assert_eq!(seen.len(), 5, "no project twice");
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("cursor=nope", "cursor"),
    ] {
        let (status, v) = call(
            &http,
            "GET",
            &format!("{projects}?{query}"),
            Some(&token),
            None,
        )
        .await;
        assert_eq!(
            (status, v["error"]["param"].as_str()),
            (422, Some(param)),
            "{query}: {v}"
        );
    }

    // More fields, each named.
    let cases = [
        (
            "PATCH",
            format!("/v1/orgs/{org}"),
            json!({"name": ""}),
            "name",
        ),
        (
            "PATCH",
            format!("/v1/orgs/{org}"),
            json!({"plan": "gold"}),
            "plan",
        ),
        (
            "POST",
            "/v1/tokens".to_string(),
            json!({"name": "x".repeat(201)}),
            "name",
        ),
        (
            "POST",
            format!("/v1/orgs/{org}/invitations"),
            json!({"email": "not an email", "role": "member"}),
            "email",
        ),
        (
            "POST",
            format!("/v1/orgs/{org}/invitations"),
            json!({"email": "a@b.c", "role": "boss"}),
            "role",
        ),
        (
            "PATCH",
            format!("/v1/orgs/{org}/members/{owner}"),
            json!({"role": "king"}),
            "role",
        ),
        (
            "POST",
            "/v1/auth/login".to_string(),
            json!({"email": "a\u{0}b", "password": "x"}),
            "email",
        ),
    ];
    for (method, path, body, param) in cases {
        let (status, v) = call(&http, method, &control.url(&path), Some(&token), Some(body)).await;
        assert_eq!(
            (status, v["error"]["param"].as_str()),
            (422, Some(param)),
            "{method} {path}: {v}"
        );
    }
    let name: String = db
        .client
        .query_one("SELECT name FROM organizations WHERE id = $1", &[&org])
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "Acme", "nothing was written");
    drop(control);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_and_exits_cleanly() {
    let db = TestDb::create().await;
    // The grace period is longer than the login's hash (about a second in
    // a debug build on a loaded machine), so the request must finish.
    let mut control = Control::start(&db, "shutdown_grace_seconds: 30\n").await;
    let (_, owner) = control.bootstrap("Acme", "pro", "owner@acme.test");
    let token = token_for(&db, owner).await;
    let http = reqwest::Client::new();
    assert_eq!(
        call(&http, "GET", &control.url("/healthz"), None, None)
            .await
            .0,
        200
    );
    // A login is the slowest request (a password hash): start one, then
    // signal while it runs.
    let login = {
        let (http, url) = (http.clone(), control.url("/v1/auth/login"));
        tokio::spawn(async move {
            let status = call(
                &http,
                "POST",
                &url,
                None,
                Some(json!({"email": "owner@acme.test", "password": PASSWORD})),
            )
            .await
            .0;
            (status, std::time::Instant::now())
        })
    };
    // Long enough for the request to reach the server on a busy machine,
    // well within the hash (hundreds of milliseconds in a release build,
    // about a second in a debug one).
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let pid = control.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let signalled = std::time::Instant::now();
    let (status, answered) = login.await.unwrap();
    assert_eq!(status, 200, "the request in flight finished");
    // Answered after the signal, so it was in flight when the signal came
    // (a request sent after it finds the listener closed, not a 200).
    assert!(
        answered > signalled,
        "the login was answered before the signal: nothing was in flight"
    );
    let status = tokio::task::spawn_blocking(move || control.child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");
    drop(token);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_fire_each_threshold_once_and_revoke_once() {
    let db = TestDb::create().await;
    let fast = "budgets: {evaluate_every_ms: 50}\n";
    let first = Control::start(&db, fast).await;
    let second = Control::start(&db, fast).await;
    let (org, owner) = first.bootstrap("Acme", "pro", "owner@acme.test");
    let http = reqwest::Client::new();
    let token = token_for(&db, owner).await;
    let (_, project) = call(
        &http,
        "POST",
        &first.url(&format!("/v1/orgs/{org}/projects")),
        Some(&token),
        Some(json!({"name": "P", "slug": "p"})),
    )
    .await;
    let project: Uuid = project["id"].as_str().unwrap().parse().unwrap();
    let (_, key) = call(
        &http,
        "POST",
        &second.url(&format!("/v1/orgs/{org}/keys")),
        Some(&token),
        Some(json!({"name": "k", "project_id": project})),
    )
    .await;
    let body = json!({"project_id": project, "amount_usd": 1, "action": "alert_and_revoke"});
    let (status, budget) = call(
        &http,
        "POST",
        &first.url(&format!("/v1/orgs/{org}/budgets")),
        Some(&token),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{budget}");
    let budget_id = budget["id"].as_str().unwrap().to_string();

    // Spend as two gateway replicas report it, in steps: 0.49, 0.50 (the
    // 50 % threshold exactly), 0.80, then 1.00 (the budget exactly).
    let day: i32 = db
        .client
        .query_one(
            "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')::int",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let count = |action: &'static str| {
        let client = &db.client;
        let budget_id = budget_id.clone();
        async move {
            client
                .query_one(
                    "SELECT count(*) FROM audit_log WHERE action = $1 AND object_id = $2",
                    &[&action, &budget_id],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    for (a, b, thresholds) in [
        (245_000i64, 245_000i64, 0),
        (250_000, 250_000, 1),
        (400_000, 400_000, 2),
        (500_000, 500_000, 3),
    ] {
        for (replica, spent) in [("gw-a", a), ("gw-b", b)] {
            db.client
                .execute(
                    "INSERT INTO replica_project_daily_usage (replica, org_id, project_id, day, settled_micro_usd)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (org_id, day, project_id, replica) DO UPDATE SET settled_micro_usd = EXCLUDED.settled_micro_usd",
                    &[&replica, &org, &project, &day, &spent],
                )
                .await
                .unwrap();
        }
        // Many ticks of both replicas.
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        assert_eq!(count("budget.threshold").await, thresholds, "at {}", a + b);
    }
    assert_eq!(count("budget.revoke").await, 1, "revoked once");
    let key_id = key["id"].as_str().unwrap();
    let (_, k) = call(
        &http,
        "GET",
        &first.url(&format!("/v1/orgs/{org}/keys/{key_id}")),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(k["revoked"], true, "{k}");
    let revoked_by: Option<Uuid> = db
        .client
        .query_one(
            "SELECT revoked_by_budget FROM api_keys WHERE id = $1",
            &[&key_id.parse::<Uuid>().unwrap()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        revoked_by.map(|b| b.to_string()),
        Some(budget_id.clone()),
        "the budget that revoked it"
    );

    // Raised, the keys come back; lowered below the spend, it breaches (and
    // revokes) again at the next tick.
    let budget_url = first.url(&format!("/v1/orgs/{org}/budgets/{budget_id}"));
    let raise = Some(json!({"amount_usd": 2}));
    assert_eq!(
        call(&http, "PATCH", &budget_url, Some(&token), raise)
            .await
            .0,
        200
    );
    let restore = format!("{budget_url}/restore");
    let (status, v) = call(&http, "POST", &restore, Some(&token), None).await;
    assert_eq!((status, v["keys_restored"].as_u64()), (200, Some(1)), "{v}");
    let lower = Some(json!({"amount_usd": 0.5}));
    assert_eq!(
        call(&http, "PATCH", &budget_url, Some(&token), lower)
            .await
            .0,
        200
    );
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(
        count("budget.revoke").await,
        2,
        "lowered below the spend: breached again"
    );
    drop((first, second));
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_members_of_a_project_that_is_not_the_org_s_are_not_found() {
    let db = TestDb::create().await;
    let control = Control::start(&db, "").await;
    let (org, owner) = control.bootstrap("Acme", "enterprise", "owner@acme.test");
    let (other_org, other_owner) = control.bootstrap("Other", "pro", "owner@other.test");
    let http = reqwest::Client::new();
    let owner_token = token_for(&db, owner).await;
    let admin_token = token_for(&db, user_in(&db, org, "admin", &[]).await).await;
    let theirs = create(
        &http,
        &control,
        &token_for(&db, other_owner).await,
        other_org,
        "projects",
        json!({"name": "Theirs", "slug": "theirs"}),
    )
    .await;
    let ours = create(
        &http,
        &control,
        &owner_token,
        org,
        "projects",
        json!({"name": "Ours", "slug": "ours"}),
    )
    .await;
    for token in [&owner_token, &admin_token] {
        for project in [theirs, Uuid::now_v7()] {
            let url = control.url(&format!("/v1/orgs/{org}/projects/{project}/members"));
            let (status, v) = call(&http, "GET", &url, Some(token), None).await;
            assert_eq!(
                (status, v["error"]["code"].as_str()),
                (404, Some("not_found")),
                "{project}: {v}"
            );
        }
        let url = control.url(&format!("/v1/orgs/{org}/projects/{ours}/members"));
        let (status, v) = call(&http, "GET", &url, Some(token), None).await;
        assert_eq!(status, 200, "{v}");
        assert!(v["data"].is_array(), "{v}");
    }
    drop(control);
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limits_list_is_a_page_of_every_environment_with_its_spend() {
    let db = TestDb::create().await;
    let control = Control::start(&db, "").await;
    let (org, owner) = control.bootstrap("Acme", "enterprise", "owner@acme.test");
    let http = reqwest::Client::new();
    let token = token_for(&db, owner).await;
    let url = control.url(&format!("/v1/orgs/{org}/limits/production"));
    let (status, v) = call(
        &http,
        "PUT",
        &url,
        Some(&token),
        Some(json!({"monthly_cost_usd": 5})),
    )
    .await;
    assert_eq!(
        (status, v["monthly_cost_usd"].as_str()),
        (200, Some("5.000000")),
        "{v}"
    );
    // Spend this month in staging, which has no limit.
    let month: i32 = db
        .client
        .query_one(
            "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYYMM')::int",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    db.client
        .execute(
            "INSERT INTO replica_usage (replica, org_id, environment, month, settled_micro_usd, minute, rpm_count)
             VALUES ('r1', $1, 'staging', $2, 1234567, 0, 0)",
            &[&org, &month],
        )
        .await
        .unwrap();
    let (status, v) = call(
        &http,
        "GET",
        &control.url(&format!("/v1/orgs/{org}/limits")),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["next_cursor"], Value::Null, "{v}");
    let rows: Vec<(&str, &Value, &str)> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["environment"].as_str().unwrap(),
                &l["monthly_cost_usd"],
                l["month_to_date_usd"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("development", &Value::Null, "0.000000"),
            ("staging", &Value::Null, "1.234567"),
            ("production", &json!("5.000000"), "0.000000"),
            ("other", &Value::Null, "0.000000"),
        ]
    );
    drop(control);
    db.drop_db().await;
}
