//! The encoder's element-wise work on plain slices: exponential, GELU, layer normalisation,
//! softmax and pooling.
//!
//! Written so that LLVM vectorises them: no calls into libm (its `expf` and `erff` are scalar and
//! took a fifth of the time in Candle's own ops), sums over independent lanes, and
//! `#[inline(always)]` throughout. Each pass is a [`Kernel`] run by [`vectorised`], which compiles
//! it (through `pulp`'s safe dispatch) for the CPU's widest vector instructions, chosen at run
//! time. Closures would not do (their bodies are functions of their own, compiled without those
//! instructions, which turns every `mul_add` into a call to libm), so the arithmetic lives in
//! plain loops. On an x86 CPU without AVX2 and FMA, `pulp` runs the scalar path, where `mul_add`
//! is libm's `fmaf`: correct, but slow.

use pulp::{Arch, Simd, WithSimd};

/// One pass over slices, to run with [`vectorised`].
pub(crate) trait Kernel {
    type Output;
    /// Implementations are `#[inline(always)]`, so that they are compiled inside the dispatcher.
    fn run(self) -> Self::Output;
}

struct Dispatch<K>(K);

impl<K: Kernel> WithSimd for Dispatch<K> {
    type Output = K::Output;

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) -> K::Output {
        self.0.run()
    }
}

/// Runs `kernel` compiled for the best instruction set `arch` found.
pub(crate) fn vectorised<K: Kernel>(arch: Arch, kernel: K) -> K::Output {
    arch.dispatch(Dispatch(kernel))
}

/// Lanes of the partial sums: one AVX-512 register of f32.
const LANES: usize = 16;

const LN_2_HI: f32 = 0.693_359_4;
const LN_2_LO: f32 = -2.121_944_4e-4;

/// Added to a float below 2^22 in magnitude, rounds it to an integer (ties to even) that then
/// sits in the low bits of the sum's representation.
const ROUNDER: f32 = 12_582_912.0; // 1.5 · 2^23

/// `e^x` to about one unit in the last place, for `x` in [-87, 88] (clamped outside it).
///
/// `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`; `e^r` by its Taylor series to degree 7 (remainder below
/// 2^-24 on that interval); `2^n` built from its exponent bits. Integer work is done on the bits
/// of `ROUNDER`'s sum, not with `as` casts, which LLVM would not vectorise.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.0, 88.0);
    let shifted = x.mul_add(std::f32::consts::LOG2_E, ROUNDER);
    let n = shifted - ROUNDER;
    let r = n.mul_add(-LN_2_HI, x);
    let r = n.mul_add(-LN_2_LO, r);
    let mut p: f32 = 1.0 / 5040.0;
    p = p.mul_add(r, 1.0 / 720.0);
    p = p.mul_add(r, 1.0 / 120.0);
    p = p.mul_add(r, 1.0 / 24.0);
    p = p.mul_add(r, 1.0 / 6.0);
    p = p.mul_add(r, 0.5);
    p = p.mul_add(r, 1.0);
    p = p.mul_add(r, 1.0);
    // The low 9 bits of `shifted` are n (two's complement); n + 127 in [1, 254] after the clamp
    // is the biased exponent of 2^n, a normal number.
    let two_n = f32::from_bits(shifted.to_bits().wrapping_add(127) << 23);
    p * two_n
}

/// erf's Maclaurin coefficients, `2/√π · (-1)^n / (n! (2n+1))`, highest first: to 1e-8 for
/// `|x| < 1`.
const ERF_SERIES: [f32; 12] = [
    -1.229_055_5e-9,
    1.480_719_3e-8,
    -1.636_584_5e-7,
    1.646_211_4e-6,
    -1.492_565e-5,
    1.205_533_3e-4,
    -8.548_327e-4,
    5.223_977_6e-3,
    -2.686_617e-2,
    0.112_837_92,
    -0.376_126_4,
    std::f32::consts::FRAC_2_SQRT_PI,
];

