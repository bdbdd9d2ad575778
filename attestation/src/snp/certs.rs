//! The AMD certificate chain: ARK (self-signed root) → ASK → VCEK, or
//! ARK → ASVK → VLEK, all RSA-PSS SHA-384 (AMD "VCEK Certificate and KDS Interface
//! Specification", doc. 57230), and the AMD extensions of a VCEK/VLEK.
//!
//! Trust: an ARK, ASK or ASVK is usable only if it is byte-identical to one embedded
//! here (`roots/`, see `roots/PROVENANCE.md`) or to a simulated certificate from
//! [`crate::danger::snp_certs`] while the caller trusts the simulator. Roles and
//! product lines come from the subject CN of those known certificates
//! (`ARK-<P>`, `SEV-<P>`, `SEV-VLEK-<P>`); issuers are picked by subject and
//! signature, never by position in a file.

use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;

use super::report::{SigningKey, TcbLayout, TcbParts, TcbVersion};
use crate::error::{Error, Result};
use crate::reader::Reader;
use crate::x509;

/// An AMD EPYC product line with SEV-SNP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Product {
    /// 3rd generation EPYC (family 0x19, models 0x00–0x0F).
    Milan,
    /// 4th generation EPYC (family 0x19, models 0x10–0x1F, 0xA0–0xAF).
    Genoa,
    /// 5th generation EPYC (family 0x1A).
    Turin,
}

impl Product {
    /// The name AMD uses in certificate CNs and KDS URLs.
    pub fn name(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
            Product::Turin => "Turin",
        }
    }

    fn from_name(s: &str) -> Option<Self> {
        match s {
            "Milan" => Some(Product::Milan),
            "Genoa" => Some(Product::Genoa),
            "Turin" => Some(Product::Turin),
            _ => None,
        }
    }

    /// How this product line lays out a `TCB_VERSION`.
    pub fn tcb_layout(self) -> TcbLayout {
        match self {
            Product::Milan | Product::Genoa => TcbLayout::Legacy,
            Product::Turin => TcbLayout::Turin,
        }
    }

    /// The product line a CPUID family/model belongs to, if known.
    pub fn from_cpuid(family: u8, model: u8) -> Option<Self> {
        match (family, model) {
            (0x19, 0x00..=0x0F) => Some(Product::Milan),
            (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Some(Product::Genoa),
            (0x1A, 0x00..=0x11) => Some(Product::Turin),
            _ => None,
        }
    }
}

/// The role of an AMD CA certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// AMD Root Key (self-signed).
    Ark,
    /// AMD SEV Key: issues VCEKs.
    Ask,
    /// AMD SEV VLEK Key: issues VLEKs.
    Asvk,
}

/// An embedded AMD CA certificate.
pub(crate) struct Embedded {
    pub(crate) der: &'static [u8],
}

/// AMD ARK/ASK/ASVK for Milan, Genoa and Turin (DER, from AMD KDS; see
/// `roots/PROVENANCE.md`).
const EMBEDDED: &[Embedded] = &[
    Embedded { der: include_bytes!("roots/ark_milan.der") },
    Embedded { der: include_bytes!("roots/ask_milan.der") },
    Embedded { der: include_bytes!("roots/asvk_milan.der") },
    Embedded { der: include_bytes!("roots/ark_genoa.der") },
    Embedded { der: include_bytes!("roots/ask_genoa.der") },
    Embedded { der: include_bytes!("roots/asvk_genoa.der") },
    Embedded { der: include_bytes!("roots/ark_turin.der") },
    Embedded { der: include_bytes!("roots/ask_turin.der") },
    Embedded { der: include_bytes!("roots/asvk_turin.der") },
];

/// At most this many certificates in a supplied chain file (ASK, ARK, ASVK and
/// some slack); a longer file is refused before any signature work.
const MAX_CHAIN_CERTS: usize = 8;

/// A known CA certificate, usable as part of a path.
struct Anchor<'a> {
    cert: X509Certificate<'a>,
    role: Role,
    product: Product,
    /// `Some(name)` when this is a simulated certificate.
    simulated: Option<&'static str>,
}

