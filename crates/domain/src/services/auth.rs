use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::entities::{KeyOwner, TenantStatus, User};
use crate::error::{AuthFailure, Error};
use crate::ids::{TenantId, TokenFamilyId, TokenId, UserId};
use crate::ports::{
    Clock, PasswordHasher, PlatformStore, RateLimiter, Rotation, Secrets, SessionCheck,
    SessionsEnded, Store, TokenClaims, TokenCodec, TokenKind, TokenRevocation,
};
use crate::principal::{Principal, Role, SessionToken};
use crate::services::users::{PasswordChange, replace_password};
use crate::values::{Email, Password, Slug};

/// Every API key starts with this, so a bearer token is told apart from a JWT without parsing.
pub const API_KEY_PREFIX: &str = "ak_";

/// Lifetimes and limits of authentication.
#[derive(Clone, Copy, Debug)]
pub struct AuthPolicy {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    /// Login attempts allowed per tenant and email within `login_window`.
    pub login_attempts: u32,
    pub login_window: Duration,
    /// How long a server may trust what it read of a user or an API key without asking again.
    /// Changes to a user bump a shared generation, and revocations start a new epoch of keys, so
    /// this is only the backstop if that signal is lost.
    pub user_cache_ttl: Duration,
}

impl Default for AuthPolicy {
    fn default() -> Self {
        Self {
            access_ttl: Duration::from_secs(15 * 60),
            refresh_ttl: Duration::from_secs(7 * 24 * 3600),
            login_attempts: 10,
            login_window: Duration::from_secs(5 * 60),
            user_cache_ttl: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug)]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    pub user: User,
}

pub struct AuthService {
    store: Arc<dyn Store>,
    platform: Arc<dyn PlatformStore>,
    hasher: Arc<dyn PasswordHasher>,
    codec: Arc<dyn TokenCodec>,
    revocation: Arc<dyn TokenRevocation>,
    limiter: Arc<dyn RateLimiter>,
    secrets: Arc<dyn Secrets>,
    clock: Arc<dyn Clock>,
    policy: AuthPolicy,
    users: UserCache,
    keys: KeyCache,
    /// The minute (Unix time / 60) the unknown epoch of API keys was last logged.
    epoch_unknown_logged: AtomicI64,
    unknown_keys: UnknownKeys,
    /// A real hash to verify against when the tenant or email is unknown, so such a login takes
    /// as long as a wrong password and does not tell which emails exist.
    decoy_hash: OnceLock<String>,
}

/// Everything [`AuthService`] needs, named so wiring code reads well.
pub struct AuthPorts {
    pub store: Arc<dyn Store>,
    pub platform: Arc<dyn PlatformStore>,
    pub hasher: Arc<dyn PasswordHasher>,
    pub codec: Arc<dyn TokenCodec>,
    pub revocation: Arc<dyn TokenRevocation>,
    pub limiter: Arc<dyn RateLimiter>,
    pub secrets: Arc<dyn Secrets>,
    pub clock: Arc<dyn Clock>,
}

impl AuthService {
    pub fn new(ports: AuthPorts, policy: AuthPolicy) -> Self {
        Self {
            store: ports.store,
            platform: ports.platform,
            hasher: ports.hasher,
            codec: ports.codec,
            revocation: ports.revocation,
            limiter: ports.limiter,
            secrets: ports.secrets,
            clock: ports.clock,
            policy,
            users: UserCache::default(),
            keys: KeyCache::default(),
            epoch_unknown_logged: AtomicI64::new(i64::MIN),
            unknown_keys: UnknownKeys::default(),
            decoy_hash: OnceLock::new(),
        }
    }

    async fn spend_decoy_verification(&self, password: &str) {
        let hash = match self.decoy_hash.get() {
            Some(hash) => hash.clone(),
            None => {
                let Ok(decoy) = Password::parse("decoy-password-never-used") else {
                    return;
                };
                let Ok(hash) = self.hasher.hash(&decoy).await else {
                    return;
                };
                self.decoy_hash.get_or_init(|| hash).clone()
            }
        };
        let _ = self.hasher.verify(password, &hash).await;
    }

