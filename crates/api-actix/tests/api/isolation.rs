//! Tenant isolation: another tenant's resources are invisible and untouchable through every
//! tenant-scoped route (404, never 403, and nothing changes), lists never leak a row, and the
//! database itself (row-level security on `app.tenant_id`) refuses the application role any
//! cross-tenant read or write even when the query asks for it. Also the soft-delete lifecycle
//! of users as the API shows it.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement, TransactionTrait};
use serde_json::{Value, json};

use crate::helpers::{TenantFixture, TestApp, assert_problem, json};

// ---------------------------------------------------------------------------------------------
// HTTP helpers

async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Response {
    let mut req = app.request(method, path, token);
    if let Some(body) = body {
        req = req.json(body);
    }
    req.send().await.expect("request sent")
}

/// The `id`s of a list answer's items.
fn item_ids(list: &Value) -> BTreeSet<String> {
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a list answer: {list}"))
        .iter()
        .map(|item| item["id"].as_str().expect("item id").to_owned())
        .collect()
}

fn set_of(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|&id| id.to_owned()).collect()
}

/// Fails when any of `secrets` (another tenant's ids) appears anywhere in `body`.
fn assert_mentions_none(body: &Value, secrets: &[&str], context: &str) {
    let text = body.to_string();
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{context}: the answer mentions {secret}, which belongs to another tenant: {text}"
        );
    }
}

/// One tenant-scoped route that takes the id of one of the victim's resources.
struct Probe {
    method: Method,
    path: String,
    body: Option<Value>,
}

fn probe(method: Method, path: String, body: Option<Value>) -> Probe {
    Probe { method, path, body }
}

// ---------------------------------------------------------------------------------------------
// 1. Through the API

