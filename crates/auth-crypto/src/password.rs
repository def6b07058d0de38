//! Password hashing with argon2id.

use argon2::password_hash::phc::PasswordHash;
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use async_trait::async_trait;
use domain::Error;
use domain::ports::PasswordHasher;
use domain::values::Password;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

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
///
/// Each hash holds `m_cost` of memory and a core for tens of milliseconds, so they are bounded:
/// at most one per core runs at once, at most [`Self::QUEUE_PER_CORE`] per core wait, and
/// anything past that is [`Error::Busy`] at once (a burst of logins cannot take gigabytes or every
/// blocking thread). Clones share the bound.
#[derive(Clone, Debug)]
pub struct Argon2Hasher {
    params: Params,
    gate: Arc<Gate>,
}

#[derive(Debug)]
struct Gate {
    running: Arc<Semaphore>,
    /// Hashes running or waiting to run.
    admitted: AtomicUsize,
    max_admitted: usize,
}

impl Argon2Hasher {
    /// Hashes that may wait for a core, per core.
    pub const QUEUE_PER_CORE: usize = 8;

    /// The OWASP-recommended argon2id baseline (m = 19 456 KiB, t = 2, p = 1), the production choice.
    #[must_use]
    pub fn new() -> Self {
        Self::with(Params::default())
    }

    fn with(params: Params) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self::bounded(params, cores, cores * Self::QUEUE_PER_CORE)
    }

    fn bounded(params: Params, running: usize, waiting: usize) -> Self {
        Self {
            params,
            gate: Arc::new(Gate {
                running: Arc::new(Semaphore::new(running.max(1))),
                admitted: AtomicUsize::new(0),
                max_admitted: running.max(1) + waiting,
            }),
        }
    }

    /// Runs `work` on the blocking pool once a core is free; [`Error::Busy`] when too many wait.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Error> {
        let gate = &self.gate;
        if gate.admitted.fetch_add(1, Ordering::AcqRel) >= gate.max_admitted {
            gate.admitted.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Busy);
        }
        let admitted = Admitted(Arc::clone(gate));
        let permit = Arc::clone(&gate.running)
            .acquire_owned()
            .await
            .map_err(Error::internal)?;
        // The hash holds its place until it is done, not until its request is: a client that
        // gives up does not free a slot while its hash still runs on the blocking pool.
        tokio::task::spawn_blocking(move || {
            let _held = (admitted, permit);
            work()
        })
        .await
        .map_err(Error::internal)
    }

    /// Still argon2id, with explicit costs: cheap ones keep test suites fast, dearer ones follow
    /// hardware upgrades. `m_cost` is in KiB, `t_cost` is the number of passes, `p_cost` the lanes.
    ///
    /// # Errors
    /// [`InvalidArgon2Params`] when argon2 refuses the combination.
    pub fn with_params(m_cost: u32, t_cost: u32, p_cost: u32) -> Result<Self, InvalidArgon2Params> {
        let params = Params::new(m_cost, t_cost, p_cost, None)
            .map_err(|e| InvalidArgon2Params(e.to_string()))?;
        Ok(Self::with(params))
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

/// Leaves the gate when the hash ends, or when it was refused or abandoned before it started.
struct Admitted(Arc<Gate>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

#[async_trait]
impl PasswordHasher for Argon2Hasher {
    async fn hash(&self, password: &Password) -> Result<String, Error> {
        let argon2 = self.argon2();
        let password = password.expose().as_bytes().to_vec();
        self.run(move || {
            // `hash_password` draws a fresh 16-byte salt from the OS RNG.
            argon2
                .hash_password(&password)
                .map(|hash| hash.to_string())
                .map_err(Error::internal)
        })
        .await?
    }

    async fn verify(&self, password: &str, hash: &str) -> Result<bool, Error> {
        let argon2 = self.argon2();
        let password = password.as_bytes().to_vec();
        let hash = hash.to_owned();
        self.run(move || {
            // The algorithm, version, salt and costs come from the stored PHC string, not from `self`.
            PasswordHash::new(&hash)
                .is_ok_and(|parsed| argon2.verify_password(&password, &parsed).is_ok())
        })
        .await
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
        assert!(hasher.verify("correct horse", &hash).await.unwrap());
        assert!(!hasher.verify("correct horsf", &hash).await.unwrap());
        assert!(!hasher.verify("", &hash).await.unwrap());
    }

    #[tokio::test]
    async fn default_params_are_owasp_argon2id() {
        let hasher = Argon2Hasher::new();
        let hash = hasher.hash(&password("correct horse")).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(hasher.verify("correct horse", &hash).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_made_with_other_params_still_verify() {
        let hash = cheap().hash(&password("correct horse")).await.unwrap();
        let other = Argon2Hasher::with_params(128, 2, 1).unwrap();
        assert!(other.verify("correct horse", &hash).await.unwrap());
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
                !hasher.verify("correct horse", garbage).await.unwrap(),
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
        assert!(hasher.verify("correct horse", &a).await.unwrap());
        assert!(hasher.verify("correct horse", &b).await.unwrap());
    }

    #[test]
    fn refuses_impossible_params() {
        assert!(Argon2Hasher::with_params(1, 1, 1).is_err());
        assert!(Argon2Hasher::with_params(64, 0, 1).is_err());
        assert!(Argon2Hasher::with_params(64, 1, 0).is_err());
    }

    #[tokio::test]
    async fn hashes_past_the_queue_are_busy_rather_than_queued() {
        // One may run and one wait; the rest are refused at once, not queued.
        let hasher = Argon2Hasher::bounded(Params::default(), 1, 1);
        let hash = cheap().hash(&password("correct horse")).await.unwrap();
        // The core is taken (as by a long hash), so whoever is admitted waits.
        let core = hasher.gate.running.try_acquire().unwrap();
        let waiting = {
            let (hasher, hash) = (hasher.clone(), hash.clone());
            tokio::spawn(async move { hasher.verify("correct horse", &hash).await })
        };
        while hasher.gate.admitted.load(Ordering::Acquire) < 1 {
            tokio::task::yield_now().await;
        }
        let second = hasher.clone();
        let also_waiting = tokio::spawn({
            let hash = hash.clone();
            async move { second.verify("correct horse", &hash).await }
        });
        while hasher.gate.admitted.load(Ordering::Acquire) < 2 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            hasher.verify("correct horse", &hash).await,
            Err(Error::Busy)
        ));
        drop(core);
        assert!(waiting.await.unwrap().unwrap());
        assert!(also_waiting.await.unwrap().unwrap());
        // Once they are done, the gate is open again.
        assert!(hasher.verify("correct horse", &hash).await.unwrap());
    }
}
