//! GGUF block formats and a validated weight matrix.
//!
//! The bytes are parsed by hand (little-endian, fixed offsets) because the formats are
//! ggml's C structs, which no crate exposes as a format (candle keeps its block fields
//! private). The layouts, from ggml's `ggml-common.h`:
//!
//! | type | elements | bytes | layout |
//! |---|---|---|---|
//! | Q4_0 | 32 | 18 | `d: f16`, `qs: [u8; 16]` (element i: low nibble of qs[i], i+16: high) |
//! | Q4_1 | 32 | 20 | `d: f16`, `m: f16`, `qs: [u8; 16]` (as Q4_0) |
//! | Q8_0 | 32 | 34 | `d: f16`, `qs: [i8; 32]` |
//! | Q4_K | 256 | 144 | `d: f16`, `dmin: f16`, `scales: [u8; 12]` (8 × 6-bit scale and min), `qs: [u8; 128]` |
//! | Q6_K | 256 | 210 | `ql: [u8; 128]`, `qh: [u8; 64]`, `scales: [i8; 16]`, `d: f16` |

/// Errors from this crate: all of them describe input that does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    /// A row length the format cannot hold.
    #[error("{ty:?} rows must be a multiple of {block} elements; got {cols}")]
    Width {
        /// The format.
        ty: QType,
        /// Its block size.
        block: usize,
        /// The row length asked for.
        cols: usize,
    },
    /// The bytes are not `rows × cols` of the format.
    #[error("{ty:?} {rows}×{cols} needs {expected} bytes; got {got}")]
    Length {
        /// The format.
        ty: QType,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
        /// Bytes the shape needs.
        expected: usize,
        /// Bytes given.
        got: usize,
    },
    /// Shapes that do not multiply.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A dimension too large to address.
    #[error("{0} overflows")]
    Overflow(&'static str),
    /// A format this crate has no kernel for.
    #[error("no kernel for GGUF type {0}")]
    Unsupported(String),
}

/// A GGUF weight format with a kernel here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QType {
    /// 4-bit, one f16 scale per 32.
    Q4_0,
    /// 4-bit, f16 scale and minimum per 32.
    Q4_1,
    /// 8-bit, one f16 scale per 32.
    Q8_0,
    /// 4-bit K-quant: 256-element super-blocks of 8 × 32 with 6-bit scales and minima.
    Q4K,
    /// 6-bit K-quant: 256-element super-blocks of 16 × 16 with 8-bit scales.
    Q6K,
}

impl QType {
    /// Elements per block.
    pub const fn block_elems(self) -> usize {
        match self {
            QType::Q4_0 | QType::Q4_1 | QType::Q8_0 => 32,
            QType::Q4K | QType::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            QType::Q4_0 => 18,
            QType::Q4_1 => 20,
            QType::Q8_0 => 34,
            QType::Q4K => 144,
            QType::Q6K => 210,
        }
    }

    /// The GGUF type name (`Q4_1`, `Q4_K`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            QType::Q4_0 => "Q4_0",
            QType::Q4_1 => "Q4_1",
            QType::Q8_0 => "Q8_0",
            QType::Q4K => "Q4_K",
            QType::Q6K => "Q6_K",
        }
    }

    /// Every format, for tests.
    pub const ALL: [QType; 5] = [QType::Q4_0, QType::Q4_1, QType::Q8_0, QType::Q4K, QType::Q6K];

    /// Bytes of one row of `cols` elements.
    pub fn row_bytes(self, cols: usize) -> Result<usize, KernelError> {
        let block = self.block_elems();
        if cols == 0 || !cols.is_multiple_of(block) {
            return Err(KernelError::Width { ty: self, block, cols });
        }
        (cols / block).checked_mul(self.block_bytes()).ok_or(KernelError::Overflow("row size"))
    }
}

/// A `rows × cols` weight matrix in GGUF bytes, row-major (one row per output feature),
/// its size checked against the format.
#[derive(Clone, PartialEq, Eq)]
pub struct QWeight {
    ty: QType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    data: Vec<u8>,
}

impl std::fmt::Debug for QWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QWeight").field("ty", &self.ty).field("rows", &self.rows).field("cols", &self.cols).finish()
    }
}

impl QWeight {
    /// Takes `data` as `rows × cols` elements of `ty`.
    pub fn new(ty: QType, rows: usize, cols: usize, data: Vec<u8>) -> Result<QWeight, KernelError> {
        let row_bytes = ty.row_bytes(cols)?;
        let expected = rows.checked_mul(row_bytes).ok_or(KernelError::Overflow("matrix size"))?;
        if rows == 0 || data.len() != expected {
            return Err(KernelError::Length { ty, rows, cols, expected, got: data.len() });
        }
        Ok(QWeight { ty, rows, cols, row_bytes, data })
    }

