//! Azure confidential VMs: the TPM root of trust inside a CVM as clouds ship it.
//!
//! The paravisor (HCL) emits an *HCL report*: the hardware report (SEV-SNP
//! ATTESTATION_REPORT, or TDX TDREPORT whose quote travels separately), then the IGVM
//! request data whose variable part is a JSON document holding the vTPM's
//! attestation key (`HCLAkPub`, a JWK). The hardware report's report data is the
//! hash of that JSON, so the hardware binds the AK; the AK then signs a TPM quote
//! over the PCRs with the relying party's nonce.
//!
//! ```text
//!  HCL report: "HCLA" hdr (0x20) │ HW report (1184 B area) │ IGVM hdr (20 B) │ var-data JSON
//!                                      └ report_data[0..n] = H(var-data) ───────────┘
//!                                                                 └ HCLAkPub ─► TPM quote signature
//! ```
//!
//! Layout: the HCL header and IGVM request data are not in a public specification;
//! they follow Microsoft's `azure-cvm-tooling` / `az-snp-vtpm` (read to learn) and the
//! real reports in `shared/vectors/azure-*-vtpm`. Parsed by hand because no crate
//! without OpenSSL parses them; every length is checked against the declared sizes.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use sha2::Digest as _;

use crate::error::{Error, ParseError, Result};
use crate::reader::Reader;
use crate::verify::{Claims, Options, Tee, VerifiedEvidence, Verifier};
use crate::{snp, tdx, tpm};

const STRUCT: &str = "Azure HCL report";
/// Offset of the hardware report in the HCL report.
pub const HW_REPORT_OFFSET: usize = 0x20;
/// Size of the hardware report area (an SNP report; a TDREPORT is 1024 B + padding).
pub const HW_REPORT_AREA: usize = 1184;
/// Size of a TDX TDREPORT.
pub const TDREPORT_LEN: usize = 1024;
/// Offset of REPORTDATA inside a TDREPORT (after the REPORTMACSTRUCT header fields).
const TDREPORT_REPORT_DATA: usize = 128;
/// Upper bound on the variable data (a few KB in practice).
const MAX_VAR_DATA: usize = 64 * 1024;

/// Hardware behind an HCL report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HclTee {
    /// SEV-SNP (IGVM report type 2).
    Snp,
    /// TDX (IGVM report type 4).
    Tdx,
}

/// A parsed HCL report. Borrowed from the input bytes.
#[derive(Debug, Clone)]
pub struct HclReport<'a> {
    /// HCL report version.
    pub version: u32,
    /// The hardware behind it.
    pub tee: HclTee,
    /// The hardware report area (SNP report, or TDREPORT followed by padding).
    pub hw_report: &'a [u8],
    /// The hash algorithm binding the variable data (1 SHA-256, 2 SHA-384, 3 SHA-512).
    pub hash_type: u32,
    /// The variable data (JSON) exactly as received.
    pub var_data: &'a [u8],
    /// Bytes after the declared end.
    pub trailing: usize,
}

