//! Distinguished names of the simulated certificates, built the same way by the fixture
//! generator and at run time (CRL issuers must match certificate subjects byte for byte).
//! Also compiled into `examples/generate_fixtures.rs` via `#[path]`.

use crate::der::{self, Str, oids};
use crate::params;

/// An AMD-shaped name: OU=Engineering, C=US, L=Santa Clara, ST=CA, O=…, CN=`cn`
/// (the attribute order and string types of AMD's KDS certificates).
pub fn amd_name(cn: &str) -> Vec<u8> {
    der::name(&[
        (oids::OU, Str::Utf8, "Engineering"),
        (oids::C, Str::Printable, "US"),
        (oids::L, Str::Utf8, "Santa Clara"),
        (oids::ST, Str::Utf8, "CA"),
        (oids::O, Str::Utf8, params::snp::ORG),
        (oids::CN, Str::Utf8, cn),
    ])
}

/// An Intel-shaped name: CN=`cn`, O=…, L=Santa Clara, ST=CA, C=US.
pub fn intel_name(cn: &str) -> Vec<u8> {
    der::name(&[
        (oids::CN, Str::Utf8, cn),
        (oids::O, Str::Utf8, params::tdx::ORG),
        (oids::L, Str::Utf8, "Santa Clara"),
        (oids::ST, Str::Utf8, "CA"),
        (oids::C, Str::Printable, "US"),
    ])
}

/// Subject key identifier, RFC 5280 method 1: SHA-1 of the subjectPublicKey bits.
pub fn key_id(public_key_bits: &[u8]) -> [u8; 20] {
    use sha1::Digest as _;
    sha1::Sha1::digest(public_key_bits).into()
}
