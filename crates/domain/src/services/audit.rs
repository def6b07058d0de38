use std::sync::Arc;

use crate::entities::{AuditFilter, AuditRecord};
use crate::error::Error;
use crate::page::{Page, PageRequest};
use crate::ports::Store;
use crate::principal::{Principal, Scope};

/// Reads the audit log (admins only); entries are written by the services that make the changes.
pub struct AuditService {
    store: Arc<dyn Store>,
}

impl AuditService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// # Errors
    /// `Forbidden` for non-admins.
    pub async fn list(
        &self,
        who: &Principal,
        filter: AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditRecord>, Error> {
        let tenant = who.tenant_with(Scope::Admin)?;
        let mut tx = self.store.begin(tenant).await?;
        let records = tx.audit().list(&filter, page).await?;
        tx.commit().await?;
        Ok(records)
    }
}
