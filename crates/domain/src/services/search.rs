use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::entities::{Collection, Retrieval};
use crate::error::{Error, Resource, Validator};
use crate::ids::{ChunkId, CollectionId, TenantId};
use crate::ports::{
    Embedder, RRF_K, ScoreKind, SearchHit, SearchMode, SearchQuery, Store, hybrid_depth,
};
use crate::principal::{Principal, Scope};
use crate::services::Embedders;
use crate::services::conversations::owner_of;
use crate::services::metering::{UsageService, embedding_record};

/// A search as found, with the spaces its query was embedded in.
struct Ranked {
    retrieved: Retrieved,
    space_ids: Vec<String>,
}

/// A search as asked for, before validation.
#[derive(Clone, Debug)]
pub struct SearchRequest {
    pub query: String,
    pub top_k: Option<i64>,
    /// Hybrid when absent.
    pub mode: Option<SearchMode>,
    /// `key: value` (equality) or `key: [values]` (membership).
    pub filter: Option<serde_json::Map<String, Value>>,
    /// Vector mode only: drop hits below this cosine similarity.
    pub min_score: Option<f64>,
    /// Hybrid mode only: the vector list's weight, 0..=1 ([`DEFAULT_HYBRID_WEIGHT`] when absent).
    pub hybrid_weight: Option<f64>,
}

/// The vector list's weight in hybrid search when the request names none, chosen on
/// `just bench-retrieval` (docs/benchmarks.md).
pub const DEFAULT_HYBRID_WEIGHT: f32 = 0.5;

/// Full-text search reads at most this many words of a query (and this many characters): enough
/// for any question, and a bound on the index lookups one query costs.
const FULLTEXT_MAX_WORDS: usize = 64;
const FULLTEXT_MAX_CHARS: usize = 4_000;

/// The embedder reads a query's leading window, found by counting tokens; a query is cut to this
/// many characters per token of the window first, so a huge one costs no more than a long one.
const WINDOW_CHARS_PER_TOKEN: usize = 32;

/// What to do about a collection that is not there (deleted since an agent named it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Missing {
    Refuse,
    Skip,
}

struct Validated {
    text: String,
    top_k: u32,
    mode: SearchMode,
    filter: Vec<(String, Vec<Value>)>,
    min_score: Option<f32>,
    hybrid_weight: f32,
}

pub struct SearchService {
    store: Arc<dyn Store>,
    embedders: Embedders,
    /// Meters the search routes' query embeddings (a run's retrieval is metered with its run).
    meter: Option<Arc<UsageService>>,
}

/// What a search (or an agent's turn) found.
#[derive(Clone, Debug, Default)]
pub struct Retrieved {
    pub hits: Vec<SearchHit>,
    /// The query was longer than a search reads (the embedder's window, or full text's
    /// [`FULLTEXT_MAX_WORDS`] words): its leading part was searched.
    pub query_truncated: bool,
    /// Tokens the query's embeddings took, for metering.
    pub embedded_tokens: u32,
}

impl SearchService {
    pub fn new(store: Arc<dyn Store>, embedders: Embedders) -> Self {
        Self {
            store,
            embedders,
            meter: None,
        }
    }

