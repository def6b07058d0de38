use std::path::PathBuf;

/// Why a model directory could not be loaded by [`CandleEmbedder::load`](crate::CandleEmbedder::load).
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The options cannot work with this model (for example a window beyond its position
    /// embeddings, or a batch size of zero).
    #[error("invalid embedder options: {0}")]
    InvalidOptions(String),
    /// A file of the model directory could not be read (missing directory or file included).
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is not a BERT configuration.
    #[error("{} is not a BERT configuration", path.display())]
    Config {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// `tokenizer.json` could not be loaded or reconfigured.
    #[error("cannot use the tokenizer {}", path.display())]
    Tokenizer {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The weights could not be read or do not fit the configuration.
    #[error("cannot load the model weights {}", path.display())]
    Weights {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}
