//! The OpenAI-compatible shapes: requests and answers of `/v1/chat/completions`,
//! `/v1/models` and `/v1/embeddings` as OpenAI's API has them, and the middleware that answers
//! those routes' errors in OpenAI's shape (`{"error": {message, type, param, code}}`) rather than
//! as problem details, so that OpenAI's SDKs raise their typed errors.
//!
//! Unknown request fields are ignored, as OpenAI-compatible servers do: clients send many
//! optional ones (`top_p`, `seed`, `user`, …) that do not change what an agent does.

use actix_web::HttpResponse;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use domain::entities::Citation;
use domain::ports::{ChatMessage, ChatRole, TokenUsage, ToolCall, ToolSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::http::error::{ApiError, PROBLEM_JSON};
use crate::http::execution_dto::CitationDto;

/// `POST /v1/chat/completions`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// An agent's slug (`GET /v1/models` lists them).
    pub model: String,
    /// The conversation so far: `system`/`developer`, `user`, `assistant` (with `tool_calls`)
    /// and `tool` messages. The agent's system prompt comes before them.
    pub messages: Vec<ChatRequestMessage>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// Capped by the agent's temperature.
    pub temperature: Option<f64>,
    /// Capped by the agent's `max_tokens`.
    pub max_tokens: Option<u32>,
    /// The newer name of `max_tokens`; wins when both are sent.
    pub max_completion_tokens: Option<u32>,
    /// Functions the client runs itself; offered beside the agent's own tools.
    pub tools: Option<Vec<ChatRequestTool>>,
    /// How many answers: only 1 is served.
    pub n: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with the usage of the whole request (and `usage: null` on the others).
    #[serde(default)]
    pub include_usage: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatRequestMessage {
    /// `system`, `developer`, `user`, `assistant` or `tool`.
    pub role: String,
    /// A string, or an array of `{"type": "text", "text": …}` parts; null on an assistant
    /// message that only calls tools.
    #[schema(value_type = Option<Object>)]
    pub content: Option<Value>,
    pub tool_calls: Option<Vec<ChatRequestToolCall>>,
    pub tool_call_id: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatRequestToolCall {
    pub id: String,
    pub function: ToolCallFunction,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
pub struct ToolCallFunction {
    pub name: String,
    /// The arguments as JSON text.
    pub arguments: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatRequestTool {
    /// `function`.
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionDefinition,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct FunctionDefinition {
    pub name: String,
    pub description: Option<String>,
    /// JSON Schema of the arguments object.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
}

/// A request field at fault, for a 422 in OpenAI's shape.
fn invalid(field: &str, message: &str) -> ApiError {
    ApiError::invalid(field, message)
}

impl ChatCompletionRequest {
    /// The messages and tools as the domain takes them.
    ///
    /// # Errors
    /// 422 naming the field: an unknown role, content that is not text, a tool that is not a
    /// function, `n` other than 1.
    pub fn into_parts(self) -> Result<(Vec<ChatMessage>, Vec<ToolSpec>), ApiError> {
        if self.n.is_some_and(|n| n != 1) {
            return Err(invalid("n", "only one answer (n = 1) is served"));
        }
        let mut messages = Vec::with_capacity(self.messages.len());
        for (i, m) in self.messages.into_iter().enumerate() {
            let role = match m.role.as_str() {
                "system" | "developer" => ChatRole::System,
                "user" => ChatRole::User,
                "assistant" => ChatRole::Assistant,
                "tool" => ChatRole::Tool,
                _ => {
                    return Err(invalid(
                        &format!("messages[{i}].role"),
                        "must be system, developer, user, assistant or tool",
                    ));
                }
            };
            let content = text_of(m.content.as_ref())
                .map_err(|message| invalid(&format!("messages[{i}].content"), message))?;
            let tool_calls = m
                .tool_calls
                .unwrap_or_default()
                .into_iter()
                .map(|c| ToolCall {
                    id: c.id,
                    name: c.function.name,
                    arguments: c.function.arguments,
                })
                .collect();
            messages.push(ChatMessage {
                role,
                content,
                tool_calls,
                tool_call_id: m.tool_call_id,
            });
        }
        let mut tools = Vec::new();
        for (i, tool) in self.tools.unwrap_or_default().into_iter().enumerate() {
            if tool.kind != "function" {
                return Err(invalid(&format!("tools[{i}].type"), "must be function"));
            }
            tools.push(ToolSpec {
                name: tool.function.name,
                description: tool.function.description.unwrap_or_default(),
                parameters: tool
                    .function
                    .parameters
                    .unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            });
        }
        Ok((messages, tools))
    }

    /// `max_completion_tokens`, else `max_tokens`.
    #[must_use]
    pub fn answer_ceiling(&self) -> Option<u32> {
        self.max_completion_tokens.or(self.max_tokens)
    }
}

/// The text of a message's content: a string, or the text parts of an array joined.
fn text_of(content: Option<&Value>) -> Result<String, &'static str> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text.clone()),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for part in parts {
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    _ => return Err("only text parts are served"),
                }
            }
            Ok(text)
        }
        Some(_) => Err("must be a string or an array of text parts"),
    }
}

/// A tool call in an answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionToolCall {
    /// Its position (streamed chunks only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub id: String,
    /// `function`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: ToolCallFunction,
}

