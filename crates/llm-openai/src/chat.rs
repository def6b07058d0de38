//! [`OpenAiChat`]: the domain's [`ChatModel`] port over `POST {base_url}/chat/completions`,
//! always streamed.
//!
//! The request is written with async-openai's types. It is sent with reqwest directly rather
//! than through async-openai, whose transport reads whole bodies: [`transport::open_stream`]
//! applies the same retry policy, but only until the response head, and the body is read by
//! [`stream::OpenAiChatStream`] with a decoder of our own that bounds what a server can make us
//! buffer.

mod stream;

use std::fmt;
use std::time::Duration;

use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestAssistantMessageContent,
    ChatCompletionRequestMessage, ChatCompletionRequestSystemMessage,
    ChatCompletionRequestSystemMessageContent, ChatCompletionRequestToolMessage,
    ChatCompletionRequestToolMessageContent, ChatCompletionRequestUserMessage,
    ChatCompletionRequestUserMessageContent, ChatCompletionStreamOptions, ChatCompletionTool,
    ChatCompletionTools, CreateChatCompletionRequest, FunctionCall, FunctionObject,
};
use async_trait::async_trait;
use domain::ports::{
    ChatError, ChatMessage, ChatModel, ChatRequest, ChatRole, ChatStream, ToolCall, ToolSpec,
};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use secrecy::SecretString;

use crate::client::{self, Connection};
use crate::config::{ConfigError, OpenAiClientConfig};
use crate::error_chain::error_chain;
use crate::tokens::Cl100k;
use crate::transport::{self, OpenFailure, RetryPolicy, StreamRequest};

/// Longest provider message kept in a [`ChatError`] (it may be shown to the run's owner).
const MAX_MESSAGE_CHARS: usize = 300;

/// Which model to talk to and what it can do, on top of the [`OpenAiClientConfig`].
///
/// Build it with [`OpenAiChatConfig::new`] and change the public fields you need. `Debug` never
/// prints the API key.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct OpenAiChatConfig {
    /// Where the API is, the key, the timeout (until the head of the streamed answer) and the
    /// retry policy.
    pub client: OpenAiClientConfig,
    /// Model name, as the server knows it.
    pub model: String,
    /// Whether the model takes tools through function calling. Default `true`.
    pub supports_tools: bool,
    /// Tokens the model sees at once, prompt and answer together. Default
    /// [`Self::DEFAULT_CONTEXT_WINDOW`].
    pub context_window: u32,
    /// Longest wait for the next event while the answer streams: nothing for this long fails
    /// the stream with [`ChatError::Timeout`]. Keep-alive comments do not count as events, so a
    /// server that only sends those cannot hold the stream open. Default 60 s.
    pub stream_idle_timeout: Duration,
}

impl OpenAiChatConfig {
    /// The default context window (OpenAI's current models have at least this much).
    pub const DEFAULT_CONTEXT_WINDOW: u32 = 128_000;
    /// The default stream idle timeout.
    pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

    /// Settings for `model` at `base_url` (for example `http://127.0.0.1:11434/v1`) with
    /// `api_key`, tools supported, and the default context window, timeouts and retry policy.
    pub fn new(
        base_url: impl Into<String>,
        api_key: SecretString,
        model: impl Into<String>,
    ) -> Self {
        Self {
            client: OpenAiClientConfig::new(base_url, api_key),
            model: model.into(),
            supports_tools: true,
            context_window: Self::DEFAULT_CONTEXT_WINDOW,
            stream_idle_timeout: Self::DEFAULT_STREAM_IDLE_TIMEOUT,
        }
    }
}

/// One model of an OpenAI-compatible chat completions API (OpenAI, or Ollama, vLLM, llama.cpp
/// and the like at their `/v1` base URL).
///
/// - Every answer is streamed (`stream: true`, with `stream_options.include_usage`), and the
///   length limit is sent as `max_tokens`, which every compatible server understands.
/// - Rate limits, server errors, timeouts and connection failures are retried as the
///   [`OpenAiClientConfig`] says, but only until the head of the answer: once
///   [`ChatModel::stream`] has returned, nothing is sent again.
/// - The stream fails with [`ChatError::Timeout`] after `stream_idle_timeout` without an event,
///   and with [`ChatError::BadResponse`] when it is cut before the model finished (after the
///   text already delivered), or carries a line over 1 MiB, more than 64 MiB in all, or an
///   event that is not the expected JSON. An error the server reports inside the stream is
///   [`ChatError::Provider`].
/// - Token usage is passed on only when the provider reports it, once, after the rest.
/// - Dropping the stream closes the connection, so the provider stops generating.
/// - Tokens are counted with `cl100k_base`: exact for GPT-3.5/4 models, an estimate for others.
pub struct OpenAiChat {
    http: reqwest::Client,
    policy: RetryPolicy,
    base_url: String,
    url: reqwest::Url,
    api_key: SecretString,
    model: String,
    supports_tools: bool,
    context_window: u32,
    stream_idle_timeout: Duration,
    tokenizer: Cl100k,
}

