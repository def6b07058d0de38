//! The platform role's work: it bypasses row-level security, so everything here is kept to what
//! cannot be done inside one tenant, and each query still names the tenant it writes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::entities::AuditEntry;
use domain::entities::JobKind;
use domain::entities::{KeyOwner, NewUser, PlatformKey, Tenant, TenantStatus, User};
use domain::page::{Page, PageRequest};
use domain::ports::{ClaimedJob, JobQueue, NewTenant, PlatformStore, StoreResult};
use domain::values::{Name, Slug};
use domain::{ApiKeyId, CollectionId, DocumentId, GenerationId, JobId, PlatformKeyId, TenantId};
use sea_orm::{DatabaseConnection, FromQueryResult, TransactionTrait};
use uuid::Uuid;

use crate::audit::{INSERT_AUDIT, audit_values};
use crate::error::{corrupt, map};
use crate::rows::{TENANT_COLUMNS, TenantRow, USER_COLUMNS, UserRow, convert, parse_scopes};
use crate::tenant_tx::{execute, fetch_all, fetch_one, limit};

/// Cross-tenant work on a pool of the platform role.
#[derive(Clone, Debug)]
pub struct PgPlatformStore {
    db: DatabaseConnection,
}

impl PgPlatformStore {
    #[must_use]
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    pub(crate) const fn connection(&self) -> &DatabaseConnection {
        &self.db
    }
}

#[derive(FromQueryResult)]
struct TenantKeyRow {
    tenant_id: Uuid,
    id: Uuid,
    scopes: String,
    expires_at: Option<DateTime<Utc>>,
    revoked: bool,
    tenant_active: bool,
}

#[derive(FromQueryResult)]
struct PlatformKeyRow {
    id: Uuid,
    name: String,
    prefix: String,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

const PLATFORM_KEY_COLUMNS: &str =
    "id, name, prefix, created_at, expires_at, last_used_at, revoked_at";

impl TryFrom<PlatformKeyRow> for PlatformKey {
    type Error = domain::ports::StoreError;
    fn try_from(r: PlatformKeyRow) -> Result<Self, Self::Error> {
        Ok(Self {
            id: PlatformKeyId::from_uuid(r.id),
            name: Name::parse(&r.name).map_err(|e| corrupt("platform key", e))?,
            prefix: r.prefix,
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        })
    }
}

/// The advisory lock that serialises job claims (an arbitrary constant of this application).
const CLAIM_LOCK: i64 = 0x6167_656e_7469_6301;

/// A key's last use is written at most once a minute, so authentication stays a read on the
/// hot path.
const TOUCH_INTERVAL: &str = "interval '60 seconds'";

#[async_trait]
impl PlatformStore for PgPlatformStore {
    async fn tenant_by_slug(&self, slug: &Slug) -> StoreResult<Option<(TenantId, TenantStatus)>> {
        #[derive(FromQueryResult)]
        struct Row {
            id: Uuid,
            status: String,
        }
        let row = fetch_one::<Row>(
            &self.db,
            "SELECT id, status FROM tenants WHERE slug = $1",
            vec![slug.as_str().into()],
        )
        .await?;
        row.map(|r| {
            let status = TenantStatus::parse(&r.status).map_err(|e| corrupt("tenant", e))?;
            Ok((TenantId::from_uuid(r.id), status))
        })
        .transpose()
    }

    async fn create_tenant(
        &self,
        tenant: &NewTenant,
        admin: &NewUser,
        audit: &[AuditEntry],
        now: DateTime<Utc>,
    ) -> StoreResult<(Tenant, User)> {
        let tx = self.db.begin().await.map_err(map)?;
        let sql = format!(
            "INSERT INTO tenants (id, name, slug, status, created_at, updated_at)
             VALUES ($1, $2, $3, 'active', $4, $4) RETURNING {TENANT_COLUMNS}"
        );
        let created: Tenant = fetch_one::<TenantRow>(
            &tx,
            &sql,
            vec![
                tenant.id.as_uuid().into(),
                tenant.name.as_str().into(),
                tenant.slug.as_str().into(),
                now.into(),
            ],
        )
        .await?
        .ok_or_else(|| corrupt("tenant", "insert returned nothing".into()))?
        .try_into()?;
        let sql = format!(
            "INSERT INTO users (tenant_id, id, email, name, password_hash, role, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $7) RETURNING {USER_COLUMNS}"
        );
        let user: User = fetch_one::<UserRow>(
            &tx,
            &sql,
            vec![
                tenant.id.as_uuid().into(),
                admin.id.as_uuid().into(),
                admin.email.as_str().into(),
                admin.name.clone().into(),
                admin.password_hash.as_str().into(),
                admin.role.as_str().into(),
                now.into(),
            ],
        )
        .await?
        .ok_or_else(|| corrupt("user", "insert returned nothing".into()))?
        .try_into()?;
        for entry in audit {
            execute(&tx, INSERT_AUDIT, audit_values(tenant.id, entry)).await?;
        }
        tx.commit().await.map_err(map)?;
        Ok((created, user))
    }

