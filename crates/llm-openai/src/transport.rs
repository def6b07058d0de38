//! The HTTP transports: the one installed under async-openai (its `middleware` hook), which reads
//! whole answers, and [`open_stream`], which stops at the head of a streamed answer.
//!
//! Both follow one [`RetryPolicy`]: rate limits (429, except `insufficient_quota`), server errors
//! (5xx), timeouts and connection errors are retried with exponential backoff and jitter, or
//! after the server's `Retry-After`, capped.
//!
//! Under async-openai, one attempt sends the request and reads the whole response body, bounded
//! by the configured timeout, so a stalled body is retried like a stalled connection. Any other
//! answer goes back to async-openai as it came, which turns error statuses into
//! [`OpenAIError::ApiError`]. This replaces async-openai's built-in retry layer, which has a
//! fixed backoff base, no jitter, no cap on `Retry-After` and does not retry timeouts.
//!
//! A streamed answer cannot be read whole first, so [`open_stream`] bounds one attempt by the
//! timeout only until the response head, and retries only until a successful head is accepted:
//! once its body is handed over, nothing is ever sent again.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_openai::error::{ApiError, OpenAIError, WrappedError};
use async_openai::middleware::HttpRequestFactory;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::config::OpenAiClientConfig;

/// When and how long to wait before retrying.
#[derive(Clone, Debug)]
pub(crate) struct RetryPolicy {
    pub(crate) timeout: Duration,
    pub(crate) max_retries: u32,
    pub(crate) backoff_base: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) max_retry_after: Duration,
}

impl RetryPolicy {
    pub(crate) fn from_config(config: &OpenAiClientConfig) -> Self {
        Self {
            timeout: config.timeout,
            max_retries: config.max_retries,
            backoff_base: config.backoff_base,
            max_backoff: config.max_backoff,
            max_retry_after: config.max_retry_after,
        }
    }

    /// Backoff before retry number `retry` (0 for the first retry): `base * 2^retry`, capped, of
    /// which the upper half is drawn at random ("equal jitter": never less than half the
    /// exponential value, so clients that failed together spread out without hammering).
    pub(crate) fn backoff(&self, retry: u32) -> Duration {
        let exponential = self
            .backoff_base
            .saturating_mul(2_u32.saturating_pow(retry))
            .min(self.max_backoff);
        let half = exponential / 2;
        exponential - half + half.mul_f64(rand::random::<f64>())
    }

    /// The wait before retry number `retry`: the server's wish when it stated one (capped),
    /// otherwise [`Self::backoff`].
    pub(crate) fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(wait) => wait.min(self.max_retry_after),
            None => self.backoff(retry),
        }
    }
}

/// How long the server asks us to wait: OpenAI's `retry-after-ms` (milliseconds) or the standard
/// `Retry-After` in seconds (integer or decimal). The HTTP-date form is not understood; the
/// exponential backoff applies then.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    number("retry-after-ms")
        .and_then(|ms| Duration::try_from_secs_f64(ms / 1000.0).ok())
        .or_else(|| number("retry-after").and_then(|secs| Duration::try_from_secs_f64(secs).ok()))
}

/// Whether an error status is worth another attempt: 429 unless the account is out of quota
/// (OpenAI reports that as a 429 too, and waiting does not help), and every 5xx.
pub(crate) fn retryable_status(status: StatusCode, body: &[u8]) -> bool {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return !is_insufficient_quota(body);
    }
    status.is_server_error()
}

fn is_insufficient_quota(body: &[u8]) -> bool {
    const INSUFFICIENT_QUOTA: &str = "insufficient_quota";
    serde_json::from_slice::<WrappedError>(body).is_ok_and(|wrapped| {
        wrapped.error.r#type.as_deref() == Some(INSUFFICIENT_QUOTA)
            || wrapped.error.code.as_deref() == Some(INSUFFICIENT_QUOTA)
    })
}

/// Errors of the connection rather than of the request: worth another attempt.
fn transient(error: &reqwest::Error) -> bool {
    error.is_timeout() || error.is_connect() || error.is_request() || error.is_body()
}

/// A transport failure that persisted through every attempt (or could not be retried).
#[derive(Debug, thiserror::Error)]
#[error("request failed after {attempts} attempt(s)")]
pub(crate) struct TransportError {
    pub(crate) attempts: u32,
    #[source]
    pub(crate) source: reqwest::Error,
}

/// A complete answer: status, headers and the whole body.
struct Answer {
    status: StatusCode,
    version: reqwest::Version,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn into_response(self) -> reqwest::Response {
        let body = if self.status.is_client_error() || self.status.is_redirection() {
            as_openai_error(self.body)
        } else {
            self.body
        };
        let mut response = http::Response::new(body);
        *response.status_mut() = self.status;
        *response.version_mut() = self.version;
        *response.headers_mut() = self.headers;
        reqwest::Response::from(response)
    }
}

