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
//! and embedded here (certificates only; keys stay in `veil-sim`). Every subject says
//! "Veil Simulated … NOT A REAL ROOT".
//!
//! What the simulated certificates look like (so verifiers can be checked against them):
//! - AMD (Milan): ARK (CN "Veil Simulated ARK-Milan", self-signed), ASK (CN "Veil
//!   Simulated SEV-Milan") and ASVK (CN "Veil Simulated SEV-VLEK-Milan"), both signed by
//!   the ARK; RSA-4096 keys, RSASSA-PSS SHA-384 / MGF1-SHA-384 / salt 48 with the
//!   trailerField spelled out, exactly like AMD's KDS certificates. Name attributes in
//!   AMD's order: OU=Engineering, C=US, L=Santa Clara, ST=CA,
//!   O=Veil Simulated AMD - NOT A REAL ROOT, CN=….
//! - Intel: SGX Root CA (CN "Veil Simulated Intel SGX Root CA", self-signed, P-256,
//!   ecdsa-with-SHA256), PCK Platform CA and TCB Signing certificates issued by it
//!   (see [`intel_intermediates`]). Names: CN=…, O=Veil Simulated Intel - NOT A REAL ROOT,
//!   L=Santa Clara, ST=CA, C=US.

/// A simulated root or intermediate certificate, by name.
#[derive(Debug, Clone, Copy)]
pub struct SimulatedCert {
    /// A human-readable name that appears in refusals ("Veil simulated ARK-Milan").
    pub name: &'static str,
    /// The DER certificate.
    pub der: &'static [u8],
}

const SNP: [SimulatedCert; 3] = [
    SimulatedCert { name: "Veil simulated ARK-Milan", der: include_bytes!("danger/sim_ark_milan.der") },
    SimulatedCert { name: "Veil simulated ASK-Milan", der: include_bytes!("danger/sim_ask_milan.der") },
    SimulatedCert { name: "Veil simulated ASVK-Milan", der: include_bytes!("danger/sim_asvk_milan.der") },
];

const INTEL_ROOTS: [SimulatedCert; 1] = [SimulatedCert {
    name: "Veil simulated Intel SGX Root CA",
    der: include_bytes!("danger/sim_intel_sgx_root_ca.der"),
}];

const INTEL_INTERMEDIATES: [SimulatedCert; 2] = [
    SimulatedCert {
        name: "Veil simulated Intel SGX PCK Platform CA",
        der: include_bytes!("danger/sim_intel_sgx_pck_platform_ca.der"),
    },
    SimulatedCert {
        name: "Veil simulated Intel SGX TCB Signing",
        der: include_bytes!("danger/sim_intel_sgx_tcb_signing.der"),
    },
];

/// The simulator's TPM attestation keys (DER SubjectPublicKeyInfo). A quote signed
/// by one of them is simulated whatever else is supplied with it.
const TPM_AKS: [SimulatedCert; 1] =
    [SimulatedCert { name: "Veil simulated TPM AK", der: include_bytes!("danger/sim_tpm_ak.spki.der") }];

/// Simulated TPM attestation keys, as DER SubjectPublicKeyInfo.
pub fn tpm_aks() -> &'static [SimulatedCert] {
    &TPM_AKS
}

/// Simulated AMD certificates (ARK, ASK, ASVK), each a self-contained anchor just
/// like the embedded AMD ones.
pub fn snp_certs() -> &'static [SimulatedCert] {
    &SNP
}

/// Simulated Intel SGX root CA.
pub fn intel_roots() -> &'static [SimulatedCert] {
    &INTEL_ROOTS
}

/// Simulated Intel certificates issued by the simulated root: the PCK Platform CA (it
/// issues the simulated PCK leaf and the PCK CRL) and the TCB Signing certificate (it
/// signs the simulated TCB info and QE identity).
pub fn intel_intermediates() -> &'static [SimulatedCert] {
    &INTEL_INTERMEDIATES
}

/// If `der` is byte-identical to a simulated certificate, its name.
pub fn simulated_cert_name(der: &[u8]) -> Option<&'static str> {
    snp_certs().iter().chain(intel_roots()).chain(intel_intermediates()).find(|c| c.der == der).map(|c| c.name)
}
