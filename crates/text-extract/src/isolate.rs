//! Parsing untrusted documents away from the worker.
//!
//! Each parse runs on a dedicated OS thread with a [`STACK_BYTES`] stack, inside `catch_unwind`,
//! while the async side waits on a oneshot channel under a time limit:
//!
//! - **A stack overflow in Rust is not a panic: it aborts the whole process**, whatever
//!   `catch_unwind` says. Parsers of nested formats recurse (pdf-extract without bounds), so the
//!   stack is large; the PDF module also refuses the known unbounded recursions before parsing.
//! - A panic (pdf-extract `unwrap`s freely) becomes [`ExtractError::Corrupt`].
//! - A thread cannot be killed. One that overruns its time limit is detached and keeps running
//!   until its parser returns; the job's flag is raised so that a parser which checks it (the PDF
//!   output device does, on every character) stops early. html5ever is quadratic in nesting depth
//!   and cannot be interrupted, so a hostile page may keep a core busy for a while after its
//!   time-out (about a minute for 100,000 nested elements on this project's machines).
//! - Threads alive at once, detached ones included, are capped by a semaphore whose permit the
//!   thread holds until it ends, so runaways cannot pile up. Waiting for a permit counts against
//!   the time limit: when runaways hold every permit, new documents time out rather than queue
//!   forever.
//!
//! These threads bound a parse in time, not in memory. The server therefore runs the whole
//! extraction in a child process with hard limits (the `sandbox` module), where a runaway is
//! killed; this module is what runs inside the child.

use std::any::Any;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use domain::ports::ExtractError;
use tokio::sync::{Semaphore, oneshot};

/// Stack of a parse thread. Memory is reserved, not committed: only the pages a parse touches count.
pub(crate) const STACK_BYTES: usize = 64 * 1024 * 1024;

/// Runs `job` on its own big-stack thread, turning a panic into [`ExtractError::Corrupt`] and an
/// overrun of `limit` into [`ExtractError::TimedOut`]. Waiting for one of `slots` counts against
/// `limit`: when every slot is held by runaway threads, new documents time out instead of queueing
/// forever. The job gets a flag that is raised when nobody waits for its answer any more.
pub(crate) async fn run_isolated<F>(
    job: F,
    limit: Duration,
    slots: Arc<Semaphore>,
) -> Result<String, ExtractError>
where
    F: FnOnce(&AtomicBool) -> Result<String, ExtractError> + Send + 'static,
{
    let cancel = Arc::new(AtomicBool::new(false));
    // Raised on every way out of this function, including the caller dropping the future.
    let _raise_on_exit = RaiseOnDrop(Arc::clone(&cancel));
    let work = async move {
        let permit = slots
            .acquire_owned()
            .await
            .map_err(|_| ExtractError::Internal("the parse thread pool is closed".to_owned()))?;
        let (tx, rx) = oneshot::channel();
        thread::Builder::new()
            .name("text-extract".to_owned())
            .stack_size(STACK_BYTES)
            .spawn(move || {
                // Held until the thread ends, even after the caller has given up on it.
                let _permit = permit;
                let outcome = panic::catch_unwind(AssertUnwindSafe(|| job(&cancel)))
                    .unwrap_or_else(|payload| {
                        Err(ExtractError::Corrupt(format!(
                            "the parser failed: {}",
                            panic_message(payload.as_ref())
                        )))
                    });
                // The receiver is gone when the caller timed out; nobody is left to tell.
                let _ = tx.send(outcome);
            })
            .map_err(|e| ExtractError::Internal(format!("cannot start a parse thread: {e}")))?;
        rx.await.map_err(|_| {
            ExtractError::Internal("the parse thread ended without an answer".to_owned())
        })?
    };
    match tokio::time::timeout(limit, work).await {
        Ok(outcome) => outcome,
        Err(_) => Err(ExtractError::TimedOut(whole_seconds(limit))),
    }
}

struct RaiseOnDrop(Arc<AtomicBool>);

impl Drop for RaiseOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Seconds for the error message, rounded up so that a sub-second limit does not read as "0 s".
fn whole_seconds(limit: Duration) -> u64 {
    limit.as_secs() + u64::from(limit.subsec_nanos() > 0)
}

pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots() -> Arc<Semaphore> {
        Arc::new(Semaphore::new(1))
    }

    #[tokio::test]
    async fn panics_become_corrupt() {
        let outcome = run_isolated(|_| panic!("boom"), Duration::from_secs(5), slots()).await;
        assert_eq!(
            outcome,
            Err(ExtractError::Corrupt("the parser failed: boom".to_owned()))
        );
    }

    #[tokio::test]
    async fn overruns_time_out_and_are_told_to_stop() {
        let stopped = Arc::new(AtomicBool::new(false));
        let seen = Arc::clone(&stopped);
        let slots = slots();
        let outcome = run_isolated(
            move |cancel| {
                while !cancel.load(Ordering::Relaxed) {
                    thread::sleep(Duration::from_millis(5));
                }
                seen.store(true, Ordering::Relaxed);
                Ok(String::new())
            },
            Duration::from_millis(100),
            Arc::clone(&slots),
        )
        .await;
        assert_eq!(outcome, Err(ExtractError::TimedOut(1)));
        // The detached thread sees the flag, ends, and gives its slot back.
        let permit = tokio::time::timeout(Duration::from_secs(5), slots.acquire())
            .await
            .expect("the runaway thread should release its slot");
        drop(permit);
        assert!(stopped.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn all_slots_held_by_runaways_means_time_out_not_a_queue() {
        let slots = Arc::new(Semaphore::new(0));
        let outcome = run_isolated(|_| Ok("x".to_owned()), Duration::from_millis(50), slots).await;
        assert_eq!(outcome, Err(ExtractError::TimedOut(1)));
    }

    #[tokio::test]
    async fn the_thread_has_a_big_stack() {
        // 6 to 20 MiB of frames (release to debug): past the 2 MiB of a default spawned thread.
        fn recurse(n: usize) -> usize {
            let frame = std::hint::black_box([0u8; 1024]);
            if n == 0 {
                usize::from(frame[0])
            } else {
                recurse(n - 1) + usize::from(std::hint::black_box(frame)[1])
            }
        }
        let outcome = run_isolated(
            |_| Ok(recurse(6_000).to_string()),
            Duration::from_secs(30),
            slots(),
        )
        .await;
        assert_eq!(outcome, Ok("0".to_owned()));
    }
}
