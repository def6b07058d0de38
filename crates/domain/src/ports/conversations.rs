//! Conversations, their messages (a tree) and the runs that write answers.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::entities::{
    Agent, Conversation, ConversationFilter, Feedback, HistoryMessage, Message, MessageOutcome,
    NewConversation, Owner, Rating, Run, RunOutcome,
};
use crate::ids::{ConversationId, MessageId, RunId};
use crate::page::{Page, PageRequest};
use crate::ports::{Reservation, StoreResult, UsageRecord};
use crate::principal::Actor;

/// What a turn in a conversation starts from ([`ConversationRepo::get_for_turn`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TurnStart {
    pub conversation: Conversation,
    /// `None` once the agent is deleted.
    pub agent: Option<Agent>,
    /// The tenant's daily token quota; `None` when it has none.
    pub daily_token_quota: Option<u64>,
}

/// Everything a run's end stores, in one statement ([`RunRepo::finish`]).
#[derive(Clone, Debug, PartialEq)]
pub struct RunEnd {
    pub outcome: RunOutcome,
    /// The open answer the run ends, when it answers in a conversation.
    pub answer: Option<(MessageId, MessageOutcome)>,
    /// What the run used, and the reservation those records replace.
    pub usage: Vec<UsageRecord>,
    pub release: Option<Reservation>,
    pub at: DateTime<Utc>,
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait ConversationRepo: Send {
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn insert(
        &mut self,
        conversation: &NewConversation,
        now: DateTime<Utc>,
    ) -> StoreResult<Conversation>;

    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn get(
        &mut self,
        id: ConversationId,
        include_deleted: bool,
    ) -> StoreResult<Option<Conversation>>;

    /// A live conversation with what a turn in it starts from, read at once: its agent while
    /// that is live too, and the tenant's quota.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn get_for_turn(&mut self, id: ConversationId) -> StoreResult<Option<TurnStart>>;

    /// Newest first.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn list(
        &mut self,
        filter: &ConversationFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Conversation>>;

    /// Renames a live conversation; `None` when there is none.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn set_title(
        &mut self,
        id: ConversationId,
        title: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Conversation>>;

    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn soft_delete(
        &mut self,
        id: ConversationId,
        by: Actor,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn restore(
        &mut self,
        id: ConversationId,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Conversation>>;

    /// Removes the conversation with its messages, runs and feedback.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn purge(&mut self, id: ConversationId) -> StoreResult<bool>;
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait MessageRepo: Send {
    /// Inserts messages in one statement, in order (a message may have an earlier one of the
    /// same call as its parent).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure (a parent in another
    /// conversation is refused by the schema).
    async fn insert(&mut self, messages: &[Message]) -> StoreResult<()>;

    /// A message of a live conversation.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn get(&mut self, id: MessageId) -> StoreResult<Option<Message>>;

    /// Every message of the conversation, oldest first, in one query.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn list(&mut self, conversation: ConversationId) -> StoreResult<Vec<Message>>;

    /// Every message of the conversation as a turn's history needs it, oldest first, in one
    /// query: what [`Self::list`] reads less what a prompt never holds (citations, usage).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn history(&mut self, conversation: ConversationId) -> StoreResult<Vec<HistoryMessage>>;

    /// Marks an open message as being written and keeps what was generated so far.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn write_partial(&mut self, id: MessageId, content: &str) -> StoreResult<()>;

    /// Moves a message under another parent (an answer under the tool results it used).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn reparent(&mut self, id: MessageId, parent: MessageId) -> StoreResult<()>;

    /// Sets `owner`'s rating of a message, replacing an earlier one.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn put_feedback(
        &mut self,
        message: MessageId,
        owner: Owner,
        rating: Rating,
        comment: Option<String>,
        now: DateTime<Utc>,
    ) -> StoreResult<Feedback>;
}

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RunRepo: Send {
    /// Stores a new run, and in the same statement the messages it adds to its conversation
    /// (as [`MessageRepo::insert`]). A run in a conversation is activity there: the
    /// conversation's `last_active_at` moves to the run's `created_at` too.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn insert(&mut self, run: &Run, messages: &[Message]) -> StoreResult<()>;

    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn get(&mut self, id: RunId) -> StoreResult<Option<Run>>;

    /// Extends the lease of a run in progress; `false` when it has ended meanwhile.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn extend_lease(&mut self, id: RunId, lease_until: DateTime<Utc>) -> StoreResult<bool>;

    /// Records what a run in progress holds reserved against the daily quota.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn hold(&mut self, id: RunId, reserved: crate::ports::Reservation) -> StoreResult<()>;

    /// Ends a run that has not ended, in one statement: the run, its open answer, its usage
    /// records with the day's counter (as [`crate::ports::UsageRepo::record`]), and its
    /// conversation's `last_active_at` (to `end.at`). Answers the run and the answer as
    /// stored; `None`, with nothing written, when the run had ended (its lease ran out).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn finish(
        &mut self,
        id: RunId,
        end: &RunEnd,
    ) -> StoreResult<Option<(Run, Option<Message>)>>;
}

/// What a run ended by [`RunLeases::expire`] says, with error code `incomplete`.
pub const INCOMPLETE_MESSAGE: &str = "the process running this answer stopped before it finished";

/// A run whose process stopped holding its lease, as ended by [`RunLeases::expire`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredRun {
    pub tenant: crate::ids::TenantId,
    pub id: RunId,
}

/// Runs across tenants (platform role): ending those whose process died.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RunLeases: Send + Sync {
    /// Ends every unfinished run whose lease ran out before `now` as `failed` with code
    /// `incomplete` and [`INCOMPLETE_MESSAGE`], and its answer likewise, keeping what had been
    /// generated.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn expire(&self, now: DateTime<Utc>) -> StoreResult<Vec<ExpiredRun>>;
}