    /// Verifies a password login and opens a new token family. `client` is the caller's address
    /// (as the HTTP edge determined it).
    ///
    /// Failures are limited where they come from, never where they point: `login_attempts` per
    /// account and client address, ten times that per address, both in `login_window`, answer
    /// `RateLimited` to that address only. An account's failures from anywhere only slow every
    /// attempt on it (a delay that doubles from the fourth failure, capped at four seconds), so an
    /// attacker elsewhere cannot lock the real user out. Only failures count.
    ///
    /// # Errors
    /// `RateLimited` past those limits; `Unauthenticated` with the same answer whichever of
    /// tenant, email or password was wrong; `Forbidden` for a disabled user; `TenantSuspended`;
    /// `Busy` when password hashing is at capacity.
    pub async fn login(
        &self,
        tenant: &str,
        email: &str,
        password: &str,
        client: &str,
    ) -> Result<TokenPair, Error> {
        let bad = Error::Unauthenticated(AuthFailure::BadCredentials);
        let (Ok(slug), Ok(email)) = (Slug::parse(tenant), Email::parse(email)) else {
            return Err(bad);
        };
        let account_key = format!("login:{slug}:{email}");
        let pair_key = format!("login:{slug}:{email}:{client}");
        let client_key = format!("login-client:{client}");
        let attempts = self.policy.login_attempts;
        let window = self.policy.login_window;
        // This attempt counts on the account and address before the password is checked (so
        // parallel guesses cannot all slip under the limit), and is forgiven if it succeeds.
        let pair = self.limiter.hit(&pair_key, attempts, window).await?;
        let client = self
            .limiter
            .peek(&client_key, attempts.saturating_mul(10))
            .await?;
        for seen in [pair, client] {
            if !seen.allowed {
                return Err(Error::RateLimited {
                    limit: seen.limit,
                    retry_after_secs: seen.reset_after_secs,
                });
            }
        }
        let account = self.limiter.peek(&account_key, u32::MAX).await?;
        let delay = progressive_delay(u32::MAX - account.remaining);
        if !delay.is_zero() {
            self.limiter.pause(delay).await;
        }
        let found = match self.platform.tenant_by_slug(&slug).await? {
            Some((tenant, status)) => {
                let mut tx = self.store.begin(tenant).await?;
                let credentials = tx.users().credentials_by_email(&email).await?;
                tx.commit().await?;
                credentials.map(|c| (c, status))
            }
            None => None,
        };
        let verified = match &found {
            Some((credentials, _)) => {
                self.hasher
                    .verify(password, &credentials.password_hash)
                    .await?
            }
            None => {
                self.spend_decoy_verification(password).await;
                false
            }
        };
        let Some((credentials, status)) = found.filter(|_| verified) else {
            for key in [&client_key, &account_key] {
                self.limiter.hit(key, u32::MAX, window).await?;
            }
            return Err(bad);
        };
        self.limiter.reset(&pair_key).await?;
        if status != TenantStatus::Active {
            return Err(Error::TenantSuspended);
        }
        if !credentials.user.is_usable() {
            return Err(Error::Forbidden("the account is disabled"));
        }
        self.issue_pair(credentials.user, TokenFamilyId::new(), None)
            .await
    }

