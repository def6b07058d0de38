//! Password hashing with argon2id.

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use async_trait::async_trait;
use domain::Error;
use domain::ports::PasswordHasher;
use domain::values::Password;

/// The argon2 cost parameters were refused (for example a memory cost below `8 × p_cost` KiB).
#[derive(Debug, thiserror::Error)]
#[error("invalid argon2 parameters: {0}")]
pub struct InvalidArgon2Params(String);

/// Hashes passwords with argon2id into PHC strings (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
///
/// The PHC string carries its own salt and parameters, so raising the cost later does not invalidate
/// stored hashes: old ones still verify with the parameters they were made with. Both hashing and
/// verifying are CPU- and memory-hard on purpose, so they run on Tokio's blocking pool instead of
/// stalling the async executor that serves other requests.
#[derive(Clone, Debug)]
pub struct Argon2Hasher {
    params: Params,
}

impl Argon2Hasher {
    /// The OWASP-recommended argon2id baseline (m = 19 456 KiB, t = 2, p = 1), the production choice.
    #[must_use]
    pub fn new() -> Self {
        Self {
            params: Params::default(),
        }
    }

    /// Still argon2id, with explicit costs: cheap ones keep test suites fast, dearer ones follow
    /// hardware upgrades. `m_cost` is in KiB, `t_cost` is the number of passes, `p_cost` the lanes.
    ///
    /// # Errors
    /// [`InvalidArgon2Params`] when argon2 refuses the combination.
    pub fn with_params(m_cost: u32, t_cost: u32, p_cost: u32) -> Result<Self, InvalidArgon2Params> {
        let params = Params::new(m_cost, t_cost, p_cost, None)
            .map_err(|e| InvalidArgon2Params(e.to_string()))?;
        Ok(Self { params })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }
}

impl Default for Argon2Hasher {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<String, Error> {
        let argon2 = self.argon2();
        let password = password.expose().as_bytes().to_vec();
        tokio::task::spawn_blocking(move || {
            // `hash_password` draws a fresh 16-byte salt from the OS RNG.
            argon2
                .hash_password(&password)
                .map(|hash| hash.to_string())
                .map_err(Error::internal)
        })
        .await
        .map_err(Error::internal)?
    }

    async fn verify(&self, password: &str, hash: &str) -> bool {
        let argon2 = self.argon2();
        let password = password.as_bytes().to_vec();
        let hash = hash.to_owned();
        tokio::task::spawn_blocking(move || {
            // The algorithm, version, salt and costs come from the stored PHC string, not from `self`.
            PasswordHash::new(&hash)
                .is_ok_and(|parsed| argon2.verify_password(&password, &parsed).is_ok())
        })
        .await
        .unwrap_or(false)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cheap() -> Argon2Hasher {
        Argon2Hasher::with_params(64, 1, 1).unwrap()
    }

    fn password(text: &str) -> Password {
        Password::parse(text).unwrap()
    }

    #[tokio::test]
    async fn hash_then_verify() {
        let hasher = cheap();
        let hash = hasher.hash(&password("correct horse")).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{hash}");
        assert!(hasher.verify("correct horse", &hash).await);
        assert!(!hasher.verify("correct horsf", &hash).await);
        assert!(!hasher.verify("", &hash).await);
    }

    #[tokio::test]
    async fn default_params_are_owasp_argon2id() {
        let hasher = Argon2Hasher::new();
        let hash = hasher.hash(&password("correct horse")).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(hasher.verify("correct horse", &hash).await);
    }

    #[tokio::test]
    async fn hashes_made_with_other_params_still_verify() {
        let hash = cheap().hash(&password("correct horse")).await.unwrap();
        let other = Argon2Hasher::with_params(128, 2, 1).unwrap();
        assert!(other.verify("correct horse", &hash).await);
    }

    #[tokio::test]
    async fn garbage_hashes_do_not_match() {
        let hasher = cheap();
        for garbage in [
            "",
            "not a hash",
            "$argon2id$",
            "$argon2id$v=19$m=64,t=1,p=1$",
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$!!!",
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
        ] {
            assert!(
                !hasher.verify("correct horse", garbage).await,
                "{garbage:?}"
            );
        }
    }

    #[tokio::test]
    async fn salts_differ() {
        let hasher = cheap();
        let a = hasher.hash(&password("correct horse")).await.unwrap();
        let b = hasher.hash(&password("correct horse")).await.unwrap();
        assert_ne!(a, b);
        assert!(hasher.verify("correct horse", &a).await);
        assert!(hasher.verify("correct horse", &b).await);
    }

    #[test]
    fn refuses_impossible_params() {
        assert!(Argon2Hasher::with_params(1, 1, 1).is_err());
        assert!(Argon2Hasher::with_params(64, 0, 1).is_err());
        assert!(Argon2Hasher::with_params(64, 1, 0).is_err());
    }
}
