//! The append-only audit log.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::entities::{AuditAction, AuditEntry, AuditFilter, AuditRecord, AuditedId};
use crate::page::{Page, PageRequest};
use crate::ports::StoreResult;
use crate::principal::Actor;

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

/// The one call services make: `actor` did `action` to `id`, recorded in the unit of work.
impl dyn AuditLog + '_ {
    /// # Errors
    /// As [`AuditLog::append`].
    pub async fn record(
        &mut self,
        at: DateTime<Utc>,
        actor: Actor,
        action: AuditAction,
        id: impl AuditedId + Send,
    ) -> StoreResult<()> {
        self.append(&AuditEntry::new(at, actor, action, id)).await
    }

    /// [`Self::record`], with what changed.
    ///
    /// # Errors
    /// As [`AuditLog::append`].
    pub async fn record_with(
        &mut self,
        at: DateTime<Utc>,
        actor: Actor,
        action: AuditAction,
        id: impl AuditedId + Send,
        detail: Value,
    ) -> StoreResult<()> {
        self.append(&AuditEntry::new(at, actor, action, id).with_detail(detail))
            .await
    }
}