/// The error function, to 2.5e-7 absolute: its Maclaurin series below 1, where GELU's inputs
/// mostly are, Abramowitz and Stegun 7.1.26 (1.5e-7, plus rounding) from there on. Both sides
/// are computed and one kept, which vectorises better than a branch.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let z = x.abs();
    let z2 = z * z;
    let mut series = 0.0f32;
    for c in ERF_SERIES {
        series = series.mul_add(z2, c);
    }
    let series = z * series;
    let t = 1.0 / 0.327_591_1f32.mul_add(z, 1.0);
    let mut p = 1.061_405_4f32;
    p = p.mul_add(t, -1.453_152_1);
    p = p.mul_add(t, 1.421_413_7);
    p = p.mul_add(t, -0.284_496_74);
    p = p.mul_add(t, 0.254_829_6);
    let tail = 1.0 - p * t * exp(-z2);
    let y = if z < 1.0 { series } else { tail };
    y.copysign(x)
}

/// The activations BERT models name in `hidden_act`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// Exact GELU, `x·Φ(x)` (Hugging Face's `gelu`).
    Gelu,
    /// GELU's tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
    Relu,
}

impl Activation {
    #[inline(always)]
    fn apply(self, x: f32) -> f32 {
        match self {
            Self::Gelu => 0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2)),
            Self::GeluTanh => {
                // tanh(u) = 1 - 2 / (e^{2u} + 1)
                let u = 0.797_884_6 * 0.044_715f32.mul_add(x * x * x, x);
                0.5 * x * (2.0 - 2.0 / (exp(2.0 * u) + 1.0))
            }
            Self::Relu => x.max(0.0),
        }
    }
}

/// `activation(rows[r] + bias)` for each row of `rows`, whose width is `bias.len()`.
pub(crate) struct BiasActivation<'a> {
    pub(crate) rows: &'a mut [f32],
    pub(crate) bias: &'a [f32],
    pub(crate) activation: Activation,
}

impl Kernel for BiasActivation<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        // One loop per activation: a `match` inside the loop would keep it from vectorising.
        match self.activation {
            Activation::Gelu => bias_then(self.rows, self.bias, Activation::Gelu),
            Activation::GeluTanh => bias_then(self.rows, self.bias, Activation::GeluTanh),
            Activation::Relu => bias_then(self.rows, self.bias, Activation::Relu),
        }
    }
}

#[inline(always)]
fn bias_then(rows: &mut [f32], bias: &[f32], activation: Activation) {
    for row in rows.chunks_exact_mut(bias.len()) {
        for (x, &b) in row.iter_mut().zip(bias) {
            *x = activation.apply(*x + b);
        }
    }
}

#[inline(always)]
fn sum(values: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail: f32 = chunks.remainder().iter().sum();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += x;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

#[inline(always)]
fn max(values: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; LANES];
    let chunks = values.chunks_exact(LANES);
    let tail = chunks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = if x > *lane { x } else { *lane };
        }
    }
    lanes.into_iter().fold(tail, f32::max)
}

#[inline(always)]
fn sum_of_squares(values: &[f32], shift: f32) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let mut tail = 0.0;
    for &x in chunks.remainder() {
        tail += (x - shift) * (x - shift);
    }
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane = (x - shift).mul_add(x - shift, *lane);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// A layer normalisation's parameters (`LayerNorm.weight`, `LayerNorm.bias`, `layer_norm_eps`).
#[derive(Debug)]
pub(crate) struct Norm {
    pub(crate) weight: Vec<f32>,
    pub(crate) bias: Vec<f32>,
    pub(crate) eps: f32,
}

impl Norm {
    /// Normalises `row` in place: zero mean and unit variance, then scaled and shifted.
    #[inline(always)]
    pub(crate) fn apply(&self, row: &mut [f32]) {
        #[allow(clippy::cast_precision_loss)]
        let width = row.len() as f32;
        let mean = sum(row) / width;
        let variance = sum_of_squares(row, mean) / width;
        let scale = 1.0 / (variance + self.eps).sqrt();
        for ((x, &w), &b) in row.iter_mut().zip(&self.weight).zip(&self.bias) {
            *x = ((*x - mean) * scale).mul_add(w, b);
        }
    }
}

