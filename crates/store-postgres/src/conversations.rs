//! Conversations, their messages and ratings, and runs, within a tenant unit of work; and the
//! platform role's ending of runs whose process died.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::entities::{
    Citation, Conversation, ConversationFilter, Failure, Feedback, HistoryMessage, Message,
    MessageRole, MessageStatus, NewConversation, Owner, PromptTokens, Rating, Run, RunContext,
    RunStatus,
};
use domain::page::{Page, PageRequest};
use domain::ports::{
    ConversationRepo, ExpiredRun, INCOMPLETE_MESSAGE, MessageRepo, Reservation, RunEnd, RunLeases,
    RunRepo, StoreError, StoreResult, TokenUsage, ToolCall, TurnStart,
};
use domain::values::ModelRef;
use domain::{
    Actor, AgentId, ChunkId, CollectionId, ConversationId, DocumentId, MessageId, RunId, TenantId,
};
use sea_orm::{ConnectionTrait, FromQueryResult};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::{corrupt, map};
use crate::lifecycle::Table;
use crate::platform::PgPlatformStore;
use crate::rows::{AGENT_COLUMNS, AgentRow, convert, joined, prefixed};
use crate::tenant_tx::{Params, PgTx, execute, fetch_all, fetch_one, limit, stmt};
use crate::usage::{tokens, usage_statements};

const CONVERSATION_COLUMNS: &str = "tenant_id, id, agent_id, title, owner_kind, owner_id, \
     last_active_at, created_at, updated_at, deleted_at, deleted_by";

/// A turn's first read: the conversation, its agent and the tenant's quota in one row. Built
/// once: a turn's statements are the server's hottest.
static TURN_START: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, {}, a.id IS NOT NULL AS has_agent, t.daily_token_quota
         FROM conversations c
         JOIN tenants t ON t.id = c.tenant_id
         LEFT JOIN agents a
           ON a.tenant_id = c.tenant_id AND a.id = c.agent_id AND a.deleted_at IS NULL
         WHERE c.tenant_id = $1 AND c.id = $2 AND c.deleted_at IS NULL",
        prefixed("c", CONVERSATION_COLUMNS),
        prefixed("a", AGENT_COLUMNS),
    )
});

#[derive(Debug, FromQueryResult)]
pub(crate) struct ConversationRow {
    tenant_id: Uuid,
    id: Uuid,
    agent_id: Uuid,
    title: String,
    owner_kind: String,
    owner_id: Uuid,
    last_active_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
    deleted_by: Option<Uuid>,
}

impl TryFrom<ConversationRow> for Conversation {
    type Error = StoreError;
    fn try_from(r: ConversationRow) -> Result<Self, StoreError> {
        Ok(Self {
            id: ConversationId::from_uuid(r.id),
            tenant_id: TenantId::from_uuid(r.tenant_id),
            agent_id: AgentId::from_uuid(r.agent_id),
            title: r.title,
            owner: Owner::parse(&r.owner_kind, r.owner_id)
                .map_err(|e| corrupt("conversation", e))?,
            last_active_at: r.last_active_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            deleted_at: r.deleted_at,
            deleted_by: r.deleted_by,
        })
    }
}

#[async_trait]
impl ConversationRepo for PgTx {
    async fn insert(
        &mut self,
        conversation: &NewConversation,
        now: DateTime<Utc>,
    ) -> StoreResult<Conversation> {
        let sql = format!(
            "INSERT INTO conversations (tenant_id, id, agent_id, title, owner_kind, owner_id,
                                        created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
             RETURNING {CONVERSATION_COLUMNS}"
        );
        let values = vec![
            self.t(),
            conversation.id.as_uuid().into(),
            conversation.agent_id.as_uuid().into(),
            conversation.title.as_str().into(),
            conversation.owner.kind().into(),
            conversation.owner.id().into(),
            now.into(),
        ];
        fetch_one::<ConversationRow>(&self.tx, &sql, values)
            .await?
            .ok_or_else(|| corrupt("conversation", "insert returned nothing".into()))?
            .try_into()
    }

