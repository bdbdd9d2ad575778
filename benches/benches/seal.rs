//! Seal and unseal throughput of the library (in process, no process start or CLI), on a
//! 64 MiB synthetic model, at 1 and 2 threads. The whole-program, side-by-side run with
//! `openssl speed` on the SmolLM2 GGUF and a 2 GiB file is `benches/seal-throughput`.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use veil_seal::seal::{SealOptions, seal};
use veil_seal::unseal::open;
use veil_seal::work::NoProgress;

/// A P-256 test key (PKCS#8), for benchmarks only.
const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgbMXLvQoCTa+3uDBn
DCKoL31e8LFsCtJVBU57I4msXhKhRANCAASFK+Mk1MAt5JX4q/0DFfPb2GmvMxoM
E554zEynmCHrj1dfMn6L5BOLGC+u9wx/+Z2yn/hY1mEeLNLvyXx0D3Eg
-----END PRIVATE KEY-----
";

const SIZE: usize = 64 << 20;

fn bench(c: &mut Criterion) {
    // tmpfs when there is one, so that the figures are CPU figures.
    let base = if std::path::Path::new("/dev/shm").is_dir() { "/dev/shm" } else { "/tmp" };
    let dir = tempfile::tempdir_in(base).unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(model.join("README.md"), "---\nlicense: mit\n---\n").unwrap();
    let mut data = vec![0u8; SIZE];
    aws_lc_rs::rand::fill(&mut data).unwrap();
    std::fs::write(model.join("weights.bin"), &data).unwrap();
    drop(data);
    let public = veil_seal::keys::SigningKey::from_pem(KEY.as_bytes()).unwrap().public_key().spki_pem();

    let mut g = c.benchmark_group("seal_64MiB");
    g.throughput(Throughput::Bytes(SIZE as u64));
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    for threads in [1, 2] {
        g.bench_function(format!("seal_{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let out = dir.path().join(format!("b{threads}-{i}.veil"));
                    let opts = SealOptions { threads, ..SealOptions::default() };
                    let t = Instant::now();
                    seal(&model, KEY.as_bytes(), &out, &opts).unwrap();
                    total += t.elapsed();
                    std::fs::remove_file(&out).unwrap();
                }
                total
            });
        });
        let out = dir.path().join(format!("u{threads}.veil"));
        let sealed = seal(&model, KEY.as_bytes(), &out, &SealOptions::default()).unwrap();
        let opened = open(&out, public.as_bytes()).unwrap();
        g.bench_function(format!("unseal_{threads}_threads"), |b| {
            b.iter(|| opened.unseal(&sealed.data_key, threads, &NoProgress).unwrap());
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
