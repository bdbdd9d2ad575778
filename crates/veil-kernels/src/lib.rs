//! # veil-kernels
//!
//! Veil's quantized matrix multiply on the CPU, for the GGUF block formats that real
//! models ship in: Q4_0, Q4_1, Q8_0 (32-element blocks) and the K-quants Q4_K and Q6_K
//! (256-element super-blocks).
//!
//! `y = x · Wᵀ` with `W` in its GGUF bytes ([`QWeight`], rows = output features) and `x`
//! in f32. The activations are quantized once per call to 8 bits ([`QActs`]: Q8 blocks
//! of 32 with a block sum for the 32-blocks, Q8_K with 16-element sums for the K-quants),
//! so every block product is an integer dot product (`u8 × i8`), scaled once per block —
//! the scheme llama.cpp uses, and the reason it is fast.
//!
//! ## Tiers, chosen at run time
//! [`Level::Scalar`] is the reference (exact integer block sums, portable). On x86-64,
//! [`Level::Avx2`] (AVX2 + FMA + F16C: `vpmaddubsw` + `vpmaddwd`) and
//! [`Level::Avx512Vnni`] (AVX-512 F/BW/VL + VNNI: `vpdpbusd` on 256-bit registers, which
//! is where Zen 4 and Ice Lake gain; their 512-bit registers do not add bandwidth) are
//! picked by CPU feature detection, not compile flags: a binary built for any x86-64
//! runs the best tier the machine has. `VEIL_KERNELS=scalar|avx2|avx512` forces a lower
//! tier (a tier the CPU lacks is never used). All tiers compute the same integer block
//! sums; they differ only in the order of the f32 accumulation (the SIMD tiers convert
//! a block's sum to f32 in up to 8 partial lanes), so results agree to f32 rounding.
//!
//! ## Numerics
//! - Activations: per block of 32 (or 256 for K-quants), `d = max|x| / 127`,
//!   `q = round_ties_even(x / d)` ∈ [-127, 127]. The error per element is at most `d/2`,
//!   so a row's dot product differs from the f32 one by at most
//!   `Σ_blocks d_a/2 · Σ|w|` (plus f32 rounding); the tests check exactly that bound.
//! - Weights: exactly the GGUF dequantisation (`d·q + m` for Q4_1, `d·(q−8)` for Q4_0,
//!   `d·q` for Q8_0, 6-bit sub-block scales and mins for Q4_K, signed 8-bit sub-block
//!   scales for Q6_K). f16 scales are widened exactly.
//! - Per block: `d_w·d_a·Σ q_w q_a` in f32 from an exact i32 sum, offsets included
//!   (Q4_0's −8 and Q6_K's −32 as `Σ(q−o)·q_a = Σq·q_a − o·Σq_a`, from the activation
//!   block sums); the Q4_1 minimum enters as `m_w · (d_a·Σ q_a)` and the Q4_K minima
//!   through the 16-element activation sums.
//!
//! ## Threads
//! [`matmul`] splits the output features over the current rayon pool (the caller's
//! pool when called inside `ThreadPool::install`), in contiguous row ranges of equal
//! size, so each thread streams an equal share of the weights once; tiny products run
//! on the calling thread.
#![warn(missing_docs)]

mod format;
mod level;
mod matmul;
mod quant;
pub mod scalar;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use format::{GROUP, KernelError, Layout, QType, QWeight};
pub use level::{Kernels, Level};
pub use matmul::{matmul, matmul_into_acts, matmul_rows, scatter_rows};
pub use quant::{ActKind, QActs};

/// The fuzz entry point (`fuzz/fuzz_targets/kernels.rs`): a weight matrix of any
/// format, shape and bytes (scales may be NaN, infinite or subnormal), activations of
/// any values; every tier this CPU has must accept or refuse it as the scalar tier does,
/// never panic, and agree with it wherever both results are finite (a tier may overflow
/// an intermediate product, with activations near f32's limit, where the scalar order
/// of the same operations does not).
#[doc(hidden)]
pub fn fuzz_matmul(data: &[u8]) {
    let [t, r, c, m, rest @ ..] = data else { return };
    let ty = QType::ALL[usize::from(*t) % QType::ALL.len()];
    let rows = usize::from(*r % 9) + 1;
    let cols = (usize::from(*c % 4) + 1) * ty.block_elems();
    let m = usize::from(*m % 6) + 1;
    let need = rows * ty.row_bytes(cols).unwrap_or(0);
    // The weights first (the fuzzer's bytes, padded by repetition), then f32 activations.
    let w: Vec<u8> = rest.iter().copied().cycle().take(if rest.is_empty() { 0 } else { need }).collect();
    let Ok(w) = QWeight::new(ty, rows, cols, w) else { return };
    let x: Vec<f32> = rest
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .chain(std::iter::repeat(0.5))
        .take(m * cols)
        .collect();
    let mut acts = QActs::default();
    let mut reference = vec![0f32; m * rows];
    let scalar = matmul(Kernels::scalar(), &w, &x, m, &mut acts, &mut reference);
    // Σ|term| per output (`[m][rows]`, as `reference`), from the activations just
    // quantized: the tiers add the same exact integer block sums, but round each block's
    // f32 term in their own order (fused multiply-add or not) and add the blocks in
    // another, so they may differ by a few ulps of Σ|term|, which is far more than
    // |result| where the block terms cancel.
    let mags: Vec<f64> = (0..m)
        .flat_map(|i| w.data().chunks_exact(w.row_bytes()).map(move |r| (i, r)))
        .map(|(i, r)| scalar::dot_magnitude(ty, r, acts.row(i)))
        .collect();
    let inter = w.clone().interleave().ok();
    for level in Level::ALL {
        let Some(k) = Kernels::new(level) else { continue };
        for w in std::iter::once(&w).chain(&inter) {
            let mut out = vec![0f32; m * rows];
            let got = matmul(k, w, &x, m, &mut acts, &mut out);
            assert_eq!(got.is_ok(), scalar.is_ok(), "{level}");
            for ((g, s), mag) in out.iter().zip(&reference).zip(&mags) {
                if s.is_finite() && g.is_finite() {
                    // At most 4 blocks (B32) or 4 super-blocks (K) of a few roundings
                    // each, about 20 in all: 1e-5·Σ|term| is over 80 ulps of Σ|term|
                    // (≥ |result|), and 1e-30 covers subnormal terms, whose rounding is
                    // absolute. A wrong nibble, scale or offset moves a result by at least
                    // one element's product, above this unless that element is ~10⁻⁵ of
                    // the rest.
                    let tol = 1e-5 * mag + 1e-30;
                    let diff = f64::from(*g) - f64::from(*s);
                    assert!(
                        diff.abs() <= tol || s.abs() > 1e30,
                        "{level} {ty:?} {:?}: {g} vs {s} (Σ|term| {mag:e})",
                        w.layout()
                    );
                }
            }
        }
    }
}
