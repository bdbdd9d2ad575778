//! The TDX quote layout (Intel TDX DCAP Quote Generation Library and Quote
//! Verification Library, "Quote Format" appendix; `sgx_quote_4.h`, `sgx_quote_5.h`),
//! parsed through [`Reader`] to the lengths the quote declares.
//!
//! ```text
//! Quote v4                         Quote v5
//! ┌ header (48)                    ┌ header (48)
//! ├ TD report body 1.0 (584)       ├ body type u16 (2 = TD 1.0, 3 = TD 1.5)
//! │                                ├ body size u32 (584 / 648)
//! │                                ├ TD report body (body size)
//! ├─────────── signed region: everything above, as received ───────────
//! ├ signature data length u32
//! └ signature data (that length)
//!    ├ ECDSA P-256 quote signature r‖s (64)
//!    ├ ECDSA P-256 attestation public key x‖y (64)
//!    ├ certification data type u16 = 6 (QE report certification data)
//!    ├ certification data size u32
//!    └ certification data (that size)
//!       ├ QE report (384, an SGX REPORT body)
//!       ├ QE report signature r‖s by the PCK key (64)
//!       ├ QE authentication data size u16 + bytes
//!       ├ certification data type u16 = 5 (PCK certificate chain, PEM)
//!       ├ certification data size u32
//!       └ PCK chain PEM (leaf, PCK CA, root)
//! [bytes after the declared end: tolerated, counted, never read]
//! ```
//!
//! Every length-prefixed container must be filled exactly by what it declares;
//! only bytes *after* the outer signature data are tolerated (several real quotes
//! carry 39–70 such bytes, which every reference verifier ignores). They never
//! reach a signature check or a claim.

use serde::Serialize;

use crate::error::ParseError;
use crate::reader::Reader;

const STRUCTURE: &str = "TDX quote";

/// The QE vendor ID of Intel's quoting enclave (`939A7233-F79C-4CA9-940A-0DB3957F0607`).
pub const INTEL_QE_VENDOR_ID: [u8; 16] =
    [0x93, 0x9A, 0x72, 0x33, 0xF7, 0x9C, 0x4C, 0xA9, 0x94, 0x0A, 0x0D, 0xB3, 0x95, 0x7F, 0x06, 0x07];
/// Attestation key type 2: ECDSA-256 with the P-256 curve.
pub const ATTESTATION_KEY_ECDSA_P256: u16 = 2;
/// TEE type of a TDX quote.
pub const TEE_TYPE_TDX: u32 = 0x81;
/// Size of a TD 1.0 report body.
pub const TD10_BODY_LEN: usize = 584;
/// Size of a TD 1.5 report body.
pub const TD15_BODY_LEN: usize = 648;
/// Size of the SGX report body that holds the QE report.
pub const QE_REPORT_LEN: usize = 384;
/// Certification data type 5: PCK certificate chain (PEM).
pub const CERT_DATA_PCK_CHAIN: u16 = 5;
/// Certification data type 6: QE report certification data.
pub const CERT_DATA_QE_REPORT: u16 = 6;

/// The 48-byte quote header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteHeader {
    /// 4 or 5.
    pub version: u16,
    /// 2 (ECDSA P-256).
    pub attestation_key_type: u16,
    /// 0x81 (TDX).
    pub tee_type: u32,
    /// Reserved in TDX quotes (QE SVN in SGX quotes); signed, not interpreted.
    pub qe_svn: u16,
    /// Reserved in TDX quotes (PCE SVN in SGX quotes); signed, not interpreted.
    pub pce_svn: u16,
    /// Intel's QE vendor ID.
    pub qe_vendor_id: [u8; 16],
    /// QE-specific user data (the first 16 bytes are the QE ID).
    pub user_data: [u8; 20],
}

/// Which TD report body the quote carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BodyType {
    /// TD 1.0 report body (584 bytes): quote v4, or v5 body type 2.
    Td10,
    /// TD 1.5 report body (648 bytes): quote v5 body type 3.
    Td15,
}