impl fmt::Debug for OpenAiChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiChat")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("supports_tools", &self.supports_tools)
            .field("context_window", &self.context_window)
            .field("stream_idle_timeout", &self.stream_idle_timeout)
            .finish_non_exhaustive()
    }
}

impl OpenAiChat {
    /// Validates `config` and builds the model's client (HTTP client and tokenizer included).
    /// Sends nothing.
    ///
    /// # Errors
    /// [`ConfigError`] when the base URL, key, timeouts, model name or context window is
    /// unusable, or when the HTTP client or tokenizer cannot be initialised.
    pub fn new(config: OpenAiChatConfig) -> Result<Self, ConfigError> {
        if config.model.trim().is_empty() {
            return Err(ConfigError::EmptyModel);
        }
        if config.context_window == 0 {
            return Err(ConfigError::ContextWindow);
        }
        if config.stream_idle_timeout.is_zero() {
            return Err(ConfigError::IdleTimeout);
        }
        let Connection {
            base_url,
            http,
            policy,
        } = Connection::new(&config.client)?;
        let url =
            reqwest::Url::parse(&format!("{base_url}/chat/completions")).map_err(|error| {
                ConfigError::BaseUrl {
                    url: config.client.base_url.clone(),
                    reason: error.to_string(),
                }
            })?;
        Ok(Self {
            http,
            policy,
            base_url,
            url,
            api_key: config.client.api_key,
            model: config.model,
            supports_tools: config.supports_tools,
            context_window: config.context_window,
            stream_idle_timeout: config.stream_idle_timeout,
            tokenizer: Cl100k::load()?,
        })
    }

    /// The model name sent with every request.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The HTTP request for `request`: JSON body and headers, key included.
    fn http_request(&self, request: ChatRequest) -> Result<StreamRequest, ChatError> {
        if !request.tools.is_empty() && !self.supports_tools {
            return Err(ChatError::Internal(format!(
                "tools were offered to the model {:?}, which is configured without tool support",
                self.model
            )));
        }
        let body = wire_request(&self.model, request)?;
        let body = serde_json::to_vec(&body).map_err(|error| {
            ChatError::Internal(format!("could not encode the request: {error}"))
        })?;
        let authorization = client::bearer(&self.api_key)
            .map_err(|error| ChatError::Internal(error.to_string()))?;
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, authorization);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        Ok(StreamRequest {
            url: self.url.clone(),
            headers,
            body,
        })
    }

    /// What a failure to open the stream means for the caller.
    fn open_failure(&self, failure: OpenFailure) -> ChatError {
        match failure {
            OpenFailure::Timeout { attempts } => {
                tracing::warn!(
                    model = %self.model,
                    attempts,
                    "OpenAI-compatible chat API did not answer in time"
                );
                ChatError::Timeout
            }
            OpenFailure::Unreachable(error) => ChatError::Provider(truncate(&error_chain(&error))),
            OpenFailure::Status { status, body } => status_error(&self.model, status, &body),
        }
    }
}

#[async_trait]
impl ChatModel for OpenAiChat {
    fn supports_tools(&self) -> bool {
        self.supports_tools
    }

    fn context_window(&self) -> u32 {
        self.context_window
    }

    /// `cl100k_base`: exact for GPT-3.5/4 models, an estimate for others.
    fn count_tokens(&self, text: &str) -> u32 {
        u32::try_from(self.tokenizer.count(text)).unwrap_or(u32::MAX)
    }

