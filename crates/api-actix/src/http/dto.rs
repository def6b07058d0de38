//! Wire types: what clients send and receive. Domain entities convert into these explicitly, so
//! the JSON contract changes only when this file does.

use chrono::{DateTime, Utc};
use domain::entities::{Agent, ApiKey, AuditRecord, Tenant, User};
use domain::page::Page;
use domain::{Principal, Scope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::extract::encode_cursor;
use crate::http::rules::{
    EmailText, Metadata, ModelNameText, NameText, PasswordText, ProviderText, QueryText,
    SearchFilter, SlugText,
};

/// A page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct List<T: ToSchema> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl<T: ToSchema> List<T> {
    pub fn from_page<D>(page: Page<D>, convert: impl FnMut(D) -> T) -> Self {
        let next_cursor = page.next.map(encode_cursor);
        Self {
            items: page.items.into_iter().map(convert).collect(),
            next_cursor,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantDto {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    /// `active` or `suspended`.
    pub status: String,
    /// Tokens the tenant may use through the API per UTC day (chat tokens and embedding calls;
    /// ingestion is not counted); null: no limit.
    pub daily_token_quota: Option<u64>,
    /// Tokens counted today (UTC); shown by `GET /v1/tenant`, null elsewhere.
    pub tokens_used_today: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Tenant> for TenantDto {
    fn from(t: Tenant) -> Self {
        Self {
            id: t.id.as_uuid(),
            name: t.name.into_string(),
            slug: t.slug.to_string(),
            status: t.status.as_str().to_owned(),
            daily_token_quota: t.daily_token_quota,
            tokens_used_today: None,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// `PATCH /v1/tenants/{id}` (platform keys).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTenantSettingsRequest {
    /// Tokens per UTC day, or null to lift the limit.
    #[serde(deserialize_with = "double_option")]
    #[schema(value_type = Option<u64>, minimum = 0, required = true)]
    pub daily_token_quota: Option<Option<u64>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserDto {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub email: String,
    pub name: Option<String>,
    /// `admin` or `member`.
    pub role: String,
    /// `active` or `disabled`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub deleted_by: Option<Uuid>,
}

impl From<User> for UserDto {
    fn from(u: User) -> Self {
        Self {
            id: u.id.as_uuid(),
            tenant_id: u.tenant_id.as_uuid(),
            email: u.email.to_string(),
            name: u.name,
            role: u.role.as_str().to_owned(),
            status: u.status.as_str().to_owned(),
            created_at: u.created_at,
            updated_at: u.updated_at,
            deleted_at: u.deleted_at,
            deleted_by: u.deleted_by,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The tenant's slug.
    pub tenant: String,
    pub email: String,
    pub password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogoutRequest {
    /// Also revoke this refresh token's family.
    pub refresh_token: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    pub current_password: String,
    #[schema(value_type = PasswordText)]
    pub new_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPasswordRequest {
    #[schema(value_type = PasswordText)]
    pub new_password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokensDto {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `bearer`.
    pub token_type: String,
    /// Lifetime of the access token, in seconds.
    pub expires_in: u64,
    pub user: UserDto,
}

impl From<domain::services::TokenPair> for TokensDto {
    fn from(p: domain::services::TokenPair) -> Self {
        Self {
            access_token: p.access_token,
            refresh_token: p.refresh_token,
            token_type: "bearer".into(),
            expires_in: p.expires_in,
            user: p.user.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CallerKeyDto {
    pub id: Uuid,
    pub scopes: Vec<String>,
}

/// Who the caller is: a user, or an API key, with their tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeDto {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<UserDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<CallerKeyDto>,
    pub tenant: TenantDto,
}

pub fn scope_names(principal: &Principal) -> Vec<String> {
    principal
        .scopes()
        .iter()
        .map(|s: Scope| s.as_str().to_owned())
        .collect()
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenantRequest {
    #[schema(value_type = NameText)]
    pub name: String,
    #[schema(value_type = SlugText)]
    pub slug: String,
    #[schema(value_type = EmailText)]
    pub admin_email: String,
    /// Generated (and returned once) when omitted.
    #[schema(value_type = Option<PasswordText>)]
    pub admin_password: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedTenantDto {
    pub tenant: TenantDto,
    pub admin: UserDto,
    /// Shown once.
    pub admin_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchTenantRequest {
    #[schema(value_type = Option<NameText>)]
    pub name: Option<String>,
}

/// The values of a user's role, for the document (the field is read as text and checked).
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum RoleName {
    Admin,
    Member,
}

/// The values of a user's status, for the document.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum UserStatusName {
    Active,
    Disabled,
}

/// The values of an API key's scopes, for the document.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum ScopeName {
    Read,
    Write,
    Admin,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUserRequest {
    #[schema(value_type = EmailText)]
    pub email: String,
    #[schema(value_type = PasswordText)]
    pub password: String,
    #[schema(value_type = RoleName)]
    pub role: String,
    /// At most 200 characters; surrounding whitespace is removed.
    #[schema(max_length = 200)]
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchUserRequest {
    /// A string (at most 200 characters; surrounding whitespace is removed) sets the name,
    /// null clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 200)]
    pub name: Option<Option<String>>,
    #[schema(value_type = Option<RoleName>)]
    pub role: Option<String>,
    #[schema(value_type = Option<UserStatusName>)]
    pub status: Option<String>,
}

/// An integer as JSON Schema counts one: `3` and `3.0` alike (clients that hold every number as
/// a float send the latter). Fractions and numbers beyond `i64` are refused.
fn integer<'de, D>(de: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let Some(number) = Option::<serde_json::Number>::deserialize(de)? else {
        return Ok(None);
    };
    if let Some(n) = number.as_i64() {
        return Ok(Some(n));
    }
    // 2^63 is exact as a float; anything at or beyond it (or below -2^63) does not fit.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    match number.as_f64() {
        #[allow(clippy::cast_possible_truncation)]
        Some(f) if f.fract() == 0.0 && (-LIMIT..LIMIT).contains(&f) => Ok(Some(f as i64)),
        _ => Err(serde::de::Error::custom(format!(
            "invalid value: {number}, expected an integer"
        ))),
    }
}

/// Reads a nested object as an object only: derived struct readers also take an array of the
/// fields' values in order, which the document does not allow.
fn object<'de, D, T>(de: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let map = serde_json::Map::deserialize(de)?;
    T::deserialize(serde_json::Value::Object(map)).map_err(serde::de::Error::custom)
}

/// [`object`] for an optional field.
fn optional_object<'de, D, T>(de: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    Option::<serde_json::Map<String, serde_json::Value>>::deserialize(de)?
        .map(|map| T::deserialize(serde_json::Value::Object(map)).map_err(serde::de::Error::custom))
        .transpose()
}

/// Tells an absent field (`None`) from an explicit null (`Some(None)`).
pub fn double_option<'de, D, T>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyDto {
    pub id: Uuid,
    pub name: String,
    /// The first characters of the key, to tell keys apart.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for ApiKeyDto {
    fn from(k: ApiKey) -> Self {
        Self {
            id: k.id.as_uuid(),
            name: k.name.into_string(),
            prefix: k.prefix,
            scopes: k.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
            created_by: k.created_by,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKeyRequest {
    #[schema(value_type = NameText)]
    pub name: String,
    /// At least one of `read`, `write`, `admin`.
    #[schema(value_type = Vec<ScopeName>, min_items = 1)]
    pub scopes: Vec<String>,
    /// In the future (422 otherwise); never expires when omitted.
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedApiKeyDto {
    #[serde(flatten)]
    pub api_key: ApiKeyDto,
    /// The key itself: shown once, stored only as a hash.
    pub key: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelDto {
    /// `local`, `openai`, or another configured provider.
    #[schema(value_type = ProviderText)]
    pub provider: String,
    #[schema(value_type = ModelNameText)]
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentDto {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: String,
    pub system_prompt: String,
    pub model: ModelDto,
    pub temperature: f32,
    pub max_tokens: u32,
    pub metadata: serde_json::Value,
    /// Collections the agent retrieves from (deleted ones are skipped).
    pub collections: Vec<Uuid>,
    pub retrieval: RetrievalDto,
    pub tools: Vec<ToolName>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub deleted_by: Option<Uuid>,
}

/// How an agent retrieves sources for a turn.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetrievalDto {
    pub top_k: u32,
    pub mode: SearchModeName,
    /// Vector mode only: hits below this cosine similarity are dropped.
    pub min_score: Option<f32>,
}

/// Retrieval settings; absent fields take their defaults (`top_k` 6, `mode` hybrid).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrievalRequest {
    #[serde(default, deserialize_with = "integer")]
    #[schema(minimum = 1, maximum = 50)]
    pub top_k: Option<i64>,
    pub mode: Option<SearchModeName>,
    #[schema(minimum = -1.0, maximum = 1.0)]
    pub min_score: Option<f64>,
}

impl From<RetrievalRequest> for domain::services::RetrievalDraft {
    fn from(r: RetrievalRequest) -> Self {
        Self {
            top_k: r.top_k,
            mode: r.mode.map(Into::into),
            min_score: r.min_score,
        }
    }
}

/// A tool an agent may offer its model.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolName {
    /// Searches the agent's collections (offered to models that take tools; others get the
    /// retrieved sources in the prompt).
    KnowledgeSearch,
}

impl From<ToolName> for String {
    fn from(t: ToolName) -> Self {
        match t {
            ToolName::KnowledgeSearch => "knowledge_search".to_owned(),
        }
    }
}

impl From<Agent> for AgentDto {
    fn from(a: Agent) -> Self {
        Self {
            id: a.id.as_uuid(),
            name: a.name.into_string(),
            slug: a.slug.to_string(),
            description: a.description,
            system_prompt: a.system_prompt,
            model: ModelDto {
                provider: a.model.provider().to_owned(),
                name: a.model.name().to_owned(),
            },
            temperature: a.temperature.value(),
            max_tokens: a.max_tokens.value(),
            metadata: a.metadata,
            collections: a.collections.iter().map(|c| c.as_uuid()).collect(),
            retrieval: RetrievalDto {
                top_k: a.retrieval.top_k,
                mode: a.retrieval.mode.into(),
                min_score: a.retrieval.min_score,
            },
            tools: a
                .tools
                .iter()
                .map(|t| match t {
                    domain::entities::AgentTool::KnowledgeSearch => ToolName::KnowledgeSearch,
                })
                .collect(),
            created_at: a.created_at,
            updated_at: a.updated_at,
            deleted_at: a.deleted_at,
            deleted_by: a.deleted_by,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgentRequest {
    #[schema(value_type = NameText)]
    pub name: String,
    /// Unique among the tenant's live agents.
    #[schema(value_type = SlugText)]
    pub slug: String,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[schema(max_length = 100_000)]
    pub system_prompt: Option<String>,
    #[serde(deserialize_with = "object")]
    pub model: ModelDto,
    /// Default 0.7.
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    /// Default 1024.
    #[serde(default, deserialize_with = "integer")]
    #[schema(minimum = 1, maximum = 128_000)]
    pub max_tokens: Option<i64>,
    #[schema(value_type = Option<Metadata>)]
    pub metadata: Option<serde_json::Value>,
    /// Ids of the tenant's collections to retrieve from (at most 20).
    #[schema(max_items = 20)]
    pub collections: Option<Vec<Uuid>>,
    #[serde(default, deserialize_with = "optional_object")]
    pub retrieval: Option<RetrievalRequest>,
    pub tools: Option<Vec<ToolName>>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelPatch {
    #[schema(value_type = Option<ProviderText>)]
    pub provider: Option<String>,
    #[schema(value_type = Option<ModelNameText>)]
    pub name: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchAgentRequest {
    #[schema(value_type = Option<NameText>)]
    pub name: Option<String>,
    #[schema(value_type = Option<SlugText>)]
    pub slug: Option<String>,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    #[schema(max_length = 100_000)]
    pub system_prompt: Option<String>,
    #[serde(default, deserialize_with = "optional_object")]
    pub model: Option<ModelPatch>,
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    #[serde(default, deserialize_with = "integer")]
    #[schema(minimum = 1, maximum = 128_000)]
    pub max_tokens: Option<i64>,
    #[schema(value_type = Option<Metadata>)]
    pub metadata: Option<serde_json::Value>,
    /// Replaces the agent's collections.
    #[schema(max_items = 20)]
    pub collections: Option<Vec<Uuid>>,
    /// Replaces the retrieval settings as a whole (absent fields take their defaults).
    #[serde(default, deserialize_with = "optional_object")]
    pub retrieval: Option<RetrievalRequest>,
    /// Replaces the agent's tools.
    pub tools: Option<Vec<ToolName>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPrincipalDto {
    /// `user`, `api_key`, `platform_key` or `system`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: Uuid,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryDto {
    pub id: Uuid,
    pub at: DateTime<Utc>,
    pub principal: AuditPrincipalDto,
    /// `created`, `updated`, `deleted`, `restored`, `purged` or `revoked`.
    pub action: String,
    pub resource_type: String,
    pub resource_id: Uuid,
    pub detail: serde_json::Value,
}

impl From<AuditRecord> for AuditEntryDto {
    fn from(r: AuditRecord) -> Self {
        Self {
            id: r.id.as_uuid(),
            at: r.at,
            principal: AuditPrincipalDto {
                kind: r.actor_type,
                id: r.actor_id,
            },
            action: r.action,
            resource_type: r.resource_type,
            resource_id: r.resource_id,
            detail: r.detail,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthDto {
    /// `ok`, or `unavailable` when a dependency does not answer.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<String>,
    /// `ok`, or `unavailable` when a registered space's vector index is missing or not valid
    /// (searches there still answer, by a much slower exact scan; the log says which space).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector_indexes: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SpaceDto {
    /// e.g. `local-minilm-l6-v2`.
    pub id: String,
    /// `local` or `openai`.
    pub provider: String,
    pub model: String,
    pub dimensions: u32,
}

impl From<domain::entities::EmbeddingSpace> for SpaceDto {
    fn from(s: domain::entities::EmbeddingSpace) -> Self {
        Self {
            id: s.id,
            provider: s.provider,
            model: s.model,
            dimensions: s.dimensions,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SpaceList {
    pub items: Vec<SpaceDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionDto {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub space: SpaceDto,
    pub document_count: i64,
    pub byte_count: i64,
    pub last_active_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl From<domain::entities::Collection> for CollectionDto {
    fn from(c: domain::entities::Collection) -> Self {
        Self {
            id: c.id.as_uuid(),
            name: c.name.into_string(),
            description: c.description,
            space: c.space.into(),
            document_count: c.document_count,
            byte_count: c.byte_count,
            last_active_at: c.last_active_at,
            created_at: c.created_at,
            updated_at: c.updated_at,
            deleted_at: c.deleted_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCollectionRequest {
    #[schema(value_type = NameText)]
    pub name: String,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// An id from `GET /v1/spaces` (422 for another); the local MiniLM space when omitted.
    pub space_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchCollectionRequest {
    #[schema(value_type = Option<NameText>)]
    pub name: Option<String>,
    #[schema(max_length = 2000)]
    pub description: Option<String>,
    /// Not part of the contract (so not in the document): read only to answer why it is
    /// refused, since the space changes only by re-embedding.
    #[schema(ignore)]
    pub space_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDocumentRequest {
    #[schema(value_type = NameText)]
    pub title: String,
    /// The document itself, as text.
    pub content: String,
    /// `text/plain` when omitted; another type answers 415.
    #[schema(value_type = Option<TextType>)]
    pub content_type: Option<String>,
    /// Copied to every chunk for search filters.
    #[schema(value_type = Option<Metadata>)]
    pub metadata: Option<serde_json::Value>,
}

/// A document as a file (`multipart/form-data`).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Describes the form for the OpenAPI document; `DocumentBody` reads it.
pub struct DocumentForm {
    /// `.txt`, `.md`, `.html` or `.pdf`; the type comes from the part's `Content-Type`, else
    /// from the file name.
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// Defaults to the file name.
    #[schema(value_type = Option<NameText>)]
    pub title: Option<String>,
    /// A JSON object; an empty field counts as absent.
    #[schema(value_type = Option<Metadata>)]
    pub metadata: Option<String>,
}

/// Re-embed a collection into another (or the same) embedding space.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReembedRequest {
    pub space_id: String,
}

/// The job building the new generation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReembedResponse {
    pub job: JobDto,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentDto {
    pub id: Uuid,
    pub collection_id: Uuid,
    pub title: String,
    pub content_type: String,
    pub metadata: serde_json::Value,
    /// Hex SHA-256 of the uploaded bytes.
    pub content_hash: String,
    pub byte_count: i64,
    /// `pending`, `processing`, `ready` or `failed`.
    pub status: String,
    pub error: Option<String>,
    /// The extracted text (single-document reads only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl From<domain::entities::Document> for DocumentDto {
    fn from(d: domain::entities::Document) -> Self {
        Self {
            id: d.id.as_uuid(),
            collection_id: d.collection_id.as_uuid(),
            title: d.title.into_string(),
            content_type: d.content_type.mime().to_owned(),
            metadata: d.metadata,
            content_hash: d.content_hash.iter().map(|b| format!("{b:02x}")).collect(),
            byte_count: d.byte_count,
            status: d.status.as_str().to_owned(),
            error: d.error,
            content: d.content,
            created_at: d.created_at,
            updated_at: d.updated_at,
            deleted_at: d.deleted_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressDto {
    /// Chunks embedded so far.
    pub done: i32,
    /// Chunks in all (0 until the document is chunked).
    pub total: i32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobDto {
    pub id: Uuid,
    /// `ingest` or `reembed`.
    pub kind: String,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub state: String,
    pub collection_id: Uuid,
    pub document_id: Option<Uuid>,
    pub progress: ProgressDto,
    pub error: Option<String>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<domain::entities::Job> for JobDto {
    fn from(j: domain::entities::Job) -> Self {
        Self {
            id: j.id.as_uuid(),
            kind: j.kind.as_str().to_owned(),
            state: j.state.as_str().to_owned(),
            collection_id: j.collection_id.as_uuid(),
            document_id: j.document_id.map(|d| d.as_uuid()),
            progress: ProgressDto {
                done: j.progress_done,
                total: j.progress_total,
            },
            error: j.error,
            attempts: j.attempts,
            created_at: j.created_at,
            updated_at: j.updated_at,
        }
    }
}

/// An upload's answer: the job is absent when the same content was already in the collection.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadedDto {
    pub document: DocumentDto,
    pub job: Option<JobDto>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequestDto {
    #[schema(value_type = QueryText)]
    pub query: String,
    /// Default 10.
    #[serde(default, deserialize_with = "integer")]
    #[schema(minimum = 1, maximum = 100)]
    pub top_k: Option<i64>,
    /// `hybrid` when omitted.
    pub mode: Option<SearchModeName>,
    #[schema(value_type = Option<SearchFilter>)]
    pub filter: Option<serde_json::Map<String, serde_json::Value>>,
    /// Vector mode only: the lowest cosine similarity to return.
    #[schema(minimum = -1.0, maximum = 1.0)]
    pub min_score: Option<f64>,
    /// Hybrid mode only: the vector list's weight in the fusion (the full-text list gets the
    /// rest); 0.5 when omitted.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub hybrid_weight: Option<f64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MultiSearchRequestDto {
    #[schema(min_items = 1, max_items = 20)]
    pub collection_ids: Vec<Uuid>,
    #[schema(value_type = QueryText)]
    pub query: String,
    #[serde(default, deserialize_with = "integer")]
    #[schema(minimum = 1, maximum = 100)]
    pub top_k: Option<i64>,
    pub mode: Option<SearchModeName>,
    #[schema(value_type = Option<SearchFilter>)]
    pub filter: Option<serde_json::Map<String, serde_json::Value>>,
    #[schema(minimum = -1.0, maximum = 1.0)]
    pub min_score: Option<f64>,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub hybrid_weight: Option<f64>,
}

/// What a hit's score measures: cosine similarity (vector search), BM25 (full text), the
/// weighted sum of both lists' scores scaled to 0..1 (hybrid search), or reciprocal rank fusion
/// (searches over collections of different spaces).
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum ScoreKindName {
    CosineSimilarity,
    Bm25,
    WeightedSum,
    Rrf,
}

/// How a search ranks.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchModeName {
    Vector,
    Fulltext,
    Hybrid,
}

impl From<SearchRequestDto> for domain::services::SearchRequest {
    fn from(r: SearchRequestDto) -> Self {
        Self {
            query: r.query,
            top_k: r.top_k,
            mode: r.mode.map(Into::into),
            filter: r.filter,
            min_score: r.min_score,
            hybrid_weight: r.hybrid_weight,
        }
    }
}

impl MultiSearchRequestDto {
    /// The collections, and the search to run in them. (The fields repeat `SearchRequestDto`'s
    /// because serde cannot refuse unknown fields across `flatten`, and the document would not
    /// say `additionalProperties: false` truthfully of an `allOf`.)
    pub fn split(self) -> (Vec<domain::CollectionId>, domain::services::SearchRequest) {
        let Self {
            collection_ids,
            query,
            top_k,
            mode,
            filter,
            min_score,
            hybrid_weight,
        } = self;
        let search = SearchRequestDto {
            query,
            top_k,
            mode,
            filter,
            min_score,
            hybrid_weight,
        };
        let ids = collection_ids
            .into_iter()
            .map(domain::CollectionId::from_uuid)
            .collect();
        (ids, search.into())
    }
}

impl From<domain::ports::SearchMode> for SearchModeName {
    fn from(mode: domain::ports::SearchMode) -> Self {
        match mode {
            domain::ports::SearchMode::Vector => Self::Vector,
            domain::ports::SearchMode::Fulltext => Self::Fulltext,
            domain::ports::SearchMode::Hybrid => Self::Hybrid,
        }
    }
}

impl From<SearchModeName> for domain::ports::SearchMode {
    fn from(mode: SearchModeName) -> Self {
        match mode {
            SearchModeName::Vector => Self::Vector,
            SearchModeName::Fulltext => Self::Fulltext,
            SearchModeName::Hybrid => Self::Hybrid,
        }
    }
}

/// The types a document sent as JSON text may declare.
#[derive(Clone, Copy, Debug, ToSchema)]
pub enum TextType {
    #[serde(rename = "text/plain")]
    Plain,
    #[serde(rename = "text/markdown")]
    Markdown,
    #[serde(rename = "text/html")]
    Html,
}

impl TextType {
    pub const ALL: [Self; 3] = [Self::Plain, Self::Markdown, Self::Html];

    pub const fn mime(self) -> &'static str {
        match self {
            Self::Plain => "text/plain",
            Self::Markdown => "text/markdown",
            Self::Html => "text/html",
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResultDto {
    pub chunk_id: Uuid,
    pub document_id: Uuid,
    pub document_title: String,
    pub position: u32,
    pub content: String,
    pub score: f32,
    #[schema(value_type = ScoreKindName)]
    pub score_kind: String,
    pub metadata: serde_json::Value,
}

impl From<domain::ports::SearchHit> for SearchResultDto {
    fn from(h: domain::ports::SearchHit) -> Self {
        Self {
            chunk_id: h.chunk_id.as_uuid(),
            document_id: h.document_id.as_uuid(),
            document_title: h.document_title,
            position: h.position,
            content: h.content,
            score: h.score,
            score_kind: h.score_kind.as_str().to_owned(),
            metadata: h.metadata,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResponseDto {
    pub results: Vec<SearchResultDto>,
    /// The query was longer than a search reads (the embedder's window, or full text's first 64
    /// words): its leading part was searched.
    pub query_truncated: bool,
}

impl From<domain::services::Retrieved> for SearchResponseDto {
    fn from(found: domain::services::Retrieved) -> Self {
        Self {
            results: found.hits.into_iter().map(Into::into).collect(),
            query_truncated: found.query_truncated,
        }
    }
}