    async fn get(
        &mut self,
        id: ConversationId,
        include_deleted: bool,
    ) -> StoreResult<Option<Conversation>> {
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations
             WHERE tenant_id = $1 AND id = $2 AND ($3 OR deleted_at IS NULL)"
        );
        let values = vec![self.t(), id.as_uuid().into(), include_deleted.into()];
        fetch_one::<ConversationRow>(&self.tx, &sql, values)
            .await?
            .map(Conversation::try_from)
            .transpose()
    }

    async fn get_for_turn(&mut self, id: ConversationId) -> StoreResult<Option<TurnStart>> {
        let Some(row) = self
            .tx
            .query_one_raw(stmt(&TURN_START, vec![self.t(), id.as_uuid().into()]))
            .await
            .map_err(map)?
        else {
            return Ok(None);
        };
        let conversation =
            Conversation::try_from(ConversationRow::from_query_result(&row, "c_").map_err(map)?)?;
        let agent = joined::<AgentRow, _>(&row, "has_agent", "a_")?;
        let quota: Option<i64> = row.try_get("", "daily_token_quota").map_err(map)?;
        Ok(Some(TurnStart {
            conversation,
            agent,
            daily_token_quota: quota.and_then(|q| u64::try_from(q).ok()),
        }))
    }

    async fn list(
        &mut self,
        filter: &ConversationFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Conversation>> {
        let sql = format!(
            "SELECT {CONVERSATION_COLUMNS} FROM conversations
             WHERE tenant_id = $1
               AND ($2 OR deleted_at IS NULL)
               AND ($3::uuid IS NULL OR agent_id = $3)
               AND ($4::text IS NULL OR (owner_kind = $4 AND owner_id = $5))
               AND ($6::uuid IS NULL OR id < $6)
             ORDER BY id DESC LIMIT $7"
        );
        let values = vec![
            self.t(),
            filter.include_deleted.into(),
            filter.agent_id.map(|a| a.as_uuid()).into(),
            filter.owner.map(|o| o.kind().to_owned()).into(),
            filter.owner.map(Owner::id).into(),
            page.after.into(),
            limit(page),
        ];
        let rows = fetch_all::<ConversationRow>(&self.tx, &sql, values).await?;
        Ok(Page::from_rows(convert(rows)?, page, |c: &Conversation| {
            c.id.as_uuid()
        }))
    }

    async fn set_title(
        &mut self,
        id: ConversationId,
        title: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Conversation>> {
        let sql = format!(
            "UPDATE conversations SET title = $3, updated_at = $4
             WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
             RETURNING {CONVERSATION_COLUMNS}"
        );
        let values = vec![self.t(), id.as_uuid().into(), title.into(), now.into()];
        fetch_one::<ConversationRow>(&self.tx, &sql, values)
            .await?
            .map(Conversation::try_from)
            .transpose()
    }

    async fn soft_delete(
        &mut self,
        id: ConversationId,
        by: Actor,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        self.soft_delete_row(Table::Conversations, id.as_uuid(), by, now)
            .await
    }

    async fn restore(
        &mut self,
        id: ConversationId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Conversation>> {
        self.restore_row::<ConversationRow>(
            Table::Conversations,
            id.as_uuid(),
            now,
            CONVERSATION_COLUMNS,
        )
        .await?
        .map(Conversation::try_from)
        .transpose()
    }

    async fn purge(&mut self, id: ConversationId) -> StoreResult<bool> {
        self.purge_row(Table::Conversations, id.as_uuid()).await
    }
}

const MESSAGE_COLUMNS: &str = "id, conversation_id, parent_id, role, content, tool_calls, \
     tool_call_id, citations, model_provider, model_name, prompt_tokens, completion_tokens, \
     latency_ms, status, error_code, error_message, run_id, created_at";

#[derive(Debug, FromQueryResult)]
struct MessageRow {
    id: Uuid,
    conversation_id: Uuid,
    parent_id: Option<Uuid>,
    role: String,
    content: String,
    tool_calls: Value,
    tool_call_id: Option<String>,
    citations: Value,
    model_provider: Option<String>,
    model_name: Option<String>,
    prompt_tokens: Option<i32>,
    completion_tokens: Option<i32>,
    latency_ms: Option<i32>,
    status: String,
    error_code: Option<String>,
    error_message: Option<String>,
    run_id: Option<Uuid>,
    created_at: DateTime<Utc>,
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

fn stored(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn failure(code: Option<String>, message: Option<String>) -> Option<Failure> {
    code.map(|code| Failure::new(code, message.unwrap_or_default()))
}

impl TryFrom<MessageRow> for Message {
    type Error = StoreError;
    fn try_from(r: MessageRow) -> Result<Self, StoreError> {
        let bad = |e: String| corrupt("message", e);
        Ok(Self {
            id: MessageId::from_uuid(r.id),
            conversation_id: ConversationId::from_uuid(r.conversation_id),
            parent_id: r.parent_id.map(MessageId::from_uuid),
            role: MessageRole::parse(&r.role).map_err(bad)?,
            content: r.content,
            tool_calls: tool_calls_from(&r.tool_calls).map_err(bad)?,
            tool_call_id: r.tool_call_id,
            citations: citations_from(&r.citations).map_err(bad)?,
            model: match (r.model_provider, r.model_name) {
                (Some(provider), Some(name)) => {
                    Some(ModelRef::parse(&provider, &name).map_err(bad)?)
                }
                _ => None,
            },
            usage: match (r.prompt_tokens, r.completion_tokens) {
                (Some(prompt), Some(completion)) => Some(TokenUsage {
                    prompt_tokens: count(prompt),
                    completion_tokens: count(completion),
                }),
                _ => None,
            },
            latency_ms: r.latency_ms.map(count),
            status: MessageStatus::parse(&r.status).map_err(bad)?,
            error: failure(r.error_code, r.error_message),
            run_id: r.run_id.map(RunId::from_uuid),
            created_at: r.created_at,
        })
    }
}

const HISTORY_COLUMNS: &str = "id, parent_id, role, content, tool_calls, tool_call_id, status";

#[derive(Debug, FromQueryResult)]
struct HistoryRow {
    id: Uuid,
    parent_id: Option<Uuid>,
    role: String,
    content: String,
    tool_calls: Value,
    tool_call_id: Option<String>,
    status: String,
}

impl TryFrom<HistoryRow> for HistoryMessage {
    type Error = StoreError;
    fn try_from(r: HistoryRow) -> Result<Self, StoreError> {
        let bad = |e: String| corrupt("message", e);
        Ok(Self {
            id: MessageId::from_uuid(r.id),
            parent_id: r.parent_id.map(MessageId::from_uuid),
            role: MessageRole::parse(&r.role).map_err(bad)?,
            content: r.content,
            tool_calls: tool_calls_from(&r.tool_calls).map_err(bad)?,
            tool_call_id: r.tool_call_id,
            status: MessageStatus::parse(&r.status).map_err(bad)?,
        })
    }
}

/// Every message of a conversation, oldest first, as `columns` of it.
async fn messages_of<R: FromQueryResult>(
    tx: &PgTx,
    conversation: ConversationId,
    columns: &str,
) -> StoreResult<Vec<R>> {
    let sql = format!(
        "SELECT {columns} FROM messages
         WHERE tenant_id = $1 AND conversation_id = $2
         ORDER BY created_at, id"
    );
    fetch_all::<R>(&tx.tx, &sql, vec![tx.t(), conversation.as_uuid().into()]).await
}

fn tool_calls_json(calls: &[ToolCall]) -> Value {
    calls
        .iter()
        .map(|c| json!({"id": c.id, "name": c.name, "arguments": c.arguments}))
        .collect()
}

fn tool_calls_from(value: &Value) -> Result<Vec<ToolCall>, String> {
    let text = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("a tool call without {key}"))
    };
    value
        .as_array()
        .ok_or("tool calls are not a list")?
        .iter()
        .map(|v| {
            Ok(ToolCall {
                id: text(v, "id")?,
                name: text(v, "name")?,
                arguments: text(v, "arguments")?,
            })
        })
        .collect()
}

fn citations_json(citations: &[Citation]) -> Value {
    citations
        .iter()
        .map(domain::services::citation_json)
        .collect()
}

fn citations_from(value: &Value) -> Result<Vec<Citation>, String> {
    let uuid = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(|| format!("a citation without {key}"))
    };
    let number = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("a citation without {key}"))
    };
    let text = |v: &Value, key: &str| {
        v.get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("a citation without {key}"))
    };
    value
        .as_array()
        .ok_or("citations are not a list")?
        .iter()
        .map(|v| {
            Ok(Citation {
                n: u32::try_from(number(v, "n")?).map_err(|e| e.to_string())?,
                start: usize::try_from(number(v, "start")?).map_err(|e| e.to_string())?,
                end: usize::try_from(number(v, "end")?).map_err(|e| e.to_string())?,
                chunk_id: ChunkId::from_uuid(uuid(v, "chunk_id")?),
                document_id: DocumentId::from_uuid(uuid(v, "document_id")?),
                document_title: text(v, "document_title")?,
                collection_id: CollectionId::from_uuid(uuid(v, "collection_id")?),
                snippet: text(v, "snippet")?,
            })
        })
        .collect()
}

