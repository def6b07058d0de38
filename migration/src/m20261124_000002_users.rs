//! Users of a tenant. Email is unique per tenant among live rows only: a partial unique index,
//! because a unique index over `(tenant_id, email, deleted_at)` would let two live rows share an
//! email (NULLs are distinct).

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
                "CREATE TABLE users (
                     tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
                     id uuid NOT NULL,
                     email text NOT NULL,
                     name text,
                     password_hash text NOT NULL,
                     role text NOT NULL CHECK (role IN ('admin', 'member')),
                     status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
                     created_at timestamptz NOT NULL,
                     updated_at timestamptz NOT NULL,
                     deleted_at timestamptz,
                     deleted_by uuid,
                     PRIMARY KEY (tenant_id, id)
                 );
                 CREATE UNIQUE INDEX users_live_email ON users (tenant_id, email)
                     WHERE deleted_at IS NULL;
                 {policy}
                 GRANT SELECT, INSERT, UPDATE, DELETE ON users TO {APP_ROLE}, {PLATFORM_ROLE};",
                policy = tenant_policy("users")
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, "DROP TABLE users;").await
    }
}
