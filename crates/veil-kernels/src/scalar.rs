//! The reference tier: portable Rust, integer block sums computed element by element.
//! The SIMD tiers are tested against it.

use crate::format::{QType, f16_at};
use crate::quant::ActRow;

/// Q4_K's packed 6-bit scale and minimum of sub-block `j` (ggml `get_scale_min_k4`).
#[inline]
pub(crate) fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    let at = |i: usize| s.get(i).copied().unwrap_or(0);
    if j < 4 {
        (at(j) & 63, at(j + 4) & 63)
    } else {
        ((at(j + 4) & 0xF) | ((at(j - 4) >> 6) << 4), (at(j + 4) >> 4) | ((at(j) >> 6) << 4))
    }
}

/// The 256 6-bit values (0..63) of a Q6_K block in element order.
#[inline]
pub(crate) fn q6k_values(b: &[u8]) -> [u8; 256] {
    let mut v = [0u8; 256];
    let (ql, rest) = b.split_at(128.min(b.len()));
    let qh = rest.get(..64).unwrap_or_default();
    let (Some(ql), Some(qh)) = (ql.get(..128), qh.get(..64)) else { return v };
    for half in 0..2 {
        let (ql, qh) = (&ql[half * 64..half * 64 + 64], &qh[half * 32..half * 32 + 32]);
        let out = &mut v[half * 128..half * 128 + 128];
        for l in 0..32 {
            out[l] = (ql[l] & 0xF) | ((qh[l] & 3) << 4);
            out[l + 32] = (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4);
            out[l + 64] = (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4);
            out[l + 96] = (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4);
        }
    }
    v
}

/// The unsigned nibbles (0..15) of a 32-block's 16 bytes, in element order.
#[inline]
fn nibbles(qs: &[u8]) -> [u8; 32] {
    let mut v = [0u8; 32];
    for (i, &b) in qs.iter().take(16).enumerate() {
        v[i] = b & 0xF;
        v[i + 16] = b >> 4;
    }
    v
}

/// Dequantizes whole blocks of `ty` from `bytes` into `out` (as many as both hold).
pub fn dequantize(ty: QType, bytes: &[u8], out: &mut [f32]) {
    let be = ty.block_elems();
    for (b, y) in bytes.chunks_exact(ty.block_bytes()).zip(out.chunks_exact_mut(be)) {
        match ty {
            QType::Q4_0 => {
                let d = f16_at(b, 0);
                for (y, q) in y.iter_mut().zip(nibbles(&b[2..])) {
                    *y = d * (f32::from(q) - 8.0);
                }
            }
            QType::Q4_1 => {
                let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                for (y, q) in y.iter_mut().zip(nibbles(&b[4..])) {
                    *y = d * f32::from(q) + m;
                }
            }
            QType::Q8_0 => {
                let d = f16_at(b, 0);
                for (y, &q) in y.iter_mut().zip(&b[2..]) {
                    *y = d * f32::from(q as i8);
                }
            }
            QType::Q4K => {
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                let (scales, qs) = (&b[4..16], &b[16..144]);
                for (j, y) in y.chunks_exact_mut(32).enumerate() {
                    let (sc, m) = scale_min_k4(j, scales);
                    let q = &qs[(j / 2) * 32..(j / 2) * 32 + 32];
                    for (y, &q) in y.iter_mut().zip(q) {
                        let q = if j % 2 == 0 { q & 0xF } else { q >> 4 };
                        *y = d * f32::from(sc) * f32::from(q) - dmin * f32::from(m);
                    }
                }
            }
            QType::Q6K => {
                let d = f16_at(b, 208);
                let v = q6k_values(b);
                for (i, y) in y.iter_mut().enumerate() {
                    let sc = f32::from(b[192 + i / 16] as i8);
                    *y = d * sc * (f32::from(v[i]) - 32.0);
                }
            }
        }
    }
}

/// Integer dot product of `n` unsigned weights with signed activations.
#[inline]
fn idot(w: impl IntoIterator<Item = i32>, a: &[i8]) -> i32 {
    w.into_iter().zip(a).map(|(w, &a)| w * i32::from(a)).sum()
}

/// One weight row (`w`: its GGUF bytes) times one quantized activation row.
pub(crate) fn dot(ty: QType, w: &[u8], a: ActRow<'_>) -> f32 {
    let mut acc = 0f32;
    let be = ty.block_elems();
    for (b, blk) in w.chunks_exact(ty.block_bytes()).enumerate() {
        let qa = a.qs.get(b * be..(b + 1) * be).unwrap_or_default();
        let da = a.d.get(b).copied().unwrap_or(0.0);
        match ty {
            QType::Q4_0 => {
                let sum = idot(nibbles(&blk[2..]).map(|q| i32::from(q) - 8), qa);
                acc += f16_at(blk, 0) * da * sum as f32;
            }
            QType::Q4_1 => {
                let sum = idot(nibbles(&blk[4..]).map(i32::from), qa);
                let sa = a.s.get(b).copied().unwrap_or(0.0);
                acc += f16_at(blk, 0) * da * sum as f32 + f16_at(blk, 2) * sa;
            }
            QType::Q8_0 => {
                let sum = idot(blk[2..34].iter().map(|&q| i32::from(q as i8)), qa);
                acc += f16_at(blk, 0) * da * sum as f32;
            }
            QType::Q4K => {
                let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
                let (sumi, summ) = q4k_sums(blk, qa, a.bsums.get(b * 16..b * 16 + 16).unwrap_or_default());
                acc += da * (d * sumi as f32 - dmin * summ as f32);
            }
            QType::Q6K => {
                let d = f16_at(blk, 208);
                let sumi = q6k_sum(blk, qa);
                acc += d * da * sumi as f32;
            }
        }
    }
    acc
}

