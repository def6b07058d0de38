//! Chat models: what agent execution needs from a language model, local or remote.
//!
//! A model is bound to one `(provider, name)` pair by [`ChatModels::model`]; it streams
//! [`ChatDelta`]s that the caller pulls one at a time. Dropping a [`ChatStream`] stops the
//! generation (a remote request is closed, a local model stops at its next token), which is how a
//! cancelled run stops within a second.

use std::sync::Arc;

use async_trait::async_trait;

use crate::entities::failure_codes;
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

/// A whole answer, as [`ChatModel::complete`] gathers it from the stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    /// What the provider counted, when it said.
    pub usage: Option<TokenUsage>,
}

/// Tool calls gathered from their streamed pieces ([`ChatDelta::ToolCall`]), by index.
#[derive(Clone, Debug, Default)]
pub struct ToolCallPieces {
    /// Id, name and arguments so far, by index.
    pieces: Vec<(Option<String>, Option<String>, String)>,
}

impl ToolCallPieces {
    /// The most calls one model turn may make: an index beyond joins the last call rather than
    /// growing the list.
    pub const MAX_CALLS: usize = 16;

    pub fn add(&mut self, index: u32, id: Option<String>, name: Option<String>, arguments: &str) {
        let index = usize::try_from(index)
            .unwrap_or(usize::MAX)
            .min(Self::MAX_CALLS - 1);
        if self.pieces.len() <= index {
            self.pieces.resize(index + 1, (None, None, String::new()));
        }
        let call = &mut self.pieces[index];
        call.0 = call.0.take().or(id);
        call.1 = call.1.take().or(name);
        call.2.push_str(arguments);
    }

    /// The calls, in index order; a call that never named its function is dropped, one that
    /// never gave an id gets `call_<index>`.
    #[must_use]
    pub fn finish(self) -> Vec<ToolCall> {
        self.pieces
            .into_iter()
            .enumerate()
            .filter_map(|(i, (id, name, arguments))| {
                Some(ToolCall {
                    id: id.unwrap_or_else(|| format!("call_{i}")),
                    name: name?,
                    arguments,
                })
            })
            .collect()
    }
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
            Self::Provider(_) => failure_codes::MODEL_ERROR,
            Self::Timeout => failure_codes::MODEL_TIMEOUT,
            Self::ModelUnavailable(_) => failure_codes::MODEL_UNAVAILABLE,
            Self::BadResponse(_) => failure_codes::MODEL_BAD_RESPONSE,
            Self::ContextExceeded { .. } => failure_codes::CONTEXT_EXCEEDED,
            Self::Busy { .. } => failure_codes::SERVER_BUSY,
            Self::Internal(_) => failure_codes::MODEL_INTERNAL,
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

    /// The whole answer at once: [`ChatModel::stream`], gathered.
    ///
    /// # Errors
    /// As [`ChatModel::stream`], and the first error the stream yields.
    async fn complete(&self, request: ChatRequest) -> Result<Completion, ChatError> {
        let mut stream = self.stream(request).await?;
        let mut completion = Completion::default();
        let mut calls = ToolCallPieces::default();
        while let Some(delta) = stream.next().await {
            match delta? {
                ChatDelta::Text(text) => completion.text.push_str(&text),
                ChatDelta::ToolCall {
                    index,
                    id,
                    name,
                    arguments,
                } => calls.add(index, id, name, &arguments),
                ChatDelta::Usage(usage) => completion.usage = Some(usage),
            }
        }
        completion.tool_calls = calls.finish();
        Ok(completion)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Scripted(Vec<ChatDelta>);

    #[async_trait]
    impl ChatStream for Scripted {
        async fn next(&mut self) -> Option<Result<ChatDelta, ChatError>> {
            (!self.0.is_empty()).then(|| Ok(self.0.remove(0)))
        }
    }

    struct Model;

    #[async_trait]
    impl ChatModel for Model {
        fn supports_tools(&self) -> bool {
            true
        }
        fn context_window(&self) -> u32 {
            100
        }
        fn count_tokens(&self, text: &str) -> u32 {
            u32::try_from(text.len()).unwrap_or(u32::MAX)
        }
        async fn stream(&self, _: ChatRequest) -> Result<Box<dyn ChatStream>, ChatError> {
            let piece = |index, id: Option<&str>, name: Option<&str>, arguments: &str| {
                ChatDelta::ToolCall {
                    index,
                    id: id.map(str::to_owned),
                    name: name.map(str::to_owned),
                    arguments: arguments.to_owned(),
                }
            };
            Ok(Box::new(Scripted(vec![
                ChatDelta::Text("Let me ".into()),
                piece(1, Some("b"), Some("search"), "{\"q\":"),
                ChatDelta::Text("look.".into()),
                piece(0, None, Some("search"), "{}"),
                piece(1, None, None, "\"x\"}"),
                piece(2, Some("nameless"), None, "{}"),
                ChatDelta::Usage(TokenUsage {
                    prompt_tokens: 3,
                    completion_tokens: 4,
                }),
            ])))
        }
    }

    #[tokio::test]
    async fn complete_gathers_the_text_the_calls_in_index_order_and_the_usage() {
        let request = ChatRequest {
            messages: Vec::new(),
            temperature: 0.0,
            max_tokens: 10,
            tools: Vec::new(),
        };
        let completion = Model.complete(request).await.unwrap();
        assert_eq!(completion.text, "Let me look.");
        let calls: Vec<(&str, &str, &str)> = completion
            .tool_calls
            .iter()
            .map(|c| (c.id.as_str(), c.name.as_str(), c.arguments.as_str()))
            .collect();
        assert_eq!(
            calls,
            [("call_0", "search", "{}"), ("b", "search", "{\"q\":\"x\"}")]
        );
        assert_eq!(completion.usage.map(|u| u.completion_tokens), Some(4));
    }
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
