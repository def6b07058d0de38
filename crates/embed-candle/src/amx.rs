//! The encoder's linear layers on Intel AMX tiles, as close to f32 as f32 itself.
//!
//! AMX multiplies bf16 matrices (8-bit mantissas) into f32 accumulators at sixteen times the
//! f32 rate of AVX-512 per core. One bf16 product is too coarse for embeddings: vectors drift
//! to a cosine of 0.99998 from sentence-transformers'. Three are not. Each f32 operand `x` is
//! split into a bf16 head and a bf16 tail, `x ≈ hi + lo` (to 2^-17 of `x`), and
//! `x·w ≈ hi·w_hi + hi·w_lo + lo·w_hi`, leaving out only `lo·w_lo`, about 2^-16 of the product.
//! The tile unit sums in f32, so the outputs differ from f32 products by about the rounding of
//! the f32 sums themselves: vectors agree with sentence-transformers to a cosine of 0.9999998
//! or better, as the f32 path's do (the parity test checks both).
//!
//! The three products are a single bf16 product over an inner dimension three times as long:
//! the activations are laid out `hi, hi, lo` in each block of 32 inputs, the weights `hi, lo,
//! hi`. Both are packed in tiles of 16 rows × 32 bf16 (1 KiB, 64-byte aligned: unaligned tile
//! loads run at a sixth of the speed); the weights once, when the model loads, the activations
//! for each product, a few hundred rows at a time so that they stay in the core's L2 cache.
//! Each step of the kernel loads two activation tiles and two weight tiles and accumulates four
//! 16 × 16 blocks of the output (all eight tile registers).
//!
//! Where this differs from f32: the tile unit treats denormal inputs as zero and flushes
//! denormal results (below about 1e-38) to zero, so a value under about 2^-117 keeps only its
//! head's 8 bits; NaNs come through as NaNs, infinities may come out NaN. None of these occur in
//! a BERT encoder's activations, which layer normalisation keeps near unit scale.
//!
//! This module holds the crate's only `unsafe` code: the tile instructions (inline assembly:
//! Rust has no stable intrinsics for them) and the system call that grants the process the
//! tile state, which Linux hands out only on request. [`Amx::detect`] answers `None` on any
//! other CPU, kernel or target, and the encoder then keeps its f32 products. The grant is for
//! the whole process, and the kernel then insists that every signal stack holds the tile state:
//! Rust's threads size theirs from `AT_MINSIGSTKSZ` and are fine, but C code that sets up a
//! stack of the legacy `SIGSTKSZ` (8 KiB) would see `sigaltstack` fail, and one already set up
//! makes the grant fail (AMX then stays off for the process). `exec` drops the grant.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::OnceLock;

use crate::kernels::{Kernel, vectorised};

/// Rows of a tile, and of a block of the output each operand tile covers.
const TILE_ROWS: usize = 16;
/// bf16 values in a row of a tile (64 bytes).
const TILE_WIDTH: usize = 32;
/// Output rows and columns one kernel call computes: two tiles by two.
const BLOCK: usize = 2 * TILE_ROWS;
/// The activation rows packed at a time are sized to about this many bytes, so that they stay
/// in L2 (2 MiB a core on the CPUs with AMX) while every panel of weights passes over them.
const PACKED_ROWS_BYTES: usize = 1 << 20;

/// One tile: 16 rows of 32 bf16 values (bit patterns), row after row.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct Tile([u16; TILE_ROWS * TILE_WIDTH]);

impl Tile {
    const ZERO: Self = Self([0; TILE_ROWS * TILE_WIDTH]);

    fn row_mut(&mut self, row: usize) -> &mut [u16] {
        &mut self.0[row * TILE_WIDTH..][..TILE_WIDTH]
    }
}

/// The high half of `bits`.
#[inline(always)]
fn high(bits: u32) -> u16 {
    #[allow(clippy::cast_possible_truncation)] // by construction
    let half = (bits >> 16) as u16;
    half
}

/// The bf16 nearest to `x` (ties to even), as its bit pattern; for finite `x` only (the carry of
/// a NaN's mantissa would reach its sign).
#[inline(always)]
fn bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    high(bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)))
}

