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
//!
//! ## The interleaved layout (Veil's own, made at load)
//! [`QWeight::interleave`] re-lays a 32-block matrix in groups of [`GROUP`] = 8 rows,
//! block by block, so that one 4-byte word of activations, broadcast, meets the same 4
//! elements of 8 rows in one 256-bit register: one `vpdpbusd` does 8 rows × 4
//! elements, each output lane belongs to one row (no horizontal sums), the 8 scales
//! convert in one `vcvtph2ps`, and the weights are still one sequential stream. Group
//! `g` holds rows `8g..8g+8` (past the last row: zero blocks); its block `b` is the 8
//! rows' block `b`, `8 × block_bytes` bytes:
//!
//! | bytes | Q4_0 / Q8_0 | Q4_1 |
//! |---|---|---|
//! | 0..16 | `d` of rows 0..7 (f16 each) | `d` of rows 0..7 |
//! | 16..32 | quants | `m` of rows 0..7 |
//! | then | for each 4 quant bytes `c`, rows 0..7's bytes `4c..4c+4` (32 bytes per `c`) | the same |
//!
//! (llama.cpp's CPU "repack" does the same kind of thing for Q4_0; this layout is ours.)

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

    /// f16 fields at the start of each block of the formats that interleave (`d`; `d`
    /// and `m` for Q4_1). `None`: the K-quants, which stay in rows.
    pub(crate) const fn interleave_header(self) -> Option<usize> {
        match self {
            QType::Q4_0 | QType::Q8_0 => Some(1),
            QType::Q4_1 => Some(2),
            QType::Q4K | QType::Q6K => None,
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

/// Rows per group of the interleaved layout.
pub const GROUP: usize = 8;

/// Where byte `i` of row `r`'s block goes in an interleaved group block (`nf`: the
/// format's f16 header fields). A bijection of `0..8·block_bytes`: the header fields
/// by field then row, then the quants by 4-byte column then row.
#[inline]
pub(crate) const fn slot(nf: usize, r: usize, i: usize) -> usize {
    let h = 2 * nf;
    if i < h { 16 * (i / 2) + 2 * r + i % 2 } else { 16 * nf + 32 * ((i - h) / 4) + 4 * r + (i - h) % 4 }
}

/// How a matrix's bytes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// GGUF's: row after row.
    Rows,
    /// Groups of [`GROUP`] rows, block by block (see the module documentation).
    Interleaved,
}

/// A `rows × cols` weight matrix in GGUF blocks (one row per output feature), its size
/// checked against the format: row-major as in the file, or [interleaved](QWeight::interleave).
#[derive(Clone, PartialEq, Eq)]
pub struct QWeight {
    ty: QType,
    rows: usize,
    cols: usize,
    row_bytes: usize,
    layout: Layout,
    data: Vec<u8>,
}

/// Rows of a matrix as the kernels read them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowsView<'a> {
    pub ty: QType,
    pub layout: Layout,
    /// `Rows`: the rows' bytes. `Interleaved`: the groups that hold them (the first row
    /// starts a group).
    pub bytes: &'a [u8],
    pub row_bytes: usize,
    /// Rows (outputs) in the view.
    pub rows: usize,
}