    /// Exchanges a refresh token for a new pair; the presented token dies. Presenting a token that
    /// was already rotated revokes its whole family (someone else holds a copy).
    ///
    /// # Errors
    /// `Unauthenticated` for anything but the family's current, valid refresh token.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair, Error> {
        let claims = self
            .codec
            .verify(refresh_token)
            .map_err(Error::Unauthenticated)?;
        if claims.kind != TokenKind::Refresh {
            return Err(Error::Unauthenticated(AuthFailure::WrongTokenType));
        }
        let mut tx = self.store.begin(claims.tenant).await?;
        let user = tx.users().get(claims.subject, true).await?;
        let tenant = tx.tenant().get().await?;
        tx.commit().await?;
        let user = user.ok_or(Error::Unauthenticated(AuthFailure::UnknownPrincipal))?;
        if tenant.is_none_or(|t| t.status != TenantStatus::Active) {
            return Err(Error::TenantSuspended);
        }
        if !user.is_usable() {
            return Err(Error::Forbidden("the account is disabled or deleted"));
        }
        // Disabling or deleting the user ended its sessions: enabled or restored since, it signs
        // in again rather than living on in a token it held before.
        if user.session_ended(claims.family, claims.issued_at) {
            return Err(Error::Unauthenticated(AuthFailure::Revoked));
        }
        self.issue_pair(user, claims.family, Some(claims.jti)).await
    }

    /// Revokes the caller's access token and its family, and the family of `refresh_token` if given.
    ///
    /// # Errors
    /// `Forbidden` for API keys (revoke them instead).
    pub async fn logout(&self, who: &Principal, refresh_token: Option<&str>) -> Result<(), Error> {
        let Principal::User { session, user, .. } = who else {
            return Err(Error::Forbidden(
                "only user sessions can log out; revoke API keys instead",
            ));
        };
        let until = session.expires_at.max(self.clock.now())
            + chrono::Duration::from_std(self.policy.refresh_ttl).unwrap_or_default();
        self.revocation
            .revoke_token(session.jti, session.expires_at)
            .await?;
        self.revocation.revoke_family(session.family, until).await?;
        if let Some(token) = refresh_token {
            // A refresh token of another user, or an invalid one, is ignored rather than reported:
            // logout must not become an oracle for tokens.
            if let Ok(claims) = self.codec.verify(token)
                && claims.subject == *user
                && claims.kind == TokenKind::Refresh
            {
                self.revocation
                    .revoke_family(claims.family, claims.expires_at)
                    .await?;
            }
        }
        Ok(())
    }

    /// Ends every session of the calling user, this one included: its access tokens are refused
    /// from the next request on, its refresh tokens for good.
    ///
    /// # Errors
    /// `Forbidden` for API keys and platform keys.
    pub async fn logout_everywhere(&self, who: &Principal) -> Result<(), Error> {
        let Principal::User { tenant, user, .. } = who else {
            return Err(Error::Forbidden(
                "only user sessions can log out; revoke API keys instead",
            ));
        };
        self.end_sessions(*tenant, *user, None).await
    }

    /// Changes the caller's own password; the current password is required. Every other session
    /// of the caller ends; this one goes on.
    ///
    /// # Errors
    /// `Forbidden` for API keys; `Validation` for a wrong current password or a weak new one.
    pub async fn change_password(
        &self,
        who: &Principal,
        current: &str,
        new: &str,
    ) -> Result<(), Error> {
        let Principal::User {
            tenant,
            user,
            session,
            ..
        } = who
        else {
            return Err(Error::Forbidden("only users have passwords"));
        };
        let password = Password::parse(new).map_err(|m| Error::invalid("new_password", m))?;
        let mut tx = self.store.begin(*tenant).await?;
        let found = tx.users().get(*user, false).await?;
        let credentials = match found {
            Some(found) => tx.users().credentials_by_email(&found.email).await?,
            None => None,
        };
        tx.commit().await?;
        let credentials =
            credentials.ok_or(Error::Unauthenticated(AuthFailure::UnknownPrincipal))?;
        // A stolen session must not become a way to guess the password: the same limit as logins.
        let key = format!("password:{user}");
        let attempt = self
            .limiter
            .hit(&key, self.policy.login_attempts, self.policy.login_window)
            .await?;
        if !attempt.allowed {
            return Err(Error::RateLimited {
                limit: attempt.limit,
                retry_after_secs: attempt.reset_after_secs,
            });
        }
        if !self
            .hasher
            .verify(current, &credentials.password_hash)
            .await?
        {
            return Err(Error::invalid(
                "current_password",
                "is not the current password",
            ));
        }
        self.limiter.reset(&key).await?;
        let hash = self.hasher.hash(&password).await?;
        // Signed in a moment ago, the user was there; if it went meanwhile, there is nothing
        // left to change.
        replace_password(
            PasswordChange {
                store: self.store.as_ref(),
                sessions: self.revocation.as_ref(),
                now: self.clock.now(),
                who,
                tenant: *tenant,
                user: *user,
                keep: Some(session.family),
            },
            &hash,
            serde_json::json!({"password_changed": true}),
        )
        .await?;
        Ok(())
    }

    /// Ends a user's sessions in the database (refresh tokens) and on every server (access
    /// tokens), keeping `keep`'s.
    async fn end_sessions(
        &self,
        tenant: TenantId,
        user: UserId,
        keep: Option<TokenFamilyId>,
    ) -> Result<(), Error> {
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        tx.users().end_sessions(user, keep, now).await?;
        tx.commit().await?;
        self.revocation
            .end_user_sessions(
                user,
                SessionsEnded {
                    at: now,
                    kept_family: keep,
                },
            )
            .await
    }

    /// Turns a bearer credential into a [`Principal`].
    ///
    /// # Errors
    /// `Unauthenticated` for any invalid, expired, revoked or unknown credential; `Forbidden` for a
    /// disabled or deleted user, or a suspended tenant.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal, Error> {
        if bearer.starts_with(API_KEY_PREFIX) {
            return self.authenticate_key(bearer).await;
        }
        let claims = self.codec.verify(bearer).map_err(Error::Unauthenticated)?;
        if claims.kind != TokenKind::Access {
            return Err(Error::Unauthenticated(AuthFailure::WrongTokenType));
        }
        let session = self
            .revocation
            .check_session(claims.jti, claims.family, claims.subject, claims.tenant)
            .await?;
        if session.revoked
            || session
                .sessions_ended
                .is_some_and(|ended| ended.ends(claims.family, claims.issued_at))
        {
            return Err(Error::Unauthenticated(AuthFailure::Revoked));
        }
        let now = self.clock.now();
        let user = match self.users.get(claims.subject, claims.tenant, session, now) {
            Some(user) => user,
            None => {
                let mut tx = self.store.begin(claims.tenant).await?;
                let found = tx.users().get(claims.subject, true).await?;
                let tenant = tx.tenant().get().await?;
                tx.commit().await?;
                let Some(found) = found else {
                    return Err(Error::Unauthenticated(AuthFailure::UnknownPrincipal));
                };
                let user = CachedUser {
                    tenant: found.tenant_id,
                    role: found.role,
                    usable: found.is_usable(),
                    tenant_active: tenant.is_some_and(|t| t.status == TenantStatus::Active),
                    generation: session.user_generation,
                    tenant_generation: session.tenant_generation,
                    expires_at: now + chrono_duration(self.policy.user_cache_ttl),
                };
                self.users.put(found.id, user);
                user
            }
        };
        if !user.tenant_active {
            return Err(Error::TenantSuspended);
        }
        if !user.usable {
            return Err(Error::Forbidden("the account is disabled or deleted"));
        }
        Ok(Principal::User {
            tenant: user.tenant,
            user: claims.subject,
            // The role is the stored one, not the token's, so a demotion takes effect before the
            // token expires.
            role: user.role,
            session: SessionToken {
                jti: claims.jti,
                family: claims.family,
                expires_at: claims.expires_at,
            },
        })
    }

    async fn authenticate_key(&self, plaintext: &str) -> Result<Principal, Error> {
        let now = self.clock.now();
        let hash = self.secrets.hash_api_key(plaintext);
        // Made-up keys cost a query each on the platform pool; the same one again costs nothing
        // for a while. (A real key's hash cannot be among them: it would have to be guessed.)
        if self.unknown_keys.contains(&hash, now) {
            return Err(Error::Unauthenticated(AuthFailure::UnknownPrincipal));
        }
        // The epoch is read before the key, so that a view read under it is trusted only while
        // it stands: a revocation that lands after the read starts another. Without an answer
        // from the shared store the key is read from the database, as it always may be.
        let epoch = match self.revocation.api_keys_epoch().await {
            Ok(epoch) => Some(epoch),
            Err(err) => {
                // Once a minute at most: an outage would otherwise log every request.
                let minute = now.timestamp().div_euclid(60);
                if self.epoch_unknown_logged.swap(minute, Ordering::Relaxed) != minute {
                    tracing::warn!(error = %err, "the API keys' epoch is unknown: keys are read from the database");
                }
                None
            }
        };
        let cached = epoch.and_then(|epoch| self.keys.get(&hash, epoch, now));
        let owner = match cached {
            Some(owner) => owner,
            None => {
                let Some(owner) = self.platform.key_owner(&hash, now).await? else {
                    self.unknown_keys
                        .insert(hash, now + chrono::Duration::seconds(30));
                    return Err(Error::Unauthenticated(AuthFailure::UnknownPrincipal));
                };
                if let Some(epoch) = epoch {
                    let expires_at = now + chrono_duration(self.policy.user_cache_ttl);
                    self.keys.put(hash, owner.clone(), epoch, expires_at);
                }
                owner
            }
        };
        key_principal(owner, now)
    }

    async fn issue_pair(
        &self,
        user: User,
        family: TokenFamilyId,
        rotating: Option<TokenId>,
    ) -> Result<TokenPair, Error> {
        let now = self.clock.now();
        let refresh_expires = now + chrono_duration(self.policy.refresh_ttl);
        let claims = |kind, ttl: Duration| TokenClaims {
            subject: user.id,
            tenant: user.tenant_id,
            role: user.role,
            kind,
            jti: TokenId::new(),
            family,
            issued_at: now,
            expires_at: now + chrono_duration(ttl),
        };
        let access = claims(TokenKind::Access, self.policy.access_ttl);
        let refresh = claims(TokenKind::Refresh, self.policy.refresh_ttl);
        match rotating {
            None => {
                self.revocation
                    .start_family(family, refresh.jti, refresh_expires)
                    .await?;
            }
            Some(presented) => {
                let rotation = self
                    .revocation
                    .rotate(family, presented, refresh.jti, refresh_expires)
                    .await?;
                if rotation == Rotation::Reused {
                    return Err(Error::Unauthenticated(AuthFailure::RefreshReuse));
                }
            }
        }
        Ok(TokenPair {
            access_token: self.codec.issue(&access)?,
            refresh_token: self.codec.issue(&refresh)?,
            expires_in: self.policy.access_ttl.as_secs(),
            user,
        })
    }
}