/// A client-error body in OpenAI's error shape, so async-openai reports it as
/// [`OpenAIError::ApiError`] with its status. Compatible servers, proxies and wrong base URLs
/// answer 4xx with plain text or other JSON, which async-openai would otherwise turn into a
/// deserialisation error that has lost the status.
fn as_openai_error(body: Vec<u8>) -> Vec<u8> {
    if serde_json::from_slice::<WrappedError>(&body).is_ok() {
        return body;
    }
    let text = String::from_utf8_lossy(&body);
    let message = if text.trim().is_empty() {
        "(empty body)".to_owned()
    } else {
        text.trim().to_owned()
    };
    let wrapped = WrappedError {
        error: ApiError {
            message,
            ..ApiError::default()
        },
    };
    serde_json::to_vec(&wrapped).unwrap_or(body)
}

/// The tower service async-openai sends every request through.
#[derive(Clone, Debug)]
pub(crate) struct RetryingTransport {
    http: reqwest::Client,
    policy: Arc<RetryPolicy>,
}

impl RetryingTransport {
    pub(crate) fn new(http: reqwest::Client, policy: RetryPolicy) -> Self {
        Self {
            http,
            policy: Arc::new(policy),
        }
    }

    /// One attempt: send, then read the body, all within the timeout.
    async fn attempt(
        &self,
        factory: &HttpRequestFactory,
    ) -> Result<Result<Answer, reqwest::Error>, OpenAIError> {
        let mut request = factory.build().await?;
        // reqwest's total timeout runs from connecting until the body has been read.
        *request.timeout_mut() = Some(self.policy.timeout);
        let response = match self.http.execute(request).await {
            Ok(response) => response,
            Err(error) => return Ok(Err(error)),
        };
        let status = response.status();
        let version = response.version();
        let headers = response.headers().clone();
        Ok(response.bytes().await.map(|body| Answer {
            status,
            version,
            headers,
            body: body.into(),
        }))
    }

    async fn send(self, factory: HttpRequestFactory) -> Result<reqwest::Response, OpenAIError> {
        let mut retry = 0_u32;
        loop {
            let may_retry = retry < self.policy.max_retries;
            let wait = match self.attempt(&factory).await? {
                Ok(answer) => {
                    if answer.status.is_success()
                        || !may_retry
                        || !retryable_status(answer.status, &answer.body)
                    {
                        return Ok(answer.into_response());
                    }
                    let wait = self.policy.delay(retry, retry_after(&answer.headers));
                    tracing::warn!(
                        status = %answer.status,
                        attempt = retry + 1,
                        wait_ms = wait.as_millis(),
                        "OpenAI-compatible API answered with a retryable status; retrying"
                    );
                    wait
                }
                Err(error) => {
                    if !may_retry || !transient(&error) {
                        return Err(OpenAIError::Boxed(Box::new(TransportError {
                            attempts: retry + 1,
                            source: error,
                        })));
                    }
                    let wait = self.policy.delay(retry, None);
                    tracing::warn!(
                        error = %crate::error_chain::error_chain(&error),
                        attempt = retry + 1,
                        wait_ms = wait.as_millis(),
                        "request to OpenAI-compatible API failed; retrying"
                    );
                    wait
                }
            };
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    }
}

impl tower::Service<HttpRequestFactory> for RetryingTransport {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        Box::pin(self.clone().send(factory))
    }
}