impl RowsView<'_> {
    /// The rows in GGUF's row layout: borrowed, or copied out of the groups.
    pub(crate) fn plain(&self) -> std::borrow::Cow<'_, [u8]> {
        match self.layout {
            Layout::Rows => std::borrow::Cow::Borrowed(self.bytes),
            Layout::Interleaved => {
                let (rb, bb) = (self.row_bytes, self.ty.block_bytes());
                let nf = self.ty.interleave_header().unwrap_or(1);
                let mut out = vec![0u8; self.rows * rb];
                for (j, row) in out.chunks_exact_mut(rb).enumerate() {
                    let group = self.bytes.get((j / GROUP) * GROUP * rb..).unwrap_or_default();
                    for (b, blk) in row.chunks_exact_mut(bb).enumerate() {
                        let gb = group.get(b * GROUP * bb..(b + 1) * GROUP * bb).unwrap_or_default();
                        for (i, v) in blk.iter_mut().enumerate() {
                            *v = gb.get(slot(nf, j % GROUP, i)).copied().unwrap_or(0);
                        }
                    }
                }
                std::borrow::Cow::Owned(out)
            }
        }
    }
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
        Ok(QWeight { ty, rows, cols, row_bytes, layout: Layout::Rows, data })
    }

    /// The same matrix in the interleaved layout (module documentation), which the
    /// SIMD tiers multiply fastest; K-quants and matrices already interleaved come back
    /// unchanged. Every tier reads both layouts; the results agree to f32 rounding (the
    /// integer block sums are the same, the order of the f32 sums differs).
    pub fn interleave(mut self) -> Result<QWeight, KernelError> {
        let Some(nf) = self.ty.interleave_header() else { return Ok(self) };
        if self.layout == Layout::Interleaved {
            return Ok(self);
        }
        let (rb, bb) = (self.row_bytes, self.ty.block_bytes());
        let group_bytes = GROUP.checked_mul(rb).ok_or(KernelError::Overflow("interleaved group size"))?;
        let len = self
            .rows
            .div_ceil(GROUP)
            .checked_mul(group_bytes)
            .ok_or(KernelError::Overflow("interleaved matrix size"))?;
        // In place, a group at a time: a group of 8 rows takes the same bytes in both
        // layouts (the last one padded with zero rows), so only one group is copied
        // aside. A second buffer the size of the matrix would cost as much again in fresh
        // pages, which dominated loading a 2 GiB model.
        self.data
            .try_reserve_exact(len.saturating_sub(self.data.len()))
            .map_err(|_| KernelError::Overflow("interleaved matrix size"))?;
        self.data.resize(len, 0);
        let mut rows = vec![0u8; group_bytes];
        for group in self.data.chunks_exact_mut(group_bytes) {
            rows.copy_from_slice(group);
            for (r, row) in rows.chunks_exact(rb).enumerate() {
                for (b, blk) in row.chunks_exact(bb).enumerate() {
                    let base = b * GROUP * bb;
                    // Runs that stay together: each f16 field, each 4 quant bytes.
                    let runs = (0..nf).map(|f| (2 * f, 2)).chain((2 * nf..bb).step_by(4).map(|i| (i, 4)));
                    for (i, n) in runs {
                        let at = base + slot(nf, r, i);
                        if let (Some(dst), Some(src)) = (group.get_mut(at..at + n), blk.get(i..i + n)) {
                            dst.copy_from_slice(src);
                        }
                    }
                }
            }
        }
        Ok(QWeight { layout: Layout::Interleaved, ..self })
    }

    /// The byte layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Row ranges given to [`crate::matmul_rows`] start at a multiple of this (and end
    /// at one, or at the last row): [`GROUP`] when interleaved, else 1.
    pub fn row_align(&self) -> usize {
        match self.layout {
            Layout::Rows => 1,
            Layout::Interleaved => GROUP,
        }
    }

    /// Rows `r` as the kernels read them; `None` for a range that is out of bounds or
    /// splits a group.
    pub(crate) fn view(&self, r: std::ops::Range<usize>) -> Option<RowsView<'_>> {
        let a = self.row_align();
        if r.start > r.end
            || r.end > self.rows
            || !r.start.is_multiple_of(a)
            || (!r.end.is_multiple_of(a) && r.end != self.rows)
        {
            return None;
        }
        let bytes = match self.layout {
            Layout::Rows => self.data.get(r.start * self.row_bytes..r.end * self.row_bytes)?,
            Layout::Interleaved => {
                self.data.get(r.start * self.row_bytes..r.end.next_multiple_of(GROUP) * self.row_bytes)?
            }
        };
        Some(RowsView { ty: self.ty, layout: self.layout, bytes, row_bytes: self.row_bytes, rows: r.end - r.start })
    }

    /// Stacks matrices of one format and width (e.g. the query, key and value
    /// projections into one, so one pass over the activations feeds all three), in the
    /// row layout (interleave after stacking).
    pub fn concat(parts: &[&QWeight]) -> Result<QWeight, KernelError> {
        let first = parts.first().ok_or_else(|| KernelError::Shape("nothing to concatenate".into()))?;
        let mut data = Vec::new();
        let mut rows = 0usize;
        for p in parts {
            if p.layout != Layout::Rows {
                return Err(KernelError::Shape("cannot stack interleaved matrices".into()));
            }
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

    /// All bytes, in [`QWeight::layout`].
    pub fn data(&self) -> &[u8] {
        &self.data
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
        let start = row - row % self.row_align();
        let view = self.view(start..(start + self.row_align()).min(self.rows));
        let plain = view.as_ref().map(RowsView::plain).unwrap_or_default();
        let at = (row - start) * self.row_bytes;
        crate::scalar::dequantize(self.ty, plain.get(at..at + self.row_bytes).unwrap_or_default(), out);
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
