//! Migrations go up, all the way down, and up again on a real database.

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::helpers::TestApp;

async fn tables(conn: &sea_orm::DatabaseConnection) -> Vec<String> {
    conn.query_all_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT tablename::text AS t FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'seaql_migrations' ORDER BY 1",
    ))
    .await
    .unwrap()
    .into_iter()
    .map(|row| row.try_get::<String>("", "t").unwrap())
    .collect()
}

#[tokio::test]
async fn up_down_to_zero_and_up_again() {
    let app = TestApp::spawn().await;
    let owner = store_postgres::connect(&app.owner_url, &Default::default())
        .await
        .unwrap();
    let expected = [
        "agents",
        "api_keys",
        "audit_log",
        "chunks",
        "collections",
        "conversations",
        "documents",
        "embedding_spaces",
        "generation_documents",
        "generation_lexemes",
        "generations",
        "jobs",
        "message_feedback",
        "messages",
        "platform_keys",
        "providers",
        "runs",
        "tenant_job_turns",
        "tenants",
        "token_days",
        "usage_records",
        "users",
    ];
    assert_eq!(tables(&owner).await, expected);

    Migrator::down(&owner, None).await.unwrap();
    assert!(
        tables(&owner).await.is_empty(),
        "down to zero leaves no table"
    );
    let functions = owner
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT proname FROM pg_proc WHERE proname = 'audit_log_is_append_only'",
        ))
        .await
        .unwrap();
    assert!(functions.is_empty(), "down drops the trigger function too");

    Migrator::up(&owner, None).await.unwrap();
    assert_eq!(tables(&owner).await, expected);
    assert!(
        Migrator::get_pending_migrations(&owner)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn every_tenant_table_forces_row_level_security() {
    let app = TestApp::spawn().await;
    let owner = store_postgres::connect(&app.owner_url, &Default::default())
        .await
        .unwrap();
    let rows = owner
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT c.relname::text AS t, c.relrowsecurity AS enabled, c.relforcerowsecurity AS forced
             FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
             WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace ORDER BY 1",
        ))
        .await
        .unwrap();
    let names: Vec<String> = rows.iter().map(|r| r.try_get("", "t").unwrap()).collect();
    assert_eq!(
        names,
        [
            "agents",
            "api_keys",
            "audit_log",
            "chunks",
            "collections",
            "conversations",
            "documents",
            "generation_documents",
            "generation_lexemes",
            "generations",
            "jobs",
            "message_feedback",
            "messages",
            "providers",
            "runs",
            "tenant_job_turns",
            "token_days",
            "usage_records",
            "users"
        ]
    );
    for row in rows {
        assert!(row.try_get::<bool>("", "enabled").unwrap());
        assert!(row.try_get::<bool>("", "forced").unwrap());
    }
    // The application role is neither owner, superuser nor BYPASSRLS.
    let role = owner
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'agentic_app'",
        ))
        .await
        .unwrap()
        .unwrap();
    assert!(!role.try_get::<bool>("", "rolsuper").unwrap());
    assert!(!role.try_get::<bool>("", "rolbypassrls").unwrap());
}