/// `norm(rows[r] + bias + residual[r])` for each row: a BERT sub-layer's output, its bias, the
/// skip connection and the normalisation in one pass.
pub(crate) struct ResidualNorm<'a> {
    pub(crate) norm: &'a Norm,
    pub(crate) rows: &'a mut [f32],
    pub(crate) bias: &'a [f32],
    pub(crate) residual: &'a [f32],
}

impl Kernel for ResidualNorm<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let width = self.bias.len();
        for (row, skip) in self
            .rows
            .chunks_exact_mut(width)
            .zip(self.residual.chunks_exact(width))
        {
            for ((x, &b), &s) in row.iter_mut().zip(self.bias).zip(skip) {
                *x += b + s;
            }
            self.norm.apply(row);
        }
    }
}

/// Attention probabilities, in place of the scores: softmax of each row of `scores` (square
/// matrices of `seq_len`, one per sequence and head, `heads` per sequence) over the sequence's
/// live tokens, the first `lengths[sequence]` columns. The other columns (padding) get
/// probability 0, as an additive mask of the dtype's minimum gives. Rows of padded queries are
/// left as they are (finite: a zero query scores zero): their outputs are discarded.
pub(crate) struct MaskedSoftmax<'a> {
    pub(crate) scores: &'a mut [f32],
    pub(crate) seq_len: usize,
    pub(crate) heads: usize,
    pub(crate) lengths: &'a [usize],
}

impl Kernel for MaskedSoftmax<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let width = self.seq_len;
        if width == 0 {
            return;
        }
        for (matrix, scores) in self.scores.chunks_exact_mut(width * width).enumerate() {
            let keys = self.lengths[matrix / self.heads].min(width);
            for row in scores.chunks_exact_mut(width).take(keys) {
                let (live, padding) = row.split_at_mut(keys);
                let max = max(live);
                for x in live.iter_mut() {
                    *x = exp(*x - max);
                }
                let scale = 1.0 / sum(live);
                for x in live.iter_mut() {
                    *x *= scale;
                }
                padding.fill(0.0);
            }
        }
    }
}

/// Mean pooling, as sentence-transformers does it over the attention mask: for each sequence of
/// packed rows (`lengths[sequence]` rows each `width` wide), the mean of its rows; zeros for a
/// sequence with none.
pub(crate) struct MeanPool<'a> {
    pub(crate) rows: &'a [f32],
    pub(crate) width: usize,
    pub(crate) lengths: &'a [usize],
}

impl Kernel for MeanPool<'_> {
    type Output = Vec<Vec<f32>>;

    #[inline(always)]
    fn run(self) -> Vec<Vec<f32>> {
        let mut rows = self.rows.chunks_exact(self.width);
        let mut means = Vec::with_capacity(self.lengths.len());
        for &tokens in self.lengths {
            let mut mean = vec![0.0f32; self.width];
            for row in rows.by_ref().take(tokens) {
                for (m, &x) in mean.iter_mut().zip(row) {
                    *m += x;
                }
            }
            #[allow(clippy::cast_precision_loss)]
            let count = (tokens as f32).max(1e-9);
            for m in &mut mean {
                *m /= count;
            }
            means.push(mean);
        }
        means
    }
}

/// The inverse of [`SplitHeads`] for attention's output: `sequences·heads × seq_len × head_dim`
/// back to packed tokens, heads side by side (`tokens × heads·head_dim`).
pub(crate) fn merge_heads(
    context: &[f32],
    heads: usize,
    lengths: &[usize],
    seq_len: usize,
) -> Vec<f32> {
    let head_dim = context.len() / (lengths.len() * heads * seq_len).max(1);
    let mut out = Vec::with_capacity(lengths.iter().sum::<usize>() * heads * head_dim);
    for (sequence, position) in packed(lengths) {
        for head in 0..heads {
            let from = ((sequence * heads + head) * seq_len + position) * head_dim;
            out.extend_from_slice(&context[from..from + head_dim]);
        }
    }
    out
}

/// Each row divided by its L2 norm (clamped to 1e-12, like `torch.nn.functional.normalize`).
pub(crate) struct L2Normalize<'a>(pub(crate) &'a mut [Vec<f32>]);

