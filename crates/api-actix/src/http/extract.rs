//! Extractors: the authenticated caller, JSON bodies that report the failing field, ids in paths,
//! and list parameters.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use domain::Principal;
use domain::error::AuthFailure;
use domain::page::PageRequest;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use utoipa::IntoParams;

use crate::http::error::ApiError;
use crate::state::AppState;

/// The authenticated caller, resolved from `Authorization: Bearer <JWT | API key>`; reads as
/// its [`Principal`].
pub struct Caller(pub Principal);

impl std::ops::Deref for Caller {
    type Target = Principal;

    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        let bearer = bearer_token(req);
        Box::pin(async move {
            let state = state.ok_or_else(|| {
                ApiError::from(domain::Error::internal("application state missing"))
            })?;
            let token = bearer.ok_or(domain::Error::Unauthenticated(
                AuthFailure::MissingCredentials,
            ))?;
            Ok(Self(state.auth.authenticate(&token).await?))
        })
    }
}

fn bearer_token(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// Reverse proxies whose `X-Forwarded-For` is believed (`AGENTIC_TRUSTED_PROXIES`).
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(pub Vec<std::net::IpAddr>);

/// The caller's address, for limits keyed on it: the TCP peer's, unless the peer is a trusted
/// proxy; then the rightmost address of `X-Forwarded-For` that is not a trusted proxy (the
/// client as the outermost trusted proxy saw it). What a client writes into the header itself is
/// ignored unless a trusted proxy passed it on, and even then only the part that proxy added
/// counts, so a client cannot choose its own address.
pub fn client_address(req: &HttpRequest) -> String {
    // IPv4 peers of a dual-stack listener arrive as `::ffff:a.b.c.d`: compare them as IPv4.
    let Some(peer) = req.peer_addr().map(|a| a.ip().to_canonical()) else {
        return "unknown".to_owned();
    };
    let trusted = req
        .app_data::<TrustedProxies>()
        .map_or(&[][..], |t| t.0.as_slice());
    let is_trusted = |a: &std::net::IpAddr| trusted.iter().any(|t| t.to_canonical() == *a);
    if !is_trusted(&peer) {
        return peer.to_string();
    }
    let entries: Vec<&str> = req
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    // From the right: skip the trusted proxies; the first other entry is the client. An entry
    // that is not a plain address (a proxy that appends `ip:port`, say) ends the walk, so that
    // the walk never reaches entries the client wrote itself.
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Ok(address) = entry.trim().parse::<std::net::IpAddr>() else {
            break;
        };
        client = address.to_canonical();
        if !is_trusted(&client) {
            break;
        }
    }
    client.to_string()
}

/// Body size limit for JSON bodies, set per application.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

/// A JSON body. Unlike `web::Json`, a type mismatch names the field (422), a wrong media type is
/// 415 and an oversized body 413, all as problem details.
pub struct Body<T>(pub T);

/// A JSON body whose strings may hold NUL (`\u0000`), for a handler whose service reads such text
/// without storing it (a search query: NUL counts as a space there).
pub struct BodyWithNul<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Body<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        read_json(req, payload, false)
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for BodyWithNul<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = read_json::<T>(req, payload, true);
        Box::pin(async move { body.await.map(|Body(value)| Self(value)) })
    }
}

fn read_json<T: DeserializeOwned + 'static>(
    req: &HttpRequest,
    payload: &mut Payload,
    allow_nul: bool,
) -> Pin<Box<dyn Future<Output = Result<Body<T>, ApiError>>>> {
    let limit = req.app_data::<BodyLimit>().map_or(1024 * 1024, |l| l.0);
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false);
    let declared_too_large = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > limit);
    let bytes = web::Bytes::from_request(req, payload);
    Box::pin(async move {
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be application/json",
            ));
        }
        if declared_too_large {
            return Err(too_large(limit));
        }
        let bytes = bytes.await.map_err(|_| too_large(limit))?;
        if bytes.len() > limit {
            return Err(too_large(limit));
        }
        // PostgreSQL text cannot hold U+0000; refuse it here, once, rather than as a 500 from
        // whichever query would store or compare it. (JSON writes it only as the escape.)
        if !allow_nul && contains_nul_escape(&bytes) {
            return Err(ApiError::invalid(
                "body",
                "must not contain NUL (\\u0000) characters",
            ));
        }
        // Every body of the API is an object; derived readers would also take an array of
        // the fields' values in order, which the document does not allow.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(ApiError::invalid("body", "must be a JSON object"));
        }
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de)
            .map(Body)
            .map_err(|err| {
                let path = err.path().to_string();
                let field = if path == "." { "body".to_owned() } else { path };
                ApiError::invalid(&field, clean_serde_message(&err.into_inner().to_string()))
            })
    })
}

