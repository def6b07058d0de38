//! The search planner: one list of hits per query, by vector (exact or HNSW, chosen per
//! generation size) or by full text.

use domain::ports::{ScoreKind, SearchHit, SearchMode, SearchQuery, StoreResult};
use domain::{ChunkId, DocumentId};
use sea_orm::prelude::PgVector;
use sea_orm::{FromQueryResult, Value};
use uuid::Uuid;

use crate::error::corrupt;
use crate::spaces::USABLE_INDEXES;
use crate::tenant_tx::{PgTx, execute, fetch_all, fetch_one};

/// A space id and dimension count, checked before they are written into SQL as literals (the
/// partial index on each space only serves queries that name the space as a literal).
fn space_literals(space_id: &str, dimensions: u32) -> StoreResult<(String, u32)> {
    let valid = !space_id.is_empty()
        && space_id.len() <= 63
        && space_id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid || dimensions == 0 || dimensions > 16_000 {
        return Err(corrupt(
            "embedding space",
            format!("{space_id:?}/{dimensions}"),
        ));
    }
    Ok((format!("'{space_id}'"), dimensions))
}

#[derive(Debug, FromQueryResult)]
struct HitRow {
    chunk_id: Uuid,
    document_id: Uuid,
    document_title: String,
    position: i32,
    content: String,
    score: f64,
    metadata: serde_json::Value,
}

/// A metadata filter as `chunk_fulltext_hits` takes it: one group per key, each a list of the
/// alternatives (`{key: value}` objects) a chunk's metadata may contain.
fn filter_groups(filter: &[(String, Vec<serde_json::Value>)]) -> Value {
    let groups: Vec<serde_json::Value> = filter
        .iter()
        .map(|(key, options)| {
            options
                .iter()
                .map(|option| serde_json::json!({ key: option }))
                .collect()
        })
        .collect();
    serde_json::Value::Array(groups).into()
}

/// A chunk id with its score in one list of a hybrid search.
#[derive(FromQueryResult)]
struct Scored {
    chunk_id: Uuid,
    score: f64,
}

fn scored(rows: Vec<Scored>) -> Vec<(ChunkId, f32)> {
    #[allow(clippy::cast_possible_truncation)]
    rows.into_iter()
        .map(|r| (ChunkId::from_uuid(r.chunk_id), r.score as f32))
        .collect()
}

/// One list of a hybrid search as the fusing statement reads it (`jsonb_to_recordset`).
fn scored_list(hits: &[(ChunkId, f32)]) -> Value {
    let list: Vec<serde_json::Value> = hits
        .iter()
        .map(|(id, score)| serde_json::json!({"id": id.as_uuid(), "score": score}))
        .collect();
    serde_json::Value::Array(list).into()
}

/// Exact search compares every vector of the generation: a millisecond or so per thousand chunks
/// (vectors are kept in the row); HNSW answers in a few milliseconds whatever the size, but a
/// small tenant's neighbours are few among the index's and hard to find. Up to 3,000 chunks exact
/// search wins on both counts at 384 and 1,536 dimensions (`just bench-search`,
/// docs/benchmarks.md); wider vectors, which no longer fit in the row, get proportionally fewer.
const EXACT_SEARCH_MAX_CHUNKS: i64 = 3_000;
const EXACT_SEARCH_BUDGET: i64 = EXACT_SEARCH_MAX_CHUNKS * 1_536;

/// The largest generation (in chunks) searched exactly in a space of `dimensions`.
#[must_use]
pub fn exact_search_max_chunks(dimensions: u32) -> i64 {
    (EXACT_SEARCH_BUDGET / i64::from(dimensions.max(1))).min(EXACT_SEARCH_MAX_CHUNKS)
}

/// How the nearest chunks are found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VectorPlan {
    /// Every chunk of the generation is compared (an order the HNSW index cannot serve).
    Exact,
    /// The space's HNSW index, with iterative scan so the tenant and generation filters still
    /// fill the answer.
    Hnsw,
}

impl VectorPlan {
    /// Exact up to [`exact_search_max_chunks`], else the HNSW index when it can serve (exact
    /// again, and slow, when it cannot).
    fn choose(chunk_count: i64, dimensions: u32, index_usable: bool) -> Self {
        if chunk_count <= exact_search_max_chunks(dimensions) || !index_usable {
            Self::Exact
        } else {
            Self::Hnsw
        }
    }

