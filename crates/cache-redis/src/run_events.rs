//! [`RunEventLog`] on Redis streams: one stream per run, its entries numbered by the run's own
//! counter (stream ids `0-N`), so `Last-Event-ID: N` maps to "entries after `0-N`".
//!
//! | key | value | lifetime |
//! |---|---|---|
//! | `{p}run:{tenant}:{run}:events` | the stream: fields `k` (event name) and `d` (JSON) | a day while the run lives; [`EVENTS_KEPT_AFTER_END`] after its end |
//! | `{p}run:{tenant}:{run}:seq` | the last event's number | as the stream |
//! | `{p}run:{tenant}:{run}:cancel` | `1` once cancellation is asked for | a day |
//!
//! Appends and the cancellation flag go over the cache's shared connection. A follower that
//! waits for new events blocks (`XREAD BLOCK`) on a connection of a pool of its own, bounded, so
//! that waiting clients can never hold up the commands every request needs (token checks), and a
//! full pool answers an error rather than an unbounded wait.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::{self, Value};
use deadpool_redis::{Config, Pool, PoolConfig, Runtime, Timeouts};
use domain::ports::{EVENTS_KEPT_AFTER_END, EventLogError, RunEvent, RunEventKind, RunEventLog};
use domain::{RunId, TenantId};

use crate::{CacheError, RedisCache};

/// The longest one `XREAD BLOCK` waits (below the client's 500 ms answer timeout).
const BLOCK_SLICE: Duration = Duration::from_millis(300);

/// How long a run's events and flags live while it runs (a run never lasts this long).
const LIVE_TTL: Duration = Duration::from_secs(24 * 3600);

/// `KEYS[1]` = stream, `KEYS[2]` = counter, `KEYS[3]` = cancel flag; `ARGV` = event name, JSON,
/// lifetime in milliseconds. Numbers and appends in one step, so that two writers (a run and
/// the reaper of dead runs) never reuse a number.
const APPEND: &str = r"
local n = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], '0-' .. n, 'k', ARGV[1], 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('PEXPIRE', KEYS[3], ARGV[3])
end
return n
";

/// `KEYS` as [`APPEND`]'s; `ARGV[1]` = the first event's number, `ARGV[2]` = lifetime in
/// milliseconds, then each event's name and JSON. Appends the events when the counter is one
/// below the first number, and answers the last one's number; when the log already has the
/// first event at its number (an earlier try of this append went in), answers the same; when
/// someone else's event holds the number, answers 0.
const APPEND_NUMBERED: &str = r"
local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local first = tonumber(ARGV[1])
local count = (#ARGV - 2) / 2
if last ~= first - 1 then
  if last >= first then
    local found = redis.call('XRANGE', KEYS[1], '0-' .. first, '0-' .. first)
    if #found == 1 and found[1][2][2] == ARGV[3] and found[1][2][4] == ARGV[4] then
      return first + count - 1
    end
  end
  return 0
end
local n = last
for i = 3, #ARGV, 2 do
  n = n + 1
  redis.call('XADD', KEYS[1], '0-' .. n, 'k', ARGV[i], 'd', ARGV[i + 1])
end
redis.call('SET', KEYS[2], n, 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('PEXPIRE', KEYS[3], ARGV[2])
end
return n
";

/// The run event log: the cache's shared connection, and a pool for blocked followers.
#[derive(Clone)]
pub struct RedisRunEvents {
    cache: RedisCache,
    followers: Pool,
    /// The SHA1 of [`APPEND_NUMBERED`] once Redis has it (`SCRIPT LOAD`), so that each append
    /// sends the script's name rather than its text.
    append_sha: Arc<Mutex<Option<String>>>,
}

impl fmt::Debug for RedisRunEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRunEvents")
            .field("cache", &self.cache)
            .field("followers", &self.followers.status())
            .finish()
    }
}

