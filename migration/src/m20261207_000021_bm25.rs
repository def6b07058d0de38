//! Full text ranked by BM25 (Okapi, Lucene's idf), per generation, so tenants, collections and
//! re-embedding keep their boundaries.
//!
//! The statistics BM25 needs live beside the chunks and change in the same statements:
//! - `generations.chunk_count` (N) and `generations.token_total` (Σ chunk lengths, for the
//!   average length);
//! - `generation_lexemes`: per lexeme, how many of the generation's chunks hold it (df);
//! - `chunks.tsv_length`: a chunk's length in lexeme occurrences (stop words left out, as in
//!   `tsv`).
//!
//! Triggers on `chunks` keep them, so every path that adds or removes chunks (ingestion, a
//! replaced text, a purged document, a dropped generation) keeps them exact without knowing. A
//! writer locks the generation's row before any of its lexemes, so concurrent writers of one
//! generation queue on that row instead of deadlocking on lexemes taken in different orders.
//! Chunks of a generation being dropped are skipped: their statistics go with it.
//!
//! `chunk_fulltext_sql` now answers a query's terms as alternatives (a chunk matches when it
//! holds any of them, through the GIN index), scored Σ idf · tf·(k1+1) / (tf + k1·(1 − b + b·len/avglen))
//! with k1 = 1.2 and b = 0.75. Only the query's lexemes of each candidate are read
//! (`setweight` marks them, `ts_filter` keeps them), so a candidate costs its matches, not its
//! length.

use sea_orm_migration::prelude::*;

use crate::{APP_ROLE, PLATFORM_ROLE, SEARCH_ROLE, run, tenant_policy};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// BM25's term-frequency saturation.
pub const BM25_K1: f64 = 1.2;
/// BM25's length normalisation (0: none, 1: full).
pub const BM25_B: f64 = 0.75;
/// How many chunk postings of a query's rarest lexemes make its candidates (see the search
/// function); on `just bench-retrieval`, the same rankings as every term at a quarter of the
/// time on 10,000 chunks.
const CANDIDATE_BUDGET: u32 = 2_000;

/// `chunk_fulltext_sql`, which turns a metadata filter into SQL conditions and returns
/// `statement` (a `format` string of plpgsql, its one `%s` where the conditions go, quotes
/// doubled) with them.
pub(crate) fn fulltext_sql_function_of(statement: &str) -> String {
    format!(
        "CREATE OR REPLACE FUNCTION chunk_fulltext_sql(filter jsonb) RETURNS text
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
                 '{statement}', conditions);
         END
         $fn$;"
    )
}

/// The search function's text. `$1` tenant, `$2` generation, `$3` the query's lexemes (text[]),
/// `$4` the alternatives of those lexemes the generation holds (tsquery), `$5` how many hits.
pub(crate) fn fulltext_sql_function() -> String {
    fulltext_sql_function_of(&format!(
        "WITH generation AS (
                      SELECT g.chunk_count::float8 AS n,
                             GREATEST(g.token_total::float8 / NULLIF(g.chunk_count, 0), 1) AS average_length
                      FROM public.generations g WHERE g.tenant_id = $1 AND g.id = $2
                  ), terms AS (
                      SELECT s.lexeme, ln(1 + (generation.n - s.chunks + 0.5) / (s.chunks + 0.5)) AS idf
                      FROM public.generation_lexemes s, generation
                      WHERE s.tenant_id = $1 AND s.generation_id = $2 AND s.lexeme = ANY ($3)
                  )
                  SELECT c.id,
                         sum({term})::float8 AS score
                  FROM public.chunks c
                  JOIN public.documents d ON d.tenant_id = c.tenant_id AND d.id = c.document_id
                                  AND d.deleted_at IS NULL
                  CROSS JOIN generation
                  CROSS JOIN LATERAL unnest(ts_filter(setweight(c.tsv, ''A'', $3), ''{{a}}'')) u
                  JOIN terms t ON t.lexeme = u.lexeme
                  WHERE c.tenant_id = $1 AND c.generation_id = $2 AND c.tsv @@ $4%s
                  GROUP BY c.id
                  ORDER BY score DESC, c.id
                  LIMIT $5",
        term = bm25_term(
            "t.idf",
            "cardinality(u.positions)",
            "c.tsv_length",
            "generation.average_length"
        ),
    ))
}

/// One query term's BM25 score (SQL): `idf` · tf·(k1+1) / (tf + k1·(1 − b + b·length/average)).
pub(crate) fn bm25_term(idf: &str, tf: &str, length: &str, average: &str) -> String {
    format!(
        "{idf} * {tf} * {k1_plus_1} / ({tf} + {k1} * (1 - {b} + {b} * {length} / {average}))",
        k1 = BM25_K1,
        k1_plus_1 = BM25_K1 + 1.0,
        b = BM25_B,
    )
}

