//! # veil-attestation
//!
//! Evidence parsers, verifiers and appraisal for AMD SEV-SNP, Intel TDX, TPM 2.0
//! and the vTPM-in-CVM evidence that clouds ship (Azure SNP/TDX + vTPM). Pure Rust,
//! synchronous, no network and no C libraries, so relying parties, the key broker,
//! the runtime and the fuzzers share exactly the same code.
//!
//! ```text
//!  raw bytes ─► parse (Reader, declared lengths) ─► verify (signatures, chains,
//!  collateral, bindings @ Options.at) ─► VerifiedEvidence ─► appraisal::appraise(Policy)
//! ```
//!
//! Trust anchors are embedded (AMD ARK/ASK/ASVK, Intel SGX Root CA). A root that
//! arrives with the evidence is used only if it is byte-identical to an embedded one.
//! The simulator's roots live in [`danger`] and are trusted only when
//! [`Options::danger_trust_simulator`] is set; such evidence is marked `simulated`.
#![cfg_attr(
    not(test),
    deny(
        clippy::indexing_slicing,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects
    )
)]
#![warn(missing_docs)]

pub mod appraisal;
pub mod azure;
mod crypto;
pub mod danger;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod reader;
pub mod runtime_log;
pub mod snp;
pub mod tcg;
pub mod tdx;
pub mod tpm;
pub mod verify;
pub mod x509;

pub use error::{Error, ErrorKind, ParseError, Result};
pub use verify::{Claims, Options, Tee, VerifiedEvidence, Verifier};
