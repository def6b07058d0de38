//! Chat models: what agent execution needs from a language model, local or remote.
//!
//! A model is bound to one `(provider, name)` pair by [`ChatModels::model`]; it streams
//! [`ChatDelta`]s that the caller pulls one at a time. Dropping a [`ChatStream`] stops the
//! generation (a remote request is closed, a local model stops at its next token), which is how a
//! cancelled run stops within a second.

use std::sync::Arc;

use async_trait::async_trait;

use crate::values::ModelRef;

/// Who said a message in a prompt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatRole {
    System,
    User,
    Assistant,
    Tool,
}

/// A function call the model asked for, raw: `arguments` is the JSON text exactly as the model
/// wrote it (it may not parse).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    /// The model's id for the call; a tool result answers it by this id.
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// One message of a prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: ChatRole,
    pub content: String,
    /// Assistant messages: the calls the model made in that turn.
    pub tool_calls: Vec<ToolCall>,
    /// Tool messages: the call this result answers.
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    #[must_use]
    pub fn new(role: ChatRole, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A tool offered to the model through function calling.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: serde_json::Value,
}

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub temperature: f64,
    /// A ceiling on the answer: generation stops there, whatever the model would say next.
    pub max_tokens: u32,
    /// Offered only when [`ChatModel::supports_tools`] says so; empty otherwise.
    pub tools: Vec<ToolSpec>,
}

/// Tokens a generation used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenUsage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// One piece of a streamed answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChatDelta {
    /// Answer text, in order.
    Text(String),
    /// A piece of a tool call; pieces with the same `index` belong to one call. The id and name
    /// come in the first piece, the arguments' JSON text may come in many.
    ToolCall {
        index: u32,
        id: Option<String>,
        name: Option<String>,
        arguments: String,
    },
    /// What the provider counted, when it says (usually last). Absent from an interrupted stream;
    /// the caller then counts for itself.
    Usage(TokenUsage),
}

/// Why a model could not answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// The provider refused or failed (after its retries): its status and message, safe to show.
    #[error("the model provider failed: {0}")]
    Provider(String),
    /// No answer, or no next token, in time.
    #[error("the model provider did not answer in time")]
    Timeout,
    /// The provider does not know the model.
    #[error("the model {0:?} is not available")]
    ModelUnavailable(String),
    /// The stream was cut or answered something that is not the protocol.
    #[error("the model provider answered unexpectedly: {0}")]
    BadResponse(String),
    /// The prompt does not fit the model's window with room for the answer.
    #[error("the prompt needs {needed} tokens with room for the answer; the model takes {window}")]
    ContextExceeded { needed: u32, window: u32 },
    /// Every slot of a local model is taken; try again after this many seconds.
    #[error("the model is busy")]
    Busy { retry_after_secs: u32 },
    /// A failure of ours (a thread that died, a tokenizer that failed); the detail goes to the log.
    #[error("the model failed: {0}")]
    Internal(String),
}

impl ChatError {
    /// The stable code stored with a failed run and shown to its owner.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::Provider(_) => "model_error",
            Self::Timeout => "model_timeout",
            Self::ModelUnavailable(_) => "model_unavailable",
            Self::BadResponse(_) => "model_bad_response",
            Self::ContextExceeded { .. } => "context_exceeded",
            Self::Busy { .. } => "server_busy",
            Self::Internal(_) => "model_internal",
        }
    }
}

/// A generation in progress, pulled delta by delta. Dropping it stops the generation.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ChatStream: Send {
    /// The next delta; `None` once the model has finished.
    async fn next(&mut self) -> Option<Result<ChatDelta, ChatError>>;
}

/// One model of one provider.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// Whether the model takes tools through function calling.
    fn supports_tools(&self) -> bool;

    /// How many tokens the model sees at once, prompt and answer together.
    fn context_window(&self) -> u32;

    /// How many tokens `text` takes, by the model's own tokenizer where it is known (an estimate
    /// from a common tokenizer otherwise): used for the history budget.
    fn count_tokens(&self, text: &str) -> u32;

    /// Starts generating. Fails here (before any token) when the model cannot start: busy,
    /// unknown, unreachable after retries.
    ///
    /// # Errors
    /// See [`ChatError`].
    async fn stream(&self, request: ChatRequest) -> Result<Box<dyn ChatStream>, ChatError>;
}

/// Why an agent's model cannot be used here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChatModelUnavailable {
    #[error("unknown provider {0:?}; this server offers \"local\" and \"openai\"")]
    UnknownProvider(String),
    #[error("the local model {0:?} is not installed")]
    NotInstalled(String),
    #[error("provider {0:?} is not configured on this server")]
    NotConfigured(String),
}

/// The chat models this server can reach, by the name an agent gives.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait ChatModels: Send + Sync {
    /// Whether the model an agent names can be used here, without loading it (checked when
    /// the agent is saved).
    ///
    /// # Errors
    /// When the provider is unknown, or the local model is not installed.
    fn check(&self, model: &ModelRef) -> Result<(), ChatModelUnavailable>;

    /// The model an agent names (a local one is loaded on first use).
    ///
    /// # Errors
    /// When the provider is unknown, or the local model is not installed.
    fn model(&self, model: &ModelRef) -> Result<Arc<dyn ChatModel>, ChatModelUnavailable>;
}