/// The `INSERT` of `messages` in order (one may have an earlier one as parent); `None` when
/// there are none. `$1` is the tenant.
fn insert_messages(params: &mut Params, messages: &[Message]) -> Option<String> {
    if messages.is_empty() {
        return None;
    }
    let rows: Vec<String> = messages
        .iter()
        .map(|m| {
            let slots = [
                params.bind(m.id.as_uuid()),
                params.bind(m.conversation_id.as_uuid()),
                params.bind(m.parent_id.map(|p| p.as_uuid())),
                params.bind(m.role.as_str()),
                params.bind(m.content.as_str()),
                params.bind(tool_calls_json(&m.tool_calls)),
                params.bind(m.tool_call_id.clone()),
                params.bind(citations_json(&m.citations)),
                params.bind(m.model.as_ref().map(|x| x.provider().to_owned())),
                params.bind(m.model.as_ref().map(|x| x.name().to_owned())),
                params.bind(m.usage.map(|u| stored(u.prompt_tokens))),
                params.bind(m.usage.map(|u| stored(u.completion_tokens))),
                params.bind(m.latency_ms.map(stored)),
                params.bind(m.status.as_str()),
                params.bind(m.error.as_ref().map(|e| e.code.clone())),
                params.bind(m.error.as_ref().map(|e| e.message.clone())),
                params.bind(m.run_id.map(|r| r.as_uuid())),
                params.bind(m.created_at),
            ];
            format!("($1, {})", slots.join(", "))
        })
        .collect();
    Some(format!(
        "INSERT INTO messages (tenant_id, id, conversation_id, parent_id, role, content,
                               tool_calls, tool_call_id, citations, model_provider, model_name,
                               prompt_tokens, completion_tokens, latency_ms, status,
                               error_code, error_message, run_id, created_at)
         VALUES {}",
        rows.join(", ")
    ))
}