/// `x` as a bf16 head and tail: `x ≈ f32(hi) + f32(lo)` to within 2^-17 of `x`. A NaN or an
/// infinity is its own head, with a zero tail, so that it reaches the product as it would in f32
/// (an infinity may come out NaN: `inf · 0` where a weight's tail is zero).
#[inline(always)]
fn split(x: f32) -> (u16, u16) {
    let finite = x.is_finite();
    let rounded = bf16(x);
    // Above bf16's largest finite value, rounding carries into infinity; the largest finite
    // head of that sign keeps the tail finite and the sum exact.
    let rounded = if rounded & 0x7FFF == 0x7F80 {
        rounded - 1
    } else {
        rounded
    };
    let quiet = if x.is_nan() { 0x0040 } else { 0 };
    let hi = if finite {
        rounded
    } else {
        high(x.to_bits()) | quiet
    };
    // Exact: `hi` is `x` rounded to 8 bits, so the difference fits in f32's 24.
    let rest = if finite {
        x - f32::from_bits(u32::from(hi) << 16)
    } else {
        0.0
    };
    (hi, bf16(rest))
}

/// A linear layer's weight matrix (`inputs × outputs`) packed for [`Amx::product`].
pub(crate) struct PackedWeights {
    /// Panel `p` (outputs `16p..16p + 16`) is `tiles[p·steps..(p + 1)·steps]`. Row `r` of its
    /// tile `s` holds, for each output `c` of the panel, the pair of weights of rows `32s + 2r`
    /// and `32s + 2r + 1` of the `hi, lo, hi` weight matrix (AMX's pairwise layout).
    tiles: Vec<Tile>,
    inputs: usize,
    outputs: usize,
    /// Tiles along the tripled inner dimension: three per 32 inputs.
    steps: usize,
}

impl std::fmt::Debug for PackedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedWeights")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

impl PackedWeights {
    /// Whether a layer of this shape can be packed: AMX blocks of outputs are 32 wide (inputs
    /// are padded with zeros to a multiple of 32).
    pub(crate) fn fits(inputs: usize, outputs: usize) -> bool {
        inputs > 0 && outputs > 0 && outputs.is_multiple_of(BLOCK)
    }

    /// Packs `weights`, row-major `inputs × outputs` (a `Linear` weight transposed), which
    /// [`PackedWeights::fits`].
    pub(crate) fn new(weights: &[f32], inputs: usize, outputs: usize) -> Self {
        assert!(Self::fits(inputs, outputs) && weights.len() == inputs * outputs);
        let steps = 3 * inputs.div_ceil(TILE_WIDTH);
        let mut tiles = vec![Tile::ZERO; outputs / TILE_ROWS * steps];
        // Row `k` of the weights tripled: per block of 32 inputs, heads, tails, heads.
        let tripled = |k: usize, n: usize| -> u16 {
            let (block, part, offset) =
                (k / (3 * TILE_WIDTH), (k / TILE_WIDTH) % 3, k % TILE_WIDTH);
            let input = block * TILE_WIDTH + offset;
            if input >= inputs {
                return 0;
            }
            let (hi, lo) = split(weights[input * outputs + n]);
            if part == 1 { lo } else { hi }
        };
        for (index, tile) in tiles.iter_mut().enumerate() {
            let (panel, step) = (index / steps, index % steps);
            for row in 0..TILE_ROWS {
                let k = step * TILE_WIDTH + 2 * row;
                for column in 0..TILE_ROWS {
                    let n = panel * TILE_ROWS + column;
                    tile.0[row * TILE_WIDTH + 2 * column] = tripled(k, n);
                    tile.0[row * TILE_WIDTH + 2 * column + 1] = tripled(k + 1, n);
                }
            }
        }
        Self {
            tiles,
            inputs,
            outputs,
            steps,
        }
    }

    pub(crate) fn outputs(&self) -> usize {
        self.outputs
    }
}

/// Activation rows as [`Amx::product`] reads them: row block `b` (rows `16b..16b + 16`) is
/// `tiles[b·steps..(b + 1)·steps]`, each row's inputs tripled as `hi, hi, lo` per 32.
struct SplitRows<'a> {
    rows: &'a [f32],
    inputs: usize,
    steps: usize,
    /// `rows` rounded up to whole blocks of 32; the rows past the input are zeros.
    tiles: &'a mut [Tile],
}

