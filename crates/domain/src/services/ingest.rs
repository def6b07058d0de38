//! The ingestion worker: takes jobs from the durable queue and turns documents into searchable
//! chunks, or re-embeds a whole collection into a new generation. No transaction is held across a call to the embedder; a document's chunks become
//! visible in the same transaction that marks its job succeeded, so a failed or cancelled job
//! leaves nothing half-indexed.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::entities::{DocumentStatus, Generation, GenerationState, JobKind};
use crate::error::Error;
use crate::ids::{ChunkId, DocumentId};
use crate::ports::{
    ChunkTarget, Chunker, ClaimedJob, Clock, Embedder, JobOutcome, JobQueue, NewChunk, Store,
    TenantTx,
};
use crate::services::Embedders;
use crate::services::metering::embedding_record;

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
    /// Jobs of one tenant running at once, across every worker: the rest of the workers stay
    /// free for other tenants.
    pub max_running_per_tenant: u32,
}

impl Default for IngestPolicy {
    fn default() -> Self {
        Self {
            max_chunk_tokens: 254,
            overlap_tokens: 32,
            batch_size: 32,
            lease: Duration::from_secs(60),
            max_backoff: Duration::from_secs(300),
            max_running_per_tenant: 2,
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
            .claim(
                &self.worker_id,
                self.policy.lease,
                self.policy.max_running_per_tenant,
                self.clock.now(),
            )
            .await?
        else {
            return Ok(false);
        };
        let result = match job.kind {
            JobKind::Ingest => self.ingest(&job).await,
            JobKind::Reembed => self.reembed(&job).await,
        };
        let now = self.clock.now();
        let what = match job.kind {
            JobKind::Ingest => "ingestion",
            JobKind::Reembed => "re-embedding",
        };
        let (outcome, failure) = match result {
            Ok(()) => return Ok(true),
            Err(Stop::Interrupted) => (JobOutcome::Cancelled, Some(format!("{what} cancelled"))),
            Err(Stop::Transient(error)) if job.attempts < job.max_attempts => {
                let backoff = Duration::from_secs(
                    2u64.saturating_pow(u32::try_from(job.attempts).unwrap_or(16)),
                )
                .min(self.policy.max_backoff);
                let at = now + chrono::Duration::from_std(backoff).unwrap_or_default();
                (JobOutcome::Retry { error, at }, None)
            }
            Err(Stop::Transient(error) | Stop::Permanent(error)) => {
                (JobOutcome::Failed(error.clone()), Some(error))
            }
        };
        let mut tx = self.store.begin(job.tenant).await?;
        let mut held = tx
            .jobs()
            .finish(job.id, &self.worker_id, outcome, now)
            .await?;
        let mut failure = failure;
        if !held {
            // A retry is refused when cancellation was asked for meanwhile: end it as cancelled.
            held = tx
                .jobs()
                .finish(job.id, &self.worker_id, JobOutcome::Cancelled, now)
                .await?;
            failure = Some(format!("{what} cancelled"));
        }
        if held && let Some(error) = failure {
            match (job.kind, job.document_id, job.generation_id) {
                // A replaced document has a newer ingestion that decides its status.
                (JobKind::Ingest, Some(document), _)
                    if !tx.jobs().document_has_other(document, job.id).await? =>
                {
                    tx.documents()
                        .set_status(document, DocumentStatus::Failed, Some(error), now)
                        .await?;
                }
                // Nothing of a re-embedding that did not finish is kept.
                (JobKind::Reembed, _, Some(generation)) => {
                    tx.collections().drop_generation(generation).await?;
                }
                _ => {}
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn ingest(&self, job: &ClaimedJob) -> Result<(), Stop> {
        let document_id = job
            .document_id
            .ok_or_else(|| Stop::Permanent("an ingest job without a document".into()))?;
        let now = self.clock.now();
        let mut tx = self.begin(job).await?;
        let collection = tx
            .collections()
            .get(job.collection_id, true)
            .await
            .map_err(storage)?
            .ok_or_else(|| Stop::Permanent("the collection no longer exists".into()))?;
        let document = tx
            .documents()
            .get(document_id, true)
            .await
            .map_err(storage)?
            .ok_or(Stop::Interrupted)?;
        tx.documents()
            .set_status(document_id, DocumentStatus::Processing, None, now)
            .await
            .map_err(storage)?;
        tx.commit().await.map_err(storage)?;

        let text = document.content.clone().unwrap_or_default();
        let mut space_id = collection.space.id.clone();
        // A re-embedding may switch the collection to another space while this document is
        // embedded; its vectors would then be of the wrong space, so it is embedded again.
        for _ in 0..3 {
            let embedder = self.embedder(&space_id).await?;
            let chunks = self
                .embed_text(job, &space_id, embedder.as_ref(), &text, |done, total| {
                    (done, total)
                })
                .await?;

            // One transaction makes the chunks visible and ends the job; if this worker lost its
            // lease meanwhile, nothing of it is kept. The document row is locked before the
            // collection row, in the order every other writer takes them.
            let now = self.clock.now();
            let mut tx = self.begin(job).await?;
            tx.documents()
                .set_status(document_id, DocumentStatus::Ready, None, now)
                .await
                .map_err(storage)?;
            let active = tx
                .collections()
                .lock_active_generation(collection.id, false)
                .await
                .map_err(storage)?
                .ok_or_else(|| Stop::Permanent("the collection no longer exists".into()))?;
            if active.space_id != space_id {
                space_id = active.space_id;
                continue;
            }
            let target = ChunkTarget {
                collection: collection.id,
                document: document_id,
                generation: active.id,
                space_id: active.space_id,
                title: document.title.as_str().to_owned(),
                metadata: document.metadata.clone(),
            };
            tx.chunks()
                .replace(&target, &chunks)
                .await
                .map_err(storage)?;
            tx.chunks()
                .discard_building(collection.id, document_id)
                .await
                .map_err(storage)?;
            let held = tx
                .jobs()
                .finish(job.id, &self.worker_id, JobOutcome::Succeeded, now)
                .await
                .map_err(storage)?;
            if !held {
                return Err(Stop::Interrupted);
            }
            tx.commit().await.map_err(storage)?;
            return Ok(());
        }
        Err(Stop::Transient(
            "the collection kept switching embedding spaces".into(),
        ))
    }

    /// Builds a new generation of a collection from its documents' stored texts, then switches
    /// the collection to it in one transaction and drops the old one. Searches read the old
    /// generation until the switch. Progress counts documents.
    async fn reembed(&self, job: &ClaimedJob) -> Result<(), Stop> {
        let generation_id = job
            .generation_id
            .ok_or_else(|| Stop::Permanent("a re-embedding job without a generation".into()))?;
        let mut tx = self.begin(job).await?;
        let generation = tx
            .collections()
            .generation(generation_id)
            .await
            .map_err(storage)?
            .filter(|g| g.state == GenerationState::Building)
            .ok_or_else(|| Stop::Permanent("the generation is no longer being built".into()))?;
        tx.commit().await.map_err(storage)?;
        let embedder = self.embedder(&generation.space_id).await?;
        // Documents whose text yields no chunk at all: they stay without chunks, not missing.
        let mut empty: HashSet<(DocumentId, Vec<u8>)> = HashSet::new();
        let mut done = 0usize;
        loop {
            let mut tx = self.begin(job).await?;
            let todo = self.missing(tx.as_mut(), &generation, &empty).await?;
            if todo.is_empty() {
                // Documents added or replaced meanwhile are embedded before the switch: the
                // check is repeated under the collection's exclusive lock, which ingestion's
                // final transaction waits for.
                tx.collections()
                    .lock_active_generation(generation.collection_id, true)
                    .await
                    .map_err(storage)?
                    .ok_or_else(|| Stop::Permanent("the collection no longer exists".into()))?;
                if !self
                    .missing(tx.as_mut(), &generation, &empty)
                    .await?
                    .is_empty()
                {
                    continue;
                }
                let now = self.clock.now();
                let retired = tx
                    .collections()
                    .switch_generation(generation.collection_id, generation.id, now)
                    .await
                    .map_err(storage)?
                    .ok_or_else(|| {
                        Stop::Permanent("the generation is no longer being built".into())
                    })?;
                let held = tx
                    .jobs()
                    .finish(job.id, &self.worker_id, JobOutcome::Succeeded, now)
                    .await
                    .map_err(storage)?;
                if !held {
                    return Err(Stop::Interrupted);
                }
                tx.commit().await.map_err(storage)?;
                // Outside the switch, so the switch stays short; a retired generation is never
                // read, so one left behind by a crash here costs only space.
                let mut tx = self.begin(job).await?;
                tx.collections()
                    .drop_generation(retired)
                    .await
                    .map_err(storage)?;
                tx.commit().await.map_err(storage)?;
                return Ok(());
            }
            tx.commit().await.map_err(storage)?;
            let total = done + todo.len();
            for (document_id, _) in todo {
                let mut tx = self.begin(job).await?;
                let document = tx
                    .documents()
                    .get_for_embedding(document_id)
                    .await
                    .map_err(storage)?;
                tx.commit().await.map_err(storage)?;
                // Purged meanwhile: nothing to embed.
                let Some(document) = document else { continue };
                let text = document.content.clone().unwrap_or_default();
                let chunks = self
                    .embed_text(
                        job,
                        &generation.space_id,
                        embedder.as_ref(),
                        &text,
                        |_, _| (to_i32(done), to_i32(total)),
                    )
                    .await?;
                if chunks.is_empty() {
                    empty.insert((document.id, document.content_hash.clone()));
                }
                let target = ChunkTarget {
                    collection: generation.collection_id,
                    document: document.id,
                    generation: generation.id,
                    space_id: generation.space_id.clone(),
                    title: document.title.as_str().to_owned(),
                    metadata: document.metadata.clone(),
                };
                done += 1;
                let mut tx = self.begin(job).await?;
                // The text may have been replaced (or the document purged) while it was
                // embedded: then these chunks are not kept, and the new text is picked up by the
                // next round once it is ready.
                if tx
                    .documents()
                    .lock_unchanged(document.id, &document.content_hash)
                    .await
                    .map_err(storage)?
                {
                    tx.chunks()
                        .replace(&target, &chunks)
                        .await
                        .map_err(storage)?;
                }
                self.heartbeat(tx.as_mut(), job, (to_i32(done), to_i32(total)))
                    .await?;
                tx.commit().await.map_err(storage)?;
            }
        }
    }

    /// Documents (not failed) the generation has no chunks of, leaving out those known to yield
    /// none.
    async fn missing(
        &self,
        tx: &mut dyn TenantTx,
        generation: &Generation,
        empty: &HashSet<(DocumentId, Vec<u8>)>,
    ) -> Result<Vec<(DocumentId, Vec<u8>)>, Stop> {
        let mut found = tx
            .chunks()
            .documents_without_chunks(generation.collection_id, generation.id)
            .await
            .map_err(storage)?;
        found.retain(|d| !empty.contains(d));
        Ok(found)
    }

    /// Chunks and embeds a text in batches, with a heartbeat after each batch; `progress` maps
    /// (chunks embedded, chunks in all) to what the job reports.
    async fn embed_text(
        &self,
        job: &ClaimedJob,
        space_id: &str,
        embedder: &dyn Embedder,
        text: &str,
        progress: impl Fn(i32, i32) -> (i32, i32) + Send + Sync,
    ) -> Result<Vec<NewChunk>, Stop> {
        let max_tokens = self
            .policy
            .max_chunk_tokens
            .min(embedder.max_input_tokens());
        let pieces = self
            .chunker
            .chunk(
                text,
                embedder,
                max_tokens,
                self.policy.overlap_tokens.min(max_tokens / 2),
            )
            .map_err(|e| Stop::Permanent(e.to_string()))?;
        let total = to_i32(pieces.len());
        let mut chunks = Vec::with_capacity(pieces.len());
        for batch in pieces.chunks(self.policy.batch_size.max(1)) {
            let texts: Vec<String> = batch.iter().map(|c| c.content.clone()).collect();
            let vectors = embed(job, embedder, &texts).await?;
            for (piece, embedding) in batch.iter().zip(vectors) {
                chunks.push(NewChunk {
                    id: ChunkId::new(),
                    position: piece.position,
                    content: piece.content.clone(),
                    token_count: piece.token_count,
                    embedding,
                });
            }
            let mut tx = self.begin(job).await?;
            self.heartbeat(tx.as_mut(), job, progress(to_i32(chunks.len()), total))
                .await?;
            // Metered beside the batch's progress; ingestion does not count against the quota.
            let tokens: usize = batch.iter().map(|c| c.token_count).sum();
            let record = embedding_record(
                None,
                space_id,
                u32::try_from(tokens).unwrap_or(u32::MAX),
                false,
                self.clock.now(),
            );
            tx.usage()
                .record(std::slice::from_ref(&record), None)
                .await
                .map_err(storage)?;
            tx.commit().await.map_err(storage)?;
        }
        Ok(chunks)
    }

    /// Records progress and extends the lease; stops when cancellation was asked for or the
    /// lease was lost.
    async fn heartbeat(
        &self,
        tx: &mut dyn TenantTx,
        job: &ClaimedJob,
        progress: (i32, i32),
    ) -> Result<(), Stop> {
        let go_on = tx
            .jobs()
            .heartbeat(
                job.id,
                &self.worker_id,
                progress,
                self.policy.lease,
                self.clock.now(),
            )
            .await
            .map_err(storage)?;
        if go_on {
            Ok(())
        } else {
            Err(Stop::Interrupted)
        }
    }

    async fn begin(&self, job: &ClaimedJob) -> Result<Box<dyn TenantTx>, Stop> {
        self.store.begin(job.tenant).await.map_err(storage)
    }

    /// The space's embedder; one registered since this worker started is built now.
    async fn embedder(&self, space_id: &str) -> Result<Arc<dyn Embedder>, Stop> {
        if let Some(embedder) = self.embedders.get(space_id) {
            return Ok(embedder);
        }
        let spaces = self.store.spaces().await.map_err(storage)?;
        let space = spaces
            .iter()
            .find(|s| s.id == space_id)
            .ok_or_else(|| Stop::Permanent(format!("no embedding space {space_id}")))?;
        self.embedders.for_space(space).map_err(|reason| {
            tracing::warn!(space = space_id, %reason, "this server cannot embed in the space");
            Stop::Permanent(format!("this server cannot embed in space {space_id}"))
        })
    }
}

fn storage(err: impl Into<Error>) -> Stop {
    Stop::Transient(err.into().to_string())
}

fn to_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// Embeds a batch. A job's error is shown to its tenant, so it says what kind of failure this was
/// and nothing of the provider's own answer (which may carry URLs, bodies or keys' names): that
/// detail goes to the log, with the job's id.
async fn embed(
    job: &ClaimedJob,
    embedder: &dyn Embedder,
    texts: &[String],
) -> Result<Vec<Vec<f32>>, Stop> {
    use crate::ports::EmbedError;
    let failed = |detail: &dyn std::fmt::Display| {
        tracing::warn!(job = %job.id, tenant = %job.tenant, error = %detail, "embedding failed");
    };
    match embedder.embed(texts).await {
        Ok(vectors) if vectors.len() == texts.len() => Ok(vectors),
        Ok(vectors) => Err(Stop::Permanent(format!(
            "the embedder answered {} vectors for {} texts",
            vectors.len(),
            texts.len()
        ))),
        Err(e @ (EmbedError::Provider(_) | EmbedError::Internal(_))) => {
            failed(&e);
            Err(Stop::Transient(
                "the embedding provider failed; the job is retried".into(),
            ))
        }
        Err(e @ EmbedError::BadResponse(_)) => {
            failed(&e);
            Err(Stop::Permanent(
                "the embedding provider answered something unusable".into(),
            ))
        }
        Err(e @ EmbedError::TooLong { .. }) => Err(Stop::Permanent(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    //! The worker's decisions, with every port mocked: each test prepares the units of work the
    //! worker opens, in order, and a call nobody expected fails the test.

    use super::*;
    use crate::entities::{Collection, Document};
    use crate::ids::{CollectionId, GenerationId, JobId, TenantId};
    use crate::ports::{EmbedError, MockChunker, MockEmbedder, MockJobQueue, TextChunk};
    use crate::services::testing::{FakeTx, fixed_clock, minilm_space, now, store_with_all};
    use crate::values::{ContentType, Name};

    const OTHER_SPACE: &str = "openai-small";

    struct Fixture {
        job: ClaimedJob,
        collection: Collection,
        document: Document,
    }

    fn fixture(attempts: i32) -> Fixture {
        let tenant = TenantId::new();
        let collection_id = CollectionId::new();
        let document_id = DocumentId::new();
        Fixture {
            job: ClaimedJob {
                tenant,
                id: JobId::new(),
                kind: JobKind::Ingest,
                collection_id,
                document_id: Some(document_id),
                generation_id: None,
                attempts,
                max_attempts: 3,
            },
            collection: Collection {
                id: collection_id,
                tenant_id: tenant,
                name: Name::parse("Docs").unwrap(),
                description: String::new(),
                space: minilm_space(),
                active_generation: GenerationId::new(),
                chunk_count: 0,
                document_count: 1,
                byte_count: 11,
                last_active_at: None,
                created_at: now(),
                updated_at: now(),
                deleted_at: None,
                deleted_by: None,
            },
            document: Document {
                id: document_id,
                tenant_id: tenant,
                collection_id,
                title: Name::parse("Notes").unwrap(),
                content_type: ContentType::PlainText,
                metadata: serde_json::json!({}),
                content_hash: vec![1; 32],
                byte_count: 11,
                status: DocumentStatus::Pending,
                error: None,
                content: Some("Some notes.".into()),
                created_at: now(),
                updated_at: now(),
                deleted_at: None,
                deleted_by: None,
            },
        }
    }

    /// An embedder of 4 dimensions; `fails` makes every call a provider failure.
    fn embedder(fails: bool) -> Arc<dyn Embedder> {
        let mut embedder = MockEmbedder::new();
        embedder.expect_max_input_tokens().return_const(256usize);
        embedder.expect_dimensions().return_const(4usize);
        embedder.expect_embed().returning(move |texts| {
            if fails {
                Err(EmbedError::Provider("HTTP 503".into()))
            } else {
                Ok(vec![vec![0.5; 4]; texts.len()])
            }
        });
        Arc::new(embedder)
    }

    fn worker(f: &Fixture, txs: Vec<FakeTx>, embedders: Embedders) -> IngestWorker {
        let mut queue = MockJobQueue::new();
        let job = f.job.clone();
        queue
            .expect_claim()
            .times(1)
            .returning(move |_, _, _, _| Ok(Some(job.clone())));
        let mut chunker = MockChunker::new();
        chunker.expect_chunk().returning(|text, _, _, _| {
            Ok(vec![TextChunk {
                position: 0,
                content: text.to_owned(),
                token_count: 3,
            }])
        });
        IngestWorker::new(
            store_with_all(txs),
            Arc::new(queue),
            Arc::new(chunker),
            embedders,
            fixed_clock(),
            "worker-1",
            IngestPolicy::default(),
        )
    }

    fn embedders_of(spaces: &[(&str, Arc<dyn Embedder>)]) -> Embedders {
        let embedders = Embedders::new();
        for (space, embedder) in spaces {
            embedders.insert(*space, embedder.clone());
        }
        embedders
    }

    /// The first unit of work: the collection and the document are read, the document marked
    /// processing.
    fn opening(f: &Fixture) -> FakeTx {
        let mut tx = FakeTx::new(f.job.tenant);
        let collection = f.collection.clone();
        tx.collections
            .expect_get()
            .returning(move |_, _| Ok(Some(collection.clone())));
        let document = f.document.clone();
        tx.documents
            .expect_get()
            .returning(move |_, _| Ok(Some(document.clone())));
        tx.documents
            .expect_set_status()
            .withf(|_, status, _, _| *status == DocumentStatus::Processing)
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        tx
    }

    /// A heartbeat after a batch, answered `go_on` (and the batch's metering when it goes on).
    fn heartbeat(f: &Fixture, go_on: bool) -> FakeTx {
        let mut tx = FakeTx::new(f.job.tenant);
        tx.jobs
            .expect_heartbeat()
            .times(1)
            .returning(move |_, _, _, _, _| Ok(go_on));
        tx.usage
            .expect_record()
            .withf(|records, release| {
                records.len() == 1 && !records[0].counted && release.is_none()
            })
            .returning(|_, _| Ok(()));
        tx
    }

    /// The final unit of work of an embedding that found the collection in `space`.
    fn final_tx(f: &Fixture, space: &str, generation: GenerationId) -> FakeTx {
        let mut tx = FakeTx::new(f.job.tenant);
        tx.documents
            .expect_set_status()
            .withf(|_, status, _, _| *status == DocumentStatus::Ready)
            .returning(|_, _, _, _| Ok(()));
        let active = Generation {
            id: generation,
            collection_id: f.collection.id,
            space_id: space.to_owned(),
            state: GenerationState::Active,
        };
        tx.collections
            .expect_lock_active_generation()
            .times(1)
            .returning(move |_, _| Ok(Some(active.clone())));
        tx
    }

    #[tokio::test]
    async fn a_job_whose_lease_was_lost_keeps_nothing_and_touches_the_document_no_more() {
        let f = fixture(1);
        let mut ending = FakeTx::new(f.job.tenant);
        // Another worker holds the job now: neither ending is accepted, and the document is
        // left to that worker (no status is set: the mock refuses any call it was not told of).
        ending
            .jobs
            .expect_finish()
            .withf(|_, _, outcome, _| *outcome == JobOutcome::Cancelled)
            .times(2)
            .returning(|_, _, _, _| Ok(false));
        let txs = vec![opening(&f), heartbeat(&f, false), ending];
        let embedders = embedders_of(&[(minilm_space().id.as_str(), embedder(false))]);
        assert!(worker(&f, txs, embedders).run_once().await.unwrap());
    }

    #[tokio::test]
    async fn a_job_cancelled_mid_way_fails_its_document_and_stores_no_chunk() {
        let f = fixture(1);
        let mut ending = FakeTx::new(f.job.tenant);
        ending
            .jobs
            .expect_finish()
            .withf(|_, _, outcome, _| *outcome == JobOutcome::Cancelled)
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        ending
            .jobs
            .expect_document_has_other()
            .returning(|_, _| Ok(false));
        ending
            .documents
            .expect_set_status()
            .withf(|_, status, error, _| {
                *status == DocumentStatus::Failed && error.as_deref() == Some("ingestion cancelled")
            })
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        let txs = vec![opening(&f), heartbeat(&f, false), ending];
        let embedders = embedders_of(&[(minilm_space().id.as_str(), embedder(false))]);
        assert!(worker(&f, txs, embedders).run_once().await.unwrap());
    }

    #[tokio::test]
    async fn a_provider_failure_is_retried_later_and_backs_off_with_each_attempt() {
        for (attempts, wait) in [(1, 2), (2, 4)] {
            let f = fixture(attempts);
            let mut ending = FakeTx::new(f.job.tenant);
            let at = now() + chrono::Duration::seconds(wait);
            ending
                .jobs
                .expect_finish()
                .withf(move |_, _, outcome, _| {
                    matches!(outcome, JobOutcome::Retry { at: when, .. } if *when == at)
                })
                .times(1)
                .returning(|_, _, _, _| Ok(true));
            let txs = vec![opening(&f), ending];
            let embedders = embedders_of(&[(minilm_space().id.as_str(), embedder(true))]);
            assert!(worker(&f, txs, embedders).run_once().await.unwrap());
        }
    }

    #[tokio::test]
    async fn the_last_attempt_fails_the_job_and_its_document() {
        let f = fixture(3);
        let mut ending = FakeTx::new(f.job.tenant);
        ending
            .jobs
            .expect_finish()
            .withf(|_, _, outcome, _| matches!(outcome, JobOutcome::Failed(_)))
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        ending
            .jobs
            .expect_document_has_other()
            .returning(|_, _| Ok(false));
        ending
            .documents
            .expect_set_status()
            .withf(|_, status, _, _| *status == DocumentStatus::Failed)
            .times(1)
            .returning(|_, _, _, _| Ok(()));
        let txs = vec![opening(&f), ending];
        let embedders = embedders_of(&[(minilm_space().id.as_str(), embedder(true))]);
        assert!(worker(&f, txs, embedders).run_once().await.unwrap());
    }

    #[tokio::test]
    async fn a_switch_of_space_mid_way_embeds_again_in_the_new_space() {
        let f = fixture(1);
        let generation = GenerationId::new();
        // The collection was re-embedded into another space while the document was embedded:
        // its chunks are embedded again and stored in the new space's generation only.
        let switched = final_tx(&f, OTHER_SPACE, generation);
        let mut stored = final_tx(&f, OTHER_SPACE, generation);
        stored
            .chunks
            .expect_replace()
            .withf(move |target, chunks| {
                target.space_id == OTHER_SPACE
                    && target.generation == generation
                    && chunks.len() == 1
            })
            .times(1)
            .returning(|_, _| Ok(()));
        stored
            .chunks
            .expect_discard_building()
            .returning(|_, _| Ok(()));
        stored
            .jobs
            .expect_finish()
            .withf(|_, _, outcome, _| *outcome == JobOutcome::Succeeded)
            .times(1)
            .returning(|_, _, _, _| Ok(true));
        let txs = vec![
            opening(&f),
            heartbeat(&f, true),
            switched,
            heartbeat(&f, true),
            stored,
        ];
        let embedders = embedders_of(&[
            (minilm_space().id.as_str(), embedder(false)),
            (OTHER_SPACE, embedder(false)),
        ]);
        assert!(worker(&f, txs, embedders).run_once().await.unwrap());
    }
}
