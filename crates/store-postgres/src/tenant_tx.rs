//! Tenant units of work: one transaction, one tenant, RLS and an explicit filter in every query.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::entities::{
    Agent, AgentChanges, AgentFilter, ApiKey, AuditEntry, AuditFilter, AuditRecord, EmbeddingSpace,
    NewAgent, NewApiKey, NewUser, Tenant, User, UserChanges, UserCredentials,
};
use domain::page::{Page, PageRequest};
use domain::ports::{
    AgentRepo, ApiKeyRepo, AuditLog, CollectionRepo, Store, StoreResult, TenantRepo, TenantTx,
    UserRepo,
};
use domain::values::{Email, Name};
use domain::{Actor, AgentId, ApiKeyId, Scope, TenantId, TokenFamilyId, UserId};
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, FromQueryResult,
    Statement, TransactionTrait, Value,
};
use uuid::Uuid;

use crate::error::map;
use crate::rows::{
    AGENT_COLUMNS, API_KEY_COLUMNS, AUDIT_COLUMNS, AgentRow, ApiKeyRow, AuditRow, SpaceRow,
    TENANT_COLUMNS, TenantRow, USER_COLUMNS, UserRow, convert,
};
use crate::spaces::{HNSW_MAX_DIMENSIONS, USABLE_INDEXES};

/// Opens tenant units of work on a pool of the application role.
#[derive(Clone, Debug)]
pub struct PgStore {
    db: DatabaseConnection,
}

impl PgStore {
    #[must_use]
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[async_trait]
impl Store for PgStore {
    async fn begin(&self, tenant: TenantId) -> StoreResult<Box<dyn TenantTx>> {
        let tx = self.db.begin().await.map_err(map)?;
        // `true`: local to this transaction, so the pooled connection forgets the tenant at
        // commit or rollback and the next borrower starts with none (and sees no rows).
        tx.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT set_config('app.tenant_id', $1, true)",
            [tenant.to_string().into()],
        ))
        .await
        .map_err(map)?;
        Ok(Box::new(PgTx { tx, tenant }))
    }

    async fn ping(&self) -> StoreResult<()> {
        self.db.ping().await.map_err(map)
    }

    async fn vector_index_problems(&self) -> StoreResult<Vec<String>> {
        #[derive(FromQueryResult)]
        struct Problem {
            space_id: String,
            index_name: String,
            problem: String,
        }
        let rows = fetch_all::<Problem>(
            &self.db,
            &format!(
                "SELECT s.id AS space_id, x.name AS index_name,
                        CASE WHEN i.indexrelid IS NULL THEN 'is missing'
                             ELSE 'is not valid (its build failed, crashed or is still running)' END AS problem
                 FROM embedding_spaces s
                 CROSS JOIN LATERAL (SELECT 'chunks_embedding_' || replace(s.id, '-', '_') AS name) x
                 LEFT JOIN ({USABLE_INDEXES}) i ON i.relname = x.name
                 WHERE s.dimensions <= {HNSW_MAX_DIMENSIONS} AND (i.indexrelid IS NULL OR NOT i.usable)
                 ORDER BY s.id"
            ),
            vec![],
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                format!(
                    "space {}: vector index {} {}",
                    r.space_id, r.index_name, r.problem
                )
            })
            .collect())
    }

    async fn spaces(&self) -> StoreResult<Vec<EmbeddingSpace>> {
        let rows = fetch_all::<SpaceRow>(
            &self.db,
            "SELECT id, provider, model, dimensions, normalized FROM embedding_spaces ORDER BY id",
            vec![],
        )
        .await?;
        convert(rows)
    }
}

/// A transaction with `app.tenant_id` set. Dropped without commit, SeaORM rolls it back.
pub struct PgTx {
    pub(crate) tx: DatabaseTransaction,
    tenant: TenantId,
}

pub(crate) fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

