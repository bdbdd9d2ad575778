//! The matrix product: quantize the activations once, then split the weight rows over
//! the rayon pool.

use rayon::prelude::*;

use crate::format::{KernelError, QType, QWeight};
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
    if acts.kind() != Some(ActKind::for_type(w.ty())) || acts.cols() != w.cols() {
        return Err(KernelError::Shape(format!(
            "{:?} activations {}×{} for {} weights {}×{}",
            acts.kind(),
            m,
            acts.cols(),
            w.ty().name(),
            n,
            w.cols()
        )));
    }
    let len = n.checked_mul(m).ok_or(KernelError::Overflow("output"))?;
    if out.len() != len {
        return Err(KernelError::Shape(format!("output of {} for {m}×{n}", out.len())));
    }
    if m == 0 {
        return Ok(());
    }
    let threads = rayon::current_num_threads().max(1);
    let work = len.saturating_mul(w.cols());
    // Contiguous row ranges of equal size (a multiple of 4, the generation tile), one
    // per thread for one activation row (bandwidth-bound: equal bytes per thread), two
    // per thread for more (so a late thread does not hold up the rest).
    let per = if threads == 1 || work < SERIAL_WORK {
        n
    } else {
        let chunks = if m == 1 { threads } else { 2 * threads };
        n.div_ceil(chunks).next_multiple_of(4).min(n)
    };
    let rows = |r0: usize, o: &mut [f32]| {
        let nr = o.len() / m;
        run(k, w.ty(), w.rows_bytes(r0..r0 + nr), w.row_bytes(), acts, o);
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
    for (j, col) in t.chunks_exact(m).enumerate() {
        for (i, &v) in col.iter().enumerate() {
            if let Some(o) = out.get_mut(i * n + j) {
                *o = v;
            }
        }
    }
    Ok(())
}

/// Rows `rows` of `w` times every row of `acts`, into `out` laid out `[row][m]` (the
/// transpose of [`matmul`]'s layout; the same when `m = 1`). For callers that split a
/// product over their own threads.
pub fn matmul_rows(
    k: Kernels,
    w: &QWeight,
    acts: &QActs,
    rows: std::ops::Range<usize>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    if acts.kind() != Some(ActKind::for_type(w.ty())) || acts.cols() != w.cols() {
        return Err(KernelError::Shape(format!(
            "activations {}×{} for {} weights ×{}",
            acts.rows(),
            acts.cols(),
            w.ty().name(),
            w.cols()
        )));
    }
    if rows.start > rows.end || rows.end > w.rows() || out.len() != (rows.end - rows.start) * acts.rows() {
        return Err(KernelError::Shape(format!("rows {rows:?} of {} into {} outputs", w.rows(), out.len())));
    }
    run(k, w.ty(), w.rows_bytes(rows), w.row_bytes(), acts, out);
    Ok(())
}

fn run(k: Kernels, ty: QType, w: &[u8], row_bytes: usize, acts: &QActs, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::x86::dispatch(k, ty, w, row_bytes, acts, out) {
        return;
    }
    let _ = k;
    scalar::rows(ty, w, row_bytes, acts, out);
}
