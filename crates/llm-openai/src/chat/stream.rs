//! The body of a streamed chat completion, turned into [`ChatDelta`]s as the caller pulls them.
//!
//! Each event is one JSON chunk (`choices[0].delta` with `content` or `tool_calls`, a
//! `finish_reason` at the end, `usage` in a last chunk of its own) until `data: [DONE]`. The
//! chunk types are our own rather than async-openai's: those require fields (`id`, `created`,
//! `object`) that not every compatible server sends and accept only OpenAI's finish reasons,
//! where we need a few fields and must ignore the rest.

use std::collections::VecDeque;
use std::time::Duration;

use async_trait::async_trait;
use domain::ports::{ChatDelta, ChatError, ChatStream, TokenUsage};
use serde::Deserialize;
use tokio::time::Instant;

use super::{render_error, truncate};
use crate::error_chain::error_chain;
use crate::sse::SseDecoder;

/// Longest line, and longest event, of the stream.
pub(super) const MAX_LINE_BYTES: usize = 1024 * 1024;
/// Most bytes of one streamed answer, whatever they contain (keep-alive comments included).
const MAX_STREAM_BYTES: usize = 64 * 1024 * 1024;

const CUT: &str = "the stream ended before the model finished";

/// An answer being streamed. Dropping it drops the response, which closes the connection.
pub(super) struct OpenAiChatStream {
    /// `None` once the answer is complete or has failed.
    response: Option<reqwest::Response>,
    events: SseDecoder,
    /// Deltas decoded and not yet pulled.
    pending: VecDeque<ChatDelta>,
    /// Longest wait for the next event.
    idle_timeout: Duration,
    /// When the stream times out unless an event comes: bytes that make no event (keep-alive
    /// comments) do not move it.
    deadline: Instant,
    /// Bytes of the body read so far.
    received: usize,
    /// The body has ended (the decoder may still hold its last events).
    body_ended: bool,
    /// The model gave a `finish_reason`: what follows is at most usage and `[DONE]`.
    finished: bool,
    /// The provider's count, passed on once the answer is complete.
    usage: Option<TokenUsage>,
}

impl OpenAiChatStream {
    pub(super) fn new(response: reqwest::Response, idle_timeout: Duration) -> Self {
        Self {
            response: Some(response),
            events: SseDecoder::new(MAX_LINE_BYTES),
            pending: VecDeque::new(),
            idle_timeout,
            deadline: Instant::now() + idle_timeout,
            received: 0,
            body_ended: false,
            finished: false,
            usage: None,
        }
    }

    /// One step forward: decode an event, or read more of the body, or conclude at its end.
    async fn advance(&mut self) -> Result<(), ChatError> {
        let event = self
            .events
            .next_event()
            .map_err(|error| ChatError::BadResponse(error.to_string()))?;
        if let Some(data) = event {
            self.deadline = Instant::now() + self.idle_timeout;
            return self.apply(&data);
        }
        if self.body_ended {
            return if self.finished {
                self.complete();
                Ok(())
            } else {
                Err(ChatError::BadResponse(CUT.to_owned()))
            };
        }
        let Some(response) = self.response.as_mut() else {
            return Ok(());
        };
        // Bytes already received win over an expired deadline: a caller slow to pull does not
        // make the provider late.
        match tokio::time::timeout_at(self.deadline, response.chunk()).await {
            Err(_elapsed) => Err(ChatError::Timeout),
            Ok(Ok(Some(bytes))) => {
                self.received += bytes.len();
                if self.received > MAX_STREAM_BYTES {
                    return Err(ChatError::BadResponse(format!(
                        "the stream is longer than {MAX_STREAM_BYTES} bytes"
                    )));
                }
                self.events.push(&bytes);
                Ok(())
            }
            Ok(Ok(None)) => {
                self.end_body();
                Ok(())
            }
            // A connection lost after the model finished costs nothing but the usage.
            Ok(Err(_)) if self.finished => {
                self.end_body();
                Ok(())
            }
            Ok(Err(error)) => Err(ChatError::BadResponse(truncate(&format!(
                "{CUT}: {}",
                error_chain(&error)
            )))),
        }
    }