/// One Q4_K super-block's exact integer sums against its activations: Σ_j sc_j·Σ q·q_a
/// and Σ_j m_j·Σ q_a (the minima, from the 16-element activation sums `bs`).
fn q4k_sums(blk: &[u8], qa: &[i8], bs: &[i16]) -> (i32, i32) {
    let (scales, qs) = (&blk[4..16], &blk[16..144]);
    let (mut sumi, mut summ) = (0i32, 0i32);
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, scales);
        let q = &qs[(j / 2) * 32..(j / 2) * 32 + 32];
        let qa = qa.get(j * 32..j * 32 + 32).unwrap_or_default();
        let s = if j % 2 == 0 {
            idot(q.iter().map(|&q| i32::from(q & 0xF)), qa)
        } else {
            idot(q.iter().map(|&q| i32::from(q >> 4)), qa)
        };
        sumi += i32::from(sc) * s;
        let bsum = bs.get(2 * j..2 * j + 2).map_or(0, |p| i32::from(p[0]) + i32::from(p[1]));
        summ += i32::from(m) * bsum;
    }
    (sumi, summ)
}

/// One Q6_K super-block's exact integer sum against its activations: Σ_g sc_g·Σ(q−32)·q_a.
fn q6k_sum(blk: &[u8], qa: &[i8]) -> i32 {
    let v = q6k_values(blk);
    let mut sumi = 0i32;
    for g in 0..16 {
        let sc = i32::from(blk[192 + g] as i8);
        let qa = qa.get(g * 16..g * 16 + 16).unwrap_or_default();
        sumi += sc * idot(v[g * 16..g * 16 + 16].iter().map(|&q| i32::from(q) - 32), qa);
    }
    sumi
}

/// The sum of the magnitudes of every f32 term [`dot`] adds (each block's product, and
/// its minimum term apart), in f64 so it does not overflow: the scale of the rounding
/// error a different order of the same f32 operations can make. Tiers round each block
/// term differently (a fused multiply-add here, two products there) and add the blocks
/// in another order, so where block terms cancel they may differ by a few ulps of this,
/// not of the result (fuzz oracle only).
#[doc(hidden)]
pub(crate) fn dot_magnitude(ty: QType, w: &[u8], a: ActRow<'_>) -> f64 {
    let mut mag = 0f64;
    let be = ty.block_elems();
    let f = |v: f32| f64::from(v).abs();
    for (b, blk) in w.chunks_exact(ty.block_bytes()).enumerate() {
        let qa = a.qs.get(b * be..(b + 1) * be).unwrap_or_default();
        let da = f(a.d.get(b).copied().unwrap_or(0.0));
        mag += match ty {
            QType::Q4_0 => {
                f(f16_at(blk, 0)) * da * f64::from(idot(nibbles(&blk[2..]).map(|q| i32::from(q) - 8), qa)).abs()
            }
            QType::Q4_1 => {
                let sum = f64::from(idot(nibbles(&blk[4..]).map(i32::from), qa)).abs();
                f(f16_at(blk, 0)) * da * sum + f(f16_at(blk, 2)) * f(a.s.get(b).copied().unwrap_or(0.0))
            }
            QType::Q8_0 => {
                f(f16_at(blk, 0)) * da * f64::from(idot(blk[2..34].iter().map(|&q| i32::from(q as i8)), qa)).abs()
            }
            QType::Q4K => {
                let (sumi, summ) = q4k_sums(blk, qa, a.bsums.get(b * 16..b * 16 + 16).unwrap_or_default());
                da * (f(f16_at(blk, 0)) * f64::from(sumi).abs() + f(f16_at(blk, 2)) * f64::from(summ).abs())
            }
            QType::Q6K => {
                let sumi = q6k_sum(blk, qa);
                f(f16_at(blk, 208)) * da * f64::from(sumi).abs()
            }
        };
    }
    mag
}

/// Rows `w` (whole rows of `ty`, `row_bytes` each) times every activation row:
/// `out[j·m + i] = w_j · a_i`.
pub(crate) fn rows(ty: QType, w: &[u8], row_bytes: usize, acts: &crate::QActs, out: &mut [f32]) {
    let m = acts.rows();
    for (j, wr) in w.chunks_exact(row_bytes).enumerate() {
        for i in 0..m {
            if let Some(o) = out.get_mut(j * m + i) {
                *o = dot(ty, wr, acts.row(i));
            }
        }
    }
}
