//! The audit log: appended in the same transaction as the change it records.

use async_trait::async_trait;
use domain::TenantId;
use domain::entities::{AuditEntry, AuditFilter, AuditRecord};
use domain::page::{Page, PageRequest};
use domain::ports::{AuditLog, StoreResult};
use sea_orm::Value;

use crate::rows::{AUDIT_COLUMNS, AuditRow};
use crate::tenant_tx::{PgTx, execute, fetch_all, limit};

pub(crate) fn audit_values(tenant: TenantId, entry: &AuditEntry) -> Vec<Value> {
    vec![
        tenant.as_uuid().into(),
        entry.id.as_uuid().into(),
        entry.at.into(),
        entry.actor.kind().into(),
        entry.actor.id().into(),
        entry.action.as_str().into(),
        entry.resource.as_str().into(),
        entry.resource_id.into(),
        entry.detail.clone().into(),
    ]
}

pub(crate) const INSERT_AUDIT: &str = "INSERT INTO audit_log
     (tenant_id, id, at, actor_type, actor_id, action, resource_type, resource_id, detail)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

#[async_trait]
impl AuditLog for PgTx {
    async fn append(&mut self, entry: &AuditEntry) -> StoreResult<()> {
        execute(&self.tx, INSERT_AUDIT, audit_values(self.tenant, entry)).await?;
        Ok(())
    }

    async fn list(
        &mut self,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditRecord>> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_log
             WHERE tenant_id = $1
               AND ($2::text IS NULL OR resource_type = $2)
               AND ($3::uuid IS NULL OR resource_id = $3)
               AND ($4::uuid IS NULL OR id < $4)
             ORDER BY id DESC LIMIT $5"
        );
        let values = vec![
            self.t(),
            filter.resource_type.clone().into(),
            filter.resource_id.into(),
            page.after.into(),
            limit(page),
        ];
        let rows = fetch_all::<AuditRow>(&self.tx, &sql, values).await?;
        let records = rows.into_iter().map(AuditRecord::from).collect();
        Ok(Page::from_rows(records, page, |r: &AuditRecord| {
            r.id.as_uuid()
        }))
    }
}