impl Kernel for L2Normalize<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        for row in self.0 {
            let norm = sum_of_squares(row, 0.0).sqrt().max(1e-12);
            for x in row.iter_mut() {
                *x /= norm;
            }
        }
    }
}

/// The `(sequence, position)` of each token of sequences of `lengths` packed one after another.
#[inline(always)]
fn packed(lengths: &[usize]) -> impl Iterator<Item = (usize, usize)> + '_ {
    lengths
        .iter()
        .enumerate()
        .flat_map(|(sequence, &n)| (0..n).map(move |position| (sequence, position)))
}

/// BERT's input: for each token of sequences packed one after another, its word, position (its
/// index in its sequence) and token type embeddings summed, then normalised. Ids must be in
/// range.
pub(crate) struct Embed<'a> {
    pub(crate) ids: &'a [u32],
    pub(crate) type_ids: &'a [u32],
    pub(crate) lengths: &'a [usize],
    pub(crate) words: &'a [f32],
    pub(crate) positions: &'a [f32],
    pub(crate) types: &'a [f32],
    pub(crate) norm: &'a Norm,
}

impl Kernel for Embed<'_> {
    type Output = Vec<f32>;

    #[inline(always)]
    fn run(self) -> Vec<f32> {
        let width = self.norm.weight.len();
        let mut out = Vec::with_capacity(self.ids.len() * width);
        for ((&id, &kind), (_, position)) in
            self.ids.iter().zip(self.type_ids).zip(packed(self.lengths))
        {
            let word = &self.words[id as usize * width..][..width];
            let position = &self.positions[position * width..][..width];
            let kind = &self.types[kind as usize * width..][..width];
            let start = out.len();
            out.resize(start + width, 0.0);
            let row = &mut out[start..];
            for (((o, &w), &p), &k) in row.iter_mut().zip(word).zip(position).zip(kind) {
                *o = w + p + k;
            }
            self.norm.apply(row);
        }
        out
    }
}

/// Splits the fused query, key and value projections of packed sequences (`tokens × 3·hidden`)
/// into three `sequences·heads × seq_len × head_dim` arrays, padded with zeros, adding the biases
/// and scaling the queries by `query_scale`.
pub(crate) struct SplitHeads<'a> {
    pub(crate) qkv: &'a [f32],
    pub(crate) bias: &'a [f32],
    pub(crate) heads: usize,
    pub(crate) lengths: &'a [usize],
    pub(crate) seq_len: usize,
    pub(crate) query_scale: f32,
}