fn cn<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a str> {
    cert.subject().iter_common_name().next().and_then(|a| a.as_str().ok())
}

fn describe(cert: &X509Certificate<'_>) -> String {
    match cn(cert) {
        Some(cn) => format!("CN={cn}"),
        None => format!("subject {}", cert.subject()),
    }
}

/// Prefix of the simulator's CA names ("Veil Simulated ARK-Milan").
const SIMULATED_PREFIX: &str = "Veil Simulated ";

/// Role and product line from an AMD CA subject CN. Simulated anchors (known by
/// their exact bytes) carry the simulator's prefix before AMD's name.
fn classify(cert: &X509Certificate<'_>, simulated: bool) -> Option<(Role, Product)> {
    let name = cn(cert)?;
    let name = if simulated { name.strip_prefix(SIMULATED_PREFIX).unwrap_or(name) } else { name };
    if let Some(p) = name.strip_prefix("ARK-") {
        return Some((Role::Ark, Product::from_name(p)?));
    }
    if let Some(p) = name.strip_prefix("SEV-VLEK-") {
        return Some((Role::Asvk, Product::from_name(p)?));
    }
    if let Some(p) = name.strip_prefix("SEV-") {
        return Some((Role::Ask, Product::from_name(p)?));
    }
    None
}

fn anchor<'a>(der: &'a [u8], simulated: Option<&'static str>, what: &str) -> Result<Anchor<'a>> {
    let cert = x509::parse_der(der, what)?;
    let Some((role, product)) = classify(&cert, simulated.is_some()) else {
        return Err(Error::chain(format!("{what} ({}) is not an AMD ARK, ASK or ASVK", describe(&cert))));
    };
    Ok(Anchor { cert, role, product, simulated })
}

/// The certificates a path may use: the embedded AMD ones and the simulated ones.
/// A parameter (not globals) so that tests can exercise the simulated path.
#[derive(Clone, Copy)]
pub(crate) struct TrustStore {
    pub(crate) embedded: &'static [Embedded],
    pub(crate) simulated: &'static [crate::danger::SimulatedCert],
}

impl TrustStore {
    /// The production store: embedded AMD certificates and [`crate::danger::snp_certs`].
    pub(crate) fn standard() -> Self {
        TrustStore { embedded: EMBEDDED, simulated: crate::danger::snp_certs() }
    }

    fn simulated_name(&self, der: &[u8]) -> Option<&'static str> {
        self.simulated.iter().find(|c| c.der == der).map(|c| c.name)
    }
}

/// The candidate CA certificates: those of the supplied chain file (each must be
/// a known certificate), or, without a file, every embedded one plus the
/// simulated ones (which are refused by name later if the path uses them and the
/// simulator is not trusted).
fn anchors<'a>(chain: Option<&'a [Vec<u8>]>, trust_simulator: bool, store: TrustStore) -> Result<Vec<Anchor<'a>>> {
    let mut out = Vec::new();
    match chain {
        None => {
            for e in store.embedded {
                out.push(anchor(e.der, None, "embedded AMD certificate")?);
            }
            for s in store.simulated {
                // A simulated certificate that does not look like an AMD CA is
                // simply not a candidate.
                if let Ok(a) = anchor(s.der, Some(s.name), "simulated certificate") {
                    out.push(a);
                }
            }
        }
        Some(ders) => {
            if ders.len() > MAX_CHAIN_CERTS {
                return Err(Error::chain(format!(
                    "SNP chain file holds {} certificates; at most {MAX_CHAIN_CERTS} expected (ASK, ARK, ASVK)",
                    ders.len()
                )));
            }
            for (i, der) in ders.iter().enumerate() {
                let der = der.as_slice();
                if let Some(e) = store.embedded.iter().find(|e| e.der == der) {
                    out.push(anchor(e.der, None, "embedded AMD certificate")?);
                } else if let Some(name) = store.simulated_name(der) {
                    if !trust_simulator {
                        return Err(Error::SimulatedRoot { root: name.to_string() });
                    }
                    out.push(anchor(der, Some(name), "simulated certificate")?);
                } else {
                    let what = match x509::parse_der(der, "certificate") {
                        Ok(c) => describe(&c),
                        Err(_) => "unparsable".to_string(),
                    };
                    return Err(Error::chain(format!(
                        "certificate {i} of the SNP chain file ({what}) is not one of the embedded AMD ARK/ASK/ASVK certificates"
                    )));
                }
            }
        }
    }
    Ok(out)
}