impl Kernel for SplitRows<'_> {
    type Output = ();

    #[inline(always)]
    fn run(self) {
        let count = self.rows.len() / self.inputs;
        for (r, row) in self.rows.chunks_exact(self.inputs).enumerate() {
            let first = r / TILE_ROWS * self.steps;
            let within = r % TILE_ROWS;
            for (block, tiles) in self.tiles[first..first + self.steps]
                .chunks_exact_mut(3)
                .enumerate()
            {
                let mut values = [0.0f32; TILE_WIDTH];
                let inputs = &row[(block * TILE_WIDTH).min(row.len())..];
                let inputs = &inputs[..inputs.len().min(TILE_WIDTH)];
                values[..inputs.len()].copy_from_slice(inputs);
                let mut heads = [0u16; TILE_WIDTH];
                let mut tails = [0u16; TILE_WIDTH];
                for ((&x, hi), lo) in values.iter().zip(&mut heads).zip(&mut tails) {
                    (*hi, *lo) = split(x);
                }
                tiles[0].row_mut(within).copy_from_slice(&heads);
                tiles[1].row_mut(within).copy_from_slice(&heads);
                tiles[2].row_mut(within).copy_from_slice(&tails);
            }
        }
        let padded = self.tiles.len() / self.steps * TILE_ROWS;
        for r in count..padded {
            let first = r / TILE_ROWS * self.steps;
            for tile in &mut self.tiles[first..first + self.steps] {
                tile.row_mut(r % TILE_ROWS).fill(0);
            }
        }
    }
}

thread_local! {
    /// The packed activations of the product running on this thread, kept between products
    /// so that each does not allocate (and zero) its own.
    static PACKED_ROWS: RefCell<Vec<Tile>> = const { RefCell::new(Vec::new()) };
}

/// Proof that this process may run AMX's bf16 instructions: the CPU has them and Linux granted
/// the tile state. Only [`Amx::detect`] makes one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Amx(Granted);

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[derive(Debug, Clone, Copy)]
struct Granted;

/// No value: AMX is never granted off x86-64 Linux.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
#[derive(Debug, Clone, Copy)]
enum Granted {}

impl Amx {
    /// AMX where this CPU has AMX-TILE and AMX-BF16 with tiles of at least 16 rows of 64 bytes
    /// and Linux grants the process the tile state (kernel 5.16 and later); `None` elsewhere.
    /// The answer is worked out once per process.
    pub(crate) fn detect() -> Option<Self> {
        static GRANTED: OnceLock<Option<Granted>> = OnceLock::new();
        GRANTED.get_or_init(imp::grant).map(Self)
    }

    /// `rows · weights` (`rows` row-major, `weights.inputs` wide): a new row-major matrix of
    /// `rows.len() / inputs` rows and `weights.outputs()` columns. `arch` runs the packing of
    /// the rows.
    pub(crate) fn product(
        self,
        arch: pulp::Arch,
        rows: &[f32],
        weights: &PackedWeights,
    ) -> Vec<f32> {
        let (inputs, outputs, steps) = (weights.inputs, weights.outputs, weights.steps);
        assert!(rows.len().is_multiple_of(inputs), "rows of {inputs} inputs");
        let count = rows.len() / inputs;
        // Rows packed at a time: whole blocks of 32, a megabyte or so of tiles.
        let chunk = (PACKED_ROWS_BYTES / (steps * TILE_WIDTH * 2) / BLOCK).max(1) * BLOCK;
        let mut out = Vec::with_capacity(count.next_multiple_of(BLOCK) * outputs);
        PACKED_ROWS.with_borrow_mut(|packed| {
            let tiles = self.begin();
            for (index, part) in rows.chunks(chunk * inputs).enumerate() {
                let padded = (part.len() / inputs).next_multiple_of(BLOCK);
                packed.resize(padded / TILE_ROWS * steps, Tile::ZERO);
                vectorised(
                    arch,
                    SplitRows {
                        rows: part,
                        inputs,
                        steps,
                        tiles: packed,
                    },
                );
                tiles.product(packed, weights, &mut out, index * chunk, padded);
            }
        });
        // SAFETY: for each part, `Tiles::product` wrote every element of its rows `first..first +
        // padded` of the spare capacity: rows `0..count.next_multiple_of(32)` in all, at least
        // `count · outputs` elements, all initialised f32.
        #[allow(unsafe_code)]
        unsafe {
            out.set_len(count * outputs);
        }
        out
    }

