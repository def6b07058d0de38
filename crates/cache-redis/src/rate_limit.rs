//! [`RateLimiter`] on Redis: fixed windows.

use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis;
use domain::ports::{RateDecision, RateLimiter};

use crate::RedisCache;
use crate::error::internal;

/// Longest window honoured (ten years), so `PEXPIRE` stays within what Redis accepts.
const MAX_WINDOW_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

/// `KEYS[1]` = counter, `ARGV[1]` = window in milliseconds. Counts one attempt and returns
/// `{count, milliseconds until the window resets}`. The window starts with the first attempt; a
/// counter found without expiry (which this script never leaves behind) is given one.
const HIT: &str = r"
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
";

#[async_trait]
impl RateLimiter for RedisCache {
    async fn hit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
    ) -> Result<RateDecision, domain::Error> {
        let window_ms = u64::try_from(window.as_millis())
            .unwrap_or(MAX_WINDOW_MS)
            .clamp(1, MAX_WINDOW_MS);
        let key = self.key("rl:", key);
        let mut conn = self.conn().await?;
        let (count, ttl_ms): (u64, u64) = redis::cmd("EVAL")
            .arg(HIT)
            .arg(1)
            .arg(key)
            .arg(window_ms)
            .query_async(&mut conn)
            .await
            .map_err(internal)?;
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        Ok(RateDecision {
            allowed: count <= limit,
            limit,
            remaining: limit.saturating_sub(count),
            reset_after_secs: ttl_ms.div_ceil(1000).max(1),
        })
    }

    async fn peek(&self, key: &str, limit: u32) -> Result<RateDecision, domain::Error> {
        let key = self.key("rl:", key);
        let mut conn = self.conn().await?;
        let (count, ttl_ms): (Option<u64>, i64) = redis::pipe()
            .cmd("GET")
            .arg(&key)
            .cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(internal)?;
        let count = u32::try_from(count.unwrap_or(0)).unwrap_or(u32::MAX);
        Ok(RateDecision {
            allowed: count < limit,
            limit,
            remaining: limit.saturating_sub(count),
            reset_after_secs: u64::try_from(ttl_ms).unwrap_or(0).div_ceil(1000).max(1),
        })
    }

    async fn pause(&self, delay: Duration) {
        tokio::time::sleep(delay).await;
    }

    async fn reset(&self, key: &str) -> Result<(), domain::Error> {
        let mut conn = self.conn().await?;
        redis::cmd("DEL")
            .arg(self.key("rl:", key))
            .query_async::<()>(&mut conn)
            .await
            .map_err(internal)
    }
}
