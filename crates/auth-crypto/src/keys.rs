//! API keys and generated passwords.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::ports::{MintedKey, Secrets};
use rand::RngCore as _;
use rand::TryRngCore as _;
use rand::rngs::OsRng;
use sha2::{Digest as _, Sha256};

/// What every API key starts with, so leaked keys can be recognised by secret scanners and told apart
/// from JWTs at a glance.
pub const API_KEY_PREFIX: &str = "ak_";

/// How many leading characters of a key are kept in clear as its prefix: enough (`ak_` + 8 characters,
/// 48 bits) to let people and the key lookup tell their keys apart, far too few to guess the rest.
pub const API_KEY_PREFIX_LEN: usize = 11;

/// Random bytes behind an API key: 256 bits, so a plain (fast) SHA-256 is a sufficient stored form.
const API_KEY_BYTES: usize = 32;

/// Random bytes behind a generated password: 144 bits, 24 base64url characters.
const PASSWORD_BYTES: usize = 18;

/// Mints API keys and passwords from the operating system's RNG.
///
/// The OS RNG is used directly (not a user-space generator seeded from it) because these values are
/// long-lived credentials and are minted rarely, so the extra system call costs nothing that matters.
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomSecrets;

impl RandomSecrets {
    /// Stateless; provided so wiring code reads the same for every adapter.
    #[must_use]
    pub const fn new() -> Self {
        Self
    }
}

/// Fills `N` bytes from the OS RNG.
///
/// # Panics
/// If the operating system cannot provide randomness. The ports are infallible and there is no safe
/// value to return instead: a predictable credential would be far worse than a failed request.
pub(crate) fn os_random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    OsRng.unwrap_err().fill_bytes(&mut bytes);
    bytes
}

impl Secrets for RandomSecrets {
    fn mint_api_key(&self) -> MintedKey {
        let plaintext = format!(
            "{API_KEY_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(os_random::<API_KEY_BYTES>())
        );
        let prefix = plaintext.chars().take(API_KEY_PREFIX_LEN).collect();
        let hash = self.hash_api_key(&plaintext);
        MintedKey {
            plaintext,
            prefix,
            hash,
        }
    }

    fn hash_api_key(&self, plaintext: &str) -> Vec<u8> {
        Sha256::digest(plaintext.as_bytes()).to_vec()
    }

    fn generate_password(&self) -> String {
        URL_SAFE_NO_PAD.encode(os_random::<PASSWORD_BYTES>())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn is_base64url(text: &str) -> bool {
        text.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }

    #[test]
    fn api_keys_have_the_documented_shape() {
        let key = RandomSecrets::new().mint_api_key();
        assert_eq!(key.plaintext.len(), 3 + 43);
        assert!(key.plaintext.starts_with("ak_"));
        assert!(is_base64url(&key.plaintext[3..]));
        assert_eq!(key.prefix.len(), 11);
        assert!(key.plaintext.starts_with(&key.prefix));
        assert_eq!(key.hash.len(), 32);
    }

    #[test]
    fn the_stored_hash_is_sha256_of_the_whole_key() {
        let secrets = RandomSecrets::new();
        let key = secrets.mint_api_key();
        assert_eq!(key.hash, secrets.hash_api_key(&key.plaintext));
        assert_eq!(key.hash, Sha256::digest(key.plaintext.as_bytes()).to_vec());
        // Stable across calls and instances, and a known vector so the stored form never drifts.
        assert_eq!(
            RandomSecrets.hash_api_key("abc"),
            secrets.hash_api_key("abc")
        );
        let hex: String = secrets
            .hash_api_key("abc")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(secrets.hash_api_key("ak_a"), secrets.hash_api_key("ak_b"));
    }

    #[test]
    fn keys_and_passwords_are_unique() {
        let secrets = RandomSecrets::new();
        let keys: HashSet<_> = (0..200).map(|_| secrets.mint_api_key().plaintext).collect();
        assert_eq!(keys.len(), 200);
        let passwords: HashSet<_> = (0..200).map(|_| secrets.generate_password()).collect();
        assert_eq!(passwords.len(), 200);
    }

    #[test]
    fn generated_passwords_are_24_base64url_characters() {
        let password = RandomSecrets::new().generate_password();
        assert_eq!(password.len(), 24);
        assert!(is_base64url(&password));
        assert!(domain::values::Password::parse(&password).is_ok());
    }
}
