//! The PCK certificate chain carried in a quote: leaf (PCK certificate) → Intel SGX
//! PCK Platform/Processor CA → root, and the Intel SGX extension of the leaf
//! (OID 1.2.840.113741.1.13.1: TCB components, PCESVN, CPUSVN, PCEID, FMSPC).

use x509_parser::certificate::X509Certificate;
use x509_parser::der_parser::ber::BerObject;

use super::{Anchor, Window};
use crate::danger::SimulatedCert;
use crate::error::{Error, Result};
use crate::x509;

const SGX_EXTENSION: &str = "1.2.840.113741.1.13.1";
const SGX_TCB: &str = "1.2.840.113741.1.13.1.2";
const SGX_PCEID: &str = "1.2.840.113741.1.13.1.3";
const SGX_FMSPC: &str = "1.2.840.113741.1.13.1.4";
const SGX_TCB_PREFIX: &str = "1.2.840.113741.1.13.1.2.";

/// Values of the Intel SGX extension of a PCK certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SgxExtension {
    pub fmspc: [u8; 6],
    pub pce_id: [u8; 2],
    /// SGX TCB components 1..16 (equal to the CPUSVN octets).
    pub cpu_svn: [u8; 16],
    pub pce_svn: u16,
}

/// A PCK chain whose signatures verified up to `anchor`. Time windows are kept, not
/// judged: they are checked at every verification.
#[derive(Debug)]
pub(crate) struct VerifiedPck {
    pub anchor: Anchor,
    /// SEC1 uncompressed P-256 point of the PCK leaf.
    pub leaf_key: [u8; 65],
    pub leaf_serial: Vec<u8>,
    pub ca_serial: Vec<u8>,
    pub ca_subject: Vec<u8>,
    pub ca_spki: Vec<u8>,
    pub windows: Vec<Window>,
    pub ext: SgxExtension,
}

/// A certificate serial without leading zero octets (the form revocation sets use).
pub(crate) fn serial_key(raw: &[u8]) -> Vec<u8> {
    let n = raw.iter().take_while(|&&b| b == 0).count();
    raw.get(n..).unwrap_or(&[]).to_vec()
}

pub(crate) fn validity_window(cert: &X509Certificate<'_>, what: &'static str) -> Window {
    Window {
        what,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
    }
}

/// `child` names `parent` as its issuer and carries a valid signature by its key.
pub(crate) fn check_issued_by(
    child: &X509Certificate<'_>,
    parent: &X509Certificate<'_>,
    child_what: &str,
    parent_what: &str,
) -> Result<()> {
    if child.issuer().as_raw() != parent.subject().as_raw() {
        return Err(Error::chain(format!(
            "{child_what}: issuer {} is not the {parent_what} ({})",
            child.issuer(),
            parent.subject()
        )));
    }
    x509::verify_cert_signature(child, parent.public_key(), child_what)
}

/// `cert` is a CA certificate (basicConstraints cA = TRUE).
pub(crate) fn check_ca(cert: &X509Certificate<'_>, what: &str) -> Result<()> {
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => Ok(()),
        Ok(_) => Err(Error::chain(format!("{what}: not a CA certificate (basicConstraints cA is not set)"))),
        Err(e) => Err(Error::chain(format!("{what}: malformed basicConstraints: {e}"))),
    }
}

/// The SEC1 uncompressed point of a P-256 key.
pub(crate) fn p256_point(cert: &X509Certificate<'_>, what: &str) -> Result<[u8; 65]> {
    let spki = cert.public_key();
    let alg = spki.algorithm.algorithm.to_id_string();
    let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
    if alg != x509::oid::EC_PUBLIC_KEY || curve.as_deref() != Some(x509::oid::P256) {
        return Err(Error::chain(format!("{what}: key is {alg} {curve:?}, expected an ECDSA P-256 key")));
    }
    let point = x509::spki_key_bytes(spki);
    match <[u8; 65]>::try_from(point) {
        Ok(p) if p.first() == Some(&4) => Ok(p),
        _ => Err(Error::chain(format!("{what}: P-256 key is not an uncompressed point"))),
    }
}

