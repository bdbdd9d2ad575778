//! DCAP collateral in dcap-qvl's `QuoteCollateralV3` JSON form, and its
//! verification into a [`VerifiedCollateral`] that the verifier caches.
//!
//! ```text
//! { "pck_crl_issuer_chain":  PEM (PCK CA, root),
//!   "root_ca_crl":           hex DER CRL signed by the root,
//!   "pck_crl":               hex DER CRL signed by the PCK CA,
//!   "tcb_info_issuer_chain": PEM (TCB signing, root),
//!   "tcb_info":              the `tcbInfo` JSON value, byte for byte as Intel signed it,
//!   "tcb_info_signature":    hex r‖s (ECDSA P-256 / SHA-256 over tcb_info's bytes),
//!   "qe_identity_issuer_chain", "qe_identity", "qe_identity_signature": the same for
//!                            the `enclaveIdentity` value,
//!   "pck_certificate_chain": optional, ignored (the quote carries its chain) }
//! ```
//!
//! The `tcb_info` / `qe_identity` strings are exactly the bytes of the JSON values as
//! they appear in Intel's PCS response bodies (dcap-qvl cuts them out of the body
//! string, never re-serialises them), so the signatures are checked over the
//! strings' UTF-8 bytes as received, and only then parsed.

use std::collections::HashSet;
use std::fmt;

use crate::crypto::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use super::pck::{chain_ders, check_ca, check_issued_by, p256_point, serial_key, validity_window};
use super::tcb::{self, QeIdentity, TcbInfo};
use super::{Anchor, Window};
use crate::error::{Error, Result};
use crate::x509;

/// DCAP collateral for one platform (FMSPC): TCB info, QE identity, CRLs and the
/// issuer chains, as dcap-qvl's `QuoteCollateralV3` JSON. Nothing here is trusted
/// until [`super::TdxVerifier`] verifies it against the root.
#[derive(Clone)]
pub struct Collateral {
    pub(crate) pck_crl_issuer_chain: String,
    pub(crate) root_ca_crl: Vec<u8>,
    pub(crate) pck_crl: Vec<u8>,
    pub(crate) tcb_info_issuer_chain: String,
    pub(crate) tcb_info: String,
    pub(crate) tcb_info_signature: Vec<u8>,
    pub(crate) qe_identity_issuer_chain: String,
    pub(crate) qe_identity: String,
    pub(crate) qe_identity_signature: Vec<u8>,
    /// SHA-256 over every field (length-prefixed): the cache key.
    pub(crate) digest: [u8; 32],
}

impl fmt::Debug for Collateral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collateral").field("sha256", &hex::encode(self.digest)).finish_non_exhaustive()
    }
}

/// The wire form of dcap-qvl's `QuoteCollateralV3` JSON (byte fields as hex), field
/// for field. Parsing it checks the shape only; [`Collateral::from_json`] is the
/// entry point. Public so that the simulator writes exactly what the verifier reads.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct CollateralJson {
    pub pck_crl_issuer_chain: String,
    pub root_ca_crl: String,
    pub pck_crl: String,
    pub tcb_info_issuer_chain: String,
    pub tcb_info: String,
    pub tcb_info_signature: String,
    pub qe_identity_issuer_chain: String,
    pub qe_identity: String,
    pub qe_identity_signature: String,
}

fn unhex(s: &str, field: &str) -> Result<Vec<u8>> {
    hex::decode(s).map_err(|e| Error::Collateral(format!("{field}: not hex: {e}")))
}

impl Collateral {
    /// Parse dcap-qvl `QuoteCollateralV3` JSON (CRLs and signatures as hex strings).
    /// This checks the shape only; the content is verified by the verifier.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        let w: CollateralJson =
            serde_json::from_slice(bytes).map_err(|e| Error::Collateral(format!("not QuoteCollateralV3 JSON: {e}")))?;
        let mut c = Collateral {
            root_ca_crl: unhex(&w.root_ca_crl, "root_ca_crl")?,
            pck_crl: unhex(&w.pck_crl, "pck_crl")?,
            tcb_info_signature: unhex(&w.tcb_info_signature, "tcb_info_signature")?,
            qe_identity_signature: unhex(&w.qe_identity_signature, "qe_identity_signature")?,
            pck_crl_issuer_chain: w.pck_crl_issuer_chain,
            tcb_info_issuer_chain: w.tcb_info_issuer_chain,
            tcb_info: w.tcb_info,
            qe_identity_issuer_chain: w.qe_identity_issuer_chain,
            qe_identity: w.qe_identity,
            digest: [0; 32],
        };
        c.digest = c.compute_digest();
        Ok(c)
    }

    /// SHA-256 identifying this collateral (hex), for logs.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.digest)
    }

    fn compute_digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        let fields: [&[u8]; 9] = [
            self.pck_crl_issuer_chain.as_bytes(),
            &self.root_ca_crl,
            &self.pck_crl,
            self.tcb_info_issuer_chain.as_bytes(),
            self.tcb_info.as_bytes(),
            &self.tcb_info_signature,
            self.qe_identity_issuer_chain.as_bytes(),
            self.qe_identity.as_bytes(),
            &self.qe_identity_signature,
        ];
        for f in fields {
            h.update(u64::try_from(f.len()).unwrap_or(u64::MAX).to_le_bytes());
            h.update(f);
        }
        h.finalize().into()
    }
}

