//! Database rows and their conversion to domain entities. Column lists live next to the structs so
//! a query and its row type stay in step.

use chrono::{DateTime, Utc};
use domain::entities::{
    Agent, AgentTool, ApiKey, AuditRecord, Collection, EmbeddingSpace, Retrieval, Tenant,
    TenantStatus, User, UserCredentials, UserStatus,
};
use domain::ports::{StoreError, StoreResult};
use domain::values::{Email, MaxTokens, ModelRef, Name, Slug, Temperature};
use domain::{
    AgentId, ApiKeyId, AuditEntryId, CollectionId, GenerationId, Role, Scopes, TenantId,
    TokenFamilyId, UserId,
};
use sea_orm::{FromQueryResult, QueryResult};
use uuid::Uuid;

use crate::error::{corrupt, map};

pub(crate) const TENANT_COLUMNS: &str =
    "id, name, slug, status, daily_token_quota, created_at, updated_at";

#[derive(Debug, FromQueryResult)]
pub(crate) struct TenantRow {
    id: Uuid,
    name: String,
    slug: String,
    status: String,
    daily_token_quota: Option<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;
    fn try_from(r: TenantRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: TenantId::from_uuid(r.id),
            name: Name::parse(&r.name).map_err(|e| corrupt("tenant", e))?,
            slug: Slug::parse(&r.slug).map_err(|e| corrupt("tenant", e))?,
            status: TenantStatus::parse(&r.status).map_err(|e| corrupt("tenant", e))?,
            daily_token_quota: r.daily_token_quota.and_then(|q| u64::try_from(q).ok()),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

pub(crate) const USER_COLUMNS: &str = "tenant_id, id, email, name, password_hash, role, status, \
     created_at, updated_at, deleted_at, deleted_by, sessions_valid_after, sessions_kept_family";

#[derive(Debug, FromQueryResult)]
pub(crate) struct UserRow {
    tenant_id: Uuid,
    id: Uuid,
    email: String,
    name: Option<String>,
    password_hash: String,
    role: String,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
    deleted_by: Option<Uuid>,
    sessions_valid_after: Option<DateTime<Utc>>,
    sessions_kept_family: Option<Uuid>,
}

impl TryFrom<UserRow> for UserCredentials {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<Self, StoreError> {
        let user = User {
            id: UserId::from_uuid(r.id),
            tenant_id: TenantId::from_uuid(r.tenant_id),
            email: Email::parse(&r.email).map_err(|e| corrupt("user", e))?,
            name: r.name,
            role: Role::parse(&r.role).map_err(|e| corrupt("user", e))?,
            status: UserStatus::parse(&r.status).map_err(|e| corrupt("user", e))?,
            created_at: r.created_at,
            updated_at: r.updated_at,
            deleted_at: r.deleted_at,
            deleted_by: r.deleted_by,
            sessions_valid_after: r.sessions_valid_after,
            sessions_kept_family: r.sessions_kept_family.map(TokenFamilyId::from_uuid),
        };
        Ok(Self {
            user,
            password_hash: r.password_hash,
        })
    }
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<Self, StoreError> {
        UserCredentials::try_from(r).map(|c| c.user)
    }
}

/// `columns` (a list of plain column names) of the table aliased `alias`, each named with the
/// alias as prefix (`a.id AS a_id`): two rows of one join, read apart with
/// `FromQueryResult::from_query_result(row, "a_")`.
pub(crate) fn prefixed(alias: &str, columns: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{alias}.{0} AS {alias}_{0}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The row of a `LEFT JOIN`'s right side read apart from `row` by its `prefix` (see
/// [`prefixed`]); `None` when the boolean column `found` says the join found none.
pub(crate) fn joined<R, T>(row: &QueryResult, found: &str, prefix: &str) -> StoreResult<Option<T>>
where
    R: FromQueryResult,
    T: TryFrom<R, Error = StoreError>,
{
    if !row.try_get::<bool>("", found).map_err(map)? {
        return Ok(None);
    }
    T::try_from(R::from_query_result(row, prefix).map_err(map)?).map(Some)
}

pub(crate) const AGENT_COLUMNS: &str = "tenant_id, id, name, slug, description, system_prompt, \
     model_provider, model_name, temperature, max_tokens, metadata, collection_ids, retrieval_top_k, \
     retrieval_mode, retrieval_min_score, tools, created_at, updated_at, deleted_at, deleted_by";

#[derive(Debug, FromQueryResult)]
pub(crate) struct AgentRow {
    tenant_id: Uuid,
    id: Uuid,
    name: String,
    slug: String,
    description: String,
    system_prompt: String,
    model_provider: String,
    model_name: String,
    temperature: f32,
    max_tokens: i32,
    metadata: serde_json::Value,
    collection_ids: serde_json::Value,
    retrieval_top_k: i32,
    retrieval_mode: String,
    retrieval_min_score: Option<f32>,
    tools: serde_json::Value,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
    deleted_by: Option<Uuid>,
}

impl TryFrom<AgentRow> for Agent {
    type Error = StoreError;
    fn try_from(r: AgentRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: AgentId::from_uuid(r.id),
            tenant_id: TenantId::from_uuid(r.tenant_id),
            name: Name::parse(&r.name).map_err(|e| corrupt("agent", e))?,
            slug: Slug::parse(&r.slug).map_err(|e| corrupt("agent", e))?,
            description: r.description,
            system_prompt: r.system_prompt,
            model: ModelRef::parse(&r.model_provider, &r.model_name)
                .map_err(|e| corrupt("agent", e))?,
            temperature: Temperature::parse(f64::from(r.temperature))
                .map_err(|e| corrupt("agent", e))?,
            max_tokens: MaxTokens::parse(i64::from(r.max_tokens))
                .map_err(|e| corrupt("agent", e))?,
            metadata: r.metadata,
            collections: serde_json::from_value::<Vec<Uuid>>(r.collection_ids)
                .map_err(|e| corrupt("agent", e.to_string()))?
                .into_iter()
                .map(CollectionId::from_uuid)
                .collect(),
            retrieval: Retrieval {
                top_k: u32::try_from(r.retrieval_top_k)
                    .map_err(|e| corrupt("agent", e.to_string()))?,
                mode: search_mode(&r.retrieval_mode).map_err(|e| corrupt("agent", e))?,
                min_score: r.retrieval_min_score,
            },
            tools: serde_json::from_value::<Vec<String>>(r.tools)
                .map_err(|e| corrupt("agent", e.to_string()))?
                .iter()
                .map(|t| AgentTool::parse(t))
                .collect::<Result<_, _>>()
                .map_err(|e| corrupt("agent", e))?,
            created_at: r.created_at,
            updated_at: r.updated_at,
            deleted_at: r.deleted_at,
            deleted_by: r.deleted_by,
        })
    }
}

/// Scopes travel as a comma-separated string (`array_to_string`), avoiding array binding.
pub(crate) const API_KEY_COLUMNS: &str = "tenant_id, id, name, prefix, \
     array_to_string(scopes, ',') AS scopes, expires_at, last_used_at, created_by, created_at, \
     revoked_at";

#[derive(Debug, FromQueryResult)]
pub(crate) struct ApiKeyRow {
    tenant_id: Uuid,
    id: Uuid,
    name: String,
    prefix: String,
    scopes: String,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    created_by: Option<Uuid>,
    created_at: DateTime<Utc>,
    revoked_at: Option<DateTime<Utc>>,
}

pub(crate) fn parse_scopes(text: &str) -> Result<Scopes, StoreError> {
    Scopes::parse(text.split(',')).map_err(|e| corrupt("api key", e))
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = StoreError;
    fn try_from(r: ApiKeyRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: ApiKeyId::from_uuid(r.id),
            tenant_id: TenantId::from_uuid(r.tenant_id),
            name: Name::parse(&r.name).map_err(|e| corrupt("api key", e))?,
            prefix: r.prefix,
            scopes: parse_scopes(&r.scopes)?,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            created_by: r.created_by,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        })
    }
}

