//! Document text for retrieval: the adapters behind the domain's ingestion ports.
//!
//! - [`Extractor`] implements [`domain::ports::TextExtractor`]: it turns an uploaded plain-text,
//!   Markdown, HTML or PDF file into plain text whose blocks (paragraphs, headings, lists, code)
//!   are separated by blank lines, so that the chunker can split at the most meaningful boundary.
//! - [`TokenChunker`] implements [`domain::ports::Chunker`]: it splits that text into overlapping
//!   chunks measured in the embedding model's own tokens, and guarantees that no chunk exceeds the
//!   limit without dropping any text.
//!
//! - [`SandboxedExtractor`] runs [`Extractor`] in a child process with hard limits on memory,
//!   CPU time and output, killed when it overruns (the server uses it; see the `sandbox` module).
//!
//! Untrusted input is the rule here. PDF, HTML and Markdown are parsed on dedicated threads with a
//! large stack, behind `catch_unwind` and a time limit (see [`ExtractorConfig`] and the `isolate`
//! module); plain text is decoded on Tokio's blocking pool. Nothing CPU-bound runs on the async
//! executor.

mod blocks;
mod chunker;
mod extractor;
mod html;
mod isolate;
mod markdown;
mod pdf;
mod sandbox;
mod text;

pub use chunker::{InvalidChunkParams, TokenChunker};
pub use extractor::{Extractor, ExtractorConfig};
pub use sandbox::{SandboxConfig, SandboxLimits, SandboxedExtractor, run_child};