/// Parse a PEM issuer chain into DER certificates (a trailing NUL, as quotes carry,
/// is outside every PEM block and ignored).
pub(crate) fn chain_ders(pem: &[u8], what: &str) -> Result<Vec<Vec<u8>>> {
    x509::certs_from_pem_or_der(pem, what)
}

/// Verify a quote's PCK chain. The anchor is the simulated root the chain ends in,
/// if it ends in one, else `default_anchor`. A chain that ends in a simulated root
/// is refused by name unless `trust_simulator`, before anything else is checked;
/// the caller judges the anchor's acceptability again on cache hits.
pub(crate) fn verify_chain(
    pem: &[u8],
    default_anchor: Anchor,
    simulated: &'static [SimulatedCert],
    trust_simulator: bool,
) -> Result<VerifiedPck> {
    let ders = chain_ders(pem, "PCK certificate chain")?;
    let (leaf_der, ca_der, root_der) = match ders.as_slice() {
        [leaf, ca] => (leaf, ca, None),
        [leaf, ca, root] => (leaf, ca, Some(root)),
        other => {
            return Err(Error::chain(format!(
                "PCK certificate chain: expected PCK certificate, PCK CA and optionally the root, found {} certificates",
                other.len()
            )));
        }
    };
    let anchor = match root_der.and_then(|r| simulated.iter().find(|s| s.der == r.as_slice())) {
        Some(s) => Anchor { der: s.der, name: s.name, simulated: true },
        None => default_anchor,
    };
    if anchor.simulated && !trust_simulator {
        return Err(Error::SimulatedRoot { root: anchor.name.to_string() });
    }
    if let Some(r) = root_der {
        if r.as_slice() != anchor.der {
            return Err(Error::chain(format!(
                "PCK certificate chain: its root (SHA-256 {}) is not the trusted {}",
                x509::sha256_hex(r),
                anchor.name
            )));
        }
    }
    let leaf = x509::parse_der(leaf_der, "PCK certificate")?;
    let ca = x509::parse_der(ca_der, "PCK CA certificate")?;
    let root = x509::parse_der(anchor.der, anchor.name)?;

    check_issued_by(&ca, &root, "PCK CA certificate", anchor.name)?;
    check_ca(&ca, "PCK CA certificate")?;
    check_issued_by(&leaf, &ca, "PCK certificate", "PCK CA certificate")?;
    let leaf_key = p256_point(&leaf, "PCK certificate")?;
    let ext = sgx_extension(&leaf)?;

    Ok(VerifiedPck {
        anchor,
        leaf_key,
        leaf_serial: serial_key(leaf.raw_serial()),
        ca_serial: serial_key(ca.raw_serial()),
        ca_subject: ca.subject().as_raw().to_vec(),
        ca_spki: ca.public_key().raw.to_vec(),
        windows: vec![
            validity_window(&leaf, "PCK certificate"),
            validity_window(&ca, "PCK CA certificate"),
            validity_window(&root, "Intel SGX Root CA certificate"),
        ],
        ext,
    })
}

fn ext_err(detail: impl std::fmt::Display) -> Error {
    Error::chain(format!("PCK certificate SGX extension ({SGX_EXTENSION}): {detail}"))
}

/// The (OID, value) pairs of an SGX extension SEQUENCE.
fn pairs<'a, 'b>(obj: &'b BerObject<'a>, what: &str) -> Result<Vec<(String, &'b BerObject<'a>)>> {
    let seq = obj.as_sequence().map_err(|e| ext_err(format!("{what}: not a SEQUENCE: {e}")))?;
    let mut out = Vec::with_capacity(seq.len());
    for item in seq {
        let pair = item.as_sequence().map_err(|e| ext_err(format!("{what}: entry is not a SEQUENCE: {e}")))?;
        let [oid, value] = pair.as_slice() else {
            return Err(ext_err(format!("{what}: entry has {} elements, expected 2", pair.len())));
        };
        let oid = oid.as_oid().map_err(|e| ext_err(format!("{what}: entry without an OID: {e}")))?.to_id_string();
        if out.iter().any(|(o, _)| *o == oid) {
            return Err(ext_err(format!("{what}: {oid} appears twice")));
        }
        out.push((oid, value));
    }
    Ok(out)
}

