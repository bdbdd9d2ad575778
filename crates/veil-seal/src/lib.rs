//! Sealed model bundles for Veil (DESIGN.md section 6; format in `docs/formats.md`).
//!
//! - [`oms`]: OpenSSF Model Signing (OMS) signatures with keys, byte-compatible with the
//!   `model-signing` package on PyPI (v1.1.1) in both directions (PROTOCOLS.md section 4).
//! - [`seal`]: one parallel pass that signs the plaintext manifest and encrypts every file
//!   in AES-256-GCM chunks under per-file HKDF keys, into a bundle that appears only when
//!   complete.
//! - [`unseal`]: signature and card checks without the key ([`unseal::open`]), then
//!   parallel decryption into memory, checked against the signed manifest before anything
//!   is returned.
//! - [`card`]: model cards and the policy that gates them.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod bundle;
pub mod card;
pub mod keys;
pub mod oms;
pub mod seal;
pub mod unseal;
pub mod work;

mod error;
mod secret;

pub use secret::SecretBytes;

/// Fills `buf` from the operating system (getrandom) through ring. aws-lc's own RNG is
/// not used here: it seeds itself from CPU jitter on first use, which costs ~60 ms per
/// process on this machine (a third of sealing a 100 MB model).
pub(crate) fn random(buf: &mut [u8]) -> Result<(), ring::error::Unspecified> {
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), buf)
}

pub use bundle::DataKey;
pub use error::{Error, Mismatch};

/// Parses an OMS bundle and its payload without panicking, for the fuzzer.
#[doc(hidden)]
pub fn fuzz_bundle(data: &[u8]) {
    let _ = oms::parse_bundle(data).and_then(|b| oms::parse_statement(&b.payload));
}

/// Parses a sealed bundle's preamble, header and card without panicking, for the fuzzer.
#[doc(hidden)]
pub fn fuzz_sealed_header(data: &[u8]) {
    if let Ok(meta) = bundle::Meta::from_bytes(data) {
        let _ = card::Card::parse(&meta.header.card.text);
        let _ = oms::parse_bundle(meta.header.signature.as_bytes());
    }
}

/// Parses a model card and checks it against a fixed policy, for the fuzzer.
#[doc(hidden)]
pub fn fuzz_card(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(card) = card::Card::parse(text) {
            let policy = card::CardPolicy {
                required: vec!["license".into()],
                allowed: [("license".to_owned(), vec!["mit".to_owned()])].into_iter().collect(),
            };
            let _ = policy.check(&card);
        }
    }
}
