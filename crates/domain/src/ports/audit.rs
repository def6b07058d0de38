//! The append-only audit log.

use async_trait::async_trait;

use crate::entities::{AuditEntry, AuditFilter, AuditRecord};
use crate::page::{Page, PageRequest};
use crate::ports::StoreResult;

/// The append-only audit log. There is no update or delete: the database refuses them too.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AuditLog: Send {
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn append(&mut self, entry: &AuditEntry) -> StoreResult<()>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn list(
        &mut self,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditRecord>>;
}
