//! TPM evidence as it travels in the protocol.
//!
//! Two placements share one JSON shape, the one Trustee's `tpm` attester sends
//! (T `deps/verifier/src/tpm/mod.rs`, `Evidence`):
//!
//! ```json
//! {"ak_public": "<base64 DER SubjectPublicKeyInfo>",
//!  "tpm_quote": {"signature": "<base64 TPMT_SIGNATURE>", "message": "<base64 TPMS_ATTEST>",
//!                "pcrs": ["<hex>", ...]}}
//! ```
//!
//! - TEE type `tpm` (a TPM on its own): this object is the `primary_evidence`, and
//!   the quote's qualifying data is the runtime-data hash cut to 32 bytes
//!   ([`tpm_primary_nonce`]), as Trustee's verifier pads or truncates it.
//! - Veil's composition (a CPU TEE with a TPM): this object is the value of key `"tpm"`
//!   in the `additional_evidence` JSON string, so the CPU report data binds it, and the
//!   quote's qualifying data is [`crate::tpm_qualifying_data`].
//!
//! `pcrs` lists the values of the quoted SHA-256 PCRs in ascending index order (all 24
//! when the quote selects all 24, which is what Trustee's attester does).

use serde::{Deserialize, Serialize};

/// The key of TPM evidence in the `additional_evidence` object.
pub const ADDITIONAL_TPM: &str = "tpm";

/// The key of Veil's runtime event log (JSON lines,
/// `veil_attestation::runtime_log`) in the `additional_evidence` object.
pub const ADDITIONAL_EVENT_LOG: &str = "event-log";

/// Trustee's TPM evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmEvidence {
    /// The attestation key: base64 (standard, padded) of its DER SubjectPublicKeyInfo.
    pub ak_public: String,
    /// The quote.
    pub tpm_quote: TpmQuote,
}

/// A quote with its PCR values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmQuote {
    /// Base64 of the marshalled `TPMT_SIGNATURE`.
    pub signature: String,
    /// Base64 of the marshalled `TPMS_ATTEST`: the bytes the signature covers.
    pub message: String,
    /// Hex values of the quoted SHA-256 PCRs, ascending by index.
    pub pcrs: Vec<String>,
}

/// The qualifying data of a TPM quote sent as `primary_evidence` of TEE type `tpm`:
/// the first 32 bytes of the 64-byte report data (the SHA-384 runtime-data hash, cut
/// to 32 bytes as Trustee's TPM attester and verifier do).
pub fn tpm_primary_nonce(report_data: &[u8; 64]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.iter_mut().zip(report_data.iter()).for_each(|(o, i)| *o = *i);
    out
}
