//! The numbered events of a run, kept where any API replica can read them.

use std::time::Duration;

use async_trait::async_trait;

use crate::ids::{RunId, TenantId};

/// What happened in a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunEventKind {
    Started,
    Delta,
    ToolCall,
    ToolResult,
    Citations,
    Completed,
    Failed,
    Cancelled,
}

impl RunEventKind {
    pub const ALL: [Self; 8] = [
        Self::Started,
        Self::Delta,
        Self::ToolCall,
        Self::ToolResult,
        Self::Citations,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The event's name on the wire (`event:` of Server-Sent Events).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Started => "run.started",
            Self::Delta => "message.delta",
            Self::ToolCall => "tool.call",
            Self::ToolResult => "tool.result",
            Self::Citations => "citations",
            Self::Completed => "run.completed",
            Self::Failed => "run.failed",
            Self::Cancelled => "run.cancelled",
        }
    }

    /// # Errors
    /// When the text names no event.
    pub fn parse(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or_else(|| format!("unknown run event {text:?}"))
    }

    /// Whether the event ends the run (exactly one such event is written per run).
    #[must_use]
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

/// One event, numbered from 1 within its run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunEvent {
    pub seq: u64,
    pub kind: RunEventKind,
    pub data: serde_json::Value,
}

/// Why the event log failed.
#[derive(Debug, thiserror::Error)]
#[error("run event log failed: {0}")]
pub struct EventLogError(pub String);

/// How long a run's events are kept after it ends (documented in docs/api.md).
pub const EVENTS_KEPT_AFTER_END: Duration = Duration::from_secs(3600);

/// The event log of runs, shared by every replica.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait RunEventLog: Send + Sync {
    /// Appends an event numbered one above the run's last, atomically (the run's process and
    /// the reaper of dead runs may both write), and answers its number. A terminal event also
    /// starts the countdown of [`EVENTS_KEPT_AFTER_END`].
    ///
    /// # Errors
    /// When the log cannot be written.
    async fn append(
        &self,
        tenant: TenantId,
        run: RunId,
        kind: RunEventKind,
        data: &serde_json::Value,
    ) -> Result<u64, EventLogError>;

    /// Appends `events`, numbered from `first` on, in one step, if the run's last number is
    /// `first - 1`; answers whether they are in the log (also when an earlier try of this same
    /// call had appended them). The process that runs the run numbers its events itself (so that
    /// its own followers have them before the log does): `false` means someone else wrote
    /// meanwhile (the reaper, once the run's lease ran out), and nothing was appended. A
    /// terminal event among them also starts the countdown of [`EVENTS_KEPT_AFTER_END`].
    ///
    /// # Errors
    /// When the log cannot be written.
    async fn append_numbered(
        &self,
        tenant: TenantId,
        run: RunId,
        first: u64,
        events: &[(RunEventKind, serde_json::Value)],
    ) -> Result<bool, EventLogError>;

    /// Events numbered above `after`, oldest first, at most `max`; when there are none yet, waits
    /// up to `wait` for one.
    ///
    /// # Errors
    /// When the log cannot be read.
    async fn read(
        &self,
        tenant: TenantId,
        run: RunId,
        after: u64,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<RunEvent>, EventLogError>;

    /// Asks whichever process runs `run` to stop it.
    ///
    /// # Errors
    /// When the request cannot be written.
    async fn request_cancel(&self, tenant: TenantId, run: RunId) -> Result<(), EventLogError>;

    /// Whether cancellation of `run` was asked for.
    ///
    /// # Errors
    /// When the log cannot be read.
    async fn cancel_requested(&self, tenant: TenantId, run: RunId) -> Result<bool, EventLogError>;
}
