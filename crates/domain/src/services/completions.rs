//! `/v1/chat/completions`: a run whose history is the client's own message list rather than a
//! stored conversation, and whose answer goes back to the caller instead of into a message.
//!
//! The agent's system prompt comes first, then the client's messages as sent (its own system
//! messages included); retrieval searches the last user message. The client's `temperature` and
//! `max_tokens` apply, capped by the agent's. Tools the client sends are offered beside the
//! agent's: the platform runs its own, and a turn that calls one of the client's ends the run
//! with those calls, for the client to run and answer in its next request, as OpenAI's API does.

use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;

use crate::entities::{Citation, Failure, RunStatus};
use crate::error::{Error, Validator};
use crate::ids::RunId;
use crate::ports::{ChatMessage, ChatRole, RunEventKind, TokenUsage, Tool, ToolCall, ToolSpec};

/// The most messages one request may carry.
pub const MAX_CLIENT_MESSAGES: usize = 256;
/// The most characters of all of a request's messages together.
pub const MAX_CLIENT_CHARS: usize = 256_000;
/// The most tools a client may offer.
pub const MAX_CLIENT_TOOLS: usize = 64;

/// What a client's run tells its caller as it goes.
#[derive(Debug)]
pub enum LiveEvent {
    /// An event of the run, as its event log has it.
    Event(RunEventKind, Value),
    /// The run has ended (always the last).
    Ended(ClientAnswer),
}

/// How a client's run ended.
#[derive(Clone, Debug)]
pub struct ClientAnswer {
    pub run: RunId,
    pub status: RunStatus,
    /// The answer with its citation markers as stored for a conversation.
    pub text: String,
    /// Calls of the client's tools the model made (the answer stops there).
    pub tool_calls: Vec<ToolCall>,
    pub citations: Vec<Citation>,
    pub usage: TokenUsage,
    /// The answer used all of `max_tokens` (OpenAI's `finish_reason: "length"`).
    pub cut_at_max_tokens: bool,
    pub failure: Option<Failure>,
}

impl ClientAnswer {
    pub(crate) fn failed(run: RunId, failure: Failure) -> Self {
        Self {
            run,
            status: RunStatus::Failed,
            text: String::new(),
            tool_calls: Vec::new(),
            citations: Vec::new(),
            usage: TokenUsage::default(),
            cut_at_max_tokens: false,
            failure: Some(failure),
        }
    }
}

/// A client's request, and where its caller listens.
#[derive(Debug)]
pub struct ClientTurn {
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    /// As asked, then capped by the agent's ([`ClientTurn::cap`]).
    pub temperature: f64,
    pub max_tokens: u32,
    asked_temperature: Option<f64>,
    asked_max_tokens: Option<u32>,
    pub(crate) live: mpsc::UnboundedSender<LiveEvent>,
}

impl ClientTurn {
    #[must_use]
    pub fn new(
        messages: Vec<ChatMessage>,
        tools: Vec<ToolSpec>,
        temperature: Option<f64>,
        max_tokens: Option<u32>,
        live: mpsc::UnboundedSender<LiveEvent>,
    ) -> Self {
        Self {
            messages,
            tools,
            temperature: 0.0,
            max_tokens: 1,
            asked_temperature: temperature,
            asked_max_tokens: max_tokens,
            live,
        }
    }

