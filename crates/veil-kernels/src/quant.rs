//! Activation quantization: f32 rows to 8-bit blocks, once per matrix product.

use crate::format::{KernelError, QType};

/// Which 8-bit activation blocks a weight format multiplies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActKind {
    /// Blocks of 32: `d` and `s = d·Σq` per block (llama.cpp's Q8_1, in f32).
    B32,
    /// Blocks of 256 (llama.cpp's Q8_K): `d` per block and the sum of each 16 values.
    K256,
}

impl ActKind {
    /// The activation blocks `ty` multiplies with.
    pub fn for_type(ty: QType) -> ActKind {
        match ty {
            QType::Q4_0 | QType::Q4_1 | QType::Q8_0 => ActKind::B32,
            QType::Q4K | QType::Q6K => ActKind::K256,
        }
    }

    /// Elements per block.
    pub const fn block(self) -> usize {
        match self {
            ActKind::B32 => 32,
            ActKind::K256 => 256,
        }
    }
}

/// `rows × cols` activations quantized to 8 bits, struct-of-arrays: `qs` (row-major
/// i8), `d` (one scale per block), `s` (B32: `d·Σq` per block) and `bsums` (B32: `Σq`
/// per block; K256: the sum of each 16 values). Reused between calls to save the allocations.
#[derive(Debug, Clone, Default)]
pub struct QActs {
    pub(crate) kind: Option<ActKind>,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) qs: Vec<i8>,
    pub(crate) d: Vec<f32>,
    pub(crate) s: Vec<f32>,
    pub(crate) bsums: Vec<i16>,
}

/// One quantized row, as the kernels read it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActRow<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    /// B32: per block `d·Σq`. K256: empty.
    pub s: &'a [f32],
    /// B32: per block `Σq`. K256: per 16 values.
    pub bsums: &'a [i16],
}

