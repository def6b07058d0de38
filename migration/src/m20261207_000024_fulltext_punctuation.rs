//! Typographic punctuation separates words in full text, whatever the database's locale.
//!
//! PostgreSQL's parser decides what is a letter by the database's `LC_CTYPE`: under `C` (as
//! `initdb` often leaves it) every non-ASCII character is one, so `table’s` became the lexeme
//! `table’`, `“quoted”` kept its quotes and `x—y` stayed one word, and a question saying
//! `table` missed them; under a UTF-8 locale the same text split. `searchable_text` now reads
//! the general punctuation block (curly quotes, dashes, ellipses, bullets), guillemets, arrows
//! and box drawing as spaces, after which dots and slashes separate words as before. Chunks
//! (`tsv`, `tsv_length`) and queries go through the same function, and the statistics are
//! counted again for the new lexemes.

use sea_orm_migration::prelude::*;

use crate::m20261207_000021_bm25::fulltext_hits_body;
use crate::{SEARCH_ROLE, run};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The expression chunks and queries were read through before this migration.
const PREVIOUS_READING: &str = "translate(content, './', '  ')";

/// `tsv` and `tsv_length` read through `reading` (an expression of the chunk's columns), and the
/// statistics of every generation counted again from the chunks, by the owner, for whom
/// row-level security is lifted for these statements only.
pub(crate) fn read_chunks_through(reading: &str) -> String {
    format!(
        "ALTER TABLE chunks
             ALTER COLUMN tsv SET EXPRESSION AS (to_tsvector('english', {reading})),
             ALTER COLUMN tsv_length SET EXPRESSION AS (tsvector_length(to_tsvector('english', {reading})));
         ALTER TABLE chunks NO FORCE ROW LEVEL SECURITY;
         ALTER TABLE generations NO FORCE ROW LEVEL SECURITY;
         ALTER TABLE generation_lexemes NO FORCE ROW LEVEL SECURITY;
         ALTER TABLE generation_documents NO FORCE ROW LEVEL SECURITY;
         UPDATE generations g
         SET token_total = (SELECT COALESCE(sum(c.tsv_length), 0) FROM chunks c
                            WHERE c.tenant_id = g.tenant_id AND c.generation_id = g.id);
         UPDATE generation_documents s
         SET token_total = (SELECT COALESCE(sum(c.tsv_length), 0) FROM chunks c
                            WHERE c.tenant_id = s.tenant_id AND c.generation_id = s.generation_id
                              AND c.document_id = s.document_id);
         DELETE FROM generation_lexemes;
         INSERT INTO generation_lexemes (tenant_id, generation_id, lexeme, chunks)
         SELECT c.tenant_id, c.generation_id, u.lexeme, count(*)
         FROM chunks c CROSS JOIN LATERAL unnest(c.tsv) u
         GROUP BY c.tenant_id, c.generation_id, u.lexeme;
         ALTER TABLE chunks FORCE ROW LEVEL SECURITY;
         ALTER TABLE generations FORCE ROW LEVEL SECURITY;
         ALTER TABLE generation_lexemes FORCE ROW LEVEL SECURITY;
         ALTER TABLE generation_documents FORCE ROW LEVEL SECURITY;"
    )
}

/// The search function, reading its query through `read_query` (an expression of `query`), with
/// `settings` (`SET` clauses) beside its search path.
pub(crate) fn fulltext_hits(read_query: &str, settings: &str) -> String {
    format!(
        "SET ROLE {SEARCH_ROLE};
         CREATE OR REPLACE FUNCTION chunk_fulltext_hits(generation uuid, query text, filter jsonb, top integer)
         RETURNS TABLE (id uuid, score double precision)
         LANGUAGE plpgsql STABLE SECURITY DEFINER
         SET search_path = pg_catalog, public, pg_temp {settings}
         ROWS 50
         AS {body};
         RESET ROLE;",
        body = fulltext_hits_body(read_query),
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &format!(
                r"CREATE FUNCTION searchable_text(text) RETURNS text
                  LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
                  RETURN pg_catalog.translate(
                      pg_catalog.regexp_replace($1, '[\u00AB\u00BB\u2000-\u206F\u2190-\u21FF\u2500-\u257F]', ' ', 'g'),
                      './', '  ');
                  {chunks}
                  {function}",
                chunks = read_chunks_through("searchable_text(content)"),
                function = fulltext_hits("searchable_text(query)", ""),
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &format!(
                "{function}
                 {chunks}
                 DROP FUNCTION searchable_text(text);",
                function = fulltext_hits(&PREVIOUS_READING.replace("content", "query"), ""),
                chunks = read_chunks_through(PREVIOUS_READING),
            ),
        )
        .await
    }
}
