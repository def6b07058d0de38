//! Chunks: writing them into a generation, and searching them.

use async_trait::async_trait;
use serde_json::Value;

use crate::ids::{ChunkId, CollectionId, DocumentId, GenerationId};
use crate::ports::StoreResult;

/// A chunk with its vector, ready to store.
#[derive(Clone, Debug, PartialEq)]
pub struct NewChunk {
    pub id: ChunkId,
    pub position: u32,
    pub content: String,
    pub token_count: usize,
    pub embedding: Vec<f32>,
}

/// Where a document's chunks go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkTarget {
    pub collection: CollectionId,
    pub document: DocumentId,
    pub generation: GenerationId,
    pub space_id: String,
    /// The document's title, which full text reads with each chunk.
    pub title: String,
    pub metadata: Value,
}

/// How search ranks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SearchMode {
    Vector,
    Fulltext,
    #[default]
    Hybrid,
}

/// What a hit's score measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreKind {
    CosineSimilarity,
    /// Okapi BM25 over the generation's chunks (k1 = 1.2, b = 0.75), plus half the BM25 of the
    /// chunk's document (its matching chunks together, its own length).
    Bm25,
    /// Hybrid search: w · cosine + (1 − w) · BM25, each scaled to 0..1 within its own list
    /// (w is the request's `hybrid_weight`).
    WeightedSum,
    /// Reciprocal rank fusion: Σ 1/([`RRF_K`] + rank) over the lists a chunk appears in (searches
    /// over collections of different spaces, whose scores do not compare).
    Rrf,
}

impl ScoreKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::CosineSimilarity => "cosine_similarity",
            Self::Bm25 => "bm25",
            Self::WeightedSum => "weighted_sum",
            Self::Rrf => "rrf",
        }
    }
}

/// Reciprocal rank fusion's constant: how much a top rank outweighs the next (60, as in Cormack et
/// al.), used to fuse the lists of collections in different spaces.
pub const RRF_K: u16 = 60;

/// One search in one collection's active generation.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchQuery {
    pub collection: CollectionId,
    pub generation: GenerationId,
    pub space_id: String,
    pub dimensions: u32,
    /// Chunks in the generation, as the collection counts them (chooses exact or HNSW search).
    pub chunk_count: i64,
    pub text: String,
    /// Present for vector mode, and for [`ChunkRepo::vector_scores`].
    pub vector: Option<Vec<f32>>,
    pub mode: SearchMode,
    pub top_k: u32,
    /// Metadata equality (`key: value`) or membership (`key: [values]`).
    pub filter: Vec<(String, Vec<Value>)>,
    pub min_score: Option<f32>,
    /// Hybrid mode: the vector list's weight in the fusion, 0..=1 (the full-text list gets the
    /// rest).
    pub hybrid_weight: f32,
    /// Hybrid mode: the nearest chunks (chunk and cosine similarity, [`hybrid_depth`] deep),
    /// found beforehand by [`ChunkRepo::vector_scores`].
    pub vector_hits: Vec<(ChunkId, f32)>,
    /// Hybrid mode: the full-text list to fuse with the nearest chunks (chunk and BM25 score,
    /// [`hybrid_depth`] deep), found beforehand by [`ChunkRepo::fulltext_scores`] while the query
    /// was being embedded and its nearest chunks found.
    pub text_hits: Vec<(ChunkId, f32)>,
}

/// How deep each list of a hybrid search goes: a few times the answer, so that fusion has
/// something to choose from.
#[must_use]
pub const fn hybrid_depth(top_k: u32) -> u32 {
    let deeper = top_k.saturating_mul(4);
    if deeper > 40 { deeper } else { 40 }
}

#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    pub chunk_id: ChunkId,
    pub collection_id: CollectionId,
    pub document_id: DocumentId,
    pub document_title: String,
    pub position: u32,
    pub content: String,
    pub score: f32,
    pub score_kind: ScoreKind,
    pub metadata: Value,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ChunkRepo: Send {
    /// Stores a document's chunks (replacing any it had in that generation).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn replace(&mut self, target: &ChunkTarget, chunks: &[NewChunk]) -> StoreResult<()>;

    /// Removes the document's chunks from the collection's building generations (its content
    /// changed, so a re-embedding in progress must embed it again).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn discard_building(
        &mut self,
        collection: CollectionId,
        document: DocumentId,
    ) -> StoreResult<()>;

    /// Documents of the collection (deleted ones too) that have not failed (ready, or with an
    /// ingestion under way: a replaced text must not drop out at the switch) and have no chunks
    /// in the generation, with their content hashes; oldest first.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn documents_without_chunks(
        &mut self,
        collection: CollectionId,
        generation: GenerationId,
    ) -> StoreResult<Vec<(DocumentId, Vec<u8>)>>;

    /// The best chunks of live documents for the query, best first.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn search(&mut self, query: &SearchQuery) -> StoreResult<Vec<SearchHit>>;

    /// The full-text half of a hybrid search: the best chunks of live documents for
    /// `query.text` (at most `query.top_k`), as chunk ids with their BM25 scores and without
    /// their text, best first.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn fulltext_scores(&mut self, query: &SearchQuery) -> StoreResult<Vec<(ChunkId, f32)>>;

    /// The vector half of a hybrid search: the chunks of live documents nearest to
    /// `query.vector` (at most `query.top_k`, metadata filter applied), as chunk ids with their
    /// cosine similarities and without their text, best first.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn vector_scores(&mut self, query: &SearchQuery) -> StoreResult<Vec<(ChunkId, f32)>>;
}
