//! Dangerous trust: the Veil TEE simulator's roots.
//!
//! The simulator (crate `veil-sim`) signs real-format evidence under these roots.
//! They are fixed, public test fixtures — their private keys are in the repository —
//! so evidence chaining to them proves nothing about hardware. Verifiers recognise
//! them by exact bytes in order to refuse them *by name* by default, and accept them
//! only with [`crate::Options::danger_trust_simulator`], marking the result
//! `simulated: true`.
//!
//! The fixture files are generated once by `crates/veil-sim/fixtures/generate.sh`
//! and embedded here (certificates only; keys stay in `veil-sim`).

/// A simulated root or intermediate certificate, by name.
#[derive(Debug, Clone, Copy)]
pub struct SimulatedCert {
    /// A human-readable name that appears in refusals ("Veil simulated ARK-Milan").
    pub name: &'static str,
    /// The DER certificate.
    pub der: &'static [u8],
}

/// Simulated AMD certificates (ARK, ASK, ASVK), each a self-contained anchor just
/// like the embedded AMD ones.
pub fn snp_certs() -> &'static [SimulatedCert] {
    &[]
}

/// Simulated Intel SGX root CA.
pub fn intel_roots() -> &'static [SimulatedCert] {
    &[]
}

/// If `der` is byte-identical to a simulated certificate, its name.
pub fn simulated_cert_name(der: &[u8]) -> Option<&'static str> {
    snp_certs().iter().chain(intel_roots()).find(|c| c.der == der).map(|c| c.name)
}