/// The TD report body (TDX module ABI `TDREPORT` fields that the TDQE copies
/// into the quote). Fields are in the order of the layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdReport {
    /// TEE_TCB_SVN: [0] TDX module ISVSVN, [1] module major version, [2..] other SVNs.
    pub tee_tcb_svn: [u8; 16],
    /// MRSEAM: measurement of the TDX module.
    pub mr_seam: [u8; 48],
    /// MRSIGNER_SEAM: signer of the TDX module (zero for Intel's).
    pub mr_signer_seam: [u8; 48],
    /// SEAMATTRIBUTES.
    pub seam_attributes: [u8; 8],
    /// TDATTRIBUTES (bit 0 = DEBUG).
    pub td_attributes: [u8; 8],
    /// XFAM.
    pub xfam: [u8; 8],
    /// MRTD: build-time measurement of the TD.
    pub mr_td: [u8; 48],
    /// MRCONFIGID: software-defined configuration ID (Veil: init-data digest).
    pub mr_config_id: [u8; 48],
    /// MROWNER.
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG.
    pub mr_owner_config: [u8; 48],
    /// RTMR0..RTMR3.
    pub rtmr: [[u8; 48]; 4],
    /// REPORTDATA.
    pub report_data: [u8; 64],
    /// TD 1.5 fields, present for body type 3.
    pub td15: Option<Td15Fields>,
}

/// The fields a TD 1.5 report body adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Td15Fields {
    /// TEE_TCB_SVN2: the current TCB after a TD-preserving module update.
    pub tee_tcb_svn2: [u8; 16],
    /// MRSERVICETD: hash of the bound service TDs.
    pub mr_servicetd: [u8; 48],
}

/// The QE report: an SGX REPORT body (384 bytes). Reserved and extended fields are
/// covered by the QE report signature and not interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QeReport {
    /// CPUSVN.
    pub cpu_svn: [u8; 16],
    /// MISCSELECT.
    pub misc_select: u32,
    /// ATTRIBUTES (byte 0 bit 1 = DEBUG).
    pub attributes: [u8; 16],
    /// MRENCLAVE.
    pub mr_enclave: [u8; 32],
    /// MRSIGNER.
    pub mr_signer: [u8; 32],
    /// ISVPRODID.
    pub isv_prod_id: u16,
    /// ISVSVN.
    pub isv_svn: u16,
    /// REPORTDATA: SHA-256(attestation key ‖ QE authentication data) ‖ 32 zero bytes.
    pub report_data: [u8; 64],
}

/// A parsed TDX quote. Byte fields borrow from the quote as received; the signed
/// region is the received header‖body, never a re-encoding.
#[derive(Debug, Clone)]
pub struct Quote<'a> {
    /// The header.
    pub header: QuoteHeader,
    /// The body type (v4 quotes always carry a TD 1.0 body).
    pub body_type: BodyType,
    /// The TD report body.
    pub td_report: TdReport,
    /// ECDSA P-256 signature (r‖s) by the attestation key over [`Quote::signed_region`].
    pub signature: [u8; 64],
    /// The attestation public key (x‖y, uncompressed point without the 0x04 prefix).
    pub attestation_key: [u8; 64],
    /// The QE report, parsed.
    pub qe_report: QeReport,
    /// ECDSA P-256 signature (r‖s) by the PCK key over [`Quote::qe_report_bytes`].
    pub qe_report_signature: [u8; 64],
    /// QE authentication data.
    pub qe_auth_data: &'a [u8],
    /// The PCK certificate chain, PEM, as carried in the quote.
    pub pck_chain_pem: &'a [u8],
    signed: &'a [u8],
    qe_report_bytes: &'a [u8],
    trailing: &'a [u8],
}

impl<'a> Quote<'a> {
    /// Header‖body exactly as received: what the attestation key signed.
    pub fn signed_region(&self) -> &'a [u8] {
        self.signed
    }

    /// The QE report exactly as received: what the PCK key signed.
    pub fn qe_report_bytes(&self) -> &'a [u8] {
        self.qe_report_bytes
    }

    /// Bytes after the declared end of the quote (tolerated, never interpreted).
    pub fn trailing_len(&self) -> usize {
        self.trailing.len()
    }
}