fn octets<const N: usize>(v: &BerObject<'_>, what: &str) -> Result<[u8; N]> {
    let b = v.as_slice().map_err(|e| ext_err(format!("{what}: not an OCTET STRING: {e}")))?;
    <[u8; N]>::try_from(b).map_err(|_| ext_err(format!("{what}: expected {N} bytes, found {}", b.len())))
}

fn small_int(v: &BerObject<'_>, max: u32, what: &str) -> Result<u32> {
    let n = v.as_u32().map_err(|e| ext_err(format!("{what}: not an INTEGER: {e}")))?;
    if n > max {
        return Err(ext_err(format!("{what}: {n} exceeds {max}")));
    }
    Ok(n)
}

/// Parse the Intel SGX extension of a PCK certificate.
pub(crate) fn sgx_extension(cert: &X509Certificate<'_>) -> Result<SgxExtension> {
    let mut found = cert.extensions().iter().filter(|e| e.oid.to_id_string() == SGX_EXTENSION);
    let (Some(ext), None) = (found.next(), found.next()) else {
        return Err(ext_err("must appear exactly once in the PCK certificate"));
    };
    let (rest, obj) =
        x509_parser::der_parser::der::parse_der(ext.value).map_err(|e| ext_err(format!("not DER: {e}")))?;
    if !rest.is_empty() {
        return Err(ext_err(format!("{} bytes after the extension value", rest.len())));
    }
    let (mut fmspc, mut pce_id, mut tcb) = (None, None, None);
    for (oid, value) in pairs(&obj, "extension")? {
        match oid.as_str() {
            SGX_FMSPC => fmspc = Some(octets::<6>(value, "FMSPC")?),
            SGX_PCEID => pce_id = Some(octets::<2>(value, "PCEID")?),
            SGX_TCB => tcb = Some(value),
            _ => {}
        }
    }
    let fmspc = fmspc.ok_or_else(|| ext_err("FMSPC missing"))?;
    let pce_id = pce_id.ok_or_else(|| ext_err("PCEID missing"))?;
    let tcb = tcb.ok_or_else(|| ext_err("TCB missing"))?;

    let mut comps: [Option<u8>; 16] = [None; 16];
    let (mut pce_svn, mut cpu_svn) = (None, None);
    for (oid, value) in pairs(tcb, "TCB")? {
        let Some(index) = oid.strip_prefix(SGX_TCB_PREFIX).and_then(|i| i.parse::<usize>().ok()) else {
            continue;
        };
        match index {
            17 => pce_svn = Some(small_int(value, u32::from(u16::MAX), "PCESVN")?),
            18 => cpu_svn = Some(octets::<16>(value, "CPUSVN")?),
            i => {
                if let Some(slot) = i.checked_sub(1).and_then(|i| comps.get_mut(i)) {
                    *slot = Some(u8::try_from(small_int(value, 255, "TCB component")?).unwrap_or(u8::MAX));
                }
            }
        }
    }
    let mut components = [0u8; 16];
    for (i, (out, c)) in components.iter_mut().zip(comps).enumerate() {
        *out = c.ok_or_else(|| ext_err(format!("SGX TCB component {} missing", i.saturating_add(1))))?;
    }
    let cpu_svn = cpu_svn.ok_or_else(|| ext_err("CPUSVN missing"))?;
    if cpu_svn != components {
        return Err(ext_err(format!(
            "SGX TCB components {} differ from CPUSVN {}",
            hex::encode(components),
            hex::encode(cpu_svn)
        )));
    }
    let pce_svn = u16::try_from(pce_svn.ok_or_else(|| ext_err("PCESVN missing"))?).unwrap_or(u16::MAX);
    Ok(SgxExtension { fmspc, pce_id, cpu_svn, pce_svn })
}
