use std::fmt;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::Device;
use domain::ports::{EmbedError, Embedder};
use tokenizers::{Encoding, PostProcessor, Tokenizer};

use crate::amx::Amx;
use crate::encoder::{Batch, BertEncoder, Config};
use crate::error::LoadError;
use crate::kernels::{L2Normalize, vectorised};

/// How a [`CandleEmbedder`] runs its model. The defaults are those of sentence-transformers for
/// all-MiniLM-L6-v2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedderOptions {
    /// The longest sequence fed to the model, **special tokens included** (sentence-transformers'
    /// `max_seq_length`). Texts are never truncated: a longer one is refused. Default 256.
    pub max_seq_length: usize,
    /// Texts per forward pass. Default 32.
    pub batch_size: usize,
    /// L2-normalise the pooled vectors. Default true.
    pub normalize: bool,
    /// Batches run at once, each on one thread of its own (default: one per core). Whole
    /// batches side by side keep every core busy; matrix products split across cores would
    /// leave the element-wise passes between them on one.
    pub threads: usize,
    /// Run the linear layers on Intel AMX tiles where the CPU and kernel offer them (default
    /// true). They multiply in three bf16 terms whose error is of the order of f32 rounding, so
    /// vectors agree with the f32 path's to a cosine of 0.9999998 or better, at about twice
    /// the speed. Without AMX the products are f32 whatever this says.
    pub amx: bool,
}

impl Default for EmbedderOptions {
    fn default() -> Self {
        Self {
            max_seq_length: 256,
            batch_size: 32,
            normalize: true,
            threads: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
            amx: true,
        }
    }
}

/// A BERT-family sentence embedder on the CPU (F32): mean pooling over the attention mask, then
/// (by default) L2 normalisation, as sentence-transformers does. The encoder is this crate's own
/// ([`crate::encoder`]) on Candle's matrix products.
///
/// Cheap to clone: clones share the model.
#[derive(Clone)]
pub struct CandleEmbedder {
    inner: Arc<Inner>,
}

struct Inner {
    model: BertEncoder,
    /// No padding, no truncation.
    tokenizer: Tokenizer,
    dimensions: usize,
    /// Special tokens the tokenizer adds to one sequence (`[CLS]` and `[SEP]` for BERT).
    special_tokens: usize,
    options: EmbedderOptions,
    /// One single-threaded pool per concurrent batch: Candle's parallel kernels run inside the
    /// pool of the batch that calls them instead of contending for the global one.
    pools: Vec<rayon::ThreadPool>,
}

