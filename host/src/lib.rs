//! # veil-host
//!
//! What runs outside the confidential VM: the key broker (`kbs`): the Trustee KBS 0.4.0
//! request–challenge–attest–resource flow, attestation-gated release of model keys, EAR
//! attestation results, Rego policy, a crash-safe encrypted store and an admin API.
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod kbs;
