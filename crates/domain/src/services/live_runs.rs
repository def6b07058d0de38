//! The events of the runs this process executes, as they happen.
//!
//! A run's events are numbered here, by the process that runs it, and handed at once to the
//! followers of the run in this process (the client that posted a streamed turn is one): they do
//! not wait for the shared event log. One writer task a run appends them to the shared log in
//! order, gathering whatever is waiting into one append, so the run never waits for the log
//! either. The log appends a batch only when its numbers follow the log's last one: when they do
//! not, someone else wrote (the reaper, once the run's lease ran out), and the run's followers
//! here read the shared log from then on, while the run stops (it is lost). Followers here may
//! then have seen a few events of the lost run that the shared log never gets: they are its
//! last words, followed by the reaper's `run.failed` as the log has it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::ids::{RunId, TenantId};
use crate::ports::{RunEvent, RunEventKind, RunEventLog};

/// The most events one append carries.
const MAX_BATCH: usize = 256;

/// How long the writer waits before it tries a failed append again.
const RETRY_AFTER: Duration = Duration::from_millis(100);

/// The runs this process executes, by id.
#[derive(Default)]
pub(crate) struct LiveRuns {
    runs: Mutex<HashMap<RunId, Arc<LiveRun>>>,
}

/// One run's events so far, and its writer.
pub(crate) struct LiveRun {
    state: Mutex<State>,
    /// The newest event's number, for waiting followers.
    newest: watch::Sender<u64>,
}

struct State {
    /// Every event of the run, numbered from 1 (`events[i].seq == i + 1`).
    events: Vec<RunEvent>,
    /// Where new events go to the shared log; `None` once the run has no more to write.
    writer: Option<mpsc::UnboundedSender<RunEvent>>,
    /// The shared log holds events this process did not write: its own are not the run's story
    /// any more.
    diverged: bool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LiveRuns {
    /// Starts keeping the events of `run`, to be executed here, and writing them to `log`, from
    /// now (before the run executes, so that a follower that comes first finds it here) until
    /// the answered guard drops.
    pub(crate) fn open(
        self: &Arc<Self>,
        tenant: TenantId,
        run: RunId,
        log: Arc<dyn RunEventLog>,
    ) -> LiveGuard {
        let (sender, receiver) = mpsc::unbounded_channel();
        let live = Arc::new(LiveRun {
            state: Mutex::new(State {
                events: Vec::new(),
                writer: Some(sender),
                diverged: false,
            }),
            newest: watch::Sender::new(0),
        });
        lock(&self.runs).insert(run, live.clone());
        LiveGuard {
            runs: self.clone(),
            run,
            writer: Some(tokio::spawn(write(log, tenant, run, live, receiver))),
        }
    }

    /// The run's events as they happen, when it executes here.
    pub(crate) fn get(&self, run: RunId) -> Option<Arc<LiveRun>> {
        lock(&self.runs).get(&run).cloned()
    }

    /// Adds an event of a run executing here (nothing once it is closed); answers whether the
    /// run's events still are its story (`false` once the shared log diverged).
    pub(crate) fn push(&self, run: RunId, kind: RunEventKind, data: Value) -> bool {
        self.get(run).is_none_or(|live| live.push(kind, data))
    }

    /// Whether the shared log took events of the run from someone else.
    pub(crate) fn diverged(&self, run: RunId) -> bool {
        self.get(run).is_some_and(|live| lock(&live.state).diverged)
    }

    /// No more events of `run` will come: once `writer` has written the last ones, the run is
    /// forgotten here (its followers read the shared log, which has them all).
    async fn close(&self, run: RunId, writer: JoinHandle<()>) {
        if let Some(live) = self.get(run) {
            lock(&live.state).writer = None;
        }
        if let Err(err) = writer.await {
            tracing::error!(run = %run, error = %err, "a run's event writer stopped");
        }
        lock(&self.runs).remove(&run);
    }
}

/// A run's place among the live runs, from its commit to the end of its execution (or to its
/// job's drop, when it never executes).
pub(crate) struct LiveGuard {
    runs: Arc<LiveRuns>,
    run: RunId,
    writer: Option<JoinHandle<()>>,
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let Some(writer) = self.writer.take() else {
            return;
        };
        let (runs, run) = (self.runs.clone(), self.run);
        // The last events reach the shared log after the answer is back with its caller.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move { runs.close(run, writer).await });
            }
            Err(_) => {
                writer.abort();
                lock(&runs.runs).remove(&run);
            }
        }
    }
}

