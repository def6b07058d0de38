//! Metering and quotas: one usage record per metered model or embedding call (kept when what it
//! was for is purged, so a tenant's accounts never shrink), a counter per tenant and UTC day of
//! the tokens used and reserved against the quota, the tenant's optional daily quota, and what
//! each run holds reserved. Runs of `/v1/chat/completions` belong to no conversation.

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
                "ALTER TABLE tenants
                     ADD COLUMN daily_token_quota bigint CHECK (daily_token_quota >= 0);

                 ALTER TABLE runs
                     ADD COLUMN reserved_tokens bigint NOT NULL DEFAULT 0
                         CHECK (reserved_tokens >= 0),
                     ADD COLUMN reserved_on date;

                 CREATE TABLE usage_records (
                     tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
                     id uuid NOT NULL,
                     day date NOT NULL,
                     at timestamptz NOT NULL,
                     kind text NOT NULL CHECK (kind IN ('chat', 'embedding')),
                     principal_kind text CHECK (principal_kind IN ('user', 'api_key')),
                     principal_id uuid,
                     agent_id uuid,
                     run_id uuid,
                     provider text NOT NULL,
                     model text NOT NULL,
                     prompt_tokens bigint NOT NULL CHECK (prompt_tokens >= 0),
                     completion_tokens bigint NOT NULL CHECK (completion_tokens >= 0),
                     counted boolean NOT NULL,
                     PRIMARY KEY (tenant_id, id)
                 );
                 CREATE INDEX usage_records_by_day ON usage_records (tenant_id, day);
                 {records_policy}

                 CREATE TABLE token_days (
                     tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
                     day date NOT NULL,
                     used bigint NOT NULL DEFAULT 0 CHECK (used >= 0),
                     reserved bigint NOT NULL DEFAULT 0 CHECK (reserved >= 0),
                     PRIMARY KEY (tenant_id, day)
                 );
                 {days_policy}

                 GRANT SELECT, INSERT, UPDATE, DELETE ON usage_records, token_days
                     TO {APP_ROLE}, {PLATFORM_ROLE};",
                records_policy = tenant_policy("usage_records"),
                days_policy = tenant_policy("token_days"),
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            "DROP TABLE token_days;
             DROP TABLE usage_records;
             ALTER TABLE runs DROP COLUMN reserved_on, DROP COLUMN reserved_tokens;
             ALTER TABLE tenants DROP COLUMN daily_token_quota;",
        )
        .await
    }
}
