use std::path::PathBuf;

/// Why a GGUF file could not be loaded by [`LocalChatModel::load`](crate::LocalChatModel::load).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The options cannot work (for example zero threads).
    #[error("invalid local chat model options: {0}")]
    InvalidOptions(String),
    /// The file could not be opened or its header read (missing file included).
    #[error("cannot read {}", path.display())]
    Read {
        /// The GGUF file.
        path: PathBuf,
        /// What the file system or the GGUF reader said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The header lacks something this adapter needs, or holds something it cannot use.
    #[error("{} is not a usable llama chat model: {reason}", path.display())]
    Metadata {
        /// The GGUF file.
        path: PathBuf,
        /// The missing or unusable metadata.
        reason: String,
    },
    /// The tokenizer described by the header could not be built.
    #[error("cannot build the tokenizer of {}", path.display())]
    Tokenizer {
        /// The GGUF file.
        path: PathBuf,
        /// The tokenizers crate's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The weights could not be read or do not fit the architecture.
    #[error("cannot load the model weights {}", path.display())]
    Weights {
        /// The GGUF file.
        path: PathBuf,
        /// Candle's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The generation thread, or its thread pool, could not be started.
    #[error("cannot start the generation thread")]
    Thread(#[source] Box<dyn std::error::Error + Send + Sync>),
}