/// What authentication remembers of a user between requests: enough to build the principal.
#[derive(Clone, Copy, Debug)]
struct CachedUser {
    tenant: TenantId,
    role: Role,
    usable: bool,
    /// The user's tenant is active (not suspended).
    tenant_active: bool,
    /// The user's generation when this was read; another generation means it is stale.
    generation: u64,
    /// The same for the tenant's status.
    tenant_generation: u64,
    expires_at: DateTime<Utc>,
}

/// Users seen recently, so a request needs no database round trip to learn who its token's
/// subject is. Entries are trusted only under the generation they were read with (bumped by
/// every change to the user) and until they expire.
#[derive(Debug, Default)]
struct UserCache(Mutex<HashMap<UserId, CachedUser>>);

impl UserCache {
    /// Beyond this many users the cache starts afresh rather than tracking recency.
    const CAPACITY: usize = 100_000;

    fn get(
        &self,
        user: UserId,
        tenant: TenantId,
        session: SessionCheck,
        now: DateTime<Utc>,
    ) -> Option<CachedUser> {
        let entries = self.0.lock().ok()?;
        entries
            .get(&user)
            .filter(|c| {
                c.tenant == tenant
                    && c.generation == session.user_generation
                    && c.tenant_generation == session.tenant_generation
                    && c.expires_at > now
            })
            .copied()
    }