    /// Configures this thread's tiles for the product kernel; they are released when the
    /// answer is dropped.
    fn begin(self) -> Tiles {
        imp::configure(self.0);
        Tiles(self.0, PhantomData)
    }
}

/// This thread's tiles, configured for [`kernel`](imp::block): 8 tiles of 16 rows of 64 bytes.
/// Not `Send`: the configuration belongs to the thread that loaded it.
struct Tiles(Granted, PhantomData<*const ()>);

impl Drop for Tiles {
    fn drop(&mut self) {
        imp::release(self.0);
    }
}

impl Tiles {
    /// Writes rows `first..first + padded` of `rows · weights` into `out`'s spare capacity
    /// (`out` is empty, row-major, `weights.outputs` wide), from `packed`, those rows as
    /// [`SplitRows`] packs them.
    fn product(
        &self,
        packed: &[Tile],
        weights: &PackedWeights,
        out: &mut Vec<f32>,
        first: usize,
        padded: usize,
    ) {
        let (steps, outputs) = (weights.steps, weights.outputs);
        assert_eq!(packed.len(), padded / TILE_ROWS * steps);
        let spare = out.spare_capacity_mut();
        for column in (0..outputs).step_by(BLOCK) {
            let panel = column / TILE_ROWS * steps;
            let b = &weights.tiles[panel..panel + 2 * steps];
            for row in (0..padded).step_by(BLOCK) {
                let block = row / TILE_ROWS * steps;
                let a = &packed[block..block + 2 * steps];
                // The 32 rows of the output this block writes, 32 columns from `column`.
                let c = &mut spare[(first + row) * outputs..(first + row + BLOCK) * outputs];
                imp::block(self.0, a, b, steps, &mut c[column..], outputs);
            }
        }
    }
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[allow(unsafe_code)]
mod imp {
    use std::arch::asm;
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    use std::mem::MaybeUninit;

    use super::{BLOCK, Granted, TILE_ROWS, TILE_WIDTH, Tile};

    /// `arch_prctl` requests for the tile data state (`asm/prctl.h`, `asm/fpu/types.h`).
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;

    pub(super) fn grant() -> Option<Granted> {
        if __cpuid(0).eax < 0x1D {
            return None;
        }
        let features = __cpuid_count(7, 0).edx;
        let (amx_bf16, amx_tile) = (features & (1 << 22) != 0, features & (1 << 24) != 0);
        // Palette 1: bytes per row (EBX low half), tile names (EBX high half), rows (ECX).
        let palette = __cpuid_count(0x1D, 1);
        let fits =
            palette.ebx & 0xFFFF >= 64 && palette.ebx >> 16 >= 8 && palette.ecx & 0xFFFF >= 16;
        if !(amx_bf16 && amx_tile && fits) {
            return None;
        }
        // SAFETY: this request only extends the set of register states the kernel lets the
        // process use; it reads and writes no memory of ours. It fails on kernels without AMX
        // support (or whose signal stacks are too small), and then AMX stays unused.
        let granted = unsafe {
            libc::syscall(
                libc::SYS_arch_prctl,
                ARCH_REQ_XCOMP_PERM,
                XFEATURE_XTILEDATA,
            )
        };
        (granted == 0).then_some(Granted)
    }

    /// The 64-byte operand of `ldtilecfg`.
    #[repr(C, align(64))]
    struct Config {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        bytes_per_row: [u16; 16],
        rows: [u8; 16],
    }

