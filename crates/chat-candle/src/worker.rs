//! The generation thread: it owns the weights and answers one request at a time, taken from a
//! bounded queue, sending deltas back over the request's own channel.

use std::error::Error;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use candle_transformers::generation::{LogitsProcessor, Sampling};
use candle_transformers::models::quantized_llama::ModelWeights;
use candle_transformers::utils::apply_repeat_penalty;
use domain::ports::{ChatDelta, ChatError, TokenUsage};
use tokio::sync::mpsc::UnboundedSender;

use crate::tokenizer::{GgufTokenizer, TextDecoder};

/// Logits of tokens already in the answer are divided by this (multiplied when negative).
const REPEAT_PENALTY: f32 = 1.1;
/// How many of the answer's last tokens the penalty looks at.
const REPEAT_WINDOW: usize = 64;
/// The prompt goes through the model this many tokens at a time. The attention scores of a
/// pass are `heads × chunk × (position + chunk)` floats: at most 10 MB at the window's end,
/// against 600 MB (and each of its temporaries as much) for a whole 4096-token prompt in one
/// pass. A dropped stream is seen between chunks, well under a second apart on two cores; and
/// a long prompt went faster in chunks than whole (1763 tokens: 23 s against 31 s).
const PREFILL_CHUNK: usize = 64;

type BoxError = Box<dyn Error + Send + Sync>;

/// What a request's channel carries: deltas, then `Usage`; or one error.
pub(crate) type DeltaSender = UnboundedSender<Result<ChatDelta, ChatError>>;

/// One request, tokenized and checked against the context window.
pub(crate) struct Job {
    pub(crate) prompt: Vec<u32>,
    /// At most this many answer tokens: the request's ceiling, within the context window.
    pub(crate) max_tokens: usize,
    /// Below `1e-6`: the most likely token each time.
    pub(crate) temperature: f64,
    pub(crate) seed: u64,
    /// Closed by the receiver when the caller drops its stream: the generation stops.
    pub(crate) deltas: DeltaSender,
}

/// Requests taken, running or waiting, against how many may be.
pub(crate) struct Slots {
    taken: AtomicUsize,
    capacity: usize,
    /// A moving average of how long a request takes, for `Retry-After`.
    average_ms: AtomicU64,
}

impl Slots {
    /// Room for one running request and `waiting` more.
    pub(crate) const fn new(waiting: usize) -> Self {
        Self {
            taken: AtomicUsize::new(0),
            capacity: waiting.saturating_add(1),
            average_ms: AtomicU64::new(0),
        }
    }

