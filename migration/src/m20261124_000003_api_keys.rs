//! Tenant API keys, stored as SHA-256 hashes (the keys are 256-bit random, so a fast hash is
//! enough and lets a presented key be found by an index lookup).

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
                "CREATE TABLE api_keys (
                     tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
                     id uuid NOT NULL,
                     name text NOT NULL,
                     prefix text NOT NULL,
                     key_hash bytea NOT NULL,
                     scopes text[] NOT NULL CHECK (scopes <@ ARRAY['read', 'write', 'admin']
                                                   AND cardinality(scopes) > 0),
                     expires_at timestamptz,
                     last_used_at timestamptz,
                     created_by uuid,
                     created_at timestamptz NOT NULL,
                     revoked_at timestamptz,
                     PRIMARY KEY (tenant_id, id),
                     CONSTRAINT api_keys_tenant_key_hash_key UNIQUE (tenant_id, key_hash)
                 );
                 -- A presented key is looked up by hash before its tenant is known. Not unique on
                 -- its own: a unique index without tenant_id could not be distributed by tenant.
                 -- (Two tenants drawing the same 256-bit key is not a case to design for.)
                 CREATE INDEX api_keys_key_hash ON api_keys (key_hash);
                 {policy}
                 GRANT SELECT, INSERT, UPDATE (revoked_at) ON api_keys TO {APP_ROLE};
                 GRANT SELECT, INSERT, UPDATE, DELETE ON api_keys TO {PLATFORM_ROLE};",
                policy = tenant_policy("api_keys")
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, "DROP TABLE api_keys;").await
    }
}
