//! Database rows and their conversion to domain entities. Column lists live next to the structs so
//! a query and its row type stay in step.

use chrono::{DateTime, Utc};
use domain::entities::{
    Agent, ApiKey, AuditRecord, Tenant, TenantStatus, User, UserCredentials, UserStatus,
};
use domain::ports::StoreError;
use domain::values::{Email, MaxTokens, ModelRef, Name, Slug, Temperature};
use domain::{AgentId, ApiKeyId, AuditEntryId, Role, Scopes, TenantId, UserId};
use sea_orm::FromQueryResult;
use uuid::Uuid;

use crate::error::corrupt;

pub(crate) const TENANT_COLUMNS: &str = "id, name, slug, status, created_at, updated_at";

#[derive(Debug, FromQueryResult)]
pub(crate) struct TenantRow {
    id: Uuid,
    name: String,
    slug: String,
    status: String,
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
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

pub(crate) const USER_COLUMNS: &str = "tenant_id, id, email, name, password_hash, role, status, \
     created_at, updated_at, deleted_at, deleted_by";

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

pub(crate) const AGENT_COLUMNS: &str = "tenant_id, id, name, slug, description, system_prompt, \
     model_provider, model_name, temperature, max_tokens, metadata, created_at, updated_at, \
     deleted_at, deleted_by";

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