/// Collateral whose signatures, chains and revocation status verified against one
/// root. Time windows are kept, not judged: they are checked at every verification.
#[derive(Debug)]
pub(crate) struct VerifiedCollateral {
    pub tcb_info: TcbInfo,
    pub qe_identity: QeIdentity,
    pub windows: Vec<Window>,
    /// Serials revoked by the root CA CRL (leading zeros stripped).
    pub root_crl_revoked: HashSet<Vec<u8>>,
    /// Serials revoked by the PCK CRL.
    pub pck_crl_revoked: HashSet<Vec<u8>>,
    /// The PCK CRL issuer (subject DN, SPKI DER): the PCK leaf's CA must be it.
    pub pck_crl_issuer_subject: Vec<u8>,
    pub pck_crl_issuer_spki: Vec<u8>,
}

/// Parse one DER CRL.
pub(crate) fn parse_crl<'a>(der: &'a [u8], what: &str) -> Result<CertificateRevocationList<'a>> {
    match CertificateRevocationList::from_der(der) {
        Ok(([], crl)) => Ok(crl),
        Ok((rest, _)) => Err(Error::Collateral(format!("{what}: {} bytes after the CRL", rest.len()))),
        Err(e) => Err(Error::Collateral(format!("{what}: not a DER CRL: {e}"))),
    }
}

fn crl_window(crl: &CertificateRevocationList<'_>, what: &'static str) -> Result<Window> {
    let next = crl.next_update().ok_or_else(|| Error::Collateral(format!("{what}: no nextUpdate")))?;
    Ok(Window { what, not_before: crl.last_update().timestamp(), not_after: next.timestamp() })
}

fn check_crl(
    crl: &CertificateRevocationList<'_>,
    issuer: &X509Certificate<'_>,
    what: &'static str,
    sig_what: &'static str,
) -> Result<HashSet<Vec<u8>>> {
    if crl.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(Error::Collateral(format!("{what}: issued by {}, expected {}", crl.issuer(), issuer.subject())));
    }
    x509::verify_signature_with_alg(
        &crl.signature_algorithm,
        issuer.public_key(),
        crl.tbs_cert_list.as_ref(),
        &crl.signature_value.data,
    )
    .map_err(|_| Error::Signature { what: sig_what })?;
    Ok(crl.iter_revoked_certificates().map(|r| serial_key(r.raw_serial())).collect())
}

/// The signing certificate of an issuer chain (signer, optionally followed by the
/// root, which must then be the anchor itself), checked against the anchor.
fn signer_der(pem: &str, anchor: &Anchor, what: &str) -> Result<Vec<u8>> {
    let ders = chain_ders(pem.as_bytes(), what)?;
    let mut it = ders.into_iter();
    let (Some(signer), rest) = (it.next(), it.collect::<Vec<_>>()) else {
        return Err(Error::chain(format!("{what}: empty")));
    };
    match rest.as_slice() {
        [] => Ok(signer),
        [root] if root.as_slice() == anchor.der => Ok(signer),
        [root] => Err(Error::chain(format!(
            "{what}: ends in a root (SHA-256 {}) that is not the trusted {}",
            x509::sha256_hex(root),
            anchor.name
        ))),
        more => Err(Error::chain(format!(
            "{what}: expected the signing certificate and the root, found {} certificates",
            more.len().saturating_add(1)
        ))),
    }
}

/// Verify a raw r‖s ECDSA P-256 signature over `msg` by `signer`'s key.
fn check_json_signature(signer: &X509Certificate<'_>, msg: &[u8], sig: &[u8], what: &'static str) -> Result<()> {
    if sig.len() != 64 {
        return Err(Error::Collateral(format!("{what}: signature has {} bytes, expected 64 (r‖s)", sig.len())));
    }
    let key = p256_point(signer, what)?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.as_slice())
        .verify(msg, sig)
        .map_err(|_| Error::Signature { what })
}