    pub(super) fn configure(_: Granted) {
        let mut config = Config {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            bytes_per_row: [0; 16],
            rows: [0; 16],
        };
        #[allow(clippy::cast_possible_truncation)] // 64 and 16
        for tile in 0..8 {
            config.bytes_per_row[tile] = (TILE_WIDTH * 2) as u16;
            config.rows[tile] = TILE_ROWS as u8;
        }
        // SAFETY: `Granted` proves the CPU has AMX and the process may use the tile state;
        // `ldtilecfg` reads the 64 bytes of `config` and sets this thread's tile shapes.
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) &raw const config, options(nostack, readonly));
        }
    }

    pub(super) fn release(_: Granted) {
        // SAFETY: returns this thread's tiles to their initial state; touches no memory.
        unsafe {
            asm!("tilerelease", options(nostack, nomem));
        }
    }

    /// One 32 × 32 block of the output: `c` rows `0..32`, columns `0..32`, each row `stride`
    /// values apart, get `Σ_s a[s]·b[s]`, where `a` is two row tiles of `steps` tiles each and
    /// `b` two panels of `steps` tiles. The tiles must be configured ([`configure`]).
    pub(super) fn block(
        _: Granted,
        a: &[Tile],
        b: &[Tile],
        steps: usize,
        c: &mut [MaybeUninit<f32>],
        stride: usize,
    ) {
        // What the assembly reads and writes, checked here so that it stays in bounds.
        assert!(steps > 0 && a.len() == 2 * steps && b.len() == 2 * steps);
        assert!(stride >= BLOCK && c.len() >= (BLOCK - 1) * stride + BLOCK);
        let (a0, a1) = a.split_at(steps);
        let (b0, b1) = b.split_at(steps);
        let (top, bottom) = c.split_at_mut(TILE_ROWS * stride);
        let (c0, c16) = (top.as_mut_ptr(), bottom.as_mut_ptr());
        // SAFETY: the tiles are configured as 16 rows of 64 bytes (`Tiles`, which the caller
        // holds). Each `tileloadd` reads one 1 KiB tile at steps `0..steps` of `a0`, `a1`, `b0`
        // and `b1` (64 bytes a row, rows 64 bytes apart), all inside those slices. Each
        // `tilestored` writes 16 rows of 16 f32 (64 bytes), `stride · 4` bytes apart, at columns
        // 0 or 16 of rows 0–15 (`c0`, inside `top`) or 16–31 (`c16`, inside `bottom`), by the
        // assertion above.
        // Only the tile registers, which the compiler never uses, and the named registers
        // change.
        unsafe {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "2:",
                "tileloadd tmm4, [{a0} + {row}*1]",
                "tileloadd tmm6, [{b0} + {row}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tileloadd tmm7, [{b1} + {row}*1]",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tileloadd tmm5, [{a1} + {row}*1]",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "add {a0}, 1024",
                "add {a1}, 1024",
                "add {b0}, 1024",
                "add {b1}, 1024",
                "dec {steps}",
                "jnz 2b",
                "tilestored [{c0} + {stride}*1], tmm0",
                "tilestored [{c0} + {stride}*1 + 64], tmm1",
                "tilestored [{c16} + {stride}*1], tmm2",
                "tilestored [{c16} + {stride}*1 + 64], tmm3",
                a0 = inout(reg) a0.as_ptr() => _,
                a1 = inout(reg) a1.as_ptr() => _,
                b0 = inout(reg) b0.as_ptr() => _,
                b1 = inout(reg) b1.as_ptr() => _,
                steps = inout(reg) steps => _,
                row = in(reg) TILE_WIDTH * 2,
                c0 = in(reg) c0,
                c16 = in(reg) c16,
                stride = in(reg) stride * 4,
                out("tmm0") _, out("tmm1") _, out("tmm2") _, out("tmm3") _,
                out("tmm4") _, out("tmm5") _, out("tmm6") _, out("tmm7") _,
                options(nostack),
            );
        }
    }
}