#[cfg(test)]
impl LiveRuns {
    /// Waits until every run's events are written and the runs forgotten.
    pub(crate) async fn settled(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            if lock(&self.runs).is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("runs' events were not written");
    }
}

impl LiveRun {
    fn push(&self, kind: RunEventKind, data: Value) -> bool {
        let mut state = lock(&self.state);
        if state.diverged {
            return false;
        }
        let Some(writer) = state.writer.clone() else {
            return true;
        };
        let seq = u64::try_from(state.events.len()).unwrap_or(u64::MAX) + 1;
        let event = RunEvent { seq, kind, data };
        state.events.push(event.clone());
        if kind.is_terminal() {
            state.writer = None;
        }
        drop(state);
        // Followers first: woken first, they run first.
        self.newest.send_replace(seq);
        // The writer's end (a panic) loses the log, not the run: followers here still see it.
        let _ = writer.send(event);
        true
    }

    /// Events numbered above `after` (at most `max`), waiting up to `wait` for one when there
    /// are none yet; `None` when the shared log is to be read instead: it diverged, or the run
    /// stopped adding events without a terminal one (its lease was lost).
    pub(crate) async fn read(
        &self,
        after: u64,
        max: usize,
        wait: Duration,
    ) -> Option<Vec<RunEvent>> {
        // Subscribed before looking, so that an event added after the look still wakes it.
        let mut newest = self.newest.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            {
                let state = lock(&self.state);
                if state.diverged {
                    return None;
                }
                let from = usize::try_from(after).unwrap_or(usize::MAX);
                if from < state.events.len() {
                    return Some(
                        state.events[from..]
                            .iter()
                            .take(max.max(1))
                            .cloned()
                            .collect(),
                    );
                }
                // No more will come here: the shared log has the rest, if any.
                state.writer.as_ref()?;
            }
            match tokio::time::timeout_at(deadline, newest.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Some(Vec::new()),
            }
        }
    }

    fn diverge(&self) {
        let mut state = lock(&self.state);
        state.diverged = true;
        state.writer = None;
        drop(state);
        // Wakes the followers, who then read the shared log.
        self.newest.send_modify(|_| {});
    }
}

