use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};

use async_trait::async_trait;
use candle_core::Device;
use candle_core::quantized::gguf_file;
use candle_transformers::models::quantized_llama::{MAX_SEQ_LEN, ModelWeights};
use domain::ports::{ChatDelta, ChatError, ChatModel, ChatRequest, ChatStream};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::error::LoadError;
use crate::prompt::prompt_tokens;
use crate::requantize::requantized;
use crate::tokenizer::{BuildError, GgufTokenizer};
use crate::worker::{Job, Slots, Worker};

/// How a [`LocalChatModel`] runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalChatOptions {
    /// Requests that may wait while one runs; beyond them a request is refused as busy at once.
    pub queue_capacity: usize,
    /// Threads for the model's kernels; `None`: Candle's own count, one per physical core
    /// unless the environment says otherwise. Candle runs its kernels on one process-wide pool
    /// that it sizes once, at its first use, from `CANDLE_NUM_THREADS` (else
    /// `RAYON_NUM_THREADS`); nothing can resize it from code. So `Some(n)` is a check: loading
    /// fails unless that pool has `n` threads, and the way to get them is
    /// `CANDLE_NUM_THREADS=n` in the process's environment.
    pub threads: Option<usize>,
    /// Sampling seed: request `k` (counting from 0) samples with `seed + k`, so a process that
    /// gets the same requests in the same order gives the same answers.
    pub seed: u64,
}

impl Default for LocalChatOptions {
    fn default() -> Self {
        Self {
            queue_capacity: 8,
            threads: None,
            seed: 299_792_458,
        }
    }
}

/// A llama-architecture chat model (SmolLM2-135M-Instruct) from a GGUF file, run on the CPU by
/// one generation thread of its own.
pub struct LocalChatModel {
    tokenizer: Arc<GgufTokenizer>,
    context_window: u32,
    slots: Arc<Slots>,
    jobs: SyncSender<Job>,
    seed: u64,
    requests: AtomicU64,
}

impl LocalChatModel {
    /// Reads the GGUF file once (header, tokenizer, weights) and starts the generation thread.
    ///
    /// # Errors
    /// When the file cannot be read or is not a llama chat model with a SmolLM2 tokenizer,
    /// when `threads` is not Candle's thread count, or when the thread cannot start. See
    /// [`LoadError`].
    pub fn load(path: &Path, options: LocalChatOptions) -> Result<Self, LoadError> {
        if let Some(threads) = options.threads {
            check_threads(threads)?;
        }
        let read = |source: Box<dyn std::error::Error + Send + Sync>| LoadError::Read {
            path: path.to_owned(),
            source,
        };
        let metadata = |reason: String| LoadError::Metadata {
            path: path.to_owned(),
            reason,
        };
        let mut reader = BufReader::new(File::open(path).map_err(|e| read(e.into()))?);
        let content = gguf_file::Content::read(&mut reader).map_err(|e| read(e.into()))?;

        let architecture = content
            .metadata
            .get("general.architecture")
            .and_then(|v| v.to_string().ok());
        if architecture.map(String::as_str) != Some("llama") {
            return Err(metadata(format!(
                "architecture {architecture:?}; only \"llama\" is supported"
            )));
        }
        let context_length = content
            .metadata
            .get("llama.context_length")
            .and_then(|v| v.to_u32().ok())
            .ok_or_else(|| metadata("no llama.context_length".into()))?;
        // quantized_llama's rotary tables stop at MAX_SEQ_LEN positions.
        let context_window = context_length.min(u32::try_from(MAX_SEQ_LEN).unwrap_or(u32::MAX));
        let tokenizer = GgufTokenizer::from_metadata(&content.metadata).map_err(|e| match e {
            BuildError::Metadata(reason) => metadata(reason),
            BuildError::Tokenizer(source) => LoadError::Tokenizer {
                path: path.to_owned(),
                source,
            },
        })?;
        let (content, mut tensors) = requantized(content, reader);
        let weights =
            ModelWeights::from_gguf(content, &mut tensors, &Device::Cpu).map_err(|e| {
                LoadError::Weights {
                    path: path.to_owned(),
                    source: e.into(),
                }
            })?;

        let tokenizer = Arc::new(tokenizer);
        let slots = Arc::new(Slots::new(options.queue_capacity));
        // Room for every request a slot admits, so a send after `take` never finds it full.
        let (jobs, queue) = sync_channel(options.queue_capacity.saturating_add(1));
        let worker = Worker {
            weights,
            tokenizer: Arc::clone(&tokenizer),
            slots: Arc::clone(&slots),
        };
        std::thread::Builder::new()
            .name("chat-candle".into())
            .spawn(move || worker.run(&queue))
            .map_err(|e| LoadError::Thread(e.into()))?;

        Ok(Self {
            tokenizer,
            context_window,
            slots,
            jobs,
            seed: options.seed,
            requests: AtomicU64::new(0),
        })
    }
}

