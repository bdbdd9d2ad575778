//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The shared real test vectors (`VEIL_VECTORS`, or `../shared/vectors` beside the
/// repository, where CI puts them). Missing vectors fail the test: never a silent skip.
pub fn vectors() -> Option<PathBuf> {
    let dir = std::env::var_os("VEIL_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/vectors")));
    assert!(dir.join("INDEX.md").exists(), "real vectors not found at {} (set VEIL_VECTORS)", dir.display());
    Some(dir)
}

/// Every PEM certificate in `pem`, as DER.
pub fn pem_certs(pem: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine as _;
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let after = &rest[start + 27..];
        let Some(end) = after.find("-----END CERTIFICATE-----") else {
            break;
        };
        let b64: String = after[..end].chars().filter(|c| !c.is_whitespace()).collect();
        out.push(base64::engine::general_purpose::STANDARD.decode(b64).expect("base64"));
        rest = &after[end..];
    }
    out
}

/// Verify `child` was signed by `issuer` (x509-parser to parse, ring to verify).
pub fn verify_issued_by(child: &[u8], issuer: &[u8]) -> anyhow::Result<()> {
    use x509_parser::prelude::*;
    let (_, c) = X509Certificate::from_der(child)?;
    let (_, i) = X509Certificate::from_der(issuer)?;
    anyhow::ensure!(c.issuer().as_raw() == i.subject().as_raw(), "issuer name mismatch");
    let alg_oid = c.signature_algorithm.algorithm.to_id_string();
    let key = i.public_key().subject_public_key.data.as_ref();
    let alg: &dyn ring::signature::VerificationAlgorithm = match alg_oid.as_str() {
        "1.2.840.113549.1.1.10" => &ring::signature::RSA_PSS_2048_8192_SHA384,
        "1.2.840.10045.4.3.2" => &ring::signature::ECDSA_P256_SHA256_ASN1,
        other => anyhow::bail!("unexpected signature algorithm {other}"),
    };
    ring::signature::UnparsedPublicKey::new(alg, key)
        .verify(c.tbs_certificate.as_ref(), c.signature_value.data.as_ref())
        .map_err(|_| anyhow::anyhow!("signature does not verify"))
}
