//! # veil-sim
//!
//! A software TEE simulator: it emits AMD SEV-SNP attestation reports, Intel TDX DCAP
//! quotes (with their collateral) and TPM 2.0 quotes **byte for byte in the real
//! formats**, signed under simulated roots that are fixed, public test fixtures
//! (`crates/veil-sim/fixtures/`, SIMULATED - NOT A SECRET, NOT A REAL ROOT).
//!
//! ```text
//!  fixtures (keys + certs, generated once) ──┐
//!  report data / nonce, options ─────────────┼─► snp::report ─► report + VCEK/VLEK + chain + cert table
//!                                            ├─► tdx::quote ──► quote v4/v5 ; tdx::collateral_json
//!                                            ├─► tpm::quote ──► TPMS_ATTEST + TPMT_SIGNATURE + AK
//!                                            ├─► tsm::TsmSim ─► a configfs-tsm look-alike directory
//!                                            └─► write::write_case ─► evidence files + case.toml
//! ```
//!
//! Evidence from here verifies only against the simulated roots, which
//! `veil_attestation::danger` exposes so that verifiers can refuse them by name, or
//! accept them when explicitly told to (`Options::danger_trust_simulator`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// Shared with the fixture generator, which uses the certificate-building half.
#[allow(dead_code)]
mod der;
pub mod error;
mod keys;
#[allow(dead_code)]
mod names;
pub mod params;
pub mod snp;
pub mod tdx;
pub mod tpm;
pub mod tsm;
pub mod write;

pub use error::{Error, Result};
