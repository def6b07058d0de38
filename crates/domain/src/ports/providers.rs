//! A tenant's own model providers: OpenAI-compatible servers with their API keys, which the
//! platform keeps sealed (encrypted with a key of its configuration, whose id is stored beside the
//! ciphertext so that keys can be rotated).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::ids::{AgentId, ProviderId, TenantId};
use crate::page::{Page, PageRequest};
use crate::ports::{ChatModel, ChatModelUnavailable, StoreResult};

/// A provider as the API shows it: never its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provider {
    pub id: ProviderId,
    pub tenant_id: TenantId,
    /// What agents name as `model.provider`; unique in the tenant; never `local` or `openai`.
    pub name: String,
    pub base_url: String,
    /// The model an agent of this provider gets when it names none of its own.
    pub default_model: Option<String>,
    pub supports_tools: bool,
    /// Its own wait for an answer to start, per attempt (the server's default when `None`).
    pub timeout_secs: Option<u32>,
    /// Its own extra attempts on 429, 5xx and timeouts before the answer starts.
    pub max_retries: Option<u32>,
    /// Which of the platform's secret keys sealed its API key.
    pub key_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// An API key as stored: AES-256-GCM ciphertext (nonce first) under the key `key_id`, bound to
/// its tenant and provider.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    pub key_id: String,
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedSecret")
            .field("key_id", &self.key_id)
            .field("bytes", &self.ciphertext.len())
            .finish()
    }
}

/// Why a secret could not be sealed or opened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("no secret key is configured (AGENTIC_SECRET_KEYS)")]
    NotConfigured,
    #[error("the secret key {0:?} is not configured")]
    UnknownKey(String),
    /// Tampered with, moved to another row, or sealed under another key of the same id.
    #[error("the sealed secret does not open")]
    Corrupt,
}

/// Seals and opens secrets (provider API keys) with the platform's keys.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait SecretBox: Send + Sync {
    /// Seals under the current key; `context` is bound to the ciphertext (it opens with the same
    /// context only).
    ///
    /// # Errors
    /// [`SecretError::NotConfigured`] without keys.
    fn seal(&self, plaintext: &str, context: &[u8]) -> Result<SealedSecret, SecretError>;

    /// # Errors
    /// See [`SecretError`].
    fn open(&self, sealed: &SealedSecret, context: &[u8]) -> Result<String, SecretError>;

    /// The id new secrets are sealed under, when keys are configured.
    fn current_key_id(&self) -> Option<String>;
}

/// What binds a provider's sealed key to its row: the tenant and the provider.
#[must_use]
pub fn secret_context(tenant: TenantId, provider: ProviderId) -> Vec<u8> {
    format!("provider-key:{tenant}:{provider}").into_bytes()
}

/// Changes to a provider; `None` keeps a field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderChanges {
    pub base_url: Option<String>,
    pub default_model: Option<Option<String>>,
    pub supports_tools: Option<bool>,
    pub timeout_secs: Option<Option<u32>>,
    pub max_retries: Option<Option<u32>>,
}

/// A tenant's providers, within its transaction.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ProviderRepo: Send {
    /// # Errors
    /// [`crate::ports::StoreError::Conflict`] when the name is taken in the tenant.
    async fn insert(&mut self, provider: &Provider, key: &SealedSecret) -> StoreResult<()>;

    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn get(&mut self, id: ProviderId) -> StoreResult<Option<Provider>>;

    /// The provider with this name, and its sealed key; held (shared) until the transaction
    /// ends, so that it cannot be deleted under an agent being saved.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn by_name(&mut self, name: &str) -> StoreResult<Option<(Provider, SealedSecret)>>;

    /// Newest first.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn list(&mut self, page: PageRequest) -> StoreResult<Page<Provider>>;

    /// Applies `changes` (and a new sealed key, when given).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn update(
        &mut self,
        id: ProviderId,
        changes: &ProviderChanges,
        key: Option<SealedSecret>,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Provider>>;

    /// Removes it for good; `false` when there was none.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn delete(&mut self, id: ProviderId) -> StoreResult<bool>;

    /// The agents (live or soft-deleted: they can be restored) that name this provider, with
    /// their slugs. Locks the provider first, so that no agent can start naming it before the
    /// transaction ends.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn agents_using(&mut self, name: &str) -> StoreResult<Vec<(AgentId, String)>>;
}

/// One sealed key of one tenant's provider, for rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSecret {
    pub tenant: TenantId,
    pub provider: ProviderId,
    pub sealed: SealedSecret,
}

/// Every tenant's sealed provider keys (platform role): what `agentic keys rotate` re-seals.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The sealed keys not sealed under `key_id`.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn sealed_not_under(&self, key_id: &str) -> StoreResult<Vec<StoredSecret>>;

    /// Replaces a sealed key, provided it is still `previous` (a concurrent change wins).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn reseal(&self, secret: &StoredSecret, previous: &SealedSecret) -> StoreResult<bool>;
}

/// Where a tenant's provider is, opened for one run.
#[derive(Clone)]
pub struct ProviderEndpoint {
    pub provider: ProviderId,
    /// Changes when the provider does, so a cached client is not reused past a change.
    pub updated_at: DateTime<Utc>,
    pub base_url: String,
    pub api_key: String,
    pub supports_tools: bool,
    pub timeout_secs: Option<u32>,
    pub max_retries: Option<u32>,
}

impl std::fmt::Debug for ProviderEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderEndpoint")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// Chat models of tenants' own providers.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait ProviderModels: Send + Sync {
    /// The model `name` at `endpoint`: a client of its own (its own connections, timeouts and
    /// retries), so that one tenant's failing provider never slows another's runs.
    ///
    /// # Errors
    /// When a client cannot be built for it.
    fn model(
        &self,
        endpoint: &ProviderEndpoint,
        name: &str,
    ) -> Result<Arc<dyn ChatModel>, ChatModelUnavailable>;
}
