//! Simulated Intel TDX: DCAP quote v4 / v5 and the collateral that verifies it.
//!
//! ```text
//!  report_data, TdxOptions ─► header ‖ TD report body ─► ECDSA P-256 by the QE attestation key
//!  signature data: sig ‖ AK ‖ cert data type 6 { QE report ‖ PCK sig ‖ QE auth data ‖
//!                                                cert data type 5: PEM PCK ‖ Platform CA ‖ Root }
//!  collateral_json(issue, next) ─► dcap-qvl QuoteCollateralV3 JSON: TCB info v3, QE identity v2
//!                                  (signed by the TCB signing key), root CA CRL, PCK CRL
//! ```
//!
//! The QE report (and its PCK signature) were made once at fixture generation, binding
//! the attestation key: QE report_data = SHA-256(AK ‖ QE auth data) ‖ 0^32.

use ring::signature;
use serde::Serialize;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::keys::{self, Key};
use crate::{der, names, params};

/// Size of the quote header.
pub const HEADER_LEN: usize = 48;
/// Size of a TD 1.0 report body (quote v4).
pub const TD10_LEN: usize = 584;
/// Size of a TD 1.5 report body (quote v5, body type 3).
pub const TD15_LEN: usize = 648;

/// What the simulated TD reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdxOptions {
    /// Quote version: 4 (TD 1.0 body) or 5 (body descriptor + TD 1.5 body).
    pub version: u16,
    /// MRTD.
    pub mr_td: [u8; 48],
    /// RTMR0..=3.
    pub rtmr: [[u8; 48]; 4],
    /// MRCONFIGID.
    pub mr_config_id: [u8; 48],
    /// MROWNER.
    pub mr_owner: [u8; 48],
    /// MROWNERCONFIG.
    pub mr_owner_config: [u8; 48],
    /// TD_ATTRIBUTES as a little-endian u64 (default: SEPT_VE_DISABLE only).
    pub td_attributes: u64,
    /// XFAM as a little-endian u64.
    pub xfam: u64,
    /// TEE_TCB_SVN. The collateral's TCB levels are built for the default
    /// ([`params::tdx::TEE_TCB_SVN`]); lower values match its OutOfDate level or none.
    pub tee_tcb_svn: [u8; 16],
    /// TEE_TCB_SVN2 (version 5 only).
    pub tee_tcb_svn2: [u8; 16],
    /// MRSEAM.
    pub mr_seam: [u8; 48],
    /// MRSERVICETD (version 5 only).
    pub mr_service_td: [u8; 48],
}

fn sha384(data: &[u8]) -> [u8; 48] {
    use sha2::Digest as _;
    sha2::Sha384::digest(data).into()
}

impl Default for TdxOptions {
    fn default() -> Self {
        Self {
            version: 4,
            mr_td: sha384(b"veil-sim default MRTD"),
            rtmr: [
                sha384(b"veil-sim default RTMR0"),
                sha384(b"veil-sim default RTMR1"),
                sha384(b"veil-sim default RTMR2"),
                [0; 48],
            ],
            mr_config_id: [0; 48],
            mr_owner: [0; 48],
            mr_owner_config: [0; 48],
            td_attributes: 0x1000_0000,
            xfam: 0x0006_02E7,
            tee_tcb_svn: params::tdx::TEE_TCB_SVN,
            tee_tcb_svn2: params::tdx::TEE_TCB_SVN,
            mr_seam: sha384(b"veil-sim TDX module"),
            mr_service_td: [0; 48],
        }
    }
}