pub(crate) async fn fetch_one<R: FromQueryResult>(
    conn: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> StoreResult<Option<R>> {
    R::find_by_statement(stmt(sql, values))
        .one(conn)
        .await
        .map_err(map)
}

pub(crate) async fn fetch_all<R: FromQueryResult>(
    conn: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> StoreResult<Vec<R>> {
    R::find_by_statement(stmt(sql, values))
        .all(conn)
        .await
        .map_err(map)
}

pub(crate) async fn execute(
    conn: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> StoreResult<u64> {
    conn.execute_raw(stmt(sql, values))
        .await
        .map(|r| r.rows_affected())
        .map_err(map)
}

pub(crate) fn limit(page: PageRequest) -> Value {
    i64::try_from(page.fetch_limit()).unwrap_or(i64::MAX).into()
}

/// `text` for a case-insensitive substring match, with LIKE's wildcards escaped.
fn contains_pattern(q: &str) -> String {
    let escaped = q
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

impl PgTx {
    pub(crate) fn t(&self) -> Value {
        self.tenant.as_uuid().into()
    }
}

#[async_trait]
impl TenantTx for PgTx {
    fn tenant_id(&self) -> TenantId {
        self.tenant
    }
    fn tenant(&mut self) -> &mut dyn TenantRepo {
        self
    }
    fn users(&mut self) -> &mut dyn UserRepo {
        self
    }
    fn api_keys(&mut self) -> &mut dyn ApiKeyRepo {
        self
    }
    fn agents(&mut self) -> &mut dyn AgentRepo {
        self
    }
    fn collections(&mut self) -> &mut dyn CollectionRepo {
        self
    }
    fn documents(&mut self) -> &mut dyn domain::ports::DocumentRepo {
        self
    }
    fn jobs(&mut self) -> &mut dyn domain::ports::JobRepo {
        self
    }
    fn chunks(&mut self) -> &mut dyn domain::ports::ChunkRepo {
        self
    }
    fn audit(&mut self) -> &mut dyn AuditLog {
        self
    }
    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.tx.commit().await.map_err(map)
    }
}

#[async_trait]
impl TenantRepo for PgTx {
    async fn get(&mut self) -> StoreResult<Option<Tenant>> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
        fetch_one::<TenantRow>(&self.tx, &sql, vec![self.t()])
            .await?
            .map(Tenant::try_from)
            .transpose()
    }

    async fn rename(&mut self, name: &Name, now: DateTime<Utc>) -> StoreResult<Option<Tenant>> {
        let sql = format!(
            "UPDATE tenants SET name = $2, updated_at = $3 WHERE id = $1 RETURNING {TENANT_COLUMNS}"
        );
        fetch_one::<TenantRow>(
            &self.tx,
            &sql,
            vec![self.t(), name.as_str().into(), now.into()],
        )
        .await?
        .map(Tenant::try_from)
        .transpose()
    }
}

#[async_trait]
impl UserRepo for PgTx {
    async fn insert(&mut self, user: &NewUser, now: DateTime<Utc>) -> StoreResult<User> {
        let sql = format!(
            "INSERT INTO users (tenant_id, id, email, name, password_hash, role, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $7) RETURNING {USER_COLUMNS}"
        );
        let values = vec![
            self.t(),
            user.id.as_uuid().into(),
            user.email.as_str().into(),
            user.name.clone().into(),
            user.password_hash.as_str().into(),
            user.role.as_str().into(),
            now.into(),
        ];
        let row = fetch_one::<UserRow>(&self.tx, &sql, values).await?;
        row.ok_or_else(|| crate::error::corrupt("user", "insert returned nothing".into()))?
            .try_into()
    }

    async fn get(&mut self, id: UserId, include_deleted: bool) -> StoreResult<Option<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users
             WHERE tenant_id = $1 AND id = $2 AND ($3 OR deleted_at IS NULL)"
        );
        fetch_one::<UserRow>(
            &self.tx,
            &sql,
            vec![self.t(), id.as_uuid().into(), include_deleted.into()],
        )
        .await?
        .map(User::try_from)
        .transpose()
    }

    async fn credentials_by_email(
        &mut self,
        email: &Email,
    ) -> StoreResult<Option<UserCredentials>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users
             WHERE tenant_id = $1 AND email = $2 AND deleted_at IS NULL"
        );
        fetch_one::<UserRow>(&self.tx, &sql, vec![self.t(), email.as_str().into()])
            .await?
            .map(UserCredentials::try_from)
            .transpose()
    }

    async fn list(&mut self, include_deleted: bool, page: PageRequest) -> StoreResult<Page<User>> {
        let sql = format!(
            "SELECT {USER_COLUMNS} FROM users
             WHERE tenant_id = $1 AND ($2 OR deleted_at IS NULL) AND ($3::uuid IS NULL OR id < $3)
             ORDER BY id DESC LIMIT $4"
        );
        let rows = fetch_all::<UserRow>(
            &self.tx,
            &sql,
            vec![
                self.t(),
                include_deleted.into(),
                page.after.into(),
                limit(page),
            ],
        )
        .await?;
        Ok(Page::from_rows(convert(rows)?, page, |u: &User| {
            u.id.as_uuid()
        }))
    }

    async fn update(
        &mut self,
        id: UserId,
        changes: &UserChanges,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<User>> {
        let sql = format!(
            "UPDATE users SET
                 name = CASE WHEN $3 THEN $4 ELSE name END,
                 role = COALESCE($5, role),
                 status = COALESCE($6, status),
                 sessions_valid_after = CASE WHEN $8 THEN $7 ELSE sessions_valid_after END,
                 sessions_kept_family = CASE WHEN $8 THEN NULL ELSE sessions_kept_family END,
                 updated_at = $7
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
             RETURNING {USER_COLUMNS}"
        );
        let values = vec![
            self.t(),
            id.as_uuid().into(),
            changes.name.is_some().into(),
            changes.name.clone().flatten().into(),
            changes.role.map(|r| r.as_str().to_owned()).into(),
            changes.status.map(|s| s.as_str().to_owned()).into(),
            now.into(),
            changes.ends_sessions.into(),
        ];
        fetch_one::<UserRow>(&self.tx, &sql, values)
            .await?
            .map(User::try_from)
            .transpose()
    }

    async fn lock_active_admins(&mut self) -> StoreResult<Vec<UserId>> {
        #[derive(FromQueryResult)]
        struct Id {
            id: Uuid,
        }
        let rows = fetch_all::<Id>(
            &self.tx,
            "SELECT id FROM users
             WHERE tenant_id = $1 AND role = 'admin' AND status = 'active' AND deleted_at IS NULL
             FOR UPDATE",
            vec![self.t()],
        )
        .await?;
        Ok(rows.into_iter().map(|r| UserId::from_uuid(r.id)).collect())
    }

    async fn set_password(
        &mut self,
        id: UserId,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let n = execute(
            &self.tx,
            "UPDATE users SET password_hash = $3, updated_at = $4
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
            vec![
                self.t(),
                id.as_uuid().into(),
                password_hash.into(),
                now.into(),
            ],
        )
        .await?;
        Ok(n == 1)
    }

    async fn end_sessions(
        &mut self,
        id: UserId,
        keep: Option<TokenFamilyId>,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let n = execute(
            &self.tx,
            "UPDATE users SET sessions_valid_after = $3, sessions_kept_family = $4
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
            vec![
                self.t(),
                id.as_uuid().into(),
                now.into(),
                keep.map(|f| f.as_uuid()).into(),
            ],
        )
        .await?;
        Ok(n == 1)
    }

    async fn soft_delete(
        &mut self,
        id: UserId,
        by: Actor,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let n = execute(
            &self.tx,
            "UPDATE users SET deleted_at = $3, deleted_by = $4, updated_at = $3,
                              sessions_valid_after = $3, sessions_kept_family = NULL
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
            vec![self.t(), id.as_uuid().into(), now.into(), by.id().into()],
        )
        .await?;
        Ok(n == 1)
    }

    async fn restore(&mut self, id: UserId, now: DateTime<Utc>) -> StoreResult<Option<User>> {
        let sql = format!(
            "UPDATE users SET deleted_at = NULL, deleted_by = NULL, updated_at = $3
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NOT NULL
             RETURNING {USER_COLUMNS}"
        );
        fetch_one::<UserRow>(
            &self.tx,
            &sql,
            vec![self.t(), id.as_uuid().into(), now.into()],
        )
        .await?
        .map(User::try_from)
        .transpose()
    }

    async fn purge(&mut self, id: UserId) -> StoreResult<bool> {
        let n = execute(
            &self.tx,
            "DELETE FROM users WHERE tenant_id = $1 AND id = $2",
            vec![self.t(), id.as_uuid().into()],
        )
        .await?;
        Ok(n == 1)
    }
}

