//! Agent execution (ADR-005's AgentExecutor): a turn is a run, committed with the question in
//! one short transaction, then executed detached from the request that started it.
//!
//! A run: loads the agent and the conversation (one query for every message), keeps the newest
//! history that fits the model's window beside the system prompt, the sources and room for the
//! answer, retrieves from the agent's collections (or offers `knowledge_search` to a model that
//! takes tools, for a bounded number of rounds with a breaker on repeated calls), streams the
//! answer, and stores it with one citation per marker. Every step is written to the run's event
//! log, which any replica can replay and follow. No transaction is open while the model works.
//!
//! A run ends exactly once: completed, failed (with a code and a message safe to show) or
//! cancelled, each keeping what was generated and the tokens used. The process holds a lease on
//! the run while it works; when the process dies the lease runs out and [`Executor::reap`] ends
//! the run `failed` with code `incomplete`.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::entities::{
    Agent, AgentTool, Conversation, Failure, HistoryMessage, Message, MessageOutcome, MessageRole,
    MessageStatus, PromptTokens, Run, RunContext, RunOutcome, RunStatus, failure_codes,
};
use crate::error::{Conflict, Error, Resource};
use crate::ids::{ConversationId, MessageId, RunId, TenantId};
use crate::ports::{
    ChatDelta, ChatError, ChatMessage, ChatModel, ChatModels, ChatRequest, ChatRole, Clock,
    INCOMPLETE_MESSAGE, ProviderEndpoint, ProviderModels, Reservation, RunEnd, RunEventKind,
    RunEventLog, RunLeases, SecretBox, Store, TokenUsage, Tool, ToolCall, ToolCallPieces,
    ToolContext, ToolOutput, ToolSpec, UsageKind, UsageRecord, secret_context,
};
use crate::principal::{Principal, Scope};
use crate::services::SearchService;
use crate::services::citations::{Source, cite};
use crate::services::completions::{ClientAnswer, ClientTurn, LiveEvent};
use crate::services::conversations::{owner_of, visible_for_turn, visible_message, visible_owner};
use crate::services::history::{Budget, fit, path_to};
use crate::services::live_runs::{LiveGuard, LiveRuns};
use crate::services::metering::{self, day_of};
use crate::services::tool_rounds::{Admission, ToolRounds};
use crate::values;

/// The limits of execution.
#[derive(Clone, Debug)]
pub struct ExecutionPolicy {
    /// How long a run stays leased to its process without a heartbeat.
    pub lease: Duration,
    /// How often a run renews its lease and saves what it has generated.
    pub heartbeat: Duration,
    /// How often a run looks for a cancellation request.
    pub cancel_poll: Duration,
    /// The longest message a user may post, in characters.
    pub max_message_chars: usize,
    /// Rounds of tool calls per run.
    pub max_tool_rounds: u32,
    /// The longest a run may take, all rounds together.
    pub run_timeout: Duration,
    /// Runs of one tenant in progress at once in this process; beyond, new turns are refused.
    pub max_runs_per_tenant: usize,
}

impl Default for ExecutionPolicy {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(5),
            cancel_poll: Duration::from_millis(200),
            max_message_chars: MAX_MESSAGE_CHARS,
            max_tool_rounds: ToolRounds::DEFAULT_MAX_ROUNDS,
            run_timeout: Duration::from_secs(600),
            max_runs_per_tenant: 16,
        }
    }
}

/// The longest message a user may post, in characters (documented in docs/api.md).
pub const MAX_MESSAGE_CHARS: usize = 32_000;

/// Which message a new one answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Parent {
    /// The newest leaf of the conversation (continuing the current branch).
    #[default]
    Latest,
    /// None: a new first message (an edit of the first one).
    Root,
    /// This message (an edit of a later message names the parent of the message it edits).
    Message(MessageId),
}

/// A run ready to execute: hand it to [`Executor::execute`] on a task of its own. It carries
/// everything the run read when it was committed, so that executing it reads nothing again.
pub struct RunJob {
    _slot: RunSlot,
    _live: LiveGuard,
    setting: Setting,
}

impl std::fmt::Debug for RunJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunJob")
            .field("tenant", &self.setting.run.tenant_id)
            .field("run", &self.setting.run.id)
            .finish_non_exhaustive()
    }
}

/// A turn as started: the question (absent for a regeneration's own), the answer being written
/// and its run.
#[derive(Clone, Debug)]
pub struct StartedRun {
    pub run: Run,
    pub question: Option<Message>,
    pub answer: Message,
}

/// A run as it ended, with its messages as stored.
#[derive(Clone, Debug)]
pub struct FinishedRun {
    pub run: Run,
    pub question: Option<Message>,
    pub answer: Message,
}

/// A run as its execution in this process stored its end, with its answer (none for a
/// `/v1/chat/completions` call's run).
#[derive(Clone, Debug)]
pub struct EndedRun {
    run: Run,
    answer: Option<Message>,
}

/// Counts a tenant's runs in progress in this process while it is alive.
#[derive(Debug)]
struct RunSlot {
    tenant: TenantId,
    running: Arc<Mutex<HashMap<TenantId, usize>>>,
}

impl Drop for RunSlot {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock()
            && let Some(count) = running.get_mut(&self.tenant)
        {
            *count = count.saturating_sub(1);
            if *count == 0 {
                running.remove(&self.tenant);
            }
        }
    }
}

/// What every executor of one process shares, whichever connections each works on: the runs
/// each tenant has in progress here (for [`ExecutionPolicy::max_runs_per_tenant`]), and the
/// events of the runs executing here, which followers on any of the process's executors read.
#[derive(Clone, Default)]
pub struct RunsHere {
    running: Arc<Mutex<HashMap<TenantId, usize>>>,
    live: Arc<LiveRuns>,
}

pub struct Executor {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    models: Arc<dyn ChatModels>,
    events: Arc<dyn RunEventLog>,
    leases: Arc<dyn RunLeases>,
    secrets: Arc<dyn SecretBox>,
    provider_models: Arc<dyn ProviderModels>,
    search: SearchService,
    /// Every tool this server has; an agent is offered those it names.
    tools: Vec<Arc<dyn Tool>>,
    policy: ExecutionPolicy,
    running: Arc<Mutex<HashMap<TenantId, usize>>>,
    live: Arc<LiveRuns>,
}

/// Why generation stopped before the model finished.
enum Stop {
    Model(ChatError),
    Cancelled,
    /// The lease ran out (the reaper ended the run): nothing more may be written.
    Lost,
    /// The tenant's daily token quota cannot cover the next model turn.
    Quota,
    /// The request cannot be served by this agent's model (client tools for a model that takes
    /// none): the client's mistake, answered 422.
    Invalid(&'static str),
    Internal(Error),
}

/// What a run has produced so far.
struct Progress {
    /// The answer's text: shared with the heartbeat, which saves it.
    text: Arc<Mutex<String>>,
    /// Calls of the last model turn that were not run (the rounds were spent).
    unrun_calls: Vec<ToolCall>,
    /// Tool-call turns and tool results, stored between the question and the answer.
    produced: Vec<Message>,
    sources: Vec<Source>,
    usage: TokenUsage,
    /// The estimate of a model turn that has not reported its usage yet.
    open_turn: Option<(u32, usize)>,
    context: RunContext,
    /// What the run holds reserved against the daily quota.
    reserved: Option<Reservation>,
    /// Tokens its retrieval's query embeddings took.
    embedded_tokens: u32,
}

impl Progress {
    fn text(&self) -> String {
        self.text.lock().map(|t| t.clone()).unwrap_or_default()
    }
}

/// What the run is about, read once at its start.
struct Setting {
    run: Run,
    agent: Agent,
    thread: Thread,
    temperature: f64,
    max_tokens: u32,
    /// The tenant's daily quota, when it has one.
    quota: Option<u64>,
    /// Who serves the run's model.
    server: ModelServer,
}

/// Who serves a run's model.
enum ModelServer {
    /// The platform: its local model, or its OpenAI-compatible server.
    Platform,
    /// A tenant's own provider, its key opened, and the model name to ask it for.
    Tenant(ProviderEndpoint, String),
    /// A tenant's own provider that cannot serve, and why.
    Unusable(String),
}

/// Where the question and the history come from, and where the answer goes.
enum Thread {
    /// A turn of a stored conversation: the answer is a message of it.
    Stored(Box<StoredTurn>),
    /// A `/v1/chat/completions` call: the client's messages; the answer goes back to the client.
    Client(ClientTurn),
}

struct StoredTurn {
    question: Message,
    history: Vec<HistoryMessage>,
    answer_id: MessageId,
    conversation_id: ConversationId,
}

impl StoredTurn {
    /// The turn that answers `question` with `answer`: its history is the path from the root
    /// of `messages` (the conversation, with the question) to the question.
    fn of(messages: &[HistoryMessage], question: Message, answer: &Message) -> Result<Self, Error> {
        let path = path_to(messages, question.id)
            .ok_or_else(|| Error::internal("the question is not in its conversation"))?;
        let history = path
            .split_last()
            .map(|(_, earlier)| earlier.iter().map(|m| (*m).clone()).collect())
            .unwrap_or_default();
        Ok(Self {
            question,
            history,
            answer_id: answer.id,
            conversation_id: answer.conversation_id,
        })
    }
}

impl Setting {
    fn stored(&self) -> Option<&StoredTurn> {
        match &self.thread {
            Thread::Stored(turn) => Some(turn),
            Thread::Client(_) => None,
        }
    }

    fn client(&self) -> Option<&ClientTurn> {
        match &self.thread {
            Thread::Client(turn) => Some(turn),
            Thread::Stored(_) => None,
        }
    }

    /// The text retrieval searches for: the question, or the client's last user message.
    fn query(&self) -> &str {
        match &self.thread {
            Thread::Stored(turn) => &turn.question.content,
            Thread::Client(turn) => turn.last_user_message(),
        }
    }
}

/// What the executor works with besides search and tools.
pub struct ExecutionPorts {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub models: Arc<dyn ChatModels>,
    pub events: Arc<dyn RunEventLog>,
    pub leases: Arc<dyn RunLeases>,
    /// Opens tenants' provider keys.
    pub secrets: Arc<dyn SecretBox>,
    /// Chat models of tenants' own providers.
    pub provider_models: Arc<dyn ProviderModels>,
}

impl Executor {
    /// An executor of its own, sharing nothing with others ([`Self::sharing`] makes one that
    /// does).
    pub fn new(
        ports: ExecutionPorts,
        search: SearchService,
        tools: Vec<Arc<dyn Tool>>,
        policy: ExecutionPolicy,
    ) -> Self {
        Self::sharing(ports, search, tools, policy, RunsHere::default())
    }

    /// An executor counting and publishing its runs with every other given the same `here`.
    pub fn sharing(
        ports: ExecutionPorts,
        search: SearchService,
        tools: Vec<Arc<dyn Tool>>,
        policy: ExecutionPolicy,
        here: RunsHere,
    ) -> Self {
        Self {
            store: ports.store,
            clock: ports.clock,
            models: ports.models,
            events: ports.events,
            leases: ports.leases,
            secrets: ports.secrets,
            provider_models: ports.provider_models,
            search,
            tools,
            policy,
            running: here.running,
            live: here.live,
        }
    }

