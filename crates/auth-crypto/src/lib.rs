//! The cryptographic adapters behind the domain's authentication ports.
//!
//! The domain decides *when* a password is checked, a token issued or an API key minted; this crate
//! decides *how*, so the algorithms can be reviewed (and replaced) in one place without touching the
//! business rules:
//!
//! - [`JwtCodec`] implements [`domain::ports::TokenCodec`]: HS256 JWTs whose header names the key
//!   (`kid`) that signed them, so signing keys can be rotated while tokens signed with the previous key
//!   stay valid until they expire. The algorithm is fixed by the server, never chosen by the token.
//! - [`Argon2Hasher`] implements [`domain::ports::PasswordHasher`]: argon2id PHC strings, computed on
//!   Tokio's blocking pool so a login does not stall the async executor.
//! - [`RandomSecrets`] implements [`domain::ports::Secrets`]: API keys and generated passwords from the
//!   operating system's RNG; API keys are stored as SHA-256 digests only.
//! - [`AesSecretBox`] implements [`domain::ports::SecretBox`]: AES-256-GCM for the secrets the
//!   platform must read back (tenants' provider API keys), under rotatable keys.

mod jwt;
mod keys;
mod password;
mod sealing;

pub use jwt::{JwtCodec, JwtConfig, JwtConfigError, MIN_SECRET_LEN};
pub use keys::{API_KEY_PREFIX, API_KEY_PREFIX_LEN, RandomSecrets};
pub use password::{Argon2Hasher, InvalidArgon2Params};
pub use sealing::{AesSecretBox, KeyRingError};