/// Whether the JSON text holds the escape `\\u0000` (and not a literal backslash before `u0000`).
fn contains_nul_escape(bytes: &[u8]) -> bool {
    scan_nul_escape(bytes).0
}

/// One pass over the body: each backslash starts an escape that consumes the next byte (and the
/// four hex digits of a `\\u` escape), so an escaped backslash never starts one. Answers whether a
/// `\\u0000` was found and the steps taken, which never exceed the number of bytes: the check
/// costs linear time whatever the body holds (runs of backslashes once made it quadratic).
fn scan_nul_escape(bytes: &[u8]) -> (bool, usize) {
    let mut at = 0;
    let mut steps = 0;
    while at < bytes.len() {
        steps += 1;
        if bytes[at] != b'\\' {
            at += 1;
            continue;
        }
        if bytes.get(at + 1) == Some(&b'u') && bytes.get(at + 2..at + 6) == Some(b"0000") {
            return (true, steps);
        }
        at += 2;
    }
    (false, steps)
}

/// Refuses a query parameter holding U+0000 (which PostgreSQL text cannot hold).
pub fn reject_nul(field: &str, value: Option<&str>) -> Result<(), ApiError> {
    if value.is_some_and(|v| v.contains('\0')) {
        return Err(ApiError::invalid(field, "must not contain NUL characters"));
    }
    Ok(())
}

pub fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the body exceeds the limit of {limit} bytes"),
    )
}

/// serde_json appends "at line 1 column 5"; the field path already says where.
fn clean_serde_message(message: &str) -> String {
    message
        .rsplit_once(" at line ")
        .map_or(message, |(head, _)| head)
        .to_owned()
}

/// An id the path names as `{id}`, of the resource the handler serves. A malformed id is
/// indistinguishable from a missing resource: 404 naming the resource.
pub struct PathId<T>(pub T);

/// The ids paths carry, with the resource each names in a 404.
pub trait ResourceId: std::str::FromStr {
    const RESOURCE: &'static str;
}

macro_rules! resource_ids {
    ($($id:ty => $resource:literal),* $(,)?) => {
        $(impl ResourceId for $id {
            const RESOURCE: &'static str = $resource;
        })*
    };
}

resource_ids!(
    domain::AgentId => "agent",
    domain::ApiKeyId => "api key",
    domain::CollectionId => "collection",
    domain::DocumentId => "document",
    domain::JobId => "job",
    domain::TenantId => "tenant",
    domain::UserId => "user",
    domain::ConversationId => "conversation",
    domain::MessageId => "message",
    domain::RunId => "run",
    domain::ProviderId => "provider",
);

impl<T: ResourceId> FromRequest for PathId<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(
            req.match_info()
                .get("id")
                .and_then(|raw| raw.parse().ok())
                .map(Self)
                .ok_or_else(|| ApiError::not_found(format!("{} not found", T::RESOURCE))),
        )
    }
}

/// `?limit=&cursor=` of every list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1..=100.
    #[param(minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<i64>,
    /// Opaque cursor from a previous page's `next_cursor` (22 URL-safe base64 characters); any
    /// other value is 422 `validation_failed` naming `cursor`, on every list.
    #[param(pattern = "^([A-Za-z0-9_-]{22})?$")]
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn to_request(&self) -> Result<PageRequest, ApiError> {
        let after = self
            .cursor
            .as_deref()
            .filter(|c| !c.is_empty())
            .map(decode_cursor)
            .transpose()?;
        PageRequest::new(self.limit, after).map_err(|m| ApiError::invalid("limit", m))
    }
}

pub fn encode_cursor(id: uuid::Uuid) -> String {
    URL_SAFE_NO_PAD.encode(id.as_bytes())
}

/// Reads cursors as the document describes them: any 22 URL-safe base64 characters are a
/// position (the four bits past the sixteen bytes are ignored), so what the pattern accepts the
/// server accepts.
const CURSOR: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(true),
);

fn decode_cursor(cursor: &str) -> Result<uuid::Uuid, ApiError> {
    Some(cursor)
        .filter(|c| c.len() == 22)
        .and_then(|c| CURSOR.decode(c).ok())
        .and_then(|bytes| uuid::Uuid::from_slice(&bytes).ok())
        .ok_or_else(|| ApiError::invalid("cursor", "is not a cursor this server issued"))
}

/// Query of lists with soft-deleted rows: paging plus `include_deleted`.
#[derive(Debug, Deserialize)]
pub struct ListParams {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    #[serde(default)]
    pub include_deleted: bool,
}

