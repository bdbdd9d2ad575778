//! The matrix product: quantize the activations once, then split the weight rows over
//! the rayon pool.

use rayon::prelude::*;

use crate::format::{GROUP, KernelError, Layout, QWeight, RowsView};
use crate::quant::{ActKind, QActs};
use crate::{Kernels, scalar};

/// Below this many multiply-adds a product runs on the calling thread: handing it to
/// the pool costs more than it saves.
const SERIAL_WORK: usize = 1 << 16;

/// `out = x · wᵀ`: `x` is `m × w.cols()` f32 (row-major), `out` is `m × w.rows()`.
/// `acts` is scratch for the quantized activations (kept by the caller to reuse its
/// allocation).
pub fn matmul(
    k: Kernels,
    w: &QWeight,
    x: &[f32],
    m: usize,
    acts: &mut QActs,
    out: &mut [f32],
) -> Result<(), KernelError> {
    acts.quantize(x, m, w.cols(), ActKind::for_type(w.ty()))?;
    matmul_into_acts(k, w, acts, out)
}

/// [`matmul`] with the activations already quantized (by [`QActs::quantize`] with
/// [`ActKind::for_type`] of `w`'s format).
pub fn matmul_into_acts(k: Kernels, w: &QWeight, acts: &QActs, out: &mut [f32]) -> Result<(), KernelError> {
    let (n, m) = (w.rows(), acts.rows());
    check_acts(w, acts)?;
    let len = n.checked_mul(m).ok_or(KernelError::Overflow("output"))?;
    if out.len() != len {
        return Err(KernelError::Shape(format!("output of {} for {m}×{n}", out.len())));
    }
    if m == 0 {
        return Ok(());
    }
    let threads = rayon::current_num_threads().max(1);
    let work = len.saturating_mul(w.cols());
    // Contiguous row ranges of equal size (a multiple of the 8-row group), one
    // per thread for one activation row (bandwidth-bound: equal bytes per thread), two
    // per thread for more (so a late thread does not hold up the rest).
    let per = if threads == 1 || work < SERIAL_WORK {
        n
    } else {
        let chunks = if m == 1 { threads } else { 2 * threads };
        n.div_ceil(chunks).next_multiple_of(GROUP).min(n)
    };
    let rows = |r0: usize, o: &mut [f32]| {
        let nr = o.len() / m;
        if let Some(v) = w.view(r0..r0 + nr) {
            run(k, v, acts, o);
        }
    };
    if m == 1 {
        // Output order = row order: write in place.
        if per >= n {
            rows(0, out);
        } else {
            out.par_chunks_mut(per).enumerate().for_each(|(c, o)| rows(c * per, o));
        }
        return Ok(());
    }
    // The kernels write `[row][m]`; transpose into `[m][row]`.
    let mut t = vec![0f32; len];
    if per >= n {
        rows(0, &mut t);
    } else {
        t.par_chunks_mut(per * m).enumerate().for_each(|(c, o)| rows(c * per, o));
    }
    scatter_rows(&t, m, 0, out)?;
    Ok(())
}

/// Writes rows `first..` of a product, as the kernels lay them out (`src`: `[row][m]`),
/// into `out`, `m × n` laid out `[m][n]`: `out[i·n + first + j] = src[j·m + i]`.
/// Rows that do not fit are an error (and nothing is written).
///
/// In tiles of 16 rows, so each store fills a cache line: a plain walk down a column
/// writes `m` lines `4·n` bytes apart, which for `n` a multiple of 1024 all fall in one
/// L1 set and evict each other.
pub fn scatter_rows(src: &[f32], m: usize, first: usize, out: &mut [f32]) -> Result<(), KernelError> {
    const TILE: usize = 16;
    let shape =
        || KernelError::Shape(format!("{} values at row {first} of {} outputs in {m} rows", src.len(), out.len()));
    if m == 0 || !src.len().is_multiple_of(m) || !out.len().is_multiple_of(m) {
        return Err(shape());
    }
    let (rows, n) = (src.len() / m, out.len() / m);
    if first.checked_add(rows).is_none_or(|end| end > n) {
        return Err(shape());
    }
    for j0 in (0..rows).step_by(TILE) {
        let j1 = (j0 + TILE).min(rows);
        for (i, d) in out.chunks_exact_mut(n).enumerate() {
            for (j, o) in (j0..j1).zip(&mut d[first + j0..first + j1]) {
                *o = src.get(j * m + i).copied().unwrap_or(0.0);
            }
        }
    }
    Ok(())
}

/// Rows `rows` of `w` times every row of `acts`, into `out` laid out `[row][m]` (the
/// transpose of [`matmul`]'s layout; the same when `m = 1`). For callers that split a
/// product over their own threads: `rows` must start at a multiple of
/// [`QWeight::row_align`] and end at one or at the last row.
pub fn matmul_rows(
    k: Kernels,
    w: &QWeight,
    acts: &QActs,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    check_acts(w, acts)?;
    let view = w.view(rows.clone());
    match view {
        Some(v) if out.len() == v.rows * acts.rows() => run(k, v, acts, out),
        _ => {
            return Err(KernelError::Shape(format!(
                "rows {rows:?} of {} (aligned to {}) into {} outputs",
                w.rows(),
                w.row_align(),
                out.len()
            )));
        }
    }
    Ok(())
}

/// `acts` were quantized for `w`: its format's block kind and its width.
fn check_acts(w: &QWeight, acts: &QActs) -> Result<(), KernelError> {
    if acts.kind() != Some(ActKind::for_type(w.ty())) || acts.cols() != w.cols() {
        return Err(KernelError::Shape(format!(
            "{:?} activations {}×{} for {} weights {}×{}",
            acts.kind(),
            acts.rows(),
            acts.cols(),
            w.ty().name(),
            w.rows(),
            w.cols()
        )));
    }
    Ok(())
}

fn run(k: Kernels, v: RowsView<'_>, acts: &QActs, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::x86::dispatch(k, v, acts, out) {
        return;
    }
    let _ = k;
    // The reference reads rows as GGUF lays them out.
    let plain = v.plain();
    debug_assert!(v.layout == Layout::Rows || plain.len() == v.rows * v.row_bytes);
    scalar::rows(v.ty, &plain, v.row_bytes, acts, out);
}