fn usize_from(n: u32, r: &Reader<'_>, field: &'static str) -> Result<usize, ParseError> {
    usize::try_from(n).map_err(|_| r.error(field, format!("length {n} does not fit in memory")))
}

/// Parse a TDX quote (v4 or v5) to its declared lengths. Anything missing or
/// inconsistent is a [`ParseError`] naming the field; bytes after the declared
/// end are kept aside (see [`Quote::trailing_len`]).
pub fn parse(bytes: &[u8]) -> Result<Quote<'_>, ParseError> {
    let mut r = Reader::new(bytes, STRUCTURE);

    let version = r.u16_le("header.version")?;
    if version != 4 && version != 5 {
        return Err(r.error("header.version", format!("expected 4 or 5, found {version}")));
    }
    let attestation_key_type = r.u16_le("header.attestation_key_type")?;
    if attestation_key_type != ATTESTATION_KEY_ECDSA_P256 {
        return Err(r.error(
            "header.attestation_key_type",
            format!("expected {ATTESTATION_KEY_ECDSA_P256} (ECDSA P-256), found {attestation_key_type}"),
        ));
    }
    let tee_type = r.u32_le("header.tee_type")?;
    if tee_type != TEE_TYPE_TDX {
        return Err(r.error("header.tee_type", format!("expected 0x81 (TDX), found {tee_type:#x}")));
    }
    let qe_svn = r.u16_le("header.qe_svn")?;
    let pce_svn = r.u16_le("header.pce_svn")?;
    let qe_vendor_id: [u8; 16] = r.array("header.qe_vendor_id")?;
    if qe_vendor_id != INTEL_QE_VENDOR_ID {
        return Err(r.error(
            "header.qe_vendor_id",
            format!("expected Intel {}, found {}", hex::encode(INTEL_QE_VENDOR_ID), hex::encode(qe_vendor_id)),
        ));
    }
    let user_data: [u8; 20] = r.array("header.user_data")?;
    let header = QuoteHeader { version, attestation_key_type, tee_type, qe_svn, pce_svn, qe_vendor_id, user_data };

    let (body_type, body_len) = if version == 5 {
        let ty = r.u16_le("body.type")?;
        let size = r.u32_le("body.size")?;
        let (body_type, expected) = match ty {
            2 => (BodyType::Td10, TD10_BODY_LEN),
            3 => (BodyType::Td15, TD15_BODY_LEN),
            other => {
                return Err(r.error("body.type", format!("expected 2 (TD 1.0) or 3 (TD 1.5), found {other}")));
            }
        };
        if usize::try_from(size).ok() != Some(expected) {
            return Err(r.error("body.size", format!("body type {ty} has {expected} bytes, header says {size}")));
        }
        (body_type, expected)
    } else {
        (BodyType::Td10, TD10_BODY_LEN)
    };
    let mut body = r.sub(body_len, "body")?;
    let td_report = parse_td_report(&mut body, body_type)?;
    body.expect_end("body")?;

    let signed_len = r.position();
    let signed = bytes.get(..signed_len).ok_or_else(|| r.error("body", "signed region out of range"))?;

    let sig_len = r.u32_le("signature_data_length")?;
    let sig_len = usize_from(sig_len, &r, "signature_data_length")?;
    let mut s = r.sub(sig_len, "signature_data")?;
    let signature = s.array("signature_data.quote_signature")?;
    let attestation_key = s.array("signature_data.attestation_key")?;
    let cert_type = s.u16_le("signature_data.certification_data.type")?;
    if cert_type != CERT_DATA_QE_REPORT {
        return Err(s.error(
            "signature_data.certification_data.type",
            format!("expected {CERT_DATA_QE_REPORT} (QE report certification data), found {cert_type}"),
        ));
    }
    let cert_size = s.u32_le("signature_data.certification_data.size")?;
    let cert_size = usize_from(cert_size, &s, "signature_data.certification_data.size")?;
    let mut c = s.sub(cert_size, "signature_data.certification_data")?;
    s.expect_end("signature_data")?;

    let qe_report_bytes = c.take(QE_REPORT_LEN, "qe_report")?;
    let qe_report = parse_qe_report(qe_report_bytes)?;
    let qe_report_signature = c.array("qe_report_signature")?;
    let auth_len = c.u16_le("qe_auth_data.size")?;
    let qe_auth_data = c.take(usize::from(auth_len), "qe_auth_data")?;
    let inner_type = c.u16_le("pck_certification_data.type")?;
    if inner_type != CERT_DATA_PCK_CHAIN {
        return Err(c.error(
            "pck_certification_data.type",
            format!("expected {CERT_DATA_PCK_CHAIN} (PCK certificate chain), found {inner_type}"),
        ));
    }
    let inner_size = c.u32_le("pck_certification_data.size")?;
    let inner_size = usize_from(inner_size, &c, "pck_certification_data.size")?;
    let pck_chain_pem = c.take(inner_size, "pck_certification_data")?;
    c.expect_end("signature_data.certification_data")?;

    Ok(Quote {
        header,
        body_type,
        td_report,
        signature,
        attestation_key,
        qe_report,
        qe_report_signature,
        qe_auth_data,
        pck_chain_pem,
        signed,
        qe_report_bytes,
        trailing: r.rest(),
    })
}

