//! The services the handlers call, wired once at start-up and shared by every worker.

use std::sync::Arc;

use cache_redis::RedisCache;
use domain::ports::Store;
use domain::services::{
    AgentService, ApiKeyService, AuditService, AuthService, CollectionService, ConversationService,
    DocumentService, Executor, SearchService, TenantService, UserService,
};

pub struct AppState {
    pub auth: AuthService,
    pub tenants: TenantService,
    pub users: UserService,
    pub api_keys: ApiKeyService,
    pub agents: AgentService,
    pub collections: CollectionService,
    pub documents: DocumentService,
    pub search: SearchService,
    pub audit: AuditService,
    pub conversations: ConversationService,
    /// Shared with the tasks that execute runs.
    pub executor: Arc<Executor>,
    /// For readiness checks.
    pub store: Arc<dyn Store>,
    pub cache: RedisCache,
}
