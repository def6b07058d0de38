//! [`OpenAiEmbedder`]: the domain's [`Embedder`] port over `POST {base_url}/embeddings`.

use std::fmt;

use async_openai::types::embeddings::{CreateEmbeddingRequest, Embedding, EmbeddingInput};
use async_trait::async_trait;
use domain::ports::{EmbedError, Embedder};
use secrecy::SecretString;

use crate::client::{self, Api, Failure};
use crate::config::{ConfigError, OpenAiClientConfig};
use crate::tokens::Cl100k;

/// What to embed with and how to batch, on top of the [`OpenAiClientConfig`].
///
/// Build it with [`OpenAiEmbeddingConfig::new`] and change the public fields you need. `Debug`
/// never prints the API key.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct OpenAiEmbeddingConfig {
    /// Where the API is, the key, the timeout and the retry policy.
    pub client: OpenAiClientConfig,
    /// Model name, as the server knows it. Default [`Self::DEFAULT_MODEL`].
    pub model: String,
    /// Vector length to ask for (the API's optional `dimensions` parameter, sent when set;
    /// `text-embedding-3-*` then return shortened, re-normalised vectors). Required for a model
    /// whose native length is not known here; see [`OpenAiEmbedder::dimensions`].
    pub dimensions: Option<u32>,
    /// Most inputs per request, `1..=2048` (the API's limit). Default 256.
    pub batch_size: usize,
    /// Most tokens, summed over the inputs, per request; a batch is closed early when the next
    /// input would exceed it. OpenAI refuses requests above 300,000. Default 300,000.
    pub max_tokens_per_request: usize,
}

impl OpenAiEmbeddingConfig {
    /// The default model.
    pub const DEFAULT_MODEL: &'static str = "text-embedding-3-small";
    /// The default number of inputs per request.
    pub const DEFAULT_BATCH_SIZE: usize = 256;
    /// The most inputs the API takes in one request.
    pub const MAX_BATCH_SIZE: usize = 2048;
    /// OpenAI's limit of tokens summed over the inputs of one request.
    pub const DEFAULT_MAX_TOKENS_PER_REQUEST: usize = 300_000;

    /// Settings for `base_url` (for example `http://127.0.0.1:8000/v1`) and `api_key`, with the
    /// default model, batching, timeout and retry policy.
    pub fn new(base_url: impl Into<String>, api_key: SecretString) -> Self {
        Self {
            client: OpenAiClientConfig::new(base_url, api_key),
            model: Self::DEFAULT_MODEL.to_owned(),
            dimensions: None,
            batch_size: Self::DEFAULT_BATCH_SIZE,
            max_tokens_per_request: Self::DEFAULT_MAX_TOKENS_PER_REQUEST,
        }
    }
}

/// A model this adapter knows: its native vector length and whether it takes `dimensions`.
struct KnownModel {
    name: &'static str,
    dimensions: u32,
    shortenable: bool,
}

const KNOWN_MODELS: [KnownModel; 3] = [
    KnownModel {
        name: "text-embedding-3-small",
        dimensions: 1536,
        shortenable: true,
    },
    KnownModel {
        name: "text-embedding-3-large",
        dimensions: 3072,
        shortenable: true,
    },
    KnownModel {
        name: "text-embedding-ada-002",
        dimensions: 1536,
        shortenable: false,
    },
];

/// The vector length the embedder promises, checked against what is known of the model.
fn resolve_dimensions(model: &str, requested: Option<u32>) -> Result<usize, ConfigError> {
    let known = KNOWN_MODELS.iter().find(|known| known.name == model);
    let invalid = |dimensions, reason| ConfigError::Dimensions {
        model: model.to_owned(),
        dimensions,
        reason,
    };
    let dimensions = match (known, requested) {
        (_, Some(0)) => return Err(invalid(0, "it must be at least 1")),
        (Some(known), Some(requested)) if !known.shortenable => {
            return Err(invalid(
                requested,
                "this model has a fixed length and does not take `dimensions`",
            ));
        }
        (Some(known), Some(requested)) if requested > known.dimensions => {
            return Err(invalid(
                requested,
                "it exceeds the model's native vector length",
            ));
        }
        (_, Some(requested)) => requested,
        (Some(known), None) => known.dimensions,
        (None, None) => {
            return Err(ConfigError::UnknownDimensions {
                model: model.to_owned(),
            });
        }
    };
    usize::try_from(dimensions).map_err(|_| invalid(dimensions, "it does not fit in memory"))
}

/// Embeds texts through an OpenAI-compatible `/embeddings` endpoint.
///
/// - Inputs go out in batches of at most `batch_size` texts and `max_tokens_per_request`
///   tokens, one request at a time, and come back in input order whatever order the server
///   lists them in.
/// - Every answer is checked: one vector per input, each index once, each vector of
///   [`Self::dimensions`] finite values; anything else is [`EmbedError::BadResponse`].
/// - A text beyond [`Self::max_input_tokens`] fails the whole call with
///   [`EmbedError::TooLong`] before any request is sent: nothing is truncated.
/// - Tokens are counted with `cl100k_base`, the encoding of OpenAI's embedding models, off the
///   async executor. For servers running other models the count is an estimate.
pub struct OpenAiEmbedder {
    api: Api,
    base_url: String,
    model: String,
    dimensions: usize,
    request_dimensions: Option<u32>,
    batch_size: usize,
    max_tokens_per_request: usize,
    tokenizer: Cl100k,
}

