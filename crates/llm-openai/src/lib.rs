//! Adapter for OpenAI-compatible HTTP APIs (OpenAI itself, or any server that speaks its
//! protocol at a configurable base URL), built on [async-openai](https://docs.rs/async-openai).
//!
//! [`OpenAiEmbedder`] implements the domain's [`Embedder`](domain::ports::Embedder) port over
//! `POST {base_url}/embeddings`; [`OpenAiChat`] implements [`ChatModel`](domain::ports::ChatModel)
//! over `POST {base_url}/chat/completions`, always streamed. Both take an
//! [`OpenAiClientConfig`] and follow its retry policy.
//!
//! Codemap:
//! - `config`: [`OpenAiClientConfig`] (base URL, key, timeout, retries), shared by every API of
//!   the crate, and [`ConfigError`].
//! - `client`: checks the shared settings and builds the connection (HTTP client, retry policy,
//!   `Authorization` header) and the async-openai client on it; turns async-openai's errors
//!   into provider, bad-response or internal failures.
//! - `transport`: the retry policy (per-attempt timeout, exponential backoff with jitter,
//!   `Retry-After`) in two transports: the one under async-openai, which reads whole answers,
//!   and `open_stream`, which retries only until the head of a streamed answer.
//! - `tokens`: `cl100k_base` token counting (ranks compiled in; no network at run time).
//! - `embeddings`: [`OpenAiEmbeddingConfig`] and [`OpenAiEmbedder`].
//! - `chat`: [`OpenAiChatConfig`] and [`OpenAiChat`]: the request, written with async-openai's
//!   types, and the mapping of failures to [`ChatError`](domain::ports::ChatError);
//!   `chat::stream` turns the body into deltas.
//! - `sse`: a bounded server-sent-events decoder.
//!
//! Invariants:
//! - **The API key never reaches logs or `Debug` output**: it is a [`SecretString`] until the
//!   `Authorization` header is built.
//! - **Only rate limits (429), server errors (5xx), timeouts and connection failures are
//!   retried**, at most `max_retries` times; every other 4xx fails at once, with its status and
//!   message.
//! - **No embedding input is truncated**: a text beyond the model's input limit fails the call
//!   before any request is sent.
//! - **Vectors come back in input order and are checked**: count, indices and length, whatever
//!   the server sends.
//! - **A streamed answer is never sent twice**: retries stop once a successful response head
//!   is accepted; after that, failures end the stream (after the text already delivered).
//! - **What a server streams is bounded**: 1 MiB per line or event and 64 MiB per answer
//!   (beyond, a bad response), and at most `stream_idle_timeout` between events (beyond, a
//!   timeout); input a server gets wrong is an error, never a panic or an unbounded buffer.
//! - **Usage is the provider's or nothing**: it is passed on only when the provider reports it.
//! - **Dropping a chat stream closes its connection**, so a cancelled run stops the provider.
//!
//! Tests never call a real API: the one test binary, `tests/openai/` (`embeddings.rs`,
//! `chat.rs`), runs against wiremock servers, and against a raw socket where a stream must stall
//! or be watched for closing.

// Every public item is documented; CI denies warnings.
#![warn(missing_docs)]

mod chat;
mod client;
mod config;
mod embeddings;
mod error_chain;
mod sse;
mod tokens;
mod transport;

pub use chat::{OpenAiChat, OpenAiChatConfig};
pub use config::{ConfigError, OpenAiClientConfig};
pub use embeddings::{OpenAiEmbedder, OpenAiEmbeddingConfig};
/// The wrapper the API key travels in (from the `secrecy` crate): build one with
/// `SecretString::from(String)`.
pub use secrecy::SecretString;
