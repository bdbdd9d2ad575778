//! Criterion benchmarks for Veil live in `benches/`; this library only locates the
//! shared test vectors for them.

use std::path::PathBuf;

/// The real-hardware vectors folder (`$VEIL_VECTORS` or `../shared/vectors`).
pub fn vectors() -> PathBuf {
    match std::env::var_os("VEIL_VECTORS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors"),
    }
}
