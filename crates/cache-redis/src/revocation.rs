//! [`TokenRevocation`] on Redis.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_redis::redis;
use domain::ids::{TenantId, TokenFamilyId, TokenId, UserId};
use domain::ports::{Rotation, SessionCheck, SessionsEnded, TokenRevocation};
use domain::services::revocation_ttl;

use crate::RedisCache;
use crate::error::internal;

/// Longest lifetime given to a key (ten years): keeps `EX` within what Redis accepts whatever
/// `until` a caller passes.
const MAX_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

/// A user's or tenant's generation outlives every cached view of it by far (servers trust a
/// cached view for seconds), so letting it expire after a day cannot make a stale view current.
const GENERATION_TTL_SECS: u64 = 24 * 3600;

/// `KEYS[1]` = the API keys' epoch; `ARGV[1]` = a new one. Answers the epoch, setting the new
/// one when there is none (a fresh or restarted Redis): whoever sets it first wins.
const API_KEYS_EPOCH: &str = r"
local epoch = redis.call('GET', KEYS[1])
if epoch then
  return epoch
end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
";

/// A new epoch of API keys: random, so that one set after Redis lost the last (it keeps nothing
/// on disk) is unlike any a server may have cached keys under.
fn new_epoch() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// Lua that marks a family revoked (`KEYS[1]`) for at least `ARGV[1]` seconds — an existing mark
/// that lasts longer is kept, never shortened — and forgets its current token (`KEYS[2]`).
macro_rules! revoke_family_lua {
    () => {
        r"
local function revoke_family(ttl)
  local left = redis.call('TTL', KEYS[1])
  if left ~= -1 and left < ttl then
    redis.call('SET', KEYS[1], '1', 'EX', ttl)
  end
  redis.call('DEL', KEYS[2])
end
"
    };
}

/// `KEYS[1]` = revoked-family mark, `KEYS[2]` = current token; `ARGV[1]` = ttl in seconds.
const REVOKE_FAMILY: &str = concat!(
    revoke_family_lua!(),
    r"
revoke_family(tonumber(ARGV[1]))
return 1
"
);

/// `KEYS[1]` = revoked-family mark, `KEYS[2]` = current token; `ARGV[1]` = presented token,
/// `ARGV[2]` = next token, `ARGV[3]` = ttl in seconds. Returns 1 when rotated, 0 when reused.
const ROTATE: &str = concat!(
    revoke_family_lua!(),
    r"
local ttl = tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'EX', ttl)
  return 1
end
revoke_family(ttl)
return 0
"
);

/// Seconds a record about something valid until `until` must be kept (at least 1).
fn ttl_secs(until: DateTime<Utc>) -> u64 {
    revocation_ttl(until, Utc::now()).min(MAX_TTL_SECS)
}

impl RedisCache {
    fn revoked_jti_key(&self, jti: TokenId) -> String {
        self.key("revoked:jti:", jti)
    }

    fn revoked_family_key(&self, family: TokenFamilyId) -> String {
        self.key("revoked:fam:", family)
    }

    fn family_key(&self, family: TokenFamilyId) -> String {
        self.key("fam:", family)
    }

    fn user_generation_key(&self, user: UserId) -> String {
        self.key("user-gen:", user)
    }

    fn tenant_generation_key(&self, tenant: TenantId) -> String {
        self.key("tenant-gen:", tenant)
    }

    fn api_keys_epoch_key(&self) -> String {
        self.key("api-keys:", "epoch")
    }

    fn sessions_ended_key(&self, user: UserId) -> String {
        self.key("sessions-ended:", user)
    }

    /// Bumps a generation counter, which lives a day (far longer than any cached view).
    async fn bump(&self, key: String) -> Result<(), domain::Error> {
        let mut conn = self.conn().await?;
        redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg(&key)
            .ignore()
            .cmd("EXPIRE")
            .arg(&key)
            .arg(GENERATION_TTL_SECS)
            .ignore()
            .query_async::<()>(&mut conn)
            .await
            .map_err(internal)
    }
}

// Scripts go through `EVAL` rather than `redis::Script` (`EVALSHA`): the latter needs redis-rs's
// `script` feature and a SHA-1 crate that is not in the workspace; Redis caches the compiled script
// by its hash either way, and each call stays one atomic command.
#[async_trait]
impl TokenRevocation for RedisCache {
    async fn check_session(
        &self,
        jti: TokenId,
        family: TokenFamilyId,
        user: UserId,
        tenant: TenantId,
    ) -> Result<SessionCheck, domain::Error> {
        let mut conn = self.conn().await?;
        let (jti_mark, family_mark, user_generation, tenant_generation, ended): (
            Option<String>,
            Option<String>,
            Option<u64>,
            Option<u64>,
            Option<String>,
        ) = redis::cmd("MGET")
            .arg(self.revoked_jti_key(jti))
            .arg(self.revoked_family_key(family))
            .arg(self.user_generation_key(user))
            .arg(self.tenant_generation_key(tenant))
            .arg(self.sessions_ended_key(user))
            .query_async(&mut conn)
            .await
            .map_err(internal)?;
        Ok(SessionCheck {
            revoked: jti_mark.is_some() || family_mark.is_some(),
            user_generation: user_generation.unwrap_or(0),
            tenant_generation: tenant_generation.unwrap_or(0),
            sessions_ended: ended.as_deref().and_then(parse_sessions_ended),
        })
    }