/// Off x86-64 Linux there is no [`Granted`], so none of these can be called.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    use std::mem::MaybeUninit;

    use super::{Granted, Tile};

    pub(super) fn grant() -> Option<Granted> {
        None
    }

    pub(super) fn configure(granted: Granted) {
        match granted {}
    }

    pub(super) fn release(granted: Granted) {
        match granted {}
    }

    pub(super) fn block(
        granted: Granted,
        _: &[Tile],
        _: &[Tile],
        _: usize,
        _: &mut [MaybeUninit<f32>],
        _: usize,
    ) {
        match granted {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1) of varied magnitudes.
    fn values(count: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..count)
            .map(|i| {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                #[allow(clippy::cast_precision_loss)]
                let unit = (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
                // Some values large, some tiny: the split must hold across exponents.
                unit * [1.0, 3.0e-3, 40.0][i % 3]
            })
            .collect()
    }

    #[test]
    fn a_split_value_is_its_head_plus_its_tail_to_within_2_to_the_minus_17() {
        for x in values(10_000, 1) {
            let (hi, lo) = split(x);
            let back = f32::from_bits(u32::from(hi) << 16) + f32::from_bits(u32::from(lo) << 16);
            assert!(
                (back - x).abs() <= x.abs() * 2f32.powi(-17),
                "{x} came back as {back}"
            );
        }
        assert_eq!(bf16(1.0), 0x3F80);
        // Ties go to the even head.
        assert_eq!(bf16(f32::from_bits(0x3F80_8000)), 0x3F80);
        assert_eq!(bf16(f32::from_bits(0x3F81_8000)), 0x3F82);
    }

    #[test]
    fn values_that_are_not_ordinary_reach_the_product_as_they_would_in_f32() {
        let head = |x: f32| f32::from_bits(u32::from(split(x).0) << 16);
        let tail = |x: f32| f32::from_bits(u32::from(split(x).1) << 16);
        // A NaN whose mantissa would carry into the sign when rounded stays a NaN.
        for bits in [0x7FFF_FFFF, 0xFFFF_FFFF, 0x7FC0_0000, 0x7F80_0001] {
            assert!(head(f32::from_bits(bits)).is_nan(), "{bits:#x}");
            assert_eq!(tail(f32::from_bits(bits)), 0.0);
        }
        assert_eq!(head(f32::INFINITY), f32::INFINITY);
        assert_eq!(head(f32::NEG_INFINITY), f32::NEG_INFINITY);
        assert_eq!(tail(f32::INFINITY), 0.0);
        // Near f32's largest, the head stays finite and the two terms still sum to the value
        // (in f64: in f32 their sum may round up past the largest).
        for x in [f32::MAX, -f32::MAX, f32::from_bits(0x7F7F_8000)] {
            let (hi, lo) = (head(x), tail(x));
            assert!(hi.is_finite() && lo.is_finite(), "{x}: {hi} + {lo}");
            let error = (f64::from(hi) + f64::from(lo) - f64::from(x)).abs();
            assert!(
                error <= f64::from(x.abs()) * 2f64.powi(-17),
                "{x}: {hi} + {lo}"
            );
        }
    }

    #[test]
    fn only_layers_with_outputs_in_blocks_of_32_are_packed() {
        assert!(PackedWeights::fits(384, 1536));
        assert!(PackedWeights::fits(5, 32));
        assert!(!PackedWeights::fits(384, 48));
        assert!(!PackedWeights::fits(0, 32));
    }

    #[test]
    fn products_on_tiles_match_f64_products_to_f32_precision() {
        let Some(amx) = Amx::detect() else {
            eprintln!("no AMX on this machine: nothing to check");
            return;
        };
        let arch = pulp::Arch::new();
        // Odd row counts (partial blocks), inputs not a multiple of 32, several row chunks.
        for (rows, inputs, outputs) in [(1, 384, 32), (45, 70, 64), (333, 384, 96), (530, 1536, 64)]
        {
            let x = values(rows * inputs, 7);
            let w = values(inputs * outputs, 11);
            let packed = PackedWeights::new(&w, inputs, outputs);
            let product = amx.product(arch, &x, &packed);
            assert_eq!(product.len(), rows * outputs);
            for r in 0..rows {
                for n in 0..outputs {
                    let (mut exact, mut magnitude) = (0.0f64, 0.0f64);
                    for k in 0..inputs {
                        let term = f64::from(x[r * inputs + k]) * f64::from(w[k * outputs + n]);
                        exact += term;
                        magnitude += term.abs();
                    }
                    let error = (f64::from(product[r * outputs + n]) - exact).abs();
                    // Each term is off by at most about 2^-16 of itself, and f32 sums round.
                    assert!(
                        error <= magnitude * 4e-5,
                        "{rows}×{inputs}×{outputs}: row {r} column {n}: {} against {exact}",
                        product[r * outputs + n]
                    );
                }
            }
        }
    }

    #[test]
    fn products_run_on_threads_started_after_the_grant() {
        let Some(amx) = Amx::detect() else {
            eprintln!("no AMX on this machine: nothing to check");
            return;
        };
        let w = values(64 * 32, 3);
        let packed = PackedWeights::new(&w, 64, 32);
        let x = values(40 * 64, 5);
        let here = amx.product(pulp::Arch::new(), &x, &packed);
        let there = std::thread::spawn(move || amx.product(pulp::Arch::new(), &x, &packed))
            .join()
            .expect("the thread finishes");
        assert_eq!(here, there);
    }
}