pub(crate) const AUDIT_COLUMNS: &str =
    "id, at, actor_type, actor_id, action, resource_type, resource_id, detail";

#[derive(Debug, FromQueryResult)]
pub(crate) struct AuditRow {
    id: Uuid,
    at: DateTime<Utc>,
    actor_type: String,
    actor_id: Uuid,
    action: String,
    resource_type: String,
    resource_id: Uuid,
    detail: serde_json::Value,
}

impl From<AuditRow> for AuditRecord {
    fn from(r: AuditRow) -> Self {
        Self {
            id: AuditEntryId::from_uuid(r.id),
            at: r.at,
            actor_type: r.actor_type,
            actor_id: r.actor_id,
            action: r.action,
            resource_type: r.resource_type,
            resource_id: r.resource_id,
            detail: r.detail,
        }
    }
}

/// Converts rows, failing on the first that does not convert.
pub(crate) fn convert<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

#[derive(Debug, FromQueryResult)]
pub(crate) struct SpaceRow {
    id: String,
    provider: String,
    model: String,
    dimensions: i32,
    normalized: bool,
}

impl TryFrom<SpaceRow> for EmbeddingSpace {
    type Error = StoreError;
    fn try_from(r: SpaceRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: r.id,
            provider: r.provider,
            model: r.model,
            dimensions: u32::try_from(r.dimensions)
                .map_err(|e| corrupt("embedding space", e.to_string()))?,
            normalized: r.normalized,
        })
    }
}

