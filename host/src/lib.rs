//! # veil-host
//!
//! What runs outside the confidential VM: the key broker (Trustee KBS 0.4.0
//! request–challenge–attest–resource flow, attestation-gated release of model keys,
//! EAR attestation results, Rego policy) and the operator's admin tooling.
//!
//! The crate is intentionally empty until the key-broker issue lands; it exists now so
//! the workspace has its final shape and dependency direction
//! (`veil-cli` → `veil-host` → `veil-attestation`) from the start.
#![forbid(unsafe_code)]