impl Kernel for SplitHeads<'_> {
    type Output = [Vec<f32>; 3];

    #[inline(always)]
    fn run(self) -> [Vec<f32>; 3] {
        let hidden = self.bias.len() / 3;
        let head_dim = hidden / self.heads;
        let size = self.lengths.len() * self.seq_len * hidden;
        let mut parts = [vec![0.0; size], vec![0.0; size], vec![0.0; size]];
        for (projections, (sequence, position)) in
            self.qkv.chunks_exact(3 * hidden).zip(packed(self.lengths))
        {
            for (part, (target, factor)) in parts
                .iter_mut()
                .zip([self.query_scale, 1.0, 1.0])
                .enumerate()
            {
                for head in 0..self.heads {
                    let to = ((sequence * self.heads + head) * self.seq_len + position) * head_dim;
                    let from = part * hidden + head * head_dim;
                    let source = &projections[from..from + head_dim];
                    let bias = &self.bias[from..from + head_dim];
                    for ((t, &x), &b) in target[to..to + head_dim].iter_mut().zip(source).zip(bias)
                    {
                        *t = (x + b) * factor;
                    }
                }
            }
        }
        parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf from its Maclaurin series (|x| < 2) or continued fraction (|x| ≥ 2) in f64, as the
    /// reference: the standard library has no erf.
    fn erf_f64(x: f64) -> f64 {
        let z = x.abs();
        let value = if z < 2.0 {
            let mut term = z;
            let mut total = z;
            for n in 1..60 {
                let n = f64::from(n);
                term *= -z * z / n;
                total += term / (2.0 * n + 1.0);
            }
            total * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            // erfc(z) = e^{-z²}/√π · 1/(z + 1/2/(z + 1/(z + 3/2/(z + …))))
            let mut fraction = z;
            for k in (1..80).rev() {
                fraction = z + f64::from(k) / 2.0 / fraction;
            }
            1.0 - (-z * z).exp() / std::f64::consts::PI.sqrt() / fraction
        };
        value.copysign(x)
    }

    fn grid() -> impl Iterator<Item = f32> {
        (-20_000..=20_000).map(|i| i as f32 / 1000.0)
    }

    #[test]
    fn exp_is_within_two_ulps_of_the_standard_library() {
        for x in (-87_000..=88_000).map(|i| i as f32 / 1000.0) {
            let (ours, std) = (exp(x), x.exp());
            assert!(
                ((ours - std) / std).abs() < 2.5e-7,
                "exp({x}) = {ours}, not {std}"
            );
        }
        assert_eq!(exp(0.0), 1.0);
        assert!(exp(-1000.0) > 0.0 && exp(-1000.0) < 1e-37);
        assert!(exp(1000.0).is_finite());
    }

    #[test]
    fn erf_is_within_2_5e7_of_the_series() {
        for x in grid() {
            let (ours, reference) = (f64::from(erf(x)), erf_f64(f64::from(x)));
            assert!(
                (ours - reference).abs() < 2.5e-7,
                "erf({x}) = {ours}, not {reference}"
            );
        }
        assert_eq!(erf(0.0), 0.0);
        assert_eq!(erf(10.0), 1.0);
        assert_eq!(erf(-10.0), -1.0);
    }

    #[test]
    fn activations_match_their_definitions() {
        for x in grid().step_by(7) {
            let x64 = f64::from(x);
            let gelu = 0.5 * x64 * (1.0 + erf_f64(x64 / std::f64::consts::SQRT_2));
            let tanh = 0.5
                * x64
                * (1.0
                    + ((2.0 / std::f64::consts::PI).sqrt() * (x64 + 0.044_715 * x64.powi(3)))
                        .tanh());
            for (activation, expected) in [
                (Activation::Gelu, gelu),
                (Activation::GeluTanh, tanh),
                (Activation::Relu, x64.max(0.0)),
            ] {
                let ours = f64::from(activation.apply(x));
                assert!(
                    (ours - expected).abs() < 4e-7 * x64.abs().max(1.0),
                    "{activation:?}({x}) = {ours}, not {expected}"
                );
            }
        }
    }

    #[test]
    fn bias_activation_adds_the_bias_per_column() {
        let mut rows = [1.0, -2.0, 3.0, 4.0];
        vectorised(
            Arch::new(),
            BiasActivation {
                rows: &mut rows,
                bias: &[1.0, 2.0],
                activation: Activation::Relu,
            },
        );
        assert_eq!(rows, [2.0, 0.0, 4.0, 6.0]);
    }

    #[test]
    fn norm_centres_scales_and_shifts_each_row() {
        // 40 columns: more than one chunk of lanes plus a tail.
        let width = 40;
        let norm = Norm {
            weight: vec![2.0; width],
            bias: vec![1.0; width],
            eps: 1e-12,
        };
        let rows: Vec<f32> = (0..2 * width).map(|i| (i * i % 17) as f32).collect();
        let zeros = vec![0.0; width];
        let skip = vec![0.5; 2 * width];
        let residual_norm = |rows: &[f32], residual: &[f32]| {
            let mut rows = rows.to_vec();
            vectorised(
                Arch::new(),
                ResidualNorm {
                    norm: &norm,
                    rows: &mut rows,
                    bias: &zeros,
                    residual,
                },
            );
            rows
        };
        let out = residual_norm(&rows, &skip);
        for row in out.chunks_exact(width) {
            let standardised: Vec<f64> = row.iter().map(|&y| (f64::from(y) - 1.0) / 2.0).collect();
            let mean = standardised.iter().sum::<f64>() / width as f64;
            let variance = standardised.iter().map(|z| z * z).sum::<f64>() / width as f64;
            assert!(
                mean.abs() < 1e-6 && (variance - 1.0).abs() < 1e-5,
                "{row:?}"
            );
        }
        // Shifting every input by the same amount changes nothing.
        let shifted: Vec<f32> = rows.iter().map(|x| x + 0.5).collect();
        let direct = residual_norm(&shifted, &vec![0.0; 2 * width]);
        for (a, b) in out.iter().zip(&direct) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn masked_softmax_gives_padding_nothing() {
        // Two sequences of one head, padded to 2 tokens: the first has 2 live tokens, the
        // second 1, so its second column (whatever it holds) gets nothing, and its padded
        // query's row is left alone.
        let mut out = [1.0, 3.0, 0.0, 0.0, 5.0, 1e9, -2.0, f32::NAN];
        vectorised(
            Arch::new(),
            MaskedSoftmax {
                scores: &mut out,
                seq_len: 2,
                heads: 1,
                lengths: &[2, 1],
            },
        );
        let first = 1.0 / (1.0 + 2f64.exp());
        for (i, expected) in [first, 1.0 - first, 0.5, 0.5, 1.0, 0.0, -2.0]
            .into_iter()
            .enumerate()
        {
            assert!((f64::from(out[i]) - expected).abs() < 1e-7, "{out:?}");
        }
        assert!(out[7].is_nan());
    }

    #[test]
    fn mean_pool_counts_only_live_tokens() {
        // Packed sequences of two dimensions.
        let rows = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let pool = |lengths: &[usize]| {
            vectorised(
                Arch::new(),
                MeanPool {
                    rows: &rows,
                    width: 2,
                    lengths,
                },
            )
        };
        assert_eq!(pool(&[2, 1]), [[2.0, 3.0], [5.0, 6.0]]);
        assert_eq!(pool(&[0, 1]), [[0.0, 0.0], [1.0, 2.0]]);
    }

    #[test]
    fn l2_normalize_gives_unit_rows_and_leaves_zero_at_zero() {
        let mut rows = vec![vec![3.0, 4.0], vec![-0.001, 0.0], vec![0.0; 3]];
        vectorised(Arch::new(), L2Normalize(&mut rows));
        assert_eq!(rows, [vec![0.6, 0.8], vec![-1.0, 0.0], vec![0.0; 3]]);
    }

    #[test]
    fn split_heads_separates_projections_by_sequence_and_head() {
        // hidden 4 in 2 heads of 2; one sequence of 2 tokens.
        let qkv: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let bias = [0.0; 12];
        let [query, key, value] = vectorised(
            Arch::new(),
            SplitHeads {
                qkv: &qkv,
                bias: &bias,
                heads: 2,
                lengths: &[2],
                seq_len: 2,
                query_scale: 0.5,
            },
        );
        // Head 0 holds columns 0..2 of each token, head 1 columns 2..4.
        assert_eq!(query, [0.0, 0.5, 6.0, 6.5, 1.0, 1.5, 7.0, 7.5]);
        assert_eq!(key, [4.0, 5.0, 16.0, 17.0, 6.0, 7.0, 18.0, 19.0]);
        assert_eq!(value, [8.0, 9.0, 20.0, 21.0, 10.0, 11.0, 22.0, 23.0]);
        assert_eq!(
            merge_heads(&value, 2, &[2], 2),
            qkv[8..12]
                .iter()
                .chain(&qkv[20..24])
                .copied()
                .collect::<Vec<_>>()
        );

        // The same two tokens as sequences of one token each, padded to two: zeros fill the
        // padding, and merging drops it again.
        let [query, _, value] = vectorised(
            Arch::new(),
            SplitHeads {
                qkv: &qkv,
                bias: &bias,
                heads: 2,
                lengths: &[1, 1],
                seq_len: 2,
                query_scale: 0.5,
            },
        );
        assert_eq!(
            query,
            [
                0.0, 0.5, 0.0, 0.0, 1.0, 1.5, 0.0, 0.0, 6.0, 6.5, 0.0, 0.0, 7.0, 7.5, 0.0, 0.0
            ]
        );
        assert_eq!(
            merge_heads(&value, 2, &[1, 1], 2),
            qkv[8..12]
                .iter()
                .chain(&qkv[20..24])
                .copied()
                .collect::<Vec<_>>()
        );
    }
}
