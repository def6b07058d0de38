//! Integration tests against a real Redis at `REDIS_URL` (default `redis://127.0.0.1:6379`).
//! Each test uses its own key prefix, so tests sharing one Redis do not interfere. An unreachable
//! Redis fails the tests: it is never a reason to skip them.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use cache_redis::{CacheError, RedisCache};
use chrono::Utc;
use deadpool_redis::redis;
use domain::ids::{TenantId, TokenFamilyId, TokenId, UserId};
use domain::ports::{RateLimiter, Rotation, TokenRevocation};

/// Revocation as seen by one session check (whose user does not matter here).
trait IsRevoked {
    async fn is_revoked(&self, jti: TokenId, family: TokenFamilyId) -> Result<bool, domain::Error>;
}

impl IsRevoked for RedisCache {
    async fn is_revoked(&self, jti: TokenId, family: TokenFamilyId) -> Result<bool, domain::Error> {
        Ok(self
            .check_session(jti, family, UserId::new(), TenantId::new())
            .await?
            .revoked)
    }
}

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn unique_prefix() -> String {
    format!("test:{}:", uuid::Uuid::new_v4())
}

/// A cache on the test Redis with a prefix of its own; panics with a clear message when Redis does
/// not answer.
async fn cache_with_prefix(prefix: &str) -> RedisCache {
    let url = redis_url();
    let cache = RedisCache::connect(&url, prefix)
        .unwrap_or_else(|e| panic!("cannot configure Redis at {url}: {e}"));
    if let Err(e) = cache.ping().await {
        panic!(
            "Redis is not reachable at {url} ({e}). These tests need a running Redis: start one \
             (e.g. `redis-server --daemonize yes`) or point REDIS_URL at one."
        );
    }
    cache
}

async fn cache() -> RedisCache {
    cache_with_prefix(&unique_prefix()).await
}

fn in_minutes(minutes: i64) -> chrono::DateTime<Utc> {
    Utc::now() + chrono::Duration::minutes(minutes)
}

