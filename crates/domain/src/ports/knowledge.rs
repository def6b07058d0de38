use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::entities::{Document, Job, JobKind};
use crate::ids::{ChunkId, CollectionId, DocumentId, GenerationId, JobId, TenantId};
use crate::page::{Page, PageRequest};
use crate::ports::StoreResult;
use crate::principal::Actor;

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait DocumentRepo: Send {
    /// Stores the document unless the collection already holds a live one with the same content
    /// hash; answers the stored document and whether it is new.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn insert_unless_present(
        &mut self,
        document: &crate::entities::NewDocument,
        now: DateTime<Utc>,
    ) -> StoreResult<(Document, bool)>;

    /// A live document, with its extracted text when `with_content`.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn get(&mut self, id: DocumentId, with_content: bool) -> StoreResult<Option<Document>>;

    /// A document with its text, deleted or not (a deleted one can be restored, so re-embedding
    /// covers it too).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn get_for_embedding(&mut self, id: DocumentId) -> StoreResult<Option<Document>>;

    /// Locks the document row against changes until the end of the unit of work; answers
    /// whether it still exists, has not failed and has this content (re-embedding writes chunks
    /// of a text only while that text is the document's).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn lock_unchanged(&mut self, id: DocumentId, content_hash: &[u8]) -> StoreResult<bool>;

    /// Replaces a live document's content (and title, type and metadata) and sets it pending;
    /// answers it as it is now with the byte count it had (read under the row's lock), or `None`
    /// when there is no live document with that id.
    ///
    /// # Errors
    /// [`crate::error::Conflict::DocumentExists`] when another live document of the collection
    /// has the new content.
    async fn replace_content(
        &mut self,
        id: DocumentId,
        replacement: &crate::entities::NewDocument,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(Document, i64)>>;

    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn list(
        &mut self,
        collection: CollectionId,
        include_deleted: bool,
        page: PageRequest,
    ) -> StoreResult<Page<Document>>;

    /// Soft-deletes a live document and answers it (its chunks leave search at once).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn soft_delete(
        &mut self,
        id: DocumentId,
        by: Actor,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Document>>;

    /// # Errors
    /// [`crate::error::Conflict::DocumentExists`] when the collection holds the same content again.
    async fn restore(
        &mut self,
        id: DocumentId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Document>>;

    /// Removes a document (live or deleted) with its chunks; answers it as it was.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn purge(&mut self, id: DocumentId) -> StoreResult<Option<Document>>;

    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn set_status(
        &mut self,
        id: DocumentId,
        status: crate::entities::DocumentStatus,
        error: Option<String>,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Adds to a collection's document and byte counts (negative to subtract).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn count_in_collection(
        &mut self,
        collection: CollectionId,
        documents: i64,
        bytes: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
}

/// A job to enqueue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewJob {
    pub id: JobId,
    pub kind: JobKind,
    pub collection_id: CollectionId,
    pub document_id: Option<DocumentId>,
    pub generation_id: Option<GenerationId>,
}

impl NewJob {
    /// The ingestion of a document's current text.
    #[must_use]
    pub fn ingest(collection_id: CollectionId, document_id: DocumentId) -> Self {
        Self {
            id: JobId::new(),
            kind: JobKind::Ingest,
            collection_id,
            document_id: Some(document_id),
            generation_id: None,
        }
    }
}

/// What a cancel request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It had not started: it is cancelled.
    Cancelled,
    /// It is running: its worker stops at its next heartbeat.
    Requested,
    /// It had already finished.
    AlreadyFinished,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait JobRepo: Send {
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn insert(&mut self, job: &NewJob, now: DateTime<Utc>) -> StoreResult<Job>;

    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn get(&mut self, id: JobId) -> StoreResult<Option<Job>>;

    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn list(&mut self, page: PageRequest) -> StoreResult<Page<Job>>;

    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn cancel(
        &mut self,
        id: JobId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(Job, CancelOutcome)>>;

    /// Asks every queued or running ingestion of the document to stop (its content was replaced).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn cancel_for_document(
        &mut self,
        document: DocumentId,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;

    /// Whether a queued or running ingestion of the document other than `except` exists.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn document_has_other(
        &mut self,
        document: DocumentId,
        except: JobId,
    ) -> StoreResult<bool>;

    /// Records progress and extends the lease, if `worker` still holds it. Answers whether the
    /// job should go on (false: the lease was lost, or cancellation was asked for).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn heartbeat(
        &mut self,
        id: JobId,
        worker: &str,
        progress: (i32, i32),
        lease: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// Ends a job `worker` holds: `Succeeded`, `Failed`, `Cancelled`, or back to `Queued` at
    /// `retry_at`. Answers false when the worker no longer holds it (nothing is changed then).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn finish(
        &mut self,
        id: JobId,
        worker: &str,
        outcome: JobOutcome,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
}

/// How a worker leaves a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    Succeeded,
    Failed(String),
    Cancelled,
    Retry { error: String, at: DateTime<Utc> },
}

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
    pub metadata: Value,
}

/// How search ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchMode {
    Vector,
    Fulltext,
    Hybrid,
}

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
    /// Present for vector and hybrid modes.
    pub vector: Option<Vec<f32>>,
    pub mode: SearchMode,
    pub top_k: u32,
    /// Metadata equality (`key: value`) or membership (`key: [values]`).
    pub filter: Vec<(String, Vec<Value>)>,
    pub min_score: Option<f32>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    pub chunk_id: ChunkId,
    pub document_id: DocumentId,
    pub document_title: String,
    pub position: u32,
    pub content: String,
    pub score: f32,
    /// `cosine_similarity`, `ts_rank` or `rrf`.
    pub score_kind: &'static str,
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
}

/// A job a worker has taken, with the lease it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedJob {
    pub tenant: TenantId,
    pub id: JobId,
    pub kind: JobKind,
    pub collection_id: CollectionId,
    pub document_id: Option<DocumentId>,
    pub generation_id: Option<GenerationId>,
    pub attempts: i32,
    pub max_attempts: i32,
}

/// The queue across tenants (platform role): claiming is the one step that must see every
/// tenant's jobs. Everything after runs in the job's tenant.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait JobQueue: Send + Sync {
    /// Takes a runnable job — queued and due, or running with an expired lease (its worker
    /// died) — and leases it to `worker` until `now + lease`. Tenants take turns: the job is the
    /// oldest of the tenant whose last claim is the oldest, among tenants with fewer than
    /// `max_running_per_tenant` jobs running, so no tenant's backlog delays another's work.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn claim(
        &self,
        worker: &str,
        lease: Duration,
        max_running_per_tenant: u32,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ClaimedJob>>;
}
