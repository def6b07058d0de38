//! A BERT encoder for sentence embeddings: the linear layers on AMX tiles ([`crate::amx`]) where
//! the CPU has them, else Candle's matrix products, which also do attention's; everything else
//! on plain slices.
//!
//! Candle's own BERT spends half its time outside the matrix products: a scalar `erf` for GELU,
//! separate passes for each bias, residual and normalisation, a copy of every head before and
//! after attention. Here the query, key and value projections are one product, each bias is added
//! in the pass that reads the product, and the element-wise work is vectorised
//! ([`crate::kernels`]). The computation is Hugging Face's `BertModel` in f32, though not bit
//! for bit: `exp` and `erf` are polynomials good to a few 1e-7, queries are scaled before the
//! product with the keys rather than the scores after it, and products are fused multiply-adds.
//! Vectors agree with sentence-transformers' to a cosine of 0.9999998 or better on either path.

use std::collections::HashMap;

use candle_core::{CpuStorage, DType, Device, InplaceOp1, Layout, Storage, Tensor, bail};
use serde::Deserialize;

use crate::amx::{Amx, PackedWeights};
use crate::kernels::{
    Activation, BiasActivation, Embed, MaskedSoftmax, MeanPool, Norm, ResidualNorm, SplitHeads,
    merge_heads, vectorised,
};

/// The fields of a Hugging Face BERT `config.json` the encoder uses.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Config {
    pub(crate) vocab_size: usize,
    pub(crate) hidden_size: usize,
    pub(crate) num_hidden_layers: usize,
    pub(crate) num_attention_heads: usize,
    pub(crate) intermediate_size: usize,
    pub(crate) hidden_act: HiddenAct,
    pub(crate) max_position_embeddings: usize,
    #[serde(default = "two")]
    pub(crate) type_vocab_size: usize,
    #[serde(default = "bert_layer_norm_eps")]
    pub(crate) layer_norm_eps: f64,
    /// Never read: deserialising it is what refuses other kinds.
    #[serde(default)]
    #[expect(
        dead_code,
        reason = "deserialised only to refuse other position embeddings"
    )]
    pub(crate) position_embedding_type: PositionEmbeddingType,
    #[serde(default)]
    pub(crate) model_type: Option<String>,
}

fn two() -> usize {
    2
}

fn bert_layer_norm_eps() -> f64 {
    1e-12
}

/// `hidden_act`, as Hugging Face spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HiddenAct {
    Gelu,
    #[serde(alias = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluApproximate,
    Relu,
}

/// Only absolute position embeddings (BERT's own) are supported; any other value fails to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PositionEmbeddingType {
    #[default]
    Absolute,
}

/// A batch of token sequences packed one after another, without padding.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) ids: Vec<u32>,
    /// Token type (segment) ids, one per token.
    pub(crate) type_ids: Vec<u32>,
    /// The tokens of each sequence.
    pub(crate) lengths: Vec<usize>,
}

/// A linear layer's weight matrix (`inputs × outputs`), as its products run.
#[derive(Debug)]
enum Linear {
    /// f32 products through Candle (gemm).
    F32(Tensor),
    /// bf16 products in three terms on AMX tiles ([`crate::amx`]).
    Tiles(Amx, PackedWeights),
}

impl Linear {
    /// `weights` (`inputs × outputs`) on AMX tiles when `amx` is given and the shape fits them,
    /// else as it is.
    fn new(weights: Tensor, amx: Option<Amx>) -> candle_core::Result<Self> {
        let (inputs, outputs) = weights.dims2()?;
        match amx {
            Some(amx) if PackedWeights::fits(inputs, outputs) => {
                let packed = with_data(&weights, |w| PackedWeights::new(w, inputs, outputs))?;
                Ok(Self::Tiles(amx, packed))
            }
            _ => Ok(Self::F32(weights)),
        }
    }
}

#[derive(Debug)]
struct Layer {
    /// `hidden × 3·hidden`: the query, key and value projections side by side.
    qkv: Linear,
    qkv_bias: Vec<f32>,
    attention_out: Linear,
    attention_out_bias: Vec<f32>,
    attention_norm: Norm,
    /// `hidden × intermediate`.
    up: Linear,
    up_bias: Vec<f32>,
    /// `intermediate × hidden`.
    down: Linear,
    down_bias: Vec<f32>,
    output_norm: Norm,
}

