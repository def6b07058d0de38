//! API keys.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::entities::{ApiKey, NewApiKey};
use crate::ids::ApiKeyId;
use crate::page::{Page, PageRequest};
use crate::ports::StoreResult;

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ApiKeyRepo: Send {
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn insert(&mut self, key: &NewApiKey, now: DateTime<Utc>) -> StoreResult<ApiKey>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn list(&mut self, page: PageRequest) -> StoreResult<Page<ApiKey>>;

    /// Revokes the key (idempotent); `None` when there is no such key.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn revoke(&mut self, id: ApiKeyId, now: DateTime<Utc>) -> StoreResult<Option<ApiKey>>;
}
