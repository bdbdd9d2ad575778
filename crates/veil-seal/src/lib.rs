//! Sealed model bundles for Veil.
//!
//! This first part implements OpenSSF Model Signing (OMS) signatures with keys, byte-compatible
//! with the `model-signing` package on PyPI (v1.1.1) in both directions; see PROTOCOLS.md
//! section 4 and DESIGN.md section 6. Encryption (sealing) is not implemented yet.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod keys;
pub mod oms;

mod error;

pub use error::Error;

/// Parses an OMS bundle and its payload without panicking, for the fuzzer.
#[doc(hidden)]
pub fn fuzz_bundle(data: &[u8]) {
    let _ = oms::parse_bundle(data).and_then(|b| oms::parse_statement(&b.payload));
}
