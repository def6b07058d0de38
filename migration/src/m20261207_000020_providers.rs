//! Tenants' own model providers: an OpenAI-compatible server each, whose API key is stored
//! sealed (AES-256-GCM ciphertext, nonce first) with the id of the platform key that sealed it.
//! Agents name a provider by its name, unique in the tenant.

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
                "CREATE TABLE providers (
                     tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
                     id uuid NOT NULL,
                     name text NOT NULL CHECK (name NOT IN ('local', 'openai')),
                     base_url text NOT NULL,
                     default_model text,
                     supports_tools boolean NOT NULL,
                     timeout_secs integer CHECK (timeout_secs BETWEEN 1 AND 600),
                     max_retries integer CHECK (max_retries BETWEEN 0 AND 5),
                     key_id text NOT NULL,
                     key_ciphertext bytea NOT NULL,
                     created_at timestamptz NOT NULL,
                     updated_at timestamptz NOT NULL,
                     PRIMARY KEY (tenant_id, id),
                     CONSTRAINT providers_name_key UNIQUE (tenant_id, name)
                 );
                 {policy}
                 GRANT SELECT, INSERT, UPDATE, DELETE ON providers TO {APP_ROLE};
                 GRANT SELECT, UPDATE (key_id, key_ciphertext) ON providers TO {PLATFORM_ROLE};",
                policy = tenant_policy("providers"),
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, "DROP TABLE providers;").await
    }
}