    async fn set_tenant_status(
        &self,
        id: TenantId,
        status: TenantStatus,
        audit: &AuditEntry,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Tenant>> {
        let tx = self.db.begin().await.map_err(map)?;
        let sql = format!(
            "UPDATE tenants SET status = $2, updated_at = $3 WHERE id = $1 AND status <> $2
             RETURNING {TENANT_COLUMNS}"
        );
        let changed = fetch_one::<TenantRow>(
            &tx,
            &sql,
            vec![id.as_uuid().into(), status.as_str().into(), now.into()],
        )
        .await?;
        let row = match changed {
            Some(row) => {
                execute(&tx, INSERT_AUDIT, audit_values(id, audit)).await?;
                Some(row)
            }
            // Already in that state (or no such tenant): nothing changes, nothing is recorded.
            None => {
                fetch_one::<TenantRow>(
                    &tx,
                    &format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1"),
                    vec![id.as_uuid().into()],
                )
                .await?
            }
        };
        tx.commit().await.map_err(map)?;
        row.map(Tenant::try_from).transpose()
    }

    async fn set_daily_token_quota(
        &self,
        id: TenantId,
        quota: Option<u64>,
        audit: &AuditEntry,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Tenant>> {
        let tx = self.db.begin().await.map_err(map)?;
        let sql = format!(
            "UPDATE tenants SET daily_token_quota = $2, updated_at = $3 WHERE id = $1
             RETURNING {TENANT_COLUMNS}"
        );
        let row = fetch_one::<TenantRow>(
            &tx,
            &sql,
            vec![
                id.as_uuid().into(),
                quota.map(crate::usage::tokens).into(),
                now.into(),
            ],
        )
        .await?;
        if row.is_some() {
            execute(&tx, INSERT_AUDIT, audit_values(id, audit)).await?;
        }
        tx.commit().await.map_err(map)?;
        row.map(Tenant::try_from).transpose()
    }

    async fn list_tenants(&self, page: PageRequest) -> StoreResult<Page<Tenant>> {
        let sql = format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE ($1::uuid IS NULL OR id < $1)
             ORDER BY id DESC LIMIT $2"
        );
        let rows =
            fetch_all::<TenantRow>(&self.db, &sql, vec![page.after.into(), limit(page)]).await?;
        Ok(Page::from_rows(convert(rows)?, page, |t: &Tenant| {
            t.id.as_uuid()
        }))
    }

    async fn key_owner(
        &self,
        key_hash: &[u8],
        now: DateTime<Utc>,
    ) -> StoreResult<Option<KeyOwner>> {
        // The data-modifying CTE always runs, so noting the use costs no extra round trip.
        let sql = format!(
            "WITH touched AS (
                 UPDATE api_keys SET last_used_at = $2
                 WHERE key_hash = $1 AND (last_used_at IS NULL OR last_used_at < $2 - {TOUCH_INTERVAL})
             )
             SELECT k.tenant_id, k.id, array_to_string(k.scopes, ',') AS scopes, k.expires_at,
                    k.revoked_at IS NOT NULL AS revoked, t.status = 'active' AS tenant_active
             FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
             WHERE k.key_hash = $1"
        );
        let hash: Vec<u8> = key_hash.to_vec();
        if let Some(row) =
            fetch_one::<TenantKeyRow>(&self.db, &sql, vec![hash.clone().into(), now.into()]).await?
        {
            return Ok(Some(KeyOwner::Tenant {
                tenant: TenantId::from_uuid(row.tenant_id),
                key: ApiKeyId::from_uuid(row.id),
                scopes: parse_scopes(&row.scopes)?,
                expires_at: row.expires_at,
                revoked: row.revoked,
                tenant_active: row.tenant_active,
            }));
        }
        let sql = format!(
            "UPDATE platform_keys
             SET last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $2 - {TOUCH_INTERVAL}
                                     THEN $2 ELSE last_used_at END
             WHERE key_hash = $1
             RETURNING {PLATFORM_KEY_COLUMNS}"
        );
        let row =
            fetch_one::<PlatformKeyRow>(&self.db, &sql, vec![hash.into(), now.into()]).await?;
        Ok(row.map(|r| KeyOwner::Platform {
            key: PlatformKeyId::from_uuid(r.id),
            expires_at: r.expires_at,
            revoked: r.revoked_at.is_some(),
        }))
    }