    /// The same, recording each search's query embeddings against the caller's tenant (and
    /// refusing searches once its daily quota is spent).
    #[must_use]
    pub fn metered(mut self, meter: Arc<UsageService>) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Searches one or several collections of the caller's tenant. Each collection is queried in
    /// its own space, with the query embedded by that space's embedder; lists of one space merge
    /// by score, lists of different spaces are fused by reciprocal rank. A query longer than a
    /// search reads is cut, never refused ([`Retrieved::query_truncated`]).
    ///
    /// # Errors
    /// Validation; `NotFound` for a collection; `Unavailable` when a space has no embedder here.
    pub async fn search(
        &self,
        who: &Principal,
        collections: &[CollectionId],
        request: SearchRequest,
    ) -> Result<Retrieved, Error> {
        let tenant = who.tenant_with(Scope::Read)?;
        let mut v = Validator::new();
        if collections.is_empty() {
            v.push("collection_ids", "must name at least one collection");
        }
        if collections.len() > 20 {
            v.push("collection_ids", "must name at most 20 collections");
        }
        let request = validate(request, &mut v);
        v.finish()?;
        let mut unique: Vec<CollectionId> = Vec::with_capacity(collections.len());
        for id in collections {
            if !unique.contains(id) {
                unique.push(*id);
            }
        }
        let collections = unique.as_slice();
        let request =
            request.ok_or_else(|| Error::internal("validator passed with a missing field"))?;

        if let Some(meter) = &self.meter {
            meter.admit_call(tenant).await?;
        }
        let found = self
            .ranked(tenant, collections, &request, Missing::Refuse)
            .await?;
        if let Some(meter) = &self.meter
            && found.retrieved.embedded_tokens > 0
        {
            let record = embedding_record(
                Some(owner_of(who)?),
                &found.space_ids.join(","),
                found.retrieved.embedded_tokens,
                true,
                meter.now(),
            );
            meter.record(tenant, &record).await?;
        }
        Ok(found.retrieved)
    }

    /// What an agent's turn retrieves: `query` searched in the agent's collections that are still
    /// live (deleted ones are skipped), shortened to the leading window of the embedder when it is
    /// longer (never refused for its length). Answers the hits and whether the query was
    /// shortened.
    ///
    /// # Errors
    /// `Unavailable` when a space has no embedder here; storage failures.
    pub async fn retrieve(
        &self,
        tenant: TenantId,
        collections: &[CollectionId],
        query: &str,
        retrieval: Retrieval,
    ) -> Result<Retrieved, Error> {
        let text = query.trim();
        if collections.is_empty() || text.is_empty() {
            return Ok(Retrieved::default());
        }
        let request = Validated {
            text: text.to_owned(),
            top_k: retrieval.top_k,
            mode: retrieval.mode,
            filter: Vec::new(),
            min_score: retrieval.min_score,
            hybrid_weight: DEFAULT_HYBRID_WEIGHT,
        };
        self.ranked(tenant, collections, &request, Missing::Skip)
            .await
            .map(|found| found.retrieved)
    }

    async fn ranked(
        &self,
        tenant: TenantId,
        collections: &[CollectionId],
        request: &Validated,
        missing: Missing,
    ) -> Result<Ranked, Error> {
        // A re-embedding may switch a collection to a new generation (and drop the old one)
        // between reading it and searching it: that search finds nothing, and is run again.
        let mut attempts = 0;
        let mut embedded_tokens = 0u32;
        let mut space_ids: Vec<String> = Vec::new();
        let (fulltext_text, fulltext_cut) = leading_words(&request.text);
        let fulltext_cut = fulltext_cut && request.mode != SearchMode::Vector;
        let (lists, truncated) = loop {
            attempts += 1;
            let found = self.read(tenant, collections, missing).await?;
            // Hybrid search reads its full-text lists while the query is embedded (the embedder
            // works off the executor) and its nearest chunks are found: the slower of the two
            // paths, not their sum.
            let (embedded, vector_lists, text_lists) = if request.mode == SearchMode::Hybrid {
                let no_vectors = HashMap::new();
                let nearest = async {
                    let embedded = self.embed_query(&found, request).await?;
                    let lists = self
                        .hybrid_lists(tenant, &found, SearchMode::Vector, "", &embedded.0, request)
                        .await?;
                    Ok::<_, Error>((embedded, lists))
                };
                let (nearest, text_lists) = tokio::join!(
                    nearest,
                    self.hybrid_lists(
                        tenant,
                        &found,
                        SearchMode::Fulltext,
                        &fulltext_text,
                        &no_vectors,
                        request,
                    )
                );
                let (embedded, vector_lists) = nearest?;
                (embedded, vector_lists, text_lists?)
            } else {
                (
                    self.embed_query(&found, request).await?,
                    Vec::new(),
                    Vec::new(),
                )
            };
            let (vectors, truncated, tokens) = embedded;
            embedded_tokens = embedded_tokens.saturating_add(tokens);
            for space in vectors.keys() {
                if !space_ids.contains(space) {
                    space_ids.push(space.clone());
                }
            }
            let (lists, switched) = self
                .search_lists(
                    tenant,
                    &found,
                    &vectors,
                    (vector_lists, text_lists),
                    &fulltext_text,
                    request,
                )
                .await?;
            if !switched || attempts == 3 {
                break (lists, truncated || fulltext_cut);
            }
        };
        space_ids.sort();
        let ranked = |hits: Vec<SearchHit>| Ranked {
            retrieved: Retrieved {
                hits,
                query_truncated: truncated,
                embedded_tokens,
            },
            space_ids: space_ids.clone(),
        };
        // Scores are comparable within one space, so lists of one space merge by score; lists of
        // different spaces are not, so they fuse by rank.
        let mut by_space: Vec<(String, Vec<SearchHit>)> = Vec::new();
        for (space, hits) in lists {
            match by_space.iter_mut().find(|(s, _)| *s == space) {
                Some((_, merged)) => merged.extend(hits),
                None => by_space.push((space, hits)),
            }
        }
        let top_k = usize::try_from(request.top_k).unwrap_or(usize::MAX);
        let mut lists_by_space: Vec<Vec<SearchHit>> = by_space
            .into_iter()
            .map(|(_, mut hits)| {
                hits.sort_by(|a, b| {
                    b.score
                        .total_cmp(&a.score)
                        .then(a.chunk_id.cmp(&b.chunk_id))
                });
                hits.truncate(top_k);
                hits
            })
            .collect();
        if lists_by_space.len() <= 1 {
            return Ok(ranked(lists_by_space.pop().unwrap_or_default()));
        }
        Ok(ranked(fuse(lists_by_space, request.top_k)))
    }