/// The remaining lifetime of a raw key, read past the adapter.
async fn raw_ttl(key: &str) -> i64 {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("TTL")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn ping_answers() {
    cache().await.ping().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_not_a_hang() {
    let cache = RedisCache::connect("redis://127.0.0.1:1", unique_prefix()).unwrap();
    let err = cache.ping().await.unwrap_err();
    assert!(matches!(err, CacheError::Pool(_)), "{err:?}");
    let port_err = cache.is_revoked(TokenId::new(), TokenFamilyId::new()).await;
    assert!(
        matches!(port_err, Err(domain::Error::Internal(_))),
        "{port_err:?}"
    );
}

#[tokio::test]
async fn a_malformed_url_is_rejected() {
    let err = RedisCache::connect("not a url", "p:").unwrap_err();
    assert!(matches!(err, CacheError::Config(_)), "{err:?}");
}

#[tokio::test]
async fn a_revoked_token_is_revoked_and_no_other() {
    let cache = cache().await;
    let family = TokenFamilyId::new();
    let (revoked, other) = (TokenId::new(), TokenId::new());
    assert!(!cache.is_revoked(revoked, family).await.unwrap());
    cache.revoke_token(revoked, in_minutes(15)).await.unwrap();
    assert!(cache.is_revoked(revoked, family).await.unwrap());
    assert!(!cache.is_revoked(other, family).await.unwrap());
    let ttl = raw_ttl(&format!("{}revoked:jti:{revoked}", cache.key_prefix())).await;
    assert!((14 * 60..=15 * 60).contains(&ttl), "ttl {ttl}");
}

#[tokio::test]
async fn a_token_already_expired_is_still_recorded_for_a_second() {
    let cache = cache().await;
    let jti = TokenId::new();
    cache.revoke_token(jti, in_minutes(-5)).await.unwrap();
    assert!(cache.is_revoked(jti, TokenFamilyId::new()).await.unwrap());
}

#[tokio::test]
async fn a_revoked_family_revokes_every_token_of_it() {
    let cache = cache().await;
    let (family, other_family) = (TokenFamilyId::new(), TokenFamilyId::new());
    cache.revoke_family(family, in_minutes(60)).await.unwrap();
    for _ in 0..3 {
        assert!(cache.is_revoked(TokenId::new(), family).await.unwrap());
    }
    assert!(
        !cache
            .is_revoked(TokenId::new(), other_family)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn revoking_a_family_never_shortens_its_revocation() {
    let cache = cache().await;
    let family = TokenFamilyId::new();
    cache.revoke_family(family, in_minutes(60)).await.unwrap();
    cache.revoke_family(family, in_minutes(1)).await.unwrap();
    let ttl = raw_ttl(&format!("{}revoked:fam:{family}", cache.key_prefix())).await;
    assert!(ttl > 59 * 60, "ttl {ttl}");
}

#[tokio::test]
async fn rotation_then_reuse_revokes_the_family() {
    let cache = cache().await;
    let family = TokenFamilyId::new();
    let (first, second, third) = (TokenId::new(), TokenId::new(), TokenId::new());
    cache
        .start_family(family, first, in_minutes(60))
        .await
        .unwrap();

    let rotated = cache
        .rotate(family, first, second, in_minutes(60))
        .await
        .unwrap();
    assert_eq!(rotated, Rotation::Rotated);
    assert!(!cache.is_revoked(second, family).await.unwrap());
    let rotated = cache
        .rotate(family, second, third, in_minutes(60))
        .await
        .unwrap();
    assert_eq!(rotated, Rotation::Rotated);

    // The first token comes back: someone kept a copy.
    let reused = cache
        .rotate(family, first, TokenId::new(), in_minutes(60))
        .await
        .unwrap();
    assert_eq!(reused, Rotation::Reused);
    assert!(cache.is_revoked(TokenId::new(), family).await.unwrap());
    assert!(cache.is_revoked(third, family).await.unwrap());
    // Even the family's current token no longer rotates.
    let current = cache
        .rotate(family, third, TokenId::new(), in_minutes(60))
        .await
        .unwrap();
    assert_eq!(current, Rotation::Reused);
}

#[tokio::test]
async fn an_unknown_or_logged_out_family_does_not_rotate() {
    let cache = cache().await;
    let unknown = TokenFamilyId::new();
    let answer = cache
        .rotate(unknown, TokenId::new(), TokenId::new(), in_minutes(60))
        .await;
    assert_eq!(answer.unwrap(), Rotation::Reused);
    assert!(cache.is_revoked(TokenId::new(), unknown).await.unwrap());

    let family = TokenFamilyId::new();
    let current = TokenId::new();
    cache
        .start_family(family, current, in_minutes(60))
        .await
        .unwrap();
    cache.revoke_family(family, in_minutes(60)).await.unwrap();
    let answer = cache
        .rotate(family, current, TokenId::new(), in_minutes(60))
        .await;
    assert_eq!(answer.unwrap(), Rotation::Reused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_rotations_of_one_token_let_exactly_one_through() {
    let cache = Arc::new(cache().await);
    for _ in 0..10 {
        let family = TokenFamilyId::new();
        let presented = TokenId::new();
        cache
            .start_family(family, presented, in_minutes(60))
            .await
            .unwrap();
        let racers: Vec<_> = (0..2)
            .map(|_| {
                let cache = Arc::clone(&cache);
                tokio::spawn(async move {
                    cache
                        .rotate(family, presented, TokenId::new(), in_minutes(60))
                        .await
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for racer in racers {
            outcomes.push(racer.await.unwrap().unwrap());
        }
        let rotated = outcomes.iter().filter(|o| **o == Rotation::Rotated).count();
        assert_eq!(rotated, 1, "{outcomes:?}");
        // The loser presented a token that had just been rotated: that is reuse.
        assert!(cache.is_revoked(TokenId::new(), family).await.unwrap());
    }
}

#[tokio::test]
async fn the_rate_limit_refuses_past_the_limit_until_the_window_ends() {
    let cache = cache().await;
    let window = Duration::from_secs(60);
    for n in 1..=3 {
        let decision = cache.hit("login:acme:ada", 3, window).await.unwrap();
        assert!(decision.allowed, "attempt {n}: {decision:?}");
        assert_eq!(decision.limit, 3);
        assert_eq!(decision.remaining, 3 - n);
        assert!(
            (1..=60).contains(&decision.reset_after_secs),
            "{decision:?}"
        );
    }
    for _ in 0..2 {
        let refused = cache.hit("login:acme:ada", 3, window).await.unwrap();
        assert!(!refused.allowed, "{refused:?}");
        assert_eq!(refused.remaining, 0);
        assert!((1..=60).contains(&refused.reset_after_secs), "{refused:?}");
    }
    // Another key has a counter of its own.
    assert!(
        cache
            .hit("login:acme:bob", 3, window)
            .await
            .unwrap()
            .allowed
    );
}

#[tokio::test]
async fn a_new_window_starts_once_the_old_one_ends() {
    let cache = cache().await;
    let window = Duration::from_millis(300);
    assert!(cache.hit("k", 1, window).await.unwrap().allowed);
    let refused = cache.hit("k", 1, window).await.unwrap();
    assert!(!refused.allowed);
    assert_eq!(refused.reset_after_secs, 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(cache.hit("k", 1, window).await.unwrap().allowed);
}

#[tokio::test]
async fn two_prefixes_do_not_see_each_other() {
    let (a, b) = (cache().await, cache().await);
    let (jti, family) = (TokenId::new(), TokenFamilyId::new());
    a.revoke_token(jti, in_minutes(5)).await.unwrap();
    a.revoke_family(family, in_minutes(5)).await.unwrap();
    assert!(a.is_revoked(jti, TokenFamilyId::new()).await.unwrap());
    assert!(!b.is_revoked(jti, family).await.unwrap());

    let current = TokenId::new();
    b.start_family(family, current, in_minutes(5))
        .await
        .unwrap();
    assert_eq!(
        b.rotate(family, current, TokenId::new(), in_minutes(5))
            .await
            .unwrap(),
        Rotation::Rotated
    );

    for _ in 0..2 {
        assert!(
            a.hit("shared", 2, Duration::from_secs(60))
                .await
                .unwrap()
                .allowed
        );
    }
    assert!(
        !a.hit("shared", 2, Duration::from_secs(60))
            .await
            .unwrap()
            .allowed
    );
    let fresh = b.hit("shared", 2, Duration::from_secs(60)).await.unwrap();
    assert!(fresh.allowed);
    assert_eq!(fresh.remaining, 1);
}

#[tokio::test]
async fn user_changes_bump_the_generation_seen_by_session_checks() {
    let cache = cache().await;
    let (jti, family, user, tenant) = (
        TokenId::new(),
        TokenFamilyId::new(),
        UserId::new(),
        TenantId::new(),
    );
    let before = cache
        .check_session(jti, family, user, tenant)
        .await
        .unwrap();
    assert_eq!(before.user_generation, 0);
    assert!(!before.revoked);
    cache.user_changed(user).await.unwrap();
    cache.user_changed(user).await.unwrap();
    assert_eq!(
        cache
            .check_session(jti, family, user, tenant)
            .await
            .unwrap()
            .user_generation,
        2
    );
    let other = cache
        .check_session(jti, family, UserId::new(), tenant)
        .await
        .unwrap();
    assert_eq!(other.user_generation, 0, "generations are per user");
}

#[tokio::test]
async fn tenant_changes_bump_the_generation_seen_by_session_checks() {
    let cache = cache().await;
    let (jti, family, user, tenant) = (
        TokenId::new(),
        TokenFamilyId::new(),
        UserId::new(),
        TenantId::new(),
    );
    let before = cache
        .check_session(jti, family, user, tenant)
        .await
        .unwrap();
    assert_eq!(before.tenant_generation, 0);
    cache.tenant_changed(tenant).await.unwrap();
    let after = cache
        .check_session(jti, family, user, tenant)
        .await
        .unwrap();
    assert_eq!(after.tenant_generation, 1);
    assert_eq!(
        after.user_generation, 0,
        "the user's own generation is apart"
    );
    let other = cache
        .check_session(jti, family, user, TenantId::new())
        .await
        .unwrap();
    assert_eq!(other.tenant_generation, 0, "generations are per tenant");
}

#[tokio::test]
async fn a_reset_forgets_the_attempts() {
    let cache = cache().await;
    let window = Duration::from_secs(60);
    for _ in 0..3 {
        cache.hit("login:x", 3, window).await.unwrap();
    }
    assert!(!cache.hit("login:x", 3, window).await.unwrap().allowed);
    cache.reset("login:x").await.unwrap();
    let after = cache.hit("login:x", 3, window).await.unwrap();
    assert!(after.allowed);
    assert_eq!(after.remaining, 2);
}

#[tokio::test]
async fn numbered_appends_follow_the_log_and_are_refused_once_someone_else_wrote() {
    use cache_redis::RedisRunEvents;
    use domain::RunId;
    use domain::ports::{RunEventKind, RunEventLog};
    use serde_json::json;

    let log = RedisRunEvents::new(cache().await, &redis_url(), 2).unwrap();
    let (tenant, run) = (TenantId::new(), RunId::new());
    let first = [
        (RunEventKind::Started, json!({})),
        (RunEventKind::Delta, json!({"text": "a"})),
    ];
    assert!(log.append_numbered(tenant, run, 1, &first).await.unwrap());
    // The same append again (its answer was lost, say) finds its events there.
    assert!(log.append_numbered(tenant, run, 1, &first).await.unwrap());
    // The reaper ends the run: the next number is taken.
    let failed = json!({"error": {"code": "incomplete"}});
    let taken = log
        .append(tenant, run, RunEventKind::Failed, &failed)
        .await
        .unwrap();
    assert_eq!(taken, 3);
    let late = [(RunEventKind::Delta, json!({"text": "b"}))];
    assert!(!log.append_numbered(tenant, run, 3, &late).await.unwrap());
    let events = log.read(tenant, run, 0, 10, Duration::ZERO).await.unwrap();
    let seen: Vec<(u64, RunEventKind)> = events.iter().map(|e| (e.seq, e.kind)).collect();
    assert_eq!(
        seen,
        [
            (1, RunEventKind::Started),
            (2, RunEventKind::Delta),
            (3, RunEventKind::Failed)
        ]
    );
    assert_eq!(events[2].data, failed);

    // Redis forgets its scripts (a restart): the next append loads it again.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let other = RunId::new();
    assert!(log.append_numbered(tenant, other, 1, &first).await.unwrap());
}

#[tokio::test]
async fn the_api_keys_epoch_stands_until_changed_and_is_new_when_redis_lost_it() {
    let prefix = unique_prefix();
    let cache = cache_with_prefix(&prefix).await;
    let other = cache_with_prefix(&prefix).await;
    let first = cache.api_keys_epoch().await.unwrap();
    assert_eq!(cache.api_keys_epoch().await.unwrap(), first);
    assert_eq!(
        other.api_keys_epoch().await.unwrap(),
        first,
        "every server sees the same epoch"
    );
    cache.api_keys_changed().await.unwrap();
    let second = other.api_keys_epoch().await.unwrap();
    assert_ne!(second, first, "a change is seen by every server");
    // Redis keeps nothing on disk: an epoch it lost is replaced by a new one, not a reused one.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("DEL")
        .arg(format!("{prefix}api-keys:epoch"))
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let third = cache.api_keys_epoch().await.unwrap();
    assert!(third != first && third != second);
    assert_eq!(other.api_keys_epoch().await.unwrap(), third);
    assert_ne!(
        cache_with_prefix(&unique_prefix())
            .await
            .api_keys_epoch()
            .await
            .unwrap(),
        third,
        "another prefix has its own"
    );
}