impl RedisRunEvents {
    /// The log over `cache`, with at most `max_followers` clients waiting for events at once
    /// (each holds a connection to `url` while it waits).
    ///
    /// # Errors
    /// [`CacheError::Config`] when the URL cannot be parsed or the pool cannot be built.
    pub fn new(cache: RedisCache, url: &str, max_followers: usize) -> Result<Self, CacheError> {
        let mut config = Config::from_url(url);
        let mut pool = PoolConfig::new(max_followers.max(1));
        pool.timeouts = Timeouts {
            wait: Some(Duration::from_millis(500)),
            create: Some(Duration::from_secs(2)),
            recycle: Some(Duration::from_secs(2)),
        };
        config.pool = Some(pool);
        let followers = config.create_pool(Some(Runtime::Tokio1))?;
        Ok(Self {
            cache,
            followers,
            append_sha: Arc::default(),
        })
    }

    fn key(&self, tenant: TenantId, run: RunId, what: &str) -> String {
        self.cache
            .key("run:", format_args!("{tenant}:{run}:{what}"))
    }
}

impl RedisRunEvents {
    async fn load_append(
        &self,
        conn: &mut crate::SharedConnection,
    ) -> Result<String, EventLogError> {
        let sha: String = redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(APPEND_NUMBERED)
            .query_async(conn)
            .await
            .map_err(failed)?;
        if let Ok(mut known) = self.append_sha.lock() {
            *known = Some(sha.clone());
        }
        Ok(sha)
    }
}

fn failed(e: impl fmt::Display) -> EventLogError {
    EventLogError(e.to_string())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl RunEventLog for RedisRunEvents {
    async fn append(
        &self,
        tenant: TenantId,
        run: RunId,
        kind: RunEventKind,
        data: &serde_json::Value,
    ) -> Result<u64, EventLogError> {
        let ttl = if kind.is_terminal() {
            EVENTS_KEPT_AFTER_END
        } else {
            LIVE_TTL
        };
        let mut conn = self.cache.conn().await.map_err(failed)?;
        redis::cmd("EVAL")
            .arg(APPEND)
            .arg(3)
            .arg(self.key(tenant, run, "events"))
            .arg(self.key(tenant, run, "seq"))
            .arg(self.key(tenant, run, "cancel"))
            .arg(kind.as_str())
            .arg(data.to_string())
            .arg(millis(ttl))
            .query_async(&mut conn)
            .await
            .map_err(failed)
    }

    async fn append_numbered(
        &self,
        tenant: TenantId,
        run: RunId,
        first: u64,
        events: &[(RunEventKind, serde_json::Value)],
    ) -> Result<bool, EventLogError> {
        if events.is_empty() {
            return Ok(true);
        }
        let ttl = if events.iter().any(|(kind, _)| kind.is_terminal()) {
            EVENTS_KEPT_AFTER_END
        } else {
            LIVE_TTL
        };
        let count = u64::try_from(events.len()).unwrap_or(u64::MAX);
        let mut conn = self.cache.conn().await.map_err(failed)?;
        let call = |sha: &str| {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(sha)
                .arg(3)
                .arg(self.key(tenant, run, "events"))
                .arg(self.key(tenant, run, "seq"))
                .arg(self.key(tenant, run, "cancel"))
                .arg(first)
                .arg(millis(ttl));
            for (kind, data) in events {
                cmd.arg(kind.as_str()).arg(data.to_string());
            }
            cmd
        };
        let known = self.append_sha.lock().ok().and_then(|sha| sha.clone());
        let last: u64 = match known {
            Some(sha) => match call(&sha).query_async(&mut conn).await {
                // Redis forgets scripts when it restarts: load it again.
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    let sha = self.load_append(&mut conn).await?;
                    call(&sha).query_async(&mut conn).await.map_err(failed)?
                }
                other => other.map_err(failed)?,
            },
            None => {
                let sha = self.load_append(&mut conn).await?;
                call(&sha).query_async(&mut conn).await.map_err(failed)?
            }
        };
        Ok(last == first + count - 1)
    }

    async fn read(
        &self,
        tenant: TenantId,
        run: RunId,
        after: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<RunEvent>, EventLogError> {
        let key = self.key(tenant, run, "events");
        let count = max.clamp(1, 1_000);
        let mut conn = self.cache.conn().await.map_err(failed)?;
        let listed: Value = redis::cmd("XRANGE")
            .arg(&key)
            .arg(format!("(0-{after}"))
            .arg("+")
            .arg("COUNT")
            .arg(count)
            .query_async(&mut conn)
            .await
            .map_err(failed)?;
        let events = entries(&listed)?;
        if !events.is_empty() || wait.is_zero() {
            return Ok(events);
        }
        let mut follower = self
            .followers
            .get()
            .await
            .map_err(|e| failed(format!("too many clients are following runs: {e}")))?;
        // Redis' client gives up on an answer after 500 ms, so the wait is cut into blocks
        // shorter than that; a new event still wakes the follower at once.
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Ok(Vec::new());
            }
            let answered: Value = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(count)
                .arg("BLOCK")
                .arg(millis(left.min(BLOCK_SLICE)).max(1))
                .arg("STREAMS")
                .arg(&key)
                .arg(format!("0-{after}"))
                .query_async(&mut follower)
                .await
                .map_err(failed)?;
            let events = streamed(answered)?;
            if !events.is_empty() {
                return Ok(events);
            }
        }
    }

    async fn request_cancel(&self, tenant: TenantId, run: RunId) -> Result<(), EventLogError> {
        let mut conn = self.cache.conn().await.map_err(failed)?;
        redis::cmd("SET")
            .arg(self.key(tenant, run, "cancel"))
            .arg(1)
            .arg("PX")
            .arg(millis(LIVE_TTL))
            .query_async::<()>(&mut conn)
            .await
            .map_err(failed)
    }

    async fn cancel_requested(&self, tenant: TenantId, run: RunId) -> Result<bool, EventLogError> {
        let mut conn = self.cache.conn().await.map_err(failed)?;
        redis::cmd("EXISTS")
            .arg(self.key(tenant, run, "cancel"))
            .query_async(&mut conn)
            .await
            .map_err(failed)
    }
}