    /// The live collections, in the order asked for.
    async fn read(
        &self,
        tenant: TenantId,
        collections: &[CollectionId],
        missing: Missing,
    ) -> Result<Vec<Collection>, Error> {
        let mut tx = self.store.begin(tenant).await?;
        let mut found: Vec<Collection> = Vec::with_capacity(collections.len());
        for id in collections {
            match (tx.collections().get(*id, false).await?, missing) {
                (Some(collection), _) => found.push(collection),
                (None, Missing::Skip) => {}
                (None, Missing::Refuse) => return Err(Error::NotFound(Resource::Collection)),
            }
        }
        tx.commit().await?;
        Ok(found)
    }

    /// The query's vector in each space the collections are in (outside any transaction), and
    /// whether the query had to be shortened to the embedder's window.
    async fn embed_query(
        &self,
        found: &[Collection],
        request: &Validated,
    ) -> Result<(HashMap<String, Vec<f32>>, bool, u32), Error> {
        let mut vectors: HashMap<String, Vec<f32>> = HashMap::new();
        let mut truncated = false;
        let mut tokens = 0u32;
        if request.mode == SearchMode::Fulltext {
            return Ok((vectors, truncated, tokens));
        }
        for collection in found {
            if vectors.contains_key(&collection.space.id) {
                continue;
            }
            let embedder = self
                .embedders
                .for_space(&collection.space)
                .map_err(|reason| {
                    Error::Unavailable(format!(
                        "this server cannot embed in space {}: {reason}",
                        collection.space.id
                    ))
                })?;
            let (text, shortened) = leading_window(embedder.as_ref(), &request.text)?;
            truncated |= shortened;
            let counted = embedder.count_tokens(&text).unwrap_or(0);
            tokens = tokens.saturating_add(u32::try_from(counted).unwrap_or(u32::MAX));
            let mut embedded = embedder
                .embed(std::slice::from_ref(&text))
                .await
                .map_err(|e| match e {
                    crate::ports::EmbedError::TooLong { max, .. } => {
                        Error::invalid("query", format!("is longer than the model's {max} tokens"))
                    }
                    other => Error::Unavailable(format!("embedding the query failed: {other}")),
                })?;
            let vector = embedded
                .pop()
                .ok_or_else(|| Error::internal("the embedder answered no vector"))?;
            vectors.insert(collection.space.id.clone(), vector);
        }
        Ok((vectors, truncated, tokens))
    }

