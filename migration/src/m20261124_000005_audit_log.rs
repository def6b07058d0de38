//! The audit log: append-only. The application role may only insert and read; a trigger refuses
//! updates from anyone, so history cannot be rewritten even by the platform role.

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
                "CREATE TABLE audit_log (
                     tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
                     id uuid NOT NULL,
                     at timestamptz NOT NULL,
                     actor_type text NOT NULL,
                     actor_id uuid NOT NULL,
                     action text NOT NULL,
                     resource_type text NOT NULL,
                     resource_id uuid NOT NULL,
                     detail jsonb NOT NULL DEFAULT '{{}}',
                     PRIMARY KEY (tenant_id, id)
                 );
                 CREATE INDEX audit_log_resource ON audit_log (tenant_id, resource_type, resource_id);
                 CREATE FUNCTION audit_log_is_append_only() RETURNS trigger
                     LANGUAGE plpgsql AS $$
                     BEGIN
                         RAISE EXCEPTION 'audit_log is append-only';
                     END $$;
                 CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
                     FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
                 {policy}
                 GRANT SELECT, INSERT ON audit_log TO {APP_ROLE};
                 GRANT SELECT, INSERT, DELETE ON audit_log TO {PLATFORM_ROLE};",
                policy = tenant_policy("audit_log")
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            "DROP TABLE audit_log; DROP FUNCTION audit_log_is_append_only();",
        )
        .await
    }
}