#[derive(Debug)]
pub(crate) struct BertEncoder {
    word_embeddings: Vec<f32>,
    position_embeddings: Vec<f32>,
    type_embeddings: Vec<f32>,
    embedding_norm: Norm,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    vocab: usize,
    positions: usize,
    types: usize,
    activation: Activation,
    arch: pulp::Arch,
}

/// The weights of a checkpoint by name, under the prefix the checkpoint uses.
struct Weights<'a> {
    tensors: &'a HashMap<String, Tensor>,
    prefix: String,
}

impl Weights<'_> {
    fn tensor(&self, name: &str, shape: &[usize]) -> candle_core::Result<Tensor> {
        let full = format!("{}{name}", self.prefix);
        let Some(tensor) = self.tensors.get(&full) else {
            bail!("the weights have no tensor `{full}`")
        };
        if tensor.dims() != shape {
            bail!("`{full}` has shape {:?}, expected {shape:?}", tensor.dims())
        }
        tensor.to_dtype(DType::F32)
    }

    fn vector(&self, name: &str, shape: &[usize]) -> candle_core::Result<Vec<f32>> {
        self.tensor(name, shape)?.flatten_all()?.to_vec1()
    }

    /// A `Linear` layer's weight (`out × in`), transposed to `in × out` for `x · W`.
    fn linear(&self, name: &str, inputs: usize, outputs: usize) -> candle_core::Result<Tensor> {
        self.tensor(&format!("{name}.weight"), &[outputs, inputs])?
            .t()?
            .contiguous()
    }

    fn norm(&self, name: &str, width: usize, eps: f32) -> candle_core::Result<Norm> {
        Ok(Norm {
            weight: self.vector(&format!("{name}.weight"), &[width])?,
            bias: self.vector(&format!("{name}.bias"), &[width])?,
            eps,
        })
    }
}

