//! The full-text and metadata indexes of `chunks` lead with the generation.
//!
//! Alone, `chunks_tsv` and `chunks_metadata` span every tenant: a search for a common word read
//! that word's postings in every tenant's chunks and then kept its own, so one tenant's searches
//! slowed as the others' data grew. With `generation_id` as the first column (`btree_gin`, a
//! trusted extension of PostgreSQL's contrib, so the database owner may create it), the scan
//! intersects the word's postings with the generation's and skips through the rest: its cost
//! follows the generation searched.

use sea_orm_migration::prelude::*;

use crate::run;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            "CREATE EXTENSION IF NOT EXISTS btree_gin;
             DROP INDEX chunks_tsv;
             DROP INDEX chunks_metadata;
             CREATE INDEX chunks_tsv ON chunks USING gin (generation_id, tsv);
             CREATE INDEX chunks_metadata ON chunks USING gin (generation_id, metadata jsonb_path_ops);",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            "DROP INDEX chunks_tsv;
             DROP INDEX chunks_metadata;
             CREATE INDEX chunks_tsv ON chunks USING gin (tsv);
             CREATE INDEX chunks_metadata ON chunks USING gin (metadata jsonb_path_ops);
             DROP EXTENSION IF EXISTS btree_gin;",
        )
        .await
    }
}
