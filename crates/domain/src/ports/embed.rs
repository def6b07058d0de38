use async_trait::async_trait;

/// Why texts could not be embedded.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// A text is longer than the model's window; chunking must have failed to keep it small.
    #[error("text {index} has {tokens} tokens; the model takes at most {max}")]
    TooLong {
        index: usize,
        tokens: usize,
        max: usize,
    },
    /// The provider refused or failed after retries (rate limits, server errors, timeouts).
    #[error("embedding provider failed: {0}")]
    Provider(String),
    /// The model answered something unusable (wrong count or dimensions).
    #[error("embedding provider answered unexpectedly: {0}")]
    BadResponse(String),
    #[error("embedding failed")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Turns texts into vectors of one embedding space. Implementations batch as they see fit and
/// run CPU-heavy work off the async executor.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Embedder: Send + Sync {
    /// Length of every vector this embedder returns.
    fn dimensions(&self) -> usize;

    /// The longest text, in the model's own tokens (special tokens excluded), it embeds without
    /// truncation. Chunking keeps every chunk within it.
    fn max_input_tokens(&self) -> usize;

    /// How many of the model's tokens `text` takes (special tokens excluded).
    ///
    /// # Errors
    /// [`EmbedError::Internal`] when the tokenizer fails.
    fn count_tokens(&self, text: &str) -> Result<usize, EmbedError>;

    /// One vector per text, in order. Never truncates silently.
    ///
    /// # Errors
    /// [`EmbedError::TooLong`] for a text beyond [`Self::max_input_tokens`]; provider errors.
    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// Why this process cannot embed in a space.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EmbedderUnavailable {
    #[error("no embedder is configured for it")]
    NotConfigured,
    #[error("no embedder for provider {0:?}")]
    UnknownProvider(String),
    /// The model or API could not be set up; the reason, for the log.
    #[error("{0}")]
    Setup(String),
    #[error("its model gives {model} dimensions, the space has {space}")]
    Dimensions { model: usize, space: u32 },
}

/// Builds the embedder of a registered space, so that a space registered while the process runs
/// can be used without a restart.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
pub trait EmbedderFactory: Send + Sync {
    /// # Errors
    /// Why this process cannot embed in the space (no local model, no API configured, …).
    fn build(
        &self,
        space: &crate::entities::EmbeddingSpace,
    ) -> Result<std::sync::Arc<dyn Embedder>, EmbedderUnavailable>;
}
