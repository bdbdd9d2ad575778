//! Every tier against the scalar reference, and the scalar reference against candle's
//! dequantised weights multiplied in f32, on weights candle quantized (so the byte
//! layouts are ggml's, not ours) and on hand-made extreme blocks.

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use veil_kernels::{ActKind, Kernels, Layout, Level, QActs, QType, QWeight, matmul};

/// xorshift: deterministic, no extra dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1).
    fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

fn ggml(ty: QType) -> GgmlDType {
    match ty {
        QType::Q4_0 => GgmlDType::Q4_0,
        QType::Q4_1 => GgmlDType::Q4_1,
        QType::Q8_0 => GgmlDType::Q8_0,
        QType::Q4K => GgmlDType::Q4K,
        QType::Q6K => GgmlDType::Q6K,
    }
}

/// A candle-quantized `rows × cols` matrix: ours, and candle's dequantisation of it.
fn candle_weight(ty: QType, rows: usize, cols: usize, rng: &mut Rng) -> (QWeight, Vec<f32>) {
    // Rows of different magnitudes, some with an offset (so Q4_1's minimum matters).
    let vals: Vec<f32> = (0..rows * cols)
        .map(|i| {
            let r = i / cols;
            let scale = [0.02f32, 1.0, 7.5, 0.3][r % 4];
            let off = if r % 3 == 1 { 0.5 * scale } else { 0.0 };
            rng.f() * scale + off
        })
        .collect();
    let t = Tensor::from_vec(vals, (rows, cols), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&t, ggml(ty)).unwrap();
    let deq = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let w = QWeight::new(ty, rows, cols, q.data().unwrap().into_owned()).unwrap();
    (w, deq)
}

fn acts(rng: &mut Rng, m: usize, cols: usize) -> Vec<f32> {
    (0..m * cols).map(|i| rng.f() * [1.0f32, 3.0, 0.01][i % 3]).collect()
}

fn run(k: Kernels, w: &QWeight, x: &[f32], m: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; m * w.rows()];
    let mut a = QActs::default();
    matmul(k, w, x, m, &mut a, &mut out).unwrap();
    out
}

/// The bound on |ours − f32| from quantizing the activations: each is off by at most
/// d/2 of its block, so a dot product by at most Σ_blocks d/2 · Σ|w| over the block.
fn quant_bound(wrow: &[f32], xrow: &[f32], block: usize) -> f32 {
    wrow.chunks(block)
        .zip(xrow.chunks(block))
        .map(|(w, x)| {
            let d = x.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
            d / 2.0 * w.iter().map(|v| v.abs()).sum::<f32>()
        })
        .sum()
}

fn magnitude(wrow: &[f32], xrow: &[f32]) -> f32 {
    wrow.iter().zip(xrow).map(|(a, b)| (a * b).abs()).sum()
}

fn shapes(ty: QType) -> Vec<(usize, usize)> {
    let rows = [1usize, 3, 4, 5, 8, 13];
    let cols: &[usize] = if ty.block_elems() == 256 { &[256, 512, 768] } else { &[32, 64, 96, 576] };
    rows.iter().flat_map(|&r| cols.iter().map(move |&c| (r, c))).collect()
}

#[test]
fn our_dequantisation_is_candles() {
    let mut rng = Rng(7);
    for ty in QType::ALL {
        for (rows, cols) in [(3usize, 256usize), (5, 512)] {
            let (w, deq) = candle_weight(ty, rows, cols, &mut rng);
            let mut row = vec![0f32; cols];
            for r in 0..rows {
                w.dequantize_row(r, &mut row).unwrap();
                assert_eq!(&row[..], &deq[r * cols..(r + 1) * cols], "{ty:?} row {r}");
            }
        }
    }
}

