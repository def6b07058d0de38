//! Platform keys may expire, like tenant keys: an operator's key given for a task need not live
//! forever (`agentic platform-key create --expires-in-days N`).

use sea_orm_migration::prelude::*;

use crate::run;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            "ALTER TABLE platform_keys ADD COLUMN expires_at timestamptz;",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, "ALTER TABLE platform_keys DROP COLUMN expires_at;").await
    }
}