    /// Stacks matrices of one format and width (e.g. the query, key and value
    /// projections into one, so one pass over the activations feeds all three).
    pub fn concat(parts: &[&QWeight]) -> Result<QWeight, KernelError> {
        let first = parts.first().ok_or_else(|| KernelError::Shape("nothing to concatenate".into()))?;
        let mut data = Vec::new();
        let mut rows = 0usize;
        for p in parts {
            if p.ty != first.ty || p.cols != first.cols {
                return Err(KernelError::Shape(format!(
                    "cannot stack {:?} {}×{} onto {:?} ×{}",
                    p.ty, p.rows, p.cols, first.ty, first.cols
                )));
            }
            data.extend_from_slice(&p.data);
            rows = rows.checked_add(p.rows).ok_or(KernelError::Overflow("rows"))?;
        }
        QWeight::new(first.ty, rows, first.cols, data)
    }

    /// The format.
    pub fn ty(&self) -> QType {
        self.ty
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.row_bytes
    }

    /// All bytes.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// The bytes of rows `r` (empty past the end).
    pub(crate) fn rows_bytes(&self, r: std::ops::Range<usize>) -> &[u8] {
        self.data.get(r.start * self.row_bytes..r.end * self.row_bytes).unwrap_or_default()
    }

    /// Row `row` in f32 (a token-embedding lookup). `out` must hold `cols` values.
    pub fn dequantize_row(&self, row: usize, out: &mut [f32]) -> Result<(), KernelError> {
        if row >= self.rows || out.len() != self.cols {
            return Err(KernelError::Shape(format!(
                "row {row} of {} into {} values (want {})",
                self.rows,
                out.len(),
                self.cols
            )));
        }
        crate::scalar::dequantize(self.ty, self.rows_bytes(row..row + 1), out);
        Ok(())
    }
}

/// An f16 at `b[0..2]`, little-endian, widened exactly.
#[inline]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    match b.get(at..at + 2) {
        Some(&[lo, hi]) => f16_to_f32(u16::from_le_bytes([lo, hi])),
        _ => 0.0,
    }
}

/// IEEE half to single, exact (by hand: a dozen lines, and it keeps `half` out of the
/// kernels' dependencies; the SIMD tiers use F16C).
#[inline]
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // Subnormal: normalise.
            let shift = m.leading_zeros() - 21;
            let m = (m << shift) & 0x3ff;
            sign | ((127 - 15 + 1 - shift) << 23) | (m << 13)
        }
        (0x1f, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_widening_is_exact_for_every_value() {
        for h in 0..=u16::MAX {
            let ours = f16_to_f32(h);
            // Reference: the definition.
            let sign = if h >> 15 == 1 { -1.0f64 } else { 1.0 };
            let e = i32::from((h >> 10) & 0x1f);
            let m = f64::from(h & 0x3ff);
            let want = match e {
                0 => sign * m * 2f64.powi(-24),
                31 if m == 0.0 => sign * f64::INFINITY,
                31 => f64::NAN,
                _ => sign * (1.0 + m / 1024.0) * 2f64.powi(e - 15),
            };
            if want.is_nan() {
                assert!(ours.is_nan(), "{h:#06x}");
            } else {
                assert_eq!(f64::from(ours), want, "{h:#06x}");
            }
        }
    }

    #[test]
    fn shapes_are_checked() {
        assert!(matches!(QWeight::new(QType::Q4_1, 2, 33, vec![0; 40]), Err(KernelError::Width { .. })));
        assert!(matches!(QWeight::new(QType::Q4_1, 2, 32, vec![0; 39]), Err(KernelError::Length { .. })));
        assert!(matches!(QWeight::new(QType::Q4K, 1, 32, vec![0; 144]), Err(KernelError::Width { .. })));
        assert!(matches!(QWeight::new(QType::Q8_0, 0, 32, vec![]), Err(KernelError::Length { .. })));
        assert!(matches!(
            QWeight::new(QType::Q8_0, usize::MAX, 32, vec![]),
            Err(KernelError::Overflow(_) | KernelError::Length { .. })
        ));
        let w = QWeight::new(QType::Q4_1, 2, 64, vec![0; 80]).unwrap();
        let v = QWeight::new(QType::Q4_0, 1, 64, vec![0; 36]).unwrap();
        assert!(QWeight::concat(&[&w, &v]).is_err());
        assert_eq!(QWeight::concat(&[&w, &w]).unwrap().rows(), 4);
        let mut out = [0f32; 63];
        assert!(w.dequantize_row(0, &mut out).is_err());
        let mut out = [0f32; 64];
        assert!(w.dequantize_row(2, &mut out).is_err());
        assert!(w.dequantize_row(1, &mut out).is_ok());
    }
}