/// The body of `chunk_fulltext_hits` (plpgsql, between `$fn$`s), reading the query through
/// `read_query` (an expression of `query`, the same the chunks' `tsv` reads `content` through).
pub(crate) fn fulltext_hits_body(read_query: &str) -> String {
    format!(
        "$fn$
                 DECLARE
                     tenant uuid := NULLIF(current_setting('app.tenant_id', true), '')::uuid;
                     lexemes text[];
                     alternatives tsquery;
                 BEGIN
                     IF tenant IS NULL THEN
                         RETURN;
                     END IF;
                     SELECT array_agg(q.lexeme) INTO lexemes
                     FROM (SELECT u.lexeme
                           FROM unnest(to_tsvector('english', {read_query})) u
                           ORDER BY u.positions[1], u.lexeme LIMIT 128) q;
                     SELECT string_agg('''' || replace(replace(t.lexeme, '\\', '\\\\'), '''', '''''') || '''', ' | ')::tsquery
                     INTO alternatives
                     FROM (SELECT s.lexeme,
                                  sum(s.chunks) OVER (ORDER BY s.chunks, s.lexeme) AS postings,
                                  row_number() OVER (ORDER BY s.chunks, s.lexeme) AS rarity
                           FROM public.generation_lexemes s
                           WHERE s.tenant_id = tenant AND s.generation_id = generation
                             AND s.lexeme = ANY (lexemes)) t
                     WHERE t.rarity = 1 OR t.postings <= {CANDIDATE_BUDGET};
                     IF alternatives IS NULL THEN
                         RETURN;
                     END IF;
                     RETURN QUERY EXECUTE chunk_fulltext_sql(filter)
                         USING tenant, generation, lexemes, alternatives, top;
                 END
                 $fn$"
    )
}

/// The trigger functions that keep the statistics, with `added_more` and `removed_more` (plpgsql
/// statements, braces doubled) run last in each: after the generation's row is locked.
pub(crate) fn trigger_functions(added_more: &str, removed_more: &str) -> String {
    format!(
        "
    CREATE OR REPLACE FUNCTION chunks_added() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp
    AS $fn$
    BEGIN
        UPDATE generations g
        SET chunk_count = g.chunk_count + n.chunks, token_total = g.token_total + n.tokens
        FROM (SELECT tenant_id, generation_id, count(*) AS chunks, sum(tsv_length) AS tokens
              FROM added GROUP BY tenant_id, generation_id) n
        WHERE g.tenant_id = n.tenant_id AND g.id = n.generation_id;
        INSERT INTO generation_lexemes AS s (tenant_id, generation_id, lexeme, chunks)
        SELECT c.tenant_id, c.generation_id, u.lexeme, count(*)
        FROM added c CROSS JOIN LATERAL unnest(c.tsv) u
        GROUP BY c.tenant_id, c.generation_id, u.lexeme
        ORDER BY c.tenant_id, c.generation_id, u.lexeme
        ON CONFLICT (tenant_id, generation_id, lexeme) DO UPDATE SET chunks = s.chunks + EXCLUDED.chunks;
{added_more}        RETURN NULL;
    END
    $fn$;

    CREATE OR REPLACE FUNCTION chunks_removed() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, public, pg_temp
    AS $fn$
    BEGIN
        -- The generation's row is locked (and its counts lowered) first; a generation this
        -- statement no longer sees is being dropped, and its statistics with it.
        WITH counts AS (
            SELECT tenant_id, generation_id, count(*) AS chunks, sum(tsv_length) AS tokens
            FROM removed GROUP BY tenant_id, generation_id
        ), live AS (
            UPDATE generations g
            SET chunk_count = GREATEST(g.chunk_count - n.chunks, 0),
                token_total = GREATEST(g.token_total - n.tokens, 0)
            FROM counts n
            WHERE g.tenant_id = n.tenant_id AND g.id = n.generation_id
            RETURNING g.tenant_id, g.id
        ), gone AS (
            SELECT c.tenant_id, c.generation_id, u.lexeme, count(*) AS chunks
            FROM removed c
            JOIN live ON live.tenant_id = c.tenant_id AND live.id = c.generation_id
            CROSS JOIN LATERAL unnest(c.tsv) u
            GROUP BY c.tenant_id, c.generation_id, u.lexeme
        ), emptied AS (
            DELETE FROM generation_lexemes s USING gone
            WHERE s.tenant_id = gone.tenant_id AND s.generation_id = gone.generation_id
              AND s.lexeme = gone.lexeme AND s.chunks <= gone.chunks
        )
        UPDATE generation_lexemes s SET chunks = s.chunks - gone.chunks
        FROM gone
        WHERE s.tenant_id = gone.tenant_id AND s.generation_id = gone.generation_id
          AND s.lexeme = gone.lexeme AND s.chunks > gone.chunks;
{removed_more}        RETURN NULL;
    END
    $fn$;
"
    )
}

/// The statistics the triggers keep (the trigger functions are [`trigger_functions`]).
const STATISTICS: &str = "
    CREATE FUNCTION tsvector_length(tsvector) RETURNS integer
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN (SELECT COALESCE(sum(COALESCE(cardinality(u.positions), 1)), 0)::integer
            FROM pg_catalog.unnest($1) u);
    -- Dots and slashes separate words: PostgreSQL's parser would keep `str.join` or `os/path`
    -- whole, as a host or a file name, where a question says `join`.
    ALTER TABLE chunks ALTER COLUMN tsv
        SET EXPRESSION AS (to_tsvector('english', translate(content, './', '  ')));
    ALTER TABLE chunks ADD COLUMN tsv_length integer NOT NULL
        GENERATED ALWAYS AS (tsvector_length(to_tsvector('english', translate(content, './', '  ')))) STORED;
    ALTER TABLE generations ADD COLUMN token_total bigint NOT NULL DEFAULT 0;
    CREATE TABLE generation_lexemes (
        tenant_id uuid NOT NULL,
        generation_id uuid NOT NULL,
        lexeme text NOT NULL,
        chunks integer NOT NULL CHECK (chunks > 0),
        PRIMARY KEY (tenant_id, generation_id, lexeme),
        FOREIGN KEY (tenant_id, generation_id) REFERENCES generations (tenant_id, id)
            ON DELETE CASCADE
    );
";

/// The triggers, and the statistics of the chunks already there.
const TRIGGERS: &str = "
    CREATE TRIGGER chunks_added AFTER INSERT ON chunks
        REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION chunks_added();
    CREATE TRIGGER chunks_removed AFTER DELETE ON chunks
        REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION chunks_removed();

    -- The chunks already stored: counted by the owner, for whom row-level security is lifted
    -- for these statements only.
    ALTER TABLE chunks NO FORCE ROW LEVEL SECURITY;
    ALTER TABLE generations NO FORCE ROW LEVEL SECURITY;
    UPDATE generations g
    SET chunk_count = (SELECT count(*) FROM chunks c WHERE c.tenant_id = g.tenant_id AND c.generation_id = g.id),
        token_total = (SELECT COALESCE(sum(c.tsv_length), 0) FROM chunks c
                       WHERE c.tenant_id = g.tenant_id AND c.generation_id = g.id);
    INSERT INTO generation_lexemes (tenant_id, generation_id, lexeme, chunks)
    SELECT c.tenant_id, c.generation_id, u.lexeme, count(*)
    FROM chunks c CROSS JOIN LATERAL unnest(c.tsv) u
    GROUP BY c.tenant_id, c.generation_id, u.lexeme;
    ALTER TABLE chunks FORCE ROW LEVEL SECURITY;
    ALTER TABLE generations FORCE ROW LEVEL SECURITY;
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        run(
            manager,
            &format!(
                "{STATISTICS}
                 {trigger_functions}
                 {TRIGGERS}
                 {policy}
                 GRANT SELECT, INSERT, UPDATE, DELETE ON generation_lexemes TO {APP_ROLE}, {PLATFORM_ROLE};
                 GRANT SELECT ON generations, generation_lexemes TO {SEARCH_ROLE};
                 {function}
                 SET ROLE {SEARCH_ROLE};
                 DROP FUNCTION chunk_fulltext_hits(uuid, text, jsonb, integer);
                 -- `query` is the text as the caller cut it, read as the chunks are; at most 128
                 -- of its lexemes count (in the order they appear). Candidates come from the
                 -- rarest of them, while their chunk counts add up to at most {CANDIDATE_BUDGET}
                 -- (always the rarest one): a chunk holding only common terms would rank low
                 -- anyway, and a question's common words would otherwise make most of the
                 -- generation a candidate. Every query lexeme still counts in the score.
                 CREATE FUNCTION chunk_fulltext_hits(generation uuid, query text, filter jsonb, top integer)
                 RETURNS TABLE (id uuid, score double precision)
                 LANGUAGE plpgsql STABLE SECURITY DEFINER
                 SET search_path = pg_catalog, public, pg_temp
                 AS {hits_body};
                 REVOKE ALL ON FUNCTION chunk_fulltext_hits(uuid, text, jsonb, integer) FROM PUBLIC;
                 GRANT EXECUTE ON FUNCTION chunk_fulltext_hits(uuid, text, jsonb, integer)
                     TO {APP_ROLE}, {PLATFORM_ROLE};
                 RESET ROLE;",
                policy = tenant_policy("generation_lexemes"),
                function = fulltext_sql_function(),
                hits_body = fulltext_hits_body("translate(query, './', '  ')"),
                trigger_functions = trigger_functions("", ""),
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
                 {previous}
                 DROP TRIGGER chunks_added ON chunks;
                 DROP TRIGGER chunks_removed ON chunks;
                 DROP FUNCTION chunks_added();
                 DROP FUNCTION chunks_removed();
                 DROP TABLE generation_lexemes;
                 REVOKE SELECT ON generations FROM {SEARCH_ROLE};
                 ALTER TABLE generations DROP COLUMN token_total;
                 ALTER TABLE chunks DROP COLUMN tsv_length;
                 ALTER TABLE chunks ALTER COLUMN tsv SET EXPRESSION AS (to_tsvector('english', content));
                 DROP FUNCTION tsvector_length(tsvector);",
                previous = crate::m20261126_000013_search_functions::ts_rank_functions(),
            ),
        )
        .await
    }
}
