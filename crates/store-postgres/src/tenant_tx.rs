//! Tenant units of work: one transaction, one tenant, RLS and an explicit filter in every query.

use async_trait::async_trait;
use domain::TenantId;
use domain::entities::EmbeddingSpace;
use domain::page::PageRequest;
use domain::ports::{
    AgentRepo, ApiKeyRepo, AuditLog, CollectionRepo, Store, StoreResult, TenantRepo, TenantTx,
    UserRepo,
};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, FromQueryResult, Statement, Value};

use crate::error::map;
use crate::rows::{SpaceRow, convert};
use crate::spaces::{HNSW_MAX_DIMENSIONS, USABLE_INDEXES};
use crate::transaction::TenantTransaction;

/// Opens tenant units of work on a pool of the application role.
#[derive(Clone, Debug)]
pub struct PgStore {
    db: DatabaseConnection,
}

impl PgStore {
    #[must_use]
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }
}

#[async_trait]
impl Store for PgStore {
    async fn begin(&self, tenant: TenantId) -> StoreResult<Box<dyn TenantTx>> {
        let pool = self.db.get_postgres_connection_pool();
        let tx = TenantTransaction::begin(pool, tenant).await.map_err(map)?;
        Ok(Box::new(PgTx {
            tx,
            tenant,
            planner_steered: false,
        }))
    }

    async fn ping(&self) -> StoreResult<()> {
        self.db.ping().await.map_err(map)
    }

    async fn vector_index_problems(&self) -> StoreResult<Vec<String>> {
        #[derive(FromQueryResult)]
        struct Problem {
            space_id: String,
            index_name: String,
            problem: String,
        }
        let rows = fetch_all::<Problem>(
            &self.db,
            &format!(
                "SELECT s.id AS space_id, x.name AS index_name,
                        CASE WHEN i.indexrelid IS NULL THEN 'is missing'
                             ELSE 'is not valid (its build failed, crashed or is still running)' END AS problem
                 FROM embedding_spaces s
                 CROSS JOIN LATERAL (SELECT 'chunks_embedding_' || replace(s.id, '-', '_') AS name) x
                 LEFT JOIN ({USABLE_INDEXES}) i ON i.relname = x.name
                 WHERE s.dimensions <= {HNSW_MAX_DIMENSIONS} AND (i.indexrelid IS NULL OR NOT i.usable)
                 ORDER BY s.id"
            ),
            vec![],
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                format!(
                    "space {}: vector index {} {}",
                    r.space_id, r.index_name, r.problem
                )
            })
            .collect())
    }

    async fn spaces(&self) -> StoreResult<Vec<EmbeddingSpace>> {
        let rows = fetch_all::<SpaceRow>(
            &self.db,
            "SELECT id, provider, model, dimensions, normalized FROM embedding_spaces ORDER BY id",
            vec![],
        )
        .await?;
        convert(rows)
    }
}

/// A transaction with `app.tenant_id` set. Dropped without commit, it is rolled back.
pub struct PgTx {
    pub(crate) tx: TenantTransaction,
    pub(crate) tenant: TenantId,
    /// An HNSW search set planner settings that the next search must undo first.
    pub(crate) planner_steered: bool,
}

/// The values of a statement written in pieces, each piece binding its own: [`Params::bind`]
/// answers the placeholder of the value it adds. `$1` is the tenant.
pub(crate) struct Params(Vec<Value>);

impl Params {
    pub(crate) fn of(tx: &PgTx) -> Self {
        Self(vec![tx.t()])
    }

    pub(crate) fn bind(&mut self, value: impl Into<Value>) -> String {
        self.0.push(value.into());
        format!("${}", self.0.len())
    }

    pub(crate) fn into_values(self) -> Vec<Value> {
        self.0
    }
}

pub(crate) fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

pub(crate) async fn fetch_one<R: FromQueryResult>(
    conn: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> StoreResult<Option<R>> {
    R::find_by_statement(stmt(sql, values))
        .one(conn)
        .await
        .map_err(map)
}

pub(crate) async fn fetch_all<R: FromQueryResult>(
    conn: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> StoreResult<Vec<R>> {
    R::find_by_statement(stmt(sql, values))
        .all(conn)
        .await
        .map_err(map)
}

pub(crate) async fn execute(
    conn: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> StoreResult<u64> {
    conn.execute_raw(stmt(sql, values))
        .await
        .map(|r| r.rows_affected())
        .map_err(map)
}

pub(crate) fn limit(page: PageRequest) -> Value {
    i64::try_from(page.fetch_limit()).unwrap_or(i64::MAX).into()
}

impl PgTx {
    pub(crate) fn t(&self) -> Value {
        self.tenant.as_uuid().into()
    }
}

#[async_trait]
impl TenantTx for PgTx {
    fn tenant_id(&self) -> TenantId {
        self.tenant
    }
    fn tenant(&mut self) -> &mut dyn TenantRepo {
        self
    }
    fn users(&mut self) -> &mut dyn UserRepo {
        self
    }
    fn api_keys(&mut self) -> &mut dyn ApiKeyRepo {
        self
    }
    fn agents(&mut self) -> &mut dyn AgentRepo {
        self
    }
    fn collections(&mut self) -> &mut dyn CollectionRepo {
        self
    }
    fn documents(&mut self) -> &mut dyn domain::ports::DocumentRepo {
        self
    }
    fn jobs(&mut self) -> &mut dyn domain::ports::JobRepo {
        self
    }
    fn chunks(&mut self) -> &mut dyn domain::ports::ChunkRepo {
        self
    }
    fn audit(&mut self) -> &mut dyn AuditLog {
        self
    }
    fn conversations(&mut self) -> &mut dyn domain::ports::ConversationRepo {
        self
    }
    fn messages(&mut self) -> &mut dyn domain::ports::MessageRepo {
        self
    }
    fn runs(&mut self) -> &mut dyn domain::ports::RunRepo {
        self
    }
    fn usage(&mut self) -> &mut dyn domain::ports::UsageRepo {
        self
    }
    fn providers(&mut self) -> &mut dyn domain::ports::ProviderRepo {
        self
    }
    async fn commit(self: Box<Self>) -> StoreResult<()> {
        self.tx.commit().await.map_err(map)
    }
}