/// Parse an HCL report to its declared lengths.
pub fn parse_hcl_report(bytes: &[u8]) -> Result<HclReport<'_>> {
    let mut r = Reader::new(bytes, STRUCT);
    let magic = r.take(4, "header.signature")?;
    if magic != b"HCLA" {
        return Err(r.error("header.signature", format!("expected \"HCLA\", found {}", hex::encode(magic))).into());
    }
    let version = r.u32_le("header.version")?;
    if version != 1 && version != 2 {
        return Err(r.error("header.version", format!("expected 1 or 2, found {version}")).into());
    }
    let report_size = r.u32_le("header.report_size")?;
    let _request_type = r.u32_le("header.request_type")?;
    let _status = r.u32_le("header.status")?;
    r.skip(12, "header.reserved")?;
    let hw_report = r.take(HW_REPORT_AREA, "hw_report")?;
    let data_size = r.u32_le("igvm.data_size")?;
    let igvm_version = r.u32_le("igvm.version")?;
    if igvm_version != 1 {
        return Err(r.error("igvm.version", format!("expected 1, found {igvm_version}")).into());
    }
    let report_type = r.u32_le("igvm.report_type")?;
    let tee = match report_type {
        2 => HclTee::Snp,
        4 => HclTee::Tdx,
        t => return Err(r.error("igvm.report_type", format!("expected 2 (SNP) or 4 (TDX), found {t}")).into()),
    };
    let hash_type = r.u32_le("igvm.report_data_hash_type")?;
    if !(1..=3).contains(&hash_type) {
        return Err(r.error("igvm.report_data_hash_type", format!("expected 1..=3, found {hash_type}")).into());
    }
    let var_size = r.u32_le("igvm.variable_data_size")?;
    let var_len = usize::try_from(var_size).map_err(|_| r.error("igvm.variable_data_size", "too large"))?;
    if var_len > MAX_VAR_DATA {
        return Err(r.error("igvm.variable_data_size", format!("{var_len} exceeds {MAX_VAR_DATA}")).into());
    }
    if u64::from(data_size) != u64::from(var_size).saturating_add(20) {
        return Err(r
            .error("igvm.data_size", format!("{data_size} is not 20 + variable_data_size ({var_size})"))
            .into());
    }
    let var_data = r.take(var_len, "igvm.variable_data")?;
    let declared_end = r.position();
    if usize::try_from(report_size).ok() != Some(declared_end) {
        return Err(r
            .error("header.report_size", format!("declares {report_size} bytes, structure ends at {declared_end}"))
            .into());
    }
    Ok(HclReport { version, tee, hw_report, hash_type, var_data, trailing: r.remaining() })
}

impl HclReport<'_> {
    /// H(var_data) with the declared hash, zero-padded to 64 bytes: the report data
    /// the hardware report must carry.
    pub fn expected_report_data(&self) -> [u8; 64] {
        let digest: Vec<u8> = match self.hash_type {
            1 => sha2::Sha256::digest(self.var_data).to_vec(),
            2 => sha2::Sha384::digest(self.var_data).to_vec(),
            _ => sha2::Sha512::digest(self.var_data).to_vec(),
        };
        let mut out = [0u8; 64];
        for (o, d) in out.iter_mut().zip(digest.iter()) {
            *o = *d;
        }
        out
    }

    /// The variable data as JSON.
    pub fn var_data_json(&self) -> Result<serde_json::Value> {
        serde_json::from_slice(self.var_data)
            .map_err(|e| ParseError::new(STRUCT, "igvm.variable_data", format!("not JSON: {e}")).into())
    }

    /// The vTPM attestation key (`HCLAkPub`) from the variable data.
    pub fn ak(&self) -> Result<tpm::AkPublic> {
        #[derive(Deserialize)]
        struct Jwk {
            kid: Option<String>,
            kty: Option<String>,
            n: Option<String>,
            e: Option<String>,
        }
        #[derive(Deserialize)]
        struct Var {
            keys: Vec<Jwk>,
        }
        let var: Var = serde_json::from_slice(self.var_data)
            .map_err(|e| ParseError::new(STRUCT, "igvm.variable_data.keys", format!("{e}")))?;
        let jwk = var
            .keys
            .iter()
            .find(|k| k.kid.as_deref() == Some("HCLAkPub"))
            .ok_or_else(|| ParseError::new(STRUCT, "igvm.variable_data.keys", "no HCLAkPub key"))?;
        if jwk.kty.as_deref() != Some("RSA") {
            return Err(ParseError::new(STRUCT, "HCLAkPub.kty", format!("expected RSA, found {:?}", jwk.kty)).into());
        }
        let b64 = |field: &'static str, v: &Option<String>| -> Result<Vec<u8>> {
            let s = v.as_deref().ok_or_else(|| ParseError::new(STRUCT, field, "missing"))?;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s.trim_end_matches('='))
                .map_err(|e| ParseError::new(STRUCT, field, format!("not base64url: {e}")).into())
        };
        tpm::AkPublic::from_rsa_components(&b64("HCLAkPub.n", &jwk.n)?, &b64("HCLAkPub.e", &jwk.e)?)
    }
}

