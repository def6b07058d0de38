//! Jobs are claimed fairly across tenants: each claim serves the tenant whose last claim is the
//! oldest (round robin), so one tenant that queues thousands of documents no longer delays every
//! other tenant's for hours. `tenant_job_turns` remembers each tenant's last claim; the index lets
//! the claim find the tenants with work, and each one's oldest runnable job, by index probes.

use sea_orm_migration::prelude::*;

use crate::{PLATFORM_ROLE, run, tenant_policy};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &format!(
                "CREATE TABLE tenant_job_turns (
                     tenant_id uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
                     last_claimed_at timestamptz NOT NULL
                 );
                 {policy}
                 GRANT SELECT, INSERT, UPDATE ON tenant_job_turns TO {PLATFORM_ROLE};
                 CREATE INDEX jobs_runnable_by_tenant ON jobs (tenant_id, run_at)
                     WHERE state IN ('queued', 'running');",
                policy = tenant_policy("tenant_job_turns"),
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            "DROP INDEX jobs_runnable_by_tenant; DROP TABLE tenant_job_turns;",
        )
        .await
    }
}