    /// What this executor shares with the others of its process.
    #[must_use]
    pub fn runs_here(&self) -> RunsHere {
        RunsHere {
            running: self.running.clone(),
            live: self.live.clone(),
        }
    }

    fn slot(&self, tenant: TenantId) -> Result<RunSlot, Error> {
        let mut running = self
            .running
            .lock()
            .map_err(|_| Error::internal("the run counter is poisoned"))?;
        let count = running.entry(tenant).or_insert(0);
        if *count >= self.policy.max_runs_per_tenant {
            return Err(Error::Busy);
        }
        *count += 1;
        Ok(RunSlot {
            tenant,
            running: self.running.clone(),
        })
    }

    /// Posts a user message and starts the run that answers it. The message, the answer's
    /// placeholder and the run are committed together before anything else happens.
    ///
    /// # Errors
    /// Validation (empty or oversized content, a parent that is not an answer of this
    /// conversation); `NotFound` for the conversation or its agent; `Conflict` when the parent is
    /// still being answered; `Busy` when the tenant has too many runs in progress.
    pub async fn post(
        &self,
        who: &Principal,
        conversation_id: ConversationId,
        content: &str,
        parent: Parent,
    ) -> Result<(StartedRun, RunJob), Error> {
        let tenant = who.tenant_with(Scope::Write)?;
        let started_by = owner_of(who)?;
        let content = self.validate_content(content)?;
        let slot = self.slot(tenant)?;
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        let (conversation, agent, quota) =
            visible_for_turn(tx.as_mut(), who, conversation_id).await?;
        // The run reads the question's path from these: a new first message has none above it.
        let messages = match parent {
            Parent::Root => Vec::new(),
            Parent::Latest | Parent::Message(_) => tx.messages().history(conversation_id).await?,
        };
        let parent_id = match parent {
            Parent::Root => None,
            Parent::Latest => crate::services::history::current_branch(&messages)
                .last()
                .map(|m| check_parent(m))
                .transpose()?,
            Parent::Message(id) => {
                let parent = messages.iter().find(|m| m.id == id).ok_or_else(|| {
                    Error::invalid("parent_id", "is not a message of this conversation")
                })?;
                Some(check_parent(parent)?)
            }
        };
        let run_id = RunId::new();
        let question = Message::new(
            conversation_id,
            parent_id,
            MessageRole::User,
            content,
            run_id,
            now,
        );
        let admitted = metering::admit_run_under(tx.as_mut(), quota, now).await?;
        let queued = self
            .queue(
                tx.as_mut(),
                run_id,
                agent,
                &conversation,
                Asked::New(question.clone()),
                messages,
                (started_by, admitted),
                now,
            )
            .await?;
        if conversation.title.is_empty() {
            let title = values::truncated(question.content.trim(), 80);
            tx.conversations()
                .set_title(conversation_id, &title, now)
                .await?;
        }
        tx.commit().await?;
        Ok(self.handed_over(slot, queued, Some(question)))
    }

    /// Starts a new answer to the question an assistant message answered: a sibling of it.
    ///
    /// # Errors
    /// `NotFound` for the message; validation when it is not an assistant's answer; `Conflict`
    /// while the question is still being answered; `Busy`.
    pub async fn regenerate(
        &self,
        who: &Principal,
        message_id: MessageId,
    ) -> Result<(StartedRun, RunJob), Error> {
        let tenant = who.tenant_with(Scope::Write)?;
        let started_by = owner_of(who)?;
        let slot = self.slot(tenant)?;
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        let (message, conversation) = visible_message(tx.as_mut(), who, message_id).await?;
        if message.role != MessageRole::Assistant {
            return Err(Error::invalid(
                "message",
                "only an assistant's answer can be regenerated",
            ));
        }
        if message.status.is_open() {
            return Err(Error::Conflict(Conflict::AnswerInProgress));
        }
        let agent = live_agent(tx.as_mut(), &conversation).await?;
        let messages = tx.messages().list(conversation.id).await?;
        // The question is the nearest user message above the answer (tool turns may lie between).
        let question = path_to(&messages, message.id)
            .and_then(|path| {
                path.into_iter()
                    .rev()
                    .find(|m| m.role == MessageRole::User)
                    .cloned()
            })
            .ok_or_else(|| Error::invalid("message", "answers no question"))?;
        let admitted = metering::admit_run(tx.as_mut(), now).await?;
        let queued = self
            .queue(
                tx.as_mut(),
                RunId::new(),
                agent,
                &conversation,
                Asked::Stored(question),
                messages.iter().map(HistoryMessage::from).collect(),
                (started_by, admitted),
                now,
            )
            .await?;
        tx.commit().await?;
        Ok(self.handed_over(slot, queued, None))
    }

    /// Stores the question (when new), the answer's placeholder and the run (admitted against
    /// the quota), in progress from now, and reads what the run will need: it starts as soon as
    /// the transaction commits.
    #[allow(clippy::too_many_arguments)]
    async fn queue(
        &self,
        tx: &mut dyn crate::ports::TenantTx,
        run_id: RunId,
        agent: Agent,
        conversation: &Conversation,
        asked: Asked,
        mut messages: Vec<HistoryMessage>,
        (started_by, admitted): (crate::entities::Owner, Option<(Reservation, u64)>),
        now: DateTime<Utc>,
    ) -> Result<(Setting, Message), Error> {
        let (question, new) = match asked {
            Asked::New(question) => (question, true),
            Asked::Stored(question) => (question, false),
        };
        let answer = Message {
            model: Some(agent.model.clone()),
            status: MessageStatus::Pending,
            ..Message::new(
                conversation.id,
                Some(question.id),
                MessageRole::Assistant,
                String::new(),
                run_id,
                now,
            )
        };
        let run = Run {
            conversation_id: Some(conversation.id),
            message_id: Some(answer.id),
            user_message_id: Some(question.id),
            ..self.new_run(tx.tenant_id(), run_id, &agent, started_by, admitted, now)
        };
        if new {
            tx.runs()
                .insert(&run, &[question.clone(), answer.clone()])
                .await?;
            messages.push(HistoryMessage::from(&question));
        } else {
            tx.runs()
                .insert(&run, std::slice::from_ref(&answer))
                .await?;
        }
        let turn = StoredTurn::of(&messages, question, &answer)?;
        let (temperature, max_tokens) = (
            f64::from(agent.temperature.value()),
            agent.max_tokens.value(),
        );
        let setting = self
            .setting(
                tx,
                run,
                agent,
                Thread::Stored(Box::new(turn)),
                (temperature, max_tokens),
                admitted,
            )
            .await?;
        Ok((setting, answer))
    }

    /// A committed turn, and the job that executes its run.
    fn handed_over(
        &self,
        slot: RunSlot,
        (setting, answer): (Setting, Message),
        question: Option<Message>,
    ) -> (StartedRun, RunJob) {
        let started = StartedRun {
            run: setting.run.clone(),
            question,
            answer,
        };
        (started, self.job(slot, setting))
    }

    /// The job that executes a committed run: its followers here find its events from now.
    fn job(&self, slot: RunSlot, setting: Setting) -> RunJob {
        let live = self
            .live
            .open(setting.run.tenant_id, setting.run.id, self.events.clone());
        RunJob {
            _slot: slot,
            _live: live,
            setting,
        }
    }

    /// What a run works from, read in the transaction that commits it: the tenant's own
    /// provider of its model is opened there too.
    async fn setting(
        &self,
        tx: &mut dyn crate::ports::TenantTx,
        run: Run,
        agent: Agent,
        thread: Thread,
        (temperature, max_tokens): (f64, u32),
        admitted: Option<(Reservation, u64)>,
    ) -> Result<Setting, Error> {
        let server = if crate::services::RESERVED_PROVIDERS.contains(&run.model.provider()) {
            ModelServer::Platform
        } else {
            self.open_provider(tx, &run).await?
        };
        Ok(Setting {
            run,
            agent,
            thread,
            temperature,
            max_tokens,
            quota: admitted.map(|(_, quota)| quota),
            server,
        })
    }

    /// A run of `agent` that belongs to no conversation (yet), in progress from `now`: the
    /// process that commits it executes it at once, and its lease starts with it.
    fn new_run(
        &self,
        tenant: TenantId,
        id: RunId,
        agent: &Agent,
        started_by: crate::entities::Owner,
        admitted: Option<(Reservation, u64)>,
        now: DateTime<Utc>,
    ) -> Run {
        Run {
            id,
            tenant_id: tenant,
            conversation_id: None,
            message_id: None,
            user_message_id: None,
            agent_id: agent.id,
            started_by,
            model: agent.model.clone(),
            status: RunStatus::InProgress,
            usage: TokenUsage::default(),
            error: None,
            context: RunContext::default(),
            created_at: now,
            started_at: Some(now),
            ended_at: None,
            lease_until: now + lease(&self.policy),
            reserved: admitted.map(|(reserved, _)| reserved),
        }
    }

    /// Starts a run for a `/v1/chat/completions` call to the agent whose slug is `model`: the
    /// run is committed (with its reservation against the quota), then executes like any other
    /// once handed to [`Self::execute`]; what it produces goes to `turn`'s listener.
    ///
    /// # Errors
    /// `NotFound(Agent)` for an unknown slug; validation; `QuotaExceeded`; `Busy`.
    pub async fn start_completion(
        &self,
        who: &Principal,
        model: &str,
        mut turn: ClientTurn,
    ) -> Result<(Run, RunJob), Error> {
        let tenant = who.tenant_with(Scope::Write)?;
        let started_by = owner_of(who)?;
        turn.validate(self.policy.max_message_chars, &self.tools)?;
        let slug =
            crate::values::Slug::parse(model).map_err(|_| Error::NotFound(Resource::Agent))?;
        let slot = self.slot(tenant)?;
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        let agent = tx
            .agents()
            .get_by_slug(&slug)
            .await?
            .ok_or(Error::NotFound(Resource::Agent))?;
        turn.cap(agent.temperature.value(), agent.max_tokens.value());
        let admitted = metering::admit_run(tx.as_mut(), now).await?;
        let run = self.new_run(tenant, RunId::new(), &agent, started_by, admitted, now);
        tx.runs().insert(&run, &[]).await?;
        let limits = (turn.temperature, turn.max_tokens);
        let setting = self
            .setting(
                tx.as_mut(),
                run.clone(),
                agent,
                Thread::Client(turn),
                limits,
                admitted,
            )
            .await?;
        tx.commit().await?;
        Ok((run, self.job(slot, setting)))
    }

    fn validate_content(&self, content: &str) -> Result<String, Error> {
        let max = self.policy.max_message_chars;
        if content.trim().is_empty() {
            return Err(Error::invalid("content", "must not be empty"));
        }
        values::bounded_text(content, max).map_err(|message| Error::invalid("content", message))
    }

    /// A run the caller may see.
    ///
    /// # Errors
    /// `NotFound` when absent, another tenant's, or another principal's (for non-admins).
    pub async fn run(&self, who: &Principal, id: RunId) -> Result<Run, Error> {
        let tenant = who.tenant_with(Scope::Read)?;
        let owner = visible_owner(who)?;
        let mut tx = self.store.begin(tenant).await?;
        let run = tx.runs().get(id).await?;
        tx.commit().await?;
        run.filter(|r| owner.is_none_or(|o| r.started_by == o))
            .ok_or(Error::NotFound(Resource::Run))
    }

