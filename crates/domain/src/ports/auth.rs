use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::{AuthFailure, Error};
use crate::ids::{TenantId, TokenFamilyId, TokenId, UserId};
use crate::principal::Role;
use crate::values::Password;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Access,
    Refresh,
}

/// The claims of a platform-issued JWT. The codec adds `iss`, `aud` and the `kid` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenClaims {
    pub subject: UserId,
    pub tenant: TenantId,
    pub role: Role,
    pub kind: TokenKind,
    pub jti: TokenId,
    /// The login this token descends from; logout and refresh reuse revoke the whole family.
    pub family: TokenFamilyId,
    pub issued_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Signs and verifies tokens.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait TokenCodec: Send + Sync {
    /// # Errors
    /// [`Error::Internal`] when signing fails.
    fn issue(&self, claims: &TokenClaims) -> Result<String, Error>;

    /// Verifies signature, algorithm, key id, issuer, audience and expiry.
    ///
    /// # Errors
    /// The [`AuthFailure`] that describes the first check that failed.
    fn verify(&self, token: &str) -> Result<TokenClaims, AuthFailure>;
}

/// Hashes passwords (slow on purpose; adapters run it off the async executor).
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait PasswordHasher: Send + Sync {
    /// # Errors
    /// [`Error::Busy`] when the hasher is at capacity; [`Error::Internal`] when hashing fails.
    async fn hash(&self, password: &Password) -> Result<String, Error>;

    /// Whether `password` matches the stored `hash`; a malformed hash does not match.
    ///
    /// # Errors
    /// [`Error::Busy`] when the hasher is at capacity (every hash costs memory and a core, so
    /// they are bounded rather than queued without limit).
    async fn verify(&self, password: &str, hash: &str) -> Result<bool, Error>;
}

/// A freshly minted API key: the plaintext is shown once, only the hash is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MintedKey {
    pub plaintext: String,
    pub prefix: String,
    pub hash: Vec<u8>,
}

/// Random secrets: API keys and generated passwords.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Secrets: Send + Sync {
    fn mint_api_key(&self) -> MintedKey;
    /// The stored form of a presented key.
    fn hash_api_key(&self, plaintext: &str) -> Vec<u8>;
    fn generate_password(&self) -> String;
}

/// The shared state of one session, read on every request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionCheck {
    /// The token or its family was revoked.
    pub revoked: bool,
    /// Bumped by [`TokenRevocation::user_changed`]; a cached view of the user taken under another
    /// generation is stale.
    pub user_generation: u64,
    /// Bumped by [`TokenRevocation::tenant_changed`] (a suspension or a resumption); a cached
    /// view of the tenant's status taken under another generation is stale.
    pub tenant_generation: u64,
    /// When the user's sessions were last ended ([`TokenRevocation::end_user_sessions`]).
    pub sessions_ended: Option<SessionsEnded>,
}

/// Tokens issued before `at` are dead, but those of `kept_family`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionsEnded {
    pub at: DateTime<Utc>,
    pub kept_family: Option<TokenFamilyId>,
}

impl SessionsEnded {
    /// Whether a token of `family` issued at `issued_at` was ended.
    #[must_use]
    pub fn ends(&self, family: TokenFamilyId, issued_at: DateTime<Utc>) -> bool {
        issued_at < self.at && self.kept_family != Some(family)
    }
}

/// What a presented refresh token turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// It was the family's current token; the family now expects `next`.
    Rotated,
    /// It had already been rotated (or the family was revoked): the family is now revoked.
    Reused,
}

