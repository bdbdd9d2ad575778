//! The AK certificate chain: AK certificate → intermediate(s) → the relying
//! party's configured root, and the binding of the AK certificate's key to the AK.
//!
//! Walked by hand with the helpers in [`crate::x509`] (see there why no WebPKI path
//! builder): the GCE AK certificate has an empty subject and a critical
//! subjectAltName, which x509-parser reads without complaint.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;

use super::ak::AkPublic;
use crate::error::{Error, Result};
use crate::verify::Options;
use crate::x509::{certs_from_pem_or_der, check_validity, parse_der, verify_cert_signature};

/// The AK certificate and the certificates that lead from it to a trusted root.
/// Each entry is one DER certificate or PEM (an intermediate entry may hold several
/// PEM certificates).
#[derive(Debug, Clone)]
pub struct AkCertChain<'a> {
    /// The AK certificate (DER or PEM, exactly one).
    pub ak_cert: &'a [u8],
    /// Candidate intermediates, in any order; unused ones are ignored.
    pub intermediates: Vec<&'a [u8]>,
    /// The relying party's configured trust anchor (DER or PEM, exactly one).
    pub root: &'a [u8],
}

/// What a verified chain says.
#[derive(Debug, Clone)]
pub(crate) struct ChainOutcome {
    /// The root is one of the Veil simulator's fixtures.
    pub simulated: bool,
    /// SHA-256 of the AK certificate's DER, hex.
    pub ak_cert_sha256: String,
}

/// Most certificates between the AK certificate and the root.
const MAX_DEPTH: usize = 8;

fn one_cert(bytes: &[u8], what: &str) -> Result<Vec<u8>> {
    let mut certs = certs_from_pem_or_der(bytes, what)?;
    match (certs.pop(), certs.is_empty()) {
        (Some(c), true) => Ok(c),
        _ => Err(Error::chain(format!("{what}: expected exactly one certificate"))),
    }
}

/// Verify `chain` at `opts.at` and that its leaf certifies `ak`.
pub(crate) fn verify_ak_chain(chain: &AkCertChain<'_>, ak: &AkPublic, opts: &Options) -> Result<ChainOutcome> {
    let leaf_der = one_cert(chain.ak_cert, "AK certificate")?;
    let root_der = one_cert(chain.root, "AK root certificate")?;
    let mut inter_ders = Vec::new();
    for i in &chain.intermediates {
        inter_ders.extend(certs_from_pem_or_der(i, "AK intermediate certificate")?);
    }

    let simulated = match crate::danger::simulated_cert_name(&root_der) {
        Some(name) if !opts.trusts_simulator() => return Err(Error::SimulatedRoot { root: name.to_string() }),
        Some(_) => true,
        None => false,
    };

    let leaf = parse_der(&leaf_der, "AK certificate")?;
    let root = parse_der(&root_der, "AK root certificate")?;
    let inters = inter_ders.iter().map(|d| parse_der(d, "AK intermediate certificate")).collect::<Result<Vec<_>>>()?;

    check_validity(&leaf, opts.at, "AK certificate")?;
    check_extensions(&leaf, "AK certificate")?;
    match leaf.key_usage() {
        Ok(Some(ku)) if !ku.value.digital_signature() => {
            return Err(Error::chain("AK certificate: keyUsage lacks digitalSignature"));
        }
        Ok(_) => {}
        Err(e) => return Err(Error::chain(format!("AK certificate: malformed keyUsage: {e}"))),
    }

    // Walk up from the leaf: at each step the root if it issued the current
    // certificate, else an unused intermediate whose subject is the issuer and
    // whose key verifies the signature.
    let mut used = vec![false; inters.len()];
    let mut current: &X509Certificate<'_> = &leaf;
    let mut cas_below: u32 = 0;
    for _ in 0..=MAX_DEPTH {
        let issuer = current.issuer().as_raw();
        if issuer == root.subject().as_raw() {
            check_validity(&root, opts.at, "AK root certificate")?;
            check_ca(&root, cas_below, "AK root certificate")?;
            verify_cert_signature(current, root.public_key(), "AK chain (signed by the root)")?;
            let cert_key = AkPublic::from_spki(leaf.public_key())
                .map_err(|e| Error::chain(format!("AK certificate: public key: {e}")))?;
            if cert_key.spki_der() != ak.spki_der() {
                return Err(Error::Binding(format!(
                    "the AK certificate certifies key {} (SPKI SHA-256), not the AK {}",
                    hex::encode(cert_key.spki_sha256()),
                    hex::encode(ak.spki_sha256())
                )));
            }
            return Ok(ChainOutcome { simulated, ak_cert_sha256: crate::x509::sha256_hex(&leaf_der) });
        }
        let mut next = None;
        let mut name_matched = false;
        for (i, cand) in inters.iter().enumerate() {
            if used.get(i).copied().unwrap_or(true) || cand.subject().as_raw() != issuer {
                continue;
            }
            name_matched = true;
            if verify_cert_signature(current, cand.public_key(), "AK chain").is_ok() {
                next = Some(i);
                break;
            }
        }
        let Some(i) = next else {
            return Err(Error::chain(if name_matched {
                format!("no certificate named {} verifies the signature of {}", current.issuer(), describe(current))
            } else {
                format!(
                    "{} is issued by {}, which is neither the configured root ({}) nor a supplied intermediate",
                    describe(current),
                    current.issuer(),
                    root.subject()
                )
            }));
        };
        if let Some(u) = used.get_mut(i) {
            *u = true;
        }
        let Some(cand) = inters.get(i) else { break };
        check_validity(cand, opts.at, "AK intermediate certificate")?;
        check_ca(cand, cas_below, "AK intermediate certificate")?;
        cas_below = cas_below.saturating_add(1);
        current = cand;
    }
    Err(Error::chain(format!("AK chain longer than {MAX_DEPTH} certificates or not ending at the configured root")))
}

