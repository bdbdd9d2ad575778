//! The x86-64 tiers. One macro writes both: they differ only in the `u8 × i8 → i32`
//! primitive (`vpmaddubsw` + `vpmaddwd` with AVX2, one `vpdpbusd` with AVX-512 VNNI)
//! and, for interleaved 4-bit blocks, in where AVX2 widens to i32 (`pairs16`: once per
//! block), so the two cannot drift apart in anything else.
//!
//! Every function here is a safe `#[target_feature]` function: intrinsics without
//! pointers are safe inside them (Rust ≥ 1.87), and memory is read through
//! `bytemuck::pod_read_unaligned` (a bounds-checked, unaligned load) rather than raw
//! pointers. The only `unsafe` is entering a tier, in [`dispatch`], after [`Kernels`]
//! has proved the CPU has its features.
//!
//! Register tiles. Interleaved matrices (Q4_0, Q4_1, Q8_0 after
//! `QWeight::interleave`, what the model loader makes): one 8-row group × `R` activation
//! rows (`R` = 1 for generation, 4 for prompts); each 4-byte activation word is
//! broadcast and meets the same 4 elements of the 8 rows in one `u8 × i8` product, and
//! the 8 results stay in the 8 lanes (no horizontal sum). Matrices in GGUF's row
//! layout: generation walks one row at a time in memory order (one sequential stream;
//! four rows walked side by side ran at half the bandwidth, because the prefetcher does
//! not follow four short streams), prompts use 2 weight rows × 4 activation rows.

use crate::format::RowsView;
use crate::quant::QActs;
use crate::{Kernels, Level};