    async fn end_user_sessions(
        &self,
        user: UserId,
        ended: SessionsEnded,
    ) -> Result<(), domain::Error> {
        let mut conn = self.conn().await?;
        let kept = ended.kept_family.map_or(String::new(), |f| f.to_string());
        redis::cmd("SET")
            .arg(self.sessions_ended_key(user))
            .arg(format!("{}:{kept}", ended.at.timestamp_micros()))
            .arg("EX")
            .arg(GENERATION_TTL_SECS)
            .query_async::<()>(&mut conn)
            .await
            .map_err(internal)
    }

    async fn user_changed(&self, user: UserId) -> Result<(), domain::Error> {
        self.bump(self.user_generation_key(user)).await
    }

    async fn tenant_changed(&self, tenant: TenantId) -> Result<(), domain::Error> {
        self.bump(self.tenant_generation_key(tenant)).await
    }

    async fn api_keys_epoch(&self) -> Result<u64, domain::Error> {
        let key = self.api_keys_epoch_key();
        let mut conn = self.conn().await?;
        let epoch: Option<u64> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .map_err(internal)?;
        if let Some(epoch) = epoch {
            return Ok(epoch);
        }
        redis::cmd("EVAL")
            .arg(API_KEYS_EPOCH)
            .arg(1)
            .arg(&key)
            .arg(new_epoch())
            .query_async(&mut conn)
            .await
            .map_err(internal)
    }

    async fn api_keys_changed(&self) -> Result<(), domain::Error> {
        let mut conn = self.conn().await?;
        redis::cmd("SET")
            .arg(self.api_keys_epoch_key())
            .arg(new_epoch())
            .query_async::<()>(&mut conn)
            .await
            .map_err(internal)
    }

    async fn revoke_token(&self, jti: TokenId, until: DateTime<Utc>) -> Result<(), domain::Error> {
        let mut conn = self.conn().await?;
        redis::cmd("SET")
            .arg(self.revoked_jti_key(jti))
            .arg(1)
            .arg("EX")
            .arg(ttl_secs(until))
            .query_async::<()>(&mut conn)
            .await
            .map_err(internal)
    }

    async fn start_family(
        &self,
        family: TokenFamilyId,
        current: TokenId,
        until: DateTime<Utc>,
    ) -> Result<(), domain::Error> {
        let mut conn = self.conn().await?;
        redis::cmd("SET")
            .arg(self.family_key(family))
            .arg(current.to_string())
            .arg("EX")
            .arg(ttl_secs(until))
            .query_async::<()>(&mut conn)
            .await
            .map_err(internal)
    }

    async fn rotate(
        &self,
        family: TokenFamilyId,
        presented: TokenId,
        next: TokenId,
        until: DateTime<Utc>,
    ) -> Result<Rotation, domain::Error> {
        let mut conn = self.conn().await?;
        let rotated: i64 = redis::cmd("EVAL")
            .arg(ROTATE)
            .arg(2)
            .arg(self.revoked_family_key(family))
            .arg(self.family_key(family))
            .arg(presented.to_string())
            .arg(next.to_string())
            .arg(ttl_secs(until))
            .query_async(&mut conn)
            .await
            .map_err(internal)?;
        Ok(if rotated == 1 {
            Rotation::Rotated
        } else {
            Rotation::Reused
        })
    }

    async fn revoke_family(
        &self,
        family: TokenFamilyId,
        until: DateTime<Utc>,
    ) -> Result<(), domain::Error> {
        let mut conn = self.conn().await?;
        redis::cmd("EVAL")
            .arg(REVOKE_FAMILY)
            .arg(2)
            .arg(self.revoked_family_key(family))
            .arg(self.family_key(family))
            .arg(ttl_secs(until))
            .query_async::<()>(&mut conn)
            .await
            .map_err(internal)
    }
}

/// `<unix microseconds>:<kept family or nothing>`, as `end_user_sessions` writes it.
fn parse_sessions_ended(text: &str) -> Option<SessionsEnded> {
    let (micros, kept) = text.split_once(':')?;
    Some(SessionsEnded {
        at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        kept_family: if kept.is_empty() {
            None
        } else {
            Some(kept.parse().ok()?)
        },
    })
}
