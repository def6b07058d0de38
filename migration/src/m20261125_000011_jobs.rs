//! The durable job queue. Workers take a job with a lease (`locked_until`, renewed by
//! heartbeats) instead of holding a row lock through the job, so a crashed worker's job is
//! taken up again when its lease runs out, and `run_at` delays retries (backoff).

use sea_orm_migration::prelude::*;

use crate::{APP_ROLE, PLATFORM_ROLE, run, tenant_policy};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &format!(
                "CREATE TABLE jobs (
                     tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
                     id uuid NOT NULL,
                     kind text NOT NULL CHECK (kind IN ('ingest', 'reembed')),
                     state text NOT NULL
                         CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
                     collection_id uuid NOT NULL,
                     document_id uuid,
                     generation_id uuid,
                     progress_done integer NOT NULL DEFAULT 0,
                     progress_total integer NOT NULL DEFAULT 0,
                     error text,
                     attempts integer NOT NULL DEFAULT 0,
                     max_attempts integer NOT NULL DEFAULT 5,
                     run_at timestamptz NOT NULL,
                     locked_until timestamptz,
                     locked_by text,
                     cancel_requested boolean NOT NULL DEFAULT false,
                     created_at timestamptz NOT NULL,
                     updated_at timestamptz NOT NULL,
                     PRIMARY KEY (tenant_id, id),
                     FOREIGN KEY (tenant_id, collection_id) REFERENCES collections (tenant_id, id)
                         ON DELETE CASCADE,
                     FOREIGN KEY (tenant_id, document_id) REFERENCES documents (tenant_id, id)
                         ON DELETE CASCADE
                 );
                 -- What a worker scans for: runnable queued jobs and running ones whose lease ran out.
                 CREATE INDEX jobs_runnable ON jobs (run_at) WHERE state IN ('queued', 'running');
                 {policy}
                 GRANT SELECT, INSERT, UPDATE ON jobs TO {APP_ROLE};
                 GRANT SELECT, INSERT, UPDATE, DELETE ON jobs TO {PLATFORM_ROLE};",
                policy = tenant_policy("jobs"),
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, "DROP TABLE jobs;").await
    }
}