    fn put(&self, user: UserId, entry: CachedUser) {
        if let Ok(mut entries) = self.0.lock() {
            if entries.len() >= Self::CAPACITY {
                entries.clear();
            }
            entries.insert(user, entry);
        }
    }
}

/// Hashes of API keys found to be nobody's, until when that answer holds.
#[derive(Debug, Default)]
struct UnknownKeys(Mutex<HashMap<Vec<u8>, DateTime<Utc>>>);

impl UnknownKeys {
    /// Beyond this many the set starts afresh (a flood of made-up keys cannot grow it further).
    const CAPACITY: usize = 10_000;

    fn contains(&self, hash: &[u8], now: DateTime<Utc>) -> bool {
        self.0
            .lock()
            .ok()
            .and_then(|keys| keys.get(hash).copied())
            .is_some_and(|until| until > now)
    }

    fn insert(&self, hash: Vec<u8>, until: DateTime<Utc>) {
        if let Ok(mut keys) = self.0.lock() {
            if keys.len() >= Self::CAPACITY {
                keys.clear();
            }
            keys.insert(hash, until);
        }
    }
}

/// The principal a key's owner stands for at `now`, or why it stands for none.
fn key_principal(owner: KeyOwner, now: DateTime<Utc>) -> Result<Principal, Error> {
    match owner {
        KeyOwner::Platform { revoked: true, .. } | KeyOwner::Tenant { revoked: true, .. } => {
            Err(Error::Unauthenticated(AuthFailure::Revoked))
        }
        KeyOwner::Platform {
            expires_at: Some(at),
            ..
        }
        | KeyOwner::Tenant {
            expires_at: Some(at),
            ..
        } if at <= now => Err(Error::Unauthenticated(AuthFailure::Expired)),
        KeyOwner::Platform { key, .. } => Ok(Principal::Platform { key }),
        KeyOwner::Tenant {
            tenant_active: false,
            ..
        } => Err(Error::TenantSuspended),
        KeyOwner::Tenant {
            tenant,
            key,
            scopes,
            ..
        } => Ok(Principal::ApiKey {
            tenant,
            key,
            scopes,
        }),
    }
}

/// A key's owner as read, the epoch it was read under and until when it may be trusted.
#[derive(Clone, Debug)]
struct CachedKey {
    owner: KeyOwner,
    epoch: u64,
    expires_at: DateTime<Utc>,
}

/// Keys seen recently, by hash, so that a request that presents one needs no database round
/// trip. Entries are trusted only under the epoch they were read in (replaced by every
/// revocation and every change of a tenant's status) and until they expire, which also bounds
/// how stale a key's `last_used_at` gets (the database read notes the use). Only keys that
/// exist get here, so made-up ones cannot grow it.
#[derive(Debug, Default)]
struct KeyCache(Mutex<HashMap<Vec<u8>, CachedKey>>);

impl KeyCache {
    /// Beyond this many keys the cache starts afresh rather than tracking recency.
    const CAPACITY: usize = 100_000;

    fn get(&self, hash: &[u8], epoch: u64, now: DateTime<Utc>) -> Option<KeyOwner> {
        let entries = self.0.lock().ok()?;
        entries
            .get(hash)
            .filter(|c| c.epoch == epoch && c.expires_at > now)
            .map(|c| c.owner.clone())
    }

    fn put(&self, hash: Vec<u8>, owner: KeyOwner, epoch: u64, expires_at: DateTime<Utc>) {
        if let Ok(mut entries) = self.0.lock() {
            if entries.len() >= Self::CAPACITY {
                entries.clear();
            }
            entries.insert(
                hash,
                CachedKey {
                    owner,
                    epoch,
                    expires_at,
                },
            );
        }
    }
}

/// How long an attempt on an account waits after `failures` recent failed attempts on it: nothing
/// for the first three, then 250 ms doubling with each failure, at most four seconds.
fn progressive_delay(failures: u32) -> Duration {
    match failures.checked_sub(3) {
        None | Some(0) => Duration::ZERO,
        Some(n) => Duration::from_millis(250u64 << (n - 1).min(4)),
    }
}

