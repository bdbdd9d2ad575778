//! The `veil` command line as a library, so its logic is tested without spawning
//! the binary (and the binary is tested too, in `tests/`).
//!
//! ```text
//!  veil attest verify <kind> --<role> FILE ...  ─┐
//!  veil attest verify --case cases.toml        ─┴─► run::Inputs ─► veil_attestation verifiers
//!  veil attest simulate <kind> --out DIR        ───► veil_sim ─► DIR/case.toml
//! ```

pub mod cases;
pub mod outcome;
pub mod run;