/// XREAD's answer: nil on a timeout, else the streams with their entries (an array of
/// `[key, entries]` pairs in RESP2, a map in RESP3).
fn streamed(answered: Value) -> Result<Vec<RunEvent>, EventLogError> {
    match answered {
        Value::Nil => Ok(Vec::new()),
        Value::Array(streams) => streams
            .iter()
            .filter_map(|s| match s {
                Value::Array(pair) => pair.get(1),
                _ => None,
            })
            .map(entries)
            .next()
            .unwrap_or_else(|| Ok(Vec::new())),
        Value::Map(streams) => streams
            .first()
            .map_or_else(|| Ok(Vec::new()), |(_, list)| entries(list)),
        other => Err(failed(format!("unexpected XREAD answer {other:?}"))),
    }
}

/// Stream entries (`[[id, [field, value, …]], …]`) as events.
fn entries(value: &Value) -> Result<Vec<RunEvent>, EventLogError> {
    let Value::Array(list) = value else {
        return Err(failed(format!("unexpected stream answer {value:?}")));
    };
    list.iter().map(entry).collect()
}

fn entry(value: &Value) -> Result<RunEvent, EventLogError> {
    let text = |v: &Value| match v {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).map_err(failed),
        Value::SimpleString(s) => Ok(s.clone()),
        other => Err(failed(format!("unexpected stream value {other:?}"))),
    };
    let Value::Array(parts) = value else {
        return Err(failed("a stream entry is not a list"));
    };
    let (Some(id), Some(Value::Array(fields))) = (parts.first(), parts.get(1)) else {
        return Err(failed("a stream entry without id or fields"));
    };
    let id = text(id)?;
    let seq = id
        .strip_prefix("0-")
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| failed(format!("a stream entry with id {id}")))?;
    let (mut kind, mut data) = (None, None);
    for pair in fields.chunks(2) {
        if let [name, value] = pair {
            match text(name)?.as_str() {
                "k" => kind = Some(RunEventKind::parse(&text(value)?).map_err(failed)?),
                "d" => data = Some(serde_json::from_str(&text(value)?).map_err(failed)?),
                _ => {}
            }
        }
    }
    match (kind, data) {
        (Some(kind), Some(data)) => Ok(RunEvent { seq, kind, data }),
        _ => Err(failed(format!("stream entry {id} lacks its event"))),
    }
}