/// A validity window, kept so a cached chain can be re-checked at another time.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    pub(crate) what: String,
    pub(crate) not_before: i64,
    pub(crate) not_after: i64,
}

impl Window {
    fn of(cert: &X509Certificate<'_>, what: String) -> Self {
        Window {
            what,
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
        }
    }

    pub(crate) fn check(&self, at: OffsetDateTime) -> Result<()> {
        let t = at.unix_timestamp();
        if t < self.not_before || t > self.not_after {
            return Err(Error::Expired {
                what: self.what.clone(),
                not_before: x509::rfc3339(self.not_before),
                not_after: x509::rfc3339(self.not_after),
                at: x509::rfc3339(t),
            });
        }
        Ok(())
    }
}

/// The AMD extensions of a VCEK or VLEK (KDS spec, "VCEK Certificate Extensions").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VekExtensions {
    /// productName (1.3.6.1.4.1.3704.1.2), e.g. "Milan-B0".
    pub product_name: Option<String>,
    /// blSPL (…1.3.1).
    pub bl_spl: u8,
    /// teeSPL (…1.3.2).
    pub tee_spl: u8,
    /// snpSPL (…1.3.3).
    pub snp_spl: u8,
    /// spl_4..spl_7 (…1.3.4–7, reserved), when present.
    pub reserved_spl: [Option<u8>; 4],
    /// ucodeSPL (…1.3.8).
    pub ucode_spl: u8,
    /// fmcSPL (…1.3.9, Turin and later).
    pub fmc_spl: Option<u8>,
    /// hwID (1.3.6.1.4.1.3704.1.4): the chip ID (VCEK only; 64 bytes, 8 on Turin).
    pub hwid: Option<Vec<u8>>,
    /// cspID (1.3.6.1.4.1.3704.1.5): the cloud provider (VLEK only).
    pub csp_id: Option<String>,
}

impl VekExtensions {
    /// The TCB the certificate was issued for, as components.
    pub fn tcb_parts(&self) -> TcbParts {
        TcbParts {
            fmc: self.fmc_spl,
            bootloader: self.bl_spl,
            tee: self.tee_spl,
            snp: self.snp_spl,
            microcode: self.ucode_spl,
        }
    }

    /// The TCB the certificate was issued for, encoded for `layout` (legacy layout
    /// includes the reserved SPLs 4–7 where present).
    pub fn tcb_version(&self, layout: TcbLayout) -> TcbVersion {
        let mut tcb = TcbVersion::from_parts(self.tcb_parts(), layout);
        if layout == TcbLayout::Legacy {
            let mut bytes = tcb.0.to_le_bytes();
            for (dst, spl) in bytes.iter_mut().skip(2).zip(self.reserved_spl.iter()) {
                *dst = spl.unwrap_or(0);
            }
            tcb = TcbVersion(u64::from_le_bytes(bytes));
        }
        tcb
    }
}

const OID_PRODUCT_NAME: &str = "1.3.6.1.4.1.3704.1.2";
const OID_BL_SPL: &str = "1.3.6.1.4.1.3704.1.3.1";
const OID_TEE_SPL: &str = "1.3.6.1.4.1.3704.1.3.2";
const OID_SNP_SPL: &str = "1.3.6.1.4.1.3704.1.3.3";
const OID_SPL4: &str = "1.3.6.1.4.1.3704.1.3.4";
const OID_SPL5: &str = "1.3.6.1.4.1.3704.1.3.5";
const OID_SPL6: &str = "1.3.6.1.4.1.3704.1.3.6";
const OID_SPL7: &str = "1.3.6.1.4.1.3704.1.3.7";
const OID_UCODE_SPL: &str = "1.3.6.1.4.1.3704.1.3.8";
const OID_FMC_SPL: &str = "1.3.6.1.4.1.3704.1.3.9";
const OID_HWID: &str = "1.3.6.1.4.1.3704.1.4";
const OID_CSP_ID: &str = "1.3.6.1.4.1.3704.1.5";