impl BertEncoder {
    /// Builds the encoder from a checkpoint's tensors, named as Hugging Face names them, with or
    /// without a `bert.` (or `<model_type>.`) prefix. With `amx`, the linear layers whose shape
    /// fits run on AMX tiles.
    pub(crate) fn load(
        tensors: &HashMap<String, Tensor>,
        config: &Config,
        amx: Option<Amx>,
    ) -> candle_core::Result<Self> {
        let hidden = config.hidden_size;
        let heads = config.num_attention_heads;
        // RoBERTa-style checkpoints load under their `model_type` prefix but number positions
        // from the padding index on: refused rather than embedded wrongly.
        if let Some(kind) = config.model_type.as_deref().filter(|&kind| kind != "bert") {
            bail!("model_type `{kind}` is not BERT")
        }
        if heads == 0 || !hidden.is_multiple_of(heads) {
            bail!("hidden_size {hidden} is not a multiple of num_attention_heads {heads}")
        }
        let activation = match config.hidden_act {
            HiddenAct::Gelu => Activation::Gelu,
            HiddenAct::GeluApproximate => Activation::GeluTanh,
            HiddenAct::Relu => Activation::Relu,
        };
        let marker = "embeddings.word_embeddings.weight";
        let prefix = std::iter::once(String::new())
            .chain(std::iter::once("bert.".to_owned()))
            .chain(config.model_type.iter().map(|t| format!("{t}.")))
            .find(|prefix| tensors.contains_key(&format!("{prefix}{marker}")))
            .unwrap_or_default();
        let weights = Weights { tensors, prefix };
        #[allow(clippy::cast_possible_truncation)]
        let eps = config.layer_norm_eps as f32;
        let intermediate = config.intermediate_size;

        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let at = |name: &str| format!("encoder.layer.{i}.{name}");
                let projections = ["query", "key", "value"]
                    .map(|p| weights.linear(&at(&format!("attention.self.{p}")), hidden, hidden));
                let [query, key, value] = projections;
                let linear = |name: &str, inputs, outputs| {
                    Linear::new(weights.linear(&at(name), inputs, outputs)?, amx)
                };
                let mut qkv_bias = Vec::with_capacity(3 * hidden);
                for p in ["query", "key", "value"] {
                    qkv_bias.extend(
                        weights.vector(&at(&format!("attention.self.{p}.bias")), &[hidden])?,
                    );
                }
                Ok(Layer {
                    qkv: Linear::new(Tensor::cat(&[query?, key?, value?], 1)?, amx)?,
                    qkv_bias,
                    attention_out: linear("attention.output.dense", hidden, hidden)?,
                    attention_out_bias: weights
                        .vector(&at("attention.output.dense.bias"), &[hidden])?,
                    attention_norm: weights.norm(&at("attention.output.LayerNorm"), hidden, eps)?,
                    up: linear("intermediate.dense", hidden, intermediate)?,
                    up_bias: weights.vector(&at("intermediate.dense.bias"), &[intermediate])?,
                    down: linear("output.dense", intermediate, hidden)?,
                    down_bias: weights.vector(&at("output.dense.bias"), &[hidden])?,
                    output_norm: weights.norm(&at("output.LayerNorm"), hidden, eps)?,
                })
            })
            .collect::<candle_core::Result<Vec<_>>>()?;

        Ok(Self {
            word_embeddings: weights.vector(marker, &[config.vocab_size, hidden])?,
            position_embeddings: weights.vector(
                "embeddings.position_embeddings.weight",
                &[config.max_position_embeddings, hidden],
            )?,
            type_embeddings: weights.vector(
                "embeddings.token_type_embeddings.weight",
                &[config.type_vocab_size, hidden],
            )?,
            embedding_norm: weights.norm("embeddings.LayerNorm", hidden, eps)?,
            layers,
            hidden,
            heads,
            vocab: config.vocab_size,
            positions: config.max_position_embeddings,
            types: config.type_vocab_size,
            activation,
            arch: pulp::Arch::new(),
        })
    }

    /// The instruction set the encoder's element-wise kernels run with.
    pub(crate) fn arch(&self) -> pulp::Arch {
        self.arch
    }

    /// Whether the linear layers run on AMX tiles.
    pub(crate) fn uses_amx(&self) -> bool {
        self.layers
            .iter()
            .any(|layer| matches!(layer.up, Linear::Tiles(..)))
    }

    /// `input · linear`: a new tensor the pass after it can rewrite in place.
    fn product(&self, input: &Tensor, linear: &Linear) -> candle_core::Result<Tensor> {
        match linear {
            Linear::F32(weights) => input.matmul(weights),
            Linear::Tiles(amx, weights) => {
                let rows = input.dims2()?.0;
                let out = with_data(input, |x| amx.product(self.arch, x, weights))?;
                Tensor::from_vec(out, (rows, weights.outputs()), &Device::Cpu)
            }
        }
    }

    /// The mean over its live tokens of each row's last hidden states (`rows × hidden`).
    pub(crate) fn mean_pooled(&self, batch: &Batch) -> candle_core::Result<Vec<Vec<f32>>> {
        let tokens: usize = batch.lengths.iter().sum();
        if batch.ids.len() != tokens || batch.type_ids.len() != tokens {
            bail!(
                "a batch of {tokens} tokens has {} ids and {} token types",
                batch.ids.len(),
                batch.type_ids.len()
            )
        }
        if tokens == 0 {
            // Only a tokenizer that adds no special tokens gives empty sequences; their mean
            // over no tokens is zero, as sentence-transformers' clamped division gives.
            return Ok(vec![vec![0.0; self.hidden]; batch.lengths.len()]);
        }
        let seq_len = batch.lengths.iter().copied().max().unwrap_or(0);
        if seq_len > self.positions {
            bail!(
                "{seq_len} tokens exceed the model's {} positions",
                self.positions
            )
        }
        let hidden = self.hidden;

        if let Some(&id) = batch.ids.iter().find(|&&id| id as usize >= self.vocab) {
            bail!("token id {id} is outside the vocabulary of {}", self.vocab)
        }
        if let Some(&t) = batch.type_ids.iter().find(|&&t| t as usize >= self.types) {
            bail!("token type {t} is outside the model's {}", self.types)
        }
        let embedded = vectorised(
            self.arch,
            Embed {
                ids: &batch.ids,
                type_ids: &batch.type_ids,
                lengths: &batch.lengths,
                words: &self.word_embeddings,
                positions: &self.position_embeddings,
                types: &self.type_embeddings,
                norm: &self.embedding_norm,
            },
        );
        // Each product's output is a fresh tensor, and the pass after it (bias, activation,
        // residual, normalisation) rewrites it in place.
        let mut state = Tensor::from_vec(embedded, (tokens, hidden), &Device::Cpu)?;
        for layer in &self.layers {
            let context = self.attention(&self.product(&state, &layer.qkv)?, layer, batch)?;
            let context = Tensor::from_vec(context, (tokens, hidden), &Device::Cpu)?;
            let attended = self.product(&context, &layer.attention_out)?;
            self.add_and_norm(
                &attended,
                &layer.attention_out_bias,
                &state,
                &layer.attention_norm,
            )?;
            let activated = self.product(&attended, &layer.up)?;
            in_place(&activated, |rows| {
                vectorised(
                    self.arch,
                    BiasActivation {
                        rows,
                        bias: &layer.up_bias,
                        activation: self.activation,
                    },
                );
            })?;
            let output = self.product(&activated, &layer.down)?;
            self.add_and_norm(&output, &layer.down_bias, &attended, &layer.output_norm)?;
            state = output;
        }
        with_data(&state, |rows| {
            vectorised(
                self.arch,
                MeanPool {
                    rows,
                    width: hidden,
                    lengths: &batch.lengths,
                },
            )
        })
    }

    /// A sub-layer's "add & norm", in place of its output: `norm(output + bias + residual)`.
    fn add_and_norm(
        &self,
        output: &Tensor,
        bias: &[f32],
        residual: &Tensor,
        norm: &Norm,
    ) -> candle_core::Result<()> {
        with_data(residual, |residual| {
            in_place(output, |rows| {
                vectorised(
                    self.arch,
                    ResidualNorm {
                        norm,
                        rows,
                        bias,
                        residual,
                    },
                );
            })
        })?
    }

    /// Multi-head self-attention within each sequence; answers the heads' outputs side by side
    /// (`tokens × hidden`), before the output projection. Sequences are padded to the longest
    /// for the products of queries and keys, and the padding is masked out.
    fn attention(
        &self,
        qkv: &Tensor,
        layer: &Layer,
        batch: &Batch,
    ) -> candle_core::Result<Vec<f32>> {
        let (hidden, heads) = (self.hidden, self.heads);
        let rows = batch.lengths.len();
        let seq_len = batch.lengths.iter().copied().max().unwrap_or(0);
        let head_dim = hidden / heads;
        #[allow(clippy::cast_precision_loss)]
        let query_scale = 1.0 / (head_dim as f32).sqrt();

        let [query, key, value] = with_data(qkv, |qkv| {
            vectorised(
                self.arch,
                SplitHeads {
                    qkv,
                    bias: &layer.qkv_bias,
                    heads,
                    lengths: &batch.lengths,
                    seq_len,
                    query_scale,
                },
            )
        })?;
        let shape = (rows * heads, seq_len, head_dim);
        let query = Tensor::from_vec(query, shape, &Device::Cpu)?;
        let key = Tensor::from_vec(key, shape, &Device::Cpu)?;
        let value = Tensor::from_vec(value, shape, &Device::Cpu)?;

        let probabilities = query.matmul(&key.t()?)?;
        in_place(&probabilities, |scores| {
            vectorised(
                self.arch,
                MaskedSoftmax {
                    scores,
                    seq_len,
                    heads,
                    lengths: &batch.lengths,
                },
            );
        })?;
        let context = probabilities.matmul(&value)?;

        with_data(&context, |context| {
            merge_heads(context, heads, &batch.lengths, seq_len)
        })
    }
}

/// Rewrites the values of a contiguous f32 tensor on the CPU with `f`.
fn in_place(tensor: &Tensor, f: impl Fn(&mut [f32])) -> candle_core::Result<()> {
    tensor.inplace_op1(&InPlace(f))
}

/// Candle's safe way to mutate a tensor's storage.
struct InPlace<F>(F);

impl<F: Fn(&mut [f32])> InplaceOp1 for InPlace<F> {
    fn name(&self) -> &'static str {
        "embed-candle-in-place"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("expected a contiguous tensor")
        };
        match storage {
            CpuStorage::F32(data) => {
                (self.0)(&mut data[start..end]);
                Ok(())
            }
            _ => bail!("expected an f32 tensor"),
        }
    }
}

/// Calls `f` with the values of a contiguous f32 tensor on the CPU, without copying them.
fn with_data<R>(tensor: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let (storage, layout) = tensor.storage_and_layout();
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("expected a contiguous tensor")
    };
    match &*storage {
        Storage::Cpu(CpuStorage::F32(data)) => Ok(f(&data[start..end])),
        _ => bail!("expected an f32 tensor on the CPU"),
    }
}
