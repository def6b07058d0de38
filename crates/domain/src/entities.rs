//! What the platform stores, as the domain sees it.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::Resource;
use crate::ids::{
    AgentId, ApiKeyId, AuditEntryId, CollectionId, DocumentId, GenerationId, JobId, PlatformKeyId,
    TenantId, UserId,
};
use crate::principal::{Actor, Role, Scopes};
use crate::values::ContentType;
use crate::values::{Email, MaxTokens, ModelRef, Name, Slug, Temperature};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TenantStatus {
    Active,
    Suspended,
}

impl TenantStatus {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
        }
    }

    /// # Errors
    /// When the text names no status.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            _ => Err(format!("unknown tenant status {text:?}")),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: Name,
    pub slug: Slug,
    pub status: TenantStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    Disabled,
}

impl UserStatus {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }

    /// # Errors
    /// When the text names no status.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "active" => Ok(Self::Active),
            "disabled" => Ok(Self::Disabled),
            _ => Err("must be \"active\" or \"disabled\"".into()),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct User {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub email: Email,
    pub name: Option<String>,
    pub role: Role,
    pub status: UserStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub deleted_by: Option<uuid::Uuid>,
    /// Refresh tokens issued before this are dead (but those of `sessions_kept_family`): set
    /// when the user was disabled or deleted, so that re-enabling or restoring it does not
    /// revive the sessions it had, and when its sessions were ended (password change or reset,
    /// logging out everywhere).
    pub sessions_valid_after: Option<DateTime<Utc>>,
    /// The one session that outlived `sessions_valid_after`: the one that changed the password.
    pub sessions_kept_family: Option<crate::ids::TokenFamilyId>,
}

impl User {
    /// Whether a refresh token of `family` issued at `issued_at` was ended with the user's
    /// sessions.
    #[must_use]
    pub fn session_ended(
        &self,
        family: crate::ids::TokenFamilyId,
        issued_at: DateTime<Utc>,
    ) -> bool {
        self.sessions_valid_after
            .is_some_and(|after| issued_at < after && self.sessions_kept_family != Some(family))
    }
}

impl User {
    /// Whether this user may act: live and not disabled.
    #[must_use]
    pub fn is_usable(&self) -> bool {
        self.deleted_at.is_none() && self.status == UserStatus::Active
    }

    #[must_use]
    pub fn is_active_admin(&self) -> bool {
        self.is_usable() && self.role == Role::Admin
    }
}

/// A user with the password hash, read only to verify a login.
#[derive(Clone, Debug)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewUser {
    pub id: UserId,
    pub email: Email,
    pub name: Option<String>,
    pub role: Role,
    pub password_hash: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct UserChanges {
    pub name: Option<Option<String>>,
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
    /// Ends every session issued before the change (`User::sessions_valid_after`).
    pub ends_sessions: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Agent {
    pub id: AgentId,
    pub tenant_id: TenantId,
    pub name: Name,
    pub slug: Slug,
    pub description: String,
    pub system_prompt: String,
    pub model: ModelRef,
    pub temperature: Temperature,
    pub max_tokens: MaxTokens,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub deleted_by: Option<uuid::Uuid>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewAgent {
    pub id: AgentId,
    pub name: Name,
    pub slug: Slug,
    pub description: String,
    pub system_prompt: String,
    pub model: ModelRef,
    pub temperature: Temperature,
    pub max_tokens: MaxTokens,
    pub metadata: Value,
}

/// A partial update; `None` leaves the field as it is.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AgentChanges {
    pub name: Option<Name>,
    pub slug: Option<Slug>,
    pub description: Option<String>,
    pub system_prompt: Option<String>,
    pub model: Option<ModelRef>,
    pub temperature: Option<Temperature>,
    pub max_tokens: Option<MaxTokens>,
    pub metadata: Option<Value>,
}

impl AgentChanges {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentFilter {
    /// Case-insensitive substring of the name or slug.
    pub q: Option<String>,
    pub include_deleted: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub name: Name,
    /// The first characters of the key, shown so people can tell keys apart.
    pub prefix: String,
    pub scopes: Scopes,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub created_by: Option<uuid::Uuid>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub name: Name,
    pub prefix: String,
    pub key_hash: Vec<u8>,
    pub scopes: Scopes,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_by: Actor,
}

/// What a bearer API key resolved to before any tenant is known.
#[derive(Clone, Debug, PartialEq)]
pub enum KeyOwner {
    Tenant {
        tenant: TenantId,
        key: ApiKeyId,
        scopes: Scopes,
        expires_at: Option<DateTime<Utc>>,
        revoked: bool,
        tenant_active: bool,
    },
    Platform {
        key: PlatformKeyId,
        expires_at: Option<DateTime<Utc>>,
        revoked: bool,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct PlatformKey {
    pub id: PlatformKeyId,
    pub name: Name,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditAction {
    Created,
    Updated,
    Deleted,
    Restored,
    Purged,
    Revoked,
    Suspended,
    Resumed,
}

impl AuditAction {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
            Self::Restored => "restored",
            Self::Purged => "purged",
            Self::Revoked => "revoked",
            Self::Suspended => "suspended",
            Self::Resumed => "resumed",
        }
    }
}

/// One line of the append-only audit log, written in the transaction of the change it records.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    pub id: AuditEntryId,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub action: AuditAction,
    pub resource: Resource,
    pub resource_id: uuid::Uuid,
    pub detail: Value,
}

impl AuditEntry {
    /// `actor` did `action` to the resource `id` names (its type says which kind), with no
    /// detail; add one with [`AuditEntry::with_detail`].
    #[must_use]
    pub fn new(at: DateTime<Utc>, actor: Actor, action: AuditAction, id: impl AuditedId) -> Self {
        Self {
            id: AuditEntryId::new(),
            at,
            actor,
            action,
            resource: id.resource(),
            resource_id: id.uuid(),
            detail: Value::Object(serde_json::Map::new()),
        }
    }

    #[must_use]
    pub fn with_detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }
}

/// The id of something the audit log records, which tells of what kind it is.
pub trait AuditedId: Copy {
    fn resource(self) -> Resource;
    fn uuid(self) -> uuid::Uuid;
}

macro_rules! audited_ids {
    ($($id:ty => $resource:ident),* $(,)?) => {
        $(impl AuditedId for $id {
            fn resource(self) -> Resource {
                Resource::$resource
            }
            fn uuid(self) -> uuid::Uuid {
                self.as_uuid()
            }
        })*
    };
}

audited_ids!(
    TenantId => Tenant,
    UserId => User,
    ApiKeyId => ApiKey,
    AgentId => Agent,
    CollectionId => Collection,
    DocumentId => Document,
    JobId => Job,
);

/// An audit entry as read back (types are plain strings there: older entries may name kinds this
/// version no longer has).
#[derive(Clone, Debug, PartialEq)]
pub struct AuditRecord {
    pub id: AuditEntryId,
    pub at: DateTime<Utc>,
    pub actor_type: String,
    pub actor_id: uuid::Uuid,
    pub action: String,
    pub resource_type: String,
    pub resource_id: uuid::Uuid,
    pub detail: Value,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub resource_type: Option<String>,
    pub resource_id: Option<uuid::Uuid>,
}

/// Where vectors live: vectors of two spaces are never compared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddingSpace {
    /// A slug, e.g. `local-minilm-l6-v2`.
    pub id: String,
    pub provider: String,
    pub model: String,
    pub dimensions: u32,
    /// Vectors are L2-normalised (cosine distance then equals a dot product).
    pub normalized: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Collection {
    pub id: CollectionId,
    pub tenant_id: TenantId,
    pub name: Name,
    pub description: String,
    pub space: EmbeddingSpace,
    /// The generation searches read; re-embedding switches it when the new one is complete.
    pub active_generation: GenerationId,
    /// Chunks in the active generation (an estimate: a purged document's may still count); the
    /// search planner reads it.
    pub chunk_count: i64,
    pub document_count: i64,
    pub byte_count: i64,
    pub last_active_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub deleted_by: Option<uuid::Uuid>,
}

/// Where a generation stands: built in the background, searched, or replaced and about to go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenerationState {
    Building,
    Active,
    Retired,
}