/// Verify everything in `c` that does not depend on the time or on a quote.
pub(crate) fn verify(c: &Collateral, anchor: &Anchor) -> Result<VerifiedCollateral> {
    let root = x509::parse_der(anchor.der, anchor.name)?;

    let tcb_signer_der = signer_der(&c.tcb_info_issuer_chain, anchor, "tcb_info_issuer_chain")?;
    let tcb_signer = x509::parse_der(&tcb_signer_der, "TCB info signing certificate")?;
    check_issued_by(&tcb_signer, &root, "TCB info signing certificate", anchor.name)?;
    let qe_signer_der = signer_der(&c.qe_identity_issuer_chain, anchor, "qe_identity_issuer_chain")?;
    let qe_signer = x509::parse_der(&qe_signer_der, "QE identity signing certificate")?;
    check_issued_by(&qe_signer, &root, "QE identity signing certificate", anchor.name)?;
    let pck_ca_der = signer_der(&c.pck_crl_issuer_chain, anchor, "pck_crl_issuer_chain")?;
    let pck_ca = x509::parse_der(&pck_ca_der, "PCK CRL issuer certificate")?;
    check_issued_by(&pck_ca, &root, "PCK CRL issuer certificate", anchor.name)?;
    check_ca(&pck_ca, "PCK CRL issuer certificate")?;

    let root_crl = parse_crl(&c.root_ca_crl, "root CA CRL")?;
    let root_crl_revoked = check_crl(&root_crl, &root, "root CA CRL", "root CA CRL signature by the root CA")?;
    let pck_crl = parse_crl(&c.pck_crl, "PCK CRL")?;
    let pck_crl_revoked = check_crl(&pck_crl, &pck_ca, "PCK CRL", "PCK CRL signature by the PCK CA")?;

    for (cert, what) in [
        (&tcb_signer, "TCB info signing certificate"),
        (&qe_signer, "QE identity signing certificate"),
        (&pck_ca, "PCK CRL issuer certificate"),
    ] {
        if root_crl_revoked.contains(&serial_key(cert.raw_serial())) {
            return Err(Error::chain(format!(
                "{what} (serial {}) is revoked by the root CA CRL",
                cert.raw_serial_as_string()
            )));
        }
    }

    check_json_signature(
        &tcb_signer,
        c.tcb_info.as_bytes(),
        &c.tcb_info_signature,
        "TCB info signature by the TCB signing certificate",
    )?;
    check_json_signature(
        &qe_signer,
        c.qe_identity.as_bytes(),
        &c.qe_identity_signature,
        "QE identity signature by the TCB signing certificate",
    )?;
    let tcb_info = tcb::parse_tcb_info(&c.tcb_info)?;
    let qe_identity = tcb::parse_qe_identity(&c.qe_identity)?;

    let windows = vec![
        Window { what: "TCB info", not_before: tcb_info.issue_date.unix, not_after: tcb_info.next_update.unix },
        Window {
            what: "QE identity",
            not_before: qe_identity.issue_date.unix,
            not_after: qe_identity.next_update.unix,
        },
        crl_window(&root_crl, "root CA CRL")?,
        crl_window(&pck_crl, "PCK CRL")?,
        validity_window(&tcb_signer, "TCB info signing certificate"),
        validity_window(&qe_signer, "QE identity signing certificate"),
        validity_window(&pck_ca, "PCK CRL issuer certificate"),
        validity_window(&root, "Intel SGX Root CA certificate"),
    ];
    Ok(VerifiedCollateral {
        tcb_info,
        qe_identity,
        windows,
        root_crl_revoked,
        pck_crl_revoked,
        pck_crl_issuer_subject: pck_ca.subject().as_raw().to_vec(),
        pck_crl_issuer_spki: pck_ca.public_key().raw.to_vec(),
    })
}

/// Parse every piece of `c` without judging signatures (fuzzing entry).
pub(crate) fn parse_all(c: &Collateral) {
    for pem in [&c.pck_crl_issuer_chain, &c.tcb_info_issuer_chain, &c.qe_identity_issuer_chain] {
        if let Ok(ders) = chain_ders(pem.as_bytes(), "fuzz") {
            for d in ders {
                let _ = x509::parse_der(&d, "fuzz");
            }
        }
    }
    let _ = parse_crl(&c.root_ca_crl, "fuzz");
    let _ = parse_crl(&c.pck_crl, "fuzz");
    let _ = tcb::parse_tcb_info(&c.tcb_info);
    let _ = tcb::parse_qe_identity(&c.qe_identity);
}
