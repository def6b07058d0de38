//! A chunk's full text holds its document's title.
//!
//! A page's title is the shortest description of what it is about, and questions name it:
//! "how do I read a JSON file" against the page titled `json — JSON encoder and decoder`. Cut
//! into chunks, a page kept its title only in the first chunk, if there. Each chunk now carries
//! the title it was ingested under (`chunks.title`, written with the chunk; a new title queues a
//! new ingestion, so the chunks follow it), and `tsv` and `tsv_length` read the title and the
//! content together. The statistics are counted again for the new lexemes.

use sea_orm_migration::prelude::*;

use crate::m20261207_000024_fulltext_punctuation::read_chunks_through;
use crate::run;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &format!(
                "ALTER TABLE chunks ADD COLUMN title text NOT NULL DEFAULT '';
                 ALTER TABLE chunks NO FORCE ROW LEVEL SECURITY;
                 ALTER TABLE documents NO FORCE ROW LEVEL SECURITY;
                 UPDATE chunks c SET title = d.title
                 FROM documents d WHERE d.tenant_id = c.tenant_id AND d.id = c.document_id;
                 ALTER TABLE chunks FORCE ROW LEVEL SECURITY;
                 ALTER TABLE documents FORCE ROW LEVEL SECURITY;
                 {chunks}",
                chunks = read_chunks_through("searchable_text(title || E'\\n' || content)"),
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &format!(
                "{chunks}
                 ALTER TABLE chunks DROP COLUMN title;",
                chunks = read_chunks_through("searchable_text(content)"),
            ),
        )
        .await
    }
}