    /// One of hybrid search's two kinds of list (`mode`: vector or full text), one per collection
    /// of `found` (in its order), each [`hybrid_depth`] deep, read in a transaction of its own.
    /// `vectors` holds the query's vector in each space (vector lists only).
    async fn hybrid_lists(
        &self,
        tenant: TenantId,
        found: &[Collection],
        mode: SearchMode,
        text: &str,
        vectors: &HashMap<String, Vec<f32>>,
        request: &Validated,
    ) -> Result<Vec<ScoredList>, Error> {
        let mut tx = self.store.begin(tenant).await?;
        let mut lists = Vec::with_capacity(found.len());
        for collection in found {
            let query = SearchQuery {
                mode,
                top_k: hybrid_depth(request.top_k),
                ..search_query(
                    collection,
                    text,
                    vectors.get(&collection.space.id).cloned(),
                    request,
                )
            };
            let list = match mode {
                SearchMode::Vector => tx.chunks().vector_scores(&query).await?,
                _ => tx.chunks().fulltext_scores(&query).await?,
            };
            lists.push(list);
        }
        tx.commit().await?;
        Ok(lists)
    }

    /// Each collection's ranked list (with its space), and whether a collection that found
    /// nothing has switched generations since it was read. `hybrid_lists` holds hybrid search's
    /// vector and full-text lists (one of each per collection), empty in the other modes.
    async fn search_lists(
        &self,
        tenant: TenantId,
        found: &[Collection],
        vectors: &HashMap<String, Vec<f32>>,
        hybrid_lists: (Vec<ScoredList>, Vec<ScoredList>),
        fulltext_text: &str,
        request: &Validated,
    ) -> Result<(Vec<(String, Vec<SearchHit>)>, bool), Error> {
        let mut tx = self.store.begin(tenant).await?;
        let mut lists = Vec::with_capacity(found.len());
        let mut switched = false;
        let (mut vector_lists, mut text_lists) =
            (hybrid_lists.0.into_iter(), hybrid_lists.1.into_iter());
        for collection in found {
            let query = SearchQuery {
                vector_hits: vector_lists.next().unwrap_or_default(),
                text_hits: text_lists.next().unwrap_or_default(),
                ..search_query(
                    collection,
                    fulltext_text,
                    vectors.get(&collection.space.id).cloned(),
                    request,
                )
            };
            let hits = tx.chunks().search(&query).await?;
            if hits.is_empty() {
                let now = tx.collections().get(collection.id, false).await?;
                switched |=
                    now.is_some_and(|c| c.active_generation != collection.active_generation);
            }
            lists.push((collection.space.id.clone(), hits));
        }
        tx.commit().await?;
        Ok((lists, switched))
    }
}

/// One list of a hybrid search: chunks with their scores, best first.
type ScoredList = Vec<(ChunkId, f32)>;

/// The query for one collection (no hybrid lists: hybrid search adds them).
fn search_query(
    collection: &Collection,
    text: &str,
    vector: Option<Vec<f32>>,
    request: &Validated,
) -> SearchQuery {
    SearchQuery {
        collection: collection.id,
        generation: collection.active_generation,
        space_id: collection.space.id.clone(),
        dimensions: collection.space.dimensions,
        chunk_count: collection.chunk_count,
        text: text.to_owned(),
        vector,
        mode: request.mode,
        top_k: request.top_k,
        filter: request.filter.clone(),
        min_score: request
            .min_score
            .filter(|_| request.mode == SearchMode::Vector),
        hybrid_weight: request.hybrid_weight,
        vector_hits: Vec::new(),
        text_hits: Vec::new(),
    }
}