impl fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .field("batch_size", &self.batch_size)
            .field("max_tokens_per_request", &self.max_tokens_per_request)
            .finish_non_exhaustive()
    }
}

impl OpenAiEmbedder {
    /// OpenAI's limit of tokens per input text for its embedding models.
    pub const MAX_INPUT_TOKENS: usize = 8191;

    /// Validates `config` and builds the embedder (HTTP client and tokenizer included). Sends
    /// nothing.
    ///
    /// # Errors
    /// [`ConfigError`] when the base URL, key, timeout, model, dimensions, batch size or token
    /// budget is unusable, or when the HTTP client or tokenizer cannot be initialised.
    pub fn new(config: OpenAiEmbeddingConfig) -> Result<Self, ConfigError> {
        if config.model.trim().is_empty() {
            return Err(ConfigError::EmptyModel);
        }
        let dimensions = resolve_dimensions(&config.model, config.dimensions)?;
        if !(1..=OpenAiEmbeddingConfig::MAX_BATCH_SIZE).contains(&config.batch_size) {
            return Err(ConfigError::BatchSize(config.batch_size));
        }
        if config.max_tokens_per_request < Self::MAX_INPUT_TOKENS {
            return Err(ConfigError::TokensPerRequest {
                given: config.max_tokens_per_request,
                min: Self::MAX_INPUT_TOKENS,
            });
        }
        let api = client::build(&config.client)?;
        let tokenizer = Cl100k::load()?;
        Ok(Self {
            api,
            base_url: config.client.base_url,
            model: config.model,
            dimensions,
            request_dimensions: config.dimensions,
            batch_size: config.batch_size,
            max_tokens_per_request: config.max_tokens_per_request,
            tokenizer,
        })
    }

    /// The model the vectors come from (with [`Self::dimensions`], it names the embedding
    /// space).
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Counts tokens (off the executor), rejects texts that are too long and groups the rest
    /// into requests.
    async fn plan(&self, texts: Vec<String>) -> Result<Vec<Vec<String>>, EmbedError> {
        let tokenizer = self.tokenizer;
        let batch_size = self.batch_size;
        let budget = self.max_tokens_per_request;
        tokio::task::spawn_blocking(move || plan_batches(tokenizer, texts, batch_size, budget))
            .await
            .map_err(|error| EmbedError::Internal(Box::new(error)))?
    }

    async fn embed_batch(&self, batch: Vec<String>) -> Result<Vec<Vec<f32>>, EmbedError> {
        let expected = batch.len();
        let request = CreateEmbeddingRequest {
            model: self.model.clone(),
            input: EmbeddingInput::StringArray(batch),
            dimensions: self.request_dimensions,
            ..CreateEmbeddingRequest::default()
        };
        let response = self
            .api
            .embeddings()
            .create(request)
            .await
            .map_err(|error| match Failure::from(error) {
                Failure::Provider(message) => EmbedError::Provider(message),
                Failure::BadResponse(message) => EmbedError::BadResponse(message),
                Failure::Internal(error) => EmbedError::Internal(Box::new(error)),
            })?;
        vectors_in_order(response.data, expected, self.dimensions)
    }
}

fn plan_batches(
    tokenizer: Cl100k,
    texts: Vec<String>,
    batch_size: usize,
    budget: usize,
) -> Result<Vec<Vec<String>>, EmbedError> {
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    let mut batch_tokens = 0;
    for (index, text) in texts.into_iter().enumerate() {
        let tokens = tokenizer.count(&text);
        if tokens > OpenAiEmbedder::MAX_INPUT_TOKENS {
            return Err(EmbedError::TooLong {
                index,
                tokens,
                max: OpenAiEmbedder::MAX_INPUT_TOKENS,
            });
        }
        if !batch.is_empty() && (batch.len() == batch_size || batch_tokens + tokens > budget) {
            batches.push(std::mem::take(&mut batch));
            batch_tokens = 0;
        }
        batch_tokens += tokens;
        batch.push(text);
    }
    if !batch.is_empty() {
        batches.push(batch);
    }
    Ok(batches)
}