impl ListParams {
    pub fn page(&self) -> PageQuery {
        PageQuery {
            limit: self.limit,
            cursor: self.cursor.clone(),
        }
    }
}

/// Query-string errors answer 422 naming the parameter.
pub fn query_error(err: actix_web::error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    let message = clean_serde_message(&err.to_string());
    let field = message
        .split('`')
        .nth(1)
        .filter(|_| message.contains("field"))
        .unwrap_or("query")
        .to_owned();
    ApiError::invalid(&field, message).into()
}

/// Path errors (e.g. a malformed id) answer 404.
pub fn path_error(_: actix_web::error::PathError, _: &HttpRequest) -> actix_web::Error {
    ApiError::not_found("no such resource").into()
}

/// An optional JSON body: a request without a body (no content type, no length) is `None`.
pub struct MaybeBody<T>(pub Option<T>);

impl<T: DeserializeOwned + 'static> FromRequest for MaybeBody<T> {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let headers = req.headers();
        let empty = !headers.contains_key(header::CONTENT_TYPE)
            && headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| v.trim() == "0");
        if empty {
            return Box::pin(async { Ok(Self(None)) });
        }
        // `null` is no body too.
        let body = Body::<Option<T>>::from_request(req, payload);
        Box::pin(async move { body.await.map(|b| Self(b.0)) })
    }
}

#[cfg(test)]
mod tests {
    use super::{contains_nul_escape, scan_nul_escape};

    #[test]
    fn the_client_address_comes_from_trusted_proxies_only() {
        use actix_web::test::TestRequest;
        let proxy: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let address = |peer: &str, forwarded: Option<&str>| {
            let mut req = TestRequest::default()
                .peer_addr(peer.parse().unwrap())
                .app_data(super::TrustedProxies(vec![proxy]));
            if let Some(f) = forwarded {
                req = req.insert_header(("x-forwarded-for", f));
            }
            super::client_address(&req.to_http_request())
        };
        // Not through the proxy: the header is the client's own writing.
        assert_eq!(address("203.0.113.9:5000", Some("1.2.3.4")), "203.0.113.9");
        // Through it: the rightmost entry the proxy added.
        assert_eq!(
            address("10.0.0.1:5000", Some("1.2.3.4, 198.51.100.7")),
            "198.51.100.7"
        );
        // A dual-stack listener's IPv4-mapped peer is still the proxy.
        assert_eq!(
            address("[::ffff:10.0.0.1]:5000", Some("198.51.100.7")),
            "198.51.100.7"
        );
        // An entry that is not an address ends the walk before the client's own entries.
        assert_eq!(
            address("10.0.0.1:5000", Some("1.2.3.4, 198.51.100.7:443")),
            "10.0.0.1"
        );
        assert_eq!(address("10.0.0.1:5000", None), "10.0.0.1");
    }

    #[test]
    fn any_cursor_of_the_documented_shape_is_a_position_and_nothing_else_is() {
        let id = uuid::Uuid::now_v7();
        assert_eq!(super::decode_cursor(&super::encode_cursor(id)).unwrap(), id);
        // 22 characters whose last one carries bits past the sixteen bytes.
        assert!(super::decode_cursor("dddddddddddddddddddddd").is_ok());
        for bad in [
            "d",
            "ddddddddddddddddddddddd",
            "ddddddddddddddddddddd=",
            "dddddddddddddddddddd+/",
        ] {
            assert!(super::decode_cursor(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn nul_escapes_are_found_and_escaped_backslashes_are_not() {
        assert!(contains_nul_escape(br#"{"a":"x\u0000"}"#));
        assert!(contains_nul_escape(br#"{"a":"\\\u0000"}"#));
        assert!(!contains_nul_escape(br#"{"a":"\\u0000"}"#));
        assert!(!contains_nul_escape(br#"{"a":"\\\\u0000"}"#));
        assert!(!contains_nul_escape(br#"{"a":"\u0001"}"#));
        assert!(!contains_nul_escape(b"\\"));
    }

    #[test]
    fn the_check_takes_at_most_one_step_per_byte_whatever_the_body() {
        for fill in [b'\\', b'a', b'u', b'0'] {
            let mut previous = 0;
            for size in [64 * 1024, 128 * 1024, 256 * 1024, 512 * 1024] {
                let body = vec![fill; size];
                let (found, steps) = scan_nul_escape(&body);
                assert!(!found);
                assert!(steps <= size, "{steps} steps for {size} bytes of {fill}");
                if previous > 0 {
                    assert!(
                        steps <= 2 * previous,
                        "doubling the body at most doubles the work"
                    );
                }
                previous = steps;
            }
        }
    }
}
