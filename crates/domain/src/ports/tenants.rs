//! The tenant's own row, within its unit of work.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::entities::Tenant;
use crate::ports::StoreResult;
use crate::values::Name;

/// The tenant's own row.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait TenantRepo: Send {
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn get(&mut self) -> StoreResult<Option<Tenant>>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn rename(&mut self, name: &Name, now: DateTime<Utc>) -> StoreResult<Option<Tenant>>;
}