    async fn insert_platform_key(
        &self,
        id: PlatformKeyId,
        name: &Name,
        prefix: &str,
        key_hash: &[u8],
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> StoreResult<PlatformKey> {
        fetch_one::<PlatformKeyRow>(
            &self.db,
            &format!(
                "INSERT INTO platform_keys (id, name, prefix, key_hash, expires_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 RETURNING {PLATFORM_KEY_COLUMNS}"
            ),
            vec![
                id.as_uuid().into(),
                name.as_str().into(),
                prefix.into(),
                key_hash.to_vec().into(),
                expires_at.into(),
                now.into(),
            ],
        )
        .await?
        .ok_or_else(|| corrupt("platform key", "insert returned nothing".into()))?
        .try_into()
    }

    async fn list_platform_keys(&self) -> StoreResult<Vec<PlatformKey>> {
        let rows = fetch_all::<PlatformKeyRow>(
            &self.db,
            &format!(
                "SELECT {PLATFORM_KEY_COLUMNS} FROM platform_keys ORDER BY created_at DESC, id"
            ),
            vec![],
        )
        .await?;
        convert(rows)
    }

    async fn revoke_platform_key(
        &self,
        id: PlatformKeyId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<PlatformKey>> {
        fetch_one::<PlatformKeyRow>(
            &self.db,
            &format!(
                "UPDATE platform_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1
                 RETURNING {PLATFORM_KEY_COLUMNS}"
            ),
            vec![id.as_uuid().into(), now.into()],
        )
        .await?
        .map(PlatformKey::try_from)
        .transpose()
    }
}

#[derive(FromQueryResult)]
struct ClaimRow {
    tenant_id: Uuid,
    id: Uuid,
    kind: String,
    collection_id: Uuid,
    document_id: Option<Uuid>,
    generation_id: Option<Uuid>,
    attempts: i32,
    max_attempts: i32,
}

#[async_trait]
impl JobQueue for PgPlatformStore {
    async fn claim(
        &self,
        worker: &str,
        lease: std::time::Duration,
        max_running_per_tenant: u32,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<ClaimedJob>> {
        // A job whose workers kept dying (a document that crashes or stalls them, a database
        // whose backend crashes in the job's final transaction) is not taken over forever: past
        // its attempts it fails, and so does its document (a re-embedding drops the generation
        // it was building). Its error says so, with the last error a worker could record. One
        // asked to be cancelled ends as cancelled.
        execute(
            &self.db,
            "WITH dead AS (
                 UPDATE jobs SET state = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'failed' END,
                                 locked_by = NULL, locked_until = NULL, updated_at = $1,
                                 error = CASE WHEN cancel_requested THEN NULL
                                              ELSE 'abandoned by its workers ' || attempts || ' times: no attempt '
                                                   || 'recorded an outcome before its lease ran out (the worker, or its '
                                                   || 'database session, died: a database crash, say)'
                                                   || coalesce('; last recorded error: ' || error, '') END
                 WHERE state = 'running' AND locked_until < $1
                   AND (attempts >= max_attempts OR cancel_requested)
                 RETURNING tenant_id, id, document_id, generation_id, cancel_requested, error
             ), unbuilt AS (
                 DELETE FROM generations g USING dead
                 WHERE g.tenant_id = dead.tenant_id AND g.id = dead.generation_id
                   AND g.state = 'building'
             )
             UPDATE documents d
             SET status = 'failed',
                 error = CASE WHEN dead.cancel_requested THEN 'ingestion cancelled'
                              ELSE 'ingestion ' || dead.error END,
                 updated_at = $1
             FROM dead WHERE d.tenant_id = dead.tenant_id AND d.id = dead.document_id
               -- A newer ingestion (the text was replaced) decides the document's status.
               AND NOT EXISTS (SELECT 1 FROM jobs j
                               WHERE j.tenant_id = dead.tenant_id AND j.document_id = dead.document_id
                                 AND j.kind = 'ingest' AND j.id > dead.id)",
            vec![now.into()],
        )
        .await?;
        // Tenants take turns. `waiting` walks the tenants with queued or running jobs by index
        // probes (one per tenant, however long a tenant's backlog); each offers its oldest
        // runnable job, unless it already runs its share; the tenant whose last claim is the
        // oldest wins and its turn is recorded in the same statement. SKIP LOCKED lets workers
        // claim side by side; the row locks last only this statement.
        // Claims take turns too: each runs alone under a transaction-scoped advisory lock, so
        // the running counts and turns it reads include every claim before it (concurrent
        // claims would each skip the rows the others had locked, and overrun a tenant's cap).
        let tx = self.db.begin().await.map_err(map)?;
        execute(
            &tx,
            &format!("SELECT pg_advisory_xact_lock({CLAIM_LOCK})"),
            vec![],
        )
        .await?;
        let row = fetch_one::<ClaimRow>(
            &tx,
            "WITH RECURSIVE waiting (tenant_id) AS (
                 (SELECT tenant_id FROM jobs WHERE state IN ('queued', 'running')
                  ORDER BY tenant_id LIMIT 1)
                 UNION ALL
                 SELECT (SELECT j.tenant_id FROM jobs j
                         WHERE j.state IN ('queued', 'running') AND j.tenant_id > w.tenant_id
                         ORDER BY j.tenant_id LIMIT 1)
                 FROM waiting w WHERE w.tenant_id IS NOT NULL
             ), pick AS (
                 SELECT next.tenant_id, next.id
                 FROM waiting w
                 LEFT JOIN tenant_job_turns turn ON turn.tenant_id = w.tenant_id
                 CROSS JOIN LATERAL (
                     SELECT j.tenant_id, j.id FROM jobs j
                     WHERE j.tenant_id = w.tenant_id
                       AND ((j.state = 'queued' AND j.run_at <= $2)
                            OR (j.state = 'running' AND j.locked_until < $2))
                     ORDER BY j.run_at
                     LIMIT 1
                     FOR UPDATE SKIP LOCKED
                 ) next
                 WHERE (SELECT count(*) FROM jobs r
                        WHERE r.tenant_id = w.tenant_id AND r.state = 'running'
                          AND r.locked_until >= $2) < $4
                 ORDER BY turn.last_claimed_at NULLS FIRST, w.tenant_id
                 LIMIT 1
             ), claimed AS (
                 UPDATE jobs SET state = 'running', locked_by = $1,
                                 locked_until = $2 + make_interval(secs => $3::double precision / 1000),
                                 attempts = attempts + 1, updated_at = $2
                 FROM pick WHERE jobs.tenant_id = pick.tenant_id AND jobs.id = pick.id
                 RETURNING jobs.tenant_id, jobs.id, jobs.kind, jobs.collection_id, jobs.document_id,
                           jobs.generation_id, jobs.attempts, jobs.max_attempts
             ), turn AS (
                 INSERT INTO tenant_job_turns (tenant_id, last_claimed_at)
                 SELECT tenant_id, $2 FROM claimed
                 ON CONFLICT (tenant_id) DO UPDATE SET last_claimed_at = EXCLUDED.last_claimed_at
             )
             SELECT * FROM claimed",
            vec![
                worker.into(),
                now.into(),
                i64::try_from(lease.as_millis()).unwrap_or(i64::MAX).into(),
                i64::from(max_running_per_tenant.max(1)).into(),
            ],
        )
        .await?;
        tx.commit().await.map_err(map)?;
        row.map(|r| {
            Ok(ClaimedJob {
                tenant: TenantId::from_uuid(r.tenant_id),
                id: JobId::from_uuid(r.id),
                kind: JobKind::parse(&r.kind).map_err(|e| corrupt("job", e))?,
                collection_id: CollectionId::from_uuid(r.collection_id),
                document_id: r.document_id.map(DocumentId::from_uuid),
                generation_id: r.generation_id.map(GenerationId::from_uuid),
                attempts: r.attempts,
                max_attempts: r.max_attempts,
            })
        })
        .transpose()
    }
}
