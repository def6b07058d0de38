//! Agents.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::entities::{Agent, AgentChanges, AgentFilter, NewAgent};
use crate::ids::AgentId;
use crate::page::{Page, PageRequest};
use crate::ports::StoreResult;
use crate::principal::Actor;
use crate::values::Slug;

#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait AgentRepo: Send {
    /// # Errors
    /// [`Conflict::AgentSlugTaken`] when a live agent has the slug.
    async fn insert(&mut self, agent: &NewAgent, now: DateTime<Utc>) -> StoreResult<Agent>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn get(&mut self, id: AgentId, include_deleted: bool) -> StoreResult<Option<Agent>>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn list(&mut self, filter: &AgentFilter, page: PageRequest) -> StoreResult<Page<Agent>>;

    /// The live agent with this slug.
    ///
    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn get_by_slug(&mut self, slug: &Slug) -> StoreResult<Option<Agent>>;

    /// Changes a live agent; `None` when there is none with that id.
    ///
    /// # Errors
    /// [`Conflict::AgentSlugTaken`] when the new slug belongs to another live agent.
    async fn update(
        &mut self,
        id: AgentId,
        changes: &AgentChanges,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Agent>>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn soft_delete(
        &mut self,
        id: AgentId,
        by: Actor,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;

    /// # Errors
    /// [`Conflict::AgentSlugTaken`] when a live agent took the slug meanwhile.
    async fn restore(&mut self, id: AgentId, now: DateTime<Utc>) -> StoreResult<Option<Agent>>;

    /// # Errors
    /// [`StoreError::Internal`] on storage failure.
    async fn purge(&mut self, id: AgentId) -> StoreResult<bool>;
}
