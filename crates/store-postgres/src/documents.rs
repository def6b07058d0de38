//! Documents, jobs and chunks, within a tenant unit of work.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::entities::{Document, DocumentStatus, Job, JobKind, JobState, NewDocument};
use domain::page::{Page, PageRequest};
use domain::ports::{
    CancelOutcome, ChunkRepo, ChunkTarget, ContentType, DocumentRepo, JobOutcome, JobRepo,
    NewChunk, NewJob, SearchHit, SearchMode, SearchQuery, StoreError, StoreResult,
};
use domain::values::Name;
use domain::{Actor, ChunkId, CollectionId, DocumentId, GenerationId, JobId, TenantId};
use sea_orm::prelude::PgVector;
use sea_orm::{FromQueryResult, Value};
use uuid::Uuid;

use crate::error::corrupt;
use crate::spaces::USABLE_INDEXES;
use crate::tenant_tx::{PgTx, execute, fetch_all, fetch_one, limit};

const DOCUMENT_COLUMNS: &str = "tenant_id, id, collection_id, title, content_type, metadata, \
     content_hash, byte_count, status, error, created_at, updated_at, deleted_at, deleted_by";

#[derive(Debug, FromQueryResult)]
struct DocumentRow {
    tenant_id: Uuid,
    id: Uuid,
    collection_id: Uuid,
    title: String,
    content_type: String,
    metadata: serde_json::Value,
    content_hash: Vec<u8>,
    byte_count: i64,
    status: String,
    error: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
    deleted_by: Option<Uuid>,
    content: Option<String>,
}

impl TryFrom<DocumentRow> for Document {
    type Error = StoreError;
    fn try_from(r: DocumentRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: DocumentId::from_uuid(r.id),
            tenant_id: TenantId::from_uuid(r.tenant_id),
            collection_id: CollectionId::from_uuid(r.collection_id),
            title: Name::parse(&r.title).map_err(|e| corrupt("document", e))?,
            content_type: ContentType::from_mime(&r.content_type)
                .ok_or_else(|| corrupt("document", r.content_type.clone()))?,
            metadata: r.metadata,
            content_hash: r.content_hash,
            byte_count: r.byte_count,
            status: DocumentStatus::parse(&r.status).map_err(|e| corrupt("document", e))?,
            error: r.error,
            content: r.content,
            created_at: r.created_at,
            updated_at: r.updated_at,
            deleted_at: r.deleted_at,
            deleted_by: r.deleted_by,
        })
    }
}

fn document(row: Option<DocumentRow>) -> StoreResult<Option<Document>> {
    row.map(Document::try_from).transpose()
}

