//! Local sentence embedders on [Candle](https://docs.rs/candle-core), behind the domain's
//! [`Embedder`](domain::ports::Embedder) port.
//!
//! [`CandleEmbedder`] runs a BERT-family encoder (for example `all-MiniLM-L6-v2`) on the CPU in
//! F32, loaded from a local directory in Hugging Face layout (`config.json`, `model.safetensors`,
//! `tokenizer.json`). It reproduces sentence-transformers: mean pooling over the attention mask,
//! then L2 normalisation. The encoder is this crate's own: the linear layers on Intel AMX tiles
//! in three bf16 terms where the CPU has them ([`amx`]'s module docs tell why that is as exact
//! as f32), else Candle's f32 matrix products (gemm, with AVX-512 kernels where the CPU has
//! them); vectorised element-wise kernels for the rest.
//!
//! Invariants:
//! - **A text is never truncated**: one longer than [`max_input_tokens`] fails the whole call
//!   with [`EmbedError::TooLong`](domain::ports::EmbedError::TooLong). Whatever truncation the
//!   shipped `tokenizer.json` configures is switched off at load time.
//! - **Padding never changes a vector**: sequences are packed without padding through the
//!   linear layers and pooling; attention pads each batch to its longest member and masks the
//!   padding out.
//! - **Inference never runs on the async executor**: it runs in `tokio::task::spawn_blocking`.
//!
//! [`max_input_tokens`]: domain::ports::Embedder::max_input_tokens

mod amx;
mod embedder;
mod encoder;
mod error;
mod kernels;

pub use embedder::{CandleEmbedder, EmbedderOptions};
pub use error::LoadError;