/// Revocation state of tokens and refresh families, shared by every server instance.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait TokenRevocation: Send + Sync {
    /// Whether the token or its family was revoked, and the generations of the user and of its
    /// tenant, in one round trip (this runs on every request).
    ///
    /// # Errors
    /// [`Error::Internal`] when the store does not answer (callers fail closed).
    async fn check_session(
        &self,
        jti: TokenId,
        family: TokenFamilyId,
        user: UserId,
        tenant: TenantId,
    ) -> Result<SessionCheck, Error>;

    /// Records that a tenant's status changed (suspended or resumed), so every server instance
    /// reads it afresh for the tenant's next request instead of trusting what it cached.
    ///
    /// # Errors
    /// [`Error::Internal`] when the store does not answer.
    async fn tenant_changed(&self, tenant: TenantId) -> Result<(), Error>;

    /// The current epoch of API keys: replaced whenever a key is revoked or a tenant's status
    /// changes ([`TokenRevocation::api_keys_changed`]), so a view of a key cached under another
    /// epoch is stale. One round trip, made on every request that presents a key.
    ///
    /// # Errors
    /// [`Error::Internal`] when the store does not answer.
    async fn api_keys_epoch(&self) -> Result<u64, Error>;

    /// Starts a new epoch of API keys: every server reads each key afresh on its next use.
    ///
    /// # Errors
    /// [`Error::Internal`] when the store does not answer.
    async fn api_keys_changed(&self) -> Result<(), Error>;

    /// Ends a user's sessions at once on every server: access tokens issued before `ended.at`
    /// are refused (but those of `ended.kept_family`). Kept a day, longer than any access token
    /// lives; refresh tokens are ended durably by the user's row.
    ///
    /// # Errors
    /// [`Error::Internal`] when the store does not answer.
    async fn end_user_sessions(&self, user: UserId, ended: SessionsEnded) -> Result<(), Error>;

    /// Records that a user's role, status or existence changed, so every server instance reads
    /// the user afresh instead of trusting what it cached.
    ///
    /// # Errors
    /// [`Error::Internal`] when the store does not answer.
    async fn user_changed(&self, user: UserId) -> Result<(), Error>;

    /// # Errors
    /// [`Error::Internal`] when the store does not answer.
    async fn revoke_token(&self, jti: TokenId, until: DateTime<Utc>) -> Result<(), Error>;

    /// Records the first refresh token of a new family.
    ///
    /// # Errors
    /// [`Error::Internal`] when the store does not answer.
    async fn start_family(
        &self,
        family: TokenFamilyId,
        current: TokenId,
        until: DateTime<Utc>,
    ) -> Result<(), Error>;

    /// Atomically replaces `presented` by `next` if it is the family's current token; otherwise
    /// revokes the family.
    ///
    /// # Errors
    /// [`Error::Internal`] when the store does not answer.
    async fn rotate(
        &self,
        family: TokenFamilyId,
        presented: TokenId,
        next: TokenId,
        until: DateTime<Utc>,
    ) -> Result<Rotation, Error>;

    /// # Errors
    /// [`Error::Internal`] when the store does not answer.
    async fn revoke_family(&self, family: TokenFamilyId, until: DateTime<Utc>)
    -> Result<(), Error>;
}

/// The outcome of counting one attempt against a limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset_after_secs: u64,
}

/// Fixed-window counters shared by every server instance.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one attempt under `key`.
    ///
    /// # Errors
    /// [`Error::Internal`] when the store does not answer.
    async fn hit(&self, key: &str, limit: u32, window: Duration) -> Result<RateDecision, Error>;

    /// Forgets the attempts counted under `key` (after a successful login, say).
    ///
    /// # Errors
    /// [`Error::Internal`] when the store does not answer.
    async fn reset(&self, key: &str) -> Result<(), Error>;

    /// The attempts counted under `key` against `limit`, counting none: `allowed` while fewer
    /// than `limit` were counted in the current window.
    ///
    /// # Errors
    /// [`Error::Internal`] when the store does not answer.
    async fn peek(&self, key: &str, limit: u32) -> Result<RateDecision, Error>;

    /// Slows the caller down by `delay` (progressive delays after failures); the limiter keeps
    /// the time, the domain decides how much.
    async fn pause(&self, delay: Duration);
}
