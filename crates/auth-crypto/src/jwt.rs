//! HS256 JWTs with key ids, for access and refresh tokens.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use domain::error::AuthFailure;
use domain::ports::{TokenClaims, TokenCodec, TokenKind};
use domain::{Error, Role, TenantId, TokenFamilyId, TokenId, UserId};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The shortest HMAC secret accepted, in bytes: HS256 is only as strong as its key, and RFC 7518
/// §3.2 asks for a key at least as long as the hash output (256 bits).
pub const MIN_SECRET_LEN: usize = 32;

/// The only algorithm issued and accepted. It is fixed here, never read from a token's header, so a
/// forged header cannot downgrade verification to `none` or confuse key types.
const ALGORITHM: Algorithm = Algorithm::HS256;

/// What a [`JwtCodec`] signs and checks with.
///
/// Several keys can be listed so secrets can be rotated without logging everybody out: add the new
/// key and make it the signing key, keep the old one for verification until the last token it signed
/// has expired, then remove it.
#[derive(Clone)]
pub struct JwtConfig {
    /// Written to `iss` and required on verification, so tokens of another deployment that happens
    /// to share a secret are refused.
    pub issuer: String,
    /// Written to `aud` and required on verification, for the same reason.
    pub audience: String,
    /// The `kid` of the key that signs new tokens; must be one of `keys`.
    pub signing_kid: String,
    /// Every key tokens may be verified with, as `(kid, secret)`; each secret at least
    /// [`MIN_SECRET_LEN`] bytes.
    pub keys: Vec<(String, Vec<u8>)>,
}

/// Secrets stay out of logs: only the key ids are shown.
impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("signing_kid", &self.signing_kid)
            .field(
                "keys",
                &self.keys.iter().map(|(kid, _)| kid).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Why a [`JwtConfig`] was refused; reported at startup so a misconfigured server never serves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtConfigError {
    /// Nothing could be signed or verified.
    #[error("no JWT keys are configured")]
    NoKeys,
    /// Issued tokens must name their key, so an empty kid cannot be told from a missing one.
    #[error("a JWT key has an empty key id")]
    EmptyKid,
    /// Two secrets under one kid would make verification depend on which one wins.
    #[error("the JWT key id {0:?} is listed more than once")]
    DuplicateKid(String),
    /// A short HMAC secret can be brute-forced from any token it signed.
    #[error("the JWT key {kid:?} is {len} bytes long; at least {MIN_SECRET_LEN} are required")]
    SecretTooShort {
        /// The key id of the offending secret (never the secret itself).
        kid: String,
        /// Its length in bytes.
        len: usize,
    },
    /// New tokens could not be signed.
    #[error("the JWT signing key id {0:?} is not among the configured keys")]
    UnknownSigningKid(String),
    /// Without an issuer, tokens of other deployments sharing a secret would be accepted.
    #[error("the JWT issuer is empty")]
    EmptyIssuer,
    /// Without an audience, tokens meant for other services sharing a secret would be accepted.
    #[error("the JWT audience is empty")]
    EmptyAudience,
}

/// Issues and verifies the platform's JWTs (HS256, `kid` header, `iss`/`aud` checked, no leeway on
/// `exp`), the adapter behind [`TokenCodec`].
#[derive(Clone)]
pub struct JwtCodec {
    issuer: String,
    audience: String,
    signing_kid: String,
    signing_key: EncodingKey,
    verifying_keys: HashMap<String, DecodingKey>,
    validation: Validation,
}

/// Secrets stay out of logs: only the key ids are shown.
impl fmt::Debug for JwtCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut kids: Vec<_> = self.verifying_keys.keys().collect();
        kids.sort();
        f.debug_struct("JwtCodec")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("signing_kid", &self.signing_kid)
            .field("verifying_kids", &kids)
            .finish_non_exhaustive()
    }
}

