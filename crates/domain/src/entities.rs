//! What the platform stores, as the domain sees it.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::error::Resource;
use crate::ids::{
    AgentId, ApiKeyId, AuditEntryId, ChunkId, CollectionId, ConversationId, DocumentId,
    GenerationId, JobId, MessageId, PlatformKeyId, RunId, TenantId, UserId,
};
use crate::ports::{SearchMode, TokenUsage, ToolCall};
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
    /// Tokens its principals may use through the API per UTC day; `None`: no limit.
    pub daily_token_quota: Option<u64>,
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
    /// Collections the agent retrieves from (ids of its tenant; deleted ones are skipped).
    pub collections: Vec<CollectionId>,
    pub retrieval: Retrieval,
    pub tools: Vec<AgentTool>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub deleted_by: Option<uuid::Uuid>,
}

/// How an agent retrieves sources for a turn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Retrieval {
    /// 1..=50.
    pub top_k: u32,
    pub mode: SearchMode,
    /// Vector mode only: drop hits below this cosine similarity.
    pub min_score: Option<f32>,
}

impl Retrieval {
    pub const MAX_TOP_K: u32 = 50;
}

impl Default for Retrieval {
    fn default() -> Self {
        Self {
            top_k: 6,
            mode: SearchMode::Hybrid,
            min_score: None,
        }
    }
}

/// A tool an agent may offer its model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentTool {
    /// Searches the agent's collections; its results become numbered sources.
    KnowledgeSearch,
}

impl AgentTool {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::KnowledgeSearch => "knowledge_search",
        }
    }

    /// # Errors
    /// When the text names no tool.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "knowledge_search" => Ok(Self::KnowledgeSearch),
            other => Err(format!("unknown tool {other:?}; expected knowledge_search")),
        }
    }
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
    pub collections: Vec<CollectionId>,
    pub retrieval: Retrieval,
    pub tools: Vec<AgentTool>,
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
    pub collections: Option<Vec<CollectionId>>,
    pub retrieval: Option<Retrieval>,
    pub tools: Option<Vec<AgentTool>>,
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
    ConversationId => Conversation,
    crate::ids::ProviderId => Provider,
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
    /// Chunks in the active generation (the database's triggers keep it exact); the search
    /// planner reads it.
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

/// Who owns a conversation, or started a run: a user or an API key of the tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Owner {
    User(UserId),
    ApiKey(ApiKeyId),
}

impl Owner {
    #[must_use]
    pub const fn kind(self) -> &'static str {
        match self {
            Self::User(_) => "user",
            Self::ApiKey(_) => "api_key",
        }
    }

    #[must_use]
    pub const fn id(self) -> uuid::Uuid {
        match self {
            Self::User(id) => id.as_uuid(),
            Self::ApiKey(id) => id.as_uuid(),
        }
    }

    /// # Errors
    /// When `kind` names no owner kind.
    pub fn parse(kind: &str, id: uuid::Uuid) -> Result<Self, String> {
        match kind {
            "user" => Ok(Self::User(UserId::from_uuid(id))),
            "api_key" => Ok(Self::ApiKey(ApiKeyId::from_uuid(id))),
            other => Err(format!("unknown owner kind {other:?}")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    pub id: ConversationId,
    pub tenant_id: TenantId,
    pub agent_id: AgentId,
    pub title: String,
    pub owner: Owner,
    pub last_active_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
    pub deleted_by: Option<uuid::Uuid>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewConversation {
    pub id: ConversationId,
    pub agent_id: AgentId,
    pub title: String,
    pub owner: Owner,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConversationFilter {
    pub agent_id: Option<AgentId>,
    /// Only this owner's; `None` for every conversation of the tenant (admins).
    pub owner: Option<Owner>,
    pub include_deleted: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageRole {
    User,
    Assistant,
    Tool,
}

impl MessageRole {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Assistant => "assistant",
            Self::Tool => "tool",
        }
    }

    /// # Errors
    /// When the text names no role.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "user" => Ok(Self::User),
            "assistant" => Ok(Self::Assistant),
            "tool" => Ok(Self::Tool),
            other => Err(format!("unknown message role {other:?}")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageStatus {
    /// Waiting for its run to start.
    Pending,
    /// Being generated.
    Streaming,
    Complete,
    Failed,
    Cancelled,
}

impl MessageStatus {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Streaming => "streaming",
            Self::Complete => "complete",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// # Errors
    /// When the text names no status.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "pending" => Ok(Self::Pending),
            "streaming" => Ok(Self::Streaming),
            "complete" => Ok(Self::Complete),
            "failed" => Ok(Self::Failed),
            "cancelled" => Ok(Self::Cancelled),
            other => Err(format!("unknown message status {other:?}")),
        }
    }

    /// Whether the message is still being written.
    #[must_use]
    pub const fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Streaming)
    }
}

/// Why a message or run failed, safe to show to its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// One of [`failure_codes`].
    pub code: String,
    pub message: String,
}

