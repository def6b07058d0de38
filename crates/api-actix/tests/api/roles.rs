//! Least privilege in the database: what each role the platform logs in with cannot do. The
//! serving process runs with the application and platform roles only; neither may become the
//! owner, build indexes, or remove audit history.

use std::net::TcpListener;

use api_actix::config::Secret;
use api_actix::startup::Application;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use serde_json::json;

use crate::helpers::{TestApp, json};

/// Runs `sql` and answers the database's refusal, failing the test when it was allowed.
async fn refused(db: &DatabaseConnection, role: &str, sql: &str) -> String {
    match db.execute_unprepared(sql).await {
        Ok(_) => panic!("{role} may run {sql:?}"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn each_role_is_refused_what_it_does_not_need() {
    let app = TestApp::spawn().await;
    let acme = app.tenant("acme").await;
    app.agent(&acme.admin_token, "support").await;
    let tenant = &acme.id;
    let app_role = app.app_connection().await;
    let platform = app.platform_connection().await;
    let set_tenant = format!("SELECT set_config('app.tenant_id', '{tenant}', false)");
    app_role.execute_unprepared(&set_tenant).await.unwrap();

    for (role, db) in [("agentic_app", &app_role), ("agentic_platform", &platform)] {
        // Neither may become the owner or act for it.
        refused(db, role, "SET ROLE agentic_owner").await;
        refused(
            db,
            role,
            "CREATE INDEX nope ON chunks ((embedding::vector(384)) vector_cosine_ops)",
        )
        .await;
        refused(db, role, "CREATE TABLE nope (id int)").await;
        refused(db, role, "ALTER TABLE agents DISABLE ROW LEVEL SECURITY").await;
        // History is append-only for both.
        refused(
            db,
            role,
            &format!("DELETE FROM audit_log WHERE tenant_id = '{tenant}'"),
        )
        .await;
        refused(
            db,
            role,
            &format!("UPDATE audit_log SET action = 'x' WHERE tenant_id = '{tenant}'"),
        )
        .await;
        refused(db, role, "TRUNCATE audit_log").await;
        // Deleting the tenant would cascade its history away.
        refused(
            db,
            role,
            &format!("DELETE FROM tenants WHERE id = '{tenant}'"),
        )
        .await;
    }
    // The application role reads only its own tenant, and cannot reach around RLS.
    refused(
        &app_role,
        "agentic_app",
        "SET row_security = off; SELECT 1 FROM agents",
    )
    .await;

    // The trail is still whole, and the API still reads it.
    let audit = json(
        app.get("/v1/audit", &acme.admin_token).await,
        StatusCode::OK,
    )
    .await;
    assert!(!audit["items"].as_array().unwrap().is_empty());

    // Only the owner removes it, on purpose.
    let removed = store_postgres::purge_audit_trail(
        &app.owner_url,
        domain::TenantId::from_uuid(tenant.parse().unwrap()),
    )
    .await
    .unwrap();
    assert!(removed >= 2, "tenant and agent creation were audited");
    let audit = json(
        app.get("/v1/audit", &acme.admin_token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(audit["items"], json!([]));
}

#[tokio::test]
async fn the_server_runs_without_the_owner_url() {
    let app = TestApp::spawn().await;
    let mut db = app.db_settings();
    db.database_owner_url = None::<Secret>;
    let serve = app.serve_settings();
    let server = Application::build(&db, &serve, TcpListener::bind("127.0.0.1:0").unwrap())
        .await
        .expect("the server starts with the application and platform roles alone");
    let port = server.port();
    tokio::spawn(server.run_until_stopped());
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/readyz"))
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    // Given a role that can act as the owner, it refuses to start rather than serve with it.
    let mut as_owner = app.db_settings();
    as_owner.database_url = Some(Secret::new(app.owner_url.clone()));
    let refused = Application::build(&as_owner, &serve, TcpListener::bind("127.0.0.1:0").unwrap())
        .await
        .err()
        .expect("the server refuses the owner's role");
    assert!(refused.to_string().contains("owner"), "{refused}");
}
