//! Full text scores its candidates with aggregates and plans that hold at every size.
//!
//! The ranking is `bm25_documents`' (a chunk's BM25 plus half its document's); what changes is
//! how the statement gets there. On `just bench-retrieval`'s 10,380 chunks, timed inside
//! PostgreSQL over its 500 questions, p50 went from 15.9 to 13.5 ms and p99 from 41 to 21 ms:
//! - The planner prices `@@` as cheap, so for a question of many words it read every chunk of
//!   the table and matched each (36 ms for 16 alternatives) instead of asking the GIN index
//!   (5 ms). Sequential scans are off in the function.
//! - It cannot estimate how many of a candidate's lexemes match (it guesses two rows), and on
//!   that guess it joins by nested loops over every pair, which at a thousand candidates took
//!   200 ms. Nested loops are off in the function: hash and merge joins are right at every size
//!   it sees.
//! - The chunk's part and the document's part are two aggregates joined by document, instead of
//!   two window functions, each a sort of every match.
//! - A candidate's matching lexemes come from a set-returning function in the select list (one
//!   call a candidate) rather than a lateral join (a tuple store a candidate).
//! - Soft-deleted documents are left out by an anti-join on a partial index of the deleted ones
//!   (`documents_deleted`), usually empty, instead of a join that hashed every document of the
//!   table.

use sea_orm_migration::prelude::*;

use crate::m20261207_000021_bm25::{bm25_term, fulltext_sql_function_of};
use crate::m20261207_000023_bm25_documents::{
    DOCUMENT_WEIGHT, GENERATION_AND_TERMS, fulltext_sql_with_documents,
};
use crate::m20261207_000024_fulltext_punctuation::fulltext_hits;
use crate::run;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// What the search function sets for its statements (see the module's documentation).
const PLANNER_SETTINGS: &str = "SET enable_seqscan = off SET enable_nestloop = off";

/// The search statement, with `bm25`'s parameters: `$1` tenant, `$2` generation, `$3` the
/// query's lexemes, `$4` the alternatives that make candidates, `$5` how many hits.
fn fulltext_sql_with_aggregates() -> String {
    let chunk_part = bm25_term("m.idf", "m.tf", "m.tsv_length", "generation.average_length");
    let document_part = bm25_term(
        "t.idf",
        "t.tf",
        "t.length",
        "generation.average_document_length",
    );
    fulltext_sql_function_of(&format!(
        "{GENERATION_AND_TERMS}candidates AS MATERIALIZED (
                      SELECT c.id, c.document_id, c.tsv_length, c.tsv
                      FROM public.chunks c
                      WHERE c.tenant_id = $1 AND c.generation_id = $2 AND c.tsv @@ $4%s
                        AND NOT EXISTS (SELECT 1 FROM public.documents d
                                        WHERE d.tenant_id = $1 AND d.id = c.document_id
                                          AND d.deleted_at IS NOT NULL)
                  ), matches AS MATERIALIZED (
                      SELECT u.id, u.document_id, u.tsv_length, t.lexeme, t.idf,
                             cardinality((u.entry).positions)::float8 AS tf
                      FROM (SELECT c.id, c.document_id, c.tsv_length,
                                   unnest(ts_filter(setweight(c.tsv, ''A'', $3), ''{{a}}'')) AS entry
                            FROM candidates c) u
                      JOIN terms t ON t.lexeme = (u.entry).lexeme
                  ), chunk_scores AS (
                      SELECT m.id, m.document_id, sum({chunk_part}) AS score
                      FROM matches m CROSS JOIN generation
                      GROUP BY m.id, m.document_id
                  ), document_scores AS (
                      SELECT t.document_id, sum({document_part}) AS score
                      FROM (SELECT m.document_id, m.idf, sum(m.tf) AS tf,
                                   COALESCE((SELECT s.token_total FROM public.generation_documents s
                                             WHERE s.tenant_id = $1 AND s.generation_id = $2
                                               AND s.document_id = m.document_id),
                                            max(m.tsv_length)) AS length
                            FROM matches m
                            GROUP BY m.document_id, m.lexeme, m.idf) t
                      CROSS JOIN generation
                      GROUP BY t.document_id
                  )
                  SELECT c.id, (c.score + {weight} * d.score)::float8 AS score
                  FROM chunk_scores c
                  JOIN document_scores d ON d.document_id = c.document_id
                  ORDER BY score DESC, c.id
                  LIMIT $5",
        weight = DOCUMENT_WEIGHT,
    ))
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &format!(
                "CREATE INDEX documents_deleted ON documents (tenant_id, id) WHERE deleted_at IS NOT NULL;
                 {statement}
                 {function}",
                statement = fulltext_sql_with_aggregates(),
                function = fulltext_hits("searchable_text(query)", PLANNER_SETTINGS),
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &format!(
                "{function}
                 {statement}
                 DROP INDEX documents_deleted;",
                function = fulltext_hits("searchable_text(query)", ""),
                statement = fulltext_sql_with_documents(),
            ),
        )
        .await
    }
}