#[test]
fn scalar_is_within_the_activation_quantisation_bound_of_f32() {
    let mut rng = Rng(11);
    for ty in QType::ALL {
        let block = ActKind::for_type(ty).block();
        for (rows, cols) in shapes(ty) {
            let (w, deq) = candle_weight(ty, rows, cols, &mut rng);
            for m in [1usize, 2, 5] {
                let x = acts(&mut rng, m, cols);
                let got = run(Kernels::scalar(), &w, &x, m);
                for i in 0..m {
                    for j in 0..rows {
                        let (wr, xr) = (&deq[j * cols..(j + 1) * cols], &x[i * cols..(i + 1) * cols]);
                        let want: f32 = wr.iter().zip(xr).map(|(a, b)| a * b).sum();
                        let tol = quant_bound(wr, xr, block) + 1e-5 * magnitude(wr, xr) + 1e-6;
                        let g = got[i * rows + j];
                        assert!(
                            (g - want).abs() <= tol,
                            "{ty:?} {rows}×{cols} m={m} ({i},{j}): {g} vs {want} (tol {tol})"
                        );
                    }
                }
            }
        }
    }
}

/// The SIMD tiers compute the scalar tier's integer block sums; only the f32
/// accumulation order differs. Every tier, the scalar one included, also reads the
/// interleaved layout of the same matrix.
fn tiers_match_scalar(w: &QWeight, deq: &[f32], x: &[f32], m: usize, what: &str) {
    let reference = run(Kernels::scalar(), w, x, m);
    let cols = w.cols();
    let inter = w.clone().interleave().unwrap();
    assert_eq!(inter.layout() == Layout::Interleaved, w.ty().block_elems() == 32, "{what}");
    for level in Level::ALL {
        let Some(k) = Kernels::new(level) else {
            // CI and this project's machines are x86-64-v3 with AVX-512 VNNI; say so if not.
            eprintln!("{level} not available on this CPU: not tested here");
            continue;
        };
        for (layout, w) in [("rows", w), ("interleaved", &inter)] {
            let got = run(k, w, x, m);
            for i in 0..m {
                for j in 0..w.rows() {
                    let (wr, xr) = (&deq[j * cols..(j + 1) * cols], &x[i * cols..(i + 1) * cols]);
                    let tol = 1e-5 * magnitude(wr, xr) + 1e-6;
                    let (g, r) = (got[i * w.rows() + j], reference[i * w.rows() + j]);
                    assert!((g - r).abs() <= tol, "{what} {level} {layout} m={m} ({i},{j}): {g} vs scalar {r}");
                }
            }
        }
    }
}

#[test]
fn interleaving_keeps_every_row() {
    let mut rng = Rng(41);
    for ty in QType::ALL {
        for rows in [1usize, 7, 8, 9, 17] {
            let (w, deq) = candle_weight(ty, rows, 96.max(ty.block_elems()), &mut rng);
            let cols = w.cols();
            let inter = w.clone().interleave().unwrap();
            assert_eq!((inter.rows(), inter.cols(), inter.ty()), (rows, cols, ty));
            if ty.block_elems() == 32 {
                assert_eq!(inter.row_align(), veil_kernels::GROUP);
                assert_eq!(inter.data().len(), rows.div_ceil(8) * 8 * w.row_bytes(), "padded to whole groups");
                assert_ne!(inter.data(), w.data(), "{ty:?} {rows}: the bytes moved");
            } else {
                assert_eq!(inter, w, "K-quants stay in rows");
            }
            assert_eq!(inter.clone().interleave().unwrap(), inter, "interleaving twice is a no-op");
            let mut row = vec![0f32; cols];
            for r in 0..rows {
                inter.dequantize_row(r, &mut row).unwrap();
                assert_eq!(&row[..], &deq[r * cols..(r + 1) * cols], "{ty:?} row {r}");
            }
            assert!(QWeight::concat(&[&inter]).is_err() || ty.block_elems() == 256);
        }
    }
}

