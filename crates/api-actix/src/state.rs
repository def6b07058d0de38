//! The services the handlers call, wired once at start-up and shared by every worker.

use std::sync::Arc;

use cache_redis::RedisCache;
use domain::ports::Store;
use domain::services::{
    AgentService, ApiKeyService, AuditService, AuthService, CollectionService, ConversationService,
    DocumentService, EmbeddingService, Executor, ProviderService, SearchService, TenantService,
    UsageService, UserService,
};

pub struct AppState {
    pub auth: AuthService,
    pub tenants: TenantService,
    pub users: UserService,
    pub api_keys: ApiKeyService,
    pub agents: AgentService,
    pub providers: ProviderService,
    pub collections: CollectionService,
    pub documents: DocumentService,
    pub search: SearchService,
    pub audit: AuditService,
    pub conversations: ConversationService,
    pub usage: Arc<UsageService>,
    pub embeddings: EmbeddingService,
    /// Shared with the tasks that execute runs.
    pub executor: Arc<Executor>,
    /// For readiness checks.
    pub store: Arc<dyn Store>,
    pub cache: RedisCache,
}