impl GenerationState {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Building => "building",
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }

    /// # Errors
    /// When the text names no state.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "building" => Ok(Self::Building),
            "active" => Ok(Self::Active),
            "retired" => Ok(Self::Retired),
            _ => Err(format!("unknown generation state {text:?}")),
        }
    }
}

/// One set of a collection's chunks, all embedded in one space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    pub id: GenerationId,
    pub collection_id: CollectionId,
    pub space_id: String,
    pub state: GenerationState,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewCollection {
    pub id: CollectionId,
    pub name: Name,
    pub description: String,
    pub space_id: String,
    pub generation: GenerationId,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CollectionChanges {
    pub name: Option<Name>,
    pub description: Option<String>,
}

impl CollectionChanges {
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DocumentStatus {
    Pending,
    Processing,
    Ready,
    Failed,
}

impl DocumentStatus {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Processing => "processing",
            Self::Ready => "ready",
            Self::Failed => "failed",
        }
    }

    /// # Errors
    /// When the text names no status.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "pending" => Ok(Self::Pending),
            "processing" => Ok(Self::Processing),
            "ready" => Ok(Self::Ready),
            "failed" => Ok(Self::Failed),
            _ => Err(format!("unknown document status {text:?}")),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub id: DocumentId,
    pub tenant_id: TenantId,
    pub collection_id: CollectionId,
    pub title: Name,
    pub content_type: ContentType,
    pub metadata: Value,
    /// SHA-256 of the uploaded bytes.
    pub content_hash: Vec<u8>,
    pub byte_count: i64,
    pub status: DocumentStatus,
    pub error: Option<String>,
    /// The extracted text; read only where asked for (`get`).
    pub content: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub deleted_by: Option<uuid::Uuid>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewDocument {
    pub id: DocumentId,
    pub collection_id: CollectionId,
    pub title: Name,
    pub content_type: ContentType,
    pub metadata: Value,
    pub content: String,
    pub content_hash: Vec<u8>,
    pub byte_count: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    Ingest,
    Reembed,
}

impl JobKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ingest => "ingest",
            Self::Reembed => "reembed",
        }
    }

    /// # Errors
    /// When the text names no kind.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "ingest" => Ok(Self::Ingest),
            "reembed" => Ok(Self::Reembed),
            _ => Err(format!("unknown job kind {text:?}")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// # Errors
    /// When the text names no state.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "queued" => Ok(Self::Queued),
            "running" => Ok(Self::Running),
            "succeeded" => Ok(Self::Succeeded),
            "failed" => Ok(Self::Failed),
            "cancelled" => Ok(Self::Cancelled),
            _ => Err(format!("unknown job state {text:?}")),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub tenant_id: TenantId,
    pub kind: JobKind,
    pub state: JobState,
    pub collection_id: CollectionId,
    pub document_id: Option<DocumentId>,
    pub generation_id: Option<GenerationId>,
    pub progress_done: i32,
    pub progress_total: i32,
    pub error: Option<String>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
