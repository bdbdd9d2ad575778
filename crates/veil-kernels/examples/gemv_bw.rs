//! Weight bandwidth of one-row products: `cargo run --release --example gemv_bw -p veil-kernels`.
use std::time::Instant;
use veil_kernels::{Kernels, Level, QActs, QType, QWeight, matmul};

fn main() {
    for ty in [QType::Q4_1, QType::Q8_0] {
        let (rows, cols) = (if ty == QType::Q4_1 { 3072 * 32 } else { 49152 }, 576);
        let len = rows * ty.row_bytes(cols).unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i % 59) as u8).collect();
        let w = QWeight::new(ty, rows, cols, data).unwrap();
        let x: Vec<f32> = (0..cols).map(|i| (i % 13) as f32 - 6.0).collect();
        let mut out = vec![0f32; rows];
        for threads in [1, 2] {
            for level in [Level::Avx2, Level::Avx512Vnni] {
                let k = Kernels::new(level).unwrap();
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut acts = QActs::default();
                let mut best = f64::MAX;
                for _ in 0..20 {
                    let t = Instant::now();
                    pool.install(|| matmul(k, &w, &x, 1, &mut acts, &mut out).unwrap());
                    best = best.min(t.elapsed().as_secs_f64());
                }
                println!(
                    "{} {} MB {threads} thr {level}: {:.2} ms, {:.2} GB/s",
                    ty.name(),
                    len / 1_000_000,
                    best * 1e3,
                    len as f64 / best / 1e9
                );
            }
        }
    }
}