fn chrono_duration(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// When a token's revocation record may be forgotten: once the token would be expired anyway.
#[must_use]
pub fn revocation_ttl(until: DateTime<Utc>, now: DateTime<Utc>) -> u64 {
    u64::try_from((until - now).num_seconds())
        .unwrap_or(0)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entities::{NewUser, UserCredentials, UserStatus};
    use crate::ids::{TenantId, UserId};
    use crate::ports::{
        MockPasswordHasher, MockPlatformStore, MockRateLimiter, MockSecrets, MockTokenCodec,
        MockTokenRevocation, RateDecision,
    };
    use crate::principal::Role;
    use crate::services::testing::{FakeTx, fixed_clock, now, sample_user, store_with_all};

    struct Mocks {
        platform: MockPlatformStore,
        hasher: MockPasswordHasher,
        codec: MockTokenCodec,
        revocation: MockTokenRevocation,
        limiter: MockRateLimiter,
        secrets: MockSecrets,
    }

    impl Mocks {
        fn new() -> Self {
            let mut limiter = MockRateLimiter::new();
            limiter.expect_hit().returning(|_, limit, _| {
                Ok(RateDecision {
                    allowed: true,
                    limit,
                    remaining: limit - 1,
                    reset_after_secs: 60,
                })
            });
            limiter.expect_reset().returning(|_| Ok(()));
            limiter.expect_peek().returning(|_, limit| {
                Ok(RateDecision {
                    allowed: true,
                    limit,
                    remaining: limit,
                    reset_after_secs: 60,
                })
            });
            limiter.expect_pause().returning(|_| ());
            Self {
                platform: MockPlatformStore::new(),
                hasher: MockPasswordHasher::new(),
                codec: MockTokenCodec::new(),
                revocation: MockTokenRevocation::new(),
                limiter,
                secrets: MockSecrets::new(),
            }
        }

        fn service(self, txs: Vec<FakeTx>) -> AuthService {
            AuthService::new(
                AuthPorts {
                    store: store_with_all(txs),
                    platform: Arc::new(self.platform),
                    hasher: Arc::new(self.hasher),
                    codec: Arc::new(self.codec),
                    revocation: Arc::new(self.revocation),
                    limiter: Arc::new(self.limiter),
                    secrets: Arc::new(self.secrets),
                    clock: fixed_clock(),
                },
                AuthPolicy::default(),
            )
        }
    }

    fn user(tenant: TenantId) -> User {
        sample_user(
            tenant,
            &NewUser {
                id: UserId::new(),
                email: Email::parse("ada@example.com").unwrap(),
                name: None,
                role: Role::Member,
                password_hash: String::new(),
            },
        )
    }

    /// A unit of work that reads `user` (as often as asked) in a tenant of `status`.
    fn reading(user: &User, status: TenantStatus) -> FakeTx {
        let mut tx = FakeTx::with_tenant(user.tenant_id, status);
        let found = user.clone();
        tx.users
            .expect_get()
            .returning(move |_, _| Ok(Some(found.clone())));
        tx
    }

    fn claims(user: &User, kind: TokenKind) -> TokenClaims {
        TokenClaims {
            subject: user.id,
            tenant: user.tenant_id,
            role: user.role,
            kind,
            jti: TokenId::new(),
            family: TokenFamilyId::new(),
            issued_at: now(),
            expires_at: now() + chrono::Duration::minutes(5),
        }
    }

    #[tokio::test]
    async fn wrong_password_and_unknown_tenant_answer_alike() {
        let tenant = TenantId::new();
        let ada = user(tenant);
        let mut m = Mocks::new();
        m.platform.expect_tenant_by_slug().returning(move |s| {
            Ok((s.as_str() == "acme").then_some((tenant, TenantStatus::Active)))
        });
        m.hasher
            .expect_verify()
            .times(2)
            .returning(|_, _| Ok(false));
        m.hasher
            .expect_hash()
            .times(1)
            .returning(|_| Ok("decoy".into()));
        let mut tx = FakeTx::new(tenant);
        tx.users.expect_credentials_by_email().returning(move |_| {
            Ok(Some(UserCredentials {
                user: ada.clone(),
                password_hash: "h".into(),
            }))
        });
        let service = m.service(vec![tx]);
        let wrong_password = service
            .login("acme", "ada@example.com", "nope-nope", "10.0.0.1")
            .await
            .unwrap_err();
        let wrong_tenant = service
            .login("other", "ada@example.com", "nope-nope", "10.0.0.1")
            .await
            .unwrap_err();
        assert_eq!(wrong_password.to_string(), wrong_tenant.to_string());
        assert!(matches!(
            wrong_password,
            Error::Unauthenticated(AuthFailure::BadCredentials)
        ));
    }

    #[tokio::test]
    async fn login_is_rate_limited_before_the_password_is_checked() {
        let mut m = Mocks::new();
        m.limiter = MockRateLimiter::new();
        // This client has used up its attempts on the account.
        m.limiter.expect_hit().times(1).returning(|_, limit, _| {
            Ok(RateDecision {
                allowed: false,
                limit,
                remaining: 0,
                reset_after_secs: 42,
            })
        });
        m.limiter.expect_peek().returning(|_, limit| {
            Ok(RateDecision {
                allowed: true,
                limit,
                remaining: limit,
                reset_after_secs: 60,
            })
        });
        m.hasher.expect_verify().never();
        let service = m.service(vec![]);
        let err = service
            .login("acme", "ada@example.com", "whatever1", "10.0.0.1")
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            Error::RateLimited {
                retry_after_secs: 42,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn refresh_tokens_are_not_access_tokens_and_vice_versa() {
        let ada = user(TenantId::new());
        let refresh = claims(&ada, TokenKind::Refresh);
        let access = claims(&ada, TokenKind::Access);
        let mut m = Mocks::new();
        m.codec
            .expect_verify()
            .returning(move |t| Ok(if t == "refresh" { refresh } else { access }));
        let service = m.service(vec![]);
        assert!(matches!(
            service.authenticate("refresh").await,
            Err(Error::Unauthenticated(AuthFailure::WrongTokenType))
        ));
        assert!(matches!(
            service.refresh("access").await,
            Err(Error::Unauthenticated(AuthFailure::WrongTokenType))
        ));
    }

    #[tokio::test]
    async fn reusing_a_rotated_refresh_token_fails() {
        let ada = user(TenantId::new());
        let refresh = claims(&ada, TokenKind::Refresh);
        let mut m = Mocks::new();
        m.codec.expect_verify().returning(move |_| Ok(refresh));
        m.revocation
            .expect_rotate()
            .returning(|_, _, _, _| Ok(Rotation::Reused));
        m.codec.expect_issue().never();
        let tx = reading(&ada, TenantStatus::Active);
        let service = m.service(vec![tx]);
        assert!(matches!(
            service.refresh("token").await,
            Err(Error::Unauthenticated(AuthFailure::RefreshReuse))
        ));
    }

    #[tokio::test]
    async fn revoked_and_disabled_are_refused() {
        let mut ada = user(TenantId::new());
        let access = claims(&ada, TokenKind::Access);
        let mut m = Mocks::new();
        m.codec.expect_verify().returning(move |_| Ok(access));
        let mut revoked = true;
        m.revocation
            .expect_check_session()
            .returning(move |_, _, _, _| {
                let answer = revoked;
                revoked = false;
                Ok(crate::ports::SessionCheck {
                    revoked: answer,
                    user_generation: 0,
                    tenant_generation: 0,
                    sessions_ended: None,
                })
            });
        ada.status = UserStatus::Disabled;
        let tx = reading(&ada, TenantStatus::Active);
        let service = m.service(vec![tx]);
        assert!(matches!(
            service.authenticate("t").await,
            Err(Error::Unauthenticated(AuthFailure::Revoked))
        ));
        assert!(matches!(
            service.authenticate("t").await,
            Err(Error::Forbidden(_))
        ));
    }

    #[tokio::test]
    async fn expired_and_revoked_api_keys_are_refused() {
        let mut m = Mocks::new();
        m.revocation.expect_api_keys_epoch().returning(|| Ok(1));
        m.secrets
            .expect_hash_api_key()
            .returning(|k| k.as_bytes().to_vec());
        let tenant = TenantId::new();
        m.platform.expect_key_owner().returning(move |hash, _| {
            let key = crate::ids::ApiKeyId::new();
            Ok(match hash {
                b"ak_expired" => Some(KeyOwner::Tenant {
                    tenant,
                    key,
                    scopes: crate::Scopes::ALL,
                    expires_at: Some(now() - chrono::Duration::seconds(1)),
                    revoked: false,
                    tenant_active: true,
                }),
                b"ak_revoked" => Some(KeyOwner::Tenant {
                    tenant,
                    key,
                    scopes: crate::Scopes::ALL,
                    expires_at: None,
                    revoked: true,
                    tenant_active: true,
                }),
                _ => None,
            })
        });
        let service = m.service(vec![]);
        for (key, failure) in [
            ("ak_expired", AuthFailure::Expired),
            ("ak_revoked", AuthFailure::Revoked),
            ("ak_unknown", AuthFailure::UnknownPrincipal),
        ] {
            match service.authenticate(key).await {
                Err(Error::Unauthenticated(f)) => assert_eq!(f, failure, "{key}"),
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn the_user_is_read_once_per_generation() {
        let ada = user(TenantId::new());
        let access = claims(&ada, TokenKind::Access);
        let mut m = Mocks::new();
        m.codec.expect_verify().returning(move |_| Ok(access));
        let mut generation = 0;
        m.revocation
            .expect_check_session()
            .returning(move |_, _, _, _| {
                // Unchanged for the first two requests, then the user changes.
                generation += 1;
                Ok(crate::ports::SessionCheck {
                    revoked: false,
                    user_generation: u64::from(generation > 2),
                    tenant_generation: 0,
                    sessions_ended: None,
                })
            });
        let mut first = FakeTx::with_tenant(ada.tenant_id, TenantStatus::Active);
        let found = ada.clone();
        first
            .users
            .expect_get()
            .times(1)
            .returning(move |_, _| Ok(Some(found.clone())));
        let mut second = FakeTx::with_tenant(ada.tenant_id, TenantStatus::Active);
        let mut promoted = ada.clone();
        promoted.role = Role::Admin;
        second
            .users
            .expect_get()
            .times(1)
            .returning(move |_, _| Ok(Some(promoted.clone())));
        // A third read would find no prepared unit of work and fail the test.
        let service = m.service(vec![first, second]);
        for expected in [Role::Member, Role::Member, Role::Admin, Role::Admin] {
            match service.authenticate("t").await.unwrap() {
                Principal::User { role, .. } => assert_eq!(role, expected),
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_suspended_tenants_sessions_are_refused_as_soon_as_its_generation_moves() {
        let ada = user(TenantId::new());
        let access = claims(&ada, TokenKind::Access);
        let refresh = claims(&ada, TokenKind::Refresh);
        let mut m = Mocks::new();
        m.codec
            .expect_verify()
            .returning(move |t| Ok(if t == "refresh" { refresh } else { access }));
        let mut calls = 0;
        m.revocation
            .expect_check_session()
            .returning(move |_, _, _, _| {
                // The tenant is suspended after the first request.
                calls += 1;
                Ok(crate::ports::SessionCheck {
                    revoked: false,
                    user_generation: 0,
                    tenant_generation: u64::from(calls > 1),
                    sessions_ended: None,
                })
            });
        m.codec.expect_issue().never();
        let active = reading(&ada, TenantStatus::Active);
        let suspended = reading(&ada, TenantStatus::Suspended);
        let refreshing = reading(&ada, TenantStatus::Suspended);
        let service = m.service(vec![active, suspended, refreshing]);
        assert!(service.authenticate("access").await.is_ok());
        assert!(matches!(
            service.authenticate("access").await,
            Err(Error::TenantSuspended)
        ));
        assert!(matches!(
            service.refresh("refresh").await,
            Err(Error::TenantSuspended)
        ));
    }

    #[tokio::test]
    async fn refresh_tokens_issued_before_the_user_was_disabled_stay_dead() {
        let mut ada = user(TenantId::new());
        let refresh = claims(&ada, TokenKind::Refresh);
        // Disabled after the token was issued, then enabled again.
        ada.sessions_valid_after = Some(refresh.issued_at + chrono::Duration::seconds(1));
        let mut m = Mocks::new();
        m.codec.expect_verify().returning(move |_| Ok(refresh));
        m.revocation.expect_rotate().never();
        let tx = reading(&ada, TenantStatus::Active);
        let service = m.service(vec![tx]);
        assert!(matches!(
            service.refresh("refresh").await,
            Err(Error::Unauthenticated(AuthFailure::Revoked))
        ));
    }

    #[test]
    fn the_delay_grows_with_an_accounts_failures_and_stops_at_four_seconds() {
        let delays: Vec<u64> = (0..10)
            .map(|n| u64::try_from(progressive_delay(n).as_millis()).unwrap())
            .collect();
        assert_eq!(delays, [0, 0, 0, 0, 250, 500, 1000, 2000, 4000, 4000]);
    }

    #[tokio::test]
    async fn an_unknown_api_key_is_looked_up_once_for_a_while() {
        let mut m = Mocks::new();
        m.revocation.expect_api_keys_epoch().returning(|| Ok(1));
        m.secrets
            .expect_hash_api_key()
            .returning(|k| k.as_bytes().to_vec());
        m.platform
            .expect_key_owner()
            .times(1)
            .returning(|_, _| Ok(None));
        let service = m.service(vec![]);
        for _ in 0..3 {
            assert!(matches!(
                service.authenticate("ak_made_up").await,
                Err(Error::Unauthenticated(AuthFailure::UnknownPrincipal))
            ));
        }
    }

    #[tokio::test]
    async fn an_api_key_is_read_once_per_epoch_and_every_time_without_one() {
        let mut m = Mocks::new();
        m.secrets
            .expect_hash_api_key()
            .returning(|k| k.as_bytes().to_vec());
        // Requests 1-2 under epoch 7, 3-4 under epoch 8 (a revocation), 5-6 without an answer.
        let mut asked = 0;
        m.revocation.expect_api_keys_epoch().returning(move || {
            asked += 1;
            match asked {
                1 | 2 => Ok(7),
                3 | 4 => Ok(8),
                _ => Err(Error::internal("redis is down")),
            }
        });
        let tenant = TenantId::new();
        let key = crate::ids::ApiKeyId::new();
        let mut reads = 0;
        m.platform
            .expect_key_owner()
            .times(4)
            .returning(move |_, _| {
                reads += 1;
                Ok(Some(KeyOwner::Tenant {
                    tenant,
                    key,
                    scopes: crate::Scopes::ALL,
                    expires_at: None,
                    // Revoked from the second read on.
                    revoked: reads > 1,
                    tenant_active: true,
                }))
            });
        let service = m.service(vec![]);
        for request in 1..=6 {
            let answer = service.authenticate("ak_real").await;
            if request <= 2 {
                assert!(
                    matches!(answer, Ok(Principal::ApiKey { key: k, .. }) if k == key),
                    "request {request}: {answer:?}"
                );
            } else {
                assert!(
                    matches!(answer, Err(Error::Unauthenticated(AuthFailure::Revoked))),
                    "request {request}: {answer:?}"
                );
            }
        }
    }
}
