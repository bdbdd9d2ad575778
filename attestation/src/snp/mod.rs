//! AMD SEV-SNP attestation reports (versions 2, 3 and 5), VCEK/VLEK chains to the
//! embedded AMD roots.

use serde::Serialize;

/// Claims of a verified SNP report.
#[derive(Debug, Clone, Serialize)]
pub struct SnpClaims {
    /// Report version.
    pub version: u32,
}
