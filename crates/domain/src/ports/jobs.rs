//! Ingestion and re-embedding jobs, and the queue workers claim them from.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::entities::{Job, JobKind};
use crate::ids::{CollectionId, DocumentId, GenerationId, JobId, TenantId};
use crate::page::{Page, PageRequest};
use crate::ports::StoreResult;

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
