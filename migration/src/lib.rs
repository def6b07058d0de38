//! Schema migrations, applied by the owner role (`agentic migrate up`).
//!
//! Every tenant-owned table follows the same rules, so tenancy cannot leak:
//! - `tenant_id uuid NOT NULL` and a primary key of `(tenant_id, id)`; foreign keys include
//!   `tenant_id`, so a row can only point at rows of its own tenant, and the schema can be
//!   distributed by `tenant_id` (see docs/scaling.md);
//! - row-level security, enabled and forced, with a policy on the transaction-local setting
//!   `app.tenant_id`: a connection that set no tenant sees no rows rather than an error;
//! - the application role gets only the privileges its work needs; the platform role bypasses RLS.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_tenants;
mod m20261124_000002_users;
mod m20261124_000003_api_keys;
mod m20261124_000004_agents;
mod m20261124_000005_audit_log;
mod m20261124_000006_platform_keys;
mod m20261125_000007_embedding_spaces;
mod m20261125_000008_collections;
mod m20261125_000009_documents;
mod m20261125_000010_chunks;
mod m20261125_000011_jobs;
mod m20261126_000012_one_building_generation;
mod m20261126_000013_search_functions;
mod m20261206_000014_audit_owner_only;
mod m20261206_000015_fair_job_claims;
mod m20261206_000016_user_sessions_valid_after;
mod m20261206_000017_platform_key_expiry;
mod m20261207_000018_agent_execution;
mod m20261207_000019_metering;
mod m20261207_000020_providers;
mod m20261207_000021_bm25;
mod m20261207_000022_fulltext_plans;
mod m20261207_000023_bm25_documents;
mod m20261207_000024_fulltext_punctuation;
mod m20261207_000025_chunk_titles;
mod m20261207_000026_fulltext_aggregates;

/// The role the API serves tenant work with (neither owner, superuser nor BYPASSRLS).
pub const APP_ROLE: &str = "agentic_app";
/// The role of cross-tenant work (provisioning, key lookup, purge); it has BYPASSRLS.
pub const PLATFORM_ROLE: &str = "agentic_platform";
pub use m20261126_000013_search_functions::SEARCH_ROLE;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_tenants::Migration),
            Box::new(m20261124_000002_users::Migration),
            Box::new(m20261124_000003_api_keys::Migration),
            Box::new(m20261124_000004_agents::Migration),
            Box::new(m20261124_000005_audit_log::Migration),
            Box::new(m20261124_000006_platform_keys::Migration),
            Box::new(m20261125_000007_embedding_spaces::Migration),
            Box::new(m20261125_000008_collections::Migration),
            Box::new(m20261125_000009_documents::Migration),
            Box::new(m20261125_000010_chunks::Migration),
            Box::new(m20261125_000011_jobs::Migration),
            Box::new(m20261126_000012_one_building_generation::Migration),
            Box::new(m20261126_000013_search_functions::Migration),
            Box::new(m20261206_000014_audit_owner_only::Migration),
            Box::new(m20261206_000015_fair_job_claims::Migration),
            Box::new(m20261206_000016_user_sessions_valid_after::Migration),
            Box::new(m20261206_000017_platform_key_expiry::Migration),
            Box::new(m20261207_000018_agent_execution::Migration),
            Box::new(m20261207_000019_metering::Migration),
            Box::new(m20261207_000020_providers::Migration),
            Box::new(m20261207_000021_bm25::Migration),
            Box::new(m20261207_000022_fulltext_plans::Migration),
            Box::new(m20261207_000023_bm25_documents::Migration),
            Box::new(m20261207_000024_fulltext_punctuation::Migration),
            Box::new(m20261207_000025_chunk_titles::Migration),
            Box::new(m20261207_000026_fulltext_aggregates::Migration),
        ]
    }
}

/// The policy every tenant-owned table gets. `current_setting(.., true)` is NULL when the setting
/// was never made and '' after a transaction that set it locally ended; both become NULL, which
/// equals nothing, so such a session sees no rows instead of failing.
pub(crate) fn tenant_policy(table: &str) -> String {
    format!(
        "ALTER TABLE {table} ENABLE ROW LEVEL SECURITY;
         ALTER TABLE {table} FORCE ROW LEVEL SECURITY;
         CREATE POLICY tenant_isolation ON {table}
             USING (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
             WITH CHECK (tenant_id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);"
    )
}

/// Runs several statements in order (the simple query protocol, so no parameters).
pub(crate) async fn run(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(sql)
        .await
        .map(|_| ())
}