fn validate(request: SearchRequest, v: &mut Validator) -> Option<Validated> {
    // Any text is searched (PostgreSQL's text cannot hold NUL, so it counts as a space); a long
    // one is cut later, where what a search reads is known.
    let text = request.query.replace('\0', " ").trim().to_owned();
    if text.is_empty() {
        v.push("query", "must not be empty");
    }
    let top_k = request.top_k.unwrap_or(10);
    if !(1..=100).contains(&top_k) {
        v.push("top_k", "must be between 1 and 100");
    }
    let mode = request.mode.unwrap_or_default();
    let mut filter = Vec::new();
    let keys = request.filter.unwrap_or_default();
    if keys.len() > 16 {
        v.push("filter", "must name at most 16 keys");
    }
    for (key, value) in keys.into_iter().take(16) {
        if key.contains('\0') || key.is_empty() || key.chars().count() > 200 {
            v.push("filter", "keys must be 1 to 200 characters without NUL");
            continue;
        }
        let is_scalar = |o: &Value| !matches!(o, Value::Array(_) | Value::Object(_));
        let options = match value {
            Value::Array(options)
                if (1..=100).contains(&options.len()) && options.iter().all(is_scalar) =>
            {
                options
            }
            Value::Array(_) => {
                v.push(
                    &format!("filter.{key}"),
                    "a list must hold 1 to 100 values, none a list or an object",
                );
                continue;
            }
            Value::Object(_) => {
                v.push(
                    &format!("filter.{key}"),
                    "must be a value or a list of values",
                );
                continue;
            }
            scalar => vec![scalar],
        };
        if options.iter().any(|o| o.to_string().contains("\\u0000")) {
            v.push(&format!("filter.{key}"), "must not contain NUL characters");
            continue;
        }
        filter.push((key, options));
    }
    let min_score = match request.min_score {
        Some(m) if !(-1.0..=1.0).contains(&m) || m.is_nan() => {
            v.push("min_score", "must be between -1 and 1");
            None
        }
        #[allow(clippy::cast_possible_truncation)]
        other => other.map(|m| m as f32),
    };
    let hybrid_weight = match request.hybrid_weight {
        Some(w) if !(0.0..=1.0).contains(&w) || w.is_nan() => {
            v.push("hybrid_weight", "must be between 0 and 1");
            DEFAULT_HYBRID_WEIGHT
        }
        #[allow(clippy::cast_possible_truncation)]
        Some(w) => w as f32,
        None => DEFAULT_HYBRID_WEIGHT,
    };
    Some(Validated {
        text,
        top_k: u32::try_from(top_k).ok()?,
        mode,
        filter,
        min_score,
        hybrid_weight,
    })
}

/// The leading [`FULLTEXT_MAX_WORDS`] words of `text` (at most [`FULLTEXT_MAX_CHARS`]
/// characters), and whether that is shorter than `text`.
fn leading_words(text: &str) -> (String, bool) {
    let mut end = text.len();
    let mut words = 0;
    let mut in_word = false;
    for (chars, (i, c)) in text.char_indices().enumerate() {
        if chars == FULLTEXT_MAX_CHARS {
            end = i;
            break;
        }
        let starts = !c.is_whitespace() && !in_word;
        in_word = !c.is_whitespace();
        if starts {
            words += 1;
            if words > FULLTEXT_MAX_WORDS {
                end = i;
                break;
            }
        }
    }
    let cut = text[..end].trim_end();
    (cut.to_owned(), end < text.len())
}

/// The longest leading part of `text` within the embedder's window, and whether it is shorter
/// than `text`. Found by bisection over character boundaries, so a long message costs a few
/// tokenizer passes over at most [`WINDOW_CHARS_PER_TOKEN`] characters per token of the window.
fn leading_window(embedder: &dyn Embedder, text: &str) -> Result<(String, bool), Error> {
    let max = embedder.max_input_tokens();
    let count = |t: &str| {
        embedder
            .count_tokens(t)
            .map_err(|e| Error::Unavailable(format!("counting the query's tokens failed: {e}")))
    };
    let (text, precut) = match text
        .char_indices()
        .nth(max.saturating_mul(WINDOW_CHARS_PER_TOKEN))
    {
        Some((end, _)) => (&text[..end], true),
        None => (text, false),
    };
    if count(text)? <= max {
        return Ok((text.to_owned(), precut));
    }
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let (mut fits, mut too_long) = (0_usize, bounds.len());
    while too_long - fits > 1 {
        let middle = usize::midpoint(fits, too_long);
        if count(&text[..bounds[middle]])? <= max {
            fits = middle;
        } else {
            too_long = middle;
        }
    }
    Ok((text[..bounds[fits]].to_owned(), true))
}

