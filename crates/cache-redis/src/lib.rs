//! Redis adapter of the Agentic Platform: implements the domain ports
//! [`TokenRevocation`](domain::ports::TokenRevocation) (revoked access tokens and refresh-token
//! families) and [`RateLimiter`](domain::ports::RateLimiter) (fixed-window counters) on a
//! [deadpool-redis](deadpool_redis) pool shared by every server instance.
//!
//! Every key starts with the prefix given to [`RedisCache::connect`] (e.g. `agentic:`), so several
//! deployments — or several test runs — can share one Redis database:
//!
//! | key | value | lifetime |
//! |---|---|---|
//! | `{p}revoked:jti:{jti}` | `1` | until the token would have expired |
//! | `{p}revoked:fam:{family}` | `1` | until the family's newest refresh token would have expired |
//! | `{p}fam:{family}` | the family's current refresh-token id | that token's expiry |
//! | `{p}rl:{key}` | attempts counted in the current window | the window |
//! | `{p}run:…` | a run's events and cancellation flag ([`RedisRunEvents`]) | see its module |

mod error;
mod rate_limit;
mod revocation;
mod run_events;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::redis::{self, Value};
use deadpool_redis::{Config, Connection, Pool, PoolConfig, Runtime, Timeouts};

pub use error::CacheError;
pub use run_events::RedisRunEvents;

/// Connections kept by the pool. Each one is a multiplexed connection that pipelines concurrent
/// commands, so a few dozen serve a 2-core server answering 64 concurrent clients.
pub const DEFAULT_POOL_SIZE: usize = 32;

/// How long a request waits for a free pooled connection, or for a new one to be opened, before it
/// fails (and the caller fails closed) instead of hanging.
const POOL_WAIT: Duration = Duration::from_secs(2);

/// Redis-backed token revocation and rate limiting. Cheap to clone: clones share one pool.
#[derive(Clone)]
pub struct RedisCache {
    pool: Pool,
    /// One multiplexed connection taken out of the pool and shared by every command: it pipelines
    /// concurrent commands over one socket, and unlike a pool checkout it costs no health-check
    /// round trip per command (this sits on every request's path). Dropped on a command error,
    /// so the next command takes a fresh one from the pool.
    shared: Arc<Mutex<Option<MultiplexedConnection>>>,
    prefix: Arc<str>,
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.prefix)
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl RedisCache {
    /// Creates the connection pool for `url` (`redis://[user:password@]host:port[/db]`, or
    /// `rediss://` for TLS if enabled) with [`DEFAULT_POOL_SIZE`] connections; every key is
    /// prefixed by `key_prefix`.
    ///
    /// Connections are opened lazily, so this succeeds while Redis is down; call
    /// [`ping`](Self::ping) to find out whether it answers.
    ///
    /// # Errors
    /// [`CacheError::Config`] when the URL cannot be parsed or the pool cannot be built.
    pub fn connect(url: &str, key_prefix: impl Into<String>) -> Result<Self, CacheError> {
        let mut config = Config::from_url(url);
        let mut pool = PoolConfig::new(DEFAULT_POOL_SIZE);
        pool.timeouts = Timeouts {
            wait: Some(POOL_WAIT),
            create: Some(POOL_WAIT),
            recycle: Some(POOL_WAIT),
        };
        config.pool = Some(pool);
        let pool = config.create_pool(Some(Runtime::Tokio1))?;
        Ok(Self {
            pool,
            shared: Arc::new(Mutex::new(None)),
            prefix: Arc::from(key_prefix.into()),
        })
    }

    /// Checks that Redis answers (for readiness probes).
    ///
    /// # Errors
    /// [`CacheError::Pool`] when no connection can be had, [`CacheError::Command`] when the command
    /// fails, [`CacheError::UnexpectedPing`] for an answer other than `PONG`.
    pub async fn ping(&self) -> Result<(), CacheError> {
        let mut conn = self.conn().await?;
        let answer: Value = redis::cmd("PING").query_async(&mut conn).await?;
        match answer {
            Value::SimpleString(s) if s == "PONG" => Ok(()),
            Value::BulkString(ref b) if b == b"PONG" => Ok(()),
            other => Err(CacheError::UnexpectedPing(format!("{other:?}"))),
        }
    }

    /// The prefix every key of this cache starts with.
    #[must_use]
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The shared connection, taking one from the pool when there is none (yet, or any more).
    pub(crate) async fn conn(&self) -> Result<SharedConnection, CacheError> {
        let existing = self.shared.lock().ok().and_then(|shared| shared.clone());
        let conn = match existing {
            Some(conn) => conn,
            None => {
                let conn = Connection::take(self.pool.get().await?);
                if let Ok(mut shared) = self.shared.lock() {
                    *shared = Some(conn.clone());
                }
                conn
            }
        };
        Ok(SharedConnection {
            conn,
            shared: self.shared.clone(),
        })
    }

    /// `{prefix}{kind}{id}`, e.g. `agentic:revoked:jti:…`.
    pub(crate) fn key(&self, kind: &str, id: impl fmt::Display) -> String {
        format!("{}{kind}{id}", self.prefix)
    }
}

/// A clone of the shared connection that forgets the shared one when a command on it fails, so a
/// broken socket is replaced instead of failing every later command.
pub(crate) struct SharedConnection {
    conn: MultiplexedConnection,
    shared: Arc<Mutex<Option<MultiplexedConnection>>>,
}

impl SharedConnection {
    fn forget(&self) {
        if let Ok(mut shared) = self.shared.lock() {
            *shared = None;
        }
    }
}

impl redis::aio::ConnectionLike for SharedConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, Value> {
        Box::pin(async move {
            let result = self.conn.req_packed_command(cmd).await;
            if result
                .as_ref()
                .is_err_and(|e| e.is_unrecoverable_error() || e.is_io_error())
            {
                self.forget();
            }
            result
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let result = self.conn.req_packed_commands(cmd, offset, count).await;
            if result
                .as_ref()
                .is_err_and(|e| e.is_unrecoverable_error() || e.is_io_error())
            {
                self.forget();
            }
            result
        })
    }

    fn get_db(&self) -> i64 {
        self.conn.get_db()
    }
}