#[async_trait]
impl DocumentRepo for PgTx {
    async fn insert_unless_present(
        &mut self,
        new: &NewDocument,
        now: DateTime<Utc>,
    ) -> StoreResult<(Document, bool)> {
        let sql = format!(
            "INSERT INTO documents (tenant_id, id, collection_id, title, content_type, metadata, content,
                                    content_hash, byte_count, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $10)
             ON CONFLICT (tenant_id, collection_id, content_hash) WHERE deleted_at IS NULL DO NOTHING
             RETURNING {DOCUMENT_COLUMNS}, NULL::text AS content"
        );
        let values = vec![
            self.t(),
            new.id.as_uuid().into(),
            new.collection_id.as_uuid().into(),
            new.title.as_str().into(),
            new.content_type.mime().into(),
            new.metadata.clone().into(),
            new.content.as_str().into(),
            new.content_hash.clone().into(),
            new.byte_count.into(),
            now.into(),
        ];
        if let Some(row) = fetch_one::<DocumentRow>(&self.tx, &sql, values).await? {
            return Ok((row.try_into()?, true));
        }
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS}, NULL::text AS content FROM documents
             WHERE tenant_id = $1 AND collection_id = $2 AND content_hash = $3 AND deleted_at IS NULL"
        );
        let existing = fetch_one::<DocumentRow>(
            &self.tx,
            &sql,
            vec![
                self.t(),
                new.collection_id.as_uuid().into(),
                new.content_hash.clone().into(),
            ],
        )
        .await?
        .ok_or_else(|| corrupt("document", "conflicting document vanished".into()))?;
        Ok((existing.try_into()?, false))
    }

    async fn get(&mut self, id: DocumentId, with_content: bool) -> StoreResult<Option<Document>> {
        let content = if with_content {
            "content"
        } else {
            "NULL::text AS content"
        };
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS}, {content} FROM documents
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL"
        );
        document(fetch_one(&self.tx, &sql, vec![self.t(), id.as_uuid().into()]).await?)
    }

    async fn get_for_embedding(&mut self, id: DocumentId) -> StoreResult<Option<Document>> {
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS}, content FROM documents WHERE tenant_id = $1 AND id = $2"
        );
        document(fetch_one(&self.tx, &sql, vec![self.t(), id.as_uuid().into()]).await?)
    }

    async fn lock_unchanged(&mut self, id: DocumentId, content_hash: &[u8]) -> StoreResult<bool> {
        #[derive(FromQueryResult)]
        struct Row {
            unchanged: bool,
        }
        let row = fetch_one::<Row>(
            &self.tx,
            "SELECT status <> 'failed' AND content_hash = $3 AS unchanged FROM documents
             WHERE tenant_id = $1 AND id = $2 FOR SHARE",
            vec![self.t(), id.as_uuid().into(), content_hash.to_vec().into()],
        )
        .await?;
        Ok(row.is_some_and(|r| r.unchanged))
    }

    async fn replace_content(
        &mut self,
        id: DocumentId,
        new: &NewDocument,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(Document, i64)>> {
        #[derive(FromQueryResult)]
        struct Previous {
            byte_count: i64,
        }
        // The previous size under the row's lock, so concurrent replacements each adjust the
        // collection's byte count from what they replaced.
        let Some(previous) = fetch_one::<Previous>(
            &self.tx,
            "SELECT byte_count FROM documents
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL FOR UPDATE",
            vec![self.t(), id.as_uuid().into()],
        )
        .await?
        else {
            return Ok(None);
        };
        // Another live document with this content makes this a unique violation, mapped to
        // `Conflict::DocumentExists`.
        let sql = format!(
            "UPDATE documents SET title = $3, content_type = $4, metadata = $5, content = $6,
                                  content_hash = $7, byte_count = $8, status = 'pending',
                                  error = NULL, updated_at = $9
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
             RETURNING {DOCUMENT_COLUMNS}, NULL::text AS content"
        );
        let values = vec![
            self.t(),
            id.as_uuid().into(),
            new.title.as_str().into(),
            new.content_type.mime().into(),
            new.metadata.clone().into(),
            new.content.as_str().into(),
            new.content_hash.clone().into(),
            new.byte_count.into(),
            now.into(),
        ];
        Ok(document(fetch_one(&self.tx, &sql, values).await?)?.map(|d| (d, previous.byte_count)))
    }

    async fn list(
        &mut self,
        collection: CollectionId,
        include_deleted: bool,
        page: PageRequest,
    ) -> StoreResult<Page<Document>> {
        let sql = format!(
            "SELECT {DOCUMENT_COLUMNS}, NULL::text AS content FROM documents
             WHERE tenant_id = $1 AND collection_id = $2 AND ($3 OR deleted_at IS NULL)
               AND ($4::uuid IS NULL OR id < $4)
             ORDER BY id DESC LIMIT $5"
        );
        let rows = fetch_all::<DocumentRow>(
            &self.tx,
            &sql,
            vec![
                self.t(),
                collection.as_uuid().into(),
                include_deleted.into(),
                page.after.into(),
                limit(page),
            ],
        )
        .await?;
        let docs = rows
            .into_iter()
            .map(Document::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(docs, page, |d: &Document| d.id.as_uuid()))
    }

    async fn soft_delete(
        &mut self,
        id: DocumentId,
        by: Actor,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Document>> {
        let sql = format!(
            "UPDATE documents SET deleted_at = $3, deleted_by = $4, updated_at = $3
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
             RETURNING {DOCUMENT_COLUMNS}, NULL::text AS content"
        );
        document(
            fetch_one(
                &self.tx,
                &sql,
                vec![self.t(), id.as_uuid().into(), now.into(), by.id().into()],
            )
            .await?,
        )
    }

    async fn restore(
        &mut self,
        id: DocumentId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Document>> {
        let sql = format!(
            "UPDATE documents SET deleted_at = NULL, deleted_by = NULL, updated_at = $3
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NOT NULL
             RETURNING {DOCUMENT_COLUMNS}, NULL::text AS content"
        );
        // A live document with the same content makes this a unique violation, mapped to
        // `Conflict::DocumentExists`.
        document(
            fetch_one(
                &self.tx,
                &sql,
                vec![self.t(), id.as_uuid().into(), now.into()],
            )
            .await?,
        )
    }

    async fn purge(&mut self, id: DocumentId) -> StoreResult<Option<Document>> {
        let sql = format!(
            "DELETE FROM documents WHERE tenant_id = $1 AND id = $2
             RETURNING {DOCUMENT_COLUMNS}, NULL::text AS content"
        );
        document(fetch_one(&self.tx, &sql, vec![self.t(), id.as_uuid().into()]).await?)
    }

    async fn set_status(
        &mut self,
        id: DocumentId,
        status: DocumentStatus,
        error: Option<String>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        execute(
            &self.tx,
            "UPDATE documents SET status = $3, error = $4, updated_at = $5 WHERE tenant_id = $1 AND id = $2",
            vec![self.t(), id.as_uuid().into(), status.as_str().into(), error.into(), now.into()],
        )
        .await?;
        Ok(())
    }

    async fn count_in_collection(
        &mut self,
        collection: CollectionId,
        documents: i64,
        bytes: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        execute(
            &self.tx,
            "UPDATE collections SET document_count = GREATEST(document_count + $3, 0),
                                    byte_count = GREATEST(byte_count + $4, 0),
                                    last_active_at = $5
             WHERE tenant_id = $1 AND id = $2",
            vec![
                self.t(),
                collection.as_uuid().into(),
                documents.into(),
                bytes.into(),
                now.into(),
            ],
        )
        .await?;
        Ok(())
    }
}

const JOB_COLUMNS: &str = "tenant_id, id, kind, state, collection_id, document_id, generation_id, \
     progress_done, progress_total, error, attempts, created_at, updated_at";

#[derive(Debug, FromQueryResult)]
pub(crate) struct JobRow {
    tenant_id: Uuid,
    id: Uuid,
    kind: String,
    state: String,
    collection_id: Uuid,
    document_id: Option<Uuid>,
    generation_id: Option<Uuid>,
    progress_done: i32,
    progress_total: i32,
    error: Option<String>,
    attempts: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;
    fn try_from(r: JobRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: JobId::from_uuid(r.id),
            tenant_id: TenantId::from_uuid(r.tenant_id),
            kind: JobKind::parse(&r.kind).map_err(|e| corrupt("job", e))?,
            state: JobState::parse(&r.state).map_err(|e| corrupt("job", e))?,
            collection_id: CollectionId::from_uuid(r.collection_id),
            document_id: r.document_id.map(DocumentId::from_uuid),
            generation_id: r.generation_id.map(GenerationId::from_uuid),
            progress_done: r.progress_done,
            progress_total: r.progress_total,
            error: r.error,
            attempts: r.attempts,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

fn lease_interval(lease: Duration) -> Value {
    i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).into()
}

#[async_trait]
impl JobRepo for PgTx {
    async fn insert(&mut self, job: &NewJob, now: DateTime<Utc>) -> StoreResult<Job> {
        let sql = format!(
            "INSERT INTO jobs (tenant_id, id, kind, state, collection_id, document_id, generation_id,
                               run_at, created_at, updated_at)
             VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $7, $7) RETURNING {JOB_COLUMNS}"
        );
        let values = vec![
            self.t(),
            job.id.as_uuid().into(),
            job.kind.as_str().into(),
            job.collection_id.as_uuid().into(),
            job.document_id.map(|d| d.as_uuid()).into(),
            job.generation_id.map(|g| g.as_uuid()).into(),
            now.into(),
        ];
        fetch_one::<JobRow>(&self.tx, &sql, values)
            .await?
            .ok_or_else(|| corrupt("job", "insert returned nothing".into()))?
            .try_into()
    }

    async fn get(&mut self, id: JobId) -> StoreResult<Option<Job>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = $1 AND id = $2");
        fetch_one::<JobRow>(&self.tx, &sql, vec![self.t(), id.as_uuid().into()])
            .await?
            .map(Job::try_from)
            .transpose()
    }

    async fn list(&mut self, page: PageRequest) -> StoreResult<Page<Job>> {
        let sql = format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3"
        );
        let rows = fetch_all::<JobRow>(
            &self.tx,
            &sql,
            vec![self.t(), page.after.into(), limit(page)],
        )
        .await?;
        let jobs = rows
            .into_iter()
            .map(Job::try_from)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Page::from_rows(jobs, page, |j: &Job| j.id.as_uuid()))
    }

    async fn cancel(
        &mut self,
        id: JobId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(Job, CancelOutcome)>> {
        // Lock the row so a worker's claim or finish cannot interleave with the decision.
        let sql =
            format!("SELECT {JOB_COLUMNS} FROM jobs WHERE tenant_id = $1 AND id = $2 FOR UPDATE");
        let Some(job) =
            fetch_one::<JobRow>(&self.tx, &sql, vec![self.t(), id.as_uuid().into()]).await?
        else {
            return Ok(None);
        };
        let job: Job = job.try_into()?;
        let (set, outcome) = match job.state {
            JobState::Queued => (
                "state = 'cancelled', locked_until = NULL, locked_by = NULL",
                CancelOutcome::Cancelled,
            ),
            JobState::Running => ("cancel_requested = true", CancelOutcome::Requested),
            JobState::Succeeded | JobState::Failed | JobState::Cancelled => {
                return Ok(Some((job, CancelOutcome::AlreadyFinished)));
            }
        };
        let sql = format!(
            "UPDATE jobs SET {set}, updated_at = $3 WHERE tenant_id = $1 AND id = $2 RETURNING {JOB_COLUMNS}"
        );
        let job = fetch_one::<JobRow>(
            &self.tx,
            &sql,
            vec![self.t(), id.as_uuid().into(), now.into()],
        )
        .await?
        .ok_or_else(|| corrupt("job", "locked job vanished".into()))?
        .try_into()?;
        Ok(Some((job, outcome)))
    }

    async fn cancel_for_document(
        &mut self,
        document: DocumentId,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        execute(
            &self.tx,
            "UPDATE jobs SET state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
                             cancel_requested = (state = 'running'),
                             locked_until = CASE WHEN state = 'queued' THEN NULL ELSE locked_until END,
                             locked_by = CASE WHEN state = 'queued' THEN NULL ELSE locked_by END,
                             updated_at = $3
             WHERE tenant_id = $1 AND document_id = $2 AND kind = 'ingest'
               AND state IN ('queued', 'running')",
            vec![self.t(), document.as_uuid().into(), now.into()],
        )
        .await?;
        Ok(())
    }

    async fn document_has_other(
        &mut self,
        document: DocumentId,
        except: JobId,
    ) -> StoreResult<bool> {
        #[derive(FromQueryResult)]
        struct Row {
            found: bool,
        }
        let row = fetch_one::<Row>(
            &self.tx,
            "SELECT EXISTS (
                 SELECT 1 FROM jobs
                 WHERE tenant_id = $1 AND document_id = $2 AND id <> $3 AND kind = 'ingest'
                   AND state IN ('queued', 'running') AND NOT cancel_requested
             ) AS found",
            vec![self.t(), document.as_uuid().into(), except.as_uuid().into()],
        )
        .await?;
        Ok(row.is_some_and(|r| r.found))
    }

    async fn heartbeat(
        &mut self,
        id: JobId,
        worker: &str,
        progress: (i32, i32),
        lease: Duration,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        #[derive(FromQueryResult)]
        struct Row {
            cancel_requested: bool,
        }
        let row = fetch_one::<Row>(
            &self.tx,
            "UPDATE jobs SET progress_done = $4, progress_total = $5,
                             locked_until = $6 + make_interval(secs => $7::double precision / 1000),
                             updated_at = $6
             WHERE tenant_id = $1 AND id = $2 AND state = 'running' AND locked_by = $3
             RETURNING cancel_requested",
            vec![
                self.t(),
                id.as_uuid().into(),
                worker.into(),
                progress.0.into(),
                progress.1.into(),
                now.into(),
                lease_interval(lease),
            ],
        )
        .await?;
        Ok(row.is_some_and(|r| !r.cancel_requested))
    }

    async fn finish(
        &mut self,
        id: JobId,
        worker: &str,
        outcome: JobOutcome,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let (state, error, run_at): (&str, Option<String>, DateTime<Utc>) = match outcome {
            JobOutcome::Succeeded => ("succeeded", None, now),
            JobOutcome::Failed(error) => ("failed", Some(error), now),
            JobOutcome::Cancelled => ("cancelled", None, now),
            JobOutcome::Retry { error, at } => ("queued", Some(error), at),
        };
        // A job whose cancellation was asked for cannot succeed or go back to the queue: the
        // worker sees `false` and ends it as cancelled instead, keeping nothing.
        let guard = if state == "succeeded" || state == "queued" {
            " AND NOT cancel_requested"
        } else {
            ""
        };
        let sql = format!(
            "UPDATE jobs SET state = $4, error = $5, run_at = $6, locked_until = NULL, locked_by = NULL,
                             updated_at = $7
             WHERE tenant_id = $1 AND id = $2 AND state = 'running' AND locked_by = $3{guard}"
        );
        let n = execute(
            &self.tx,
            &sql,
            vec![
                self.t(),
                id.as_uuid().into(),
                worker.into(),
                state.into(),
                error.into(),
                run_at.into(),
                now.into(),
            ],
        )
        .await?;
        Ok(n == 1)
    }
}

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