macro_rules! tier {
    ($name:ident, $features:literal, pairs16: $pairs16:literal, |$acc:ident, $u:ident, $s:ident| $dot:expr) => {
        pub(crate) mod $name {
            use core::arch::x86_64::*;

            use crate::format::{GROUP, Layout, QType, RowsView};
            use crate::quant::{ActRow, QActs};
            use crate::scalar::scale_min_k4;

            #[target_feature(enable = $features)]
            #[inline]
            fn load32(b: &[u8]) -> __m256i {
                b.get(..32).map_or(_mm256_setzero_si256(), bytemuck::pod_read_unaligned)
            }

            #[target_feature(enable = $features)]
            #[inline]
            fn load32i(b: &[i8]) -> __m256i {
                load32(bytemuck::cast_slice(b))
            }

            #[target_feature(enable = $features)]
            #[inline]
            fn load16(b: &[u8]) -> __m128i {
                b.get(..16).map_or(_mm_setzero_si128(), bytemuck::pod_read_unaligned)
            }

            /// f16 at `b[at..at + 2]` to f32 (F16C).
            #[target_feature(enable = $features)]
            #[inline]
            fn f16(b: &[u8], at: usize) -> f32 {
                let bits = b.get(at..at + 2).map_or(0, |h| u16::from_le_bytes([h[0], h[1]]));
                _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
            }

            /// 16 bytes of nibbles to 32 bytes 0..15: low nibbles (elements 0..15) in
            /// the low lane, high nibbles (16..31) in the high lane.
            #[target_feature(enable = $features)]
            #[inline]
            fn nibbles(b: &[u8]) -> __m256i {
                let lo = load16(b);
                let hi = _mm_srli_epi16(lo, 4);
                _mm256_and_si256(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(0x0F))
            }

            /// `acc` + Σ over each 4 bytes of `u` (unsigned) × `s` (signed), as 8 × i32.
            /// Exact: callers keep `u` ≤ 128 and `s` in [-127, 127], so the AVX2 pair
            /// sums (≤ 2·128·127) cannot saturate i16.
            #[target_feature(enable = $features)]
            #[inline]
            fn dot_acc($acc: __m256i, $u: __m256i, $s: __m256i) -> __m256i {
                $dot
            }

            #[target_feature(enable = $features)]
            #[inline]
            fn dot_u8i8(u: __m256i, s: __m256i) -> __m256i {
                dot_acc(_mm256_setzero_si256(), u, s)
            }

            /// Activation bytes `at..at + 4` of a block, in every i32 lane.
            #[target_feature(enable = $features)]
            #[inline]
            fn bcast4(q: &[i8; 32], at: usize) -> __m256i {
                let b = |i: usize| q.get(at + i).map_or(0, |&v| v as u8);
                _mm256_set1_epi32(i32::from_le_bytes([b(0), b(1), b(2), b(3)]))
            }

            /// One interleaved group (8 rows; `GB` bytes per group block) of a 32-block
            /// format (`T`: 0 = Q4_0, 1 = Q4_1, 2 = Q8_0) times `R` activation rows: lane
            /// `x` of result `r` is row `x` · activation row `r`.
            #[target_feature(enable = $features)]
            #[inline]
            fn group_b32<const T: u8, const GB: usize, const R: usize>(g: &[u8], a: [ActRow<'_>; R]) -> [__m256; R] {
                const ZERO: [i8; 32] = [0; 32];
                let nb = g.len() / GB;
                let mut acc = [_mm256_setzero_ps(); R];
                if g.len() != nb * GB
                    || a.iter().any(|a| a.qs.len() < nb * 32 || a.d.len() < nb || a.s.len() < nb || a.bsums.len() < nb)
                {
                    return acc; // unreachable from `rows`: shapes are checked before
                }
                let m4 = _mm256_set1_epi8(0x0F);
                for (b, blk) in g.chunks_exact(GB).enumerate() {
                    let Some(blk) = blk.first_chunk::<GB>() else { continue };
                    let aq: [&[i8; 32]; R] = core::array::from_fn(|r| {
                        a[r].qs.get(b * 32..).and_then(|q| q.first_chunk::<32>()).unwrap_or(&ZERO)
                    });
                    let d = _mm256_cvtph_ps(load16(&blk[..16]));
                    let mut sum = [_mm256_setzero_si256(); R];
                    if T == 2 {
                        for c in 0..8 {
                            let w = load32(&blk[16 + 32 * c..]);
                            let u = _mm256_sign_epi8(w, w);
                            for r in 0..R {
                                sum[r] = dot_acc(sum[r], u, _mm256_sign_epi8(bcast4(aq[r], 4 * c), w));
                            }
                        }
                    } else {
                        let q0 = if T == 1 { 32 } else { 16 };
                        // Without VNNI, sum the 8 `vpmaddubsw` pair sums in i16 and widen
                        // once per block: each is at most 2·15·127 = 3810 in magnitude, so
                        // the 8 stay below 30480 < 2¹⁵ (nibbles only; Q8_0 would overflow).
                        let mut s16 = [_mm256_setzero_si256(); R];
                        for c in 0..4 {
                            let w = load32(&blk[q0 + 32 * c..]);
                            let lo = _mm256_and_si256(w, m4);
                            let hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), m4);
                            for r in 0..R {
                                let (alo, ahi) = (bcast4(aq[r], 4 * c), bcast4(aq[r], 16 + 4 * c));
                                if $pairs16 {
                                    s16[r] = _mm256_add_epi16(s16[r], _mm256_maddubs_epi16(lo, alo));
                                    s16[r] = _mm256_add_epi16(s16[r], _mm256_maddubs_epi16(hi, ahi));
                                } else {
                                    sum[r] = dot_acc(sum[r], lo, alo);
                                    sum[r] = dot_acc(sum[r], hi, ahi);
                                }
                            }
                        }
                        if $pairs16 {
                            for r in 0..R {
                                sum[r] = _mm256_madd_epi16(s16[r], _mm256_set1_epi16(1));
                            }
                        }
                    }
                    for r in 0..R {
                        let (da, sa) = (a[r].d[b], a[r].s[b]);
                        if T == 0 {
                            // Q4_0's −8, in the integer sum: Σ(q−8)·q_a = Σq·q_a − 8·Σq_a.
                            sum[r] = _mm256_sub_epi32(sum[r], _mm256_set1_epi32(8 * i32::from(a[r].bsums[b])));
                        }
                        let p = _mm256_cvtepi32_ps(sum[r]);
                        acc[r] = match T {
                            // d·d_a·Σ(q−8)·q_a
                            0 => _mm256_fmadd_ps(d, _mm256_mul_ps(p, _mm256_set1_ps(da)), acc[r]),
                            // d·d_a·Σq·q_a + m·s_a
                            1 => _mm256_fmadd_ps(
                                _mm256_cvtph_ps(load16(&blk[16..32])),
                                _mm256_set1_ps(sa),
                                _mm256_fmadd_ps(d, _mm256_mul_ps(p, _mm256_set1_ps(da)), acc[r]),
                            ),
                            _ => _mm256_fmadd_ps(d, _mm256_mul_ps(p, _mm256_set1_ps(da)), acc[r]),
                        };
                    }
                }
                acc
            }

            /// The rows of an interleaved view times every activation row (layout as
            /// [`rows`]).
            #[target_feature(enable = $features)]
            #[inline]
            fn rows_g<const T: u8, const GB: usize>(v: RowsView<'_>, acts: &QActs, out: &mut [f32]) {
                let m = acts.rows();
                let gbytes = (acts.cols() / 32) * GB;
                if gbytes == 0 {
                    return;
                }
                for (g, gw) in v.bytes.chunks_exact(gbytes).enumerate() {
                    let valid = v.rows.saturating_sub(g * GROUP).min(GROUP);
                    let mut put = |i: usize, lanes: __m256| {
                        let t: [f32; GROUP] = bytemuck::cast(lanes);
                        for (x, &val) in t.iter().take(valid).enumerate() {
                            if let Some(o) = out.get_mut((g * GROUP + x) * m + i) {
                                *o = val;
                            }
                        }
                    };
                    let mut i = 0;
                    while i + 4 <= m {
                        let a = [acts.row(i), acts.row(i + 1), acts.row(i + 2), acts.row(i + 3)];
                        for (r, lanes) in group_b32::<T, GB, 4>(gw, a).into_iter().enumerate() {
                            put(i + r, lanes);
                        }
                        i += 4;
                    }
                    while i < m {
                        put(i, group_b32::<T, GB, 1>(gw, [acts.row(i)])[0]);
                        i += 1;
                    }
                }
            }

            /// The sum of the 8 i32 lanes (wrapping; callers' block sums fit in i32, as the
            /// scalar tier's do).
            #[target_feature(enable = $features)]
            #[inline]
            fn hsum_i32(v: __m256i) -> i32 {
                let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
                let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
                let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
                _mm_cvtsi128_si32(s)
            }

            /// `WR` rows of a 32-block format (`T`: 0 = Q4_0, 1 = Q4_1, 2 = Q8_0) times
            /// `R` activation rows.
            ///
            /// A row's block is spread over the 8 lanes (4 elements each), so each block's
            /// lanes are added as integers and the block sum is converted once, as the
            /// scalar tier does. Scaling lanes separately and adding them in f32 at the
            /// end let partial sums of opposite sign cancel and leave their rounding: a
            /// block whose exact sum is 0 came out at −0.03 (found by the `kernels` fuzz
            /// target, docs/fuzzing.md).
            #[target_feature(enable = $features)]
            #[inline]
            fn tile_b32<const T: u8, const WR: usize, const R: usize>(
                w: [&[u8]; WR],
                a: [ActRow<'_>; R],
            ) -> [[f32; R]; WR] {
                let bb = match T {
                    0 => 18,
                    1 => 20,
                    _ => 34,
                };
                let nb = w[0].len() / bb;
                let out = [[0f32; R]; WR];
                if w.iter().any(|w| w.len() != nb * bb)
                    || a.iter().any(|a| a.qs.len() < nb * 32 || a.d.len() < nb || a.s.len() < nb || a.bsums.len() < nb)
                {
                    return out; // unreachable from `rows`: shapes are checked before
                }
                let mut acc = [[0f32; R]; WR];
                for b in 0..nb {
                    let mut aq = [_mm256_setzero_si256(); R];
                    let mut ad = [0f32; R];
                    let mut asum = [0f32; R];
                    // Q4_0's −8 offset, inside the integer sum: Σ(q−8)·q_a = Σq·q_a − 8·Σq_a.
                    let mut off8 = [0i32; R];
                    for r in 0..R {
                        aq[r] = load32i(&a[r].qs[b * 32..b * 32 + 32]);
                        ad[r] = a[r].d[b];
                        asum[r] = a[r].s[b];
                        if T == 0 {
                            off8[r] = 8 * i32::from(a[r].bsums[b]);
                        }
                    }
                    for x in 0..WR {
                        let blk = &w[x][b * bb..b * bb + bb];
                        let d = f16(blk, 0);
                        if T == 2 {
                            let wv = load32(&blk[2..34]);
                            let u = _mm256_sign_epi8(wv, wv);
                            for r in 0..R {
                                let p = hsum_i32(dot_u8i8(u, _mm256_sign_epi8(aq[r], wv)));
                                acc[x][r] += d * ad[r] * p as f32;
                            }
                        } else {
                            if T == 0 {
                                let q = nibbles(&blk[2..18]);
                                for r in 0..R {
                                    let p = hsum_i32(dot_u8i8(q, aq[r])).wrapping_sub(off8[r]);
                                    acc[x][r] += d * ad[r] * p as f32;
                                }
                            } else {
                                let (q, m) = (nibbles(&blk[4..20]), f16(blk, 2));
                                for r in 0..R {
                                    let p = hsum_i32(dot_u8i8(q, aq[r]));
                                    acc[x][r] += d * ad[r] * p as f32 + m * asum[r];
                                }
                            }
                        }
                    }
                }
                acc
            }

            /// One row of a K-quant (`T`: 0 = Q4_K, 1 = Q6_K) times `R` activation rows.
            /// Each super-block's lanes are added as integers before the one conversion,
            /// as in [`tile_b32`] and the scalar tier.
            #[target_feature(enable = $features)]
            #[inline]
            fn tile_k<const T: u8, const R: usize>(w: &[u8], a: [ActRow<'_>; R]) -> [f32; R] {
                let bb = if T == 0 { 144 } else { 210 };
                let nb = w.len() / bb;
                let out = [0f32; R];
                if w.len() != nb * bb
                    || a.iter().any(|a| a.qs.len() < nb * 256 || a.d.len() < nb || a.bsums.len() < nb * 16)
                {
                    return out; // unreachable from `rows`: shapes are checked before
                }
                let mut acc = [0f32; R];
                let m4 = _mm256_set1_epi8(0x0F);
                for b in 0..nb {
                    let blk = &w[b * bb..b * bb + bb];
                    if T == 0 {
                        let (d, dmin) = (f16(blk, 0), f16(blk, 2));
                        let scales = &blk[4..16];
                        let mut sm = [(0u8, 0u8); 8];
                        for (j, s) in sm.iter_mut().enumerate() {
                            *s = scale_min_k4(j, scales);
                        }
                        let mut sumi = [_mm256_setzero_si256(); R];
                        for p in 0..4 {
                            let q = load32(&blk[16 + p * 32..16 + p * 32 + 32]);
                            let lo = _mm256_and_si256(q, m4);
                            let hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                            let (s_lo, s_hi) = (
                                _mm256_set1_epi32(i32::from(sm[2 * p].0)),
                                _mm256_set1_epi32(i32::from(sm[2 * p + 1].0)),
                            );
                            for r in 0..R {
                                let base = b * 256 + p * 64;
                                let a_lo = load32i(&a[r].qs[base..base + 32]);
                                let a_hi = load32i(&a[r].qs[base + 32..base + 64]);
                                let v = _mm256_add_epi32(
                                    _mm256_mullo_epi32(dot_u8i8(lo, a_lo), s_lo),
                                    _mm256_mullo_epi32(dot_u8i8(hi, a_hi), s_hi),
                                );
                                sumi[r] = _mm256_add_epi32(sumi[r], v);
                            }
                        }
                        for r in 0..R {
                            let bs = &a[r].bsums[b * 16..b * 16 + 16];
                            let mut summ = 0i32;
                            for (j, &(_, m)) in sm.iter().enumerate() {
                                summ += i32::from(m) * (i32::from(bs[2 * j]) + i32::from(bs[2 * j + 1]));
                            }
                            let da = a[r].d[b];
                            acc[r] += da * (d * hsum_i32(sumi[r]) as f32 - dmin * summ as f32);
                        }
                    } else {
                        let d = f16(blk, 208);
                        let sc = &blk[192..208];
                        let m3 = _mm256_set1_epi8(0x03);
                        let mut sumi = [_mm256_setzero_si256(); R];
                        for half in 0..2 {
                            let ql0 = load32(&blk[half * 64..half * 64 + 32]);
                            let ql1 = load32(&blk[half * 64 + 32..half * 64 + 64]);
                            let qh = load32(&blk[128 + half * 32..128 + half * 32 + 32]);
                            let hbits = |shift: i32| match shift {
                                0 => _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4),
                                2 => _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4),
                                4 => _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4),
                                _ => _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4),
                            };
                            // Elements half·128 + 32·k ..: the four 32-runs of the half.
                            let v = [
                                _mm256_or_si256(_mm256_and_si256(ql0, m4), hbits(0)),
                                _mm256_or_si256(_mm256_and_si256(ql1, m4), hbits(2)),
                                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), hbits(4)),
                                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), hbits(6)),
                            ];
                            for (k, v) in v.iter().enumerate() {
                                // Groups of 16 share a scale: lanes 0..3 are the first 16.
                                let g = half * 8 + 2 * k;
                                let s = _mm256_setr_epi32(
                                    i32::from(sc[g] as i8),
                                    i32::from(sc[g] as i8),
                                    i32::from(sc[g] as i8),
                                    i32::from(sc[g] as i8),
                                    i32::from(sc[g + 1] as i8),
                                    i32::from(sc[g + 1] as i8),
                                    i32::from(sc[g + 1] as i8),
                                    i32::from(sc[g + 1] as i8),
                                );
                                for r in 0..R {
                                    let base = b * 256 + half * 128 + k * 32;
                                    let aq = load32i(&a[r].qs[base..base + 32]);
                                    sumi[r] = _mm256_add_epi32(sumi[r], _mm256_mullo_epi32(dot_u8i8(*v, aq), s));
                                }
                            }
                        }
                        for r in 0..R {
                            // The values are stored +32: take 32·Σ sc·(Σ q_a) back out.
                            let bs = &a[r].bsums[b * 16..b * 16 + 16];
                            let mut off = 0i32;
                            for g in 0..16 {
                                off += i32::from(sc[g] as i8) * i32::from(bs[g]);
                            }
                            let da = a[r].d[b];
                            let s = hsum_i32(sumi[r]).wrapping_sub(32 * off);
                            acc[r] += d * da * s as f32;
                        }
                    }
                }
                acc
            }

            /// See `crate::scalar::rows`: `out[j·m + i] = w_j · a_i`.
            #[target_feature(enable = $features)]
            pub(crate) fn rows(v: RowsView<'_>, acts: &QActs, out: &mut [f32]) {
                let (ty, w, row_bytes) = (v.ty, v.bytes, v.row_bytes);
                if v.layout == Layout::Interleaved {
                    match ty {
                        QType::Q4_0 => return rows_g::<0, { 8 * 18 }>(v, acts, out),
                        QType::Q4_1 => return rows_g::<1, { 8 * 20 }>(v, acts, out),
                        QType::Q8_0 => return rows_g::<2, { 8 * 34 }>(v, acts, out),
                        // Never interleaved: `QWeight::interleave` leaves them in rows.
                        QType::Q4K | QType::Q6K => return,
                    }
                }
                match ty {
                    QType::Q4_0 => rows_b32::<0>(w, row_bytes, acts, out),
                    QType::Q4_1 => rows_b32::<1>(w, row_bytes, acts, out),
                    QType::Q8_0 => rows_b32::<2>(w, row_bytes, acts, out),
                    QType::Q4K => rows_k::<0>(w, row_bytes, acts, out),
                    QType::Q6K => rows_k::<1>(w, row_bytes, acts, out),
                }
            }

            #[target_feature(enable = $features)]
            #[inline]
            fn rows_b32<const T: u8>(w: &[u8], rb: usize, acts: &QActs, out: &mut [f32]) {
                let m = acts.rows();
                let n = w.len() / rb;
                let row = |j: usize| w.get(j * rb..(j + 1) * rb).unwrap_or_default();
                let mut put = |j: usize, i: usize, v: f32| {
                    if let Some(o) = out.get_mut(j * m + i) {
                        *o = v;
                    }
                };
                let mut j = 0;
                if m == 1 {
                    // One row at a time, in memory order: a single sequential stream.
                    // (Four rows interleaved looked better on paper — four independent
                    // FMA chains — but ran at half the bandwidth: the hardware
                    // prefetcher does not follow four short streams 360 bytes apart.)
                    let a = [acts.row(0)];
                    while j < n {
                        put(j, 0, tile_b32::<T, 1, 1>([row(j)], a)[0][0]);
                        j += 1;
                    }
                    return;
                }
                while j < n {
                    let wr = if j + 2 <= n { 2 } else { 1 };
                    let mut i = 0;
                    while i + 4 <= m {
                        let a = [acts.row(i), acts.row(i + 1), acts.row(i + 2), acts.row(i + 3)];
                        if wr == 2 {
                            let t = tile_b32::<T, 2, 4>([row(j), row(j + 1)], a);
                            for (x, t) in t.iter().enumerate() {
                                for (r, &v) in t.iter().enumerate() {
                                    put(j + x, i + r, v);
                                }
                            }
                        } else {
                            let t = tile_b32::<T, 1, 4>([row(j)], a);
                            for (r, &v) in t[0].iter().enumerate() {
                                put(j, i + r, v);
                            }
                        }
                        i += 4;
                    }
                    while i < m {
                        let a = [acts.row(i)];
                        if wr == 2 {
                            let t = tile_b32::<T, 2, 1>([row(j), row(j + 1)], a);
                            put(j, i, t[0][0]);
                            put(j + 1, i, t[1][0]);
                        } else {
                            put(j, i, tile_b32::<T, 1, 1>([row(j)], a)[0][0]);
                        }
                        i += 1;
                    }
                    j += wr;
                }
            }

            #[target_feature(enable = $features)]
            #[inline]
            fn rows_k<const T: u8>(w: &[u8], rb: usize, acts: &QActs, out: &mut [f32]) {
                let m = acts.rows();
                for (j, wr) in w.chunks_exact(rb).enumerate() {
                    let mut i = 0;
                    while i < m {
                        if i + 4 <= m {
                            let a = [acts.row(i), acts.row(i + 1), acts.row(i + 2), acts.row(i + 3)];
                            for (r, v) in tile_k::<T, 4>(wr, a).into_iter().enumerate() {
                                if let Some(o) = out.get_mut(j * m + i + r) {
                                    *o = v;
                                }
                            }
                            i += 4;
                        } else {
                            if let Some(o) = out.get_mut(j * m + i) {
                                *o = tile_k::<T, 1>(wr, [acts.row(i)])[0];
                            }
                            i += 1;
                        }
                    }
                }
            }
        }
    };
}

tier!(avx2, "avx2,fma,f16c", pairs16: true, |acc, u, s| _mm256_add_epi32(
    acc,
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
));
tier!(vnni, "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni", pairs16: false, |acc, u, s| _mm256_dpbusd_epi32(acc, u, s));

/// Runs the tier `k` names. `None` when the tier is not an x86 one (the caller runs the
/// scalar tier).
#[allow(unsafe_code)]
pub(crate) fn dispatch(k: Kernels, v: RowsView<'_>, acts: &QActs, out: &mut [f32]) -> bool {
    match k.level() {
        Level::Avx512Vnni => {
            // SAFETY: a `Kernels` holds a level only when `Level::is_available` found
            // every feature the `vnni` tier enables (avx2, fma, f16c, avx512f/bw/vl/vnni).
            unsafe { vnni::rows(v, acts, out) };
            true
        }
        Level::Avx2 => {
            // SAFETY: as above, for avx2, fma and f16c.
            unsafe { avx2::rows(v, acts, out) };
            true
        }
        Level::Scalar => false,
    }
}