    /// The run as stored now (for a follower that already checked it may see it).
    ///
    /// # Errors
    /// `NotFound` once it is purged; storage failures.
    pub async fn stored_run(&self, run: &Run) -> Result<Run, Error> {
        let mut tx = self.store.begin(run.tenant_id).await?;
        let now = tx.runs().get(run.id).await?;
        tx.commit().await?;
        now.ok_or(Error::NotFound(Resource::Run))
    }

    /// The run's events numbered above `after` (at most `max`), waiting up to `wait` for one
    /// when there are none yet. The caller has checked the run is visible ([`Self::run`]).
    ///
    /// # Errors
    /// `Unavailable` when the event log cannot be read.
    pub async fn events(
        &self,
        run: &Run,
        after: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<crate::ports::RunEvent>, Error> {
        if let Some(live) = self.live.get(run.id)
            && let Some(events) = live.read(after, max, wait).await
        {
            return Ok(events);
        }
        self.events
            .read(run.tenant_id, run.id, after, max, wait)
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))
    }

    /// Asks the run to stop and answers it, ended if it ended within two seconds. Idempotent: an
    /// ended run is answered as it is.
    ///
    /// # Errors
    /// `Forbidden` without the write scope; `NotFound`.
    pub async fn cancel(&self, who: &Principal, id: RunId) -> Result<Run, Error> {
        who.tenant_with(Scope::Write)?;
        let run = self.run(who, id).await?;
        if run.status.is_terminal() {
            return Ok(run);
        }
        self.events
            .request_cancel(run.tenant_id, id)
            .await
            .map_err(|e| Error::Unavailable(e.to_string()))?;
        // The run's end is followed on its events (an end is stored before its event is
        // written), so that a cancellation reads the run once more, not every few milliseconds.
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut after = 0;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let events = match self.events(&run, after, 256, left).await {
                Ok(events) => events,
                Err(err) => {
                    // Without the log the run is looked at now and then instead.
                    tracing::warn!(run = %id, error = %err, "cancel: the run's events cannot be read");
                    tokio::time::sleep(Duration::from_millis(250).min(left)).await;
                    if self.stored_run(&run).await?.status.is_terminal() {
                        break;
                    }
                    continue;
                }
            };
            if events.iter().any(|e| e.kind.is_terminal()) {
                break;
            }
            after = events.last().map_or(after, |e| e.seq);
        }
        self.run(who, id).await
    }

    /// Waits for the run to end and answers it with its messages; a failed run is the model's
    /// error (the failed answer is stored). `executed_here` is this process's [`Self::execute`]
    /// of the run: it answers the run and its answer as its end stored them, so nothing is read
    /// again. When it answers nothing (its lease was lost, or the execution panicked), the run's
    /// events are followed to its end, wherever it runs, and what is stored then is answered.
    ///
    /// # Errors
    /// `ModelFailed` when the run failed; storage or event log failures.
    pub async fn finished(
        &self,
        who: &Principal,
        started: &StartedRun,
        executed_here: impl Future<Output = Option<EndedRun>>,
    ) -> Result<FinishedRun, Error> {
        if let Some(EndedRun {
            run,
            answer: Some(answer),
        }) = executed_here.await
        {
            return self.answer_finished(started, run, answer);
        }
        let (run, answer) = self.read_finished(who, started).await?;
        if run.status.is_terminal() {
            return self.answer_finished(started, run, answer);
        }
        let mut after = 0;
        'follow: loop {
            let events = self
                .events(&started.run, after, 256, Duration::from_secs(5))
                .await?;
            if events.is_empty() && self.stored_run(&started.run).await?.status.is_terminal() {
                // Ended, but its terminal event was not written (the log failed then): what is
                // stored is the truth.
                break 'follow;
            }
            for event in events {
                after = event.seq;
                if event.kind.is_terminal() {
                    break 'follow;
                }
            }
        }
        let (run, answer) = self.read_finished(who, started).await?;
        self.answer_finished(started, run, answer)
    }

    /// The run and its answer as stored.
    async fn read_finished(
        &self,
        who: &Principal,
        started: &StartedRun,
    ) -> Result<(Run, Message), Error> {
        let tenant = who.tenant_with(Scope::Read)?;
        let mut tx = self.store.begin(tenant).await?;
        let run = tx
            .runs()
            .get(started.run.id)
            .await?
            .ok_or(Error::NotFound(Resource::Run))?;
        let answer = tx
            .messages()
            .get(started.answer.id)
            .await?
            .ok_or(Error::NotFound(Resource::Message))?;
        tx.commit().await?;
        Ok((run, answer))
    }

    /// An ended run's answer to its caller: the model's error when it failed.
    fn answer_finished(
        &self,
        started: &StartedRun,
        run: Run,
        answer: Message,
    ) -> Result<FinishedRun, Error> {
        if run.status == RunStatus::Failed {
            return Err(self.failure_error(run.error.clone()));
        }
        Ok(FinishedRun {
            run,
            question: started.question.clone(),
            answer,
        })
    }

    /// The error a failed run answers its caller with: a quota refusal is `QuotaExceeded` (with
    /// the time to the quota's renewal), anything else the model's failure.
    #[must_use]
    pub fn failure_error(&self, failure: Option<Failure>) -> Error {
        match failure {
            Some(f) if f.code == failure_codes::QUOTA_EXCEEDED => {
                metering::quota_exceeded(self.clock.now())
            }
            Some(f) => Error::ModelFailed(f),
            None => Error::ModelFailed(Failure::new(
                failure_codes::MODEL_ERROR,
                "the model failed to answer",
            )),
        }
    }

    /// Ends the runs whose process died (their lease ran out) and tells their followers.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn reap(&self) -> Result<usize, Error> {
        let expired = self.leases.expire(self.clock.now()).await?;
        for run in &expired {
            // Not the run's own numbering: the reaper's event takes the next number, and a run
            // still writing (its process alive but late) is refused from then on.
            let error = json!({"error": {"code": failure_codes::INCOMPLETE, "message": INCOMPLETE_MESSAGE}});
            let appended = self
                .events
                .append(run.tenant, run.id, RunEventKind::Failed, &error)
                .await;
            if let Err(err) = appended {
                tracing::warn!(run = %run.id, error = %err, "a reaped run's end was not written");
            }
        }
        Ok(expired.len())
    }

    /// Executes a committed run to its end, and answers the run and its answer as stored then.
    /// Never fails: whatever goes wrong ends the run `failed` with a reason (or, when its lease
    /// was lost, leaves it to the reaper that took it, and answers nothing).
    pub async fn execute(&self, job: RunJob) -> Option<EndedRun> {
        // The job's slot and live events are held to the end, then let go.
        let RunJob {
            _slot,
            _live,
            setting,
        } = job;
        let (tenant, run_id) = (setting.run.tenant_id, setting.run.id);
        let started = Instant::now();
        let mut progress = Progress {
            text: Arc::default(),
            unrun_calls: Vec::new(),
            produced: Vec::new(),
            sources: Vec::new(),
            usage: TokenUsage::default(),
            open_turn: None,
            context: RunContext::default(),
            reserved: setting.run.reserved,
            embedded_tokens: 0,
        };
        let (question_id, answer_id) = setting.stored().map_or((Value::Null, Value::Null), |t| {
            (
                json!(t.question.id.to_string()),
                json!(t.answer_id.to_string()),
            )
        });
        self.publish(
            &setting,
            RunEventKind::Started,
            json!({
                "run_id": run_id.to_string(),
                "user_message_id": question_id,
                "message_id": answer_id,
            }),
        );
        let text = progress.text.clone();
        let gone = async {
            match setting.client() {
                Some(client) => client.live.closed().await,
                None => std::future::pending().await,
            }
        };
        let stop = tokio::select! {
            result = self.generate(&setting, &mut progress) => result.err(),
            stop = self.watch(tenant, &setting, text) => Some(stop),
            // A client of /v1/chat/completions that hung up cancels its run: nobody else can
            // read the answer.
            () = gone => Some(Stop::Cancelled),
            () = tokio::time::sleep(self.policy.run_timeout) => Some(Stop::Model(ChatError::Timeout)),
        };
        // A turn cut short reported no usage: count what it was sent and what it wrote.
        if let Some((prompt, from)) = progress.open_turn.take() {
            let text = progress.text();
            let model = self.chat_model(&setting).await.ok();
            let completion = model.map_or(0, |m| m.count_tokens(text.get(from..).unwrap_or("")));
            progress.usage.prompt_tokens += prompt;
            progress.usage.completion_tokens += completion;
        }
        let (status, failure) = match stop {
            None => (RunStatus::Completed, None),
            Some(Stop::Cancelled) => (RunStatus::Cancelled, None),
            Some(Stop::Lost) => return None,
            Some(Stop::Invalid(message)) => (
                RunStatus::Failed,
                Some(Failure::new(failure_codes::INVALID_REQUEST, message)),
            ),
            Some(Stop::Quota) => (
                RunStatus::Failed,
                Some(Failure::new(
                    failure_codes::QUOTA_EXCEEDED,
                    "the tenant's daily token quota cannot cover this answer",
                )),
            ),
            Some(Stop::Model(err)) => {
                tracing::warn!(run = %run_id, error = %err, "the model failed a run");
                (
                    RunStatus::Failed,
                    Some(Failure::new(err.code(), err.to_string())),
                )
            }
            Some(Stop::Internal(err)) => {
                tracing::error!(run = %run_id, error = %err, "a run failed");
                (
                    RunStatus::Failed,
                    Some(Failure::new(
                        failure_codes::INTERNAL,
                        "the run failed; the server's log says why",
                    )),
                )
            }
        };
        match self
            .end(tenant, &setting, progress, status, failure, started)
            .await
        {
            Ok(ended) => ended,
            Err(err) => {
                tracing::error!(run = %run_id, error = %err, "a run's end could not be stored");
                if let Some(client) = setting.client() {
                    // The caller waits for an end: tell it there will be none.
                    let _ = client.live.send(LiveEvent::Ended(ClientAnswer::failed(
                        run_id,
                        Failure::new(
                            failure_codes::INTERNAL,
                            "the run failed; the server's log says why",
                        ),
                    )));
                }
                None
            }
        }
    }

    /// A tenant's own provider of the run's model, with its key opened, and the model name to
    /// ask for (`default` is the provider's default model); or why it cannot serve.
    async fn open_provider(
        &self,
        tx: &mut dyn crate::ports::TenantTx,
        run: &Run,
    ) -> Result<ModelServer, Error> {
        let name = run.model.provider();
        let Some((provider, sealed)) = tx.providers().by_name(name).await? else {
            return Ok(ModelServer::Unusable(format!(
                "the provider {name:?} no longer exists"
            )));
        };
        let api_key = match self
            .secrets
            .open(&sealed, &secret_context(run.tenant_id, provider.id))
        {
            Ok(key) => key,
            Err(err) => {
                tracing::error!(provider = %provider.id, error = %err, "a provider key does not open");
                return Ok(ModelServer::Unusable(format!(
                    "the key of provider {name:?} cannot be opened"
                )));
            }
        };
        let model = match (run.model.name(), &provider.default_model) {
            ("default", Some(default)) => default.clone(),
            (named, _) => named.to_owned(),
        };
        Ok(ModelServer::Tenant(
            ProviderEndpoint {
                provider: provider.id,
                updated_at: provider.updated_at,
                base_url: provider.base_url,
                api_key,
                supports_tools: provider.supports_tools,
                timeout_secs: provider.timeout_secs,
                max_retries: provider.max_retries,
            },
            model,
        ))
    }

    /// The run's chat model: the platform's (a local one is loaded on first use, which takes a
    /// while: not on the async executor), or the tenant's own provider's.
    async fn chat_model(&self, setting: &Setting) -> Result<Arc<dyn ChatModel>, Stop> {
        let unavailable = |reason: String| Stop::Model(ChatError::ModelUnavailable(reason));
        match &setting.server {
            ModelServer::Tenant(endpoint, name) => self
                .provider_models
                .model(endpoint, name)
                .map_err(|e| unavailable(e.to_string())),
            ModelServer::Unusable(reason) => Err(unavailable(reason.clone())),
            // Only a local model is loaded (from disk, once); asking for the platform's remote
            // one costs nothing, and a thread hop would cost more.
            ModelServer::Platform
                if setting.run.model.provider() != crate::services::LOCAL_PROVIDER =>
            {
                self.models
                    .model(&setting.run.model)
                    .map_err(|e| unavailable(e.to_string()))
            }
            ModelServer::Platform => {
                let (models, wanted) = (self.models.clone(), setting.run.model.clone());
                tokio::task::spawn_blocking(move || models.model(&wanted))
                    .await
                    .map_err(|e| Stop::Internal(Error::internal(e)))?
                    .map_err(|e| unavailable(e.to_string()))
            }
        }
    }

    /// Cancellation and the lease, while the run works: answers why it must stop.
    async fn watch(&self, tenant: TenantId, setting: &Setting, text: Arc<Mutex<String>>) -> Stop {
        let mut last_beat = Instant::now();
        loop {
            tokio::time::sleep(self.policy.cancel_poll).await;
            if self.live.diverged(setting.run.id) {
                return Stop::Lost;
            }
            match self.events.cancel_requested(tenant, setting.run.id).await {
                Ok(true) => return Stop::Cancelled,
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(run = %setting.run.id, error = %err, "cannot see cancellations")
                }
            }
            if last_beat.elapsed() < self.policy.heartbeat {
                continue;
            }
            last_beat = Instant::now();
            let partial = text.lock().map(|t| t.clone()).unwrap_or_default();
            match self.heartbeat(tenant, setting, &partial).await {
                Ok(true) => {}
                Ok(false) => return Stop::Lost,
                Err(err) => {
                    tracing::warn!(run = %setting.run.id, error = %err, "a heartbeat failed")
                }
            }
        }
    }

    async fn heartbeat(
        &self,
        tenant: TenantId,
        setting: &Setting,
        partial: &str,
    ) -> Result<bool, Error> {
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        if !tx
            .runs()
            .extend_lease(setting.run.id, now + lease(&self.policy))
            .await?
        {
            return Ok(false);
        }
        if let Some(turn) = setting.stored() {
            tx.messages().write_partial(turn.answer_id, partial).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Retrieval, prompt and model turns (with tool rounds), accumulating into `progress`.
    async fn generate(&self, setting: &Setting, progress: &mut Progress) -> Result<(), Stop> {
        let tenant = setting.run.tenant_id;
        let model = self.chat_model(setting).await?;
        let agent = &setting.agent;
        // The tools the agent names, for a model that takes tools; sources are retrieved up
        // front unless the model can search for itself.
        let mut tools: Vec<ToolSpec> = if model.supports_tools() {
            self.tools
                .iter()
                .map(|t| t.spec())
                .filter(|spec| agent.tools.iter().any(|t| t.as_str() == spec.name))
                .collect()
        } else {
            Vec::new()
        };
        let searches = tools
            .iter()
            .any(|t| t.name == AgentTool::KnowledgeSearch.as_str());
        // The client's own tools are offered beside the agent's; calls to them go back to it.
        let client_tools: &[ToolSpec] = setting.client().map_or(&[], |c| &c.tools);
        if !client_tools.is_empty() && !model.supports_tools() {
            return Err(Stop::Invalid(
                "this agent's model does not take tools; send the request without `tools`",
            ));
        }
        tools.extend(client_tools.iter().cloned());
        if !searches && !agent.collections.is_empty() {
            let found = self
                .search
                .retrieve(tenant, &agent.collections, setting.query(), agent.retrieval)
                .await
                .map_err(Stop::Internal)?;
            progress.context.query_truncated = found.query_truncated;
            progress.embedded_tokens += found.embedded_tokens;
            add_sources(progress, found.hits);
        }
        let mut transcript = self.prompt(model.as_ref(), setting, progress, searches)?;
        let mut rounds = ToolRounds::new(self.policy.max_tool_rounds);
        let mut answer_budget = setting.max_tokens;
        loop {
            let offer = !tools.is_empty() && (rounds.remaining() > 0 || !client_tools.is_empty());
            let request = ChatRequest {
                messages: transcript.clone(),
                temperature: setting.temperature,
                max_tokens: answer_budget.max(1),
                tools: if offer { tools.clone() } else { Vec::new() },
            };
            let calls = self
                .model_turn(model.as_ref(), setting, request, progress)
                .await?;
            if calls.is_empty() {
                return Ok(());
            }
            if calls
                .iter()
                .any(|c| client_tools.iter().any(|t| t.name == c.name))
            {
                // The client runs its own tools and sends their results with its next request
                // (calls to ours in the same turn are dropped: it could not answer those).
                progress.unrun_calls = calls
                    .into_iter()
                    .filter(|c| client_tools.iter().any(|t| t.name == c.name))
                    .collect();
                return Ok(());
            }
            if !offer || !rounds.next_round() {
                progress.unrun_calls = calls;
                return Ok(());
            }
            answer_budget = answer_budget.saturating_sub(progress.usage.completion_tokens);
            let turn_text = std::mem::take(&mut *lock(&progress.text));
            self.run_tools(
                setting,
                progress,
                &mut rounds,
                &mut transcript,
                turn_text,
                calls,
            )
            .await?;
        }
    }

    /// One model turn: streams text (published as it comes) and gathers tool calls.
    async fn model_turn(
        &self,
        model: &dyn ChatModel,
        setting: &Setting,
        request: ChatRequest,
        progress: &mut Progress,
    ) -> Result<Vec<ToolCall>, Stop> {
        let estimate = estimate_prompt(model, &request);
        self.reserve_prompt(setting, progress, estimate).await?;
        progress.open_turn = Some((estimate, lock(&progress.text).len()));
        let mut stream = model.stream(request).await.map_err(Stop::Model)?;
        let mut calls = ToolCallPieces::default();
        let mut reported: Option<TokenUsage> = None;
        while let Some(delta) = stream.next().await {
            match delta.map_err(Stop::Model)? {
                ChatDelta::Text(text) => {
                    lock(&progress.text).push_str(&text);
                    self.publish(setting, RunEventKind::Delta, json!({"text": text}));
                    // The run's followers in this process (the client of a streamed turn) run on
                    // this thread: let them send the text before the next delta, or the answer's
                    // end, keeps the thread.
                    tokio::task::yield_now().await;
                }
                ChatDelta::ToolCall {
                    index,
                    id,
                    name,
                    arguments,
                } => calls.add(index, id, name, &arguments),
                ChatDelta::Usage(usage) => reported = Some(usage),
            }
        }
        let calls = calls.finish();
        let (prompt, from) = progress.open_turn.take().unwrap_or((estimate, 0));
        let usage = reported.unwrap_or_else(|| {
            let written = lock(&progress.text).get(from..).unwrap_or("").to_owned();
            let arguments: String = calls.iter().map(|c| c.arguments.as_str()).collect();
            TokenUsage {
                prompt_tokens: prompt,
                completion_tokens: model.count_tokens(&written) + model.count_tokens(&arguments),
            }
        });
        progress.usage.prompt_tokens += usage.prompt_tokens;
        progress.usage.completion_tokens += usage.completion_tokens;
        Ok(calls)
    }

    /// Holds the prompt of the next model turn against the quota (with one): refused when it
    /// would not fit beside everything else used and reserved today.
    async fn reserve_prompt(
        &self,
        setting: &Setting,
        progress: &mut Progress,
        tokens: u32,
    ) -> Result<(), Stop> {
        let (Some(quota), Some(held)) = (setting.quota, progress.reserved) else {
            return Ok(());
        };
        // The first turn also reserves the answer's ceiling (every turn's answer comes out of
        // it); each turn must fit beside everything else, this run's answer allowance aside.
        let allowance = u64::from(setting.max_tokens);
        let more = if held.tokens == 0 {
            u64::from(tokens) + allowance
        } else {
            u64::from(tokens)
        };
        let mut tx = self
            .store
            .begin(setting.run.tenant_id)
            .await
            .map_err(|e| Stop::Internal(e.into()))?;
        let fits = tx
            .usage()
            .reserve_more(held.day, quota, more, allowance)
            .await
            .map_err(|e| Stop::Internal(e.into()))?;
        if !fits {
            return Err(Stop::Quota);
        }
        let now_held = Reservation {
            tokens: held.tokens + more,
            ..held
        };
        tx.runs()
            .hold(setting.run.id, now_held)
            .await
            .map_err(|e| Stop::Internal(e.into()))?;
        tx.commit().await.map_err(|e| Stop::Internal(e.into()))?;
        progress.reserved = Some(now_held);
        Ok(())
    }

    /// Runs one round of tool calls: each becomes a `tool.call` and a `tool.result` event, a
    /// stored tool message, and a message of the transcript the model sees next.
    async fn run_tools(
        &self,
        setting: &Setting,
        progress: &mut Progress,
        rounds: &mut ToolRounds,
        transcript: &mut Vec<ChatMessage>,
        turn_text: String,
        calls: Vec<ToolCall>,
    ) -> Result<(), Stop> {
        let run = setting.run.id;
        let now = self.clock.now();
        transcript.push(ChatMessage {
            role: ChatRole::Assistant,
            content: turn_text.clone(),
            tool_calls: calls.clone(),
            tool_call_id: None,
        });
        // A conversation keeps the tool turns as messages between the question and the answer.
        let mut parent = setting.stored().map(|stored| {
            let parent = progress
                .produced
                .last()
                .map_or(stored.question.id, |m| m.id);
            let turn = Message {
                tool_calls: calls.clone(),
                model: Some(setting.run.model.clone()),
                ..Message::new(
                    stored.conversation_id,
                    Some(parent),
                    MessageRole::Assistant,
                    turn_text,
                    run,
                    now,
                )
            };
            let id = turn.id;
            progress.produced.push(turn);
            (stored.conversation_id, id)
        });
        for call in calls {
            self.publish(
                setting,
                RunEventKind::ToolCall,
                json!({"id": call.id, "name": call.name, "arguments": call.arguments}),
            );
            let result = match rounds.admit(&call.name, &call.arguments) {
                Admission::Repeated => REPEATED_CALL.to_owned(),
                Admission::Run => self.call_tool(setting, progress, &call).await?,
            };
            self.publish(
                setting,
                RunEventKind::ToolResult,
                json!({"id": call.id, "name": call.name, "content": result}),
            );
            if let Some((conversation, above)) = parent {
                let message = Message {
                    tool_call_id: Some(call.id.clone()),
                    ..Message::new(
                        conversation,
                        Some(above),
                        MessageRole::Tool,
                        result.clone(),
                        run,
                        now,
                    )
                };
                parent = Some((conversation, message.id));
                progress.produced.push(message);
            }
            transcript.push(ChatMessage {
                role: ChatRole::Tool,
                content: result,
                tool_calls: Vec::new(),
                tool_call_id: Some(call.id),
            });
        }
        Ok(())
    }

    /// The result text of one tool call, as the model will read it.
    async fn call_tool(
        &self,
        setting: &Setting,
        progress: &mut Progress,
        call: &ToolCall,
    ) -> Result<String, Stop> {
        let Some(tool) = self.tools.iter().find(|t| {
            let name = t.spec().name;
            name == call.name && setting.agent.tools.iter().any(|a| a.as_str() == name)
        }) else {
            return Ok(format!("error: there is no tool named {:?}", call.name));
        };
        let context = ToolContext {
            tenant: setting.run.tenant_id,
            collections: setting.agent.collections.clone(),
            retrieval: setting.agent.retrieval,
        };
        match tool
            .call(&context, &call.id, &call.arguments)
            .await
            .map_err(Stop::Internal)?
        {
            ToolOutput::Text(text) => Ok(text),
            ToolOutput::Passages {
                hits,
                query_truncated,
                embedded_tokens,
            } => {
                progress.context.query_truncated |= query_truncated;
                progress.embedded_tokens += embedded_tokens;
                let first = progress.sources.len();
                add_sources(progress, hits);
                let added = &progress.sources[first..];
                if added.is_empty() {
                    return Ok("No results.".to_owned());
                }
                Ok(render_sources(added))
            }
        }
    }

    /// The prompt: the system message (the agent's prompt, how to cite, the sources), the
    /// newest history that fits, and the question. Records what it kept and dropped.
    fn prompt(
        &self,
        model: &dyn ChatModel,
        setting: &Setting,
        progress: &mut Progress,
        model_searches: bool,
    ) -> Result<Vec<ChatMessage>, Stop> {
        let agent = &setting.agent;
        let guidance = if model_searches {
            TOOL_GUIDANCE
        } else if agent.collections.is_empty() {
            ""
        } else if progress.sources.is_empty() {
            NO_SOURCES_GUIDANCE
        } else {
            SOURCES_GUIDANCE
        };
        let system = [agent.system_prompt.trim(), guidance]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n");
        let turn = match &setting.thread {
            Thread::Stored(turn) => turn,
            Thread::Client(turn) => {
                return Self::client_prompt(model, turn, system, setting.max_tokens, progress);
            }
        };
        let window = model.context_window();
        let answer = setting.max_tokens;
        let count = |text: &str| model.count_tokens(text);
        let system_tokens = count(&system);
        let question_tokens = count(&turn.question.content);
        // Sources that do not fit beside the system prompt, the question and the answer are
        // dropped from the end (the least relevant first).
        let sources_tokens = fit_sources(
            model,
            &mut progress.sources,
            system_tokens + question_tokens + answer,
            window,
        );
        if system_tokens + question_tokens + answer > window {
            return Err(Stop::Model(ChatError::ContextExceeded {
                needed: system_tokens + question_tokens + answer,
                window,
            }));
        }
        // Each message counted once: a long conversation's history is most of a turn's counting.
        let sendable: Vec<(&HistoryMessage, u32)> = turn
            .history
            .iter()
            .filter(|m| sendable(m, model.supports_tools()))
            .map(|m| (m, count(&m.content) + MESSAGE_OVERHEAD))
            .collect();
        let fitted = fit(
            &sendable,
            |(_, tokens)| usize_of(*tokens),
            usize_of(system_tokens),
            usize_of(question_tokens),
            Budget {
                context: usize_of(window),
                sources: usize_of(sources_tokens),
                answer: usize_of(answer),
            },
        );
        let kept: Vec<&HistoryMessage> = fitted.kept.iter().map(|(m, _)| *m).collect();
        let history_tokens: u32 = fitted.kept.iter().map(|(_, tokens)| tokens).sum();
        progress.context.kept_message_ids = kept.iter().map(|m| m.id).collect();
        let kept_ids: HashSet<&MessageId> = progress.context.kept_message_ids.iter().collect();
        progress.context.dropped_message_ids = turn
            .history
            .iter()
            .map(|m| m.id)
            .filter(|id| !kept_ids.contains(id))
            .collect();
        progress.context.chunk_ids = progress.sources.iter().map(|s| s.chunk_id).collect();
        progress.context.tokens = PromptTokens {
            system: system_tokens,
            history: history_tokens,
            sources: sources_tokens,
            question: question_tokens,
        };
        let mut system_message = system;
        if !progress.sources.is_empty() {
            system_message.push_str("\n\nSources:\n\n");
            system_message.push_str(&render_sources(&progress.sources));
        }
        let mut messages = vec![ChatMessage::new(ChatRole::System, system_message)];
        messages.extend(kept.into_iter().map(|m| ChatMessage {
            role: match m.role {
                MessageRole::User => ChatRole::User,
                MessageRole::Assistant => ChatRole::Assistant,
                MessageRole::Tool => ChatRole::Tool,
            },
            content: m.content.clone(),
            tool_calls: if model.supports_tools() {
                m.tool_calls.clone()
            } else {
                Vec::new()
            },
            tool_call_id: m.tool_call_id.clone(),
        }));
        messages.push(ChatMessage::new(
            ChatRole::User,
            turn.question.content.clone(),
        ));
        Ok(messages)
    }

    /// Stores how the run ended (one transaction, with its usage record), then writes its one
    /// terminal event (and hands a client's answer to its caller). Answers the run and its
    /// answer as stored, or `None` when the reaper had ended the run first.
    async fn end(
        &self,
        tenant: TenantId,
        setting: &Setting,
        progress: Progress,
        status: RunStatus,
        failure: Option<Failure>,
        started: Instant,
    ) -> Result<Option<EndedRun>, Error> {
        let run = setting.run.id;
        let text = progress.text();
        let cited = cite(&text, &progress.sources);
        if !cited.citations.is_empty() {
            let citations: Vec<Value> = cited.citations.iter().map(citation_json).collect();
            self.publish(
                setting,
                RunEventKind::Citations,
                json!({"citations": citations}),
            );
        }
        let context = RunContext {
            chunk_ids: progress.sources.iter().map(|s| s.chunk_id).collect(),
            ..progress.context
        };
        let now = self.clock.now();
        let mut tx = self.store.begin(tenant).await?;
        let mut answer = None;
        if let Some(turn) = setting.stored() {
            tx.messages().insert(&progress.produced).await?;
            if let Some(last) = progress.produced.last() {
                tx.messages().reparent(turn.answer_id, last.id).await?;
            }
            let latency = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
            let message_status = match status {
                RunStatus::Completed => MessageStatus::Complete,
                RunStatus::Cancelled => MessageStatus::Cancelled,
                _ => MessageStatus::Failed,
            };
            answer = Some((
                turn.answer_id,
                MessageOutcome {
                    content: cited.answer.clone(),
                    tool_calls: progress.unrun_calls.clone(),
                    citations: cited.citations.clone(),
                    usage: progress.usage,
                    latency_ms: latency,
                    status: message_status,
                    error: failure.clone(),
                },
            ));
        }
        let mut records = vec![self.usage_record(setting, progress.usage, now)];
        if progress.embedded_tokens > 0 {
            let run = &setting.run;
            records.push(UsageRecord {
                agent_id: Some(run.agent_id),
                run_id: Some(run.id),
                ..metering::embedding_record(
                    Some(run.started_by),
                    "retrieval",
                    progress.embedded_tokens,
                    true,
                    now,
                )
            });
        }
        let end = RunEnd {
            outcome: RunOutcome {
                status,
                usage: progress.usage,
                error: failure.clone(),
                context,
            },
            answer,
            usage: records,
            release: progress.reserved,
            at: now,
        };
        let Some((stored_run, answer)) = tx.runs().finish(run, &end).await? else {
            // The reaper ended it first (the lease ran out): its end stands.
            return Ok(None);
        };
        tx.commit().await?;
        let usage = usage_json(progress.usage);
        let message_id = setting
            .stored()
            .map_or(Value::Null, |t| json!(t.answer_id.to_string()));
        let (kind, data) = match status {
            RunStatus::Completed => (
                RunEventKind::Completed,
                json!({"message_id": message_id, "usage": usage}),
            ),
            RunStatus::Cancelled => (
                RunEventKind::Cancelled,
                json!({"message_id": message_id, "usage": usage}),
            ),
            _ => {
                let failure = failure
                    .clone()
                    .unwrap_or_else(|| Failure::new(failure_codes::INTERNAL, "failed"));
                (
                    RunEventKind::Failed,
                    json!({
                        "message_id": message_id,
                        "error": {"code": failure.code, "message": failure.message},
                        "usage": usage,
                    }),
                )
            }
        };
        self.publish(setting, kind, data);
        if let Some(client) = setting.client() {
            let _ = client.live.send(LiveEvent::Ended(ClientAnswer {
                run,
                status,
                text: cited.answer,
                tool_calls: progress.unrun_calls,
                citations: cited.citations,
                usage: progress.usage,
                // The last turn's answer took all it was allowed (earlier tool rounds spent
                // from the same budget).
                cut_at_max_tokens: progress.usage.completion_tokens >= setting.max_tokens,
                failure,
            }));
        }
        Ok(Some(EndedRun {
            run: stored_run,
            answer,
        }))
    }

    /// The usage record of a run: its model turns together, counted against the quota.
    fn usage_record(
        &self,
        setting: &Setting,
        usage: TokenUsage,
        now: DateTime<Utc>,
    ) -> UsageRecord {
        let run = &setting.run;
        UsageRecord {
            id: uuid::Uuid::now_v7(),
            day: run.reserved.map_or_else(|| day_of(now), |r| r.day),
            at: now,
            kind: UsageKind::Chat,
            principal: Some(run.started_by),
            agent_id: Some(run.agent_id),
            run_id: Some(run.id),
            provider: run.model.provider().to_owned(),
            model: run.model.name().to_owned(),
            usage,
            counted: true,
        }
    }

    /// Adds an event of the run: its followers here have it at once, the shared log soon after
    /// ([`LiveRuns`]). A log that cannot be written is logged, not fatal to the run (what the run
    /// stores stays the truth, and `GET /v1/runs/{id}` shows it).
    fn publish(&self, setting: &Setting, kind: RunEventKind, data: Value) {
        if let Some(client) = setting.client() {
            let _ = client.live.send(LiveEvent::Event(kind, data.clone()));
        }
        self.live.push(setting.run.id, kind, data);
    }

    /// The prompt of a `/v1/chat/completions` call: the agent's system message (with its
    /// sources), then the client's messages as they came (its own system messages included).
    /// The client owns its history, so nothing of it is dropped: a prompt that does not fit
    /// fails with `context_exceeded`, as OpenAI's API does.
    fn client_prompt(
        model: &dyn ChatModel,
        turn: &ClientTurn,
        system: String,
        answer: u32,
        progress: &mut Progress,
    ) -> Result<Vec<ChatMessage>, Stop> {
        let window = model.context_window();
        let count = |m: &ChatMessage| {
            let calls: u32 = m
                .tool_calls
                .iter()
                .map(|c| model.count_tokens(&c.name) + model.count_tokens(&c.arguments))
                .sum();
            model.count_tokens(&m.content) + calls + MESSAGE_OVERHEAD
        };
        let system_tokens = model.count_tokens(&system);
        let (last, earlier) = turn
            .messages
            .split_last()
            .ok_or(Stop::Invalid("`messages` must not be empty"))?;
        let question_tokens = count(last);
        let history_tokens: u32 = earlier.iter().map(count).sum();
        let fixed = system_tokens + question_tokens + history_tokens + answer;
        let sources_tokens = fit_sources(model, &mut progress.sources, fixed, window);
        if fixed > window {
            return Err(Stop::Model(ChatError::ContextExceeded {
                needed: fixed,
                window,
            }));
        }
        progress.context.chunk_ids = progress.sources.iter().map(|s| s.chunk_id).collect();
        progress.context.tokens = PromptTokens {
            system: system_tokens,
            history: history_tokens,
            sources: sources_tokens,
            question: question_tokens,
        };
        let mut system_message = system;
        if !progress.sources.is_empty() {
            system_message.push_str("\n\nSources:\n\n");
            system_message.push_str(&render_sources(&progress.sources));
        }
        let mut messages = Vec::with_capacity(turn.messages.len() + 1);
        if !system_message.is_empty() {
            messages.push(ChatMessage::new(ChatRole::System, system_message));
        }
        messages.extend(turn.messages.iter().cloned());
        Ok(messages)
    }
}

/// Keeps the sources that fit beside `fixed` tokens in the window (the least relevant are
/// dropped from the end); answers their tokens.
fn fit_sources(model: &dyn ChatModel, sources: &mut Vec<Source>, fixed: u32, window: u32) -> u32 {
    let mut tokens = 0;
    let mut kept = 0;
    for source in sources.iter() {
        let cost = model.count_tokens(&render_sources(std::slice::from_ref(source)));
        if fixed + tokens + cost > window {
            break;
        }
        tokens += cost;
        kept += 1;
    }
    sources.truncate(kept);
    tokens
}

const REPEATED_CALL: &str = "error: this exact call was already made in this answer; \
     answer with what the earlier results said";
const SOURCES_GUIDANCE: &str = "Answer from the numbered sources below when they help. Cite a \
     source by its number in square brackets, like [1], right after what it supports. If the \
     sources do not answer the question, say so.";
const NO_SOURCES_GUIDANCE: &str =
    "The knowledge base has nothing on this question; say so if you cannot answer it.";
const TOOL_GUIDANCE: &str = "Use the knowledge_search tool to look things up in the knowledge \
     base. Each result is a numbered source: cite it by its number in square brackets, like [1], \
     right after what it supports.";
/// Tokens a chat template adds around each message (role markers), counted in the budget.
const MESSAGE_OVERHEAD: u32 = 4;

fn lock(text: &Mutex<String>) -> std::sync::MutexGuard<'_, String> {
    text.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn lease(policy: &ExecutionPolicy) -> chrono::Duration {
    chrono::Duration::from_std(policy.lease).unwrap_or_else(|_| chrono::Duration::seconds(30))
}

fn usize_of(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// The question a turn answers: posted with it, or already stored (a regeneration's).
enum Asked {
    New(Message),
    Stored(Message),
}

/// The agent of a conversation, if it is live.
async fn live_agent(
    tx: &mut dyn crate::ports::TenantTx,
    conversation: &Conversation,
) -> Result<Agent, Error> {
    tx.agents()
        .get(conversation.agent_id, false)
        .await?
        .ok_or(Error::NotFound(Resource::Agent))
}

/// A message a user message may follow: an answer that is not being written any more.
fn check_parent(parent: &HistoryMessage) -> Result<MessageId, Error> {
    if parent.role != MessageRole::Assistant {
        return Err(Error::invalid(
            "parent_id",
            "must be an assistant's message (a question follows an answer)",
        ));
    }
    if parent.status.is_open() {
        return Err(Error::Conflict(Conflict::AnswerInProgress));
    }
    Ok(parent.id)
}

/// Whether a stored message goes into a prompt: questions, and answers that were not failures
/// (tool turns only for a model that takes tools).
fn sendable(message: &HistoryMessage, tools: bool) -> bool {
    match message.role {
        MessageRole::User => true,
        MessageRole::Tool => tools,
        MessageRole::Assistant => {
            matches!(
                message.status,
                MessageStatus::Complete | MessageStatus::Cancelled
            ) && (tools || message.tool_calls.is_empty())
                && !(message.content.is_empty() && message.tool_calls.is_empty())
        }
    }
}

/// Numbers new hits after the sources already found; a chunk found again keeps its number.
fn add_sources(progress: &mut Progress, hits: Vec<crate::ports::SearchHit>) {
    for hit in hits {
        if progress.sources.iter().any(|s| s.chunk_id == hit.chunk_id) {
            continue;
        }
        let n = u32::try_from(progress.sources.len() + 1).unwrap_or(u32::MAX);
        progress.sources.push(Source {
            n,
            chunk_id: hit.chunk_id,
            document_id: hit.document_id,
            document_title: hit.document_title,
            collection_id: hit.collection_id,
            text: hit.content,
        });
    }
}

fn render_sources(sources: &[Source]) -> String {
    sources
        .iter()
        .map(|s| format!("[{}] {}\n{}", s.n, s.document_title, s.text.trim()))
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The prompt's tokens, as the model's tokenizer counts its messages.
fn estimate_prompt(model: &dyn ChatModel, request: &ChatRequest) -> u32 {
    request
        .messages
        .iter()
        .map(|m| {
            let calls: u32 = m
                .tool_calls
                .iter()
                .map(|c| model.count_tokens(&c.name) + model.count_tokens(&c.arguments))
                .sum();
            model.count_tokens(&m.content) + calls + MESSAGE_OVERHEAD
        })
        .sum()
}

/// A citation as events and the API show it.
#[must_use]
pub fn citation_json(c: &crate::entities::Citation) -> Value {
    json!({
        "n": c.n,
        "start": c.start,
        "end": c.end,
        "chunk_id": c.chunk_id.to_string(),
        "document_id": c.document_id.to_string(),
        "document_title": c.document_title,
        "collection_id": c.collection_id.to_string(),
        "snippet": c.snippet,
    })
}

/// Usage as events and the API show it.
#[must_use]
pub fn usage_json(usage: TokenUsage) -> Value {
    json!({"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens})
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use async_trait::async_trait;

    use super::*;
    use crate::entities::{Collection, NewAgent, Owner, RunOutcome};
    use crate::ids::{AgentId, ChunkId, CollectionId, DocumentId, GenerationId, UserId};
    use crate::ports::{
        ChatStream, MockChatModels, MockRunEventLog, MockRunLeases, ScoreKind, SearchHit,
        SearchMode,
    };
    use crate::services::Embedders;
    use crate::services::testing::{
        FakeTx, fixed_clock, minilm_space, now, sample_agent, store_with_all,
    };
    use crate::values::{MaxTokens, Name, Slug, Temperature};

    /// A model that answers each turn from a script and records what it was sent. Tokens are
    /// words, so budgets are easy to reason about.
    struct ScriptedModel {
        tools: bool,
        window: u32,
        turns: Mutex<VecDeque<Vec<Result<ChatDelta, ChatError>>>>,
        sent: Arc<Mutex<Vec<ChatRequest>>>,
    }

    struct ScriptedStream(VecDeque<Result<ChatDelta, ChatError>>);

    #[async_trait]
    impl ChatStream for ScriptedStream {
        async fn next(&mut self) -> Option<Result<ChatDelta, ChatError>> {
            self.0.pop_front()
        }
    }

    #[async_trait]
    impl ChatModel for ScriptedModel {
        fn supports_tools(&self) -> bool {
            self.tools
        }
        fn context_window(&self) -> u32 {
            self.window
        }
        fn count_tokens(&self, text: &str) -> u32 {
            u32::try_from(text.split_whitespace().count()).unwrap()
        }
        async fn stream(&self, request: ChatRequest) -> Result<Box<dyn ChatStream>, ChatError> {
            self.sent.lock().unwrap().push(request);
            let turn = self
                .turns
                .lock()
                .unwrap()
                .pop_front()
                .expect("a scripted turn");
            Ok(Box::new(ScriptedStream(turn.into())))
        }
    }

    fn text(t: &str) -> Result<ChatDelta, ChatError> {
        Ok(ChatDelta::Text(t.to_owned()))
    }

    fn call(id: &str, arguments: &str) -> Result<ChatDelta, ChatError> {
        Ok(ChatDelta::ToolCall {
            index: 0,
            id: Some(id.to_owned()),
            name: Some("knowledge_search".to_owned()),
            arguments: arguments.to_owned(),
        })
    }

    /// What a run wrote: its events, the answer's and the run's outcome, inserted messages.
    #[derive(Default)]
    struct Written {
        events: Vec<(RunEventKind, Value)>,
        answer: Option<MessageOutcome>,
        run: Option<RunOutcome>,
        inserted: Vec<Message>,
        reparented: Option<MessageId>,
        metered: Vec<UsageRecord>,
    }

    struct Case {
        tenant: TenantId,
        agent: Agent,
        messages: Vec<Message>,
        question: MessageId,
        run: Run,
        hits: Vec<SearchHit>,
        model: Arc<ScriptedModel>,
        policy: ExecutionPolicy,
    }

    fn message(
        conversation: ConversationId,
        parent: Option<&Message>,
        role: MessageRole,
        words: usize,
    ) -> Message {
        Message {
            id: MessageId::new(),
            conversation_id: conversation,
            parent_id: parent.map(|p| p.id),
            role,
            content: vec!["word"; words].join(" "),
            tool_calls: Vec::new(),
            tool_call_id: None,
            citations: Vec::new(),
            model: None,
            usage: None,
            latency_ms: None,
            status: MessageStatus::Complete,
            error: None,
            run_id: None,
            created_at: now(),
        }
    }

    impl Case {
        /// A conversation of `earlier` exchanges of `words`-word messages, then a question.
        fn new(
            earlier: usize,
            words: usize,
            turns: Vec<Vec<Result<ChatDelta, ChatError>>>,
        ) -> Self {
            let tenant = TenantId::new();
            let conversation = ConversationId::new();
            let mut messages: Vec<Message> = Vec::new();
            for i in 0..earlier * 2 {
                let role = if i % 2 == 0 {
                    MessageRole::User
                } else {
                    MessageRole::Assistant
                };
                let m = message(conversation, messages.last(), role, words);
                messages.push(m);
            }
            let question = message(conversation, messages.last(), MessageRole::User, 3);
            let answer = Message {
                status: MessageStatus::Pending,
                content: String::new(),
                ..message(conversation, Some(&question), MessageRole::Assistant, 0)
            };
            let (question_id, answer_id) = (question.id, answer.id);
            messages.push(question);
            messages.push(answer);
            let agent = sample_agent(
                &NewAgent {
                    id: AgentId::new(),
                    name: Name::parse("A").unwrap(),
                    slug: Slug::parse("a").unwrap(),
                    description: String::new(),
                    system_prompt: "be brief".into(),
                    model: crate::values::ModelRef::parse("openai", "m").unwrap(),
                    temperature: Temperature::default(),
                    max_tokens: MaxTokens::parse(10).unwrap(),
                    metadata: json!({}),
                    collections: Vec::new(),
                    retrieval: crate::entities::Retrieval::default(),
                    tools: Vec::new(),
                },
                now(),
            );
            let run = Run {
                id: RunId::new(),
                tenant_id: tenant,
                conversation_id: Some(conversation),
                message_id: Some(answer_id),
                user_message_id: Some(question_id),
                agent_id: agent.id,
                started_by: Owner::User(UserId::new()),
                model: agent.model.clone(),
                status: RunStatus::Queued,
                usage: TokenUsage::default(),
                error: None,
                context: RunContext::default(),
                created_at: now(),
                started_at: None,
                ended_at: None,
                lease_until: now(),
                reserved: None,
            };
            Self {
                tenant,
                agent,
                messages,
                question: question_id,
                run,
                hits: Vec::new(),
                model: Arc::new(ScriptedModel {
                    tools: false,
                    window: 1_000,
                    turns: Mutex::new(turns.into()),
                    sent: Arc::default(),
                }),
                policy: ExecutionPolicy {
                    cancel_poll: Duration::from_millis(5),
                    heartbeat: Duration::from_secs(3600),
                    ..ExecutionPolicy::default()
                },
            }
        }

        /// The agent retrieves (full text, so no embedder) from one collection holding `hits`.
        fn with_sources(mut self, n: usize) -> Self {
            let collection = CollectionId::new();
            self.agent.collections = vec![collection];
            self.agent.retrieval.mode = SearchMode::Fulltext;
            self.hits = (0..n)
                .map(|i| SearchHit {
                    chunk_id: ChunkId::new(),
                    collection_id: collection,
                    document_id: DocumentId::new(),
                    document_title: format!("Doc {i}"),
                    position: 0,
                    content: format!("fact number {i}"),
                    score: 1.0,
                    score_kind: ScoreKind::Rrf,
                    metadata: json!({}),
                })
                .collect();
            self
        }

        fn collection(&self) -> Collection {
            Collection {
                id: self.agent.collections[0],
                tenant_id: self.tenant,
                name: Name::parse("c").unwrap(),
                description: String::new(),
                space: minilm_space(),
                active_generation: GenerationId::new(),
                chunk_count: 10,
                document_count: 1,
                byte_count: 1,
                last_active_at: None,
                created_at: now(),
                updated_at: now(),
                deleted_at: None,
                deleted_by: None,
            }
        }

        /// Units of work: each search (`searches` of them), the end.
        async fn execute(self, searches: usize) -> (Written, Vec<ChatRequest>) {
            let written = Arc::new(Mutex::new(Written::default()));
            let mut txs = Vec::new();
            for _ in 0..searches {
                let mut read = FakeTx::new(self.tenant);
                let collection = self.collection();
                read.collections
                    .expect_get()
                    .returning(move |_, _| Ok(Some(collection.clone())));
                let mut search = FakeTx::new(self.tenant);
                let hits = self.hits.clone();
                search.chunks.expect_search().return_once(move |_| Ok(hits));
                txs.push(read);
                txs.push(search);
            }
            let mut end = FakeTx::new(self.tenant);
            let w = written.clone();
            end.messages.expect_insert().returning(move |m| {
                w.lock().unwrap().inserted.extend_from_slice(m);
                Ok(())
            });
            let w = written.clone();
            end.messages.expect_reparent().returning(move |_, parent| {
                w.lock().unwrap().reparented = Some(parent);
                Ok(())
            });
            let w = written.clone();
            let answer = self
                .messages
                .iter()
                .find(|m| Some(m.id) == self.run.message_id)
                .cloned()
                .unwrap();
            let run = self.run.clone();
            end.runs.expect_finish().return_once(move |_, end| {
                let mut w = w.lock().unwrap();
                w.run = Some(end.outcome.clone());
                w.metered.extend_from_slice(&end.usage);
                let (_, outcome) = end.answer.clone().expect("the run answers a message");
                w.answer = Some(outcome.clone());
                let run = Run {
                    status: end.outcome.status,
                    ..run
                };
                let answer = Message {
                    content: outcome.content,
                    status: outcome.status,
                    ..answer
                };
                Ok(Some((run, Some(answer))))
            });
            txs.push(end);
            let store = store_with_all(txs);

            let mut events = MockRunEventLog::new();
            let w = written.clone();
            events
                .expect_append_numbered()
                .returning(move |_, _, first, batch| {
                    let mut w = w.lock().unwrap();
                    assert_eq!(first, w.events.len() as u64 + 1, "numbers follow the last");
                    w.events.extend(batch.iter().cloned());
                    Ok(true)
                });
            events.expect_cancel_requested().returning(|_, _| Ok(false));
            let mut models = MockChatModels::new();
            let model = self.model.clone();
            models
                .expect_model()
                .returning(move |_| Ok(model.clone() as Arc<dyn ChatModel>));
            let executor = Executor::new(
                ExecutionPorts {
                    store: store.clone(),
                    clock: fixed_clock(),
                    models: Arc::new(models),
                    events: Arc::new(events),
                    leases: Arc::new(MockRunLeases::new()),
                    secrets: Arc::new(crate::ports::MockSecretBox::new()),
                    provider_models: Arc::new(crate::ports::MockProviderModels::new()),
                },
                SearchService::new(store.clone(), Embedders::new()),
                vec![Arc::new(crate::services::KnowledgeSearch::new(
                    SearchService::new(store, Embedders::new()),
                ))],
                self.policy,
            );
            let question = self
                .messages
                .iter()
                .find(|m| m.id == self.question)
                .cloned()
                .unwrap();
            let answer = self
                .messages
                .iter()
                .find(|m| Some(m.id) == self.run.message_id)
                .unwrap();
            let history: Vec<HistoryMessage> =
                self.messages.iter().map(HistoryMessage::from).collect();
            let turn = StoredTurn::of(&history, question, answer).unwrap();
            let job = executor.job(
                executor.slot(self.tenant).unwrap(),
                Setting {
                    temperature: f64::from(self.agent.temperature.value()),
                    max_tokens: self.agent.max_tokens.value(),
                    run: self.run.clone(),
                    agent: self.agent.clone(),
                    thread: Thread::Stored(Box::new(turn)),
                    quota: None,
                    server: ModelServer::Platform,
                },
            );
            executor.execute(job).await;
            executor.live.settled().await;
            let sent = self.model.sent.lock().unwrap().clone();
            let written = std::mem::take(&mut *written.lock().unwrap());
            (written, sent)
        }
    }

    #[tokio::test]
    async fn history_that_does_not_fit_is_dropped_oldest_first_and_recorded() {
        // Six earlier messages of 10 words (14 tokens with the template's overhead each); the
        // window leaves 60 - 2 (system) - 3 (question) - 10 (answer) = 45: three fit.
        let mut case = Case::new(3, 10, vec![vec![text("ok")]]);
        case.model = Arc::new(ScriptedModel {
            window: 60,
            ..Arc::try_unwrap(case.model).ok().unwrap()
        });
        let earlier: Vec<MessageId> = case.messages[..6].iter().map(|m| m.id).collect();
        let (written, sent) = case.execute(0).await;
        let run = written.run.unwrap();
        assert_eq!(run.status, RunStatus::Completed);
        assert_eq!(run.context.kept_message_ids, earlier[3..]);
        assert_eq!(run.context.dropped_message_ids, earlier[..3]);
        assert_eq!(run.context.tokens.history, 3 * 14);
        assert_eq!(run.context.tokens.question, 3);
        // The model saw the system prompt, the three newest messages and the question.
        let roles: Vec<ChatRole> = sent[0].messages.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                ChatRole::System,
                ChatRole::Assistant,
                ChatRole::User,
                ChatRole::Assistant,
                ChatRole::User
            ]
        );
        assert_eq!(sent[0].max_tokens, 10);
    }

    #[tokio::test]
    async fn citations_name_the_sources_and_markers_of_no_source_are_dropped() {
        let case = Case::new(
            0,
            0,
            vec![vec![text("Yes [2] and"), text(" no [1, 3] maybe [9].")]],
        )
        .with_sources(2);
        let chunks: Vec<ChunkId> = case.hits.iter().map(|h| h.chunk_id).collect();
        let (written, sent) = case.execute(1).await;
        let answer = written.answer.unwrap();
        assert_eq!(answer.content, "Yes [2] and no [1] maybe.");
        assert_eq!(answer.status, MessageStatus::Complete);
        let cited: Vec<(u32, ChunkId, usize, usize)> = answer
            .citations
            .iter()
            .map(|c| (c.n, c.chunk_id, c.start, c.end))
            .collect();
        assert_eq!(cited, [(2, chunks[1], 4, 7), (1, chunks[0], 15, 18)]);
        assert_eq!(written.run.unwrap().context.chunk_ids, chunks);
        // The prompt numbered the sources from 1 in retrieval order.
        let system = &sent[0].messages[0].content;
        assert!(
            system.contains("[1] Doc 0\nfact number 0\n\n[2] Doc 1"),
            "{system}"
        );
        // The events: started, two deltas, citations (only those cited), completed.
        let kinds: Vec<RunEventKind> = written.events.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            kinds,
            [
                RunEventKind::Started,
                RunEventKind::Delta,
                RunEventKind::Delta,
                RunEventKind::Citations,
                RunEventKind::Completed
            ]
        );
        assert_eq!(
            written.events[3].1["citations"].as_array().unwrap().len(),
            2
        );
    }

    #[tokio::test]
    async fn a_model_failure_is_stored_with_its_reason_and_what_was_written() {
        let case = Case::new(
            0,
            0,
            vec![vec![text("Partial answer"), Err(ChatError::Timeout)]],
        );
        let (written, _) = case.execute(0).await;
        let answer = written.answer.unwrap();
        assert_eq!(answer.status, MessageStatus::Failed);
        assert_eq!(answer.content, "Partial answer");
        assert_eq!(answer.error.as_ref().unwrap().code, "model_timeout");
        // No usage came from the provider: the platform counted it, and metered it.
        assert_eq!(answer.usage.completion_tokens, 2);
        assert!(answer.usage.prompt_tokens > 0);
        let chat = &written.metered[0];
        assert_eq!(chat.kind, UsageKind::Chat);
        assert_eq!(chat.usage, answer.usage);
        assert!(chat.counted && chat.run_id.is_some() && chat.agent_id.is_some());
        let run = written.run.unwrap();
        assert_eq!(run.status, RunStatus::Failed);
        let (kind, data) = written.events.last().unwrap();
        assert_eq!(*kind, RunEventKind::Failed);
        assert_eq!(data["error"]["code"], "model_timeout");
        assert_eq!(
            written
                .events
                .iter()
                .filter(|(k, _)| k.is_terminal())
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn tool_rounds_are_bounded_and_an_identical_call_is_refused() {
        let mut case = Case::new(
            0,
            0,
            vec![
                vec![call("a", r#"{"query":"x"}"#)],
                // The same call, written differently: still the same call.
                vec![call("b", r#"{ "query" : "x" }"#)],
                vec![text("Done [1].")],
            ],
        )
        .with_sources(1);
        case.agent.tools = vec![AgentTool::KnowledgeSearch];
        case.policy.max_tool_rounds = 2;
        case.model = Arc::new(ScriptedModel {
            tools: true,
            ..Arc::try_unwrap(case.model).ok().unwrap()
        });
        let question = case.question;
        // One search: the repeated call never reaches the store.
        let (written, sent) = case.execute(1).await;
        assert_eq!(sent.len(), 3);
        assert_eq!(sent[0].tools.len(), 1);
        assert_eq!(sent[1].tools.len(), 1);
        assert!(sent[2].tools.is_empty(), "the rounds are spent");
        let results: Vec<&Value> = written
            .events
            .iter()
            .filter(|(k, _)| *k == RunEventKind::ToolResult)
            .map(|(_, d)| d)
            .collect();
        assert!(
            results[0]["content"]
                .as_str()
                .unwrap()
                .starts_with("[1] Doc 0")
        );
        assert_eq!(results[1]["content"], REPEATED_CALL);
        // Stored: call, result, call, result between the question and the answer.
        let roles: Vec<MessageRole> = written.inserted.iter().map(|m| m.role).collect();
        assert_eq!(
            roles,
            [
                MessageRole::Assistant,
                MessageRole::Tool,
                MessageRole::Assistant,
                MessageRole::Tool
            ]
        );
        assert_eq!(written.inserted[0].parent_id, Some(question));
        assert_eq!(written.inserted[1].tool_call_id.as_deref(), Some("a"));
        assert_eq!(written.reparented, Some(written.inserted[3].id));
        let answer = written.answer.unwrap();
        assert_eq!(answer.content, "Done [1].");
        assert_eq!(answer.citations.len(), 1);
    }

    #[tokio::test]
    async fn a_regeneration_answers_the_nearest_question_above_the_answer() {
        // question → tool call → tool result → answer; regenerating the answer answers the
        // question again, as a sibling of the tool call turn.
        let tenant = TenantId::new();
        let user = UserId::new();
        let who = crate::services::testing::user_principal(tenant, user, crate::Role::Member);
        let conversation = ConversationId::new();
        let question = message(conversation, None, MessageRole::User, 2);
        let turn = message(conversation, Some(&question), MessageRole::Assistant, 0);
        let result = message(conversation, Some(&turn), MessageRole::Tool, 2);
        let answer = message(conversation, Some(&result), MessageRole::Assistant, 2);
        let messages = vec![question.clone(), turn, result, answer.clone()];
        let case = Case::new(0, 0, Vec::new());
        let agent = case.agent.clone();
        let mut tx = FakeTx::new(tenant);
        let found = answer.clone();
        tx.messages
            .expect_get()
            .return_once(move |_| Ok(Some(found)));
        tx.conversations.expect_get().return_once(move |id, _| {
            Ok(Some(Conversation {
                id,
                tenant_id: tenant,
                agent_id: AgentId::new(),
                title: String::new(),
                owner: Owner::User(user),
                last_active_at: None,
                created_at: now(),
                updated_at: now(),
                deleted_at: None,
                deleted_by: None,
            }))
        });
        tx.agents
            .expect_get()
            .return_once(move |_, _| Ok(Some(agent)));
        tx.messages.expect_list().return_once(move |_| Ok(messages));
        let parent = Arc::new(Mutex::new(Vec::new()));
        let p = parent.clone();
        tx.runs
            .expect_insert()
            .withf(move |r, _| r.user_message_id == Some(question.id))
            .return_once(move |_, m| {
                *p.lock().unwrap() = m.iter().map(|m| m.parent_id).collect::<Vec<_>>();
                Ok(())
            });
        // No quota: nothing is reserved.
        tx.tenant.expect_get().return_once(move || {
            Ok(Some(crate::services::testing::sample_tenant(
                tenant,
                crate::entities::TenantStatus::Active,
            )))
        });
        let executor = bare_executor(store_with_all(vec![tx]), ExecutionPolicy::default());
        let (started, _job) = executor.regenerate(&who, answer.id).await.unwrap();
        // Only the answer is stored: its question is the one already there.
        assert_eq!(
            *parent.lock().unwrap(),
            vec![Some(messages_question_id(&started))]
        );
        assert!(started.question.is_none());
    }

    fn messages_question_id(started: &StartedRun) -> MessageId {
        started.run.user_message_id.unwrap()
    }

    /// An executor of `store` whose other ports expect nothing (for what happens before a run
    /// executes).
    fn bare_executor(store: Arc<dyn Store>, policy: ExecutionPolicy) -> Executor {
        Executor::new(
            ExecutionPorts {
                store,
                clock: fixed_clock(),
                models: Arc::new(MockChatModels::new()),
                events: Arc::new(MockRunEventLog::new()),
                leases: Arc::new(MockRunLeases::new()),
                secrets: Arc::new(crate::ports::MockSecretBox::new()),
                provider_models: Arc::new(crate::ports::MockProviderModels::new()),
            },
            SearchService::new(store_with_all(Vec::new()), Embedders::new()),
            Vec::new(),
            policy,
        )
    }

    /// A store whose transactions each read `runs` (one a transaction) and the answer.
    fn stored_runs(tenant: TenantId, runs: Vec<Run>, answer: &Message) -> Arc<dyn Store> {
        let txs = runs
            .into_iter()
            .map(|run| {
                let mut tx = FakeTx::new(tenant);
                tx.runs.expect_get().return_once(move |_| Ok(Some(run)));
                let answer = answer.clone();
                tx.messages
                    .expect_get()
                    .return_once(move |_| Ok(Some(answer)));
                tx
            })
            .collect();
        store_with_all(txs)
    }

    /// The turn `case` started, and its caller.
    fn started_turn(case: &Case) -> (StartedRun, Message, Principal) {
        let answer = case.messages.last().unwrap().clone();
        let who = crate::services::testing::user_principal(
            case.tenant,
            UserId::new(),
            crate::principal::Role::Admin,
        );
        let started = StartedRun {
            run: case.run.clone(),
            question: None,
            answer: answer.clone(),
        };
        (started, answer, who)
    }

    #[tokio::test]
    async fn a_turn_whose_run_ended_here_is_answered_with_its_end_without_reading_anything() {
        let case = Case::new(0, 0, Vec::new());
        let (started, answer, who) = started_turn(&case);
        let ended = EndedRun {
            run: Run {
                status: RunStatus::Completed,
                ..case.run.clone()
            },
            answer: Some(answer.clone()),
        };
        // The store and the event log expect nothing: a read would fail the test.
        let executor = bare_executor(store_with_all(Vec::new()), ExecutionPolicy::default());
        let finished = executor
            .finished(&who, &started, async { Some(ended) })
            .await
            .unwrap();
        assert_eq!(finished.run.status, RunStatus::Completed);
        assert_eq!(finished.answer.id, answer.id);
    }

    #[tokio::test]
    async fn a_turn_whose_run_did_not_end_here_follows_its_events_to_the_end() {
        let case = Case::new(0, 0, Vec::new());
        let (started, answer, who) = started_turn(&case);
        // Its execution here returned with the run still going (its lease was taken over).
        let going = Run {
            status: RunStatus::InProgress,
            ..case.run.clone()
        };
        let ended = Run {
            status: RunStatus::Completed,
            ..case.run.clone()
        };
        let mut events = MockRunEventLog::new();
        events.expect_read().times(1).return_once(|_, _, _, _, _| {
            Ok(vec![
                crate::ports::RunEvent {
                    seq: 1,
                    kind: crate::ports::RunEventKind::Delta,
                    data: json!({"text": "4"}),
                },
                crate::ports::RunEvent {
                    seq: 2,
                    kind: crate::ports::RunEventKind::Completed,
                    data: json!({}),
                },
            ])
        });
        let store = stored_runs(case.tenant, vec![going, ended], &answer);
        let executor = Executor::new(
            ExecutionPorts {
                store,
                clock: fixed_clock(),
                models: Arc::new(MockChatModels::new()),
                events: Arc::new(events),
                leases: Arc::new(MockRunLeases::new()),
                secrets: Arc::new(crate::ports::MockSecretBox::new()),
                provider_models: Arc::new(crate::ports::MockProviderModels::new()),
            },
            SearchService::new(store_with_all(Vec::new()), Embedders::new()),
            Vec::new(),
            ExecutionPolicy::default(),
        );
        let finished = executor
            .finished(&who, &started, async { None })
            .await
            .unwrap();
        assert_eq!(finished.run.status, RunStatus::Completed);
    }

    #[tokio::test]
    async fn a_tenant_with_too_many_runs_in_progress_is_refused() {
        let executor = bare_executor(
            store_with_all(Vec::new()),
            ExecutionPolicy {
                max_runs_per_tenant: 2,
                ..ExecutionPolicy::default()
            },
        );
        let (busy, other) = (TenantId::new(), TenantId::new());
        let first = executor.slot(busy).unwrap();
        let _second = executor.slot(busy).unwrap();
        assert!(matches!(executor.slot(busy), Err(Error::Busy)));
        assert!(
            executor.slot(other).is_ok(),
            "another tenant is not held up"
        );
        drop(first);
        assert!(executor.slot(busy).is_ok(), "a finished run frees its slot");
    }

    #[tokio::test]
    async fn a_spent_quota_refuses_a_completion_before_anything_is_stored() {
        let who = crate::services::testing::admin();
        let tenant = who.tenant().unwrap();
        let case = Case::new(0, 0, Vec::new());
        let agent = case.agent.clone();
        let mut tx = FakeTx::new(tenant);
        tx.agents
            .expect_get_by_slug()
            .return_once(move |_| Ok(Some(agent)));
        tx.tenant.expect_get().return_once(move || {
            Ok(Some(crate::entities::Tenant {
                daily_token_quota: Some(1_000),
                ..crate::services::testing::sample_tenant(
                    tenant,
                    crate::entities::TenantStatus::Active,
                )
            }))
        });
        tx.usage
            .expect_reserve()
            .withf(|_, quota, tokens| *quota == 1_000 && *tokens == 0)
            .return_once(|_, _, _| Ok(false));
        tx.runs.expect_insert().never();
        let executor = bare_executor(store_with_all(vec![tx]), ExecutionPolicy::default());
        let (live, _answers) = tokio::sync::mpsc::unbounded_channel();
        let turn = ClientTurn::new(
            vec![ChatMessage::new(ChatRole::User, "Hello?")],
            Vec::new(),
            None,
            None,
            live,
        );
        let refused = executor.start_completion(&who, "rockets", turn).await;
        let Err(Error::QuotaExceeded { retry_after_secs }) = refused else {
            panic!("expected the quota to refuse, got {refused:?}");
        };
        assert!((1..=86_400).contains(&retry_after_secs));
    }
}