#[test]
fn row_ranges_must_keep_groups_whole() {
    let mut rng = Rng(43);
    let (w, _) = candle_weight(QType::Q4_0, 20, 64, &mut rng);
    let inter = w.clone().interleave().unwrap();
    let x = acts(&mut rng, 2, 64);
    let mut a = QActs::default();
    a.quantize(&x, 2, 64, ActKind::B32).unwrap();
    let k = Kernels::detect();
    let full = run(k, &inter, &x, 2);
    let mut part = vec![0f32; 2 * 12];
    // Groups 1 and 2 (the last one partial): the same values as the whole product.
    veil_kernels::matmul_rows(k, &inter, &a, 8..20, &mut part).unwrap();
    for (jj, j) in (8..20).enumerate() {
        for i in 0..2 {
            assert_eq!(part[jj * 2 + i], full[i * 20 + j], "row {j} act {i}");
        }
    }
    // A range that splits a group is refused, in either layout's terms.
    let mut out = vec![0f32; 2 * 4];
    assert!(veil_kernels::matmul_rows(k, &inter, &a, 4..8, &mut out).is_err());
    assert!(veil_kernels::matmul_rows(k, &inter, &a, 8..12, &mut out).is_err());
    assert!(veil_kernels::matmul_rows(k, &w, &a, 4..8, &mut out).is_ok());
    let mut out = vec![0f32; 2 * 24];
    assert!(veil_kernels::matmul_rows(k, &inter, &a, 0..24, &mut out).is_err(), "past the last row");
}

#[test]
fn every_tier_matches_scalar_on_candle_quantized_weights() {
    let mut rng = Rng(23);
    for ty in QType::ALL {
        for (rows, cols) in shapes(ty) {
            let (w, deq) = candle_weight(ty, rows, cols, &mut rng);
            for m in [1usize, 2, 3, 4, 5, 7, 9] {
                let x = acts(&mut rng, m, cols);
                tiers_match_scalar(&w, &deq, &x, m, &format!("{ty:?} {rows}×{cols}"));
            }
        }
    }
}