/// The vTPM quote as Azure tooling exports it: `{signature, message, pcrs}`, each
/// hex or a byte array. `message` is the TPMS_ATTEST, `signature` the raw RSASSA
/// signature, `pcrs` the 24 SHA-256 PCR values.
#[derive(Debug, Clone)]
pub struct VtpmQuote {
    /// TPMS_ATTEST bytes.
    pub message: Vec<u8>,
    /// Raw RSA signature bytes.
    pub signature: Vec<u8>,
    /// PCR values (SHA-256 bank), by index.
    pub pcrs: BTreeMap<u32, Vec<u8>>,
}

impl VtpmQuote {
    /// Parse the JSON form.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        const S: &str = "vTPM quote JSON";
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Bytes {
            Hex(String),
            Array(Vec<u8>),
        }
        #[derive(Deserialize)]
        struct Raw {
            signature: Bytes,
            message: Bytes,
            pcrs: Vec<Bytes>,
        }
        let raw: Raw = serde_json::from_slice(bytes).map_err(|e| ParseError::new(S, "json", format!("{e}")))?;
        let decode = |field: &'static str, b: Bytes| -> Result<Vec<u8>> {
            match b {
                Bytes::Array(v) => Ok(v),
                Bytes::Hex(s) => hex::decode(s).map_err(|e| ParseError::new(S, field, format!("not hex: {e}")).into()),
            }
        };
        if raw.pcrs.len() > 24 {
            return Err(ParseError::new(S, "pcrs", format!("{} values, at most 24", raw.pcrs.len())).into());
        }
        let mut pcrs = BTreeMap::new();
        for (i, p) in (0u32..).zip(raw.pcrs) {
            let v = decode("pcrs", p)?;
            if v.len() != 32 {
                return Err(ParseError::new(S, "pcrs", format!("PCR {i}: {} bytes, expected 32", v.len())).into());
            }
            pcrs.insert(i, v);
        }
        Ok(Self { message: decode("message", raw.message)?, signature: decode("signature", raw.signature)?, pcrs })
    }

    /// The signature as a TPMT_SIGNATURE (RSASSA, SHA-256), the form the TPM
    /// verifier takes.
    fn tpmt_signature(&self) -> Result<Vec<u8>> {
        let len = u16::try_from(self.signature.len())
            .map_err(|_| ParseError::new("vTPM quote JSON", "signature", "longer than 65535 bytes"))?;
        let mut out = Vec::with_capacity(self.signature.len().saturating_add(6));
        out.extend_from_slice(&0x0014u16.to_be_bytes()); // TPM_ALG_RSASSA
        out.extend_from_slice(&0x000Bu16.to_be_bytes()); // TPM_ALG_SHA256
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.signature);
        Ok(out)
    }

    fn verify(&self, ak: &tpm::AkPublic, opts: &Options) -> Result<tpm::TpmClaims> {
        let pcrs = tpm::PcrValues { bank: tpm::HashAlg::Sha256, values: self.pcrs.clone() };
        tpm::verify_quote(&self.message, &self.tpmt_signature()?, ak, Some(&pcrs), opts)
    }
}

/// The composite result: the hardware verification's simulated flag, "not
/// evaluated" items and notes carry over.
fn combine(tee: Tee, claims: Claims, hw: &VerifiedEvidence, hcl: &HclReport<'_>, opts: &Options) -> VerifiedEvidence {
    let mut out = VerifiedEvidence::new(tee, hw.simulated(), claims);
    for n in hw.not_evaluated_items() {
        out = out.not_evaluated(n.clone());
    }
    for n in hw.notes() {
        out = out.note(n.clone());
    }
    if opts.nonce.is_none() {
        out = out.not_evaluated("nonce: not checked");
    }
    if hcl.trailing > 0 {
        out = out.note(format!("{} bytes after the declared end of the HCL report (ignored)", hcl.trailing));
    }
    out
}

