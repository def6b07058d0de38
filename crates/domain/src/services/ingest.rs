//! The ingestion worker: takes jobs from the durable queue and turns documents into searchable
//! chunks. No transaction is held across a call to the embedder; a document's chunks become
//! visible in the same transaction that marks its job succeeded, so a failed or cancelled job
//! leaves nothing half-indexed.

use std::sync::Arc;
use std::time::Duration;

use crate::entities::{DocumentStatus, JobKind};
use crate::error::Error;
use crate::ids::ChunkId;
use crate::ports::{
    ChunkTarget, Chunker, ClaimedJob, Clock, Embedder, JobOutcome, JobQueue, NewChunk, Store,
};
use crate::services::Embedders;

/// How the worker chunks, batches and leases.
#[derive(Clone, Debug)]
pub struct IngestPolicy {
    /// Upper bound on a chunk, in the embedder's tokens (also bounded by the model's window).
    pub max_chunk_tokens: usize,
    pub overlap_tokens: usize,
    /// Texts per embedding call; progress is reported after each.
    pub batch_size: usize,
    /// How long a claimed job stays this worker's without a heartbeat.
    pub lease: Duration,
    /// Longest wait before a failed attempt is retried.
    pub max_backoff: Duration,
}

impl Default for IngestPolicy {
    fn default() -> Self {
        Self {
            max_chunk_tokens: 254,
            overlap_tokens: 32,
            batch_size: 32,
            lease: Duration::from_secs(60),
            max_backoff: Duration::from_secs(300),
        }
    }
}

/// Why an attempt ended early.
enum Stop {
    /// Cancellation was asked for, or another worker took the job over.
    Interrupted,
    /// Worth another attempt (the embedding provider failed, say).
    Transient(String),
    /// Will fail again however often it is tried.
    Permanent(String),
}

pub struct IngestWorker {
    store: Arc<dyn Store>,
    queue: Arc<dyn JobQueue>,
    chunker: Arc<dyn Chunker>,
    embedders: Embedders,
    clock: Arc<dyn Clock>,
    worker_id: String,
    policy: IngestPolicy,
}