/// Reciprocal rank fusion: a chunk scores Σ 1/(k + rank) over the lists it appears in.
fn fuse(lists: Vec<Vec<SearchHit>>, top_k: u32) -> Vec<SearchHit> {
    let mut scored: HashMap<ChunkId, (f32, SearchHit)> = HashMap::new();
    for list in lists {
        for (rank, hit) in list.into_iter().enumerate() {
            #[allow(clippy::cast_precision_loss)]
            let add = 1.0 / (f32::from(RRF_K) + rank as f32 + 1.0);
            scored
                .entry(hit.chunk_id)
                .and_modify(|(score, _)| *score += add)
                .or_insert((add, hit));
        }
    }
    let mut fused: Vec<SearchHit> = scored
        .into_values()
        .map(|(score, mut hit)| {
            hit.score = score;
            hit.score_kind = ScoreKind::Rrf;
            hit
        })
        .collect();
    fused.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then(a.chunk_id.cmp(&b.chunk_id))
    });
    fused.truncate(usize::try_from(top_k).unwrap_or(usize::MAX));
    fused
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DocumentId;

    fn hit(id: ChunkId) -> SearchHit {
        SearchHit {
            chunk_id: id,
            collection_id: CollectionId::new(),
            document_id: DocumentId::new(),
            document_title: "t".into(),
            position: 0,
            content: "c".into(),
            score: 0.5,
            score_kind: ScoreKind::CosineSimilarity,
            metadata: serde_json::json!({}),
        }
    }

    #[test]
    fn fusion_rewards_agreement() {
        let (a, b, c) = (ChunkId::new(), ChunkId::new(), ChunkId::new());
        let fused = fuse(vec![vec![hit(a), hit(b)], vec![hit(b), hit(c)]], 2);
        assert_eq!(fused.iter().map(|h| h.chunk_id).collect::<Vec<_>>(), [b, a]);
        assert!(fused.iter().all(|h| h.score_kind == ScoreKind::Rrf));
    }

    #[test]
    fn bad_requests_name_their_fields() {
        let mut v = Validator::new();
        let request = SearchRequest {
            query: " ".into(),
            top_k: Some(0),
            mode: None,
            filter: Some(serde_json::from_value(serde_json::json!({"team": {"a": 1}})).unwrap()),
            min_score: Some(3.0),
            hybrid_weight: Some(1.5),
        };
        validate(request, &mut v);
        match v.finish() {
            Err(Error::Validation(fields)) => {
                let names: Vec<_> = fields.iter().map(|f| f.field.as_str()).collect();
                assert_eq!(
                    names,
                    [
                        "query",
                        "top_k",
                        "filter.team",
                        "min_score",
                        "hybrid_weight"
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn long_and_strange_queries_are_searched() {
        let mut v = Validator::new();
        let request = SearchRequest {
            query: format!("\0 x{}", "word ".repeat(50_000)),
            top_k: None,
            mode: None,
            filter: None,
            min_score: None,
            hybrid_weight: None,
        };
        let validated = validate(request, &mut v).unwrap();
        assert!(v.finish().is_ok());
        assert!(validated.text.starts_with("x"));
        assert_eq!(validated.hybrid_weight, DEFAULT_HYBRID_WEIGHT);
    }

    fn collection(tenant: TenantId) -> Collection {
        Collection {
            id: CollectionId::new(),
            tenant_id: tenant,
            name: crate::values::Name::parse("c").unwrap(),
            description: String::new(),
            space: crate::services::testing::minilm_space(),
            active_generation: crate::ids::GenerationId::new(),
            chunk_count: 10_000,
            document_count: 1,
            byte_count: 1,
            last_active_at: None,
            created_at: crate::services::testing::now(),
            updated_at: crate::services::testing::now(),
            deleted_at: None,
            deleted_by: None,
        }
    }

    #[tokio::test]
    async fn hybrid_search_fuses_the_nearest_and_full_text_lists_found_side_by_side() {
        use crate::services::testing::{FakeTx, store_with_all};
        let tenant = TenantId::new();
        let collection = collection(tenant);
        let (id, generation) = (collection.id, collection.active_generation);
        let mut read = FakeTx::new(tenant);
        read.collections
            .expect_get()
            .return_once(move |_, _| Ok(Some(collection)));
        let (text_hit, near_hit) = (ChunkId::new(), ChunkId::new());
        // The two lists are read side by side, each in a transaction of its own, whichever
        // begins first.
        let side_by_side = || {
            let mut tx = FakeTx::new(tenant);
            tx.chunks
                .expect_fulltext_scores()
                .times(..=1)
                .withf(move |q| {
                    q.mode == SearchMode::Fulltext
                        && q.top_k == 40
                        && q.generation == generation
                        && q.vector.is_none()
                        && q.text == "open a file"
                })
                .return_once(move |_| Ok(vec![(text_hit, 3.5)]));
            tx.chunks
                .expect_vector_scores()
                .times(..=1)
                .withf(move |q| {
                    q.mode == SearchMode::Vector
                        && q.top_k == 40
                        && q.generation == generation
                        && q.vector.as_deref() == Some(&[1.0, 0.0][..])
                })
                .return_once(move |_| Ok(vec![(near_hit, 0.8)]));
            tx
        };
        let mut fused = FakeTx::new(tenant);
        fused
            .chunks
            .expect_search()
            .withf(move |q| {
                q.mode == SearchMode::Hybrid
                    && q.top_k == 5
                    && q.text_hits == [(text_hit, 3.5)]
                    && q.vector_hits == [(near_hit, 0.8)]
            })
            .return_once(move |_| Ok(vec![hit(text_hit), hit(near_hit)]));
        let mut factory = crate::ports::MockEmbedderFactory::new();
        factory.expect_build().returning(|_| {
            let mut embedder = crate::ports::MockEmbedder::new();
            embedder.expect_dimensions().return_const(384_usize);
            embedder.expect_max_input_tokens().return_const(256_usize);
            embedder.expect_count_tokens().returning(|_| Ok(3));
            embedder
                .expect_embed()
                .returning(|_| Ok(vec![vec![1.0, 0.0]]));
            Ok(Arc::new(embedder))
        });
        let service = SearchService::new(
            store_with_all(vec![read, side_by_side(), side_by_side(), fused]),
            Embedders::with_factory(Arc::new(factory)),
        );
        let found = service
            .retrieve(
                tenant,
                &[id],
                "open a file",
                Retrieval {
                    top_k: 5,
                    mode: SearchMode::Hybrid,
                    min_score: None,
                },
            )
            .await
            .unwrap();
        assert_eq!(
            found.hits.iter().map(|h| h.chunk_id).collect::<Vec<_>>(),
            [text_hit, near_hit]
        );
        assert_eq!(found.embedded_tokens, 3);
        assert!(!found.query_truncated);
    }

    #[test]
    fn full_text_reads_the_leading_words() {
        assert_eq!(leading_words("  a b  c "), ("  a b  c".into(), false));
        assert_eq!(leading_words("a b c"), ("a b c".into(), false));
        let long = "word ".repeat(100);
        let (cut, truncated) = leading_words(&long);
        assert!(truncated);
        assert_eq!(cut.split_whitespace().count(), FULLTEXT_MAX_WORDS);
        let one_word = "é".repeat(10_000);
        let (cut, truncated) = leading_words(&one_word);
        assert!(truncated);
        assert_eq!(cut.chars().count(), FULLTEXT_MAX_CHARS);
    }
}