#[async_trait]
impl ApiKeyRepo for PgTx {
    async fn insert(&mut self, key: &NewApiKey, now: DateTime<Utc>) -> StoreResult<ApiKey> {
        let sql = format!(
            "INSERT INTO api_keys (tenant_id, id, name, prefix, key_hash, scopes, expires_at, created_by, created_at)
             VALUES ($1, $2, $3, $4, $5, string_to_array($6, ','), $7, $8, $9)
             RETURNING {API_KEY_COLUMNS}"
        );
        let scopes: Vec<&str> = key.scopes.iter().map(Scope::as_str).collect();
        let values = vec![
            self.t(),
            key.id.as_uuid().into(),
            key.name.as_str().into(),
            key.prefix.as_str().into(),
            key.key_hash.clone().into(),
            scopes.join(",").into(),
            key.expires_at.into(),
            key.created_by.id().into(),
            now.into(),
        ];
        let row = fetch_one::<ApiKeyRow>(&self.tx, &sql, values).await?;
        row.ok_or_else(|| crate::error::corrupt("api key", "insert returned nothing".into()))?
            .try_into()
    }

    async fn list(&mut self, page: PageRequest) -> StoreResult<Page<ApiKey>> {
        let sql = format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys
             WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id < $2)
             ORDER BY id DESC LIMIT $3"
        );
        let rows = fetch_all::<ApiKeyRow>(
            &self.tx,
            &sql,
            vec![self.t(), page.after.into(), limit(page)],
        )
        .await?;
        Ok(Page::from_rows(convert(rows)?, page, |k: &ApiKey| {
            k.id.as_uuid()
        }))
    }

    async fn revoke(&mut self, id: ApiKeyId, now: DateTime<Utc>) -> StoreResult<Option<ApiKey>> {
        let sql = format!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3)
             WHERE tenant_id = $1 AND id = $2 RETURNING {API_KEY_COLUMNS}"
        );
        fetch_one::<ApiKeyRow>(
            &self.tx,
            &sql,
            vec![self.t(), id.as_uuid().into(), now.into()],
        )
        .await?
        .map(ApiKey::try_from)
        .transpose()
    }
}