    /// Checks the request on its own (the agent is not known yet).
    ///
    /// # Errors
    /// Validation, naming every field at fault.
    pub(crate) fn validate(
        &self,
        max_message_chars: usize,
        platform_tools: &[Arc<dyn Tool>],
    ) -> Result<(), Error> {
        let mut v = Validator::new();
        if self.messages.is_empty() {
            v.push("messages", "must hold at least one message");
        }
        if self.messages.len() > MAX_CLIENT_MESSAGES {
            v.push(
                "messages",
                format!("must hold at most {MAX_CLIENT_MESSAGES} messages"),
            );
        }
        let mut total = 0usize;
        for (i, m) in self.messages.iter().enumerate() {
            let chars = m.content.chars().count();
            total += chars;
            if chars > max_message_chars {
                v.push(
                    &format!("messages[{i}].content"),
                    format!("must be at most {max_message_chars} characters"),
                );
            }
            if m.role == ChatRole::Tool && m.tool_call_id.as_deref().is_none_or(str::is_empty) {
                v.push(
                    &format!("messages[{i}].tool_call_id"),
                    "is required on a tool message",
                );
            }
        }
        if total > MAX_CLIENT_CHARS {
            v.push(
                "messages",
                format!("must hold at most {MAX_CLIENT_CHARS} characters together"),
            );
        }
        if let Some(last) = self.messages.last()
            && !matches!(last.role, ChatRole::User | ChatRole::Tool)
        {
            v.push("messages", "must end with a user message or a tool result");
        }
        if !self.messages.iter().any(|m| m.role == ChatRole::User) {
            v.push("messages", "must hold a user message");
        }
        if self.tools.len() > MAX_CLIENT_TOOLS {
            v.push(
                "tools",
                format!("must hold at most {MAX_CLIENT_TOOLS} tools"),
            );
        }
        for (i, tool) in self.tools.iter().enumerate() {
            let name_ok = !tool.name.is_empty()
                && tool.name.len() <= 64
                && tool
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !name_ok {
                v.push(
                    &format!("tools[{i}].function.name"),
                    "must be 1 to 64 letters, digits, underscores or dashes",
                );
            } else if platform_tools.iter().any(|t| t.spec().name == tool.name) {
                v.push(
                    &format!("tools[{i}].function.name"),
                    "is the name of one of the platform's own tools",
                );
            } else if self.tools[..i].iter().any(|t| t.name == tool.name) {
                v.push(&format!("tools[{i}].function.name"), "is offered twice");
            }
            if tool.description.chars().count() > 4096 {
                v.push(
                    &format!("tools[{i}].function.description"),
                    "must be at most 4096 characters",
                );
            }
        }
        if let Some(t) = self.asked_temperature
            && !(0.0..=2.0).contains(&t)
        {
            v.push("temperature", "must be between 0 and 2");
        }
        if self.asked_max_tokens == Some(0) {
            v.push("max_tokens", "must be at least 1");
        }
        v.finish()
    }

    /// Applies the agent's ceilings to what the client asked for.
    pub(crate) fn cap(&mut self, agent_temperature: f32, agent_max_tokens: u32) {
        let agent_temperature = f64::from(agent_temperature);
        self.temperature = self
            .asked_temperature
            .map_or(agent_temperature, |t| t.min(agent_temperature));
        self.max_tokens = self
            .asked_max_tokens
            .map_or(agent_max_tokens, |m| m.clamp(1, agent_max_tokens));
    }

    /// What retrieval searches for: the last user message.
    pub(crate) fn last_user_message(&self) -> &str {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == ChatRole::User)
            .map_or("", |m| m.content.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turn(messages: Vec<ChatMessage>, temperature: Option<f64>, max: Option<u32>) -> ClientTurn {
        let (live, _) = mpsc::unbounded_channel();
        ClientTurn::new(messages, Vec::new(), temperature, max, live)
    }

    #[test]
    fn the_agents_settings_cap_what_the_client_asks_for() {
        let mut t = turn(
            vec![ChatMessage::new(ChatRole::User, "hi")],
            Some(1.5),
            Some(10_000),
        );
        t.cap(0.7, 512);
        assert!((t.temperature - 0.7).abs() < 1e-6);
        assert_eq!(t.max_tokens, 512);
        let mut t = turn(
            vec![ChatMessage::new(ChatRole::User, "hi")],
            Some(0.2),
            Some(32),
        );
        t.cap(0.7, 512);
        assert!((t.temperature - 0.2).abs() < 1e-6);
        assert_eq!(t.max_tokens, 32);
        let mut t = turn(vec![ChatMessage::new(ChatRole::User, "hi")], None, None);
        t.cap(0.7, 512);
        assert_eq!(t.max_tokens, 512);
    }

    #[test]
    fn a_request_that_ends_with_an_answer_or_holds_no_question_is_refused() {
        let t = turn(
            vec![
                ChatMessage::new(ChatRole::System, "be brief"),
                ChatMessage::new(ChatRole::Assistant, "hello"),
            ],
            Some(3.0),
            Some(0),
        );
        let Err(Error::Validation(fields)) = t.validate(100, &[]) else {
            panic!("expected a validation error");
        };
        let named: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert!(named.contains(&"messages"));
        assert!(named.contains(&"temperature"));
        assert!(named.contains(&"max_tokens"));
    }
}
