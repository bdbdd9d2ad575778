//! Criterion: each tier on SmolLM2's matrix shapes (one token, and a 32-token prompt).
//! Run `cargo bench -p veil-kernels`; figures in docs/benchmarks.md.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use veil_kernels::{Kernels, Level, QActs, QType, QWeight, matmul};

fn weight(ty: QType, rows: usize, cols: usize) -> QWeight {
    let len = rows * ty.row_bytes(cols).unwrap();
    // Bytes with small f16 scales (0x2c00 ≈ 0.0625) in every scale slot would need the
    // layout; random bytes are as fast to multiply and the kernels do not branch on values.
    let mut s = 0x9e37_79b9u32;
    let data = (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s & 0x3b) as u8 // keeps f16 scales finite
        })
        .collect();
    QWeight::new(ty, rows, cols, data).unwrap()
}

fn bench(c: &mut Criterion) {
    // (name, rows, cols): fused q|k|v, output, fused gate|up, down, head.
    let shapes: [(&str, usize, usize); 4] =
        [("qkv", 960, 576), ("o", 576, 576), ("gate_up", 3072, 576), ("down", 576, 1536)];
    for ty in [QType::Q4_1, QType::Q4_0, QType::Q8_0, QType::Q4K, QType::Q6K] {
        for m in [1usize, 32] {
            let mut g = c.benchmark_group(format!("{}/m{m}", ty.name()));
            for &(name, rows, cols) in &shapes {
                let cols: usize = if ty.block_elems() == 256 { cols.next_multiple_of(256) } else { cols };
                let w = weight(ty, rows, cols);
                let x: Vec<f32> = (0..m * cols).map(|i| ((i * 7919) % 200) as f32 / 100.0 - 1.0).collect();
                let mut out = vec![0f32; m * rows];
                let mut acts = QActs::default();
                g.throughput(Throughput::Bytes(w.data().len() as u64));
                for level in Level::ALL {
                    let Some(k) = Kernels::new(level) else { continue };
                    g.bench_with_input(BenchmarkId::new(level.name(), name), &(), |b, ()| {
                        b.iter(|| matmul(k, &w, &x, m, &mut acts, &mut out).unwrap())
                    });
                }
            }
            g.finish();
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
