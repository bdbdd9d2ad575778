//! Weight bandwidth of one-row products, and multiply-add rate of 36-row ones, in both
//! layouts: `cargo run --release --example gemv_bw -p veil-kernels`.
use std::time::Instant;
use veil_kernels::{Kernels, Level, QActs, QType, QWeight, matmul};

fn main() {
    for ty in [QType::Q4_0, QType::Q4_1, QType::Q8_0] {
        let (rows, cols) = (if ty == QType::Q8_0 { 49152 } else { 3072 * 32 }, 576);
        let len = rows * ty.row_bytes(cols).unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i % 59) as u8).collect();
        let plain = QWeight::new(ty, rows, cols, data).unwrap();
        let inter = plain.clone().interleave().unwrap();
        for m in [1usize, 36] {
            let x: Vec<f32> = (0..m * cols).map(|i| (i % 13) as f32 - 6.0).collect();
            let mut out = vec![0f32; m * rows];
            for threads in [1, 2] {
                for level in [Level::Avx2, Level::Avx512Vnni] {
                    for (layout, w) in [("rows", &plain), ("interleaved", &inter)] {
                        let k = Kernels::new(level).unwrap();
                        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                        let mut acts = QActs::default();
                        let mut best = f64::MAX;
                        for _ in 0..if m == 1 { 20 } else { 3 } {
                            let t = Instant::now();
                            pool.install(|| matmul(k, w, &x, m, &mut acts, &mut out).unwrap());
                            best = best.min(t.elapsed().as_secs_f64());
                        }
                        println!(
                            "{} m={m} {threads} thr {level} {layout}: {:.2} ms, {:.2} GB/s, {:.1} Gmac/s",
                            ty.name(),
                            best * 1e3,
                            len as f64 / best / 1e9,
                            (rows * cols * m) as f64 / best / 1e9
                        );
                    }
                }
            }
        }
    }
}
