//! At most one generation of a collection is being built at a time: a second re-embedding of the
//! same collection is refused (409 `reembed_in_progress`) instead of racing the first.

use sea_orm_migration::prelude::*;

use crate::run;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            "CREATE UNIQUE INDEX generations_one_building ON generations (tenant_id, collection_id)
                 WHERE state = 'building';",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(manager, "DROP INDEX generations_one_building;").await
    }
}