fn parse_td_report(r: &mut Reader<'_>, body_type: BodyType) -> Result<TdReport, ParseError> {
    let tee_tcb_svn = r.array("body.tee_tcb_svn")?;
    let mr_seam = r.array("body.mr_seam")?;
    let mr_signer_seam = r.array("body.mr_signer_seam")?;
    let seam_attributes = r.array("body.seam_attributes")?;
    let td_attributes = r.array("body.td_attributes")?;
    let xfam = r.array("body.xfam")?;
    let mr_td = r.array("body.mr_td")?;
    let mr_config_id = r.array("body.mr_config_id")?;
    let mr_owner = r.array("body.mr_owner")?;
    let mr_owner_config = r.array("body.mr_owner_config")?;
    let rtmr = [r.array("body.rtmr0")?, r.array("body.rtmr1")?, r.array("body.rtmr2")?, r.array("body.rtmr3")?];
    let report_data = r.array("body.report_data")?;
    let td15 = match body_type {
        BodyType::Td10 => None,
        BodyType::Td15 => Some(Td15Fields {
            tee_tcb_svn2: r.array("body.tee_tcb_svn2")?,
            mr_servicetd: r.array("body.mr_servicetd")?,
        }),
    };
    Ok(TdReport {
        tee_tcb_svn,
        mr_seam,
        mr_signer_seam,
        seam_attributes,
        td_attributes,
        xfam,
        mr_td,
        mr_config_id,
        mr_owner,
        mr_owner_config,
        rtmr,
        report_data,
        td15,
    })
}

fn parse_qe_report(bytes: &[u8]) -> Result<QeReport, ParseError> {
    let mut r = Reader::new(bytes, STRUCTURE);
    let cpu_svn = r.array("qe_report.cpu_svn")?;
    let misc_select = r.u32_le("qe_report.misc_select")?;
    r.skip(28, "qe_report.reserved1")?;
    let attributes = r.array("qe_report.attributes")?;
    let mr_enclave = r.array("qe_report.mr_enclave")?;
    r.skip(32, "qe_report.reserved2")?;
    let mr_signer = r.array("qe_report.mr_signer")?;
    r.skip(96, "qe_report.reserved3")?;
    let isv_prod_id = r.u16_le("qe_report.isv_prod_id")?;
    let isv_svn = r.u16_le("qe_report.isv_svn")?;
    r.skip(60, "qe_report.reserved4")?;
    let report_data = r.array("qe_report.report_data")?;
    r.expect_end("qe_report")?;
    Ok(QeReport { cpu_svn, misc_select, attributes, mr_enclave, mr_signer, isv_prod_id, isv_svn, report_data })
}
