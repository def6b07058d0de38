//! PostgreSQL adapter: implements the domain's storage ports with SeaORM.
//!
//! - [`PgStore`] opens tenant units of work as the application role: every transaction starts
//!   with `SET LOCAL app.tenant_id = …`, sent with its `BEGIN` (local to the transaction,
//!   so a pooled connection never carries a tenant over), and every query also filters on the
//!   tenant explicitly. Two walls.
//! - [`PgPlatformStore`] is the platform role (BYPASSRLS), for the few things that must see across
//!   tenants: resolving a tenant slug or an API key before a tenant is known, and provisioning.
//!
//! SeaORM models never leave this crate: rows are read into private structs and converted to
//! domain entities, and driver errors become [`domain::ports::StoreError`].

mod agents;
mod api_keys;
mod audit;
mod chunks;
mod collections;
mod conversations;
mod documents;
mod error;
mod jobs;
mod lifecycle;
mod owner;
mod platform;
mod providers;
mod rows;
mod search;
mod spaces;
mod tenant_tx;
mod tenants;
mod transaction;
mod usage;
mod users;

use std::time::Duration;

use sea_orm::{ConnectOptions, Database, DatabaseConnection};

pub use owner::purge_audit_trail;
pub use platform::PgPlatformStore;
pub use search::exact_search_max_chunks;
pub use spaces::{ensure_space_indexes, register_space, space_index_name};
pub use tenant_tx::PgStore;

/// Connection pool settings.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    pub max_connections: u32,
    pub min_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            min_connections: 2,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// Opens a pool to `url`.
///
/// # Errors
/// When the database cannot be reached.
pub async fn connect(
    url: &str,
    options: &PoolOptions,
) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let mut opts = ConnectOptions::new(url.to_owned());
    opts.max_connections(options.max_connections)
        .min_connections(options.min_connections)
        .acquire_timeout(options.acquire_timeout)
        // A connection used within the last second is handed out as it is: a ping on every
        // checkout was a round trip in each of a turn's transactions. One idle for longer
        // (which a restart or a proxy may have cut) is still pinged first.
        .test_before_acquire_if_idle_for(Duration::from_secs(1))
        .sqlx_logging(false);
    Database::connect(opts).await
}

/// Whether the role `db` logs in as can act as the owner of the schema (is it, or a member of
/// it). The serving process must not: its roles would then own every table. `false` before the
/// schema exists.
///
/// # Errors
/// When the database cannot be asked.
pub async fn acts_as_owner(db: &DatabaseConnection) -> Result<bool, sea_orm::DbErr> {
    use sea_orm::{ConnectionTrait, DbBackend, Statement};
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT COALESCE(pg_has_role(current_user, c.relowner, 'MEMBER'), false) AS owner
             FROM (SELECT to_regclass('agents') AS t) x
             LEFT JOIN pg_class c ON c.oid = x.t",
        ))
        .await?;
    Ok(row
        .and_then(|r| r.try_get::<bool>("", "owner").ok())
        .unwrap_or(false))
}