/// Selects collections (`c`, a table or CTE of collection rows) with their space.
pub(crate) fn collection_select(from: &str) -> String {
    format!(
        "SELECT c.tenant_id, c.id, c.name, c.description, c.active_generation_id, c.document_count,
                c.byte_count, c.last_active_at, c.created_at, c.updated_at, c.deleted_at, c.deleted_by,
                s.id AS space_id, s.provider AS space_provider, s.model AS space_model,
                s.dimensions AS space_dimensions, s.normalized AS space_normalized,
                COALESCE(g.chunk_count, 0) AS chunk_count
         FROM {from} c JOIN embedding_spaces s ON s.id = c.space_id
         LEFT JOIN generations g ON g.tenant_id = c.tenant_id AND g.id = c.active_generation_id"
    )
}

#[derive(Debug, FromQueryResult)]
pub(crate) struct CollectionRow {
    tenant_id: Uuid,
    id: Uuid,
    name: String,
    description: String,
    active_generation_id: Uuid,
    document_count: i64,
    byte_count: i64,
    last_active_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
    deleted_by: Option<Uuid>,
    space_id: String,
    space_provider: String,
    space_model: String,
    space_dimensions: i32,
    space_normalized: bool,
    chunk_count: i64,
}

impl TryFrom<CollectionRow> for Collection {
    type Error = StoreError;
    fn try_from(r: CollectionRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: CollectionId::from_uuid(r.id),
            tenant_id: TenantId::from_uuid(r.tenant_id),
            name: Name::parse(&r.name).map_err(|e| corrupt("collection", e))?,
            description: r.description,
            space: SpaceRow {
                id: r.space_id,
                provider: r.space_provider,
                model: r.space_model,
                dimensions: r.space_dimensions,
                normalized: r.space_normalized,
            }
            .try_into()?,
            active_generation: GenerationId::from_uuid(r.active_generation_id),
            chunk_count: r.chunk_count,
            document_count: r.document_count,
            byte_count: r.byte_count,
            last_active_at: r.last_active_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            deleted_at: r.deleted_at,
            deleted_by: r.deleted_by,
        })
    }
}

/// A search mode as stored (`vector`, `fulltext`, `hybrid`).
pub(crate) fn search_mode(text: &str) -> Result<domain::ports::SearchMode, String> {
    use domain::ports::SearchMode;
    match text {
        "vector" => Ok(SearchMode::Vector),
        "fulltext" => Ok(SearchMode::Fulltext),
        "hybrid" => Ok(SearchMode::Hybrid),
        other => Err(format!("unknown search mode {other:?}")),
    }
}

pub(crate) const fn search_mode_name(mode: domain::ports::SearchMode) -> &'static str {
    use domain::ports::SearchMode;
    match mode {
        SearchMode::Vector => "vector",
        SearchMode::Fulltext => "fulltext",
        SearchMode::Hybrid => "hybrid",
    }
}
