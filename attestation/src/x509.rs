//! X.509 helpers shared by the verifiers: parsing (x509-parser), signature checks
//! (ring) and validity windows at an injected time.
//!
//! Chains in attestation are short and fixed-shape (AMD ARK → ASK → VCEK, Intel
//! root → platform CA → PCK, TPM EK root → intermediate → AK), and their
//! certificates break general-purpose path builders (serial 0, RSA-PSS with
//! explicit default parameters, empty subjects), so each verifier walks its own
//! chain with these primitives instead of using a WebPKI path builder.

use crate::crypto::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use crate::error::{Error, Result};

/// OIDs used across the verifiers.
pub mod oid {
    /// ecdsa-with-SHA256
    pub const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
    /// ecdsa-with-SHA384
    pub const ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
    /// sha256WithRSAEncryption
    pub const RSA_SHA256: &str = "1.2.840.113549.1.1.11";
    /// sha384WithRSAEncryption
    pub const RSA_SHA384: &str = "1.2.840.113549.1.1.12";
    /// sha512WithRSAEncryption
    pub const RSA_SHA512: &str = "1.2.840.113549.1.1.13";
    /// RSASSA-PSS
    pub const RSA_PSS: &str = "1.2.840.113549.1.1.10";
    /// id-sha256
    pub const SHA256: &str = "2.16.840.1.101.3.4.2.1";
    /// id-sha384
    pub const SHA384: &str = "2.16.840.1.101.3.4.2.2";
    /// id-sha512
    pub const SHA512: &str = "2.16.840.1.101.3.4.2.3";
    /// id-ecPublicKey
    pub const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
    /// prime256v1
    pub const P256: &str = "1.2.840.10045.3.1.7";
    /// secp384r1
    pub const P384: &str = "1.3.132.0.34";
    /// rsaEncryption
    pub const RSA: &str = "1.2.840.113549.1.1.1";
}

/// Parse one DER certificate, requiring that nothing follows it.
pub fn parse_der<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok((rest, _)) => Err(Error::chain(format!("{what}: {} bytes after the certificate", rest.len()))),
        Err(e) => Err(Error::chain(format!("{what}: not a DER X.509 certificate: {e}"))),
    }
}

/// Split a file holding one DER certificate or any number of PEM certificates into
/// DER blobs. Non-certificate PEM blocks are an error.
pub fn certs_from_pem_or_der(bytes: &[u8], what: &str) -> Result<Vec<Vec<u8>>> {
    let trimmed = trim_ascii_start(bytes);
    if trimmed.starts_with(b"-----BEGIN") {
        let mut out = Vec::new();
        for pem in x509_parser::pem::Pem::iter_from_buffer(bytes) {
            let pem = pem.map_err(|e| Error::chain(format!("{what}: bad PEM: {e}")))?;
            if pem.label != "CERTIFICATE" {
                return Err(Error::chain(format!("{what}: unexpected PEM block {:?}", pem.label)));
            }
            out.push(pem.contents);
        }
        if out.is_empty() {
            return Err(Error::chain(format!("{what}: no certificate in PEM")));
        }
        Ok(out)
    } else {
        Ok(vec![bytes.to_vec()])
    }
}

fn trim_ascii_start(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    b.get(n..).unwrap_or(&[])
}

/// Check that `cert` is valid at `at`.
pub fn check_validity(cert: &X509Certificate<'_>, at: OffsetDateTime, what: &str) -> Result<()> {
    let nb = cert.validity().not_before.timestamp();
    let na = cert.validity().not_after.timestamp();
    let t = at.unix_timestamp();
    if t < nb || t > na {
        return Err(Error::Expired {
            what: what.to_string(),
            not_before: rfc3339(nb),
            not_after: rfc3339(na),
            at: rfc3339(t),
        });
    }
    Ok(())
}

/// Format a unix timestamp as RFC 3339 (for messages).
pub fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("@{unix}"))
}

/// Verify that `child` carries a valid signature by the key in `issuer_spki`.
/// The signature is checked over the DER `tbsCertificate` bytes as received.
pub fn verify_cert_signature(
    child: &X509Certificate<'_>,
    issuer_spki: &SubjectPublicKeyInfo<'_>,
    what: &str,
) -> Result<()> {
    // The outer signatureAlgorithm and signature BIT STRING are not covered by the
    // signature: pin them so a certificate has one encoding (RFC 5280 4.1.1.2).
    if child.signature_algorithm != child.tbs_certificate.signature {
        return Err(Error::chain(format!(
            "{what}: signatureAlgorithm differs from the signed tbsCertificate.signature"
        )));
    }
    if child.signature_value.unused_bits != 0 {
        return Err(Error::chain(format!("{what}: signature BIT STRING has unused bits")));
    }
    let alg = verification_algorithm(&child.signature_algorithm, issuer_spki)
        .map_err(|e| Error::chain(format!("{what}: {e}")))?;
    let tbs = child.tbs_certificate.as_ref();
    let sig = child.signature_value.data.as_ref();
    let key = spki_key_bytes(issuer_spki);
    UnparsedPublicKey::new(alg, key)
        .verify(tbs, sig)
        .map_err(|_| Error::chain(format!("{what}: certificate signature does not verify under its issuer's key")))
}