fn describe(c: &X509Certificate<'_>) -> String {
    let s = c.subject().to_string();
    if s.is_empty() {
        format!("the certificate with serial {} (empty subject)", c.raw_serial_as_string())
    } else {
        format!("{s:?}")
    }
}

/// Refuse critical extensions that are not understood (RFC 5280 §4.2).
fn check_extensions(c: &X509Certificate<'_>, what: &str) -> Result<()> {
    for ext in c.extensions() {
        if !ext.critical {
            continue;
        }
        match ext.parsed_extension() {
            ParsedExtension::UnsupportedExtension { .. } => {
                return Err(Error::chain(format!("{what}: unknown critical extension {}", ext.oid.to_id_string())));
            }
            ParsedExtension::ParseError { error } => {
                return Err(Error::chain(format!(
                    "{what}: malformed critical extension {}: {error}",
                    ext.oid.to_id_string()
                )));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A certificate that signs others must be a CA (basicConstraints cA = TRUE), may
/// sign certificates (keyUsage keyCertSign, when present), and allow `cas_below`
/// CA certificates beneath it (pathLenConstraint).
fn check_ca(c: &X509Certificate<'_>, cas_below: u32, what: &str) -> Result<()> {
    check_extensions(c, what)?;
    match c.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => {
            if let Some(max) = bc.value.path_len_constraint {
                if cas_below > max {
                    return Err(Error::chain(format!(
                        "{what}: pathLenConstraint {max} exceeded ({cas_below} CAs below)"
                    )));
                }
            }
        }
        Ok(_) => return Err(Error::chain(format!("{what}: not a CA (basicConstraints cA is not TRUE)"))),
        Err(e) => return Err(Error::chain(format!("{what}: malformed basicConstraints: {e}"))),
    }
    match c.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => Err(Error::chain(format!("{what}: keyUsage lacks keyCertSign"))),
        Ok(_) => Ok(()),
        Err(e) => Err(Error::chain(format!("{what}: malformed keyUsage: {e}"))),
    }
}
