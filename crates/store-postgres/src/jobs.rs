//! Ingestion and re-embedding jobs within a tenant unit of work: queueing, leases and
//! heartbeats, cancellation, outcomes.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::entities::{Job, JobKind, JobState};
use domain::page::{Page, PageRequest};
use domain::ports::{CancelOutcome, JobOutcome, JobRepo, NewJob, StoreError, StoreResult};
use domain::{CollectionId, DocumentId, GenerationId, JobId, TenantId};
use sea_orm::{FromQueryResult, Value};
use uuid::Uuid;

use crate::error::corrupt;
use crate::tenant_tx::{PgTx, execute, fetch_all, fetch_one, limit};

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