impl fmt::Debug for CandleEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CandleEmbedder")
            .field("dimensions", &self.inner.dimensions)
            .field("special_tokens", &self.inner.special_tokens)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl CandleEmbedder {
    /// Loads `config.json`, `tokenizer.json` and `model.safetensors` from `dir` (Hugging Face
    /// layout). The tokenizer's own padding and truncation settings are switched off: the encoder
    /// takes unpadded sequences, and texts are never truncated.
    ///
    /// # Errors
    /// [`LoadError`] when a file is missing or unusable, or when `options` do not fit the model.
    pub fn load(dir: &Path, options: EmbedderOptions) -> Result<Self, LoadError> {
        if options.batch_size == 0 || options.threads == 0 {
            return Err(LoadError::InvalidOptions(
                "batch_size and threads must be at least 1".into(),
            ));
        }

        let config_path = dir.join("config.json");
        let config_text =
            std::fs::read_to_string(&config_path).map_err(|source| LoadError::Read {
                path: config_path.clone(),
                source,
            })?;
        let config: Config =
            serde_json::from_str(&config_text).map_err(|source| LoadError::Config {
                path: config_path.clone(),
                source,
            })?;

        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer_error = |source| LoadError::Tokenizer {
            path: tokenizer_path.clone(),
            source,
        };
        if !tokenizer_path.is_file() {
            return Err(LoadError::Read {
                path: tokenizer_path.clone(),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path).map_err(tokenizer_error)?;
        let special_tokens = tokenizer
            .get_post_processor()
            .map_or(0, |post| post.added_tokens(false));

        if options.max_seq_length <= special_tokens {
            return Err(LoadError::InvalidOptions(format!(
                "max_seq_length {} leaves no room next to the {special_tokens} special tokens",
                options.max_seq_length
            )));
        }
        if options.max_seq_length > config.max_position_embeddings {
            return Err(LoadError::InvalidOptions(format!(
                "max_seq_length {} exceeds the model's {} positions",
                options.max_seq_length, config.max_position_embeddings
            )));
        }

        tokenizer.with_padding(None);
        tokenizer.with_truncation(None).map_err(tokenizer_error)?;

        let weights_path = dir.join("model.safetensors");
        let weights_error = |source: candle_core::Error| LoadError::Weights {
            path: weights_path.clone(),
            source: Box::new(source),
        };
        if !weights_path.is_file() {
            return Err(LoadError::Read {
                path: weights_path.clone(),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        // Read, not mmap: mapping a file is `unsafe` in Candle, which the workspace denies.
        let tensors =
            candle_core::safetensors::load(&weights_path, &Device::Cpu).map_err(weights_error)?;
        let amx = if options.amx { Amx::detect() } else { None };
        let model = BertEncoder::load(&tensors, &config, amx).map_err(weights_error)?;

        let pools = (0..options.threads)
            .map(|i| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(move |_| format!("embed-{i}"))
                    .build()
                    .map_err(|e| LoadError::InvalidOptions(format!("cannot start threads: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                model,
                tokenizer,
                dimensions: config.hidden_size,
                special_tokens,
                options,
                pools,
            }),
        })
    }

    /// Whether the linear layers run on AMX tiles ([`EmbedderOptions::amx`] and a CPU and
    /// kernel that offer them).
    #[must_use]
    pub fn uses_amx(&self) -> bool {
        self.inner.model.uses_amx()
    }
}

/// Vectors with the index of their text in the caller's list.
type Indexed = Vec<(usize, Vec<f32>)>;

fn internal(error: impl std::error::Error + Send + Sync + 'static) -> EmbedError {
    EmbedError::Internal(Box::new(error))
}

impl Inner {
    fn max_input_tokens(&self) -> usize {
        self.options.max_seq_length - self.special_tokens
    }

    /// Tokenises every text (refusing any that is too long), then runs the model on batches of
    /// texts of similar length and puts the vectors back in the caller's order.
    fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut encodings = Vec::with_capacity(texts.len());
        for (index, text) in texts.iter().enumerate() {
            let encoding = self
                .tokenizer
                .encode_fast(text.as_str(), true)
                .map_err(EmbedError::Internal)?;
            if encoding.len() > self.options.max_seq_length {
                return Err(EmbedError::TooLong {
                    index,
                    tokens: encoding.len().saturating_sub(self.special_tokens),
                    max: self.max_input_tokens(),
                });
            }
            encodings.push(encoding);
        }

        // Sorting by length keeps the padding attention needs (wasted compute) small. Batches
        // are dealt out in turn to the threads, so each gets short and long ones alike; a call
        // with fewer texts than a batch per thread gets smaller batches, so every thread still
        // has one.
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].len());
        let threads = self.pools.len().min(order.len().div_ceil(4)).max(1);
        let batch_len = self
            .options
            .batch_size
            .min(order.len().div_ceil(threads))
            .max(1);
        let mut parts: Vec<Vec<Vec<(usize, Encoding)>>> =
            (0..threads).map(|_| Vec::new()).collect();
        for (n, chunk) in order.chunks(batch_len).enumerate() {
            let batch = chunk
                .iter()
                .map(|&i| (i, std::mem::take(&mut encodings[i])))
                .collect();
            parts[n % threads].push(batch);
        }

        let results: Vec<Result<Indexed, EmbedError>> = std::thread::scope(|s| {
            let running: Vec<_> = parts
                .into_iter()
                .zip(&self.pools)
                .map(|(batches, pool)| s.spawn(move || pool.install(|| self.run_batches(batches))))
                .collect();
            running
                .into_iter()
                .map(|t| {
                    t.join().unwrap_or_else(|_| {
                        Err(EmbedError::Internal("an embedding thread panicked".into()))
                    })
                })
                .collect()
        });
        let mut vectors = vec![Vec::new(); texts.len()];
        for part in results {
            for (i, row) in part? {
                vectors[i] = row;
            }
        }
        Ok(vectors)
    }

    /// Runs batches one after another on the calling thread; answers each text's vector with its
    /// index.
    fn run_batches(&self, batches: Vec<Vec<(usize, Encoding)>>) -> Result<Indexed, EmbedError> {
        let mut out = Vec::new();
        for batch in batches {
            let (indices, encodings): (Vec<usize>, Vec<Encoding>) = batch.into_iter().unzip();
            let rows = self.forward(&encodings).map_err(internal)?;
            if rows.len() != indices.len() || rows.iter().any(|row| row.len() != self.dimensions) {
                return Err(EmbedError::BadResponse(format!(
                    "{} vectors for {} texts, expected {} dimensions",
                    rows.len(),
                    indices.len(),
                    self.dimensions
                )));
            }
            out.extend(indices.into_iter().zip(rows));
        }
        Ok(out)
    }

    /// One forward pass over a batch of encodings.
    fn forward(&self, batch: &[Encoding]) -> candle_core::Result<Vec<Vec<f32>>> {
        let tokens = batch.iter().map(Encoding::len).sum();
        let mut ids = Vec::with_capacity(tokens);
        let mut type_ids = Vec::with_capacity(tokens);
        let mut lengths = Vec::with_capacity(batch.len());
        for encoding in batch {
            // Were the tokenizer to pad, the live tokens would be the mask's leading ones.
            let mask = encoding.get_attention_mask();
            let live = mask.iter().take_while(|&&m| m == 1).count();
            if mask[live..].iter().any(|&m| m != 0) {
                candle_core::bail!("the attention mask is not a run of ones then zeros");
            }
            ids.extend_from_slice(&encoding.get_ids()[..live]);
            type_ids.extend_from_slice(&encoding.get_type_ids()[..live]);
            lengths.push(live);
        }
        let mut pooled = self.model.mean_pooled(&Batch {
            ids,
            type_ids,
            lengths,
        })?;
        if self.options.normalize {
            vectorised(self.model.arch(), L2Normalize(&mut pooled));
        }
        Ok(pooled)
    }
}

#[async_trait]
impl Embedder for CandleEmbedder {
    fn dimensions(&self) -> usize {
        self.inner.dimensions
    }

    fn max_input_tokens(&self) -> usize {
        self.inner.max_input_tokens()
    }

    fn count_tokens(&self, text: &str) -> Result<usize, EmbedError> {
        let encoding = self
            .inner
            .tokenizer
            .encode_fast(text, false)
            .map_err(EmbedError::Internal)?;
        Ok(encoding.len())
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let inner = Arc::clone(&self.inner);
        let texts = texts.to_vec();
        tokio::task::spawn_blocking(move || inner.embed_blocking(&texts))
            .await
            .map_err(internal)?
    }
}