/// The codes of a failed run, stored with it and shown to its owner; the HTTP edge answers each
/// with a status of its own.
pub mod failure_codes {
    /// The provider answered with an error.
    pub const MODEL_ERROR: &str = "model_error";
    pub const MODEL_TIMEOUT: &str = "model_timeout";
    /// The provider does not know the model.
    pub const MODEL_UNAVAILABLE: &str = "model_unavailable";
    /// The provider's answer could not be read.
    pub const MODEL_BAD_RESPONSE: &str = "model_bad_response";
    /// The prompt and room for the answer do not fit the model's window.
    pub const CONTEXT_EXCEEDED: &str = "context_exceeded";
    /// The local model's queue is full.
    pub const SERVER_BUSY: &str = "server_busy";
    /// The local model failed (a thread that died, a tokenizer that failed).
    pub const MODEL_INTERNAL: &str = "model_internal";
    /// The process running the run stopped before it ended (its lease ran out).
    pub const INCOMPLETE: &str = "incomplete";
    /// The platform failed; its log says why.
    pub const INTERNAL: &str = "internal";
    /// The request cannot be served by the agent's model.
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// The tenant's daily token quota cannot cover the answer.
    pub const QUOTA_EXCEEDED: &str = "quota_exceeded";

    /// Every code, for whoever must answer each.
    pub const ALL: [&str; 11] = [
        MODEL_ERROR,
        MODEL_TIMEOUT,
        MODEL_UNAVAILABLE,
        MODEL_BAD_RESPONSE,
        CONTEXT_EXCEEDED,
        SERVER_BUSY,
        MODEL_INTERNAL,
        INCOMPLETE,
        INTERNAL,
        INVALID_REQUEST,
        QUOTA_EXCEEDED,
    ];
}

impl Failure {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// One marker occurrence in a stored answer, and the source it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Citation {
    /// The source's number in the prompt.
    pub n: u32,
    /// Code point offsets of the marker in the stored answer, end exclusive.
    pub start: usize,
    pub end: usize,
    pub chunk_id: ChunkId,
    pub document_id: DocumentId,
    pub document_title: String,
    pub collection_id: CollectionId,
    /// The cited chunk's text, bounded (an ellipsis ends a cut).
    pub snippet: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub parent_id: Option<MessageId>,
    pub role: MessageRole,
    /// Exactly what was sent to or received from the model (markers rewritten as citations say).
    pub content: String,
    /// Assistant messages: the calls the model made, raw.
    pub tool_calls: Vec<ToolCall>,
    /// Tool messages: the call this result answers.
    pub tool_call_id: Option<String>,
    pub citations: Vec<Citation>,
    pub model: Option<ModelRef>,
    pub usage: Option<TokenUsage>,
    pub latency_ms: Option<u32>,
    pub status: MessageStatus,
    pub error: Option<Failure>,
    pub run_id: Option<RunId>,
    pub created_at: DateTime<Utc>,
}

