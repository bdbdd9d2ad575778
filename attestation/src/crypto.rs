//! The signature primitives every verifier uses, in one place.
//!
//! Verification uses aws-lc-rs (AWS-LC, built from source by the crate; no system
//! library): its P-384 ECDSA verification is ~3.5× faster than ring's on these
//! machines (0.6 ms vs 2.2 ms), which decides whether an SNP report verifies within
//! the 1 ms bar, since that one signature is nearly all of its cost. The API is
//! ring's, so the choice is this one line. Signing (simulator, runtime) stays on ring.

pub(crate) use aws_lc_rs::signature;
