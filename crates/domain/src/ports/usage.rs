//! Metering: one record per metered model or embedding call, and the counter per tenant and UTC
//! day that a daily token quota is held against (tokens used, and tokens reserved by runs in
//! progress, so that concurrent runs cannot overshoot the quota by more than one run's answer).

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};

use crate::entities::Owner;
use crate::ids::{AgentId, RunId};
use crate::ports::{StoreResult, TokenUsage};

/// What a metered call was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageKind {
    Chat,
    Embedding,
}

impl UsageKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Chat => "chat",
            Self::Embedding => "embedding",
        }
    }
}

/// One metered call (a run's model turns together, or one embedding call).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRecord {
    pub id: uuid::Uuid,
    /// The UTC day it counts for.
    pub day: NaiveDate,
    pub at: DateTime<Utc>,
    pub kind: UsageKind,
    /// Who made the call; `None` for the platform's own work (ingestion).
    pub principal: Option<Owner>,
    pub agent_id: Option<AgentId>,
    pub run_id: Option<RunId>,
    /// `provider/name` of a chat model; the space id of an embedding.
    pub provider: String,
    pub model: String,
    pub usage: TokenUsage,
    /// Whether it counts against the daily quota (calls made through the API do; ingestion's
    /// embeddings do not).
    pub counted: bool,
}

impl UsageRecord {
    /// The tokens it counts against the quota.
    #[must_use]
    pub fn counted_tokens(&self) -> u64 {
        if self.counted {
            u64::from(self.usage.prompt_tokens) + u64::from(self.usage.completion_tokens)
        } else {
            0
        }
    }
}

/// Tokens a run holds reserved against the quota of one day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reservation {
    pub day: NaiveDate,
    pub tokens: u64,
}

/// What a usage summary is grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageGroup {
    Day,
    Agent,
    Principal,
    Model,
}

/// Which records a summary adds up: days `from..=to`, of one principal or of everyone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageFilter {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub principal: Option<Owner>,
    pub group_by: UsageGroup,
}

/// One group of a summary. `key` is the day (`YYYY-MM-DD`), the agent id, the principal
/// (`user:<id>`, `api_key:<id>`, or `platform` for ingestion), or the model (`provider/name`, or
/// `embedding/<space>`); records without an agent group under `none`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageRow {
    pub key: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub runs: u64,
}

/// A tenant's metering, within its transaction.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait UsageRepo: Send {
    /// Admits a run about to start and reserves `tokens` of `day` for it, provided something of
    /// the quota is left (`used + reserved < quota`); `false` when it is spent. Concurrent
    /// reservations of one tenant and day take turns (the day's counter is locked until the
    /// transaction ends).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn reserve(&mut self, day: NaiveDate, quota: u64, tokens: u64) -> StoreResult<bool>;

    /// Reserves `more` for a run in progress, provided what is used and reserved then stays
    /// within the quota but for `allowance` (the run's own answer ceiling, which may go over it);
    /// `false` otherwise (nothing changes).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn reserve_more(
        &mut self,
        day: NaiveDate,
        quota: u64,
        more: u64,
        allowance: u64,
    ) -> StoreResult<bool>;

    /// Records metered calls: adds what they count to their days' use, and gives back what
    /// `release` held reserved, in one statement (a run's calls lock their day's counter once,
    /// until the commit).
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn record(
        &mut self,
        records: &[UsageRecord],
        release: Option<Reservation>,
    ) -> StoreResult<()>;

    /// Tokens counted against the quota on `day`, and those reserved by runs in progress.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn day(&mut self, day: NaiveDate) -> StoreResult<(u64, u64)>;

    /// The records of the filter, added up by group, in key order.
    ///
    /// # Errors
    /// [`crate::ports::StoreError::Internal`] on storage failure.
    async fn summary(&mut self, filter: &UsageFilter) -> StoreResult<Vec<UsageRow>>;
}