#[test]
fn every_tier_matches_scalar_on_extreme_blocks() {
    // Every nibble 15, every Q8 value -128 or 127, every Q6 value 63, largest K scales:
    // the cases where an unsigned×signed pair sum could saturate.
    let mut rng = Rng(5);
    for ty in QType::ALL {
        let cols = ty.block_elems() * 3;
        let rows = 6;
        for fill in [0xFFu8, 0x80, 0x7F, 0x00] {
            let mut data = vec![fill; rows * ty.row_bytes(cols).unwrap()];
            // Scales: a modest f16 (0.5 = 0x3800) so sums stay finite.
            for blk in data.chunks_exact_mut(ty.block_bytes()) {
                match ty {
                    QType::Q4_0 | QType::Q8_0 => blk[..2].copy_from_slice(&0x3800u16.to_le_bytes()),
                    QType::Q4_1 | QType::Q4K => {
                        blk[..2].copy_from_slice(&0x3800u16.to_le_bytes());
                        blk[2..4].copy_from_slice(&0xB400u16.to_le_bytes()); // -0.25
                    }
                    QType::Q6K => blk[208..].copy_from_slice(&0x3800u16.to_le_bytes()),
                }
            }
            let w = QWeight::new(ty, rows, cols, data).unwrap();
            let mut deq = vec![0f32; rows * cols];
            for r in 0..rows {
                w.dequantize_row(r, &mut deq[r * cols..(r + 1) * cols]).unwrap();
            }
            for m in [1usize, 4, 6] {
                // Activations at ±max so they quantize to ±127.
                let x: Vec<f32> =
                    (0..m * cols).map(|i| if (rng.next() + i as u64).is_multiple_of(2) { 3.0 } else { -3.0 }).collect();
                tiers_match_scalar(&w, &deq, &x, m, &format!("{ty:?} fill {fill:#04x}"));
                // And exactly the f32 product (the activations quantize without error).
                let got = run(Kernels::scalar(), &w, &x, m);
                for i in 0..m {
                    for j in 0..rows {
                        let (wr, xr) = (&deq[j * cols..(j + 1) * cols], &x[i * cols..(i + 1) * cols]);
                        let want: f32 = wr.iter().zip(xr).map(|(a, b)| a * b).sum();
                        let tol = 1e-5 * magnitude(wr, xr) + 1e-6;
                        assert!(
                            (got[i * rows + j] - want).abs() <= tol,
                            "{ty:?} fill {fill:#04x}: {} vs {want}",
                            got[i * rows + j]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn big_products_split_over_the_pool_give_the_serial_answer() {
    let mut rng = Rng(99);
    let (w, _) = candle_weight(QType::Q4_1, 1000, 576, &mut rng);
    let x = acts(&mut rng, 3, 576);
    let k = Kernels::detect();
    for w in [w.clone(), w.interleave().unwrap()] {
        let serial = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| run(k, &w, &x, 3));
        let pooled = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap().install(|| run(k, &w, &x, 3));
        assert_eq!(serial, pooled);
        let x1 = &x[..576];
        let serial = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap().install(|| run(k, &w, x1, 1));
        let pooled = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap().install(|| run(k, &w, x1, 1));
        assert_eq!(serial, pooled);
    }
}

#[test]
fn mismatched_shapes_are_errors() {
    let w = QWeight::new(QType::Q4_1, 4, 64, vec![0; 160]).unwrap();
    let mut a = QActs::default();
    let mut out = vec![0f32; 4];
    assert!(matmul(Kernels::scalar(), &w, &[0.0; 63], 1, &mut a, &mut out).is_err());
    assert!(matmul(Kernels::scalar(), &w, &[0.0; 64], 1, &mut a, &mut out[..3]).is_err());
    a.quantize(&[0.0; 256], 1, 256, ActKind::K256).unwrap();
    assert!(veil_kernels::matmul_into_acts(Kernels::scalar(), &w, &a, &mut out).is_err());
    assert!(matmul(Kernels::scalar(), &w, &[0.0; 64], 1, &mut a, &mut out).is_ok());
}

#[test]
fn veil_kernels_names_only_tiers_the_cpu_has() {
    assert_eq!(Kernels::scalar().level(), Level::Scalar);
    assert!(Kernels::new(Level::Scalar).is_some());
    assert!(Kernels::detect().level().is_available());
    for l in Level::ALL {
        assert_eq!(Level::parse(l.name()), Some(l));
        assert_eq!(Kernels::new(l).is_some(), l.is_available());
    }
    assert_eq!(Level::parse("avx9000"), None);
}

#[test]
fn the_fuzz_entry_point_accepts_what_the_fuzzer_sends() {
    // Every format, hostile scale bytes (0xFF: NaN f16 scales), and short inputs.
    let mut rng = Rng(77);
    for t in 0u8..5 {
        for len in [0usize, 3, 4, 5, 40, 700, 5000] {
            let mut data = vec![t, (len % 9) as u8, (len % 4) as u8, (len % 6) as u8];
            data.extend((0..len).map(|_| rng.next() as u8));
            veil_kernels::fuzz_matmul(&data);
            data.iter_mut().skip(4).for_each(|b| *b = 0xFF);
            veil_kernels::fuzz_matmul(&data);
        }
    }
}

#[test]
fn scatter_rows_places_each_piece_and_refuses_what_does_not_fit() {
    let (n, m) = (37usize, 5usize);
    let src: Vec<f32> = (0..20 * m).map(|v| v as f32).collect(); // rows 10..30, `[row][m]`
    let mut out = vec![-1f32; m * n];
    veil_kernels::scatter_rows(&src, m, 10, &mut out).unwrap();
    for i in 0..m {
        for j in 0..n {
            let want = if (10..30).contains(&j) { ((j - 10) * m + i) as f32 } else { -1.0 };
            assert_eq!(out[i * n + j], want, "({i},{j})");
        }
    }
    // Past the end, or a length that is not whole rows: nothing written.
    let before = out.clone();
    assert!(veil_kernels::scatter_rows(&src, m, 20, &mut out).is_err());
    assert!(veil_kernels::scatter_rows(&src[..7], m, 0, &mut out).is_err());
    assert!(veil_kernels::scatter_rows(&src, 0, 0, &mut out).is_err());
    assert!(veil_kernels::scatter_rows(&src, m, usize::MAX, &mut out).is_err());
    assert_eq!(out, before);
}

/// The `kernels` fuzz target's first finding (docs/fuzzing.md): Q4_0, 6 × 96, 5
/// activation rows, whose every block sum Σ(q − 8)·q_a is exactly 0. The SIMD tiers on
/// the row layout returned −0.015625 and −0.03125 (a block's lanes scaled and added in
/// f32); every tier and layout must give the scalar tier's exact 0.
#[test]
fn a_block_sum_of_zero_is_zero_on_every_tier_and_layout() {
    let input = [0x0au8, 0x0e, 0x0e, 0x0a, 0x7d, 0x2f, 0x0a, 0x6b];
    veil_kernels::fuzz_matmul(&input);
    // The same product, spelled out, so the expected value is in the test.
    let (ty, rows, cols, m) = (QType::Q4_0, 6, 96, 5);
    let [_, _, _, _, rest @ ..] = input;
    let need = rows * ty.row_bytes(cols).unwrap();
    let w = QWeight::new(ty, rows, cols, rest.iter().copied().cycle().take(need).collect()).unwrap();
    let x: Vec<f32> = std::iter::once(f32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]))
        .chain(std::iter::repeat(0.5))
        .take(m * cols)
        .collect();
    let scalar = run(Kernels::scalar(), &w, &x, m);
    // Activation rows 1..4 are all 0.5: exactly 0 there (the output is m × rows).
    assert!(scalar[..rows].iter().all(|v| *v != 0.0), "{scalar:?}");
    assert!(scalar[rows..].iter().all(|v| *v == 0.0), "{scalar:?}");
    let inter = w.clone().interleave().unwrap();
    for level in Level::ALL {
        let Some(k) = Kernels::new(level) else { continue };
        for w in [&w, &inter] {
            let got = run(k, w, &x, m);
            assert_eq!(got[rows..], scalar[rows..], "{level} {:?}", w.layout());
        }
    }
}

/// Fuzz finding (2026-12-04, `kernels`): the oracle, not a kernel. Q4_0, 6 × 64, 5
/// activation rows; the first activation row is −2.19·10²⁴ in 19 of block 0's 32 elements
/// and 2 of block 1's, so the two block terms of output 0 are ±8.9·10²⁷ and cancel. The
/// scalar tier computes each block as `(d·d_a)·Σ` and got exactly 0; AVX2 on the
/// interleaved layout as `fma(d, Σ·d_a, acc)` and got −1.8·10²⁰: one rounding of a term
/// apart, 2·10⁻⁸ of it.
/// The old oracle allowed 10⁻³·max(|result|, 1), which cancellation makes meaningless;
/// the bound is now relative to Σ|block term| instead (`fuzz_matmul`).
#[test]
fn tiers_agree_within_the_scale_of_the_terms_when_block_terms_cancel() {
    let mut input = vec![0x0au8, 0x0e, 0x7d, 0x0a];
    input.extend([0xe7; 79].iter().chain(&[0; 103]).chain(&[0xe7; 6]).chain(&[0x6b]));
    veil_kernels::fuzz_matmul(&input);
    // The same product, spelled out: the block terms, one block of activations at a time.
    let (ty, rows, cols, m) = (QType::Q4_0, 6, 64, 5);
    let rest = &input[4..];
    let w =
        QWeight::new(ty, rows, cols, rest.iter().copied().cycle().take(rows * ty.row_bytes(cols).unwrap()).collect())
            .unwrap();
    let x: Vec<f32> = rest
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .chain(std::iter::repeat(0.5))
        .take(m * cols)
        .collect();
    let scalar = run(Kernels::scalar(), &w, &x, m);
    let mut terms = vec![0f64; m * rows];
    for b in 0..cols / 32 {
        let only_b: Vec<f32> = x.iter().enumerate().map(|(i, v)| if (i % cols) / 32 == b { *v } else { 0.0 }).collect();
        for (t, v) in terms.iter_mut().zip(run(Kernels::scalar(), &w, &only_b, m)) {
            *t += f64::from(v).abs();
        }
    }
    // Output 0 is the cancelling one: |result| is nothing beside its terms.
    assert!(terms[0] > 1e27, "{}", terms[0]);
    assert!(f64::from(scalar[0].abs()) < 1e-6 * terms[0], "{} of {}", scalar[0], terms[0]);
    let inter = w.clone().interleave().unwrap();
    for level in Level::ALL {
        let Some(k) = Kernels::new(level) else { continue };
        for w in [&w, &inter] {
            for ((g, s), t) in run(k, w, &x, m).iter().zip(&scalar).zip(&terms) {
                let diff = (f64::from(*g) - f64::from(*s)).abs();
                assert!(
                    diff <= 1e-6 * t + 1e-3 * f64::from(s.abs()).max(1.0),
                    "{level} {:?}: {g} vs {s} (Σ|term| {t:e})",
                    w.layout()
                );
            }
        }
    }
}
