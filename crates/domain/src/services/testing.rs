//! Test doubles shared by the service tests: a unit of work made of mockall mocks, and a store that
//! hands it out once and records whether it was committed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};

use crate::entities::{Agent, NewAgent, NewUser, User, UserStatus};
use crate::ids::{ApiKeyId, TenantId, TokenFamilyId, TokenId, UserId};
use crate::ports::{
    AgentRepo, ApiKeyRepo, AuditLog, Clock, CollectionRepo, MockAgentRepo, MockApiKeyRepo,
    MockAuditLog, MockClock, MockCollectionRepo, MockTenantRepo, MockUserRepo, Store, StoreError,
    StoreResult, TenantRepo, TenantTx, UserRepo,
};
use crate::principal::{Principal, Role, Scopes, SessionToken};

pub struct FakeTx {
    pub tenant_id: TenantId,
    pub tenant: MockTenantRepo,
    pub users: MockUserRepo,
    pub api_keys: MockApiKeyRepo,
    pub agents: MockAgentRepo,
    pub collections: MockCollectionRepo,
    pub documents: crate::ports::MockDocumentRepo,
    pub jobs: crate::ports::MockJobRepo,
    pub chunks: crate::ports::MockChunkRepo,
    pub audit: MockAuditLog,
    pub conversations: crate::ports::MockConversationRepo,
    pub messages: crate::ports::MockMessageRepo,
    pub runs: crate::ports::MockRunRepo,
    pub usage: crate::ports::MockUsageRepo,
    pub providers: crate::ports::MockProviderRepo,
    committed: Arc<AtomicBool>,
}

impl FakeTx {
    pub fn new(tenant_id: TenantId) -> Self {
        Self {
            tenant_id,
            tenant: MockTenantRepo::new(),
            users: MockUserRepo::new(),
            api_keys: MockApiKeyRepo::new(),
            agents: MockAgentRepo::new(),
            collections: MockCollectionRepo::new(),
            documents: crate::ports::MockDocumentRepo::new(),
            jobs: crate::ports::MockJobRepo::new(),
            chunks: crate::ports::MockChunkRepo::new(),
            audit: MockAuditLog::new(),
            conversations: crate::ports::MockConversationRepo::new(),
            messages: crate::ports::MockMessageRepo::new(),
            runs: crate::ports::MockRunRepo::new(),
            usage: crate::ports::MockUsageRepo::new(),
            providers: crate::ports::MockProviderRepo::new(),
            committed: Arc::new(AtomicBool::new(false)),
        }
    }
}

#[async_trait]
impl TenantTx for FakeTx {
    fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }
    fn tenant(&mut self) -> &mut dyn TenantRepo {
        &mut self.tenant
    }
    fn users(&mut self) -> &mut dyn UserRepo {
        &mut self.users
    }
    fn api_keys(&mut self) -> &mut dyn ApiKeyRepo {
        &mut self.api_keys
    }
    fn agents(&mut self) -> &mut dyn AgentRepo {
        &mut self.agents
    }
    fn collections(&mut self) -> &mut dyn CollectionRepo {
        &mut self.collections
    }
    fn documents(&mut self) -> &mut dyn crate::ports::DocumentRepo {
        &mut self.documents
    }
    fn jobs(&mut self) -> &mut dyn crate::ports::JobRepo {
        &mut self.jobs
    }
    fn chunks(&mut self) -> &mut dyn crate::ports::ChunkRepo {
        &mut self.chunks
    }
    fn audit(&mut self) -> &mut dyn AuditLog {
        &mut self.audit
    }
    fn conversations(&mut self) -> &mut dyn crate::ports::ConversationRepo {
        &mut self.conversations
    }
    fn messages(&mut self) -> &mut dyn crate::ports::MessageRepo {
        &mut self.messages
    }
    fn runs(&mut self) -> &mut dyn crate::ports::RunRepo {
        &mut self.runs
    }
    fn usage(&mut self) -> &mut dyn crate::ports::UsageRepo {
        &mut self.usage
    }
    fn providers(&mut self) -> &mut dyn crate::ports::ProviderRepo {
        &mut self.providers
    }
    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.committed.store(true, Ordering::SeqCst);
        Ok(())
    }
}

/// Hands out the prepared units of work in order, checking each is opened for its own tenant.
pub struct FakeStore {
    txs: Mutex<Vec<FakeTx>>,
}