#[async_trait]
impl ChunkRepo for PgTx {
    async fn replace(&mut self, target: &ChunkTarget, chunks: &[NewChunk]) -> StoreResult<()> {
        let removed = execute(
            &self.tx,
            "DELETE FROM chunks WHERE tenant_id = $1 AND document_id = $2 AND generation_id = $3",
            vec![
                self.t(),
                target.document.as_uuid().into(),
                target.generation.as_uuid().into(),
            ],
        )
        .await?;
        for chunk in chunks {
            execute(
                &self.tx,
                "INSERT INTO chunks (tenant_id, id, collection_id, document_id, generation_id, space_id,
                                     position, content, token_count, metadata, embedding)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                vec![
                    self.t(),
                    chunk.id.as_uuid().into(),
                    target.collection.as_uuid().into(),
                    target.document.as_uuid().into(),
                    target.generation.as_uuid().into(),
                    target.space_id.as_str().into(),
                    i32::try_from(chunk.position).unwrap_or(i32::MAX).into(),
                    chunk.content.as_str().into(),
                    i32::try_from(chunk.token_count).unwrap_or(i32::MAX).into(),
                    target.metadata.clone().into(),
                    PgVector::from(chunk.embedding.clone()).into(),
                ],
            )
            .await?;
        }
        // The count the search planner reads (purging a document leaves it high: an estimate).
        let added = i64::try_from(chunks.len()).unwrap_or(i64::MAX);
        let removed = i64::try_from(removed).unwrap_or(i64::MAX);
        execute(
            &self.tx,
            "UPDATE generations SET chunk_count = GREATEST(chunk_count + $3, 0)
             WHERE tenant_id = $1 AND id = $2",
            vec![
                self.t(),
                target.generation.as_uuid().into(),
                (added - removed).into(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn discard_building(
        &mut self,
        collection: CollectionId,
        document: DocumentId,
    ) -> StoreResult<()> {
        execute(
            &self.tx,
            "WITH gone AS (
                 DELETE FROM chunks c USING generations g
                 WHERE c.tenant_id = $1 AND c.document_id = $3
                   AND g.tenant_id = $1 AND g.collection_id = $2 AND g.state = 'building'
                   AND c.generation_id = g.id
                 RETURNING c.generation_id
             )
             UPDATE generations g SET chunk_count = GREATEST(g.chunk_count - n.removed, 0)
             FROM (SELECT generation_id, count(*) AS removed FROM gone GROUP BY generation_id) n
             WHERE g.tenant_id = $1 AND g.id = n.generation_id",
            vec![
                self.t(),
                collection.as_uuid().into(),
                document.as_uuid().into(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn documents_without_chunks(
        &mut self,
        collection: CollectionId,
        generation: GenerationId,
    ) -> StoreResult<Vec<(DocumentId, Vec<u8>)>> {
        #[derive(FromQueryResult)]
        struct Row {
            id: Uuid,
            content_hash: Vec<u8>,
        }
        let rows = fetch_all::<Row>(
            &self.tx,
            "SELECT d.id, d.content_hash FROM documents d
             WHERE d.tenant_id = $1 AND d.collection_id = $2 AND d.status <> 'failed'
               AND NOT EXISTS (SELECT 1 FROM chunks c
                               WHERE c.tenant_id = $1 AND c.document_id = d.id
                                 AND c.generation_id = $3)
             ORDER BY d.id",
            vec![
                self.t(),
                collection.as_uuid().into(),
                generation.as_uuid().into(),
            ],
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (DocumentId::from_uuid(r.id), r.content_hash))
            .collect())
    }

    async fn search(&mut self, query: &SearchQuery) -> StoreResult<Vec<SearchHit>> {
        let (space, dims) = space_literals(&query.space_id, query.dimensions)?;
        let mut values: Vec<Value> = vec![
            self.t(),
            query.generation.as_uuid().into(),
            i64::from(query.top_k).into(),
        ];
        // The vector list filters in SQL; full text goes through `chunk_fulltext_hits` (see the
        // migration `search_functions`), since under row-level security its GIN indexes would be
        // unusable, and takes the filter as groups of alternatives.
        let mut filter = String::new();
        let mut groups = Vec::new();
        for (key, options) in &query.filter {
            let group: Vec<serde_json::Value> = options
                .iter()
                .map(|option| serde_json::json!({ key: option }))
                .collect();
            if query.mode != SearchMode::Fulltext {
                let mut any = Vec::new();
                for object in &group {
                    values.push(object.clone().into());
                    any.push(format!("c.metadata @> ${}::jsonb", values.len()));
                }
                filter.push_str(&format!(" AND ({})", any.join(" OR ")));
            }
            groups.push(serde_json::Value::Array(group));
        }
        if query.mode != SearchMode::Vector {
            values.push(serde_json::Value::Array(groups).into());
        }
        let groups = values.len();
        let plan = if query.mode == SearchMode::Fulltext {
            VectorPlan::Exact
        } else {
            self.vector_plan(query).await?
        };
        let (sql, kind) = match query.mode {
            SearchMode::Vector => {
                let vector = query
                    .vector
                    .clone()
                    .ok_or_else(|| corrupt("search", "vector mode without a vector".into()))?;
                values.push(PgVector::from(vector).into());
                let q = values.len();
                let min = query.min_score.map_or(String::new(), |m| {
                    format!(
                        " AND 1 - (c.embedding::vector({dims}) <=> ${q}::vector({dims})) >= {m}"
                    )
                });
                let order = plan.order(&format!(
                    "c.embedding::vector({dims}) <=> ${q}::vector({dims})"
                ));
                (
                    format!(
                        "SELECT * FROM (
                             SELECT c.id AS chunk_id, c.document_id, d.title AS document_title, c.position, c.content,
                                    (1 - (c.embedding::vector({dims}) <=> ${q}::vector({dims})))::float8 AS score, c.metadata
                             FROM chunks c
                             JOIN documents d ON d.tenant_id = c.tenant_id AND d.id = c.document_id AND d.deleted_at IS NULL
                             WHERE c.tenant_id = $1 AND c.space_id = {space} AND c.generation_id = $2{filter}{min}
                             ORDER BY {order}
                             LIMIT $3
                         ) nearest
                         ORDER BY score DESC, chunk_id"
                    ),
                    "cosine_similarity",
                )
            }
            SearchMode::Fulltext => {
                values.push(query.text.as_str().into());
                let q = values.len();
                (
                    format!(
                        "SELECT c.id AS chunk_id, c.document_id, d.title AS document_title, c.position, c.content,
                                f.score, c.metadata
                         FROM chunk_fulltext_hits($2, ${q}, ${groups}::jsonb, $3::integer) f
                         JOIN chunks c ON c.tenant_id = $1 AND c.id = f.id
                         JOIN documents d ON d.tenant_id = c.tenant_id AND d.id = c.document_id
                         ORDER BY f.score DESC, c.id"
                    ),
                    "ts_rank",
                )
            }
            SearchMode::Hybrid => {
                let vector = query
                    .vector
                    .clone()
                    .ok_or_else(|| corrupt("search", "hybrid mode without a vector".into()))?;
                values.push(PgVector::from(vector).into());
                let v = values.len();
                values.push(query.text.as_str().into());
                let t = values.len();
                let order = plan.order(&format!(
                    "c.embedding::vector({dims}) <=> ${v}::vector({dims})"
                ));
                // Reciprocal rank fusion of the two ranked lists (k = 60), each list a few times
                // deeper than the answer so that fusion has something to choose from.
                (
                    format!(
                        "WITH vector_nearest AS (
                             SELECT c.id, c.embedding::vector({dims}) <=> ${v}::vector({dims}) AS distance
                             FROM chunks c
                             JOIN documents d ON d.tenant_id = c.tenant_id AND d.id = c.document_id AND d.deleted_at IS NULL
                             WHERE c.tenant_id = $1 AND c.space_id = {space} AND c.generation_id = $2{filter}
                             ORDER BY {order}
                             LIMIT $3 * 4
                         ), vector_ranked AS (
                             SELECT id, row_number() OVER (ORDER BY distance, id) AS r FROM vector_nearest
                         ), text_ranked AS (
                             SELECT f.id, row_number() OVER (ORDER BY f.score DESC, f.id) AS r
                             FROM chunk_fulltext_hits($2, ${t}, ${groups}::jsonb, ($3 * 4)::integer) f
                         ), fused AS (
                             SELECT id, sum(1.0 / (60 + r))::float8 AS score
                             FROM (SELECT * FROM vector_ranked UNION ALL SELECT * FROM text_ranked) ranked
                             GROUP BY id
                         )
                         SELECT c.id AS chunk_id, c.document_id, d.title AS document_title, c.position, c.content,
                                f.score, c.metadata
                         FROM fused f
                         JOIN chunks c ON c.tenant_id = $1 AND c.id = f.id
                         JOIN documents d ON d.tenant_id = c.tenant_id AND d.id = c.document_id
                         ORDER BY f.score DESC, c.id
                         LIMIT $3"
                    ),
                    "rrf",
                )
            }
        };
        let rows = fetch_all::<HitRow>(&self.tx, &sql, values).await?;
        if plan == VectorPlan::Hnsw {
            self.reset_plan().await?;
        }
        Ok(rows
            .into_iter()
            .map(|r| SearchHit {
                chunk_id: ChunkId::from_uuid(r.chunk_id),
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
    /// The ORDER BY expression: for an exact search, one that no index matches.
    fn order(self, distance: &str) -> String {
        match self {
            Self::Exact => format!("({distance}) + 0"),
            Self::Hnsw => distance.to_owned(),
        }
    }
}

impl PgTx {
    /// Chooses exact or HNSW search from the generation's chunk count, and sets the HNSW scan up
    /// for this transaction when it is chosen.
    async fn vector_plan(&mut self, query: &SearchQuery) -> StoreResult<VectorPlan> {
        if query.chunk_count <= exact_search_max_chunks(query.dimensions) {
            return Ok(VectorPlan::Exact);
        }
        // The decision must bind the planner: a prepared statement turns generic after five
        // runs (and a generic plan never takes the partial index), and PostgreSQL's costs
        // prefer a sort over the index for most sizes. relaxed_order may return neighbours
        // slightly out of order, so the queries sort again; `reset_plan` undoes these settings.
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
        if usable {
            return Ok(VectorPlan::Hnsw);
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

    /// Gives the rest of the transaction (another collection's search) the default planner.
    async fn reset_plan(&mut self) -> StoreResult<()> {
        execute(
            &self.tx,
            "SELECT set_config('plan_cache_mode', 'auto', true), set_config('enable_sort', 'on', true)",
            vec![],
        )
        .await?;
        Ok(())
    }
}