/// Appends the run's events to the shared log in order, each time all that is waiting. An
/// append that fails is tried again with the next (the log's numbers stay consecutive); what is
/// still unwritten when the run closes is tried once more, then given up (and logged).
async fn write(
    log: Arc<dyn RunEventLog>,
    tenant: TenantId,
    run: RunId,
    live: Arc<LiveRun>,
    mut receiver: mpsc::UnboundedReceiver<RunEvent>,
) {
    let mut unwritten: Vec<RunEvent> = Vec::new();
    let mut open = true;
    while open || !unwritten.is_empty() {
        if unwritten.is_empty() {
            match receiver.recv().await {
                Some(event) => unwritten.push(event),
                None => break,
            }
        }
        while unwritten.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(event) => unwritten.push(event),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let batch: Vec<(RunEventKind, Value)> =
            unwritten.iter().map(|e| (e.kind, e.data.clone())).collect();
        match log
            .append_numbered(tenant, run, unwritten[0].seq, &batch)
            .await
        {
            Ok(true) => unwritten.clear(),
            Ok(false) => {
                tracing::warn!(run = %run, "the run's event log was written by another process");
                live.diverge();
                return;
            }
            Err(err) if open => {
                tracing::warn!(run = %run, error = %err, "events were not written; trying again");
                tokio::time::sleep(RETRY_AFTER).await;
            }
            Err(err) => {
                tracing::warn!(run = %run, error = %err, events = unwritten.len(), "events were not written");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ports::{EventLogError, MockRunEventLog};

    type Batches = Arc<Mutex<Vec<(u64, Vec<RunEventKind>)>>>;

    /// A log that records each append, answering `answers` in turn (then `Ok(true)`).
    fn log(answers: Vec<Result<bool, EventLogError>>) -> (Arc<dyn RunEventLog>, Batches) {
        let batches: Batches = Arc::default();
        let answers = Mutex::new(answers.into_iter());
        let mut log = MockRunEventLog::new();
        let seen = batches.clone();
        log.expect_append_numbered()
            .returning(move |_, _, first, events| {
                seen.lock()
                    .unwrap()
                    .push((first, events.iter().map(|(kind, _)| *kind).collect()));
                lock(&answers).next().unwrap_or(Ok(true))
            });
        (Arc::new(log), batches)
    }

    fn kinds(events: &[RunEvent]) -> Vec<(u64, RunEventKind)> {
        events.iter().map(|e| (e.seq, e.kind)).collect()
    }

    #[tokio::test]
    async fn followers_here_have_events_before_the_log_which_gets_them_in_order() {
        let (log, batches) = log(Vec::new());
        let runs = Arc::new(LiveRuns::default());
        let run = RunId::new();
        let guard = runs.open(TenantId::new(), run, log);
        runs.push(run, RunEventKind::Started, json!({}));
        runs.push(run, RunEventKind::Delta, json!({"text": "a"}));
        // Nothing has yielded yet: the writer has not run, and a follower has both already.
        assert!(batches.lock().unwrap().is_empty());
        let live = runs.get(run).unwrap();
        let read = live.read(0, 10, Duration::ZERO).await.unwrap();
        assert_eq!(
            kinds(&read),
            [(1, RunEventKind::Started), (2, RunEventKind::Delta)]
        );
        // A follower waiting for more is woken by the next event.
        let waiting = tokio::spawn({
            let live = live.clone();
            async move { live.read(2, 10, Duration::from_secs(5)).await }
        });
        tokio::task::yield_now().await;
        runs.push(run, RunEventKind::Completed, json!({}));
        let read = waiting.await.unwrap().unwrap();
        assert_eq!(kinds(&read), [(3, RunEventKind::Completed)]);
        // Nothing is added after the terminal event.
        runs.push(run, RunEventKind::Delta, json!({"text": "late"}));
        drop(guard);
        runs.settled().await;
        let written: Vec<(u64, Vec<RunEventKind>)> = batches.lock().unwrap().clone();
        let mut next = 1;
        for (first, kinds) in &written {
            assert_eq!(*first, next, "each append follows the last: {written:?}");
            next += kinds.len() as u64;
        }
        assert_eq!(next, 4, "every event once: {written:?}");
        assert!(
            runs.get(run).is_none(),
            "written, the run is forgotten here"
        );
    }

    #[tokio::test]
    async fn a_failed_append_is_tried_again_with_what_came_after() {
        let (log, batches) = log(vec![Err(EventLogError("down".into()))]);
        let runs = Arc::new(LiveRuns::default());
        let run = RunId::new();
        let guard = runs.open(TenantId::new(), run, log);
        runs.push(run, RunEventKind::Started, json!({}));
        tokio::task::yield_now().await;
        runs.push(run, RunEventKind::Completed, json!({}));
        drop(guard);
        runs.settled().await;
        let written = batches.lock().unwrap().clone();
        let last = written.last().unwrap();
        assert_eq!(
            *last,
            (1, vec![RunEventKind::Started, RunEventKind::Completed]),
            "the failed append's events go again, first: {written:?}"
        );
    }

    #[tokio::test]
    async fn a_log_written_by_someone_else_sends_followers_to_it_and_stops_the_run() {
        let (log, _) = log(vec![Ok(false)]);
        let runs = Arc::new(LiveRuns::default());
        let run = RunId::new();
        let _guard = runs.open(TenantId::new(), run, log);
        runs.push(run, RunEventKind::Started, json!({}));
        let live = runs.get(run).unwrap();
        // The writer runs, and finds the log's numbers taken.
        for _ in 0..100 {
            if runs.diverged(run) {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(runs.diverged(run), "the run learns it is lost");
        assert!(live.read(0, 10, Duration::ZERO).await.is_none());
        assert!(
            !runs.push(run, RunEventKind::Delta, json!({"text": "a"})),
            "its events are not the run's story any more"
        );
    }
}