/// Verify `sig` over `msg` (as for a CRL or a collateral document) with the signature
/// algorithm `alg_id` and the key in `spki`.
pub fn verify_signature_with_alg(
    alg_id: &AlgorithmIdentifier<'_>,
    spki: &SubjectPublicKeyInfo<'_>,
    msg: &[u8],
    sig: &[u8],
) -> std::result::Result<(), String> {
    let alg = verification_algorithm(alg_id, spki)?;
    UnparsedPublicKey::new(alg, spki_key_bytes(spki))
        .verify(msg, sig)
        .map_err(|_| "signature does not verify".to_string())
}

/// The bytes ring expects for a public key: the SEC1 point for EC keys, the
/// PKCS#1 `RSAPublicKey` for RSA keys — in both cases the SPKI's BIT STRING.
pub fn spki_key_bytes<'a>(spki: &'a SubjectPublicKeyInfo<'_>) -> &'a [u8] {
    spki.subject_public_key.data.as_ref()
}

/// Map an X.509 signature algorithm (and the issuer key's curve) to ring's verifier.
fn verification_algorithm(
    alg: &AlgorithmIdentifier<'_>,
    issuer_spki: &SubjectPublicKeyInfo<'_>,
) -> std::result::Result<&'static dyn VerificationAlgorithm, String> {
    let oid = alg.algorithm.to_id_string();
    let key_oid = issuer_spki.algorithm.algorithm.to_id_string();
    let curve = issuer_spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
    let ec = |hash: &str| -> std::result::Result<&'static dyn VerificationAlgorithm, String> {
        if key_oid != oid::EC_PUBLIC_KEY {
            return Err(format!("ECDSA signature but issuer key is {key_oid}"));
        }
        match (curve.as_deref(), hash) {
            (Some(oid::P256), "256") => Ok(&signature::ECDSA_P256_SHA256_ASN1),
            (Some(oid::P256), "384") => Ok(&signature::ECDSA_P256_SHA384_ASN1),
            (Some(oid::P384), "256") => Ok(&signature::ECDSA_P384_SHA256_ASN1),
            (Some(oid::P384), "384") => Ok(&signature::ECDSA_P384_SHA384_ASN1),
            (c, h) => Err(format!("unsupported ECDSA curve {c:?} with SHA-{h}")),
        }
    };
    let rsa = || -> std::result::Result<(), String> {
        if key_oid != oid::RSA { Err(format!("RSA signature but issuer key is {key_oid}")) } else { Ok(()) }
    };
    match oid.as_str() {
        oid::ECDSA_SHA256 => ec("256"),
        oid::ECDSA_SHA384 => ec("384"),
        oid::RSA_SHA256 => rsa().map(|_| &signature::RSA_PKCS1_2048_8192_SHA256 as _),
        oid::RSA_SHA384 => rsa().map(|_| &signature::RSA_PKCS1_2048_8192_SHA384 as _),
        oid::RSA_SHA512 => rsa().map(|_| &signature::RSA_PKCS1_2048_8192_SHA512 as _),
        oid::RSA_PSS => {
            rsa()?;
            match pss_hash(alg)? {
                h if h == oid::SHA256 => Ok(&signature::RSA_PSS_2048_8192_SHA256),
                h if h == oid::SHA384 => Ok(&signature::RSA_PSS_2048_8192_SHA384),
                h if h == oid::SHA512 => Ok(&signature::RSA_PSS_2048_8192_SHA512),
                h => Err(format!("unsupported RSA-PSS hash {h}")),
            }
        }
        other => Err(format!("unsupported signature algorithm {other}")),
    }
}

/// The hash OID of RSASSA-PSS parameters (RFC 4055), parsed by x509-parser. ring
/// fixes the salt length to the hash length and MGF1 to the same hash, which is what
/// AMD uses; the parameters are checked to say so rather than assumed.
fn pss_hash(alg: &AlgorithmIdentifier<'_>) -> std::result::Result<String, String> {
    use x509_parser::signature_algorithm::SignatureAlgorithm;
    let Ok(SignatureAlgorithm::RSASSA_PSS(params)) = SignatureAlgorithm::try_from(alg) else {
        return Err("malformed RSA-PSS parameters".into());
    };
    let hash = params.hash_algorithm_oid().to_id_string();
    let mgf = params.mask_gen_algorithm().map_err(|e| format!("RSA-PSS MGF: {e}"))?;
    if mgf.mgf.to_id_string() != "1.2.840.113549.1.1.8" {
        return Err(format!("RSA-PSS mask generation {} is not MGF1", mgf.mgf.to_id_string()));
    }
    if mgf.hash.to_id_string() != hash {
        return Err(format!("RSA-PSS MGF1 hash {} differs from the message hash {hash}", mgf.hash.to_id_string()));
    }
    let want_salt = match hash.as_str() {
        oid::SHA256 => 32,
        oid::SHA384 => 48,
        oid::SHA512 => 64,
        _ => return Err(format!("unsupported RSA-PSS hash {hash}")),
    };
    if params.salt_length() != want_salt {
        return Err(format!("RSA-PSS salt length {}, expected {want_salt}", params.salt_length()));
    }
    if params.trailer_field() != 1 {
        return Err(format!("RSA-PSS trailerField must be 1, found {}", params.trailer_field()));
    }
    Ok(hash)
}

/// SHA-256 of a byte string, as lower-case hex (for cache keys and messages).
pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}
