//! Errors of the Redis adapter itself (connecting, readiness); port methods turn them into
//! [`domain::Error::Internal`].

use deadpool_redis::redis::RedisError;
use deadpool_redis::{CreatePoolError, PoolError};

/// Why the Redis cache could not be set up or did not answer.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The URL or pool settings were rejected before any connection was tried.
    #[error("invalid Redis configuration: {0}")]
    Config(#[from] CreatePoolError),
    /// No pooled connection could be had (Redis unreachable, pool exhausted past its wait timeout…).
    #[error("no Redis connection: {0}")]
    Pool(#[from] PoolError),
    /// Redis answered a command with an error, or the connection broke during it.
    #[error("Redis command failed: {0}")]
    Command(#[from] RedisError),
    /// Redis answered `PING` with something other than `PONG`.
    #[error("unexpected answer to PING: {0:?}")]
    UnexpectedPing(String),
}

impl From<CacheError> for domain::Error {
    fn from(e: CacheError) -> Self {
        Self::internal(e)
    }
}

/// Maps any driver or pool error to the domain's internal error, keeping it as the source.
pub(crate) fn internal(e: impl Into<CacheError>) -> domain::Error {
    domain::Error::internal(e.into())
}