    async fn stream(&self, request: ChatRequest) -> Result<Box<dyn ChatStream>, ChatError> {
        let request = self.http_request(request)?;
        let mut response = transport::open_stream(&self.http, &self.policy, &request)
            .await
            .map_err(|failure| self.open_failure(failure))?;
        // A server that ignored `stream: true`, or reports an error with a 2xx status.
        if is_json(response.headers()) {
            let body = tokio::time::timeout(
                self.policy.timeout,
                transport::read_prefix(&mut response, stream::MAX_LINE_BYTES),
            )
            .await
            .map_err(|_elapsed| ChatError::Timeout)?;
            return Err(match error_detail(&body) {
                Some(detail) if detail.is_error => {
                    status_error(&self.model, response.status(), &body)
                }
                _ => ChatError::BadResponse(truncate(&format!(
                    "expected an event stream, got JSON: {}",
                    String::from_utf8_lossy(&body)
                ))),
            });
        }
        Ok(Box::new(stream::OpenAiChatStream::new(
            response,
            self.stream_idle_timeout,
        )))
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().starts_with("application/json"))
}

/// The request body, in async-openai's types.
fn wire_request(
    model: &str,
    request: ChatRequest,
) -> Result<CreateChatCompletionRequest, ChatError> {
    let messages = request
        .messages
        .into_iter()
        .map(wire_message)
        .collect::<Result<Vec<_>, _>>()?;
    let tools =
        (!request.tools.is_empty()).then(|| request.tools.into_iter().map(wire_tool).collect());
    // `max_tokens` is deprecated by OpenAI in favour of `max_completion_tokens`, which the other
    // compatible servers (Ollama, vLLM, llama.cpp) do not all understand; OpenAI still takes it.
    #[allow(deprecated)]
    let body = CreateChatCompletionRequest {
        model: model.to_owned(),
        messages,
        stream: Some(true),
        stream_options: Some(ChatCompletionStreamOptions {
            include_usage: Some(true),
            include_obfuscation: None,
        }),
        max_tokens: Some(request.max_tokens),
        // The API takes a 32-bit float; the precision lost is far below what sampling notices.
        temperature: Some(request.temperature as f32),
        tools,
        ..CreateChatCompletionRequest::default()
    };
    Ok(body)
}

fn wire_message(message: ChatMessage) -> Result<ChatCompletionRequestMessage, ChatError> {
    let ChatMessage {
        role,
        content,
        tool_calls,
        tool_call_id,
    } = message;
    Ok(match role {
        ChatRole::System => {
            ChatCompletionRequestMessage::System(ChatCompletionRequestSystemMessage {
                content: ChatCompletionRequestSystemMessageContent::Text(content),
                name: None,
            })
        }
        ChatRole::User => ChatCompletionRequestMessage::User(ChatCompletionRequestUserMessage {
            content: ChatCompletionRequestUserMessageContent::Text(content),
            name: None,
        }),
        ChatRole::Assistant => {
            // A turn that only called tools has no text: `content` is then left out (null), as
            // the API expects.
            let content = (!content.is_empty() || tool_calls.is_empty())
                .then_some(ChatCompletionRequestAssistantMessageContent::Text(content));
            let tool_calls = (!tool_calls.is_empty())
                .then(|| tool_calls.into_iter().map(wire_tool_call).collect());
            ChatCompletionRequestMessage::Assistant(ChatCompletionRequestAssistantMessage {
                content,
                tool_calls,
                ..ChatCompletionRequestAssistantMessage::default()
            })
        }
        ChatRole::Tool => {
            let tool_call_id = tool_call_id.ok_or_else(|| {
                ChatError::Internal("a tool message without the id of its call".to_owned())
            })?;
            ChatCompletionRequestMessage::Tool(ChatCompletionRequestToolMessage {
                content: ChatCompletionRequestToolMessageContent::Text(content),
                tool_call_id,
            })
        }
    })
}

fn wire_tool_call(call: ToolCall) -> ChatCompletionMessageToolCalls {
    ChatCompletionMessageToolCalls::Function(ChatCompletionMessageToolCall {
        id: call.id,
        function: FunctionCall {
            name: call.name,
            arguments: call.arguments,
        },
    })
}

fn wire_tool(tool: ToolSpec) -> ChatCompletionTools {
    ChatCompletionTools::Function(ChatCompletionTool {
        function: FunctionObject {
            name: tool.name,
            description: Some(tool.description),
            parameters: Some(tool.parameters),
            strict: None,
        },
    })
}

