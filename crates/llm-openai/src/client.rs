//! The connection every adapter of this crate uses: one base URL, one key, one connection pool
//! and one retry policy, checked once. The embedder reaches it through the async-openai client
//! built here (with the retrying transport underneath); the chat model sends its streamed
//! requests on the same kind of connection directly. Also the translation of async-openai's
//! errors into the three kinds the ports care about.

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use crate::config::{ConfigError, OpenAiClientConfig};
use crate::error_chain::error_chain;
use crate::transport::{RetryPolicy, RetryingTransport, TransportError};

/// The async-openai client, configured for one OpenAI-compatible server.
pub(crate) type Api = async_openai::Client<OpenAIConfig>;

/// Longest provider message kept in an error (5xx bodies can be whole HTML pages).
const MAX_MESSAGE_CHARS: usize = 500;

/// Validates `config` and builds the client.
pub(crate) fn build(config: &OpenAiClientConfig) -> Result<Api, ConfigError> {
    let connection = Connection::new(config)?;
    let key = config.api_key.expose_secret();
    // Organisation and project are set explicitly so `OPENAI_*` environment variables, which
    // `OpenAIConfig::new` reads, cannot add headers behind the configuration's back.
    let openai = OpenAIConfig::new()
        .with_api_base(connection.base_url)
        .with_api_key(key)
        .with_org_id("")
        .with_project_id("");
    let transport = RetryingTransport::new(connection.http.clone(), connection.policy);
    Ok(async_openai::Client::build(connection.http, openai).with_http_service(transport))
}

/// What every API of the crate needs to reach the server, after validation: the base URL, an
/// HTTP client (connection pool) and the retry policy. Requests that async-openai cannot carry
/// (streamed chat completions) are sent with it directly.
pub(crate) struct Connection {
    /// Absolute `http(s)` URL without trailing slashes.
    pub(crate) base_url: String,
    pub(crate) http: reqwest::Client,
    pub(crate) policy: RetryPolicy,
}

impl Connection {
    /// Checks the base URL, key and timeout of `config` and builds the HTTP client.
    pub(crate) fn new(config: &OpenAiClientConfig) -> Result<Self, ConfigError> {
        let base_url = validate_base_url(&config.base_url)?;
        bearer(&config.api_key)?;
        if config.timeout.is_zero() {
            return Err(ConfigError::Timeout);
        }
        // No total timeout on the client: the transport bounds each attempt itself, and a
        // streamed answer may legitimately take longer than one attempt's limit.
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .build()
            .map_err(|error| ConfigError::Init {
                what: "HTTP client",
                source: Box::new(error),
            })?;
        Ok(Self {
            base_url,
            http,
            policy: RetryPolicy::from_config(config),
        })
    }
}

/// The `Authorization` header for `key`, marked sensitive (so `Debug` of a header map hides
/// it), after checking that the key is usable.
pub(crate) fn bearer(key: &SecretString) -> Result<HeaderValue, ConfigError> {
    let key = key.expose_secret();
    if key.is_empty() {
        return Err(ConfigError::ApiKey("it is empty"));
    }
    // async-openai builds this header with `unwrap()`: reject what would make it panic.
    let mut header = HeaderValue::from_str(&format!("Bearer {key}"))
        .map_err(|_| ConfigError::ApiKey("it contains characters not allowed in an HTTP header"))?;
    header.set_sensitive(true);
    Ok(header)
}

/// The base URL without trailing slashes, after checking that it is an absolute `http(s)` URL.
fn validate_base_url(raw: &str) -> Result<String, ConfigError> {
    let invalid = |reason: String| ConfigError::BaseUrl {
        url: raw.to_owned(),
        reason,
    };
    let url = reqwest::Url::parse(raw).map_err(|error| invalid(error.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme {:?} is not http or https",
            url.scheme()
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it has a query or fragment".to_owned()));
    }
    Ok(raw.trim_end_matches('/').to_owned())
}

/// What went wrong with a call, in the terms of the ports.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The provider refused (4xx), kept failing (429/5xx after retries) or could not be reached.
    Provider(String),
    /// The provider answered something that is not the expected JSON.
    BadResponse(String),
    /// A bug or misuse on our side.
    Internal(OpenAIError),
}

impl From<OpenAIError> for Failure {
    fn from(error: OpenAIError) -> Self {
        match error {
            OpenAIError::ApiError(response) => Failure::Provider(truncate(&format!(
                "HTTP {}: {}",
                response.status_code, response.api_error
            ))),
            OpenAIError::Boxed(boxed) if boxed.downcast_ref::<TransportError>().is_some() => {
                Failure::Provider(error_chain(boxed.as_ref()))
            }
            OpenAIError::Reqwest(error) => Failure::Provider(error_chain(&error)),
            OpenAIError::JSONDeserialize(error, content) => {
                Failure::BadResponse(truncate(&format!("invalid JSON ({error}): {content}")))
            }
            other => Failure::Internal(other),
        }
    }
}

fn truncate(text: &str) -> String {
    domain::values::truncated(text, MAX_MESSAGE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_checked_and_trimmed() {
        assert_eq!(
            validate_base_url("http://127.0.0.1:8080/v1/").unwrap(),
            "http://127.0.0.1:8080/v1"
        );
        assert!(validate_base_url("127.0.0.1:8080/v1").is_err());
        assert!(validate_base_url("ftp://example.test/v1").is_err());
        assert!(validate_base_url("http://example.test/v1?x=1").is_err());
        assert!(validate_base_url("").is_err());
    }

    #[test]
    fn long_messages_are_truncated_on_a_char_boundary() {
        let long = "é".repeat(MAX_MESSAGE_CHARS + 10);
        let short = truncate(&long);
        assert_eq!(short.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert_eq!(truncate("short"), "short");
    }
}