#[async_trait]
impl AgentRepo for PgTx {
    async fn insert(&mut self, agent: &NewAgent, now: DateTime<Utc>) -> StoreResult<Agent> {
        let sql = format!(
            "INSERT INTO agents (tenant_id, id, name, slug, description, system_prompt, model_provider,
                                 model_name, temperature, max_tokens, metadata, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
             RETURNING {AGENT_COLUMNS}"
        );
        let values = vec![
            self.t(),
            agent.id.as_uuid().into(),
            agent.name.as_str().into(),
            agent.slug.as_str().into(),
            agent.description.as_str().into(),
            agent.system_prompt.as_str().into(),
            agent.model.provider().into(),
            agent.model.name().into(),
            agent.temperature.value().into(),
            i32::try_from(agent.max_tokens.value())
                .unwrap_or(i32::MAX)
                .into(),
            agent.metadata.clone().into(),
            now.into(),
        ];
        let row = fetch_one::<AgentRow>(&self.tx, &sql, values).await?;
        row.ok_or_else(|| crate::error::corrupt("agent", "insert returned nothing".into()))?
            .try_into()
    }

    async fn get(&mut self, id: AgentId, include_deleted: bool) -> StoreResult<Option<Agent>> {
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents
             WHERE tenant_id = $1 AND id = $2 AND ($3 OR deleted_at IS NULL)"
        );
        fetch_one::<AgentRow>(
            &self.tx,
            &sql,
            vec![self.t(), id.as_uuid().into(), include_deleted.into()],
        )
        .await?
        .map(Agent::try_from)
        .transpose()
    }

    async fn list(&mut self, filter: &AgentFilter, page: PageRequest) -> StoreResult<Page<Agent>> {
        let sql = format!(
            "SELECT {AGENT_COLUMNS} FROM agents
             WHERE tenant_id = $1
               AND ($2 OR deleted_at IS NULL)
               AND ($3::text IS NULL OR name ILIKE $3 OR slug ILIKE $3)
               AND ($4::uuid IS NULL OR id < $4)
             ORDER BY id DESC LIMIT $5"
        );
        let values = vec![
            self.t(),
            filter.include_deleted.into(),
            filter.q.as_deref().map(contains_pattern).into(),
            page.after.into(),
            limit(page),
        ];
        let rows = fetch_all::<AgentRow>(&self.tx, &sql, values).await?;
        Ok(Page::from_rows(convert(rows)?, page, |a: &Agent| {
            a.id.as_uuid()
        }))
    }

    async fn update(
        &mut self,
        id: AgentId,
        changes: &AgentChanges,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Agent>> {
        let sql = format!(
            "UPDATE agents SET
                 name = COALESCE($3, name),
                 slug = COALESCE($4, slug),
                 description = COALESCE($5, description),
                 system_prompt = COALESCE($6, system_prompt),
                 model_provider = COALESCE($7, model_provider),
                 model_name = COALESCE($8, model_name),
                 temperature = COALESCE($9, temperature),
                 max_tokens = COALESCE($10, max_tokens),
                 metadata = COALESCE($11, metadata),
                 updated_at = $12
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
             RETURNING {AGENT_COLUMNS}"
        );
        let values = vec![
            self.t(),
            id.as_uuid().into(),
            changes.name.as_ref().map(|n| n.as_str().to_owned()).into(),
            changes.slug.as_ref().map(|s| s.as_str().to_owned()).into(),
            changes.description.clone().into(),
            changes.system_prompt.clone().into(),
            changes
                .model
                .as_ref()
                .map(|m| m.provider().to_owned())
                .into(),
            changes.model.as_ref().map(|m| m.name().to_owned()).into(),
            changes.temperature.map(|t| t.value()).into(),
            changes
                .max_tokens
                .map(|m| i32::try_from(m.value()).unwrap_or(i32::MAX))
                .into(),
            changes.metadata.clone().into(),
            now.into(),
        ];
        fetch_one::<AgentRow>(&self.tx, &sql, values)
            .await?
            .map(Agent::try_from)
            .transpose()
    }

    async fn soft_delete(
        &mut self,
        id: AgentId,
        by: Actor,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let n = execute(
            &self.tx,
            "UPDATE agents SET deleted_at = $3, deleted_by = $4, updated_at = $3
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL",
            vec![self.t(), id.as_uuid().into(), now.into(), by.id().into()],
        )
        .await?;
        Ok(n == 1)
    }

    async fn restore(&mut self, id: AgentId, now: DateTime<Utc>) -> StoreResult<Option<Agent>> {
        let sql = format!(
            "UPDATE agents SET deleted_at = NULL, deleted_by = NULL, updated_at = $3
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NOT NULL
             RETURNING {AGENT_COLUMNS}"
        );
        fetch_one::<AgentRow>(
            &self.tx,
            &sql,
            vec![self.t(), id.as_uuid().into(), now.into()],
        )
        .await?
        .map(Agent::try_from)
        .transpose()
    }

    async fn purge(&mut self, id: AgentId) -> StoreResult<bool> {
        let n = execute(
            &self.tx,
            "DELETE FROM agents WHERE tenant_id = $1 AND id = $2",
            vec![self.t(), id.as_uuid().into()],
        )
        .await?;
        Ok(n == 1)
    }
}