/// Azure SEV-SNP CVM evidence.
#[derive(Debug, Clone, Copy)]
pub struct AzSnpEvidence<'a> {
    /// The HCL report.
    pub hcl_report: &'a [u8],
    /// The vTPM quote JSON.
    pub tpm_quote: &'a [u8],
    /// The VCEK (DER or PEM).
    pub vcek: &'a [u8],
    /// ASK + ARK PEM (each must be byte-identical to an embedded AMD root).
    pub chain: Option<&'a [u8]>,
}

/// Verifier for Azure SEV-SNP vTPM evidence.
#[derive(Debug, Default)]
pub struct AzSnpVtpmVerifier {
    snp: snp::SnpVerifier,
}

impl Verifier for AzSnpVtpmVerifier {
    type Evidence<'a> = AzSnpEvidence<'a>;

    fn verify(&self, ev: &AzSnpEvidence<'_>, opts: &Options) -> Result<VerifiedEvidence> {
        let hcl = parse_hcl_report(ev.hcl_report)?;
        if hcl.tee != HclTee::Snp {
            return Err(Error::Binding("HCL report is for TDX, not SEV-SNP".into()));
        }
        // 1. The SNP report: chain, signature, and the caller's report data if any.
        let snp_ev = snp::SnpEvidence { report: hcl.hw_report, vcek: Some(ev.vcek), vlek: None, chain: ev.chain };
        let verified = self.snp.verify(&snp_ev, opts)?;
        let Claims::Snp(snp_claims) = verified.claims().clone() else {
            return Err(Error::Binding("SNP verifier returned non-SNP claims".into()));
        };
        // 2. The report data binds the variable data (and so the AK).
        let found = snp_claims.report_data;
        let expected = hcl.expected_report_data();
        if found != expected {
            return Err(Error::Binding(format!(
                "SNP report_data {} is not H(HCL variable data) {}",
                hex::encode(found),
                hex::encode(expected)
            )));
        }
        // 3. The vTPM quote under the bound AK, with the caller's nonce.
        let ak = hcl.ak()?;
        let quote = VtpmQuote::from_json(ev.tpm_quote)?;
        let tpm_claims = quote.verify(&ak, opts)?;
        let var_data = hcl.var_data_json()?;
        let claims = Claims::AzSnpVtpm { snp: snp_claims, tpm: tpm_claims, var_data };
        Ok(combine(Tee::AzSnpVtpm, claims, &verified, &hcl, opts))
    }
}

/// Azure TDX CVM evidence.
#[derive(Debug, Clone, Copy)]
pub struct AzTdxEvidence<'a> {
    /// The HCL report (TDREPORT inside).
    pub hcl_report: &'a [u8],
    /// The vTPM quote JSON.
    pub tpm_quote: &'a [u8],
    /// The TD quote produced from the TDREPORT.
    pub td_quote: &'a [u8],
    /// DCAP collateral, if available.
    pub collateral: Option<&'a tdx::Collateral>,
    /// Root certificate (must be byte-identical to the embedded Intel root).
    pub root: Option<&'a [u8]>,
}

/// Verifier for Azure TDX vTPM evidence.
#[derive(Debug, Default)]
pub struct AzTdxVtpmVerifier {
    tdx: tdx::TdxVerifier,
}

impl Verifier for AzTdxVtpmVerifier {
    type Evidence<'a> = AzTdxEvidence<'a>;