#[async_trait]
impl MessageRepo for PgTx {
    async fn insert(&mut self, messages: &[Message]) -> StoreResult<()> {
        let mut params = Params::of(self);
        if let Some(sql) = insert_messages(&mut params, messages) {
            execute(&self.tx, &sql, params.into_values()).await?;
        }
        Ok(())
    }

    async fn get(&mut self, id: MessageId) -> StoreResult<Option<Message>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages m
             WHERE m.tenant_id = $1 AND m.id = $2
               AND EXISTS (SELECT 1 FROM conversations c
                           WHERE c.tenant_id = m.tenant_id AND c.id = m.conversation_id
                             AND c.deleted_at IS NULL)"
        );
        fetch_one::<MessageRow>(&self.tx, &sql, vec![self.t(), id.as_uuid().into()])
            .await?
            .map(Message::try_from)
            .transpose()
    }

    async fn list(&mut self, conversation: ConversationId) -> StoreResult<Vec<Message>> {
        convert(messages_of::<MessageRow>(self, conversation, MESSAGE_COLUMNS).await?)
    }

    async fn history(&mut self, conversation: ConversationId) -> StoreResult<Vec<HistoryMessage>> {
        convert(messages_of::<HistoryRow>(self, conversation, HISTORY_COLUMNS).await?)
    }

    async fn write_partial(&mut self, id: MessageId, content: &str) -> StoreResult<()> {
        execute(
            &self.tx,
            "UPDATE messages SET content = $3, status = 'streaming'
             WHERE tenant_id = $1 AND id = $2 AND status IN ('pending', 'streaming')",
            vec![self.t(), id.as_uuid().into(), content.into()],
        )
        .await?;
        Ok(())
    }

    async fn reparent(&mut self, id: MessageId, parent: MessageId) -> StoreResult<()> {
        execute(
            &self.tx,
            "UPDATE messages SET parent_id = $3 WHERE tenant_id = $1 AND id = $2",
            vec![self.t(), id.as_uuid().into(), parent.as_uuid().into()],
        )
        .await?;
        Ok(())
    }

    async fn put_feedback(
        &mut self,
        message: MessageId,
        owner: Owner,
        rating: Rating,
        comment: Option<String>,
        now: DateTime<Utc>,
    ) -> StoreResult<Feedback> {
        #[derive(FromQueryResult)]
        struct Row {
            rating: String,
            comment: Option<String>,
            created_at: DateTime<Utc>,
            updated_at: DateTime<Utc>,
        }
        let row = fetch_one::<Row>(
            &self.tx,
            "INSERT INTO message_feedback (tenant_id, message_id, owner_kind, owner_id, rating,
                                           comment, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
             ON CONFLICT (tenant_id, message_id, owner_kind, owner_id)
             DO UPDATE SET rating = EXCLUDED.rating, comment = EXCLUDED.comment,
                           updated_at = EXCLUDED.updated_at
             RETURNING rating, comment, created_at, updated_at",
            vec![
                self.t(),
                message.as_uuid().into(),
                owner.kind().into(),
                owner.id().into(),
                rating.as_str().into(),
                comment.into(),
                now.into(),
            ],
        )
        .await?
        .ok_or_else(|| corrupt("feedback", "upsert returned nothing".into()))?;
        Ok(Feedback {
            message_id: message,
            owner,
            rating: Rating::parse(&row.rating).map_err(|e| corrupt("feedback", e))?,
            comment: row.comment,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

const RUN_COLUMNS: &str = "tenant_id, id, conversation_id, message_id, user_message_id, agent_id, \
     started_by_kind, started_by_id, model_provider, model_name, status, prompt_tokens, \
     completion_tokens, error_code, error_message, context, created_at, started_at, ended_at, \
     lease_until, reserved_tokens, reserved_on";

/// What a run's end returns of the run: its columns but the context, which the end itself
/// wrote (a list of every message id the prompt kept: sent back and parsed again, it grew with
/// the conversation).
static RUN_ENDED: LazyLock<String> =
    LazyLock::new(|| RUN_COLUMNS.replace("context", "'{}'::jsonb AS context"));

/// A run's and its answer's columns as a run's end returns them, read apart by prefix.
static RUN_AS_R: LazyLock<String> = LazyLock::new(|| prefixed("r", RUN_COLUMNS));
static MESSAGE_AS_M: LazyLock<String> = LazyLock::new(|| prefixed("m", MESSAGE_COLUMNS));

#[derive(Debug, FromQueryResult)]
struct RunRow {
    tenant_id: Uuid,
    id: Uuid,
    conversation_id: Option<Uuid>,
    message_id: Option<Uuid>,
    user_message_id: Option<Uuid>,
    agent_id: Uuid,
    started_by_kind: String,
    started_by_id: Uuid,
    model_provider: String,
    model_name: String,
    status: String,
    prompt_tokens: i32,
    completion_tokens: i32,
    error_code: Option<String>,
    error_message: Option<String>,
    context: Value,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    ended_at: Option<DateTime<Utc>>,
    lease_until: DateTime<Utc>,
    reserved_tokens: i64,
    reserved_on: Option<chrono::NaiveDate>,
}

fn context_json(c: &RunContext) -> Value {
    let ids = |ids: &[MessageId]| ids.iter().map(ToString::to_string).collect::<Vec<_>>();
    json!({
        "kept_message_ids": ids(&c.kept_message_ids),
        "dropped_message_ids": ids(&c.dropped_message_ids),
        "chunk_ids": c.chunk_ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "tokens": {
            "system": c.tokens.system,
            "history": c.tokens.history,
            "sources": c.tokens.sources,
            "question": c.tokens.question,
        },
        "query_truncated": c.query_truncated,
    })
}

fn context_from(value: &Value) -> RunContext {
    // A run not started yet has `{}`: every part is absent, and reads as empty.
    let uuids = |key: &str| -> Vec<Uuid> {
        value
            .get(key)
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(|v| v.as_str().and_then(|s| Uuid::parse_str(s).ok()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let tokens = |key: &str| {
        value
            .pointer(&format!("/tokens/{key}"))
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(0)
    };
    RunContext {
        kept_message_ids: uuids("kept_message_ids")
            .into_iter()
            .map(MessageId::from_uuid)
            .collect(),
        dropped_message_ids: uuids("dropped_message_ids")
            .into_iter()
            .map(MessageId::from_uuid)
            .collect(),
        chunk_ids: uuids("chunk_ids")
            .into_iter()
            .map(ChunkId::from_uuid)
            .collect(),
        tokens: PromptTokens {
            system: tokens("system"),
            history: tokens("history"),
            sources: tokens("sources"),
            question: tokens("question"),
        },
        query_truncated: value
            .get("query_truncated")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}

impl TryFrom<RunRow> for Run {
    type Error = StoreError;
    fn try_from(r: RunRow) -> Result<Self, StoreError> {
        let bad = |e: String| corrupt("run", e);
        Ok(Self {
            id: RunId::from_uuid(r.id),
            tenant_id: TenantId::from_uuid(r.tenant_id),
            conversation_id: r.conversation_id.map(ConversationId::from_uuid),
            message_id: r.message_id.map(MessageId::from_uuid),
            user_message_id: r.user_message_id.map(MessageId::from_uuid),
            agent_id: AgentId::from_uuid(r.agent_id),
            started_by: Owner::parse(&r.started_by_kind, r.started_by_id).map_err(bad)?,
            model: ModelRef::parse(&r.model_provider, &r.model_name).map_err(bad)?,
            status: RunStatus::parse(&r.status).map_err(bad)?,
            usage: TokenUsage {
                prompt_tokens: count(r.prompt_tokens),
                completion_tokens: count(r.completion_tokens),
            },
            error: failure(r.error_code, r.error_message),
            context: context_from(&r.context),
            created_at: r.created_at,
            started_at: r.started_at,
            ended_at: r.ended_at,
            lease_until: r.lease_until,
            reserved: r.reserved_on.map(|day| Reservation {
                day,
                tokens: u64::try_from(r.reserved_tokens).unwrap_or(0),
            }),
        })
    }
}

#[async_trait]
impl RunRepo for PgTx {
    async fn insert(&mut self, run: &Run, messages: &[Message]) -> StoreResult<()> {
        let mut params = Params::of(self);
        let inserted = insert_messages(&mut params, messages)
            .map_or_else(String::new, |sql| format!("inserted AS ({sql}), "));
        let sql = format!(
            "WITH {inserted}run AS (
                 INSERT INTO runs (tenant_id, id, conversation_id, message_id, user_message_id,
                                   agent_id, started_by_kind, started_by_id, model_provider,
                                   model_name, status, created_at, lease_until, reserved_tokens,
                                   reserved_on, started_at)
                 VALUES ($1, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {})
                 RETURNING conversation_id, created_at
             )
             UPDATE conversations c SET last_active_at = GREATEST(c.last_active_at, run.created_at)
             FROM run WHERE c.tenant_id = $1 AND c.id = run.conversation_id",
            params.bind(run.id.as_uuid()),
            params.bind(run.conversation_id.map(|c| c.as_uuid())),
            params.bind(run.message_id.map(|m| m.as_uuid())),
            params.bind(run.user_message_id.map(|m| m.as_uuid())),
            params.bind(run.agent_id.as_uuid()),
            params.bind(run.started_by.kind()),
            params.bind(run.started_by.id()),
            params.bind(run.model.provider()),
            params.bind(run.model.name()),
            params.bind(run.status.as_str()),
            params.bind(run.created_at),
            params.bind(run.lease_until),
            params.bind(tokens(run.reserved.map_or(0, |r| r.tokens))),
            params.bind(run.reserved.map(|r| r.day)),
            params.bind(run.started_at),
        );
        execute(&self.tx, &sql, params.into_values()).await?;
        Ok(())
    }

    async fn get(&mut self, id: RunId) -> StoreResult<Option<Run>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE tenant_id = $1 AND id = $2");
        fetch_one::<RunRow>(&self.tx, &sql, vec![self.t(), id.as_uuid().into()])
            .await?
            .map(Run::try_from)
            .transpose()
    }

    async fn extend_lease(&mut self, id: RunId, lease_until: DateTime<Utc>) -> StoreResult<bool> {
        let extended = execute(
            &self.tx,
            "UPDATE runs SET lease_until = $3
             WHERE tenant_id = $1 AND id = $2 AND status = 'in_progress'",
            vec![self.t(), id.as_uuid().into(), lease_until.into()],
        )
        .await?;
        Ok(extended == 1)
    }

    async fn hold(&mut self, id: RunId, reserved: Reservation) -> StoreResult<()> {
        execute(
            &self.tx,
            "UPDATE runs SET reserved_tokens = $3, reserved_on = $4
             WHERE tenant_id = $1 AND id = $2",
            vec![
                self.t(),
                id.as_uuid().into(),
                tokens(reserved.tokens).into(),
                reserved.day.into(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn finish(
        &mut self,
        id: RunId,
        end: &RunEnd,
    ) -> StoreResult<Option<(Run, Option<Message>)>> {
        let mut params = Params::of(self);
        let o = &end.outcome;
        let at = params.bind(end.at);
        // Every other part is written only when the run was still open: when it was not, the
        // statement changes nothing.
        let mut parts = vec![format!(
            "run AS (
                 UPDATE runs SET status = {}, prompt_tokens = {}, completion_tokens = {},
                                 error_code = {}, error_message = {}, context = {},
                                 ended_at = {at}
                 WHERE tenant_id = $1 AND id = {} AND status IN ('queued', 'in_progress')
                 RETURNING {}
             ), touched AS (
                 UPDATE conversations c SET last_active_at = GREATEST(c.last_active_at, {at})
                 FROM run WHERE c.tenant_id = $1 AND c.id = run.conversation_id
             )",
            params.bind(o.status.as_str()),
            params.bind(stored(o.usage.prompt_tokens)),
            params.bind(stored(o.usage.completion_tokens)),
            params.bind(o.error.as_ref().map(|e| e.code.clone())),
            params.bind(o.error.as_ref().map(|e| e.message.clone())),
            params.bind(context_json(&o.context)),
            params.bind(id.as_uuid()),
            *RUN_ENDED,
        )];
        if let Some((answer, a)) = &end.answer {
            parts.push(format!(
                "answer AS (
                     UPDATE messages SET content = {}, tool_calls = {}, citations = {},
                                         prompt_tokens = {}, completion_tokens = {},
                                         latency_ms = {}, status = {}, error_code = {},
                                         error_message = {}
                     WHERE tenant_id = $1 AND id = {} AND status IN ('pending', 'streaming')
                       AND EXISTS (SELECT 1 FROM run)
                     RETURNING {MESSAGE_COLUMNS}
                 )",
                params.bind(a.content.as_str()),
                params.bind(tool_calls_json(&a.tool_calls)),
                params.bind(citations_json(&a.citations)),
                params.bind(stored(a.usage.prompt_tokens)),
                params.bind(stored(a.usage.completion_tokens)),
                params.bind(stored(a.latency_ms)),
                params.bind(a.status.as_str()),
                params.bind(a.error.as_ref().map(|e| e.code.clone())),
                params.bind(a.error.as_ref().map(|e| e.message.clone())),
                params.bind(answer.as_uuid()),
            ));
        }
        let metered = usage_statements(
            &mut params,
            &end.usage,
            end.release,
            "EXISTS (SELECT 1 FROM run)",
        );
        for (n, statement) in metered.into_iter().enumerate() {
            parts.push(format!("metered_{n} AS ({statement})"));
        }
        let sql = if end.answer.is_some() {
            format!(
                "WITH {} SELECT {}, {}, m.id IS NOT NULL AS has_answer
                 FROM run r LEFT JOIN answer m ON true",
                parts.join(", "),
                *RUN_AS_R,
                *MESSAGE_AS_M,
            )
        } else {
            format!(
                "WITH {} SELECT {}, false AS has_answer FROM run r",
                parts.join(", "),
                *RUN_AS_R,
            )
        };
        let Some(row) = self
            .tx
            .query_one_raw(stmt(&sql, params.into_values()))
            .await
            .map_err(map)?
        else {
            return Ok(None);
        };
        let mut run = Run::try_from(RunRow::from_query_result(&row, "r_").map_err(map)?)?;
        run.context = o.context.clone();
        let answer = joined::<MessageRow, _>(&row, "has_answer", "m_")?;
        Ok(Some((run, answer)))
    }
}

#[async_trait]
impl RunLeases for PgPlatformStore {
    async fn expire(&self, now: DateTime<Utc>) -> StoreResult<Vec<ExpiredRun>> {
        #[derive(FromQueryResult)]
        struct Row {
            tenant_id: Uuid,
            id: Uuid,
        }
        // One statement: the runs and their answers end together, the answers keeping what their
        // heartbeats saved, and what the runs held of their tenants' quotas is given back.
        let rows = fetch_all::<Row>(
            self.connection(),
            "WITH expired AS (
                 UPDATE runs SET status = 'failed', error_code = 'incomplete',
                                 error_message = $2, ended_at = $1
                 WHERE status IN ('queued', 'in_progress') AND lease_until < $1
                 RETURNING tenant_id, id, message_id, reserved_tokens, reserved_on
             ), answers AS (
                 UPDATE messages m SET status = 'failed', error_code = 'incomplete',
                                       error_message = $2
                 FROM expired e
                 WHERE m.tenant_id = e.tenant_id AND m.id = e.message_id
                   AND m.status IN ('pending', 'streaming')
             ), released AS (
                 UPDATE token_days d SET reserved = GREATEST(0, d.reserved - r.held)
                 FROM (SELECT tenant_id, reserved_on, sum(reserved_tokens) AS held
                       FROM expired WHERE reserved_on IS NOT NULL
                       GROUP BY tenant_id, reserved_on) r
                 WHERE d.tenant_id = r.tenant_id AND d.day = r.reserved_on
             )
             SELECT tenant_id, id FROM expired",
            vec![now.into(), INCOMPLETE_MESSAGE.into()],
        )
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ExpiredRun {
                tenant: TenantId::from_uuid(r.tenant_id),
                id: RunId::from_uuid(r.id),
            })
            .collect())
    }
}
