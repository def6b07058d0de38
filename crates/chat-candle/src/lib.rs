//! The offline local chat model: SmolLM2-135M-Instruct (Q4_1 GGUF) on
//! [Candle](https://docs.rs/candle-core)'s `quantized_llama`, behind the domain's
//! [`ChatModel`](domain::ports::ChatModel) port.
//!
//! [`LocalChatModel::load`] reads the GGUF file once: the header gives the context window and
//! the tokenizer (no `tokenizer.json` ships with the model), then the weights load. One
//! generation thread owns the weights and answers one request at a time; requests wait in a
//! bounded queue, and the answer comes back as [`ChatDelta`](domain::ports::ChatDelta)s over a
//! channel of the request's own.
//!
//! Codemap:
//! - `model`: [`LocalChatModel`], [`LocalChatOptions`], the port's implementation (prompt
//!   checks, admission, the stream the caller pulls).
//! - `worker`: the generation thread: the prompt in chunks, then one token per step on the KV
//!   cache; sampling; the queue's slots.
//! - `requantize`: Q4_1 matrices to Q8_0 as they load, for Candle's vectorised kernels.
//! - `prompt`: messages to SmolLM2's ChatML prompt.
//! - `tokenizer`: the byte-level BPE tokenizer from the GGUF metadata, and the incremental
//!   decoder that gives text out by whole characters.
//! - `error`: [`LoadError`].
//!
//! Invariants:
//! - **Generation never runs on the async executor**: the thread of its own does it (`stream`
//!   only tokenizes the prompt), and `stream` never waits: with the running request and `queue_capacity` waiting ones taken, a
//!   request fails at once with [`ChatError::Busy`](domain::ports::ChatError::Busy).
//! - **Each request starts from the weights as loaded**: a shallow clone of `quantized_llama`'s
//!   model, with no KV cache and no cached masks, so nothing of one answer reaches the next.
//! - **An answer never outgrows its ceiling or the window**: at most `max_tokens` tokens, and
//!   prompt plus answer within [`context_window`](domain::ports::ChatModel::context_window); a
//!   prompt that leaves no room fails before it is queued.
//! - **Text deltas are whole UTF-8 characters**, and the end-of-turn marker is never text.
//! - **A dropped stream stops the generation at the next token** (in the prompt, at the next
//!   chunk of 64 tokens); a stream whose generation failed or panicked ends with an `Internal`
//!   error, never hangs.
//! - **Markers typed in a message are text**: `<|im_start|>` and `<|im_end|>` enter a prompt
//!   only where the template puts them.
//! - **A completed answer ends with `Usage`**, whose `completion_tokens` counts the answer's
//!   tokens (the stop token is not one of them).
//!
//! Threads: Candle runs its kernels on one process-wide pool, sized once at its first use from
//! `CANDLE_NUM_THREADS` (else `RAYON_NUM_THREADS`, else one per physical core); its workers
//! spin between kernels, so on a busy machine fewer threads can be faster. Without
//! `RAYON_NUM_THREADS`, Candle also reads `/proc/cpuinfo` at every `f32` matrix product (about
//! 60 times a token); setting it to the core count took decoding on two cores from about 48 to
//! about 58 tokens/s.
//!
//! Tests need the model: `just models` puts it in
//! `<workspace>/.local/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` (`AGENTIC_SMOLLM2_GGUF`
//! overrides); missing, the tests fail, never skip.

// Every public item is documented; CI denies warnings.
#![warn(missing_docs)]

mod error;
mod model;
mod prompt;
mod requantize;
mod tokenizer;
mod worker;

pub use error::LoadError;
pub use model::{LocalChatModel, LocalChatOptions};

/// The model file for unit tests, found as the integration tests find it.
#[cfg(test)]
mod test_model {
    use std::path::{Path, PathBuf};

    use crate::tokenizer::GgufTokenizer;

    /// `AGENTIC_SMOLLM2_GGUF`, else the workspace's `.local/models`; fails when it is missing.
    pub(crate) fn gguf_path() -> PathBuf {
        let path = std::env::var_os("AGENTIC_SMOLLM2_GGUF").map_or_else(
            || {
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../../.local/models/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
            },
            PathBuf::from,
        );
        assert!(
            path.is_file(),
            "no SmolLM2 model at {}: run `just models` (deploy/local/models.sh), or set \
             AGENTIC_SMOLLM2_GGUF to the GGUF file",
            path.display()
        );
        path
    }

    /// The tokenizer of the test model's header.
    pub(crate) fn tokenizer() -> GgufTokenizer {
        let mut file = std::fs::File::open(gguf_path()).expect("the model opens");
        let content = candle_core::quantized::gguf_file::Content::read(&mut file)
            .expect("the GGUF header reads");
        match GgufTokenizer::from_metadata(&content.metadata) {
            Ok(tokenizer) => tokenizer,
            Err(e) => panic!("no tokenizer: {e:?}"),
        }
    }
}
