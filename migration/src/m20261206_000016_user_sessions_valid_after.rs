//! A user's tokens issued before `sessions_valid_after` are dead. Disabling or deleting a user
//! sets it, so re-enabling or restoring the user later does not revive the refresh tokens (and
//! access tokens) it held before: it signs in again.

use sea_orm_migration::prelude::*;

use crate::run;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            "ALTER TABLE users ADD COLUMN sessions_valid_after timestamptz;",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            "ALTER TABLE users DROP COLUMN sessions_valid_after;",
        )
        .await
    }
}
