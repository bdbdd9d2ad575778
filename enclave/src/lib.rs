//! # veil-enclave
//!
//! The Veil runtime inside the confidential VM. This crate produces **evidence**:
//! the bytes a TEE or TPM emits about this VM, bound to 64 bytes of report data
//! chosen by the caller (the KBS report data, see PROTOCOLS.md §1). It also
//! writes runtime measurements (TDX RTMRs, TPM PCRs) that such evidence covers.
//!
//! ```text
//!   report_data (64 B) ──► Attester::evidence ──► Evidence ──► (KBS /attest, RA-TLS, ...)
//!                            ├─ tsm::TsmAttester   configfs-tsm: SEV-SNP report / TDX quote
//!                            └─ tpm::TpmAttester   TPM2_Quote by a restricted P-256 AK
//!   runtime events ──► rtmr::extend (TDX RTMR3) / TpmAttester::extend (PCR 23)
//! ```
//!
//! Nothing here verifies evidence for a relying party; that is `veil-attestation`.
//! The attesters check only what they themselves produce (a TPM quote's signature
//! against the AK they created, the configfs-tsm generation counter), so a broken
//! TPM stack or a racing writer is caught here rather than at the key broker.
//!
//! [`swtpm`] is test support: it starts a software TPM for tests in any crate.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
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

pub mod error;
pub mod kbs;
pub mod measure;
pub mod rtmr;
pub mod serve;
pub mod swtpm;
pub mod tpm;
pub mod tsm;

pub use error::{AttestError, Result};

/// Which TEE produced a piece of evidence: the same vocabulary the verifiers use.
pub type TeeKind = veil_attestation::Tee;

/// Evidence as produced by an attester: the raw bytes the hardware (or the
/// kernel on its behalf) emitted, never a re-encoding of parsed values, except
/// where noted in [`tpm::TpmQuote`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Evidence {
    /// A configfs-tsm report: an SEV-SNP ATTESTATION_REPORT (`provider` =
    /// `sev_guest`, `auxblob` = the host's certificate table if any) or a TDX quote
    /// (`provider` = `tdx_guest`).
    Tsm(tsm::TsmReport),
    /// A TPM quote and the attestation key that signed it.
    Tpm {
        /// The attestation key (its public key and TPM name).
        ak: tpm::AkInfo,
        /// The quote.
        quote: tpm::TpmQuote,
    },
}

impl Evidence {
    /// The TEE this evidence comes from, or `None` for a configfs-tsm provider
    /// Veil does not know.
    pub fn tee(&self) -> Option<TeeKind> {
        match self {
            Evidence::Tsm(r) => tsm::tee_for_provider(&r.provider),
            Evidence::Tpm { .. } => Some(TeeKind::Tpm),
        }
    }
}

/// Something that produces evidence bound to 64 bytes of report data.
///
/// Implementations are `Send + Sync`, so one attester can be shared by the
/// runtime's tasks (`Arc<dyn Attester>`); each serialises access to its device.
pub trait Attester: Send + Sync {
    /// Produce fresh evidence whose report data is exactly `report_data` (for a
    /// TPM, whose qualifying data is derived from it: see
    /// [`tpm::qualifying_data_for`]).
    fn evidence(&self, report_data: &[u8; 64]) -> Result<Evidence>;

    /// The TEE this attester speaks for. Fallible because a configfs-tsm attester
    /// learns it from the kernel (`provider`), which may be absent or unknown.
    fn tee(&self) -> Result<TeeKind>;
}
