//! Wire types of agent execution: conversations, messages, runs and their events.

use chrono::{DateTime, Utc};
use domain::entities::{
    Citation, Conversation, Failure, Feedback, Message, MessageRole, Owner, Run,
};
use domain::ports::{TokenUsage, ToolCall};
use domain::services::FinishedRun;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::dto::ModelDto;

/// Who owns a conversation.
#[derive(Debug, Serialize, ToSchema)]
pub struct OwnerDto {
    /// `user` or `api_key`.
    pub kind: String,
    pub id: Uuid,
}

impl From<Owner> for OwnerDto {
    fn from(o: Owner) -> Self {
        Self {
            kind: o.kind().to_owned(),
            id: o.id(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationDto {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub title: String,
    pub owner: OwnerDto,
    pub last_active_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl From<Conversation> for ConversationDto {
    fn from(c: Conversation) -> Self {
        Self {
            id: c.id.as_uuid(),
            agent_id: c.agent_id.as_uuid(),
            title: c.title,
            owner: c.owner.into(),
            last_active_at: c.last_active_at,
            created_at: c.created_at,
            updated_at: c.updated_at,
            deleted_at: c.deleted_at,
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConversationRequest {
    /// Default: the first message's opening words.
    #[schema(max_length = 200)]
    pub title: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchConversationRequest {
    #[schema(max_length = 200)]
    pub title: String,
}

/// A call the model made, raw: `arguments` is the JSON text the model wrote.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolCallDto {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

impl From<ToolCall> for ToolCallDto {
    fn from(c: ToolCall) -> Self {
        Self {
            id: c.id,
            name: c.name,
            arguments: c.arguments,
        }
    }
}

/// One marker occurrence in an answer and the source it names.
#[derive(Debug, Serialize, ToSchema)]
pub struct CitationDto {
    /// The source's number in the prompt (1-based).
    pub n: u32,
    /// The marker's offsets in the answer, in Unicode code points, end exclusive.
    pub start: usize,
    pub end: usize,
    pub chunk_id: Uuid,
    pub document_id: Uuid,
    pub document_title: String,
    pub collection_id: Uuid,
    /// The cited chunk's text, at most 300 characters (an ellipsis ends a cut).
    pub snippet: String,
}

impl From<Citation> for CitationDto {
    fn from(c: Citation) -> Self {
        Self {
            n: c.n,
            start: c.start,
            end: c.end,
            chunk_id: c.chunk_id.as_uuid(),
            document_id: c.document_id.as_uuid(),
            document_title: c.document_title,
            collection_id: c.collection_id.as_uuid(),
            snippet: c.snippet,
        }
    }
}

/// Tokens used, as the provider reported them or as the platform counted them.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageDto {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

impl From<TokenUsage> for UsageDto {
    fn from(u: TokenUsage) -> Self {
        Self {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
        }
    }
}

/// Why a message or run failed, safe to show.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailureDto {
    /// `model_error`, `model_timeout`, `model_unavailable`, `model_bad_response`, `server_busy`,
    /// `context_exceeded`,
    /// `incomplete` (the process running it stopped) or `internal`.
    pub code: String,
    pub message: String,
}

impl From<Failure> for FailureDto {
    fn from(f: Failure) -> Self {
        Self {
            code: f.code,
            message: f.message,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageRoleName {
    User,
    Assistant,
    Tool,
}

#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatusName {
    Pending,
    Streaming,
    Complete,
    Failed,
    Cancelled,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageDto {
    pub id: Uuid,
    pub conversation_id: Uuid,
    pub parent_id: Option<Uuid>,
    pub role: MessageRoleName,
    pub content: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCallDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    pub citations: Vec<CitationDto>,
    pub model: Option<ModelDto>,
    pub usage: Option<UsageDto>,
    pub latency_ms: Option<u32>,
    pub status: MessageStatusName,
    pub error: Option<FailureDto>,
    pub run_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl From<Message> for MessageDto {
    fn from(m: Message) -> Self {
        use domain::entities::MessageStatus as S;
        Self {
            id: m.id.as_uuid(),
            conversation_id: m.conversation_id.as_uuid(),
            parent_id: m.parent_id.map(|p| p.as_uuid()),
            role: match m.role {
                MessageRole::User => MessageRoleName::User,
                MessageRole::Assistant => MessageRoleName::Assistant,
                MessageRole::Tool => MessageRoleName::Tool,
            },
            content: m.content,
            tool_calls: m.tool_calls.into_iter().map(Into::into).collect(),
            tool_call_id: m.tool_call_id,
            citations: m.citations.into_iter().map(Into::into).collect(),
            model: m.model.map(|x| ModelDto {
                provider: x.provider().to_owned(),
                name: x.name().to_owned(),
            }),
            usage: m.usage.map(Into::into),
            latency_ms: m.latency_ms,
            status: match m.status {
                S::Pending => MessageStatusName::Pending,
                S::Streaming => MessageStatusName::Streaming,
                S::Complete => MessageStatusName::Complete,
                S::Failed => MessageStatusName::Failed,
                S::Cancelled => MessageStatusName::Cancelled,
            },
            error: m.error.map(Into::into),
            run_id: m.run_id.map(|r| r.as_uuid()),
            created_at: m.created_at,
        }
    }
}

/// Messages of a conversation, oldest first (never paged: `next_cursor` is always null).
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    pub items: Vec<MessageDto>,
    pub next_cursor: Option<String>,
}

#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatusName {
    Queued,
    InProgress,
    Completed,
    Failed,
    Cancelled,
}

/// Token counts of the parts of a prompt.
#[derive(Debug, Serialize, ToSchema)]
pub struct PromptTokensDto {
    pub system: u32,
    pub history: u32,
    pub sources: u32,
    pub question: u32,
}

/// What went into the prompt.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunContextDto {
    /// History messages sent to the model.
    pub kept_message_ids: Vec<Uuid>,
    /// History messages left out by the context budget (the oldest).
    pub dropped_message_ids: Vec<Uuid>,
    /// Chunks put in the prompt as sources 1..n, in that order.
    pub chunk_ids: Vec<Uuid>,
    pub tokens: PromptTokensDto,
    /// The question was longer than the embedder's window; its leading window was searched.
    pub query_truncated: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RunDto {
    pub id: Uuid,
    pub conversation_id: Option<Uuid>,
    /// The answer this run writes.
    pub message_id: Option<Uuid>,
    pub status: RunStatusName,
    pub usage: UsageDto,
    pub error: Option<FailureDto>,
    pub context: RunContextDto,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

impl From<Run> for RunDto {
    fn from(r: Run) -> Self {
        use domain::entities::RunStatus as S;
        let c = r.context;
        Self {
            id: r.id.as_uuid(),
            conversation_id: r.conversation_id.map(|x| x.as_uuid()),
            message_id: r.message_id.map(|x| x.as_uuid()),
            status: match r.status {
                S::Queued => RunStatusName::Queued,
                S::InProgress => RunStatusName::InProgress,
                S::Completed => RunStatusName::Completed,
                S::Failed => RunStatusName::Failed,
                S::Cancelled => RunStatusName::Cancelled,
            },
            usage: r.usage.into(),
            error: r.error.map(Into::into),
            context: RunContextDto {
                kept_message_ids: c.kept_message_ids.iter().map(|m| m.as_uuid()).collect(),
                dropped_message_ids: c.dropped_message_ids.iter().map(|m| m.as_uuid()).collect(),
                chunk_ids: c.chunk_ids.iter().map(|m| m.as_uuid()).collect(),
                tokens: PromptTokensDto {
                    system: c.tokens.system,
                    history: c.tokens.history,
                    sources: c.tokens.sources,
                    question: c.tokens.question,
                },
                query_truncated: c.query_truncated,
            },
            created_at: r.created_at,
            started_at: r.started_at,
            ended_at: r.ended_at,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostMessageRequest {
    /// 1 to 32,000 characters, not only whitespace.
    #[schema(min_length = 1, max_length = 32_000)]
    pub content: String,
    /// The message this one follows: absent for the newest answer of the conversation, `null`
    /// for none (a new first message), or an earlier answer (an edit names the parent of the
    /// message it replaces).
    #[serde(default, deserialize_with = "crate::http::dto::double_option")]
    #[schema(value_type = Option<Uuid>)]
    pub parent_id: Option<Option<Uuid>>,
    /// Answer with the run's events (`text/event-stream`) instead of waiting for the end.
    #[serde(default)]
    pub stream: bool,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegenerateRequest {
    #[serde(default)]
    pub stream: bool,
}

/// A turn as it ended: the question (null for a regeneration), the answer, and its run.
#[derive(Debug, Serialize, ToSchema)]
pub struct TurnDto {
    pub message: Option<MessageDto>,
    pub answer: MessageDto,
    pub run: RunDto,
}

impl From<FinishedRun> for TurnDto {
    fn from(f: FinishedRun) -> Self {
        Self {
            message: f.question.map(Into::into),
            answer: f.answer.into(),
            run: f.run.into(),
        }
    }
}

#[derive(Clone, Copy, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RatingName {
    Up,
    Down,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    pub rating: RatingName,
    #[schema(max_length = 2000)]
    pub comment: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackDto {
    pub message_id: Uuid,
    pub rating: RatingName,
    pub comment: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Feedback> for FeedbackDto {
    fn from(f: Feedback) -> Self {
        Self {
            message_id: f.message_id.as_uuid(),
            rating: match f.rating {
                domain::entities::Rating::Up => RatingName::Up,
                domain::entities::Rating::Down => RatingName::Down,
            },
            comment: f.comment,
            created_at: f.created_at,
            updated_at: f.updated_at,
        }
    }
}