const EXT: &str = "VCEK/VLEK extension";

/// A DER INTEGER holding a u8 (`02 01 xx` or `02 02 00 xx`), nothing after it.
fn der_u8(value: &[u8], field: &'static str) -> Result<u8> {
    let mut r = Reader::new(value, EXT);
    let tag = r.u8(field)?;
    let len = r.u8(field)?;
    if tag != 0x02 {
        return Err(r.error(field, format!("expected an INTEGER (tag 0x02), found tag {tag:#04x}")).into());
    }
    let v = match len {
        1 => {
            let b = r.u8(field)?;
            if b >= 0x80 {
                return Err(r.error(field, "negative INTEGER").into());
            }
            b
        }
        2 => {
            let [hi, lo] = r.array::<2>(field)?;
            if hi != 0 || lo < 0x80 {
                return Err(r.error(field, format!("INTEGER {hi:02x}{lo:02x} is not a minimally encoded u8")).into());
            }
            lo
        }
        n => return Err(r.error(field, format!("INTEGER of {n} bytes does not fit a u8")).into()),
    };
    r.expect_end(field)?;
    Ok(v)
}

/// A DER IA5String (short form length), nothing after it.
fn der_ia5(value: &[u8], field: &'static str) -> Result<String> {
    let mut r = Reader::new(value, EXT);
    let tag = r.u8(field)?;
    if tag != 0x16 {
        return Err(r.error(field, format!("expected an IA5String (tag 0x16), found tag {tag:#04x}")).into());
    }
    let len = r.u8(field)?;
    if len >= 0x80 {
        return Err(r.error(field, "long-form length not expected").into());
    }
    let s = r.take(usize::from(len), field)?;
    r.expect_end(field)?;
    if !s.is_ascii() {
        return Err(r.error(field, "not ASCII").into());
    }
    Ok(String::from_utf8_lossy(s).into_owned())
}

/// The hwID: AMD's KDS puts the raw chip ID in extnValue with no DER tag (64
/// bytes; 8 on Turin); a DER OCTET STRING around it is accepted too.
fn hwid(value: &[u8]) -> Result<Vec<u8>> {
    const FIELD: &str = "hwID";
    if value.len() == 64 || value.len() == 8 {
        return Ok(value.to_vec());
    }
    let mut r = Reader::new(value, EXT);
    let tag = r.u8(FIELD)?;
    let len = r.u8(FIELD)?;
    if tag != 0x04 || !(len == 64 || len == 8) {
        return Err(r
            .error(
                FIELD,
                format!("expected 64 (or 8) raw bytes or an OCTET STRING of them, found {} bytes", value.len()),
            )
            .into());
    }
    let v = r.take(usize::from(len), FIELD)?;
    r.expect_end(FIELD)?;
    Ok(v.to_vec())
}

const DER: &str = "VCEK/VLEK DER";

/// One DER TLV (definite, minimally encoded length): (tag, whole TLV, contents).
fn tlv<'a>(r: &mut Reader<'a>, field: &'static str) -> Result<(u8, &'a [u8], &'a [u8])> {
    let all = r.rest();
    let start = r.position();
    let tag = r.u8(field)?;
    let first = r.u8(field)?;
    let len = match first {
        0..=0x7F => usize::from(first),
        0x81 => {
            let b = r.u8(field)?;
            if b < 0x80 {
                return Err(r.error(field, "non-minimal DER length").into());
            }
            usize::from(b)
        }
        0x82 => {
            let v = r.u16_be(field)?;
            if v < 0x100 {
                return Err(r.error(field, "non-minimal DER length").into());
            }
            usize::from(v)
        }
        _ => return Err(r.error(field, format!("unsupported DER length form {first:#04x}")).into()),
    };
    let contents = r.take(len, field)?;
    let used = r.position().saturating_sub(start);
    let whole = all.get(..used).ok_or_else(|| r.error(field, "internal: TLV bounds"))?;
    Ok((tag, whole, contents))
}

