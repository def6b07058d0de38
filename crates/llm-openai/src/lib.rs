//! Adapter for OpenAI-compatible HTTP APIs (OpenAI itself, or any server that speaks its
//! protocol at a configurable base URL), built on [async-openai](https://docs.rs/async-openai).
//!
//! [`OpenAiEmbedder`] implements the domain's [`Embedder`](domain::ports::Embedder) port over
//! `POST {base_url}/embeddings`. Chat completions will live beside it and share the client.
//!
//! Codemap:
//! - `config`: [`OpenAiClientConfig`] (base URL, key, timeout, retries), shared by every API of
//!   the crate, and [`ConfigError`].
//! - `client`: builds the async-openai client and turns its errors into provider, bad-response
//!   or internal failures.
//! - `transport`: the HTTP layer under async-openai: per-attempt timeout, retries with
//!   exponential backoff and jitter, `Retry-After`.
//! - `tokens`: `cl100k_base` token counting (ranks compiled in; no network at run time).
//! - `embeddings`: [`OpenAiEmbeddingConfig`] and [`OpenAiEmbedder`].
//!
//! Invariants:
//! - **The API key never reaches logs or `Debug` output**: it is a [`SecretString`] until the
//!   `Authorization` header is built.
//! - **Only rate limits (429), server errors (5xx), timeouts and connection failures are
//!   retried**, at most `max_retries` times; every other 4xx fails at once, with its status and
//!   message.
//! - **Nothing is truncated**: a text beyond the model's input limit fails the call before any
//!   request is sent.
//! - **Vectors come back in input order and are checked**: count, indices and length, whatever
//!   the server sends.
//!
//! Tests never call a real API: `tests/openai.rs` runs against a wiremock server.

// Every public item is documented; CI denies warnings.
#![warn(missing_docs)]

mod client;
mod config;
mod embeddings;
mod error_chain;
mod tokens;
mod transport;

pub use config::{ConfigError, OpenAiClientConfig};
pub use embeddings::{OpenAiEmbedder, OpenAiEmbeddingConfig};
/// The wrapper the API key travels in (from the `secrecy` crate): build one with
/// `SecretString::from(String)`.
pub use secrecy::SecretString;