/// Whether Candle's kernel pool has `threads` threads (the caller of the pool is one of them).
fn check_threads(threads: usize) -> Result<(), LoadError> {
    let pool = candle_core::utils::barrier_pool().n_workers() + 1;
    if threads == pool {
        return Ok(());
    }
    Err(LoadError::InvalidOptions(format!(
        "{threads} threads asked for, but Candle's kernel pool has {pool}; it is sized once per \
         process: set CANDLE_NUM_THREADS={threads} in the environment"
    )))
}

#[async_trait]
impl ChatModel for LocalChatModel {
    fn supports_tools(&self) -> bool {
        false
    }

    fn context_window(&self) -> u32 {
        self.context_window
    }

    fn count_tokens(&self, text: &str) -> u32 {
        // Byte-level BPE never gives more tokens than bytes: the bound stands in for a count
        // the tokenizer could not make.
        let tokens = self
            .tokenizer
            .encode(text)
            .map_or(text.len(), |ids| ids.len());
        u32::try_from(tokens).unwrap_or(u32::MAX)
    }

    async fn stream(&self, request: ChatRequest) -> Result<Box<dyn ChatStream>, ChatError> {
        let prompt = prompt_tokens(&self.tokenizer, &request.messages)
            .map_err(|e| ChatError::Internal(format!("cannot tokenize the prompt: {e}")))?;
        let window = self.context_window as usize;
        if prompt.len() >= window {
            return Err(ChatError::Provider(format!(
                "the prompt has {} tokens; the model takes {window}, prompt and answer together",
                prompt.len()
            )));
        }
        let max_tokens = (request.max_tokens as usize).min(window - prompt.len());
        self.slots
            .take()
            .map_err(|retry_after_secs| ChatError::Busy { retry_after_secs })?;

        let (deltas, receiver) = unbounded_channel();
        let job = Job {
            prompt,
            max_tokens,
            temperature: request.temperature,
            seed: self
                .seed
                .wrapping_add(self.requests.fetch_add(1, Ordering::Relaxed)),
            deltas,
        };
        match self.jobs.try_send(job) {
            Ok(()) => Ok(Box::new(LocalStream {
                deltas: receiver,
                done: false,
            })),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.slots.give_back();
                Err(ChatError::Internal(
                    "the generation thread is gone".to_owned(),
                ))
            }
        }
    }
}

/// The caller's end of a request: deltas until `Usage`, or one error.
struct LocalStream {
    deltas: UnboundedReceiver<Result<ChatDelta, ChatError>>,
    done: bool,
}

#[async_trait]
impl ChatStream for LocalStream {
    async fn next(&mut self) -> Option<Result<ChatDelta, ChatError>> {
        if self.done {
            return None;
        }
        let item = self.deltas.recv().await.unwrap_or_else(|| {
            Err(ChatError::Internal(
                "the generation thread stopped before the end of the answer".to_owned(),
            ))
        });
        self.done = matches!(item, Ok(ChatDelta::Usage(_)) | Err(_));
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use domain::ports::TokenUsage;

    use super::*;

    #[tokio::test]
    async fn a_stream_ends_after_usage() {
        let (sender, receiver) = unbounded_channel();
        let mut stream = LocalStream {
            deltas: receiver,
            done: false,
        };
        let usage = TokenUsage {
            prompt_tokens: 3,
            completion_tokens: 1,
        };
        sender.send(Ok(ChatDelta::Text("Hi".into()))).expect("open");
        sender.send(Ok(ChatDelta::Usage(usage))).expect("open");
        assert_eq!(stream.next().await, Some(Ok(ChatDelta::Text("Hi".into()))));
        assert_eq!(stream.next().await, Some(Ok(ChatDelta::Usage(usage))));
        assert_eq!(stream.next().await, None);
    }

    #[tokio::test]
    async fn a_stream_whose_thread_stops_early_fails_instead_of_hanging() {
        let (sender, receiver) = unbounded_channel();
        let mut stream = LocalStream {
            deltas: receiver,
            done: false,
        };
        sender.send(Ok(ChatDelta::Text("Hi".into()))).expect("open");
        drop(sender);
        assert_eq!(stream.next().await, Some(Ok(ChatDelta::Text("Hi".into()))));
        assert!(matches!(
            stream.next().await,
            Some(Err(ChatError::Internal(_)))
        ));
        assert_eq!(stream.next().await, None);
    }
}