pub fn answer_calls(calls: &[ToolCall], indexed: bool) -> Vec<CompletionToolCall> {
    calls
        .iter()
        .enumerate()
        .map(|(i, c)| CompletionToolCall {
            index: indexed.then_some(i),
            id: c.id.clone(),
            kind: "function",
            function: ToolCallFunction {
                name: c.name.clone(),
                arguments: c.arguments.clone(),
            },
        })
        .collect()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionMessage {
    /// `assistant`.
    pub role: &'static str,
    /// Null when the answer only calls tools.
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<CompletionToolCall>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionChoice {
    pub index: u32,
    pub message: CompletionMessage,
    /// `stop`; `length` when the answer used all of `max_tokens`; `tool_calls` when it calls
    /// the client's tools.
    pub finish_reason: &'static str,
}

#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
pub struct CompletionUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
}

impl From<TokenUsage> for CompletionUsage {
    fn from(u: TokenUsage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens.saturating_add(u.completion_tokens),
        }
    }
}

/// A whole answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletion {
    /// `chatcmpl-<run id>`.
    pub id: String,
    /// `chat.completion`.
    pub object: &'static str,
    pub created: i64,
    pub model: String,
    pub choices: Vec<CompletionChoice>,
    pub usage: CompletionUsage,
    /// The platform's extra: one citation per source marker in the answer (SDKs ignore it).
    pub citations: Vec<CitationDto>,
}

pub fn citations(c: Vec<Citation>) -> Vec<CitationDto> {
    c.into_iter().map(Into::into).collect()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiModel {
    /// The agent's slug.
    pub id: String,
    /// `model`.
    pub object: &'static str,
    pub created: i64,
    /// The tenant's slug.
    pub owned_by: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiModelList {
    /// `list`.
    pub object: &'static str,
    pub data: Vec<OpenAiModel>,
}

/// `POST /v1/embeddings`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct EmbeddingRequest {
    /// An embedding space id (`GET /v1/spaces` lists them).
    pub model: String,
    /// A string, or a list of strings.
    #[schema(value_type = Object)]
    pub input: Value,
    /// `float` (the default) or `base64` (little-endian 32-bit floats).
    pub encoding_format: Option<String>,
    /// Not served: a space has the dimensions it has.
    pub dimensions: Option<u32>,
}

impl EmbeddingRequest {
    /// The inputs, and whether vectors go back as base64.
    ///
    /// # Errors
    /// 422 for an input that is not a string or a list of strings, an unknown encoding, or
    /// `dimensions`.
    pub fn into_parts(self) -> Result<(Vec<String>, bool), ApiError> {
        let inputs = match self.input {
            Value::String(text) => vec![text],
            Value::Array(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::String(text) => Ok(text),
                    _ => Err(invalid(
                        "input",
                        "must be a string or a list of strings (token arrays are not served)",
                    )),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(invalid("input", "must be a string or a list of strings")),
        };
        let base64 = match self.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(_) => return Err(invalid("encoding_format", "must be float or base64")),
        };
        if self.dimensions.is_some() {
            return Err(invalid(
                "dimensions",
                "is not served: a space's vectors have the dimensions of its model",
            ));
        }
        Ok((inputs, base64))
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiEmbedding {
    /// `embedding`.
    pub object: &'static str,
    pub index: usize,
    /// Floats, or their base64 text when asked.
    #[schema(value_type = Object)]
    pub embedding: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiEmbeddingUsage {
    pub prompt_tokens: u32,
    pub total_tokens: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiEmbeddingList {
    /// `list`.
    pub object: &'static str,
    pub data: Vec<OpenAiEmbedding>,
    pub model: String,
    pub usage: OpenAiEmbeddingUsage,
}

/// An error in OpenAI's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiError {
    pub error: OpenAiErrorBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiErrorBody {
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `not_found_error`,
    /// `rate_limit_error` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, when one is.
    pub param: Option<String>,
    /// The platform's stable code (`model_not_found`, `quota_exceeded`, …).
    pub code: Option<String>,
}

fn error_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        s if s >= 500 => "server_error",
        _ => "invalid_request_error",
    }
}

/// The body of an OpenAI-shaped error from a problem's fields.
#[must_use]
pub fn error_body(status: StatusCode, detail: &str, code: &str, param: Option<String>) -> Value {
    json!({"error": {
        "message": detail,
        "type": error_type(status),
        "param": param,
        "code": code,
    }})
}

/// Middleware of the OpenAI-compatible routes: a problem+json answer (from an extractor, the
/// authentication or the handler) becomes the same status in OpenAI's error shape, keeping its
/// headers (`Retry-After`, `WWW-Authenticate`, `x-run-id`, …).
///
/// # Errors
/// Those of the wrapped service.
pub async fn openai_errors(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let res = next.call(req).await?;
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if !is_problem {
        return Ok(res.map_into_boxed_body());
    }
    let (req, res) = res.into_parts();
    let status = res.status();
    let headers = res.headers().clone();
    // Problems are small documents of ours; anything else is passed through unread.
    let body = actix_web::body::to_bytes_limited(res.into_body(), 64 * 1024)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let problem: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = |key: &str| problem.get(key).and_then(Value::as_str).unwrap_or("");
    let param = problem
        .get("errors")
        .and_then(|e| e.get(0))
        .and_then(|e| e.get("field"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut out = HttpResponse::build(status);
    for (name, value) in &headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            out.append_header((name.clone(), value.clone()));
        }
    }
    out.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    ));
    let response = out.body(error_body(status, text("detail"), text("code"), param).to_string());
    Ok(ServiceResponse::new(req, response))
}
