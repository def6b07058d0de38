//! Services hold the business rules. Each public method takes the [`crate::Principal`] that asks,
//! checks what it may do, runs one short unit of work, and writes the audit entry in the same
//! transaction as the change.

mod agents;
mod api_keys;
mod audit;
mod auth;
pub mod citations;
mod collections;
pub mod completions;
mod conversations;
mod documents;
mod embedders;
mod embeddings;
mod execution;
pub mod history;
mod ingest;
mod knowledge_search;
mod lifecycle;
mod live_runs;
pub mod metering;
mod providers;
mod search;
mod tenants;
pub mod tool_rounds;
mod users;

pub use agents::{AgentDraft, AgentPatch, AgentService, RetrievalDraft};
pub use api_keys::{ApiKeyService, CreatedApiKey};
pub use audit::AuditService;
pub use auth::{API_KEY_PREFIX, AuthPolicy, AuthPorts, AuthService, TokenPair, revocation_ttl};
pub use collections::{CollectionPatch, CollectionService};
pub use conversations::{ConversationService, MessageView};
pub use documents::{DocumentService, Upload, Uploaded};
pub use embedders::Embedders;
pub use embeddings::{Embedded, EmbeddingService, MAX_EMBEDDING_INPUTS};
pub use execution::{
    EndedRun, ExecutionPolicy, ExecutionPorts, Executor, FinishedRun, MAX_MESSAGE_CHARS, Parent,
    RunJob, RunsHere, StartedRun, citation_json, usage_json,
};
pub use ingest::{IngestPolicy, IngestWorker};
pub use knowledge_search::KnowledgeSearch;
pub use metering::{QuotaStatus, UsageService};
pub use providers::{
    LOCAL_PROVIDER, ProviderDraft, ProviderPatch, ProviderService, RESERVED_PROVIDERS,
    rotate_secrets,
};
pub use search::{Retrieved, SearchRequest, SearchService};
pub use tenants::{ProvisionedTenant, TenantPorts, TenantService};
pub use users::{UserDraft, UserPatch, UserService};

#[cfg(test)]
pub(crate) mod testing;