#[tokio::test]
async fn another_tenants_resources_are_not_found_by_every_route() {
    let app = TestApp::spawn().await;
    let a = app.tenant("acme").await;
    let b = app.tenant("globex").await;
    let at = &a.admin_token;

    // Tenant A: a live agent, a soft-deleted agent, a member, a soft-deleted user, an API key,
    // and the audit entries all of that wrote (plus an update).
    let a_agent = app.agent(at, "support").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    json(
        app.patch(
            &format!("/v1/agents/{a_agent}"),
            at,
            json!({"description": "original"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let a_gone_agent = app.agent(at, "retired").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.delete(&format!("/v1/agents/{a_gone_agent}"), at)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let (a_member, a_member_token) = app.user(&a, "member@acme.test", "member").await;
    let (a_gone_user, _) = app.user(&a, "gone@acme.test", "member").await;
    assert_eq!(
        app.delete(&format!("/v1/users/{a_gone_user}"), at)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let (a_key, a_key_secret) = app.api_key(&a, &["read", "write", "admin"]).await;

    // Tenant B: an admin JWT and an all-scopes key, and an agent with the same slug as A's
    // (slugs are unique per tenant only).
    let (b_key, b_key_secret) = app.api_key(&b, &["read", "write", "admin"]).await;
    let b_agent_json = app.agent(&b.admin_token, "support").await;
    assert_eq!(b_agent_json["slug"], "support");
    let b_agent = b_agent_json["id"].as_str().unwrap().to_owned();
    assert_ne!(b_agent, a_agent);

    // What A looks like before B tries anything.
    let a_views = [
        "/v1/agents?include_deleted=true&limit=100",
        "/v1/users?include_deleted=true&limit=100",
        "/v1/api-keys?limit=100",
        "/v1/audit?limit=100",
        "/v1/tenant",
    ];
    let mut before = Vec::new();
    for path in a_views {
        before.push(json(app.get(path, at).await, StatusCode::OK).await);
    }
    let a_agent_before = json(
        app.get(&format!("/v1/agents/{a_agent}"), at).await,
        StatusCode::OK,
    )
    .await;
    let a_member_before = json(
        app.get(&format!("/v1/users/{a_member}"), at).await,
        StatusCode::OK,
    )
    .await;
    let a_audit_count = before[3]["items"].as_array().unwrap().len();
    assert!(a_audit_count >= 8, "A has audit entries: {}", before[3]);

    // Every tenant-scoped route that takes an id, aimed at A's resources. A new route is one line.
    let probes = [
        probe(Method::GET, format!("/v1/agents/{a_agent}"), None),
        probe(Method::GET, format!("/v1/agents/{a_gone_agent}"), None),
        probe(
            Method::PATCH,
            format!("/v1/agents/{a_agent}"),
            Some(json!({"name": "Hijacked", "description": "pwned"})),
        ),
        probe(Method::DELETE, format!("/v1/agents/{a_agent}"), None),
        probe(
            Method::POST,
            format!("/v1/agents/{a_gone_agent}/restore"),
            None,
        ),
        probe(Method::POST, format!("/v1/agents/{a_agent}/restore"), None),
        probe(Method::DELETE, format!("/v1/agents/{a_agent}/purge"), None),
        probe(
            Method::DELETE,
            format!("/v1/agents/{a_gone_agent}/purge"),
            None,
        ),
        probe(Method::GET, format!("/v1/users/{a_member}"), None),
        probe(Method::GET, format!("/v1/users/{}", a.admin_id), None),
        probe(Method::GET, format!("/v1/users/{a_gone_user}"), None),
        probe(
            Method::PATCH,
            format!("/v1/users/{a_member}"),
            Some(json!({"name": "Hijacked", "role": "admin"})),
        ),
        probe(
            Method::PATCH,
            format!("/v1/users/{}", a.admin_id),
            Some(json!({"status": "disabled"})),
        ),
        probe(Method::DELETE, format!("/v1/users/{a_member}"), None),
        probe(Method::DELETE, format!("/v1/users/{}", a.admin_id), None),
        probe(
            Method::POST,
            format!("/v1/users/{a_gone_user}/restore"),
            None,
        ),
        probe(Method::POST, format!("/v1/users/{a_member}/restore"), None),
        probe(Method::DELETE, format!("/v1/users/{a_member}/purge"), None),
        probe(
            Method::DELETE,
            format!("/v1/users/{a_gone_user}/purge"),
            None,
        ),
        probe(Method::DELETE, format!("/v1/api-keys/{a_key}"), None),
    ];
    for p in &probes {
        // The route exists (the fallback for unknown routes answers 404 without asking for
        // credentials), so the 404s below come from the lookup, not from a typo in the table.
        let res = send(&app, p.method.clone(), &p.path, None, p.body.as_ref()).await;
        assert_eq!(
            res.status(),
            StatusCode::UNAUTHORIZED,
            "{} {} is a route that needs credentials",
            p.method,
            p.path
        );
        for (who, token) in [
            ("B's admin JWT", b.admin_token.as_str()),
            ("B's admin API key", b_key_secret.as_str()),
        ] {
            let res = send(
                &app,
                p.method.clone(),
                &p.path,
                Some(token),
                p.body.as_ref(),
            )
            .await;
            assert_eq!(
                res.status(),
                StatusCode::NOT_FOUND,
                "{who}: {} {} must not find A's resource",
                p.method,
                p.path
            );
            let problem = assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
            assert_mentions_none(
                &problem,
                &[&a.id, "acme"],
                &format!("{who}: {} {}", p.method, p.path),
            );
        }
    }

    // A is exactly as it was: nothing updated, deleted, restored, purged or revoked, and no
    // audit entry written on B's behalf.
    for (path, was) in a_views.iter().zip(&before) {
        let now = json(app.get(path, at).await, StatusCode::OK).await;
        assert_eq!(&now, was, "A's {path} is unchanged");
    }
    assert_eq!(
        json(
            app.get(&format!("/v1/agents/{a_agent}"), at).await,
            StatusCode::OK
        )
        .await,
        a_agent_before
    );
    assert_eq!(a_agent_before["name"], "Agent support");
    assert!(a_agent_before["deleted_at"].is_null());
    assert_eq!(
        json(
            app.get(&format!("/v1/users/{a_member}"), at).await,
            StatusCode::OK
        )
        .await,
        a_member_before
    );
    assert_eq!(a_member_before["role"], "member");
    assert_eq!(a_member_before["status"], "active");
    assert!(a_member_before["deleted_at"].is_null());
    let a_agents = &before[0];
    assert_eq!(
        item_ids(a_agents),
        set_of(&[&a_agent, &a_gone_agent]),
        "both of A's agents, neither purged"
    );
    let a_users = &before[1];
    assert_eq!(
        item_ids(a_users),
        set_of(&[&a.admin_id, &a_member, &a_gone_user])
    );
    let gone_user = a_users["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == a_gone_user.as_str())
        .unwrap();
    assert!(gone_user["deleted_at"].is_string(), "still soft-deleted");
    let a_keys = &before[2];
    assert_eq!(item_ids(a_keys), set_of(&[&a_key]));
    assert!(a_keys["items"][0]["revoked_at"].is_null());
    // A's key, member and admin still work.
    let me = json(app.get("/v1/me", &a_key_secret).await, StatusCode::OK).await;
    assert_eq!(me["tenant"]["id"], a.id.as_str());
    assert_eq!(me["api_key"]["id"], a_key.as_str());
    let listed = json(app.get("/v1/agents", &a_key_secret).await, StatusCode::OK).await;
    assert_eq!(item_ids(&listed), set_of(&[&a_agent]));
    let me = json(app.get("/v1/me", &a_member_token).await, StatusCode::OK).await;
    assert_eq!(me["user"]["id"], a_member.as_str());
    let me = json(app.get("/v1/me", at).await, StatusCode::OK).await;
    assert_eq!(me["user"]["id"], a.admin_id.as_str());
    assert_eq!(me["user"]["status"], "active");

    // And the other way round: B's agent with the same slug is invisible to A.
    assert_problem(
        app.get(&format!("/v1/agents/{b_agent}"), at).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_problem(
        app.get(&format!("/v1/users/{}", b.admin_id), at).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_problem(
        app.delete(&format!("/v1/api-keys/{b_key}"), at).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn lists_and_the_current_tenant_never_show_another_tenants_rows() {
    let app = TestApp::spawn().await;
    let a = app.tenant("acme").await;
    let b = app.tenant("globex").await;
    let at = &a.admin_token;

    let a_agent = app.agent(at, "support").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let a_gone_agent = app.agent(at, "retired").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.delete(&format!("/v1/agents/{a_gone_agent}"), at)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let (a_member, _) = app.user(&a, "member@acme.test", "member").await;
    let (a_gone_user, _) = app.user(&a, "gone@acme.test", "member").await;
    assert_eq!(
        app.delete(&format!("/v1/users/{a_gone_user}"), at)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let (a_key, _) = app.api_key(&a, &["read"]).await;
    // A's own view includes all of it, so the lists below are not empty for want of data.
    let a_all = json(
        app.get("/v1/agents?include_deleted=true", at).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(item_ids(&a_all), set_of(&[&a_agent, &a_gone_agent]));
    let a_audit = json(
        app.get(&format!("/v1/audit?resource_id={a_agent}"), at)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(a_audit["items"].as_array().unwrap().len(), 1);

    // B: same agent slug as A's (per tenant), its own key.
    let b_agent = app.agent(&b.admin_token, "support").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (b_key, b_key_secret) = app.api_key(&b, &["read", "write", "admin"]).await;

    let a_ids: Vec<&str> = vec![
        &a.id,
        &a.admin_id,
        &a_agent,
        &a_gone_agent,
        &a_member,
        &a_gone_user,
        &a_key,
    ];
    for (who, token) in [
        ("B's admin JWT", b.admin_token.as_str()),
        ("B's admin API key", b_key_secret.as_str()),
    ] {
        let expected: [(&str, BTreeSet<String>); 5] = [
            ("/v1/agents", set_of(&[&b_agent])),
            (
                "/v1/agents?include_deleted=true&limit=100",
                set_of(&[&b_agent]),
            ),
            ("/v1/users?limit=100", set_of(&[&b.admin_id])),
            (
                "/v1/users?include_deleted=true&limit=100",
                set_of(&[&b.admin_id]),
            ),
            ("/v1/api-keys?limit=100", set_of(&[&b_key])),
        ];
        for (path, ids) in expected {
            let list = json(app.get(path, token).await, StatusCode::OK).await;
            assert_eq!(item_ids(&list), ids, "{who}: {path} lists B's rows only");
            assert_mentions_none(&list, &a_ids, &format!("{who}: {path}"));
        }

        let log = json(app.get("/v1/audit?limit=100", token).await, StatusCode::OK).await;
        let entries = log["items"].as_array().unwrap();
        assert!(!entries.is_empty(), "B has its own audit entries");
        let b_resources = set_of(&[&b.id, &b.admin_id, &b_agent, &b_key]);
        for entry in entries {
            let resource = entry["resource_id"].as_str().unwrap().to_owned();
            assert!(
                b_resources.contains(&resource),
                "{who}: audit entry of B's resources only: {entry}"
            );
        }
        assert_mentions_none(&log, &a_ids, &format!("{who}: /v1/audit"));
        for id in &a_ids {
            for path in [
                format!("/v1/audit?resource_id={id}"),
                format!("/v1/audit?resource_type=agent&resource_id={id}"),
                format!("/v1/audit?resource_type=user&resource_id={id}"),
            ] {
                let log = json(app.get(&path, token).await, StatusCode::OK).await;
                assert_eq!(log["items"], json!([]), "{who}: {path} finds nothing");
                assert!(log["next_cursor"].is_null());
            }
        }

        let tenant = json(app.get("/v1/tenant", token).await, StatusCode::OK).await;
        assert_eq!(tenant["id"], b.id.as_str(), "{who}: /v1/tenant");
        assert_eq!(tenant["slug"], "globex");
        let me = json(app.get("/v1/me", token).await, StatusCode::OK).await;
        assert_eq!(me["tenant"]["id"], b.id.as_str(), "{who}: /v1/me");
        assert_eq!(me["tenant"]["slug"], "globex");
        assert_mentions_none(&me, &a_ids, &format!("{who}: /v1/me"));
    }
    let me = json(app.get("/v1/me", &b.admin_token).await, StatusCode::OK).await;
    assert_eq!(me["user"]["id"], b.admin_id.as_str());
    let me = json(app.get("/v1/me", &b_key_secret).await, StatusCode::OK).await;
    assert_eq!(me["api_key"]["id"], b_key.as_str());

    // A still has its own "support" agent, untouched by B's of the same slug.
    let mine = json(app.get("/v1/agents?q=support", at).await, StatusCode::OK).await;
    assert_eq!(item_ids(&mine), set_of(&[&a_agent]));
    assert_eq!(mine["items"][0]["slug"], "support");
}

// ---------------------------------------------------------------------------------------------
// 2. In the database, as the application role

fn sql(text: impl Into<String>) -> Statement {
    Statement::from_string(DbBackend::Postgres, text.into())
}

/// Runs a query whose single row has a `count` column.
async fn count(conn: &impl ConnectionTrait, query: &str) -> i64 {
    let row = conn
        .query_one_raw(sql(query))
        .await
        .unwrap_or_else(|e| panic!("{query}: {e}"))
        .unwrap_or_else(|| panic!("{query}: no row"));
    row.try_get::<i64>("", "count").unwrap()
}

async fn exec(conn: &impl ConnectionTrait, query: &str) -> Result<u64, DbErr> {
    conn.execute_raw(sql(query))
        .await
        .map(|r| r.rows_affected())
}

async fn set_tenant(conn: &impl ConnectionTrait, tenant: &str, local: bool) {
    conn.query_one_raw(sql(format!(
        "SELECT set_config('app.tenant_id', '{tenant}', {local})"
    )))
    .await
    .expect("set_config");
}

async fn current_setting(conn: &impl ConnectionTrait) -> Option<String> {
    let row = conn
        .query_one_raw(sql(
            "SELECT current_setting('app.tenant_id', true) AS setting",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<Option<String>>("", "setting").unwrap()
}

async fn backend_pid(conn: &impl ConnectionTrait) -> i32 {
    let row = conn
        .query_one_raw(sql("SELECT pg_backend_pid() AS pid"))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i32>("", "pid").unwrap()
}

/// Each tenant-owned table and its tenant column.
const TABLES: [(&str, &str); 5] = [
    ("agents", "tenant_id"),
    ("users", "tenant_id"),
    ("api_keys", "tenant_id"),
    ("audit_log", "tenant_id"),
    ("tenants", "id"),
];

/// Two tenants with rows in every table; returns them and A's agent id.
async fn two_populated_tenants(app: &TestApp) -> (TenantFixture, TenantFixture, String) {
    let a = app.tenant("acme").await;
    let b = app.tenant("globex").await;
    let mut a_agent = String::new();
    for (t, n) in [(&a, 2), (&b, 1)] {
        for i in 0..n {
            let agent = app.agent(&t.admin_token, &format!("agent-{i}")).await;
            if t.id == a.id && i == 0 {
                a_agent = agent["id"].as_str().unwrap().to_owned();
            }
        }
        app.user(t, &format!("member@{}.test", t.slug), "member")
            .await;
        app.api_key(t, &["read"]).await;
    }
    (a, b, a_agent)
}

/// Rows per table for tenant `id`, counted by the platform role (which bypasses RLS).
async fn platform_counts(platform: &DatabaseConnection, id: &str) -> Vec<i64> {
    let mut counts = Vec::new();
    for (table, column) in TABLES {
        counts.push(
            count(
                platform,
                &format!("SELECT count(*) AS count FROM {table} WHERE {column} = '{id}'"),
            )
            .await,
        );
    }
    counts
}

fn single_connection_options() -> store_postgres::PoolOptions {
    store_postgres::PoolOptions {
        max_connections: 1,
        min_connections: 1,
        acquire_timeout: Duration::from_secs(5),
    }
}

#[tokio::test]
async fn without_a_tenant_the_application_role_sees_no_rows() {
    let app = TestApp::spawn().await;
    let (a, b, _) = two_populated_tenants(&app).await;
    let platform = app.platform_connection().await;
    let a_counts = platform_counts(&platform, &a.id).await;
    let b_counts = platform_counts(&platform, &b.id).await;
    for (((table, _), na), nb) in TABLES.iter().zip(&a_counts).zip(&b_counts) {
        assert!(*na > 0 && *nb > 0, "{table} has rows of both tenants");
    }

    // (a) No tenant set at all: nothing, and no error.
    let conn = app.app_connection().await;
    for (table, column) in TABLES {
        assert_eq!(
            count(&conn, &format!("SELECT count(*) AS count FROM {table}")).await,
            0,
            "{table} without a tenant"
        );
        assert_eq!(
            count(
                &conn,
                &format!(
                    "SELECT count(*) AS count FROM {table} WHERE {column} = '{}'",
                    a.id
                )
            )
            .await,
            0,
            "{table} asked for A's rows without a tenant"
        );
    }
    // Nor can it write without a tenant.
    let err = exec(
        &conn,
        &format!(
            "INSERT INTO agents (tenant_id, id, name, slug, model_provider, model_name, temperature,
                                 max_tokens, created_at, updated_at)
             VALUES ('{}', gen_random_uuid(), 'x', 'no-tenant', 'local', 'm', 0.5, 10, now(), now())",
            a.id
        ),
    )
    .await
    .expect_err("an insert without a tenant is refused");
    assert!(err.to_string().contains("row-level security"), "{err}");
    assert_eq!(
        exec(&conn, "UPDATE agents SET name = 'pwned'")
            .await
            .unwrap(),
        0
    );
    assert_eq!(exec(&conn, "DELETE FROM users").await.unwrap(), 0);

    // (f) An empty setting (what a session-level set to '' leaves) also sees nothing, no error.
    let single = store_postgres::connect(&app.app_url, &single_connection_options())
        .await
        .unwrap();
    set_tenant(&single, "", false).await;
    assert_eq!(current_setting(&single).await.as_deref(), Some(""));
    for (table, column) in TABLES {
        assert_eq!(
            count(&single, &format!("SELECT count(*) AS count FROM {table}")).await,
            0,
            "{table} with an empty tenant setting"
        );
        assert_eq!(
            count(
                &single,
                &format!(
                    "SELECT count(*) AS count FROM {table} WHERE {column} = '{}'",
                    b.id
                )
            )
            .await,
            0
        );
    }
    // Empty inside a transaction too.
    let txn = single.begin().await.unwrap();
    set_tenant(&txn, "", true).await;
    assert_eq!(count(&txn, "SELECT count(*) AS count FROM agents").await, 0);
    txn.commit().await.unwrap();

    // All rows are still there.
    assert_eq!(platform_counts(&platform, &a.id).await, a_counts);
    assert_eq!(platform_counts(&platform, &b.id).await, b_counts);
}

#[tokio::test]
async fn under_one_tenant_the_other_tenants_rows_cannot_be_read() {
    let app = TestApp::spawn().await;
    let (a, b, a_agent) = two_populated_tenants(&app).await;
    let platform = app.platform_connection().await;
    let a_counts = platform_counts(&platform, &a.id).await;
    let b_counts = platform_counts(&platform, &b.id).await;
    assert_ne!(
        a_counts, b_counts,
        "the tenants differ, so counts tell them apart"
    );
    let conn = app.app_connection().await;

    // (b) With B's tenant set, asking for A's rows finds none, and counts are B's alone.
    let txn = conn.begin().await.unwrap();
    set_tenant(&txn, &b.id, true).await;
    for (((table, column), nb), _) in TABLES.iter().zip(&b_counts).zip(&a_counts) {
        assert_eq!(
            count(
                &txn,
                &format!(
                    "SELECT count(*) AS count FROM {table} WHERE {column} = '{}'",
                    a.id
                )
            )
            .await,
            0,
            "{table}: A's rows under B"
        );
        let rows = txn
            .query_all_raw(sql(format!(
                "SELECT {column}::text AS owner FROM {table} WHERE {column} = '{}'",
                a.id
            )))
            .await
            .unwrap();
        assert!(rows.is_empty(), "{table}: no row of A is returned");
        assert_eq!(
            count(&txn, &format!("SELECT count(*) AS count FROM {table}")).await,
            *nb,
            "{table}: everything visible under B is B's"
        );
        assert_eq!(
            count(
                &txn,
                &format!(
                    "SELECT count(*) AS count FROM {table} WHERE {column} <> '{}'",
                    b.id
                )
            )
            .await,
            0,
            "{table}: nothing but B's"
        );
    }
    assert_eq!(
        count(
            &txn,
            &format!("SELECT count(*) AS count FROM agents WHERE id = '{a_agent}'")
        )
        .await,
        0,
        "A's agent by its id"
    );
    txn.commit().await.unwrap();

    // The same connection pool under A sees A's rows (the mechanism works both ways).
    let txn = conn.begin().await.unwrap();
    set_tenant(&txn, &a.id, true).await;
    for ((table, _), na) in TABLES.iter().zip(&a_counts) {
        assert_eq!(
            count(&txn, &format!("SELECT count(*) AS count FROM {table}")).await,
            *na,
            "{table} under A"
        );
    }
    assert_eq!(
        count(
            &txn,
            &format!("SELECT count(*) AS count FROM agents WHERE id = '{a_agent}'")
        )
        .await,
        1
    );
    txn.rollback().await.unwrap();
}

#[tokio::test]
async fn under_one_tenant_the_other_tenants_rows_cannot_be_written() {
    let app = TestApp::spawn().await;
    let (a, b, a_agent) = two_populated_tenants(&app).await;
    let platform = app.platform_connection().await;
    let a_counts = platform_counts(&platform, &a.id).await;
    let b_counts = platform_counts(&platform, &b.id).await;
    let conn = app.app_connection().await;

    // (c) Inserting a row for A while the setting is B's violates the policy's WITH CHECK; the
    // same insert for B succeeds, so it is the policy that refuses, not the statement.
    let inserts = [
        (
            "agents",
            "INSERT INTO agents (tenant_id, id, name, slug, model_provider, model_name,
                                 temperature, max_tokens, created_at, updated_at)
             VALUES ('{tenant}', gen_random_uuid(), 'Planted', 'planted', 'local', 'm', 0.5, 10,
                     now(), now())",
        ),
        (
            "users",
            "INSERT INTO users (tenant_id, id, email, password_hash, role, created_at, updated_at)
             VALUES ('{tenant}', gen_random_uuid(), 'planted@evil.test', 'x', 'admin', now(), now())",
        ),
        (
            "api_keys",
            "INSERT INTO api_keys (tenant_id, id, name, prefix, key_hash, scopes, created_at)
             VALUES ('{tenant}', gen_random_uuid(), 'planted', 'ak_x',
                     convert_to(gen_random_uuid()::text, 'UTF8'), ARRAY['admin'], now())",
        ),
        (
            "audit_log",
            "INSERT INTO audit_log (tenant_id, id, at, actor_type, actor_id, action, resource_type,
                                    resource_id)
             VALUES ('{tenant}', gen_random_uuid(), now(), 'user', gen_random_uuid(), 'created',
                     'agent', gen_random_uuid())",
        ),
    ];
    for (table, template) in inserts {
        let txn = conn.begin().await.unwrap();
        set_tenant(&txn, &b.id, true).await;
        let err = exec(&txn, &template.replace("{tenant}", &a.id))
            .await
            .expect_err("a row of A cannot be inserted under B");
        assert!(
            err.to_string().contains("row-level security"),
            "{table}: refused by the policy: {err}"
        );
        txn.rollback().await.unwrap();

        let txn = conn.begin().await.unwrap();
        set_tenant(&txn, &b.id, true).await;
        assert_eq!(
            exec(&txn, &template.replace("{tenant}", &b.id))
                .await
                .unwrap_or_else(|e| panic!("{table}: B's own row is accepted: {e}")),
            1
        );
        txn.rollback().await.unwrap();
    }

    // Moving one of B's rows into A is refused as well.
    let txn = conn.begin().await.unwrap();
    set_tenant(&txn, &b.id, true).await;
    let err = exec(
        &txn,
        &format!(
            "UPDATE agents SET tenant_id = '{}' WHERE tenant_id = '{}'",
            a.id, b.id
        ),
    )
    .await
    .expect_err("B's agent cannot be handed to A");
    assert!(err.to_string().contains("row-level security"), "{err}");
    txn.rollback().await.unwrap();

    // (d) Updates and deletes aimed at A's rows under B's setting touch nothing, even committed.
    let txn = conn.begin().await.unwrap();
    set_tenant(&txn, &b.id, true).await;
    for statement in [
        format!(
            "UPDATE agents SET name = 'pwned' WHERE tenant_id = '{}'",
            a.id
        ),
        format!("UPDATE agents SET name = 'pwned' WHERE id = '{a_agent}'"),
        format!("DELETE FROM agents WHERE tenant_id = '{}'", a.id),
        format!("DELETE FROM agents WHERE id = '{a_agent}'"),
        format!(
            "UPDATE users SET role = 'admin', status = 'disabled' WHERE tenant_id = '{}'",
            a.id
        ),
        format!("DELETE FROM users WHERE tenant_id = '{}'", a.id),
        format!(
            "UPDATE api_keys SET revoked_at = now() WHERE tenant_id = '{}'",
            a.id
        ),
        format!("UPDATE tenants SET name = 'pwned' WHERE id = '{}'", a.id),
    ] {
        assert_eq!(
            exec(&txn, &statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}")),
            0,
            "{statement}"
        );
    }
    txn.commit().await.unwrap();

    assert_eq!(platform_counts(&platform, &a.id).await, a_counts);
    assert_eq!(platform_counts(&platform, &b.id).await, b_counts);
    for (query, table) in [
        (
            format!(
                "SELECT count(*) AS count FROM agents WHERE tenant_id = '{}' AND name = 'pwned'",
                a.id
            ),
            "agents",
        ),
        (
            format!(
                "SELECT count(*) AS count FROM users
                 WHERE tenant_id = '{}' AND (status <> 'active' OR deleted_at IS NOT NULL)",
                a.id
            ),
            "users",
        ),
        (
            format!(
                "SELECT count(*) AS count FROM api_keys
                 WHERE tenant_id = '{}' AND revoked_at IS NOT NULL",
                a.id
            ),
            "api_keys",
        ),
        (
            format!(
                "SELECT count(*) AS count FROM tenants WHERE id = '{}' AND name = 'pwned'",
                a.id
            ),
            "tenants",
        ),
    ] {
        assert_eq!(count(&platform, &query).await, 0, "{table} of A unchanged");
    }
    // And the API agrees: A's agent is as it was.
    let agent = json(
        app.get(&format!("/v1/agents/{a_agent}"), &a.admin_token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(agent["name"], "Agent agent-0");
}

#[tokio::test]
async fn the_tenant_setting_ends_with_its_transaction() {
    let app = TestApp::spawn().await;
    let (_, b, _) = two_populated_tenants(&app).await;
    let platform = app.platform_connection().await;
    let b_agents = count(
        &platform,
        &format!(
            "SELECT count(*) AS count FROM agents WHERE tenant_id = '{}'",
            b.id
        ),
    )
    .await;
    assert!(b_agents > 0);

    // (e) One connection: set inside a transaction, then a plain statement after commit (and
    // after rollback) on that same backend sees nothing again.
    let single = store_postgres::connect(&app.app_url, &single_connection_options())
        .await
        .unwrap();
    let pid = backend_pid(&single).await;
    for commit in [true, false] {
        let txn = single.begin().await.unwrap();
        assert_eq!(backend_pid(&txn).await, pid, "the same connection");
        set_tenant(&txn, &b.id, true).await;
        assert_eq!(current_setting(&txn).await.as_deref(), Some(b.id.as_str()));
        assert_eq!(
            count(&txn, "SELECT count(*) AS count FROM agents").await,
            b_agents
        );
        if commit {
            txn.commit().await.unwrap();
        } else {
            txn.rollback().await.unwrap();
        }
        assert_eq!(backend_pid(&single).await, pid, "still the same connection");
        let left = current_setting(&single).await;
        assert!(
            left.as_deref().is_none_or(str::is_empty),
            "the setting is gone after the transaction (commit: {commit}): {left:?}"
        );
        for (table, _) in TABLES {
            assert_eq!(
                count(&single, &format!("SELECT count(*) AS count FROM {table}")).await,
                0,
                "{table} after the transaction (commit: {commit})"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Soft-deleted users through the API

#[tokio::test]
async fn a_deleted_user_disappears_comes_back_on_restore_and_is_gone_after_purge() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    let t = &acme.admin_token;
    let (id, token) = app.user(&acme, "leaver@acme.test", "member").await;
    let (_, other_member) = app.user(&acme, "stayer@acme.test", "member").await;
    let me = json(app.get("/v1/me", &token).await, StatusCode::OK).await;
    assert_eq!(me["user"]["id"], id.as_str());

    assert_eq!(
        app.delete(&format!("/v1/users/{id}"), t).await.status(),
        StatusCode::NO_CONTENT
    );
    // Gone from reads and lists.
    assert_problem(
        app.get(&format!("/v1/users/{id}"), t).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let live = json(app.get("/v1/users?limit=100", t).await, StatusCode::OK).await;
    assert!(
        !item_ids(&live).contains(&id),
        "a deleted user leaves the list: {live}"
    );
    assert_eq!(item_ids(&live).len(), 2, "the admin and the other member");
    // Deleting again is a 404 (it is already gone).
    assert_problem(
        app.delete(&format!("/v1/users/{id}"), t).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_problem(
        app.patch(&format!("/v1/users/{id}"), t, json!({"name": "Ghost"}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // Admins see it with include_deleted; members may not ask.
    let all = json(
        app.get("/v1/users?include_deleted=true&limit=100", t).await,
        StatusCode::OK,
    )
    .await;
    let deleted = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == id.as_str())
        .unwrap_or_else(|| panic!("the deleted user is listed with include_deleted: {all}"));
    assert!(deleted["deleted_at"].is_string());
    assert_eq!(deleted["deleted_by"], acme.admin_id.as_str());
    assert_eq!(deleted["email"], "leaver@acme.test");
    assert_problem(
        app.get("/v1/users?include_deleted=true", &other_member)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;

    // The deleted user's unexpired token is refused, and they cannot sign in.
    for path in ["/v1/me", "/v1/agents", &format!("/v1/users/{id}")] {
        assert_problem(
            app.get(path, &token).await,
            StatusCode::FORBIDDEN,
            "forbidden",
        )
        .await;
    }
    let res = app
        .request(Method::POST, "/v1/auth/login", None)
        .json(&json!({"tenant": "acme", "email": "leaver@acme.test", "password": "member-password-1"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    // Restore brings it back everywhere.
    let restored = json(
        app.post_empty(&format!("/v1/users/{id}/restore"), t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(restored["id"], id.as_str());
    assert!(restored["deleted_at"].is_null());
    assert!(restored["deleted_by"].is_null());
    assert_eq!(restored["role"], "member");
    let got = json(app.get(&format!("/v1/users/{id}"), t).await, StatusCode::OK).await;
    assert_eq!(got, restored);
    let live = json(app.get("/v1/users?limit=100", t).await, StatusCode::OK).await;
    assert!(item_ids(&live).contains(&id));
    // Restoring a live user changes nothing: the user as it is.
    let again = json(
        app.post_empty(&format!("/v1/users/{id}/restore"), t).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again, restored);
    assert_problem(
        app.post_empty(&format!("/v1/users/{}/restore", uuid::Uuid::new_v4()), t)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let tokens = app
        .login("acme", "leaver@acme.test", "member-password-1")
        .await;
    let fresh = tokens["access_token"].as_str().unwrap();
    let me = json(app.get("/v1/me", fresh).await, StatusCode::OK).await;
    assert_eq!(me["user"]["id"], id.as_str());

    // Delete again; the email is free for a new user, and restoring the old one then conflicts.
    assert_eq!(
        app.delete(&format!("/v1/users/{id}"), t).await.status(),
        StatusCode::NO_CONTENT
    );
    let (successor, _) = app.user(&acme, "leaver@acme.test", "member").await;
    assert_ne!(successor, id);
    assert_problem(
        app.post_empty(&format!("/v1/users/{id}/restore"), t).await,
        StatusCode::CONFLICT,
        "user_email_taken",
    )
    .await;

    // Purge: admins only, then gone for good, even from include_deleted.
    assert_problem(
        app.delete(&format!("/v1/users/{id}/purge"), &other_member)
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    assert_eq!(
        app.delete(&format!("/v1/users/{id}/purge"), t)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    let all = json(
        app.get("/v1/users?include_deleted=true&limit=100", t).await,
        StatusCode::OK,
    )
    .await;
    assert!(!item_ids(&all).contains(&id), "purged: {all}");
    assert!(item_ids(&all).contains(&successor));
    for res in [
        app.get(&format!("/v1/users/{id}"), t).await,
        app.post_empty(&format!("/v1/users/{id}/restore"), t).await,
        app.delete(&format!("/v1/users/{id}/purge"), t).await,
    ] {
        assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    }
    // The purged user's old token no longer names anyone.
    assert_problem(
        app.get("/v1/me", &token).await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    // The successor with the same email is unaffected.
    json(
        app.get(&format!("/v1/users/{successor}"), t).await,
        StatusCode::OK,
    )
    .await;
}
