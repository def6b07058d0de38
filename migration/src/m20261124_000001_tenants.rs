//! Tenants. The tenant's own row is under RLS too: the application role sees its own tenant only.

use sea_orm_migration::prelude::*;

use crate::{APP_ROLE, PLATFORM_ROLE, run};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &format!(
                "CREATE TABLE tenants (
                     id uuid PRIMARY KEY,
                     name text NOT NULL,
                     slug text NOT NULL,
                     status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
                     created_at timestamptz NOT NULL,
                     updated_at timestamptz NOT NULL,
                     CONSTRAINT tenants_slug_key UNIQUE (slug)
                 );
                 ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
                 ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
                 CREATE POLICY tenant_isolation ON tenants
                     USING (id = NULLIF(current_setting('app.tenant_id', true), '')::uuid)
                     WITH CHECK (id = NULLIF(current_setting('app.tenant_id', true), '')::uuid);
                 GRANT SELECT, UPDATE (name, updated_at) ON tenants TO {APP_ROLE};
                 GRANT SELECT, INSERT, UPDATE, DELETE ON tenants TO {PLATFORM_ROLE};"
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, "DROP TABLE tenants;").await
    }
}