impl Message {
    /// A complete message of a run, with nothing yet about its model, usage or citations.
    #[must_use]
    pub fn new(
        conversation_id: ConversationId,
        parent_id: Option<MessageId>,
        role: MessageRole,
        content: String,
        run_id: RunId,
        created_at: DateTime<Utc>,
    ) -> Self {
        Self {
            id: MessageId::new(),
            conversation_id,
            parent_id,
            role,
            content,
            tool_calls: Vec::new(),
            tool_call_id: None,
            citations: Vec::new(),
            model: None,
            usage: None,
            latency_ms: None,
            status: MessageStatus::Complete,
            error: None,
            run_id: Some(run_id),
            created_at,
        }
    }
}

impl crate::services::history::InTree for Message {
    fn id(&self) -> MessageId {
        self.id
    }
    fn parent_id(&self) -> Option<MessageId> {
        self.parent_id
    }
}

/// A message as a turn's history holds it: what was said, by whom, and where it hangs in the
/// tree. A prompt never holds a message's citations, model or usage, and a long conversation is
/// read on every turn, so its history is read without them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryMessage {
    pub id: MessageId,
    pub parent_id: Option<MessageId>,
    pub role: MessageRole,
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub tool_call_id: Option<String>,
    pub status: MessageStatus,
}

impl From<&Message> for HistoryMessage {
    fn from(m: &Message) -> Self {
        Self {
            id: m.id,
            parent_id: m.parent_id,
            role: m.role,
            content: m.content.clone(),
            tool_calls: m.tool_calls.clone(),
            tool_call_id: m.tool_call_id.clone(),
            status: m.status,
        }
    }
}

impl crate::services::history::InTree for HistoryMessage {
    fn id(&self) -> MessageId {
        self.id
    }
    fn parent_id(&self) -> Option<MessageId> {
        self.parent_id
    }
}

/// How an open message ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageOutcome {
    pub content: String,
    pub tool_calls: Vec<ToolCall>,
    pub citations: Vec<Citation>,
    pub usage: TokenUsage,
    pub latency_ms: u32,
    pub status: MessageStatus,
    pub error: Option<Failure>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rating {
    Up,
    Down,
}

impl Rating {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
        }
    }

    /// # Errors
    /// When the text is neither `up` nor `down`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "up" => Ok(Self::Up),
            "down" => Ok(Self::Down),
            _ => Err("must be \"up\" or \"down\"".into()),
        }
    }
}

/// One principal's rating of one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Feedback {
    pub message_id: MessageId,
    pub owner: Owner,
    pub rating: Rating,
    pub comment: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    Queued,
    InProgress,
    Completed,
    Failed,
    Cancelled,
}

impl RunStatus {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// # Errors
    /// When the text names no status.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "queued" => Ok(Self::Queued),
            "in_progress" => Ok(Self::InProgress),
            "completed" => Ok(Self::Completed),
            "failed" => Ok(Self::Failed),
            "cancelled" => Ok(Self::Cancelled),
            other => Err(format!("unknown run status {other:?}")),
        }
    }

    #[must_use]
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// Token counts of what went into a prompt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PromptTokens {
    pub system: u32,
    pub history: u32,
    pub sources: u32,
    pub question: u32,
}

/// What went into a run's prompt, so that a user can see why the agent answered as it did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunContext {
    pub kept_message_ids: Vec<MessageId>,
    pub dropped_message_ids: Vec<MessageId>,
    pub chunk_ids: Vec<ChunkId>,
    pub tokens: PromptTokens,
    /// The question was longer than the embedder's window: its leading window was searched.
    pub query_truncated: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub id: RunId,
    pub tenant_id: TenantId,
    pub conversation_id: Option<ConversationId>,
    /// The answer being written.
    pub message_id: Option<MessageId>,
    /// The message being answered.
    pub user_message_id: Option<MessageId>,
    pub agent_id: AgentId,
    pub started_by: Owner,
    pub model: ModelRef,
    pub status: RunStatus,
    pub usage: TokenUsage,
    pub error: Option<Failure>,
    pub context: RunContext,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Until when the process running it holds it; past this, the run is `incomplete`.
    pub lease_until: DateTime<Utc>,
    /// What it holds reserved against the tenant's daily quota (none without a quota).
    pub reserved: Option<crate::ports::Reservation>,
}

/// How a run ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    pub status: RunStatus,
    pub usage: TokenUsage,
    pub error: Option<Failure>,
    pub context: RunContext,
}