/// Most bytes of an error answer kept (its message is all we need of it).
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// A request [`open_stream`] may send more than once.
pub(crate) struct StreamRequest {
    pub(crate) url: reqwest::Url,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl StreamRequest {
    fn attempt(&self) -> reqwest::Request {
        let mut request = reqwest::Request::new(reqwest::Method::POST, self.url.clone());
        *request.headers_mut() = self.headers.clone();
        *request.body_mut() = Some(self.body.clone().into());
        request
    }
}

/// Why a streamed request did not get a successful head, once retries are spent.
#[derive(Debug)]
pub(crate) enum OpenFailure {
    /// No response head within the timeout, on the last attempt.
    Timeout { attempts: u32 },
    /// The server could not be reached or the request not sent.
    Unreachable(TransportError),
    /// An error status that is not retried, or still came on the last attempt, with the start
    /// of its body.
    Status { status: StatusCode, body: Vec<u8> },
}

/// Sends `request` until a successful response head arrives and returns the response with its
/// body unread. Each attempt gets [`RetryPolicy::timeout`] to produce the head (an error
/// answer's body is read within the same limit); retryable failures are retried as the policy
/// says.
pub(crate) async fn open_stream(
    http: &reqwest::Client,
    policy: &RetryPolicy,
    request: &StreamRequest,
) -> Result<reqwest::Response, OpenFailure> {
    let mut retry = 0_u32;
    loop {
        let may_retry = retry < policy.max_retries;
        let outcome = tokio::time::timeout(policy.timeout, head(http, request)).await;
        let wait = match outcome {
            Ok(Ok(Head::Success(response))) => return Ok(response),
            Ok(Ok(Head::Error {
                status,
                headers,
                body,
            })) => {
                if !may_retry || !retryable_status(status, &body) {
                    return Err(OpenFailure::Status { status, body });
                }
                let wait = policy.delay(retry, retry_after(&headers));
                tracing::warn!(
                    %status,
                    attempt = retry + 1,
                    wait_ms = wait.as_millis(),
                    "OpenAI-compatible API answered a streamed request with a retryable status; retrying"
                );
                wait
            }
            Ok(Err(error)) => {
                if !may_retry || !transient(&error) {
                    let attempts = retry + 1;
                    return Err(if error.is_timeout() {
                        OpenFailure::Timeout { attempts }
                    } else {
                        OpenFailure::Unreachable(TransportError {
                            attempts,
                            source: error,
                        })
                    });
                }
                let wait = policy.delay(retry, None);
                tracing::warn!(
                    error = %crate::error_chain::error_chain(&error),
                    attempt = retry + 1,
                    wait_ms = wait.as_millis(),
                    "streamed request to OpenAI-compatible API failed; retrying"
                );
                wait
            }
            Err(_elapsed) => {
                if !may_retry {
                    return Err(OpenFailure::Timeout {
                        attempts: retry + 1,
                    });
                }
                let wait = policy.delay(retry, None);
                tracing::warn!(
                    timeout_ms = policy.timeout.as_millis(),
                    attempt = retry + 1,
                    wait_ms = wait.as_millis(),
                    "OpenAI-compatible API did not answer a streamed request in time; retrying"
                );
                wait
            }
        };
        tokio::time::sleep(wait).await;
        retry += 1;
    }
}

/// The head of one attempt's answer.
enum Head {
    /// A 2xx: the body is the stream, still unread.
    Success(reqwest::Response),
    /// Anything else, with the start of its body.
    Error {
        status: StatusCode,
        headers: HeaderMap,
        body: Vec<u8>,
    },
}

async fn head(http: &reqwest::Client, request: &StreamRequest) -> Result<Head, reqwest::Error> {
    let mut response = http.execute(request.attempt()).await?;
    let status = response.status();
    if status.is_success() {
        return Ok(Head::Success(response));
    }
    let headers = response.headers().clone();
    let body = read_prefix(&mut response, MAX_ERROR_BODY_BYTES).await;
    Ok(Head::Error {
        status,
        headers,
        body,
    })
}

/// The first `limit` bytes of a body (fewer if it ends or breaks first: an error answer's
/// message is useful even when its body is cut).
pub(crate) async fn read_prefix(response: &mut reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - body.len();
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    body
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            timeout: Duration::from_secs(1),
            max_retries: 3,
            backoff_base: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
            max_retry_after: Duration::from_secs(5),
        }
    }

    #[test]
    fn backoff_doubles_within_jitter_and_is_capped() {
        let policy = policy();
        for _ in 0..100 {
            let first = policy.backoff(0);
            assert!((50..=100).contains(&first.as_millis()), "{first:?}");
            let third = policy.backoff(2);
            assert!((200..=400).contains(&third.as_millis()), "{third:?}");
            let late = policy.backoff(30);
            assert!((350..=700).contains(&late.as_millis()), "{late:?}");
        }
    }

    #[test]
    fn retry_after_is_read_and_capped() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));

        let mut long = HeaderMap::new();
        long.insert("retry-after", HeaderValue::from_static("3600"));
        assert_eq!(
            policy().delay(0, retry_after(&long)),
            Duration::from_secs(5)
        );

        let mut date = HeaderMap::new();
        date.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&date), None);
        let mut negative = HeaderMap::new();
        negative.insert("retry-after", HeaderValue::from_static("-1"));
        assert_eq!(retry_after(&negative), None);
    }

    #[test]
    fn statuses_are_classified() {
        assert!(retryable_status(StatusCode::TOO_MANY_REQUESTS, b"{}"));
        assert!(retryable_status(StatusCode::INTERNAL_SERVER_ERROR, b""));
        assert!(retryable_status(StatusCode::SERVICE_UNAVAILABLE, b"oops"));
        assert!(!retryable_status(StatusCode::BAD_REQUEST, b""));
        assert!(!retryable_status(StatusCode::UNAUTHORIZED, b""));
        let quota = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
        assert!(!retryable_status(StatusCode::TOO_MANY_REQUESTS, quota));
    }
}
