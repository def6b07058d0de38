//! History belongs to the owner alone. The audit log was append-only for the application role,
//! but the platform role could delete entries (and, by deleting a tenant, cascade them away) and
//! nothing stopped TRUNCATE. Now every role but the table's owner is refused by triggers as well
//! as by grants: a leaked platform URL cannot rewrite history. Removing a tenant's trail is the
//! owner's explicit operation (`agentic audit purge`), documented in docs/security.md.

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
                "REVOKE DELETE, TRUNCATE ON audit_log FROM {PLATFORM_ROLE};
                 REVOKE DELETE, TRUNCATE ON tenants FROM {PLATFORM_ROLE};
                 -- The owner is whoever owns the table (the role migrations run as), not a name:
                 -- a foreign key's cascade runs as the owner too, so deleting a tenant stays an
                 -- owner's operation.
                 CREATE FUNCTION audit_log_removal_by_owner_only() RETURNS trigger
                     LANGUAGE plpgsql AS $$
                     BEGIN
                         IF current_user <> (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = TG_RELID) THEN
                             RAISE EXCEPTION 'audit_log is append-only: only its owner removes entries (agentic audit purge)'
                                 USING ERRCODE = 'insufficient_privilege';
                         END IF;
                         RETURN CASE WHEN TG_LEVEL = 'ROW' THEN OLD END;
                     END $$;
                 CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
                     FOR EACH ROW EXECUTE FUNCTION audit_log_removal_by_owner_only();
                 CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
                     FOR EACH STATEMENT EXECUTE FUNCTION audit_log_removal_by_owner_only();"
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &format!(
                "DROP TRIGGER audit_log_no_truncate ON audit_log;
                 DROP TRIGGER audit_log_no_delete ON audit_log;
                 DROP FUNCTION audit_log_removal_by_owner_only();
                 GRANT DELETE ON tenants TO {PLATFORM_ROLE};
                 GRANT DELETE ON audit_log TO {PLATFORM_ROLE};"
            ),
        )
        .await
    }
}