    fn verify(&self, ev: &AzTdxEvidence<'_>, opts: &Options) -> Result<VerifiedEvidence> {
        let hcl = parse_hcl_report(ev.hcl_report)?;
        if hcl.tee != HclTee::Tdx {
            return Err(Error::Binding("HCL report is for SEV-SNP, not TDX".into()));
        }
        // 1. The TD quote: signatures, PCK chain, collateral when given.
        let tdx_ev = tdx::TdxEvidence { quote: ev.td_quote, collateral: ev.collateral, root: ev.root };
        let verified = self.tdx.verify(&tdx_ev, opts)?;
        let Claims::Tdx(tdx_claims) = verified.claims().clone() else {
            return Err(Error::Binding("TDX verifier returned non-TDX claims".into()));
        };
        // 2. The quote was made from this HCL's TDREPORT: same report data.
        let mut tr = Reader::new(hcl.hw_report, STRUCT);
        let tdreport = tr.take(TDREPORT_LEN, "tdreport")?;
        let mut rr = Reader::new(tdreport, STRUCT);
        rr.skip(TDREPORT_REPORT_DATA, "tdreport.reportmacstruct")?;
        let tdreport_rd = rr.take(64, "tdreport.report_data")?;
        let quote_rd = hex::decode(&tdx_claims.report_data).map_err(|_| Error::Binding("report_data claim".into()))?;
        if quote_rd.as_slice() != tdreport_rd {
            return Err(Error::Binding(format!(
                "TD quote report_data {} differs from the HCL TDREPORT's {}",
                hex::encode(&quote_rd),
                hex::encode(tdreport_rd)
            )));
        }
        // 3. The report data binds the variable data (and so the AK).
        let expected = hcl.expected_report_data();
        if quote_rd.as_slice() != expected.as_slice() {
            return Err(Error::Binding(format!(
                "TD report_data {} is not H(HCL variable data) {}",
                hex::encode(&quote_rd),
                hex::encode(expected)
            )));
        }
        // 4. The vTPM quote under the bound AK.
        let ak = hcl.ak()?;
        let quote = VtpmQuote::from_json(ev.tpm_quote)?;
        let tpm_claims = quote.verify(&ak, opts)?;
        let var_data = hcl.var_data_json()?;
        let claims = Claims::AzTdxVtpm { tdx: tdx_claims, tpm: tpm_claims, var_data };
        Ok(combine(Tee::AzTdxVtpm, claims, &verified, &hcl, opts))
    }
}