/// The error for an answer with `status` that is not a stream: an unknown model (404, or
/// OpenAI's `model_not_found` code) or the provider's refusal with its message.
fn status_error(model: &str, status: StatusCode, body: &[u8]) -> ChatError {
    let detail = error_detail(body);
    let model_not_found = detail
        .as_ref()
        .is_some_and(|detail| detail.code.as_deref() == Some("model_not_found"));
    if status == StatusCode::NOT_FOUND || model_not_found {
        return ChatError::ModelUnavailable(model.to_owned());
    }
    let message = match detail {
        Some(detail) => detail.message,
        None => body_text(body),
    };
    ChatError::Provider(format!("HTTP {status}: {}", truncate(&message)))
}

/// What an error body says, as far as it is JSON in one of the usual shapes.
struct ErrorDetail {
    message: String,
    code: Option<String>,
    /// The body has an `error` member (rather than only a top-level `message`).
    is_error: bool,
}

/// Reads `{"error": {"message", "code"}}` (OpenAI, vLLM), `{"error": "…"}` (Ollama) or
/// `{"message", "code"}`; `None` for anything else.
fn error_detail(body: &[u8]) -> Option<ErrorDetail> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    match value.get("error") {
        Some(error) if !error.is_null() => Some(ErrorDetail {
            message: render_error(error),
            code: error.get("code").and_then(code_text),
            is_error: true,
        }),
        _ => Some(ErrorDetail {
            message: value.get("message")?.as_str()?.to_owned(),
            code: value.get("code").and_then(code_text),
            is_error: false,
        }),
    }
}

/// The message of an `error` member: its `message` when it is an object that has one, the text
/// when it is a string, its JSON otherwise.
fn render_error(error: &serde_json::Value) -> String {
    if let Some(text) = error.as_str() {
        return text.to_owned();
    }
    match error.get("message").and_then(serde_json::Value::as_str) {
        Some(message) => message.to_owned(),
        None => error.to_string(),
    }
}

/// An error code, which servers send as a string or a number.
fn code_text(code: &serde_json::Value) -> Option<String> {
    match code {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

fn body_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        text.to_owned()
    }
}

fn truncate(text: &str) -> String {
    domain::values::truncated(text, MAX_MESSAGE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_read_in_their_usual_shapes() {
        let openai = br#"{"error":{"message":"The model `x` does not exist","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#;
        let detail = error_detail(openai).unwrap();
        assert_eq!(detail.message, "The model `x` does not exist");
        assert_eq!(detail.code.as_deref(), Some("model_not_found"));

        let ollama = br#"{"error":"model \"x\" not found, try pulling it first"}"#;
        let detail = error_detail(ollama).unwrap();
        assert_eq!(
            detail.message,
            "model \"x\" not found, try pulling it first"
        );
        assert_eq!(detail.code, None);

        let vllm = br#"{"object":"error","message":"bad temperature","type":"BadRequestError","code":400}"#;
        let detail = error_detail(vllm).unwrap();
        assert_eq!(detail.message, "bad temperature");
        assert_eq!(detail.code.as_deref(), Some("400"));

        assert!(error_detail(b"<html>502</html>").is_none());
        assert!(error_detail(br#"{"detail":"nope"}"#).is_none());
    }

    #[test]
    fn statuses_map_to_chat_errors() {
        let model = "m";
        assert_eq!(
            status_error(model, StatusCode::NOT_FOUND, b"404 page not found"),
            ChatError::ModelUnavailable("m".to_owned())
        );
        let not_found = br#"{"error":{"message":"no such model","code":"model_not_found"}}"#;
        assert_eq!(
            status_error(model, StatusCode::BAD_REQUEST, not_found),
            ChatError::ModelUnavailable("m".to_owned())
        );
        assert_eq!(
            status_error(
                model,
                StatusCode::UNAUTHORIZED,
                br#"{"error":{"message":"bad key"}}"#
            ),
            ChatError::Provider("HTTP 401 Unauthorized: bad key".to_owned())
        );
        assert_eq!(
            status_error(model, StatusCode::BAD_GATEWAY, b""),
            ChatError::Provider("HTTP 502 Bad Gateway: (empty body)".to_owned())
        );
        let ChatError::Provider(long) =
            status_error(model, StatusCode::BAD_REQUEST, "x".repeat(5000).as_bytes())
        else {
            panic!("expected a provider error");
        };
        assert!(long.chars().count() < MAX_MESSAGE_CHARS + 40, "{long}");
    }
}