impl QActs {
    /// Quantizes `x` (`rows × cols`, row-major) into blocks of `kind`.
    pub fn quantize(&mut self, x: &[f32], rows: usize, cols: usize, kind: ActKind) -> Result<(), KernelError> {
        let block = kind.block();
        if cols == 0 || !cols.is_multiple_of(block) {
            return Err(KernelError::Shape(format!("activations of width {cols} in blocks of {block}")));
        }
        let n = rows.checked_mul(cols).ok_or(KernelError::Overflow("activations"))?;
        if x.len() != n {
            return Err(KernelError::Shape(format!("{} activations for {rows}×{cols}", x.len())));
        }
        let nb = n / block;
        self.kind = Some(kind);
        self.rows = rows;
        self.cols = cols;
        self.qs.clear();
        self.qs.resize(n, 0);
        self.d.clear();
        self.d.resize(nb, 0.0);
        self.s.clear();
        self.bsums.clear();
        match kind {
            ActKind::B32 => {
                self.s.resize(nb, 0.0);
                self.bsums.resize(nb, 0);
            }
            ActKind::K256 => self.bsums.resize(nb * 16, 0),
        }
        for (b, (xb, qb)) in x.chunks_exact(block).zip(self.qs.chunks_exact_mut(block)).enumerate() {
            let d = quantize_block(xb, qb);
            if let Some(slot) = self.d.get_mut(b) {
                *slot = d;
            }
            match kind {
                ActKind::B32 => {
                    // |Σ| ≤ 32·127, well inside i16.
                    let sum: i16 = qb.iter().map(|&q| i16::from(q)).sum();
                    if let Some(slot) = self.s.get_mut(b) {
                        *slot = d * f32::from(sum);
                    }
                    if let Some(slot) = self.bsums.get_mut(b) {
                        *slot = sum;
                    }
                }
                ActKind::K256 => {
                    for (g, q16) in qb.chunks_exact(16).enumerate() {
                        // |Σ| ≤ 16·127, well inside i16.
                        let sum: i16 = q16.iter().map(|&q| i16::from(q)).sum();
                        if let Some(slot) = self.bsums.get_mut(b * 16 + g) {
                            *slot = sum;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The block kind, once quantized.
    pub fn kind(&self) -> Option<ActKind> {
        self.kind
    }

    /// Row `i` (empty slices past the end).
    pub(crate) fn row(&self, i: usize) -> ActRow<'_> {
        let block = self.kind.map_or(32, ActKind::block);
        let nb = self.cols / block;
        let span = |len: usize| i * len..(i + 1) * len;
        ActRow {
            qs: self.qs.get(span(self.cols)).unwrap_or_default(),
            d: self.d.get(span(nb)).unwrap_or_default(),
            s: self.s.get(span(nb)).unwrap_or_default(),
            bsums: self.bsums.get(span(if block == 32 { nb } else { nb * 16 })).unwrap_or_default(),
        }
    }
}

/// `v` rounded half to even and clamped to [-127, 127] (the kernels rely on it: the
/// Q8_0 sign trick cannot negate -128); NaN to 0. The same as
/// `v.round_ties_even().clamp(-127.0, 127.0) as i8`, written so that it vectorizes
/// (that cast compiles to one scalar conversion per element): adding 1.5·2²³ to a float
/// in [-127, 127] rounds it to an integer (half to even, the FPU's mode) held in the
/// low mantissa bits.
#[inline]
fn round_i8(v: f32) -> i8 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23, bits 0x4B40_0000
    let c = if v.is_nan() { 0.0 } else { v.clamp(-127.0, 127.0) };
    ((c + MAGIC).to_bits() as i32 - MAGIC.to_bits() as i32) as i8
}

/// Quantizes one block symmetrically; returns its scale.
fn quantize_block(x: &[f32], q: &mut [i8]) -> f32 {
    // Eight running maxima, so that it vectorizes.
    let mut m8 = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder().iter().fold(0f32, |m, v| m.max(v.abs()));
    for c in chunks {
        for j in 0..8 {
            m8[j] = m8[j].max(c[j].abs());
        }
    }
    let amax = m8.iter().fold(rest, |m, &v| m.max(v));
    let d = amax / 127.0;
    // A NaN or infinite activation, or a block so small that 127/amax overflows, gives
    // a zero block rather than garbage from the cast.
    let id = 127.0 / amax;
    let id = if amax > 0.0 && amax.is_finite() && id.is_finite() { id } else { 0.0 };
    for (q, &v) in q.iter_mut().zip(x) {
        *q = round_i8(v * id);
    }
    if id == 0.0 { 0.0 } else { d }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_within_half_a_step() {
        let x: Vec<f32> = (0..512).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.173).collect();
        for kind in [ActKind::B32, ActKind::K256] {
            let mut a = QActs::default();
            a.quantize(&x, 2, 256, kind).unwrap();
            let block = kind.block();
            for (i, &v) in x.iter().enumerate() {
                let d = a.d[i / block];
                let back = f32::from(a.qs[i]) * d;
                assert!((back - v).abs() <= d / 2.0 + 1e-6, "{kind:?} {i}: {v} vs {back}");
            }
            match kind {
                ActKind::B32 => {
                    for b in 0..16 {
                        let sum: i32 = a.qs[b * 32..b * 32 + 32].iter().map(|&q| i32::from(q)).sum();
                        assert_eq!(a.s[b], a.d[b] * sum as f32);
                        assert_eq!(i32::from(a.bsums[b]), sum);
                    }
                }
                ActKind::K256 => {
                    for g in 0..32 {
                        let sum: i16 = a.qs[g * 16..g * 16 + 16].iter().map(|&q| i16::from(q)).sum();
                        assert_eq!(a.bsums[g], sum);
                    }
                }
            }
        }
    }

    #[test]
    fn rounding_is_half_to_even_and_clamped() {
        let mut vals = vec![0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5, 127.4, 300.0, -1e30, f32::INFINITY];
        vals.extend((-130_000..130_000).map(|i| i as f32 * 0.001_07));
        vals.extend([f32::NEG_INFINITY, -0.0, 1e-39, f32::MIN_POSITIVE, 0.499_999_97, 2.0f32.powi(22)]);
        for v in vals {
            assert_eq!(round_i8(v), v.round_ties_even().clamp(-127.0, 127.0) as i8, "{v}");
        }
        assert_eq!(round_i8(f32::NAN), 0);
    }

    #[test]
    fn bad_shapes_and_values_are_refused_or_zeroed() {
        let mut a = QActs::default();
        assert!(a.quantize(&[0.0; 33], 1, 33, ActKind::B32).is_err());
        assert!(a.quantize(&[0.0; 32], 2, 32, ActKind::B32).is_err());
        assert!(a.quantize(&[0.0; 32], 1, 32, ActKind::K256).is_err());
        let mut x = [1.0f32; 32];
        x[3] = f32::INFINITY;
        a.quantize(&x, 1, 32, ActKind::B32).unwrap();
        assert_eq!(a.d[0], 0.0);
        assert!(a.qs.iter().all(|&q| q == 0));
        a.quantize(&[0.0; 32], 1, 32, ActKind::B32).unwrap();
        assert_eq!((a.d[0], a.s[0]), (0.0, 0.0));
        // 127/amax overflows for subnormal blocks: zero, never -128.
        let tiny: Vec<f32> = (0..32).map(|i| if i % 2 == 0 { 1e-39 } else { -1e-39 }).collect();
        a.quantize(&tiny, 1, 32, ActKind::B32).unwrap();
        assert!(a.qs.iter().all(|&q| q > -128), "{:?}", a.qs);
    }
}
