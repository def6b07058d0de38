//! Plans of full-text search that follow the generation searched.
//!
//! The full-text and metadata indexes of `chunks` lead with the generation.
//! Alone, `chunks_tsv` and `chunks_metadata` span every tenant: a search for a common word read
//! that word's postings in every tenant's chunks and then kept its own, so one tenant's searches
//! slowed as the others' data grew. With `generation_id` as the first column (`btree_gin`, a
//! trusted extension of PostgreSQL's contrib, so the database owner may create it), the scan
//! intersects the word's postings with the generation's and skips through the rest: its cost
//! follows the generation searched.
//!
//! `chunk_fulltext_hits` declares the rows it returns (50, a typical answer; PostgreSQL assumes
//! 1,000 of a function). With 1,000 the statement that joins its ids back to `chunks` hashed
//! a sequential scan of the table (every tenant's chunks, under row-level security's filter)
//! instead of looking up 50 rows by key: about 14 ms on `just bench-retrieval`'s 10,380 chunks,
//! as much as the search function itself, and growing with every tenant's data.

use sea_orm_migration::prelude::*;

use crate::{SEARCH_ROLE, run};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &format!(
                "CREATE EXTENSION IF NOT EXISTS btree_gin;
                 DROP INDEX chunks_tsv;
                 DROP INDEX chunks_metadata;
                 CREATE INDEX chunks_tsv ON chunks USING gin (generation_id, tsv);
                 CREATE INDEX chunks_metadata ON chunks USING gin (generation_id, metadata jsonb_path_ops);
                 SET ROLE {SEARCH_ROLE};
                 ALTER FUNCTION chunk_fulltext_hits(uuid, text, jsonb, integer) ROWS 50;
                 RESET ROLE;"
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &format!(
                "SET ROLE {SEARCH_ROLE};
                 ALTER FUNCTION chunk_fulltext_hits(uuid, text, jsonb, integer) ROWS 1000;
                 RESET ROLE;
                 DROP INDEX chunks_tsv;
                 DROP INDEX chunks_metadata;
                 CREATE INDEX chunks_tsv ON chunks USING gin (tsv);
                 CREATE INDEX chunks_metadata ON chunks USING gin (metadata jsonb_path_ops);
                 DROP EXTENSION IF EXISTS btree_gin;"
            ),
        )
        .await
    }
}
