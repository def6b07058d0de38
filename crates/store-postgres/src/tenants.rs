//! The tenant's own row within its unit of work.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::entities::Tenant;
use domain::ports::{StoreResult, TenantRepo};
use domain::values::Name;

use crate::rows::{TENANT_COLUMNS, TenantRow};
use crate::tenant_tx::{PgTx, fetch_one};

#[async_trait]
impl TenantRepo for PgTx {
    async fn get(&mut self) -> StoreResult<Option<Tenant>> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
        fetch_one::<TenantRow>(&self.tx, &sql, vec![self.t()])
            .await?
            .map(Tenant::try_from)
            .transpose()
    }

    async fn rename(&mut self, name: &Name, now: DateTime<Utc>) -> StoreResult<Option<Tenant>> {
        let sql = format!(
            "UPDATE tenants SET name = $2, updated_at = $3 WHERE id = $1 RETURNING {TENANT_COLUMNS}"
        );
        fetch_one::<TenantRow>(
            &self.tx,
            &sql,
            vec![self.t(), name.as_str().into(), now.into()],
        )
        .await?
        .map(Tenant::try_from)
        .transpose()
    }
}
