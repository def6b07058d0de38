//! The transaction a tenant unit of work runs in, opened together with its tenant.
//!
//! SeaORM's `DatabaseTransaction` sends `BEGIN` on its own and has no way to send anything with
//! it, so setting the tenant was a second round trip at the start of every unit of work (two of
//! a turn's eleven). This is the same sqlx transaction, rolled back the same way when dropped
//! uncommitted, opened with `BEGIN` and `SET LOCAL` in one simple query; it implements SeaORM's
//! `ConnectionTrait`, so repositories read rows through it exactly as before.

use async_trait::async_trait;
use domain::TenantId;
use sea_orm::sqlx::{self, AssertSqlSafe, PgPool, Postgres, SqlSafeStr};
use sea_orm::{
    ConnAcquireErr, ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    Statement,
};
use sea_query_sqlx::SqlxValues;
use tokio::sync::Mutex;

/// An open transaction with `app.tenant_id` set local to it. Dropped without
/// [`commit`](Self::commit), it is rolled back before its connection serves anyone else.
pub(crate) struct TenantTransaction(Mutex<sqlx::Transaction<'static, Postgres>>);

impl TenantTransaction {
    /// Takes a connection of `pool` and opens the transaction on it, in one round trip.
    pub(crate) async fn begin(pool: &PgPool, tenant: TenantId) -> Result<Self, DbErr> {
        let connection = pool.acquire().await.map_err(|e| match e {
            sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
            other => DbErr::Conn(RuntimeErr::SqlxError(other.into())),
        })?;
        // `LOCAL`: the pooled connection forgets the tenant at commit or rollback, and the next
        // borrower starts with none (and sees no rows). A utility statement, so unlike
        // `SELECT set_config(…)` it is neither analysed nor planned. The id is written by
        // `Uuid`'s `Display`, hex digits and dashes only: nothing to escape.
        let begin = format!("BEGIN; SET LOCAL app.tenant_id = '{}'", tenant.as_uuid());
        // sqlx counts the transaction open only once the server says it is in one, so a `SET`
        // that failed (aborting the transaction) fails here, not at the first query.
        let transaction =
            sqlx::Transaction::begin(connection, Some(AssertSqlSafe(begin).into_sql_str()))
                .await
                .map_err(query_error)?;
        Ok(Self(Mutex::new(transaction)))
    }

    pub(crate) async fn commit(self) -> Result<(), DbErr> {
        self.0.into_inner().commit().await.map_err(exec_error)
    }
}

fn query(statement: Statement) -> sqlx::query::Query<'static, Postgres, SqlxValues> {
    let values = statement
        .values
        .unwrap_or_else(|| sea_orm::Values(Vec::new()));
    sqlx::query_with(AssertSqlSafe(statement.sql), SqlxValues(values))
}

// The same variants SeaORM's own transaction answers, which `crate::error::map` reads.
fn query_error(e: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(e.into()))
}

fn exec_error(e: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(e.into()))
}

#[async_trait]
impl ConnectionTrait for TenantTransaction {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, statement: Statement) -> Result<ExecResult, DbErr> {
        let mut transaction = self.0.lock().await;
        let done = query(statement)
            .execute(&mut **transaction)
            .await
            .map_err(exec_error)?;
        Ok(done.into())
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let mut transaction = self.0.lock().await;
        let done = sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut **transaction)
            .await
            .map_err(exec_error)?;
        Ok(done.into())
    }

    async fn query_one_raw(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        let mut transaction = self.0.lock().await;
        let row = query(statement)
            .fetch_optional(&mut **transaction)
            .await
            .map_err(query_error)?;
        Ok(row.map(Into::into))
    }

    async fn query_all_raw(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let mut transaction = self.0.lock().await;
        let rows = query(statement)
            .fetch_all(&mut **transaction)
            .await
            .map_err(query_error)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }
}
