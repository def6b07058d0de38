//! Agents. The slug is unique per tenant among live rows through a partial unique index, so a
//! deleted agent's slug can be reused and restoring it then conflicts (409).

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
                "CREATE TABLE agents (
                     tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
                     id uuid NOT NULL,
                     name text NOT NULL,
                     slug text NOT NULL,
                     description text NOT NULL DEFAULT '',
                     system_prompt text NOT NULL DEFAULT '',
                     model_provider text NOT NULL,
                     model_name text NOT NULL,
                     temperature real NOT NULL CHECK (temperature BETWEEN 0 AND 2),
                     max_tokens integer NOT NULL CHECK (max_tokens > 0),
                     metadata jsonb NOT NULL DEFAULT '{{}}' CHECK (jsonb_typeof(metadata) = 'object'),
                     created_at timestamptz NOT NULL,
                     updated_at timestamptz NOT NULL,
                     deleted_at timestamptz,
                     deleted_by uuid,
                     PRIMARY KEY (tenant_id, id)
                 );
                 CREATE UNIQUE INDEX agents_live_slug ON agents (tenant_id, slug)
                     WHERE deleted_at IS NULL;
                 {policy}
                 GRANT SELECT, INSERT, UPDATE, DELETE ON agents TO {APP_ROLE}, {PLATFORM_ROLE};",
                policy = tenant_policy("agents")
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, "DROP TABLE agents;").await
    }
}