/// The vectors of one response in input order, after checking count, indices, lengths and
/// values.
fn vectors_in_order(
    data: Vec<Embedding>,
    expected: usize,
    dimensions: usize,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    if data.len() != expected {
        return Err(EmbedError::BadResponse(format!(
            "{} embeddings for {expected} inputs",
            data.len()
        )));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
    for item in data {
        let index = item.index;
        let slot = usize::try_from(index)
            .ok()
            .and_then(|index| slots.get_mut(index))
            .ok_or_else(|| {
                EmbedError::BadResponse(format!(
                    "embedding index {index} is out of range for {expected} inputs"
                ))
            })?;
        if slot.is_some() {
            return Err(EmbedError::BadResponse(format!(
                "embedding index {index} appears twice"
            )));
        }
        if item.embedding.len() != dimensions {
            return Err(EmbedError::BadResponse(format!(
                "embedding {index} has {} dimensions, expected {dimensions}",
                item.embedding.len()
            )));
        }
        if !item.embedding.iter().all(|value| value.is_finite()) {
            return Err(EmbedError::BadResponse(format!(
                "embedding {index} contains a non-finite value"
            )));
        }
        *slot = Some(item.embedding);
    }
    // `expected` items with distinct in-range indices fill every slot.
    slots
        .into_iter()
        .enumerate()
        .map(|(index, slot)| {
            slot.ok_or_else(|| EmbedError::BadResponse(format!("embedding {index} is missing")))
        })
        .collect()
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    /// `dimensions` from the configuration, or the model's native length
    /// (`text-embedding-3-small` 1536, `text-embedding-3-large` 3072,
    /// `text-embedding-ada-002` 1536).
    fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// 8191, OpenAI's limit per input for its embedding models.
    fn max_input_tokens(&self) -> usize {
        Self::MAX_INPUT_TOKENS
    }

    /// Exact for OpenAI's models (`cl100k_base`); an estimate for other servers' models.
    fn count_tokens(&self, text: &str) -> Result<usize, EmbedError> {
        Ok(self.tokenizer.count(text))
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in self.plan(texts.to_vec()).await? {
            vectors.extend(self.embed_batch(batch).await?);
        }
        Ok(vectors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(index: u32, embedding: Vec<f32>) -> Embedding {
        Embedding {
            index,
            object: "embedding".to_owned(),
            embedding,
        }
    }

    #[test]
    fn dimensions_follow_the_model() {
        assert_eq!(
            resolve_dimensions("text-embedding-3-small", None).unwrap(),
            1536
        );
        assert_eq!(
            resolve_dimensions("text-embedding-3-large", None).unwrap(),
            3072
        );
        assert_eq!(
            resolve_dimensions("text-embedding-ada-002", None).unwrap(),
            1536
        );
        assert_eq!(
            resolve_dimensions("text-embedding-3-large", Some(1024)).unwrap(),
            1024
        );
        assert_eq!(
            resolve_dimensions("nomic-embed-text", Some(768)).unwrap(),
            768
        );
        assert!(matches!(
            resolve_dimensions("nomic-embed-text", None),
            Err(ConfigError::UnknownDimensions { .. })
        ));
        assert!(matches!(
            resolve_dimensions("text-embedding-3-small", Some(2000)),
            Err(ConfigError::Dimensions { .. })
        ));
        assert!(matches!(
            resolve_dimensions("text-embedding-ada-002", Some(512)),
            Err(ConfigError::Dimensions { .. })
        ));
        assert!(matches!(
            resolve_dimensions("nomic-embed-text", Some(0)),
            Err(ConfigError::Dimensions { .. })
        ));
    }

    #[test]
    fn batches_respect_size_and_token_budget() {
        let tokenizer = Cl100k::load().unwrap();
        let texts: Vec<String> = (0..5).map(|i| format!("text {i}")).collect();
        let batches = plan_batches(tokenizer, texts.clone(), 2, 300_000).unwrap();
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
        assert_eq!(batches.concat(), texts);

        // "text N" is 3 tokens ("text", " ", "N"): a budget of 8 fits two texts per batch.
        assert_eq!(tokenizer.count("text 0"), 3);
        let batches = plan_batches(tokenizer, texts, 10, 8).unwrap();
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
    }

    #[test]
    fn too_long_texts_are_reported_with_their_index() {
        let tokenizer = Cl100k::load().unwrap();
        let texts = vec!["short".to_owned(), " hello".repeat(9000)];
        let error = plan_batches(tokenizer, texts, 10, 300_000).unwrap_err();
        assert!(
            matches!(
                error,
                EmbedError::TooLong {
                    index: 1,
                    tokens: 9000,
                    max: 8191
                }
            ),
            "{error:?}"
        );
    }

    #[test]
    fn responses_are_ordered_and_checked() {
        let data = vec![item(1, vec![1.0, 1.0]), item(0, vec![0.0, 0.0])];
        assert_eq!(
            vectors_in_order(data, 2, 2).unwrap(),
            vec![vec![0.0, 0.0], vec![1.0, 1.0]]
        );

        let bad = |data, expected, dimensions| {
            matches!(
                vectors_in_order(data, expected, dimensions),
                Err(EmbedError::BadResponse(_))
            )
        };
        assert!(bad(vec![item(0, vec![0.0, 0.0])], 2, 2));
        assert!(bad(
            vec![item(0, vec![0.0, 0.0]), item(0, vec![0.0, 0.0])],
            2,
            2
        ));
        assert!(bad(
            vec![item(0, vec![0.0, 0.0]), item(2, vec![0.0, 0.0])],
            2,
            2
        ));
        assert!(bad(vec![item(0, vec![0.0])], 1, 2));
        assert!(bad(vec![item(0, vec![0.0, f32::NAN])], 1, 2));
    }
}
