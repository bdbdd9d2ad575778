//! TPM 2.0 quotes: TPMS_ATTEST, TPMT_SIGNATURE, PCR digests.

use serde::Serialize;

/// Claims of a verified TPM quote.
#[derive(Debug, Clone, Serialize)]
pub struct TpmClaims {
    /// Qualifying data (nonce), hex.
    pub qualifying_data: String,
}