impl JwtCodec {
    /// Checks the configuration once, at startup, so that signing cannot fail later for a reason
    /// that was knowable up front.
    ///
    /// # Errors
    /// [`JwtConfigError`] when there are no keys, a kid is empty or repeated, a secret is shorter
    /// than [`MIN_SECRET_LEN`], the signing kid is not listed, or the issuer or audience is empty.
    pub fn new(config: JwtConfig) -> Result<Self, JwtConfigError> {
        let JwtConfig {
            issuer,
            audience,
            signing_kid,
            keys,
        } = config;
        if issuer.is_empty() {
            return Err(JwtConfigError::EmptyIssuer);
        }
        if audience.is_empty() {
            return Err(JwtConfigError::EmptyAudience);
        }
        if keys.is_empty() {
            return Err(JwtConfigError::NoKeys);
        }
        let mut verifying_keys = HashMap::with_capacity(keys.len());
        let mut signing_key = None;
        for (kid, secret) in keys {
            if kid.is_empty() {
                return Err(JwtConfigError::EmptyKid);
            }
            if secret.len() < MIN_SECRET_LEN {
                return Err(JwtConfigError::SecretTooShort {
                    kid,
                    len: secret.len(),
                });
            }
            if verifying_keys.contains_key(&kid) {
                return Err(JwtConfigError::DuplicateKid(kid));
            }
            if kid == signing_kid {
                signing_key = Some(EncodingKey::from_secret(&secret));
            }
            verifying_keys.insert(kid, DecodingKey::from_secret(&secret));
        }
        let Some(signing_key) = signing_key else {
            return Err(JwtConfigError::UnknownSigningKid(signing_kid));
        };

        let mut validation = Validation::new(ALGORITHM);
        validation.set_issuer(&[&issuer]);
        validation.set_audience(&[&audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_aud = true;

        Ok(Self {
            issuer,
            audience,
            signing_kid,
            signing_key,
            verifying_keys,
            validation,
        })
    }
}

/// The wire form of the claims. Every field is required: a token missing one is malformed.
#[derive(Debug, Serialize, Deserialize)]
struct JwtClaims {
    sub: Uuid,
    tenant_id: Uuid,
    role: WireRole,
    #[serde(rename = "type")]
    kind: WireKind,
    jti: Uuid,
    fam: Uuid,
    iat: i64,
    exp: i64,
    iss: String,
    aud: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WireRole {
    Admin,
    Member,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum WireKind {
    Access,
    Refresh,
}

impl From<Role> for WireRole {
    fn from(role: Role) -> Self {
        match role {
            Role::Admin => Self::Admin,
            Role::Member => Self::Member,
        }
    }
}

impl From<WireRole> for Role {
    fn from(role: WireRole) -> Self {
        match role {
            WireRole::Admin => Self::Admin,
            WireRole::Member => Self::Member,
        }
    }
}

impl From<TokenKind> for WireKind {
    fn from(kind: TokenKind) -> Self {
        match kind {
            TokenKind::Access => Self::Access,
            TokenKind::Refresh => Self::Refresh,
        }
    }
}

impl From<WireKind> for TokenKind {
    fn from(kind: WireKind) -> Self {
        match kind {
            WireKind::Access => Self::Access,
            WireKind::Refresh => Self::Refresh,
        }
    }
}

fn timestamp(secs: i64) -> Result<DateTime<Utc>, AuthFailure> {
    DateTime::from_timestamp(secs, 0).ok_or(AuthFailure::MalformedToken)
}

/// Every rejection reason the library can give, folded into the domain's vocabulary. Anything not
/// named (wrong `iss`/`aud`, bad base64 or JSON, missing or mistyped claims, algorithm mismatch) is
/// a malformed token.
fn failure(error: &jsonwebtoken::errors::Error) -> AuthFailure {
    match error.kind() {
        ErrorKind::InvalidSignature => AuthFailure::BadSignature,
        ErrorKind::ExpiredSignature => AuthFailure::Expired,
        _ => AuthFailure::MalformedToken,
    }
}

impl TokenCodec for JwtCodec {
    fn issue(&self, claims: &TokenClaims) -> Result<String, Error> {
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.signing_kid.clone());
        let wire = JwtClaims {
            sub: claims.subject.as_uuid(),
            tenant_id: claims.tenant.as_uuid(),
            role: claims.role.into(),
            kind: claims.kind.into(),
            jti: claims.jti.as_uuid(),
            fam: claims.family.as_uuid(),
            iat: claims.issued_at.timestamp(),
            exp: claims.expires_at.timestamp(),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        };
        jsonwebtoken::encode(&header, &wire, &self.signing_key).map_err(Error::internal)
    }

    fn verify(&self, token: &str) -> Result<TokenClaims, AuthFailure> {
        // The header is read unverified only to pick the key; the algorithm it names must be ours.
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthFailure::MalformedToken)?;
        if header.alg != ALGORITHM || header.crit.is_some() {
            return Err(AuthFailure::MalformedToken);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.verifying_keys.get(kid))
            .ok_or(AuthFailure::UnknownKeyId)?;

        let data = jsonwebtoken::decode::<JwtClaims>(token, key, &self.validation)
            .map_err(|e| failure(&e))?;
        let claims = data.claims;

        // The library treats `exp == now` as still valid; a token is dead from its `exp` second on.
        if claims.exp <= Utc::now().timestamp() {
            return Err(AuthFailure::Expired);
        }
        // Belt and braces: the library checked these against the same values.
        if claims.iss != self.issuer || claims.aud != self.audience {
            return Err(AuthFailure::MalformedToken);
        }

        Ok(TokenClaims {
            subject: UserId::from_uuid(claims.sub),
            tenant: TenantId::from_uuid(claims.tenant_id),
            role: claims.role.into(),
            kind: claims.kind.into(),
            jti: TokenId::from_uuid(claims.jti),
            family: TokenFamilyId::from_uuid(claims.fam),
            issued_at: timestamp(claims.iat)?,
            expires_at: timestamp(claims.exp)?,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use chrono::{Duration, TimeZone as _};
    use serde_json::{Value, json};

    use super::*;

    const ISS: &str = "agentic-platform";
    const AUD: &str = "agentic-api";
    const K1: &[u8] = b"k1-secret-k1-secret-k1-secret-k1-secret";
    const K2: &[u8] = b"k2-secret-k2-secret-k2-secret-k2-secret";

    fn config(signing_kid: &str, keys: &[(&str, &[u8])]) -> JwtConfig {
        JwtConfig {
            issuer: ISS.into(),
            audience: AUD.into(),
            signing_kid: signing_kid.into(),
            keys: keys
                .iter()
                .map(|(kid, secret)| ((*kid).to_owned(), secret.to_vec()))
                .collect(),
        }
    }

    fn codec(signing_kid: &str, keys: &[(&str, &[u8])]) -> JwtCodec {
        JwtCodec::new(config(signing_kid, keys)).unwrap()
    }

    fn k1_codec() -> JwtCodec {
        codec("k1", &[("k1", K1)])
    }

    fn claims() -> TokenClaims {
        let now = Utc.timestamp_opt(Utc::now().timestamp(), 0).unwrap();
        TokenClaims {
            subject: UserId::new(),
            tenant: TenantId::new(),
            role: Role::Admin,
            kind: TokenKind::Access,
            jti: TokenId::new(),
            family: TokenFamilyId::new(),
            issued_at: now,
            expires_at: now + Duration::minutes(15),
        }
    }

    /// The claims as JSON, valid for `codec` unless the test changes them.
    fn wire_claims() -> Value {
        let c = claims();
        json!({
            "sub": c.subject.to_string(),
            "tenant_id": c.tenant.to_string(),
            "role": "member",
            "type": "refresh",
            "jti": c.jti.to_string(),
            "fam": c.family.to_string(),
            "iat": c.issued_at.timestamp(),
            "exp": c.expires_at.timestamp(),
            "iss": ISS,
            "aud": AUD,
        })
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    /// Signs arbitrary claims with HS256 through the library, bypassing `JwtCodec::issue`.
    fn sign(kid: Option<&str>, secret: &[u8], claims: &Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    /// A token whose header says `header` but whose signature is a real HS256 one over its parts.
    fn with_header(header: &Value, secret: &[u8]) -> String {
        use hmac_sha256::sign as mac;
        let message = format!("{}.{}", b64(header), b64(&wire_claims()));
        format!(
            "{message}.{}",
            URL_SAFE_NO_PAD.encode(mac(secret, &message))
        )
    }

    /// HMAC-SHA256 from `sha2`, so the tests need no extra dependency.
    mod hmac_sha256 {
        use sha2::{Digest as _, Sha256};

        pub fn sign(key: &[u8], message: &str) -> Vec<u8> {
            assert!(key.len() <= 64);
            let mut block = [0u8; 64];
            block[..key.len()].copy_from_slice(key);
            let ipad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
            let opad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
            let inner = Sha256::new()
                .chain_update(&ipad)
                .chain_update(message.as_bytes())
                .finalize();
            Sha256::new()
                .chain_update(&opad)
                .chain_update(inner)
                .finalize()
                .to_vec()
        }
    }

    fn set(mut claims: Value, key: &str, value: Value) -> Value {
        claims[key] = value;
        claims
    }

    fn remove(mut claims: Value, key: &str) -> Value {
        claims.as_object_mut().unwrap().remove(key);
        claims
    }

    #[test]
    fn round_trip() {
        let codec = k1_codec();
        let claims = claims();
        let token = codec.issue(&claims).unwrap();
        assert_eq!(codec.verify(&token), Ok(claims));

        let refresh = TokenClaims {
            role: Role::Member,
            kind: TokenKind::Refresh,
            ..claims
        };
        assert_eq!(codec.verify(&codec.issue(&refresh).unwrap()), Ok(refresh));
    }

    #[test]
    fn issued_tokens_have_the_documented_shape() {
        let claims = claims();
        let token = k1_codec().issue(&claims).unwrap();
        let parts: Vec<_> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}));
        let body: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({
                "sub": claims.subject.to_string(),
                "tenant_id": claims.tenant.to_string(),
                "role": "admin",
                "type": "access",
                "jti": claims.jti.to_string(),
                "fam": claims.family.to_string(),
                "iat": claims.issued_at.timestamp(),
                "exp": claims.expires_at.timestamp(),
                "iss": ISS,
                "aud": AUD,
            })
        );
    }

    #[test]
    fn hand_signed_wire_claims_verify() {
        // Guards the test helpers themselves: the rejections below are for the reason they name.
        let token = sign(Some("k1"), K1, &wire_claims());
        let verified = k1_codec().verify(&token).unwrap();
        assert_eq!(verified.role, Role::Member);
        assert_eq!(verified.kind, TokenKind::Refresh);
        let by_hand = with_header(&json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}), K1);
        assert!(k1_codec().verify(&by_hand).is_ok());
    }

    #[test]
    fn rejects_alg_none() {
        let header = json!({"alg": "none", "typ": "JWT", "kid": "k1"});
        let token = format!("{}.{}.", b64(&header), b64(&wire_claims()));
        assert_eq!(k1_codec().verify(&token), Err(AuthFailure::MalformedToken));
        let header = json!({"alg": "None", "typ": "JWT", "kid": "k1"});
        let token = format!("{}.{}.", b64(&header), b64(&wire_claims()));
        assert_eq!(k1_codec().verify(&token), Err(AuthFailure::MalformedToken));
    }

    #[test]
    fn rejects_other_algorithms_even_with_an_hs256_signature() {
        for alg in ["RS256", "HS384", "HS512", "ES256", "EdDSA", "PS256"] {
            let header = json!({"alg": alg, "typ": "JWT", "kid": "k1"});
            let token = with_header(&header, K1);
            assert_eq!(
                k1_codec().verify(&token),
                Err(AuthFailure::MalformedToken),
                "{alg}"
            );
        }
    }

    #[test]
    fn rejects_a_bad_signature() {
        let other = codec("k1", &[("k1", K2)]);
        let token = other.issue(&claims()).unwrap();
        assert_eq!(k1_codec().verify(&token), Err(AuthFailure::BadSignature));

        // A tampered payload under the original signature.
        let token = k1_codec().issue(&claims()).unwrap();
        let parts: Vec<_> = token.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], b64(&wire_claims()), parts[2]);
        assert_eq!(k1_codec().verify(&forged), Err(AuthFailure::BadSignature));
    }

    #[test]
    fn rejects_expired_tokens() {
        let codec = k1_codec();
        let now = Utc::now().timestamp();
        let mut expired = claims();
        expired.issued_at = Utc.timestamp_opt(now - 120, 0).unwrap();
        expired.expires_at = Utc.timestamp_opt(now - 1, 0).unwrap();
        assert_eq!(
            codec.verify(&codec.issue(&expired).unwrap()),
            Err(AuthFailure::Expired)
        );

        // No leeway: a token is dead from its `exp` second on.
        expired.expires_at = Utc.timestamp_opt(now, 0).unwrap();
        assert_eq!(
            codec.verify(&codec.issue(&expired).unwrap()),
            Err(AuthFailure::Expired)
        );
    }

    #[test]
    fn rejects_missing_claims() {
        for claim in [
            "exp",
            "iat",
            "sub",
            "iss",
            "aud",
            "tenant_id",
            "role",
            "type",
            "jti",
            "fam",
        ] {
            let token = sign(Some("k1"), K1, &remove(wire_claims(), claim));
            assert_eq!(
                k1_codec().verify(&token),
                Err(AuthFailure::MalformedToken),
                "{claim}"
            );
        }
    }

    #[test]
    fn rejects_mistyped_claims() {
        for (claim, value) in [
            ("exp", json!("tomorrow")),
            ("exp", json!(-5)),
            ("sub", json!("not-a-uuid")),
            ("tenant_id", json!(42)),
            ("aud", json!([AUD, "other"])),
        ] {
            let token = sign(Some("k1"), K1, &set(wire_claims(), claim, value.clone()));
            assert_eq!(
                k1_codec().verify(&token),
                Err(AuthFailure::MalformedToken),
                "{claim} = {value}"
            );
        }
    }

    #[test]
    fn rejects_unknown_role_or_type() {
        for (claim, value) in [
            ("role", "owner"),
            ("role", "Admin"),
            ("type", "id"),
            ("type", ""),
        ] {
            let token = sign(Some("k1"), K1, &set(wire_claims(), claim, json!(value)));
            assert_eq!(
                k1_codec().verify(&token),
                Err(AuthFailure::MalformedToken),
                "{claim}"
            );
        }
    }

    #[test]
    fn rejects_wrong_issuer_or_audience() {
        let token = sign(
            Some("k1"),
            K1,
            &set(wire_claims(), "iss", json!("someone-else")),
        );
        assert_eq!(k1_codec().verify(&token), Err(AuthFailure::MalformedToken));
        let token = sign(
            Some("k1"),
            K1,
            &set(wire_claims(), "aud", json!("another-api")),
        );
        assert_eq!(k1_codec().verify(&token), Err(AuthFailure::MalformedToken));

        let mut foreign = config("k1", &[("k1", K1)]);
        foreign.issuer = "someone-else".into();
        let token = JwtCodec::new(foreign).unwrap().issue(&claims()).unwrap();
        assert_eq!(k1_codec().verify(&token), Err(AuthFailure::MalformedToken));
    }

    #[test]
    fn rejects_missing_or_unknown_kid() {
        let token = sign(None, K1, &wire_claims());
        assert_eq!(k1_codec().verify(&token), Err(AuthFailure::UnknownKeyId));
        let token = sign(Some("k9"), K1, &wire_claims());
        assert_eq!(k1_codec().verify(&token), Err(AuthFailure::UnknownKeyId));
    }

    #[test]
    fn rejects_garbage() {
        let codec = k1_codec();
        let valid = codec.issue(&claims()).unwrap();
        let parts: Vec<_> = valid.split('.').collect();
        for garbage in [
            String::new(),
            "abc".into(),
            "a.b".into(),
            "a.b.c".into(),
            format!("{}.{}", parts[0], parts[1]),
            format!("!!!.{}.{}", parts[1], parts[2]),
            format!("{}.!!!.{}", parts[0], parts[2]),
            format!(
                "{}.{}.{}",
                URL_SAFE_NO_PAD.encode(b"not json"),
                parts[1],
                parts[2]
            ),
            format!(
                "{}.{}.{}",
                parts[0],
                URL_SAFE_NO_PAD.encode(b"not json"),
                parts[2]
            ),
            format!("{}.{}.{}.{}", parts[0], parts[1], parts[2], parts[2]),
        ] {
            let result = codec.verify(&garbage);
            assert!(
                matches!(
                    result,
                    Err(AuthFailure::MalformedToken | AuthFailure::BadSignature)
                ),
                "{garbage:?} gave {result:?}"
            );
        }
        // Payload that is not JSON, correctly signed: malformed, not a signature problem.
        let header = b64(&json!({"alg": "HS256", "typ": "JWT", "kid": "k1"}));
        let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode(b"not json"));
        let token = format!(
            "{message}.{}",
            URL_SAFE_NO_PAD.encode(hmac_sha256::sign(K1, &message))
        );
        assert_eq!(codec.verify(&token), Err(AuthFailure::MalformedToken));
    }

    #[test]
    fn key_rotation() {
        let old = k1_codec();
        let token = old.issue(&claims()).unwrap();

        let rotated = codec("k2", &[("k1", K1), ("k2", K2)]);
        assert!(rotated.verify(&token).is_ok());
        let fresh = rotated.issue(&claims()).unwrap();
        assert!(rotated.verify(&fresh).is_ok());
        assert_eq!(
            jsonwebtoken::decode_header(&fresh).unwrap().kid.as_deref(),
            Some("k2")
        );
        // The old codec does not know k2.
        assert_eq!(old.verify(&fresh), Err(AuthFailure::UnknownKeyId));

        let retired = codec("k2", &[("k2", K2)]);
        assert_eq!(retired.verify(&token), Err(AuthFailure::UnknownKeyId));
        assert!(retired.verify(&fresh).is_ok());
    }

    #[test]
    fn refuses_bad_configs() {
        assert_eq!(
            JwtCodec::new(config("k1", &[])).unwrap_err(),
            JwtConfigError::NoKeys
        );
        assert_eq!(
            JwtCodec::new(config("k1", &[("k1", b"too short")])).unwrap_err(),
            JwtConfigError::SecretTooShort {
                kid: "k1".into(),
                len: 9
            }
        );
        assert!(JwtCodec::new(config("k1", &[("k1", &[7; 31])])).is_err());
        assert!(JwtCodec::new(config("k1", &[("k1", &[7; 32])])).is_ok());
        assert_eq!(
            JwtCodec::new(config("k2", &[("k1", K1)])).unwrap_err(),
            JwtConfigError::UnknownSigningKid("k2".into())
        );
        assert_eq!(
            JwtCodec::new(config("", &[("", K1)])).unwrap_err(),
            JwtConfigError::EmptyKid
        );
        assert_eq!(
            JwtCodec::new(config("k1", &[("k1", K1), ("k1", K2)])).unwrap_err(),
            JwtConfigError::DuplicateKid("k1".into())
        );
        let mut no_issuer = config("k1", &[("k1", K1)]);
        no_issuer.issuer.clear();
        assert_eq!(
            JwtCodec::new(no_issuer).unwrap_err(),
            JwtConfigError::EmptyIssuer
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let config = config("k1", &[("k1", K1)]);
        let secret = String::from_utf8(K1.to_vec()).unwrap();
        assert!(!format!("{config:?}").contains(&secret));
        assert!(!format!("{:?}", JwtCodec::new(config).unwrap()).contains(&secret));
    }
}
