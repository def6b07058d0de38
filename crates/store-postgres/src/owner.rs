//! Operations only the schema owner may carry out, with the owner's URL and never from the
//! serving process: removing a tenant's audit trail. (Vector indexes, the other owner work, are
//! in `spaces`.)

use domain::TenantId;
use sea_orm::{ConnectionTrait, DbErr};

use crate::PoolOptions;
use crate::tenant_tx::stmt;
use crate::transaction::TenantTransaction;

/// Deletes every audit entry of `tenant`; answers how many. The log refuses this to every other
/// role (grants and triggers), so history can only be removed on purpose, by its owner.
///
/// # Errors
/// When the role behind `owner_url` is not the owner of `audit_log`, or the database fails.
pub async fn purge_audit_trail(owner_url: &str, tenant: TenantId) -> Result<u64, DbErr> {
    let conn = crate::connect(
        owner_url,
        &PoolOptions {
            max_connections: 1,
            min_connections: 1,
            ..PoolOptions::default()
        },
    )
    .await?;
    // Row-level security is forced on the owner too: it sees the tenant it names, no other.
    let tx = TenantTransaction::begin(conn.get_postgres_connection_pool(), tenant).await?;
    let removed = tx
        .execute_raw(stmt(
            "DELETE FROM audit_log WHERE tenant_id = $1",
            vec![tenant.as_uuid().into()],
        ))
        .await?
        .rows_affected();
    tx.commit().await?;
    conn.close().await?;
    Ok(removed)
}
