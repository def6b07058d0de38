use async_trait::async_trait;

use crate::ids::TenantId;
use crate::ports::{EmbedError, Embedder};
use crate::values::ContentType;

/// Why a document's text could not be had.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExtractError {
    #[error("the content is not valid UTF-8 (at byte {0})")]
    InvalidUtf8(usize),
    #[error("the document contains no text")]
    Empty,
    #[error("the document is corrupt or unreadable: {0}")]
    Corrupt(String),
    #[error("text extraction took longer than {0} s")]
    TimedOut(u64),
    /// The parser needed more memory, CPU time or output than its limits allow (a decompression
    /// bomb, say), and was killed. Says which limit.
    #[error("text extraction exceeded its limits: {0}")]
    LimitExceeded(String),
    /// Too many extractions are running (of this tenant, or in all): try again shortly.
    #[error("too many documents are being read right now")]
    Busy,
    #[error("text extraction failed: {0}")]
    Internal(String),
}

/// Turns an uploaded document into plain text. Parsing untrusted files (PDF above all) is kept
/// away from the worker: a malformed file may only fail its own job.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait TextExtractor: Send + Sync {
    /// # Errors
    /// [`ExtractError`] for invalid, empty, corrupt or too slow documents.
    /// `tenant` is the uploader's, so that one tenant's documents cannot take every parser.
    async fn extract(
        &self,
        tenant: TenantId,
        content_type: ContentType,
        bytes: Vec<u8>,
    ) -> Result<String, ExtractError>;
}

/// One piece of a document, small enough for the embedding model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextChunk {
    /// 0, 1, 2… in document order.
    pub position: u32,
    pub content: String,
    /// In the embedder's own tokens (special tokens excluded); never above the chunk limit.
    pub token_count: usize,
}

/// Splits text into overlapping chunks measured in an embedder's tokens.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait Chunker: Send + Sync {
    /// Chunks of at most `max_tokens` tokens of `embedder`'s tokenizer, consecutive chunks sharing
    /// about `overlap` tokens, split at the most meaningful boundary that fits (paragraph,
    /// sentence, word). Never truncates: every character of `text` other than the whitespace
    /// between chunks is in some chunk.
    ///
    /// # Errors
    /// [`EmbedError`] when the tokenizer fails.
    fn chunk(
        &self,
        text: &str,
        embedder: &dyn Embedder,
        max_tokens: usize,
        overlap: usize,
    ) -> Result<Vec<TextChunk>, EmbedError>;
}