/// The TD report body (TD 1.0 layout, plus the TD 1.5 tail when `td15`).
fn td_body(report_data: &[u8; 64], o: &TdxOptions, td15: bool) -> Vec<u8> {
    let mut b = Vec::with_capacity(TD15_LEN);
    b.extend_from_slice(&o.tee_tcb_svn);
    b.extend_from_slice(&o.mr_seam);
    b.extend_from_slice(&[0; 48]); // MRSIGNERSEAM: Intel-signed module (zero)
    b.extend_from_slice(&[0; 8]); // SEAMATTRIBUTES
    b.extend_from_slice(&o.td_attributes.to_le_bytes());
    b.extend_from_slice(&o.xfam.to_le_bytes());
    b.extend_from_slice(&o.mr_td);
    b.extend_from_slice(&o.mr_config_id);
    b.extend_from_slice(&o.mr_owner);
    b.extend_from_slice(&o.mr_owner_config);
    for r in &o.rtmr {
        b.extend_from_slice(r);
    }
    b.extend_from_slice(report_data);
    if td15 {
        b.extend_from_slice(&o.tee_tcb_svn2);
        b.extend_from_slice(&o.mr_service_td);
    }
    b
}

fn len_u32(what: &'static str, len: usize) -> Result<[u8; 4]> {
    u32::try_from(len).map(u32::to_le_bytes).map_err(|_| Error::invalid(what, "longer than 4 GiB"))
}

/// The PCK chain as it appears in certification data type 5: PEM leaf, Platform CA,
/// root, then a NUL byte (as Intel's QE writes it).
fn pck_chain_pem_nul() -> Result<Vec<u8>> {
    let mut out = pck_chain_pem()?.into_bytes();
    out.push(0);
    Ok(out)
}

/// PEM of the PCK certificate chain: leaf, PCK Platform CA, root.
pub fn pck_chain_pem() -> Result<String> {
    let c = keys::certs()?;
    Ok([
        der::pem("CERTIFICATE", &c.pck),
        der::pem("CERTIFICATE", &c.platform_ca),
        der::pem("CERTIFICATE", &c.intel_root),
    ]
    .concat())
}

/// Produce a DCAP quote with `report_data`.
pub fn quote(report_data: &[u8; 64], opts: &TdxOptions) -> Result<Vec<u8>> {
    let td15 = match opts.version {
        4 => false,
        5 => true,
        v => return Err(Error::invalid("version", format!("{v} (supported: 4, 5)"))),
    };
    let certs = keys::certs()?;

    let mut q = Vec::with_capacity(5200);
    q.extend_from_slice(&opts.version.to_le_bytes());
    q.extend_from_slice(&2u16.to_le_bytes()); // attestation key type: ECDSA-256 with P-256
    q.extend_from_slice(&0x81u32.to_le_bytes()); // TEE type: TDX
    q.extend_from_slice(&[0; 4]); // reserved
    q.extend_from_slice(&params::tdx::QE_VENDOR_ID);
    q.extend_from_slice(&params::tdx::QE_ID);
    q.extend_from_slice(&[0; 4]); // user data tail
    let body = td_body(report_data, opts, td15);
    if td15 {
        q.extend_from_slice(&3u16.to_le_bytes()); // body type: TD report 1.5
        q.extend_from_slice(&len_u32("body", body.len())?);
    }
    q.extend_from_slice(&body);

    let sig = keys::sign(Key::QeAk, &signature::ECDSA_P256_SHA256_FIXED_SIGNING, "QE attestation key", &q)?;
    let ak = keys::p256_public(Key::QeAk)?;
    let ak_raw = ak.get(1..).ok_or(Error::Fixture("tdx/attestation_key.key.pem"))?;

    let chain = pck_chain_pem_nul()?;
    let auth_data = params::tdx::qe_auth_data();
    let mut qe_cert_data = Vec::with_capacity(chain.len() + 500);
    qe_cert_data.extend_from_slice(&certs.qe_report);
    qe_cert_data.extend_from_slice(&certs.qe_report_sig);
    qe_cert_data.extend_from_slice(&(auth_data.len() as u16).to_le_bytes());
    qe_cert_data.extend_from_slice(&auth_data);
    qe_cert_data.extend_from_slice(&5u16.to_le_bytes()); // PCK cert chain
    qe_cert_data.extend_from_slice(&len_u32("PCK chain", chain.len())?);
    qe_cert_data.extend_from_slice(&chain);

    let mut sig_data = Vec::with_capacity(qe_cert_data.len() + 140);
    sig_data.extend_from_slice(&sig);
    sig_data.extend_from_slice(ak_raw);
    sig_data.extend_from_slice(&6u16.to_le_bytes()); // QE report certification data
    sig_data.extend_from_slice(&len_u32("QE certification data", qe_cert_data.len())?);
    sig_data.extend_from_slice(&qe_cert_data);

    q.extend_from_slice(&len_u32("signature data", sig_data.len())?);
    q.extend_from_slice(&sig_data);
    Ok(q)
}

