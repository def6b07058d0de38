//! The narrow search path. Under row-level security PostgreSQL evaluates the tenant policy before
//! any operator that is not leakproof, so `@@` (full text) and `@>` (metadata) cannot use their
//! GIN indexes and scan every row of the tenant. `chunk_fulltext_hits` runs as `agentic_search`,
//! a role that only owns these functions and bypasses row-level security; it takes the tenant
//! from `app.tenant_id` (as the policy does) and filters on it explicitly, so it answers exactly
//! the rows the policy would, with the indexes usable.
//!
//! The query text comes from `chunk_fulltext_sql`, a plain function: the filter's values become
//! quoted literals (so the planner sees `metadata @> '…'` and can use the index), and tests can
//! EXPLAIN the very statement the search runs.
//!
//! Vector search chooses between an exact scan and the space's HNSW index by the size of the
//! generation, kept in `generations.chunk_count`; vectors are kept in the row for exact scans.

use sea_orm_migration::prelude::*;

use crate::{APP_ROLE, PLATFORM_ROLE, run};

/// Owns the search functions; created by deploy/compose/init.sql (NOLOGIN, BYPASSRLS).
pub const SEARCH_ROLE: &str = "agentic_search";

/// The full-text functions as this migration made them (`m20261207_000021_bm25` puts them back
/// when it is undone).
pub(crate) fn ts_rank_functions() -> String {
    format!(
        "-- `filter` is an array of groups, each an array of JSON objects: a chunk matches
                 -- when, in every group, its metadata contains one of the objects.
                 -- Tables are named with their schema and pg_temp comes last in the search path, so
                 -- a temporary table of the caller's cannot stand in for them in the definer's query.
                 CREATE OR REPLACE FUNCTION chunk_fulltext_sql(filter jsonb) RETURNS text
                 LANGUAGE plpgsql IMMUTABLE
                 SET search_path = pg_catalog, public, pg_temp
                 AS $fn$
                 DECLARE
                     conditions text := '';
                     alternatives text[];
                     grp jsonb;
                     alt jsonb;
                 BEGIN
                     FOR grp IN SELECT value FROM jsonb_array_elements(COALESCE(filter, '[]'::jsonb)) LOOP
                         alternatives := '{{}}';
                         FOR alt IN SELECT value FROM jsonb_array_elements(grp) LOOP
                             alternatives := alternatives || format('c.metadata @> %L::jsonb', alt::text);
                         END LOOP;
                         conditions := conditions || format(' AND (%s)',
                             COALESCE(NULLIF(array_to_string(alternatives, ' OR '), ''), 'false'));
                     END LOOP;
                     RETURN format(
                         'SELECT c.id, ts_rank_cd(c.tsv, q)::float8 AS score
                          FROM public.chunks c
                          JOIN public.documents d ON d.tenant_id = c.tenant_id AND d.id = c.document_id
                                          AND d.deleted_at IS NULL,
                               websearch_to_tsquery(''english'', $3) q
                          WHERE c.tenant_id = $1 AND c.generation_id = $2 AND c.tsv @@ q%s
                          ORDER BY score DESC, c.id
                          LIMIT $4', conditions);
                 END
                 $fn$;
                 REVOKE ALL ON FUNCTION chunk_fulltext_sql(jsonb) FROM PUBLIC;
                 GRANT EXECUTE ON FUNCTION chunk_fulltext_sql(jsonb) TO {APP_ROLE}, {PLATFORM_ROLE}, {SEARCH_ROLE};
                 SET ROLE {SEARCH_ROLE};
                 CREATE FUNCTION chunk_fulltext_hits(generation uuid, query text, filter jsonb, top integer)
                 RETURNS TABLE (id uuid, score double precision)
                 LANGUAGE plpgsql STABLE SECURITY DEFINER
                 SET search_path = pg_catalog, public, pg_temp
                 AS $fn$
                 DECLARE
                     tenant uuid := NULLIF(current_setting('app.tenant_id', true), '')::uuid;
                 BEGIN
                     IF tenant IS NULL THEN
                         RETURN;
                     END IF;
                     RETURN QUERY EXECUTE chunk_fulltext_sql(filter) USING tenant, generation, query, top;
                 END
                 $fn$;
                 REVOKE ALL ON FUNCTION chunk_fulltext_hits(uuid, text, jsonb, integer) FROM PUBLIC;
                 GRANT EXECUTE ON FUNCTION chunk_fulltext_hits(uuid, text, jsonb, integer)
                     TO {APP_ROLE}, {PLATFORM_ROLE};
                 RESET ROLE;"
    )
}

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &format!(
                "ALTER TABLE generations ADD COLUMN chunk_count bigint NOT NULL DEFAULT 0;
                 -- Vectors stay in the row (pgvector's default moves large ones out of line),
                 -- so an exact scan of a 1,536-d generation reads one page per row, not eight.
                 ALTER TABLE chunks ALTER COLUMN embedding SET STORAGE MAIN;
                 GRANT SELECT ON chunks, documents TO {SEARCH_ROLE};
                 GRANT CREATE ON SCHEMA public TO {SEARCH_ROLE};
                 {functions}",
                functions = ts_rank_functions(),
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &format!(
                "SET ROLE {SEARCH_ROLE};
                 DROP FUNCTION chunk_fulltext_hits(uuid, text, jsonb, integer);
                 RESET ROLE;
                 DROP FUNCTION chunk_fulltext_sql(jsonb);
                 REVOKE CREATE ON SCHEMA public FROM {SEARCH_ROLE};
                 REVOKE SELECT ON chunks, documents FROM {SEARCH_ROLE};
                 ALTER TABLE chunks ALTER COLUMN embedding SET STORAGE EXTERNAL;
                 ALTER TABLE generations DROP COLUMN chunk_count;"
            ),
        )
        .await
    }
}
