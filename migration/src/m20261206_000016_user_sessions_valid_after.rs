//! A user's refresh tokens issued before `sessions_valid_after` are dead, except those of
//! `sessions_kept_family` (the session that changed its own password keeps going). Disabling or
//! deleting a user sets it, so re-enabling or restoring the user later does not revive the
//! refresh tokens it held before; so do a password change or reset and logging out everywhere.

use sea_orm_migration::prelude::*;

use crate::run;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            "ALTER TABLE users ADD COLUMN sessions_valid_after timestamptz,
                             ADD COLUMN sessions_kept_family uuid;",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            "ALTER TABLE users DROP COLUMN sessions_kept_family, DROP COLUMN sessions_valid_after;",
        )
        .await
    }
}