/// The parts of a certificate outside `tbsCertificate` are not signed, and
/// x509-parser is lenient about some of them (tag classes in the outer
/// AlgorithmIdentifier, NULL parameters). Pin them: the outer signatureAlgorithm
/// must be byte-identical to the signed one inside the TBS (RFC 5280 4.1.1.2), the
/// signature BIT STRING must have no unused bits, and nothing may follow.
fn check_unsigned_parts(der: &[u8], what: &str) -> Result<()> {
    let mut outer = Reader::new(der, DER);
    let (tag, _, cert) = tlv(&mut outer, "Certificate")?;
    outer.expect_end("Certificate")?;
    let mut c = Reader::new(cert, DER);
    let (tbs_tag, _, tbs) = tlv(&mut c, "tbsCertificate")?;
    let (alg_tag, outer_alg, _) = tlv(&mut c, "signatureAlgorithm")?;
    let (sig_tag, _, sig) = tlv(&mut c, "signatureValue")?;
    c.expect_end("Certificate")?;
    let mut t = Reader::new(tbs, DER);
    let (first, _, _) = tlv(&mut t, "tbsCertificate.version")?;
    if first == 0xA0 {
        tlv(&mut t, "tbsCertificate.serialNumber")?;
    }
    let (_, inner_alg, _) = tlv(&mut t, "tbsCertificate.signature")?;
    if tag != 0x30 || tbs_tag != 0x30 || alg_tag != 0x30 || sig_tag != 0x03 {
        return Err(Error::chain(format!("{what}: unexpected DER tags in the certificate structure")));
    }
    if outer_alg != inner_alg {
        return Err(Error::chain(format!(
            "{what}: signatureAlgorithm differs from the signed tbsCertificate.signature"
        )));
    }
    if sig.first() != Some(&0) {
        return Err(Error::chain(format!("{what}: signature BIT STRING has unused bits")));
    }
    Ok(())
}

/// Read the AMD extensions of a VCEK/VLEK. A repeated AMD extension is refused.
pub(crate) fn vek_extensions(cert: &X509Certificate<'_>) -> Result<VekExtensions> {
    let mut seen: Vec<String> = Vec::new();
    let mut product_name = None;
    let (mut bl, mut tee, mut snp, mut ucode, mut fmc) = (None, None, None, None, None);
    let mut reserved_spl = [None; 4];
    let (mut hw, mut csp) = (None, None);
    for ext in cert.extensions() {
        let oid = ext.oid.to_id_string();
        if !oid.starts_with("1.3.6.1.4.1.3704.") {
            continue;
        }
        if seen.contains(&oid) {
            return Err(Error::chain(format!("VCEK/VLEK: extension {oid} appears twice")));
        }
        let v = ext.value;
        match oid.as_str() {
            OID_PRODUCT_NAME => product_name = Some(der_ia5(v, "productName")?),
            OID_BL_SPL => bl = Some(der_u8(v, "blSPL")?),
            OID_TEE_SPL => tee = Some(der_u8(v, "teeSPL")?),
            OID_SNP_SPL => snp = Some(der_u8(v, "snpSPL")?),
            OID_SPL4 => reserved_spl[0] = Some(der_u8(v, "spl_4")?),
            OID_SPL5 => reserved_spl[1] = Some(der_u8(v, "spl_5")?),
            OID_SPL6 => reserved_spl[2] = Some(der_u8(v, "spl_6")?),
            OID_SPL7 => reserved_spl[3] = Some(der_u8(v, "spl_7")?),
            OID_UCODE_SPL => ucode = Some(der_u8(v, "ucodeSPL")?),
            OID_FMC_SPL => fmc = Some(der_u8(v, "fmcSPL")?),
            OID_HWID => hw = Some(hwid(v)?),
            OID_CSP_ID => csp = Some(der_ia5(v, "cspID")?),
            _ => {}
        }
        seen.push(oid);
    }
    let need =
        |v: Option<u8>, name: &str| v.ok_or_else(|| Error::chain(format!("VCEK/VLEK: missing the {name} extension")));
    Ok(VekExtensions {
        product_name,
        bl_spl: need(bl, "blSPL")?,
        tee_spl: need(tee, "teeSPL")?,
        snp_spl: need(snp, "snpSPL")?,
        reserved_spl,
        ucode_spl: need(ucode, "ucodeSPL")?,
        fmc_spl: fmc,
        hwid: hw,
        csp_id: csp,
    })
}