/// The simulated Intel SGX Root CA certificate (DER) — the trust anchor for
/// [`quote`] and [`collateral_json`].
pub fn root_der() -> &'static [u8] {
    keys::cert_or_empty(|c| &c.intel_root)
}

/// The simulated PCK Platform CA certificate (DER).
pub fn platform_ca_der() -> &'static [u8] {
    keys::cert_or_empty(|c| &c.platform_ca)
}

/// The simulated TCB Signing certificate (DER).
pub fn tcb_signing_der() -> &'static [u8] {
    keys::cert_or_empty(|c| &c.tcb_signing)
}

/// The simulated PCK leaf certificate (DER).
pub fn pck_der() -> &'static [u8] {
    keys::cert_or_empty(|c| &c.pck)
}

// ------------------------------------------------------------------ collateral

/// TCB date of the UpToDate levels.
pub const TCB_DATE_UP_TO_DATE: &str = "2025-01-15T00:00:00Z";
/// TCB date of the OutOfDate levels.
pub const TCB_DATE_OUT_OF_DATE: &str = "2023-08-09T00:00:00Z";
/// Advisory listed on the OutOfDate levels.
pub const SIM_ADVISORY: &str = "VEIL-SIM-SA-00001";
/// TCB evaluation data number of the simulated collateral.
pub const TCB_EVALUATION_DATA_NUMBER: u32 = 17;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TcbInfo {
    id: &'static str,
    version: u8,
    issue_date: String,
    next_update: String,
    fmspc: String,
    pce_id: String,
    tcb_type: u8,
    tcb_evaluation_data_number: u32,
    tdx_module: TdxModule,
    tdx_module_identities: Vec<TdxModuleIdentity>,
    tcb_levels: Vec<TcbLevel>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TdxModule {
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TdxModuleIdentity {
    id: String,
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
    tcb_levels: Vec<IsvTcbLevel>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IsvTcbLevel {
    tcb: IsvSvn,
    tcb_date: &'static str,
    tcb_status: &'static str,
    #[serde(rename = "advisoryIDs", skip_serializing_if = "Vec::is_empty")]
    advisory_ids: Vec<&'static str>,
}

#[derive(Serialize)]
struct IsvSvn {
    isvsvn: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TcbLevel {
    tcb: Tcb,
    tcb_date: &'static str,
    tcb_status: &'static str,
    #[serde(rename = "advisoryIDs", skip_serializing_if = "Vec::is_empty")]
    advisory_ids: Vec<&'static str>,
}

#[derive(Serialize)]
struct Tcb {
    sgxtcbcomponents: Vec<Component>,
    pcesvn: u16,
    tdxtcbcomponents: Vec<Component>,
}

#[derive(Serialize)]
struct Component {
    svn: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'static str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
}

fn sgx_components(svns: &[u8; 16]) -> Vec<Component> {
    let labels: [(Option<&'static str>, Option<&'static str>); 8] = [
        (Some("BIOS"), Some("Early Microcode Update")),
        (Some("OS/VMM"), Some("SGX Late Microcode Update")),
        (Some("OS/VMM"), Some("TXT SINIT")),
        (Some("BIOS"), None),
        (Some("BIOS"), None),
        (Some("BIOS"), None),
        (None, None),
        (Some("OS/VMM"), Some("SEAMLDR ACM")),
    ];
    svns.iter()
        .enumerate()
        .map(|(i, svn)| {
            let (category, kind) = labels.get(i).copied().unwrap_or((None, None));
            Component { svn: *svn, category, kind }
        })
        .collect()
}

fn tdx_components(svns: &[u8; 16]) -> Vec<Component> {
    let labels: [(Option<&'static str>, Option<&'static str>); 3] = [
        (Some("OS/VMM"), Some("TDX Module")),
        (Some("OS/VMM"), Some("TDX Module")),
        (Some("OS/VMM"), Some("TDX Late Microcode Update")),
    ];
    svns.iter()
        .enumerate()
        .map(|(i, svn)| {
            let (category, kind) = labels.get(i).copied().unwrap_or((None, None));
            Component { svn: *svn, category, kind }
        })
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QeIdentity {
    id: &'static str,
    version: u8,
    issue_date: String,
    next_update: String,
    tcb_evaluation_data_number: u32,
    miscselect: &'static str,
    miscselect_mask: &'static str,
    attributes: &'static str,
    attributes_mask: &'static str,
    mrsigner: String,
    isvprodid: u16,
    tcb_levels: Vec<IsvTcbLevel>,
}

/// dcap-qvl's `QuoteCollateralV3` wire form: the verifier's own definition, so writer
/// and reader cannot disagree.
use veil_attestation::tdx::CollateralJson as Collateral;

/// RFC 3339 UTC with whole seconds, as Intel's PCS writes dates.
pub(crate) fn rfc3339(t: OffsetDateTime) -> Result<String> {
    let t = t
        .to_offset(time::UtcOffset::UTC)
        .replace_nanosecond(0)
        .map_err(|e| Error::Encode { what: "timestamp", reason: e.to_string() })?;
    t.format(&time::format_description::well_known::Rfc3339)
        .map_err(|e| Error::Encode { what: "timestamp", reason: e.to_string() })
}

fn tcb_info_json(issue: &str, next: &str) -> Result<String> {
    let svn = params::tdx::TEE_TCB_SVN;
    let mut up_tdx = [0u8; 16];
    up_tdx[0] = svn[0];
    up_tdx[2] = svn[2];
    let old_sgx = params::tdx::SGX_COMPONENTS.map(|s| s.saturating_sub(1));
    let mut old_tdx = [0u8; 16];
    old_tdx[0] = 2;
    old_tdx[2] = 1;
    let zero96 = "0".repeat(96);
    let info = TcbInfo {
        id: "TDX",
        version: 3,
        issue_date: issue.to_owned(),
        next_update: next.to_owned(),
        fmspc: hex::encode_upper(params::tdx::FMSPC),
        pce_id: hex::encode_upper(params::tdx::PCE_ID),
        tcb_type: 0,
        tcb_evaluation_data_number: TCB_EVALUATION_DATA_NUMBER,
        tdx_module: TdxModule {
            mrsigner: zero96.clone(),
            attributes: "0000000000000000".into(),
            attributes_mask: "FFFFFFFFFFFFFFFF".into(),
        },
        tdx_module_identities: vec![TdxModuleIdentity {
            id: format!("TDX_{:02X}", svn[1]),
            mrsigner: zero96,
            attributes: "0000000000000000".into(),
            attributes_mask: "FFFFFFFFFFFFFFFF".into(),
            tcb_levels: vec![
                IsvTcbLevel {
                    tcb: IsvSvn { isvsvn: svn[0].into() },
                    tcb_date: TCB_DATE_UP_TO_DATE,
                    tcb_status: "UpToDate",
                    advisory_ids: vec![],
                },
                IsvTcbLevel {
                    tcb: IsvSvn { isvsvn: 2 },
                    tcb_date: TCB_DATE_OUT_OF_DATE,
                    tcb_status: "OutOfDate",
                    advisory_ids: vec![SIM_ADVISORY],
                },
            ],
        }],
        tcb_levels: vec![
            TcbLevel {
                tcb: Tcb {
                    sgxtcbcomponents: sgx_components(&params::tdx::SGX_COMPONENTS),
                    pcesvn: params::tdx::PCE_SVN,
                    tdxtcbcomponents: tdx_components(&up_tdx),
                },
                tcb_date: TCB_DATE_UP_TO_DATE,
                tcb_status: "UpToDate",
                advisory_ids: vec![],
            },
            TcbLevel {
                tcb: Tcb {
                    sgxtcbcomponents: sgx_components(&old_sgx),
                    pcesvn: params::tdx::PCE_SVN.saturating_sub(2),
                    tdxtcbcomponents: tdx_components(&old_tdx),
                },
                tcb_date: TCB_DATE_OUT_OF_DATE,
                tcb_status: "OutOfDate",
                advisory_ids: vec![SIM_ADVISORY],
            },
        ],
    };
    serde_json::to_string(&info).map_err(|e| Error::Encode { what: "TCB info", reason: e.to_string() })
}

fn qe_identity_json(issue: &str, next: &str) -> Result<String> {
    let id = QeIdentity {
        id: "TD_QE",
        version: 2,
        issue_date: issue.to_owned(),
        next_update: next.to_owned(),
        tcb_evaluation_data_number: TCB_EVALUATION_DATA_NUMBER,
        miscselect: "00000000",
        miscselect_mask: "FFFFFFFF",
        attributes: "11000000000000000000000000000000",
        attributes_mask: "FBFFFFFFFFFFFFFF0000000000000000",
        mrsigner: hex::encode_upper(params::tdx::QE_MRSIGNER),
        isvprodid: params::tdx::QE_ISV_PROD_ID,
        tcb_levels: vec![
            IsvTcbLevel {
                tcb: IsvSvn { isvsvn: params::tdx::QE_ISV_SVN },
                tcb_date: TCB_DATE_UP_TO_DATE,
                tcb_status: "UpToDate",
                advisory_ids: vec![],
            },
            IsvTcbLevel {
                tcb: IsvSvn { isvsvn: params::tdx::QE_ISV_SVN.saturating_sub(2) },
                tcb_date: TCB_DATE_OUT_OF_DATE,
                tcb_status: "OutOfDate",
                advisory_ids: vec![SIM_ADVISORY],
            },
        ],
    };
    serde_json::to_string(&id).map_err(|e| Error::Encode { what: "QE identity", reason: e.to_string() })
}

/// A v2 CRL signed with ECDSA P-256/SHA-256 by `issuer_key`, shaped like Intel's:
/// CRL Number 1 and the issuer's key identifier; `revoked` lists (serial, reason).
fn crl(
    issuer_cn: &str,
    issuer_key: Key,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
    revoked: &[(&[u8], u64)],
) -> Result<Vec<u8>> {
    use ring::signature::KeyPair as _;
    let pair = issuer_key.load(&signature::ECDSA_P256_SHA256_ASN1_SIGNING)?;
    let key_id = names::key_id(pair.public_key().as_ref());
    let alg = der::alg_ecdsa_sha256();
    let issuer = names::intel_name(issuer_cn);
    let this = der::time(this_update);
    let next = der::time(next_update);
    let entries: Vec<Vec<u8>> = revoked
        .iter()
        .map(|(serial, reason)| {
            let reason_ext = der::extension(der::oids::CRL_REASON, false, &der::enumerated(*reason));
            der::seq(&[&der::uint_bytes(serial), &this, &der::seq(&[&reason_ext])])
        })
        .collect();
    let entry_refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    let revoked_seq = if entries.is_empty() { Vec::new() } else { der::seq(&entry_refs) };
    let exts = der::ctx_cons(
        0,
        &der::seq(&[
            &der::extension(der::oids::CRL_NUMBER, false, &der::uint(1)),
            &der::extension(der::oids::AKI, false, &der::aki(&key_id)),
        ]),
    );
    let tbs = der::seq(&[&der::uint(1), &alg, &issuer, &this, &next, &revoked_seq, &exts]);
    let sig = pair.sign(&ring::rand::SystemRandom::new(), &tbs).map_err(|_| Error::Signing("CRL issuer"))?;
    Ok(der::seq(&[&tbs, &alg, &der::bits(sig.as_ref())]))
}

/// The simulated root CA CRL (no revocations), DER.
pub fn root_ca_crl(this_update: OffsetDateTime, next_update: OffsetDateTime) -> Result<Vec<u8>> {
    crl(params::tdx::ROOT_CN, Key::IntelRoot, this_update, next_update, &[])
}

/// Serial number listed (revoked, keyCompromise) in the simulated PCK CRL; it belongs
/// to no simulated certificate.
pub const REVOKED_PCK_SERIAL: [u8; 20] = *b"\x7eveil-sim-revoked-01";

/// The simulated PCK Platform CA CRL, DER. Lists [`REVOKED_PCK_SERIAL`].
pub fn pck_crl(this_update: OffsetDateTime, next_update: OffsetDateTime) -> Result<Vec<u8>> {
    crl(params::tdx::PLATFORM_CA_CN, Key::PlatformCa, this_update, next_update, &[(&REVOKED_PCK_SERIAL, 1)])
}

/// Collateral for [`quote`] as dcap-qvl `QuoteCollateralV3` JSON: TCB info v3 for the
/// simulated FMSPC (levels UpToDate = the simulated TCB, and an older OutOfDate level),
/// QE identity v2 (TD_QE), both signed by the simulated TCB Signing key, the root CA CRL
/// and the PCK CRL (thisUpdate = `issue`, nextUpdate = `next_update`) and the issuer
/// chains. Verify at a time in `issue..=next_update`.
pub fn collateral_json(issue: OffsetDateTime, next_update: OffsetDateTime) -> Result<Vec<u8>> {
    if next_update <= issue {
        return Err(Error::invalid("next_update", "must be after issue"));
    }
    let c = keys::certs()?;
    let issue_s = rfc3339(issue)?;
    let next_s = rfc3339(next_update)?;
    let tcb_info = tcb_info_json(&issue_s, &next_s)?;
    let qe_identity = qe_identity_json(&issue_s, &next_s)?;
    let fixed = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
    let tcb_sig = keys::sign(Key::TcbSigning, fixed, "TCB signing key", tcb_info.as_bytes())?;
    let qe_sig = keys::sign(Key::TcbSigning, fixed, "TCB signing key", qe_identity.as_bytes())?;
    let root_pem = der::pem("CERTIFICATE", &c.intel_root);
    let signing_chain = [der::pem("CERTIFICATE", &c.tcb_signing), root_pem.clone()].concat();
    let collateral = Collateral {
        pck_crl_issuer_chain: [der::pem("CERTIFICATE", &c.platform_ca), root_pem].concat(),
        root_ca_crl: hex::encode(root_ca_crl(issue, next_update)?),
        pck_crl: hex::encode(pck_crl(issue, next_update)?),
        tcb_info_issuer_chain: signing_chain.clone(),
        tcb_info,
        tcb_info_signature: hex::encode(tcb_sig),
        qe_identity_issuer_chain: signing_chain,
        qe_identity,
        qe_identity_signature: hex::encode(qe_sig),
    };
    serde_json::to_vec_pretty(&collateral).map_err(|e| Error::Encode { what: "collateral", reason: e.to_string() })
}