#[async_trait]
impl Store for FakeStore {
    async fn begin(&self, tenant: TenantId) -> StoreResult<Box<dyn TenantTx>> {
        let mut txs = self
            .txs
            .lock()
            .map_err(|e| StoreError::Internal(e.to_string().into()))?;
        assert!(
            !txs.is_empty(),
            "the service opened more units of work than the test prepared"
        );
        let tx = txs.remove(0);
        assert_eq!(
            tx.tenant_id, tenant,
            "unit of work opened for the wrong tenant"
        );
        Ok(Box::new(tx))
    }

    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }

    async fn spaces(&self) -> StoreResult<Vec<crate::entities::EmbeddingSpace>> {
        Ok(vec![minilm_space()])
    }

    async fn vector_index_problems(&self) -> StoreResult<Vec<String>> {
        Ok(Vec::new())
    }
}

/// A store with one prepared unit of work, and the flag that tells whether it was committed.
pub fn store_with(tx: FakeTx) -> (Arc<dyn Store>, Arc<AtomicBool>) {
    let committed = tx.committed.clone();
    (
        Arc::new(FakeStore {
            txs: Mutex::new(vec![tx]),
        }),
        committed,
    )
}

pub fn store_with_all(txs: Vec<FakeTx>) -> Arc<dyn Store> {
    Arc::new(FakeStore {
        txs: Mutex::new(txs),
    })
}

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0)
        .single()
        .unwrap_or_default()
}

pub fn fixed_clock() -> Arc<dyn Clock> {
    let mut clock = MockClock::new();
    clock.expect_now().returning(now);
    Arc::new(clock)
}

pub fn admin() -> Principal {
    user_principal(TenantId::new(), UserId::new(), Role::Admin)
}

pub fn user_principal(tenant: TenantId, user: UserId, role: Role) -> Principal {
    Principal::User {
        tenant,
        user,
        role,
        session: SessionToken {
            jti: TokenId::new(),
            family: TokenFamilyId::new(),
            expires_at: now() + chrono::Duration::minutes(15),
        },
    }
}

pub fn member_key_read() -> Principal {
    Principal::ApiKey {
        tenant: TenantId::new(),
        key: ApiKeyId::new(),
        scopes: Scopes::parse(["read"]).unwrap_or_default(),
    }
}

pub fn sample_agent(new: &NewAgent, now: DateTime<Utc>) -> Agent {
    Agent {
        id: new.id,
        tenant_id: TenantId::new(),
        name: new.name.clone(),
        slug: new.slug.clone(),
        description: new.description.clone(),
        system_prompt: new.system_prompt.clone(),
        model: new.model.clone(),
        temperature: new.temperature,
        max_tokens: new.max_tokens,
        metadata: new.metadata.clone(),
        collections: new.collections.clone(),
        retrieval: new.retrieval,
        tools: new.tools.clone(),
        created_at: now,
        updated_at: now,
        deleted_at: None,
        deleted_by: None,
    }
}

/// A tenant in the given state, as its unit of work reads it.
pub fn sample_tenant(
    id: TenantId,
    status: crate::entities::TenantStatus,
) -> crate::entities::Tenant {
    crate::entities::Tenant {
        id,
        name: crate::values::Name::parse("Acme").expect("valid name"),
        slug: crate::values::Slug::parse("acme").expect("valid slug"),
        status,
        daily_token_quota: None,
        created_at: now(),
        updated_at: now(),
    }
}

impl FakeTx {
    /// A unit of work whose tenant reads as `status`, as often as asked.
    pub fn with_tenant(tenant_id: TenantId, status: crate::entities::TenantStatus) -> Self {
        let mut tx = Self::new(tenant_id);
        tx.tenant
            .expect_get()
            .returning(move || Ok(Some(sample_tenant(tenant_id, status))));
        tx
    }
}

pub fn sample_user(tenant: TenantId, new: &NewUser) -> User {
    User {
        id: new.id,
        tenant_id: tenant,
        email: new.email.clone(),
        name: new.name.clone(),
        role: new.role,
        status: UserStatus::Active,
        created_at: now(),
        updated_at: now(),
        deleted_at: None,
        deleted_by: None,
        sessions_valid_after: None,
        sessions_kept_family: None,
    }
}

pub fn minilm_space() -> crate::entities::EmbeddingSpace {
    crate::entities::EmbeddingSpace {
        id: "local-minilm-l6-v2".into(),
        provider: "local".into(),
        model: "all-MiniLM-L6-v2".into(),
        dimensions: 384,
        normalized: true,
    }
}

/// Chat models that know every model name (no generation is expected of them).
pub fn known_models() -> Arc<dyn crate::ports::ChatModels> {
    let mut models = crate::ports::MockChatModels::new();
    models.expect_check().returning(|_| Ok(()));
    models
        .expect_model()
        .returning(|_| Ok(Arc::new(crate::ports::MockChatModel::new())));
    Arc::new(models)
}
