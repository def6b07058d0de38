//! The rows of the shared lifecycle: soft delete, restore and purge, by table, for every
//! soft-deletable resource. Table names and column lists are the crate's own constants, never
//! input. A restore that would take a unique key a live row holds fails on the partial unique
//! index, which `error::map` turns into the resource's conflict.

use chrono::{DateTime, Utc};
use domain::Actor;
use domain::ports::StoreResult;
use sea_orm::FromQueryResult;
use uuid::Uuid;

use crate::tenant_tx::{PgTx, execute, fetch_one};

/// The soft-deletable tables.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Table {
    Agents,
    Users,
    Collections,
    Documents,
    Conversations,
}

impl Table {
    const fn name(self) -> &'static str {
        match self {
            Self::Agents => "agents",
            Self::Users => "users",
            Self::Collections => "collections",
            Self::Documents => "documents",
            Self::Conversations => "conversations",
        }
    }

    /// Columns a soft delete sets besides the deletion's own (`$3` is the time).
    const fn also_on_delete(self) -> &'static str {
        match self {
            // A deleted user's sessions end with it.
            Self::Users => ", sessions_valid_after = $3, sessions_kept_family = NULL",
            Self::Agents | Self::Collections | Self::Documents | Self::Conversations => "",
        }
    }
}

fn soft_delete_sql(table: Table, returning: &str) -> String {
    format!(
        "UPDATE {} SET deleted_at = $3, deleted_by = $4, updated_at = $3{}
         WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL{returning}",
        table.name(),
        table.also_on_delete()
    )
}

impl PgTx {
    /// Marks the live row deleted; whether there was one.
    pub(crate) async fn soft_delete_row(
        &self,
        table: Table,
        id: Uuid,
        by: Actor,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let values = vec![self.t(), id.into(), now.into(), by.id().into()];
        Ok(execute(&self.tx, &soft_delete_sql(table, ""), values).await? == 1)
    }

    /// [`PgTx::soft_delete_row`], answering the row as `returning` reads it.
    pub(crate) async fn soft_delete_returning<R: FromQueryResult>(
        &self,
        table: Table,
        id: Uuid,
        by: Actor,
        now: DateTime<Utc>,
        returning: &str,
    ) -> StoreResult<Option<R>> {
        let sql = soft_delete_sql(table, &format!(" RETURNING {returning}"));
        let values = vec![self.t(), id.into(), now.into(), by.id().into()];
        fetch_one(&self.tx, &sql, values).await
    }

    /// Brings the deleted row back, answered as `returning` reads it; `None` when it is not
    /// deleted or not there.
    pub(crate) async fn restore_row<R: FromQueryResult>(
        &self,
        table: Table,
        id: Uuid,
        now: DateTime<Utc>,
        returning: &str,
    ) -> StoreResult<Option<R>> {
        let sql = format!(
            "UPDATE {} SET deleted_at = NULL, deleted_by = NULL, updated_at = $3
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NOT NULL
             RETURNING {returning}",
            table.name()
        );
        fetch_one(&self.tx, &sql, vec![self.t(), id.into(), now.into()]).await
    }

    /// Deletes the row (and, by cascade, what belongs to it); whether there was one.
    pub(crate) async fn purge_row(&self, table: Table, id: Uuid) -> StoreResult<bool> {
        let sql = format!(
            "DELETE FROM {} WHERE tenant_id = $1 AND id = $2",
            table.name()
        );
        Ok(execute(&self.tx, &sql, vec![self.t(), id.into()]).await? == 1)
    }

    /// [`PgTx::purge_row`], answering the row as `returning` reads it.
    pub(crate) async fn purge_returning<R: FromQueryResult>(
        &self,
        table: Table,
        id: Uuid,
        returning: &str,
    ) -> StoreResult<Option<R>> {
        let sql = format!(
            "DELETE FROM {} WHERE tenant_id = $1 AND id = $2 RETURNING {returning}",
            table.name()
        );
        fetch_one(&self.tx, &sql, vec![self.t(), id.into()]).await
    }
}