impl IngestWorker {
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn JobQueue>,
        chunker: Arc<dyn Chunker>,
        embedders: Embedders,
        clock: Arc<dyn Clock>,
        worker_id: impl Into<String>,
        policy: IngestPolicy,
    ) -> Self {
        Self {
            store,
            queue,
            chunker,
            embedders,
            clock,
            worker_id: worker_id.into(),
            policy,
        }
    }

    /// Takes one runnable job and works it to its end. Answers whether there was one.
    ///
    /// # Errors
    /// Storage failures while claiming or recording the outcome (the lease then expires and
    /// another attempt takes the job up).
    pub async fn run_once(&self) -> Result<bool, Error> {
        let Some(job) = self
            .queue
            .claim(&self.worker_id, self.policy.lease, self.clock.now())
            .await?
        else {
            return Ok(false);
        };
        let result = match job.kind {
            JobKind::Ingest => self.ingest(&job).await,
            JobKind::Reembed => Err(Stop::Permanent(
                "re-embedding is not implemented yet".into(),
            )),
        };
        let now = self.clock.now();
        let (outcome, status) = match result {
            Ok(()) => return Ok(true),
            Err(Stop::Interrupted) => (
                JobOutcome::Cancelled,
                Some((DocumentStatus::Failed, "ingestion cancelled".to_owned())),
            ),
            Err(Stop::Transient(error)) if job.attempts < job.max_attempts => {
                let backoff = Duration::from_secs(
                    2u64.saturating_pow(u32::try_from(job.attempts).unwrap_or(16)),
                )
                .min(self.policy.max_backoff);
                let at = now + chrono::Duration::from_std(backoff).unwrap_or_default();
                (JobOutcome::Retry { error, at }, None)
            }
            Err(Stop::Transient(error) | Stop::Permanent(error)) => (
                JobOutcome::Failed(error.clone()),
                Some((DocumentStatus::Failed, error)),
            ),
        };
        let mut tx = self.store.begin(job.tenant).await?;
        let mut held = tx
            .jobs()
            .finish(job.id, &self.worker_id, outcome, now)
            .await?;
        let mut status = status;
        if !held {
            // A retry is refused when cancellation was asked for meanwhile: end it as cancelled.
            held = tx
                .jobs()
                .finish(job.id, &self.worker_id, JobOutcome::Cancelled, now)
                .await?;
            status = Some((DocumentStatus::Failed, "ingestion cancelled".to_owned()));
        }
        if held && let (Some((status, error)), Some(document)) = (status, job.document_id) {
            tx.documents()
                .set_status(document, status, Some(error), now)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn ingest(&self, job: &ClaimedJob) -> Result<(), Stop> {
        let storage = |e: Error| Stop::Transient(e.to_string());
        let document_id = job
            .document_id
            .ok_or_else(|| Stop::Permanent("an ingest job without a document".into()))?;
        let now = self.clock.now();
        let mut tx = self
            .store
            .begin(job.tenant)
            .await
            .map_err(|e| storage(e.into()))?;
        let collection = tx
            .collections()
            .get(job.collection_id, true)
            .await
            .map_err(|e| storage(e.into()))?
            .ok_or_else(|| Stop::Permanent("the collection no longer exists".into()))?;
        let document = tx
            .documents()
            .get(document_id, true)
            .await
            .map_err(|e| storage(e.into()))?
            .ok_or(Stop::Interrupted)?;
        tx.documents()
            .set_status(document_id, DocumentStatus::Processing, None, now)
            .await
            .map_err(|e| storage(e.into()))?;
        tx.commit().await.map_err(|e| storage(e.into()))?;

        let embedder = self.embedders.get(&collection.space.id).ok_or_else(|| {
            Stop::Permanent(format!(
                "this server has no embedder for space {}",
                collection.space.id
            ))
        })?;
        let text = document.content.unwrap_or_default();
        let max_tokens = self
            .policy
            .max_chunk_tokens
            .min(embedder.max_input_tokens());
        let pieces = self
            .chunker
            .chunk(
                &text,
                embedder.as_ref(),
                max_tokens,
                self.policy.overlap_tokens.min(max_tokens / 2),
            )
            .map_err(|e| Stop::Permanent(e.to_string()))?;
        let total = i32::try_from(pieces.len()).unwrap_or(i32::MAX);
        let mut chunks = Vec::with_capacity(pieces.len());
        for batch in pieces.chunks(self.policy.batch_size.max(1)) {
            let texts: Vec<String> = batch.iter().map(|c| c.content.clone()).collect();
            let vectors = embed(embedder.as_ref(), &texts).await?;
            for (piece, embedding) in batch.iter().zip(vectors) {
                chunks.push(NewChunk {
                    id: ChunkId::new(),
                    position: piece.position,
                    content: piece.content.clone(),
                    token_count: piece.token_count,
                    embedding,
                });
            }
            let done = i32::try_from(chunks.len()).unwrap_or(i32::MAX);
            let mut tx = self
                .store
                .begin(job.tenant)
                .await
                .map_err(|e| storage(e.into()))?;
            let go_on = tx
                .jobs()
                .heartbeat(
                    job.id,
                    &self.worker_id,
                    (done, total),
                    self.policy.lease,
                    self.clock.now(),
                )
                .await
                .map_err(|e| storage(e.into()))?;
            tx.commit().await.map_err(|e| storage(e.into()))?;
            if !go_on {
                return Err(Stop::Interrupted);
            }
        }

        // One transaction makes the chunks visible and ends the job; if this worker lost its
        // lease meanwhile, nothing of it is kept.
        let now = self.clock.now();
        let target = ChunkTarget {
            collection: collection.id,
            document: document_id,
            generation: collection.active_generation,
            space_id: collection.space.id.clone(),
            metadata: document.metadata.clone(),
        };
        let mut tx = self
            .store
            .begin(job.tenant)
            .await
            .map_err(|e| storage(e.into()))?;
        tx.chunks()
            .replace(&target, &chunks)
            .await
            .map_err(|e| storage(e.into()))?;
        tx.documents()
            .set_status(document_id, DocumentStatus::Ready, None, now)
            .await
            .map_err(|e| storage(e.into()))?;
        let held = tx
            .jobs()
            .finish(job.id, &self.worker_id, JobOutcome::Succeeded, now)
            .await
            .map_err(|e| storage(e.into()))?;
        if !held {
            return Err(Stop::Interrupted);
        }
        tx.commit().await.map_err(|e| storage(e.into()))?;
        Ok(())
    }
}

async fn embed(embedder: &dyn Embedder, texts: &[String]) -> Result<Vec<Vec<f32>>, Stop> {
    use crate::ports::EmbedError;
    match embedder.embed(texts).await {
        Ok(vectors) if vectors.len() == texts.len() => Ok(vectors),
        Ok(vectors) => Err(Stop::Permanent(format!(
            "the embedder answered {} vectors for {} texts",
            vectors.len(),
            texts.len()
        ))),
        Err(e @ (EmbedError::Provider(_) | EmbedError::Internal(_))) => {
            Err(Stop::Transient(e.to_string()))
        }
        Err(e @ (EmbedError::TooLong { .. } | EmbedError::BadResponse(_))) => {
            Err(Stop::Permanent(e.to_string()))
        }
    }
}