    /// The ORDER BY expression: for an exact search, one that no index matches.
    fn order(self, distance: &str) -> String {
        match self {
            Self::Exact => format!("({distance}) + 0"),
            Self::Hnsw => distance.to_owned(),
        }
    }
}

/// The nearest chunks: the statement (with the rows it returns, `chunk_id` and `score` among
/// them) and its parameters.
struct Nearest {
    sql: String,
    values: Vec<Value>,
}

impl PgTx {
    /// One list of hits: vector (exact or HNSW, as [`PgTx::vector_plan`] chooses), full text, or
    /// the fusion of the two lists a hybrid query brings.
    pub(crate) async fn search_chunks(
        &mut self,
        query: &SearchQuery,
    ) -> StoreResult<Vec<SearchHit>> {
        self.default_planner().await?;
        let (rows, kind) = match query.mode {
            SearchMode::Vector => {
                let nearest = self
                    .nearest(
                        query,
                        "c.id AS chunk_id, c.document_id, d.title AS document_title, c.position, c.content, c.metadata",
                    )
                    .await?;
                let rows = fetch_all::<HitRow>(&self.tx, &nearest.sql, nearest.values).await?;
                (rows, ScoreKind::CosineSimilarity)
            }
            SearchMode::Fulltext => {
                let rows = fetch_all::<HitRow>(
                    &self.tx,
                    "SELECT c.id AS chunk_id, c.document_id, d.title AS document_title, c.position, c.content,
                            f.score, c.metadata
                     FROM chunk_fulltext_hits($2, $3, $4::jsonb, $5::integer) f
                     JOIN chunks c ON c.tenant_id = $1 AND c.id = f.id
                     JOIN documents d ON d.tenant_id = c.tenant_id AND d.id = c.document_id
                     ORDER BY f.score DESC, c.id",
                    vec![
                        self.t(),
                        query.generation.as_uuid().into(),
                        query.text.as_str().into(),
                        filter_groups(&query.filter),
                        i64::from(query.top_k).into(),
                    ],
                )
                .await?;
                (rows, ScoreKind::Bm25)
            }
            SearchMode::Hybrid => {
                // A weighted sum of the two lists' scores, each scaled to 0..1 by its own list
                // (min-max; a chunk missing from a list gets that list's 0). Both lists come in
                // with the query, found side by side (`vector_scores` after the query's
                // embedding, `fulltext_scores` meanwhile); a document deleted since then drops
                // out at the last join. Chosen over reciprocal rank fusion on
                // `just bench-retrieval` (docs/benchmarks.md). The fused ids are looked up one
                // by one (a lateral subquery that OFFSET 0 keeps from being flattened): the plan
                // a prepared statement settles on, blind to the lists' size, otherwise scanned
                // the whole generation to hash-join at most 80 ids (4.2 against 1.1 ms at 10,000
                // chunks).
                let rows = fetch_all::<HitRow>(
                    &self.tx,
                    &format!(
                        "WITH vector_best AS (
                             SELECT f.id, f.score FROM jsonb_to_recordset($4::jsonb) AS f(id uuid, score float8)
                         ), text_best AS (
                             SELECT f.id, f.score FROM jsonb_to_recordset($5::jsonb) AS f(id uuid, score float8)
                         ), scaled AS (
                             SELECT id, $6::float8 * {scale} AS score FROM vector_best
                             UNION ALL
                             SELECT id, (1 - $6::float8) * {scale} AS score FROM text_best
                         ), fused AS (
                             SELECT id, sum(score)::float8 AS score FROM scaled GROUP BY id
                         )
                         SELECT c.id AS chunk_id, c.document_id, d.title AS document_title, c.position, c.content,
                                f.score, c.metadata
                         FROM fused f
                         CROSS JOIN LATERAL (
                             SELECT c.* FROM chunks c
                             WHERE c.tenant_id = $1 AND c.id = f.id AND c.generation_id = $2
                             OFFSET 0
                         ) c
                         JOIN documents d ON d.tenant_id = c.tenant_id AND d.id = c.document_id AND d.deleted_at IS NULL
                         ORDER BY f.score DESC, c.id
                         LIMIT $3",
                        scale = "COALESCE((score - min(score) OVER ()) / NULLIF(max(score) OVER () - min(score) OVER (), 0), 1)",
                    ),
                    vec![
                        self.t(),
                        query.generation.as_uuid().into(),
                        i64::from(query.top_k).into(),
                        scored_list(&query.vector_hits),
                        scored_list(&query.text_hits),
                        f64::from(query.hybrid_weight.clamp(0.0, 1.0)).into(),
                    ],
                )
                .await?;
                (rows, ScoreKind::WeightedSum)
            }
        };
        Ok(rows
            .into_iter()
            .map(|r| SearchHit {
                chunk_id: ChunkId::from_uuid(r.chunk_id),
                collection_id: query.collection,
                document_id: DocumentId::from_uuid(r.document_id),
                document_title: r.document_title,
                position: u32::try_from(r.position).unwrap_or(0),
                content: r.content,
                #[allow(clippy::cast_possible_truncation)]
                score: r.score as f32,
                score_kind: kind,
                metadata: r.metadata,
            })
            .collect())
    }

    /// The vector half of a hybrid search: ids and cosine similarities only, so that the fused
    /// answer reads only the chunks it returns.
    pub(crate) async fn search_vector_scores(
        &mut self,
        query: &SearchQuery,
    ) -> StoreResult<Vec<(ChunkId, f32)>> {
        self.default_planner().await?;
        let nearest = self.nearest(query, "c.id AS chunk_id").await?;
        let rows = fetch_all::<Scored>(&self.tx, &nearest.sql, nearest.values).await?;
        Ok(scored(rows))
    }

    /// The full-text half of a hybrid search: ids and BM25 scores only, so that it can run
    /// beside the query's embedding and the fused answer reads only the chunks it returns.
    pub(crate) async fn search_fulltext_scores(
        &mut self,
        query: &SearchQuery,
    ) -> StoreResult<Vec<(ChunkId, f32)>> {
        self.default_planner().await?;
        let rows = fetch_all::<Scored>(
            &self.tx,
            "SELECT f.id AS chunk_id, f.score FROM chunk_fulltext_hits($1, $2, $3::jsonb, $4::integer) f
             ORDER BY f.score DESC, f.id",
            vec![
                query.generation.as_uuid().into(),
                query.text.as_str().into(),
                filter_groups(&query.filter),
                i64::from(query.top_k).into(),
            ],
        )
        .await?;
        Ok(scored(rows))
    }

    /// The statement that finds the chunks of live documents nearest to `query.vector` (at most
    /// `query.top_k`, the metadata filter and `min_score` applied), best first, returning
    /// `columns` (of `c`, chunks, and `d`, documents) and `score` (cosine similarity). Plans
    /// the search for this transaction ([`PgTx::vector_plan`]).
    async fn nearest(&mut self, query: &SearchQuery, columns: &str) -> StoreResult<Nearest> {
        let (space, dims) = space_literals(&query.space_id, query.dimensions)?;
        let vector = query
            .vector
            .clone()
            .ok_or_else(|| corrupt("search", "a vector search without a vector".into()))?;
        let mut values: Vec<Value> = vec![
            self.t(),
            query.generation.as_uuid().into(),
            i64::from(query.top_k).into(),
            PgVector::from(vector).into(),
        ];
        let mut filter = String::new();
        for (key, options) in &query.filter {
            let mut any = Vec::new();
            for option in options {
                values.push(serde_json::json!({ key: option }).into());
                any.push(format!("c.metadata @> ${}::jsonb", values.len()));
            }
            filter.push_str(&format!(" AND ({})", any.join(" OR ")));
        }
        let distance = format!("c.embedding::vector({dims}) <=> $4::vector({dims})");
        let min = query
            .min_score
            .map_or(String::new(), |m| format!(" AND 1 - ({distance}) >= {m}"));
        let plan = self.vector_plan(query).await?;
        let order = plan.order(&distance);
        Ok(Nearest {
            sql: format!(
                "SELECT * FROM (
                     SELECT {columns}, (1 - ({distance}))::float8 AS score
                     FROM chunks c
                     JOIN documents d ON d.tenant_id = c.tenant_id AND d.id = c.document_id AND d.deleted_at IS NULL
                     WHERE c.tenant_id = $1 AND c.space_id = {space} AND c.generation_id = $2{filter}{min}
                     ORDER BY {order}
                     LIMIT $3
                 ) nearest
                 ORDER BY score DESC, chunk_id"
            ),
            values,
        })
    }

    /// Chooses exact or HNSW search from the generation's chunk count, and sets the HNSW scan up
    /// for this transaction when it is chosen.
    async fn vector_plan(&mut self, query: &SearchQuery) -> StoreResult<VectorPlan> {
        // Small enough that even a usable index would not be chosen: no need to ask.
        if VectorPlan::choose(query.chunk_count, query.dimensions, true) == VectorPlan::Exact {
            return Ok(VectorPlan::Exact);
        }
        // The decision must bind the planner: a prepared statement turns generic after five
        // runs (and a generic plan never takes the partial index), and PostgreSQL's costs
        // prefer a sort over the index for most sizes. relaxed_order may return neighbours
        // slightly out of order, so the queries sort again; `default_planner` undoes these settings.
        // Whether the space's index can serve (it may be missing, or left invalid by a build
        // that failed or died) is read in the same round trip; the settings apply only if so.
        let candidates = (query.top_k * 10).clamp(100, 1000);
        let index = crate::space_index_name(&query.space_id);
        #[derive(FromQueryResult)]
        struct Usable {
            usable: bool,
        }
        let usable = fetch_one::<Usable>(
            &self.tx,
            &format!(
                "WITH x AS (SELECT EXISTS (SELECT 1 FROM ({USABLE_INDEXES}) i
                                           WHERE i.relname = $1 AND i.usable) AS usable)
                 SELECT usable,
                        CASE WHEN usable THEN
                            set_config('hnsw.iterative_scan', 'relaxed_order', true)
                            || set_config('hnsw.ef_search', '{candidates}', true)
                            || set_config('plan_cache_mode', 'force_custom_plan', true)
                            || set_config('enable_sort', 'off', true)
                        END AS settings
                 FROM x"
            ),
            vec![index.as_str().into()],
        )
        .await?
        .is_some_and(|r| r.usable);
        // Applied with the answer: the next search undoes them first.
        self.planner_steered |= usable;
        let plan = VectorPlan::choose(query.chunk_count, query.dimensions, usable);
        if plan == VectorPlan::Hnsw {
            return Ok(plan);
        }
        // A visible degradation: the answer is exact but costs a scan of the whole generation;
        // `/readyz` reports the space as not ready until the index is built again.
        tracing::warn!(
            space = %query.space_id,
            %index,
            chunks = query.chunk_count,
            "vector index missing or not valid: this search compares every chunk instead"
        );
        Ok(VectorPlan::Exact)
    }

    /// Gives the next search of the transaction (another collection's) the default planner
    /// when an HNSW search steered it. Undone lazily: most transactions end after their one
    /// search, and a round trip to undo what the commit undoes anyway was one of a retrieval
    /// turn's. The settings only steer the choice of plan, so a statement other than a search
    /// between the two still answers the same.
    async fn default_planner(&mut self) -> StoreResult<()> {
        if !std::mem::take(&mut self.planner_steered) {
            return Ok(());
        }
        execute(
            &self.tx,
            "SELECT set_config('plan_cache_mode', 'auto', true), set_config('enable_sort', 'on', true)",
            vec![],
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::{VectorPlan, exact_search_max_chunks};

    #[test]
    fn wider_vectors_are_searched_exactly_in_fewer_chunks() {
        assert_eq!(exact_search_max_chunks(384), 3_000);
        assert_eq!(exact_search_max_chunks(1_536), 3_000);
        assert_eq!(exact_search_max_chunks(3_072), 1_500);
        assert_eq!(exact_search_max_chunks(0), 3_000);
    }

    #[test]
    fn small_generations_and_unusable_indexes_are_searched_exactly() {
        assert_eq!(VectorPlan::choose(3_000, 384, true), VectorPlan::Exact);
        assert_eq!(VectorPlan::choose(3_001, 384, true), VectorPlan::Hnsw);
        assert_eq!(VectorPlan::choose(3_001, 384, false), VectorPlan::Exact);
        assert_eq!(VectorPlan::choose(1_501, 3_072, true), VectorPlan::Hnsw);
    }

    #[test]
    fn an_exact_order_is_one_no_index_can_serve() {
        assert_eq!(VectorPlan::Exact.order("d"), "(d) + 0");
        assert_eq!(VectorPlan::Hnsw.order("d"), "d");
    }
}