/// Parse an HCL report and everything inside it, for the fuzzer.
#[doc(hidden)]
pub fn fuzz_hcl_report(data: &[u8]) {
    if let Ok(h) = parse_hcl_report(data) {
        let _ = h.expected_report_data();
        let _ = h.var_data_json();
        let _ = h.ak();
        if h.tee == HclTee::Snp {
            let _ = snp::parse_report(h.hw_report);
        }
    }
    let _ = VtpmQuote::from_json(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> std::path::PathBuf {
        std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors"))
    }

    #[test]
    fn parses_real_hcl_reports() {
        for (dir, tee) in [
            ("azure-snp-vtpm/trustee-hcl-milan-v2", HclTee::Snp),
            ("azure-snp-vtpm/trustee-evidence-genoa", HclTee::Snp),
            ("azure-tdx-vtpm/trustee-hcl-tdx", HclTee::Tdx),
        ] {
            let bytes = std::fs::read(vectors().join(dir).join("hcl_report.bin")).unwrap();
            let h = parse_hcl_report(&bytes).unwrap();
            assert_eq!(h.tee, tee, "{dir}");
            assert!(h.ak().is_ok(), "{dir}");
            assert!(h.var_data_json().unwrap().get("keys").is_some());
        }
    }

    fn at(s: &str) -> Options {
        Options::at(time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap())
    }

    /// Every bit position of the bound region of an accepted HCL report (the
    /// hardware report and the variable data it binds) is refused when flipped —
    /// one bit per byte, rotating through the eight positions.
    #[test]
    fn az_snp_bit_flips_in_the_bound_region_are_refused() {
        let d = vectors().join("azure-snp-vtpm/trustee-hcl-milan-v2");
        let hcl = std::fs::read(d.join("hcl_report.bin")).unwrap();
        let quote = std::fs::read(d.join("tpm_quote.json")).unwrap();
        let vcek = std::fs::read(d.join("vcek.pem")).unwrap();
        let chain = std::fs::read(d.join("cert_chain.pem")).unwrap();
        let opts = at("2025-06-01T00:00:00Z").with_nonce(b"challenge".to_vec());
        let v = AzSnpVtpmVerifier::default();
        let ev = AzSnpEvidence { hcl_report: &hcl, tpm_quote: &quote, vcek: &vcek, chain: Some(&chain) };
        v.verify(&ev, &opts).unwrap();
        let end = 0x4D4 + parse_hcl_report(&hcl).unwrap().var_data.len();
        // The SNP report's own bytes are covered exhaustively by the SNP tests on
        // these reports' siblings; here every 3rd byte of it, and every byte of the
        // IGVM header and variable data.
        let positions = (HW_REPORT_OFFSET..HW_REPORT_OFFSET + HW_REPORT_AREA).step_by(3).chain(0x4C0..end);
        for (n, off) in positions.enumerate() {
            let mut b = hcl.clone();
            b[off] ^= 1 << (n % 8);
            let ev = AzSnpEvidence { hcl_report: &b, tpm_quote: &quote, vcek: &vcek, chain: Some(&chain) };
            assert!(v.verify(&ev, &opts).is_err(), "flip at {off:#x} accepted");
        }
    }

    #[test]
    fn az_tdx_bit_flips_in_var_data_and_td_quote_are_refused() {
        let d = vectors().join("azure-tdx-vtpm/trustee-hcl-tdx");
        let hcl = std::fs::read(d.join("hcl_report.bin")).unwrap();
        let quote = std::fs::read(d.join("tpm_quote.json")).unwrap();
        let td = std::fs::read(d.join("td_quote.bin")).unwrap();
        let opts = at("2025-06-01T00:00:00Z").with_nonce(b"challenge".to_vec());
        let v = AzTdxVtpmVerifier::default();
        let ev = AzTdxEvidence { hcl_report: &hcl, tpm_quote: &quote, td_quote: &td, collateral: None, root: None };
        v.verify(&ev, &opts).unwrap();
        let end = 0x4D4 + parse_hcl_report(&hcl).unwrap().var_data.len();
        // The TDREPORT's REPORTDATA and every byte of the IGVM header and var-data.
        let rd = HW_REPORT_OFFSET + TDREPORT_REPORT_DATA;
        for (n, off) in (rd..rd + 64).chain(0x4C0..end).enumerate() {
            let mut b = hcl.clone();
            b[off] ^= 1 << (n % 8);
            let ev = AzTdxEvidence { hcl_report: &b, tpm_quote: &quote, td_quote: &td, collateral: None, root: None };
            assert!(v.verify(&ev, &opts).is_err(), "HCL flip at {off:#x} accepted");
        }
        // The TD quote (v4) from its header to the end of the QE report signature:
        // header 48, body 584, signature-data length 4, signature 64, attestation key
        // 64, certification-data type and size 6, QE report 384, its signature 64.
        // Sampled; the TDX tests flip every byte of every real quote.
        for (n, off) in (0..48 + 584 + 4 + 64 + 64 + 6 + 384 + 64).step_by(3).enumerate() {
            let mut b = td.clone();
            b[off] ^= 1 << (n % 8);
            let ev = AzTdxEvidence { hcl_report: &hcl, tpm_quote: &quote, td_quote: &b, collateral: None, root: None };
            assert!(v.verify(&ev, &opts).is_err(), "TD quote flip at {off} accepted");
        }
    }

    #[test]
    fn truncations_and_bad_headers_are_typed_errors() {
        let bytes = std::fs::read(vectors().join("azure-snp-vtpm/trustee-hcl-milan-v2/hcl_report.bin")).unwrap();
        let end = parse_hcl_report(&bytes).unwrap().var_data.len() + 0x4D4;
        for n in 0..end {
            assert!(parse_hcl_report(&bytes[..n]).is_err(), "truncated at {n}");
        }
        for (off, field) in [(0usize, "signature"), (4, "version"), (8, "report_size"), (0x4C4, "igvm.version")] {
            let mut b = bytes.clone();
            b[off] ^= 0x40;
            let e = parse_hcl_report(&b).unwrap_err();
            assert!(e.to_string().contains(field), "{field}: {e}");
        }
    }
}