pub(crate) fn audit_values(tenant: TenantId, entry: &AuditEntry) -> Vec<Value> {
    vec![
        tenant.as_uuid().into(),
        entry.id.as_uuid().into(),
        entry.at.into(),
        entry.actor.kind().into(),
        entry.actor.id().into(),
        entry.action.as_str().into(),
        entry.resource_type.into(),
        entry.resource_id.into(),
        entry.detail.clone().into(),
    ]
}

pub(crate) const INSERT_AUDIT: &str = "INSERT INTO audit_log
     (tenant_id, id, at, actor_type, actor_id, action, resource_type, resource_id, detail)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

#[async_trait]
impl AuditLog for PgTx {
    async fn append(&mut self, entry: &AuditEntry) -> StoreResult<()> {
        execute(&self.tx, INSERT_AUDIT, audit_values(self.tenant, entry)).await?;
        Ok(())
    }

    async fn list(
        &mut self,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditRecord>> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log
             WHERE tenant_id = $1
               AND ($2::text IS NULL OR resource_type = $2)
               AND ($3::uuid IS NULL OR resource_id = $3)
               AND ($4::uuid IS NULL OR id < $4)
             ORDER BY id DESC LIMIT $5"
        );
        let values = vec![
            self.t(),
            filter.resource_type.clone().into(),
            filter.resource_id.into(),
            page.after.into(),
            limit(page),
        ];
        let rows = fetch_all::<AuditRow>(&self.tx, &sql, values).await?;
        let records = rows.into_iter().map(AuditRecord::from).collect();
        Ok(Page::from_rows(records, page, |r: &AuditRecord| {
            r.id.as_uuid()
        }))
    }
}
