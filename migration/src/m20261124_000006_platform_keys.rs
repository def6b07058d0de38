//! Platform operator keys. Not tenant data: no tenant_id and no RLS; the application role has no
//! privilege on it at all, only the platform role does.

use sea_orm_migration::prelude::*;

use crate::{PLATFORM_ROLE, run};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &format!(
                "CREATE TABLE platform_keys (
                     id uuid PRIMARY KEY,
                     name text NOT NULL,
                     prefix text NOT NULL,
                     key_hash bytea NOT NULL,
                     created_at timestamptz NOT NULL,
                     last_used_at timestamptz,
                     revoked_at timestamptz,
                     CONSTRAINT platform_keys_key_hash_key UNIQUE (key_hash)
                 );
                 REVOKE ALL ON platform_keys FROM PUBLIC;
                 GRANT SELECT, INSERT, UPDATE ON platform_keys TO {PLATFORM_ROLE};"
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, "DROP TABLE platform_keys;").await
    }
}