/// A VCEK/VLEK whose chain to a trusted ARK verified. Time-independent: validity
/// windows are kept and checked at each use.
#[derive(Debug, Clone)]
pub(crate) struct VerifiedChain {
    /// The SEC1 uncompressed P-384 point of the VCEK/VLEK.
    pub(crate) public_key: Vec<u8>,
    pub(crate) kind: SigningKey,
    pub(crate) product: Product,
    pub(crate) extensions: VekExtensions,
    /// VCEK/VLEK, ASK/ASVK, ARK.
    pub(crate) windows: Vec<Window>,
    /// The name of the first simulated certificate on the path, if any.
    pub(crate) simulated: Option<&'static str>,
}

impl VerifiedChain {
    /// Refuse a simulated path unless trusted, and check every validity window at `at`.
    pub(crate) fn check_use(&self, at: OffsetDateTime, trust_simulator: bool) -> Result<()> {
        if let Some(name) = self.simulated {
            if !trust_simulator {
                return Err(Error::SimulatedRoot { root: name.to_string() });
            }
        }
        for w in &self.windows {
            w.check(at)?;
        }
        Ok(())
    }
}

/// Verify `leaf_bytes` (a VCEK or VLEK, DER or PEM) to a trusted ARK through the
/// certificates of `chain_bytes` (PEM/DER; `None`: the embedded ones). Signatures
/// and structure only; the caller checks validity with [`VerifiedChain::check_use`].
pub(crate) fn verify_chain(
    leaf_bytes: &[u8],
    kind: SigningKey,
    chain_bytes: Option<&[u8]>,
    trust_simulator: bool,
    store: TrustStore,
) -> Result<VerifiedChain> {
    let leaf_name = match kind {
        SigningKey::Vcek => "VCEK",
        SigningKey::Vlek => "VLEK",
        SigningKey::None => return Err(Error::chain("no endorsement key kind for an unsigned report")),
    };
    let leaf_ders = x509::certs_from_pem_or_der(leaf_bytes, leaf_name)?;
    let [leaf_der] = leaf_ders.as_slice() else {
        return Err(Error::chain(format!("{leaf_name}: expected exactly one certificate, found {}", leaf_ders.len())));
    };
    let leaf = x509::parse_der(leaf_der, leaf_name)?;
    check_unsigned_parts(leaf_der, leaf_name)?;

    let chain_ders = match chain_bytes {
        Some(b) => Some(x509::certs_from_pem_or_der(b, "SNP chain file")?),
        None => None,
    };
    let candidates = anchors(chain_ders.as_deref(), trust_simulator, store)?;

    // Issuer of the leaf: an ASK for a VCEK, an ASVK for a VLEK, by subject, then
    // by signature.
    let want_role = if kind == SigningKey::Vlek { Role::Asvk } else { Role::Ask };
    let by_subject: Vec<&Anchor<'_>> = candidates
        .iter()
        .filter(|a| a.role == want_role && a.cert.subject().as_raw() == leaf.issuer().as_raw())
        .collect();
    if by_subject.is_empty() {
        return Err(Error::chain(format!(
            "no issuer for the {leaf_name} (issuer {}) among the {} in the {}",
            leaf.issuer(),
            if want_role == Role::Asvk { "ASVKs" } else { "ASKs" },
            if chain_bytes.is_some() { "supplied chain" } else { "embedded AMD certificates" },
        )));
    }
    let mut inter = None;
    let mut last_err = None;
    for cand in by_subject {
        match x509::verify_cert_signature(&leaf, cand.cert.public_key(), leaf_name) {
            Ok(()) => {
                inter = Some(cand);
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    let Some(inter) = inter else {
        return Err(last_err.unwrap_or_else(|| Error::chain(format!("{leaf_name}: signature does not verify"))));
    };
    let inter_name = if want_role == Role::Asvk { "ASVK" } else { "ASK" };

    // The ARK of the same product line, self-signed, signing the ASK/ASVK.
    let ark = candidates
        .iter()
        .filter(|a| {
            a.role == Role::Ark
                && a.product == inter.product
                && a.cert.subject().as_raw() == inter.cert.issuer().as_raw()
        })
        .find(|a| x509::verify_cert_signature(&inter.cert, a.cert.public_key(), inter_name).is_ok())
        .ok_or_else(|| {
            Error::chain(format!(
                "no ARK that signs the {inter_name} ({}) in the {}",
                describe(&inter.cert),
                if chain_bytes.is_some() { "supplied chain" } else { "embedded AMD certificates" },
            ))
        })?;
    if ark.cert.issuer().as_raw() != ark.cert.subject().as_raw() {
        return Err(Error::chain(format!("ARK ({}) is not self-issued", describe(&ark.cert))));
    }
    x509::verify_cert_signature(&ark.cert, ark.cert.public_key(), "ARK self-signature")?;

    // The leaf key: EC P-384.
    let spki = leaf.public_key();
    let alg = spki.algorithm.algorithm.to_id_string();
    let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
    if alg != x509::oid::EC_PUBLIC_KEY || curve.as_deref() != Some(x509::oid::P384) {
        return Err(Error::chain(format!(
            "{leaf_name}: public key is not EC P-384 (algorithm {alg}, curve {curve:?})"
        )));
    }
    let public_key = x509::spki_key_bytes(spki).to_vec();

    let extensions = vek_extensions(&leaf)?;
    match kind {
        SigningKey::Vcek if extensions.hwid.is_none() => {
            return Err(Error::chain("VCEK: missing the hwID extension"));
        }
        SigningKey::Vlek if extensions.hwid.is_some() => {
            return Err(Error::chain("VLEK: unexpected hwID extension"));
        }
        _ => {}
    }
    if inter.product == Product::Turin && extensions.fmc_spl.is_none() {
        return Err(Error::chain(format!("{leaf_name}: a Turin certificate must carry the fmcSPL extension")));
    }
    if let Some(name) = &extensions.product_name {
        if !name.starts_with(inter.product.name()) {
            return Err(Error::chain(format!(
                "{leaf_name}: productName {name:?} does not belong to the {} chain",
                inter.product.name()
            )));
        }
    }

    let windows = vec![
        Window::of(&leaf, leaf_name.to_string()),
        Window::of(&inter.cert, format!("{inter_name} ({})", describe(&inter.cert))),
        Window::of(&ark.cert, format!("ARK ({})", describe(&ark.cert))),
    ];
    Ok(VerifiedChain {
        public_key,
        kind,
        product: inter.product,
        extensions,
        windows,
        simulated: ark.simulated.or(inter.simulated),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_roots_classify_and_verify() {
        let all = anchors(None, false, TrustStore::standard()).unwrap();
        assert!(all.len() >= 9);
        for a in all.iter().filter(|a| a.simulated.is_none()) {
            // Every ASK/ASVK is signed by the ARK of its product, every ARK by itself.
            let ark =
                all.iter().find(|r| r.role == Role::Ark && r.product == a.product && r.simulated.is_none()).unwrap();
            x509::verify_cert_signature(&a.cert, ark.cert.public_key(), "embedded").unwrap();
        }
        let count = |role| all.iter().filter(|a| a.role == role && a.simulated.is_none()).count();
        assert_eq!((count(Role::Ark), count(Role::Ask), count(Role::Asvk)), (3, 3, 3));
    }

    #[test]
    fn der_u8_forms() {
        assert_eq!(der_u8(&[2, 1, 0], "t").unwrap(), 0);
        assert_eq!(der_u8(&[2, 2, 0, 0xd9], "t").unwrap(), 0xd9);
        assert!(der_u8(&[2, 1, 0x80], "t").is_err());
        assert!(der_u8(&[2, 2, 0, 0x10], "t").is_err());
        assert!(der_u8(&[2, 1, 0, 0], "t").is_err());
        assert!(der_u8(&[4, 1, 0], "t").is_err());
        assert!(der_u8(&[2, 1], "t").is_err());
        assert!(der_u8(&[], "t").is_err());
    }
}