    fn end_body(&mut self) {
        self.body_ended = true;
        self.events.end();
    }

    /// The answer is complete: close the connection and queue the usage, if the provider gave
    /// it.
    fn complete(&mut self) {
        self.response = None;
        if let Some(usage) = self.usage.take() {
            self.pending.push_back(ChatDelta::Usage(usage));
        }
    }

    /// Applies the data of one event.
    fn apply(&mut self, data: &str) -> Result<(), ChatError> {
        if data.trim() == "[DONE]" {
            self.complete();
            return Ok(());
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|error| {
            ChatError::BadResponse(truncate(&format!(
                "a stream event is not the expected JSON ({error}): {data}"
            )))
        })?;
        if let Some(error) = chunk.error.filter(|error| !error.is_null()) {
            return Err(ChatError::Provider(truncate(&render_error(&error))));
        }
        if let Some(usage) = chunk.usage.and_then(Usage::counted) {
            self.usage = Some(usage);
        }
        let choice = chunk
            .choices
            .unwrap_or_default()
            .into_iter()
            .find(|choice| choice.index.unwrap_or(0) == 0);
        let Some(choice) = choice else {
            return Ok(());
        };
        if let Some(delta) = choice.delta {
            if let Some(text) = delta.content.filter(|text| !text.is_empty()) {
                self.pending.push_back(ChatDelta::Text(text));
            }
            let pieces = delta.tool_calls.unwrap_or_default();
            for (position, piece) in pieces.into_iter().enumerate() {
                let fallback = u32::try_from(position).unwrap_or(u32::MAX);
                if let Some(delta) = piece.into_delta(fallback) {
                    self.pending.push_back(delta);
                }
            }
        }
        if choice
            .finish_reason
            .is_some_and(|reason| !reason.is_empty())
        {
            self.finished = true;
        }
        Ok(())
    }
}

#[async_trait]
impl ChatStream for OpenAiChatStream {
    async fn next(&mut self) -> Option<Result<ChatDelta, ChatError>> {
        loop {
            if let Some(delta) = self.pending.pop_front() {
                return Some(Ok(delta));
            }
            // Without a response the answer is over (complete, failed or cut).
            self.response.as_ref()?;
            if let Err(error) = self.advance().await {
                // Nothing follows an error; dropping the response closes the connection.
                self.response = None;
                return Some(Err(error));
            }
        }
    }
}

/// One event of the stream: only the fields we use, each optional (and `null` accepted).
#[derive(Deserialize)]
struct Chunk {
    choices: Option<Vec<Choice>>,
    usage: Option<Usage>,
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice {
    index: Option<u32>,
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
    tool_calls: Option<Vec<ToolCallPiece>>,
}

#[derive(Deserialize)]
struct ToolCallPiece {
    index: Option<u32>,
    id: Option<String>,
    function: Option<FunctionPiece>,
}

#[derive(Deserialize)]
struct FunctionPiece {
    name: Option<String>,
    arguments: Option<String>,
}

impl ToolCallPiece {
    /// The delta for this piece (`None` when it carries nothing); `fallback` is its position in
    /// the chunk, for servers that leave out the index.
    fn into_delta(self, fallback: u32) -> Option<ChatDelta> {
        let non_empty = |text: Option<String>| text.filter(|text| !text.is_empty());
        let (name, arguments) = match self.function {
            Some(function) => (function.name, function.arguments),
            None => (None, None),
        };
        let id = non_empty(self.id);
        let name = non_empty(name);
        let arguments = arguments.unwrap_or_default();
        if id.is_none() && name.is_none() && arguments.is_empty() {
            return None;
        }
        Some(ChatDelta::ToolCall {
            index: self.index.unwrap_or(fallback),
            id,
            name,
            arguments,
        })
    }
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
}

impl Usage {
    /// The usage, when both counts are there (a partial count is not passed on as a whole).
    fn counted(self) -> Option<TokenUsage> {
        Some(TokenUsage {
            prompt_tokens: self.prompt_tokens?,
            completion_tokens: self.completion_tokens?,
        })
    }
}
