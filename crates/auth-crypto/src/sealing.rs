//! [`AesSecretBox`]: AES-256-GCM (ring) for secrets the platform must read back, such as tenants'
//! provider API keys. Each secret is sealed under the first key of the ring with a random 96-bit
//! nonce and bound to its context (tenant and provider) as associated data, so a ciphertext copied
//! to another row does not open. The key id is stored beside the ciphertext: older keys stay in the
//! ring until `agentic keys rotate` has re-sealed everything under the current one.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use domain::ports::{SealedSecret, SecretBox, SecretError};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};

use crate::keys::os_random;

/// The keys secrets are sealed with; the first seals, every one opens.
pub struct AesSecretBox {
    keys: Vec<(String, LessSafeKey)>,
}

/// Why a key ring from configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("AGENTIC_SECRET_KEYS: {0:?} is not `<id>:<base64 of 32 bytes>`")]
    Malformed(String),
    #[error("AGENTIC_SECRET_KEYS: key {0:?} is not 32 bytes")]
    Length(String),
    #[error("AGENTIC_SECRET_KEYS: key id {0:?} appears twice")]
    Duplicate(String),
}

impl AesSecretBox {
    /// A ring from `<id>:<base64 key>[,<id>:<base64 key>...]` (the first is current); empty text
    /// is an empty ring, which seals nothing.
    ///
    /// # Errors
    /// A malformed entry, a key that is not 32 bytes, an id given twice.
    pub fn from_config(text: &str) -> Result<Self, KeyRingError> {
        let mut keys: Vec<(String, LessSafeKey)> = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (id, key) = entry
                .split_once(':')
                .filter(|(id, _)| !id.is_empty() && id.len() <= 64)
                .ok_or_else(|| KeyRingError::Malformed(entry.chars().take(12).collect()))?;
            let bytes = STANDARD
                .decode(key.trim())
                .map_err(|_| KeyRingError::Malformed(id.to_owned()))?;
            let unbound = UnboundKey::new(&AES_256_GCM, &bytes)
                .map_err(|_| KeyRingError::Length(id.to_owned()))?;
            if keys.iter().any(|(known, _)| known == id) {
                return Err(KeyRingError::Duplicate(id.to_owned()));
            }
            keys.push((id.to_owned(), LessSafeKey::new(unbound)));
        }
        Ok(Self { keys })
    }

    /// A new random key, as configuration takes it (`<id>:<base64>`).
    #[must_use]
    pub fn generate(id: &str) -> String {
        format!("{id}:{}", STANDARD.encode(os_random::<32>()))
    }
}

impl SecretBox for AesSecretBox {
    fn seal(&self, plaintext: &str, context: &[u8]) -> Result<SealedSecret, SecretError> {
        let (id, key) = self.keys.first().ok_or(SecretError::NotConfigured)?;
        let nonce_bytes = os_random::<NONCE_LEN>();
        let mut sealed = plaintext.as_bytes().to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce_bytes),
            Aad::from(context),
            &mut sealed,
        )
        .map_err(|_| SecretError::Corrupt)?;
        let mut ciphertext = nonce_bytes.to_vec();
        ciphertext.extend_from_slice(&sealed);
        Ok(SealedSecret {
            key_id: id.clone(),
            ciphertext,
        })
    }

    fn open(&self, sealed: &SealedSecret, context: &[u8]) -> Result<String, SecretError> {
        let (_, key) = self
            .keys
            .iter()
            .find(|(id, _)| *id == sealed.key_id)
            .ok_or_else(|| SecretError::UnknownKey(sealed.key_id.clone()))?;
        if sealed.ciphertext.len() < NONCE_LEN {
            return Err(SecretError::Corrupt);
        }
        let (nonce, body) = sealed.ciphertext.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SecretError::Corrupt)?;
        let mut body = body.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(context), &mut body)
            .map_err(|_| SecretError::Corrupt)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::Corrupt)
    }

    fn current_key_id(&self) -> Option<String> {
        self.keys.first().map(|(id, _)| id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_only_with_its_context_and_under_a_rotated_ring() {
        let old = AesSecretBox::generate("k1");
        let new = AesSecretBox::generate("k2");
        let ring = AesSecretBox::from_config(&old).unwrap();
        let sealed = ring.seal("sk-secret", b"tenant-a/provider-1").unwrap();
        assert_eq!(sealed.key_id, "k1");
        assert!(!sealed.ciphertext.windows(9).any(|w| w == b"sk-secret"));
        assert_eq!(
            ring.open(&sealed, b"tenant-a/provider-1").unwrap(),
            "sk-secret"
        );
        assert_eq!(
            ring.open(&sealed, b"tenant-b/provider-1"),
            Err(SecretError::Corrupt)
        );
        let mut tampered = sealed.clone();
        *tampered.ciphertext.last_mut().unwrap() ^= 1;
        assert_eq!(
            ring.open(&tampered, b"tenant-a/provider-1"),
            Err(SecretError::Corrupt)
        );
        // The new key seals; the old one still opens what it sealed.
        let rotated = AesSecretBox::from_config(&format!("{new},{old}")).unwrap();
        assert_eq!(rotated.current_key_id().as_deref(), Some("k2"));
        assert_eq!(
            rotated.open(&sealed, b"tenant-a/provider-1").unwrap(),
            "sk-secret"
        );
        assert_eq!(rotated.seal("x", b"c").unwrap().key_id, "k2");
        // Without the old key, it does not open.
        let only_new = AesSecretBox::from_config(&new).unwrap();
        assert!(matches!(
            only_new.open(&sealed, b"tenant-a/provider-1"),
            Err(SecretError::UnknownKey(_))
        ));
    }

    #[test]
    fn bad_rings_are_refused() {
        assert!(
            AesSecretBox::from_config("")
                .unwrap()
                .current_key_id()
                .is_none()
        );
        assert!(AesSecretBox::from_config("nokey").is_err());
        assert!(AesSecretBox::from_config("k:c2hvcnQ=").is_err());
        let key = AesSecretBox::generate("k");
        assert!(AesSecretBox::from_config(&format!("{key},{key}")).is_err());
    }
}
