//! The committed fixtures (`crates/veil-sim/fixtures/`), embedded at compile time.
//!
//! SIMULATED - NOT A SECRET, NOT A REAL ROOT: the private keys below are public test
//! fixtures. Nothing signed by them proves anything about hardware.

use std::sync::OnceLock;

use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, EcdsaSigningAlgorithm};

use crate::der;
use crate::error::{Error, Result};

macro_rules! fixture {
    ($path:literal) => {
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/", $path))
    };
}

/// DER of every simulated certificate, decoded once.
#[derive(Debug)]
pub(crate) struct Certs {
    pub ark: Vec<u8>,
    pub ask: Vec<u8>,
    pub asvk: Vec<u8>,
    pub vcek: Vec<u8>,
    pub vlek: Vec<u8>,
    pub intel_root: Vec<u8>,
    pub platform_ca: Vec<u8>,
    pub tcb_signing: Vec<u8>,
    pub pck: Vec<u8>,
    pub qe_report: Vec<u8>,
    pub qe_report_sig: Vec<u8>,
}

fn decode(name: &'static str, text: &str, label: &str) -> Result<Vec<u8>> {
    der::pem_decode(text.as_bytes(), label).ok_or(Error::Fixture(name))
}

fn load() -> Result<Certs> {
    let cert = |name, text| decode(name, text, "CERTIFICATE");
    Ok(Certs {
        ark: cert("snp/ark.pem", fixture!("snp/ark.pem"))?,
        ask: cert("snp/ask.pem", fixture!("snp/ask.pem"))?,
        asvk: cert("snp/asvk.pem", fixture!("snp/asvk.pem"))?,
        vcek: cert("snp/vcek.pem", fixture!("snp/vcek.pem"))?,
        vlek: cert("snp/vlek.pem", fixture!("snp/vlek.pem"))?,
        intel_root: cert("tdx/root.pem", fixture!("tdx/root.pem"))?,
        platform_ca: cert("tdx/pck_platform_ca.pem", fixture!("tdx/pck_platform_ca.pem"))?,
        tcb_signing: cert("tdx/tcb_signing.pem", fixture!("tdx/tcb_signing.pem"))?,
        pck: cert("tdx/pck.pem", fixture!("tdx/pck.pem"))?,
        qe_report: decode("tdx/qe_report.pem", fixture!("tdx/qe_report.pem"), "VEIL SIM QE REPORT")?,
        qe_report_sig: decode(
            "tdx/qe_report_sig.pem",
            fixture!("tdx/qe_report_sig.pem"),
            "VEIL SIM QE REPORT SIGNATURE",
        )?,
    })
}

/// The decoded fixture certificates (decoded on first use, then shared).
pub(crate) fn certs() -> Result<&'static Certs> {
    static CERTS: OnceLock<Result<Certs, &'static str>> = OnceLock::new();
    CERTS
        .get_or_init(|| {
            load().map_err(|e| match e {
                Error::Fixture(name) => name,
                _ => "certificates",
            })
        })
        .as_ref()
        .map_err(|name| Error::Fixture(name))
}

/// The DER of one fixture certificate, or an empty slice if the fixtures are damaged
/// (which the crate's tests rule out).
pub(crate) fn cert_or_empty(pick: fn(&'static Certs) -> &'static [u8]) -> &'static [u8] {
    certs().map(pick).unwrap_or(&[])
}

/// Which fixture key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Key {
    Vcek,
    Vlek,
    IntelRoot,
    PlatformCa,
    TcbSigning,
    QeAk,
    TpmAk,
}

impl Key {
    fn source(self) -> (&'static str, &'static str) {
        match self {
            Key::Vcek => ("snp/vcek.key.pem", fixture!("snp/vcek.key.pem")),
            Key::Vlek => ("snp/vlek.key.pem", fixture!("snp/vlek.key.pem")),
            Key::IntelRoot => ("tdx/root.key.pem", fixture!("tdx/root.key.pem")),
            Key::PlatformCa => ("tdx/pck_platform_ca.key.pem", fixture!("tdx/pck_platform_ca.key.pem")),
            Key::TcbSigning => ("tdx/tcb_signing.key.pem", fixture!("tdx/tcb_signing.key.pem")),
            Key::QeAk => ("tdx/attestation_key.key.pem", fixture!("tdx/attestation_key.key.pem")),
            Key::TpmAk => ("tpm/ak.key.pem", fixture!("tpm/ak.key.pem")),
        }
    }

    /// The key pair for `alg` (the curve must match the fixture).
    pub(crate) fn load(self, alg: &'static EcdsaSigningAlgorithm) -> Result<EcdsaKeyPair> {
        let (name, text) = self.source();
        let pkcs8 = decode(name, text, "PRIVATE KEY")?;
        EcdsaKeyPair::from_pkcs8(alg, &pkcs8, &SystemRandom::new()).map_err(|_| Error::Fixture(name))
    }
}

/// Sign `msg` with a fixture key; `alg` picks curve, hash and signature encoding.
pub(crate) fn sign(key: Key, alg: &'static EcdsaSigningAlgorithm, what: &'static str, msg: &[u8]) -> Result<Vec<u8>> {
    let pair = key.load(alg)?;
    pair.sign(&SystemRandom::new(), msg).map(|s| s.as_ref().to_vec()).map_err(|_| Error::Signing(what))
}

/// The uncompressed public point (0x04 ‖ x ‖ y) of a P-256 fixture key.
pub(crate) fn p256_public(key: Key) -> Result<Vec<u8>> {
    use ring::signature::KeyPair as _;
    Ok(key.load(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)?.public_key().as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{names, params};

    /// Names rebuilt at run time (CRL issuers) equal the generated certificates' subjects.
    #[test]
    fn run_time_names_match_fixture_subjects() {
        use x509_parser::prelude::*;
        let c = certs().expect("fixtures decode");
        let subject = |der: &[u8]| X509Certificate::from_der(der).expect("cert").1.subject().as_raw().to_vec();
        assert_eq!(subject(&c.ark), names::amd_name(params::snp::ARK_CN));
        assert_eq!(subject(&c.vcek), names::amd_name(params::snp::VCEK_CN));
        assert_eq!(subject(&c.intel_root), names::intel_name(params::tdx::ROOT_CN));
        assert_eq!(subject(&c.platform_ca), names::intel_name(params::tdx::PLATFORM_CA_CN));
        for key in [Key::Vcek, Key::Vlek, Key::TpmAk] {
            let alg = match key {
                Key::TpmAk => &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                _ => &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            };
            key.load(alg).expect("key loads");
        }
        for key in [Key::IntelRoot, Key::PlatformCa, Key::TcbSigning, Key::QeAk] {
            key.load(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).expect("key loads");
        }
    }
}