    /// Takes a slot, or says in how many seconds one may be free.
    pub(crate) fn take(&self) -> Result<(), u32> {
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| {
                (taken < self.capacity).then_some(taken + 1)
            })
            .map(drop)
            .map_err(|taken| {
                let ahead = u64::try_from(taken).unwrap_or(u64::MAX);
                let ms = self
                    .average_ms
                    .load(Ordering::Relaxed)
                    .saturating_mul(ahead);
                u32::try_from(ms.div_ceil(1000).clamp(1, 60)).unwrap_or(60)
            })
    }

    /// Gives back a slot whose request took `took`.
    pub(crate) fn release(&self, took: Duration) {
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX);
        let old = self.average_ms.load(Ordering::Relaxed);
        let new = if old == 0 { ms } else { (3 * old + ms) / 4 };
        self.average_ms.store(new, Ordering::Relaxed);
        self.give_back();
    }

    /// Gives back a slot whose request never ran.
    pub(crate) fn give_back(&self) {
        self.taken.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The model and what it needs to answer.
pub(crate) struct Worker {
    pub(crate) weights: ModelWeights,
    pub(crate) tokenizer: Arc<GgufTokenizer>,
    pub(crate) slots: Arc<Slots>,
}

impl Worker {
    /// Answers requests until every sender of the queue is gone.
    pub(crate) fn run(&self, jobs: &Receiver<Job>) {
        for job in jobs {
            let started = Instant::now();
            guarded(&job, |job| self.generate(job));
            self.slots.release(started.elapsed());
        }
    }

    /// Streams the answer to `job`, then its usage; stops early, without usage, when the
    /// caller is gone.
    fn generate(&self, job: &Job) -> Result<(), BoxError> {
        let mut decoder = TextDecoder::new(&self.tokenizer);
        let Some(answer) = self.answer(job, &mut decoder)? else {
            return Ok(());
        };
        if let Some(piece) = decoder.finish()? {
            let _ = job.deltas.send(Ok(ChatDelta::Text(piece)));
        }
        let _ = job.deltas.send(Ok(ChatDelta::Usage(TokenUsage {
            prompt_tokens: count(job.prompt.len()),
            completion_tokens: count(answer.len()),
        })));
        Ok(())
    }

    /// The answer's tokens, their text sent on the way; `None` when the caller is gone.
    fn answer(&self, job: &Job, decoder: &mut TextDecoder) -> Result<Option<Vec<u32>>, BoxError> {
        let mut answer = Vec::with_capacity(job.max_tokens);
        if job.max_tokens == 0 {
            return Ok(Some(answer));
        }
        // A clone shares the weights (reference-counted) and starts with no KV cache and no
        // cached attention masks: nothing of one request reaches the next, and the masks of
        // past prompt lengths do not pile up for the life of the process.
        let mut model = self.weights.clone();
        let mut sampler = LogitsProcessor::from_sampling(
            job.seed,
            if job.temperature < 1e-6 || job.temperature.is_nan() {
                Sampling::ArgMax
            } else {
                Sampling::All {
                    temperature: job.temperature,
                }
            },
        );
        let Some(mut logits) = feed(&mut model, &job.prompt, 0, &job.deltas)? else {
            return Ok(None);
        };
        loop {
            let recent = &answer[answer.len().saturating_sub(REPEAT_WINDOW)..];
            if !recent.is_empty() {
                logits = apply_repeat_penalty(&logits, REPEAT_PENALTY, recent)?;
            }
            let token = sampler.sample(&logits)?;
            if self.tokenizer.is_stop(token) {
                return Ok(Some(answer));
            }
            answer.push(token);
            if let Some(piece) = decoder.push(token)?
                && job.deltas.send(Ok(ChatDelta::Text(piece))).is_err()
            {
                return Ok(None);
            }
            if answer.len() == job.max_tokens {
                return Ok(Some(answer));
            }
            let position = job.prompt.len() + answer.len() - 1;
            let Some(next) = feed(&mut model, &[token], position, &job.deltas)? else {
                return Ok(None);
            };
            logits = next;
        }
    }
}

/// Runs `tokens` through `model` from `position`, the prompt in chunks; the logits of the
/// next token, or `None` when the caller is gone (checked before each pass).
fn feed(
    model: &mut ModelWeights,
    tokens: &[u32],
    mut position: usize,
    deltas: &DeltaSender,
) -> Result<Option<Tensor>, BoxError> {
    let mut logits = None;
    for chunk in tokens.chunks(PREFILL_CHUNK) {
        if deltas.is_closed() {
            return Ok(None);
        }
        let input = Tensor::new(chunk, &Device::Cpu)?.unsqueeze(0)?;
        logits = Some(model.forward(&input, position)?.squeeze(0)?);
        position += chunk.len();
    }
    Ok(Some(logits.ok_or("no token to start from")?))
}

/// Runs `generate` for `job`; a failure or a panic becomes the stream's last item.
fn guarded<F>(job: &Job, generate: F)
where
    F: FnOnce(&Job) -> Result<(), BoxError>,
{
    let failure = match catch_unwind(AssertUnwindSafe(|| generate(job))) {
        Ok(Ok(())) => return,
        Ok(Err(e)) => format!("the generation failed: {e}"),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            format!("the generation thread panicked: {message}")
        }
    };
    let _ = job.deltas.send(Err(ChatError::Internal(failure)));
}

fn count(tokens: usize) -> u32 {
    u32::try_from(tokens).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use tokio::sync::mpsc::unbounded_channel;

    use super::*;

    fn job(deltas: DeltaSender) -> Job {
        Job {
            prompt: vec![1, 2, 3],
            max_tokens: 4,
            temperature: 0.0,
            seed: 0,
            deltas,
        }
    }

    #[test]
    fn a_panic_becomes_an_internal_error_on_the_stream() {
        let (sender, mut receiver) = unbounded_channel();
        guarded(&job(sender), |_| panic!("boom"));
        match receiver.try_recv() {
            Ok(Err(ChatError::Internal(message))) => assert!(message.contains("boom"), "{message}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_failure_becomes_an_internal_error_on_the_stream() {
        let (sender, mut receiver) = unbounded_channel();
        guarded(&job(sender), |_| Err("no memory".into()));
        assert!(matches!(
            receiver.try_recv(),
            Ok(Err(ChatError::Internal(m))) if m.contains("no memory")
        ));
    }

    #[test]
    fn slots_admit_one_running_and_the_waiting_then_refuse() {
        let slots = Slots::new(1);
        assert_eq!(slots.take(), Ok(()));
        assert_eq!(slots.take(), Ok(()));
        assert_eq!(slots.take(), Err(1));
        slots.release(Duration::from_secs(3));
        slots.release(Duration::from_secs(3));
        assert_eq!(slots.take(), Ok(()));
        assert_eq!(slots.take(), Ok(()));
        // Two requests ahead, three seconds each.
        assert_eq!(slots.take(), Err(6));
    }

    #[test]
    fn no_waiting_room_admits_only_the_running_request() {
        let slots = Slots::new(0);
        assert_eq!(slots.take(), Ok(()));
        assert!(slots.take().is_err());
    }
}
