//! Settings shared by every API this crate talks to (embeddings and chat completions) and the
//! error a constructor returns when they are unusable.

use std::time::Duration;

use secrecy::SecretString;

/// Where and how to reach an OpenAI-compatible API: base URL, key, and the per-request timeout
/// and retry policy.
///
/// Build it with [`OpenAiClientConfig::new`] and change the public fields you need. `Debug` never
/// prints the API key.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct OpenAiClientConfig {
    /// Base URL of the API, including its version segment, e.g. `http://127.0.0.1:8000/v1`.
    /// Paths such as `/embeddings` are appended to it; a trailing `/` is ignored.
    pub base_url: String,
    /// Sent as `Authorization: Bearer <key>`. The `OPENAI_*` environment variables are not read.
    pub api_key: SecretString,
    /// Limit for one HTTP attempt, from connecting until the response body is read (for a
    /// streamed chat answer: until the response head; the body then has its own idle limit).
    /// Default 30 s.
    pub timeout: Duration,
    /// Extra attempts after the first one for rate limits (429), server errors (5xx), timeouts
    /// and connection errors. Other 4xx answers are never retried. Default 3.
    pub max_retries: u32,
    /// The first backoff; each retry doubles it (capped at [`Self::max_backoff`]), and the wait
    /// is drawn uniformly from the upper half of that value (jitter). Default 500 ms.
    pub backoff_base: Duration,
    /// Cap of the exponential backoff. Default 8 s.
    pub max_backoff: Duration,
    /// Cap of a server-given wait (`Retry-After` in seconds, or `retry-after-ms`), which replaces
    /// the exponential backoff when present. Default 60 s.
    pub max_retry_after: Duration,
}

impl OpenAiClientConfig {
    /// Default timeout of one attempt.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default number of retries.
    pub const DEFAULT_MAX_RETRIES: u32 = 3;
    /// Default first backoff.
    pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(500);
    /// Default cap of the exponential backoff.
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(8);
    /// Default cap of a server-given `Retry-After`.
    pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

    /// Settings for `base_url` and `api_key`, with the default timeout and retry policy.
    pub fn new(base_url: impl Into<String>, api_key: SecretString) -> Self {
        Self {
            base_url: base_url.into(),
            api_key,
            timeout: Self::DEFAULT_TIMEOUT,
            max_retries: Self::DEFAULT_MAX_RETRIES,
            backoff_base: Self::DEFAULT_BACKOFF_BASE,
            max_backoff: Self::DEFAULT_MAX_BACKOFF,
            max_retry_after: Self::DEFAULT_MAX_RETRY_AFTER,
        }
    }
}

/// Why a client, embedder or chat model could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The base URL does not parse or is not `http`/`https`.
    #[error("invalid base URL {url:?}: {reason}")]
    BaseUrl {
        /// The URL as configured.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The API key is empty or cannot be sent in an HTTP header.
    #[error("invalid API key: {0}")]
    ApiKey(&'static str),
    /// The timeout is zero.
    #[error("the request timeout must be greater than zero")]
    Timeout,
    /// The stream idle timeout of a chat model is zero.
    #[error("the stream idle timeout must be greater than zero")]
    IdleTimeout,
    /// The context window of a chat model is zero.
    #[error("the context window must be greater than zero")]
    ContextWindow,
    /// No model name was given.
    #[error("the model name is empty")]
    EmptyModel,
    /// The model's vector length is not known and `dimensions` was not given.
    #[error("unknown embedding model {model:?}: set `dimensions` to its vector length")]
    UnknownDimensions {
        /// The configured model.
        model: String,
    },
    /// `dimensions` is zero, larger than the model's native length, or set for a model that does
    /// not take the parameter.
    #[error("invalid dimensions {dimensions} for model {model:?}: {reason}")]
    Dimensions {
        /// The configured model.
        model: String,
        /// The configured `dimensions`.
        dimensions: u32,
        /// Why the model does not accept it.
        reason: &'static str,
    },
    /// `batch_size` is outside `1..=2048` (the API's limit of inputs per request).
    #[error("batch size {0} is outside 1..=2048")]
    BatchSize(usize),
    /// `max_tokens_per_request` is smaller than one maximal input.
    #[error("max_tokens_per_request {given} is below the longest single input ({min} tokens)")]
    TokensPerRequest {
        /// The configured budget.
        given: usize,
        /// The smallest budget that fits one input of the maximal length.
        min: usize,
    },
    /// The tokenizer or the HTTP client could not be initialised.
    #[error("could not initialise the {what}")]
    Init {
        /// Which part failed.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
