//! The adapters against mock servers that speak OpenAI's API (wiremock, and a raw socket where a
//! stream must stall or be watched for closing). No real API is ever called.
// Helpers outside `#[test]` functions unwrap too; clippy.toml only allows it inside them.
#![allow(clippy::unwrap_used)]

mod chat;
mod embeddings;
