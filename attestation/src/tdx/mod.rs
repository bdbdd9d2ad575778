//! Intel TDX quotes (v4, v5), PCK chains to the Intel SGX root, and collateral.

use serde::Serialize;

/// Claims of a verified TD quote.
#[derive(Debug, Clone, Serialize)]
pub struct TdxClaims {
    /// Quote version.
    pub version: u16,
}
