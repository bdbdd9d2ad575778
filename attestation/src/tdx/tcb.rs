//! Intel TCB info (v3, `id = "TDX"`) and QE identity (v2, `id = "TD_QE"`) as
//! typed values, and the TCB-level matching of Intel's QVL as dcap-qvl 0.7.1
//! implements it:
//!
//! 1. TCB levels are ordered like QVL (SGX components, then PCESVN, then TDX
//!    components, highest first) — the JSON order is not trusted.
//! 2. The first level met by all 16 SGX components (PCK certificate CPUSVN), then
//!    the PCESVN, then the TDX components (TEE_TCB_SVN; components 0 and 1 are left
//!    to the TDX module identity when the module version TEE_TCB_SVN[1] is non-zero)
//!    is the platform level; none → `NoMatchingTcbLevel`.
//! 3. With a module version, the identity `TDX_<TEE_TCB_SVN[1] as %02X>` must exist;
//!    its first level met by TEE_TCB_SVN[0] converges with the platform status
//!    (only `OutOfDate` / `Revoked` components change it), advisories are merged
//!    and the older TCB date is kept.
//! 4. The QE: MRSIGNER, ISVPRODID, masked MISCSELECT and ATTRIBUTES must match; the
//!    first QE level with ISVSVN ≤ the QE's gives the QE status, which converges
//!    with the platform status the same way.
//! 5. A TD 1.5 body's TEE_TCB_SVN2 (current TCB) must match a level too;
//!    `Revoked` anywhere refuses; an out-of-date launch TCB with an acceptable
//!    current TCB becomes `TDRelaunchAdvised[ConfigurationNeeded]`.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{Error, Result};

/// A TCB status from Intel's collateral, or one derived by the convergence rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TcbStatus {
    /// The platform is patched for every known issue.
    UpToDate,
    /// Up to date, but software mitigations are needed.
    SWHardeningNeeded,
    /// Up to date, but the platform configuration needs attention.
    ConfigurationNeeded,
    /// Both of the above.
    ConfigurationAndSWHardeningNeeded,
    /// The platform is missing security updates.
    OutOfDate,
    /// Out of date, and the configuration needs attention.
    OutOfDateConfigurationNeeded,
    /// The platform's keys are compromised (always refused).
    Revoked,
    /// TD 1.5: launched on an out-of-date TCB, current TCB is not out of date.
    TDRelaunchAdvised,
    /// TD 1.5: as above, with configuration needed.
    TDRelaunchAdvisedConfigurationNeeded,
}

impl TcbStatus {
    /// The status as Intel spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TcbStatus::UpToDate => "UpToDate",
            TcbStatus::SWHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::ConfigurationAndSWHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::Revoked => "Revoked",
            TcbStatus::TDRelaunchAdvised => "TDRelaunchAdvised",
            TcbStatus::TDRelaunchAdvisedConfigurationNeeded => "TDRelaunchAdvisedConfigurationNeeded",
        }
    }

    /// Parse a status that may appear in `structure` (QVL accepts a different set
    /// in TCB info levels, TDX module levels and QE identity levels).
    fn parse(s: &str, allowed: &[TcbStatus], structure: &str) -> Result<Self> {
        allowed
            .iter()
            .copied()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| Error::Collateral(format!("{structure}: unrecognised tcbStatus {s:?}")))
    }

    /// QVL `convergeTcbStatuses`: only an `OutOfDate` or `Revoked` component changes
    /// the platform status.
    pub(crate) fn converge(self, component: TcbStatus) -> TcbStatus {
        use TcbStatus::*;
        match (component, self) {
            (Revoked, _) => Revoked,
            (OutOfDate, UpToDate | SWHardeningNeeded) => OutOfDate,
            (OutOfDate, ConfigurationNeeded | ConfigurationAndSWHardeningNeeded) => OutOfDateConfigurationNeeded,
            _ => self,
        }
    }

    /// QVL `checkForRelaunch`: combine a TD 1.5's launch and current statuses.
    pub(crate) fn check_for_relaunch(self, current: TcbStatus) -> TcbStatus {
        use TcbStatus::*;
        let config = |s| {
            matches!(
                s,
                ConfigurationNeeded
                    | OutOfDateConfigurationNeeded
                    | ConfigurationAndSWHardeningNeeded
                    | TDRelaunchAdvisedConfigurationNeeded
            )
        };
        match (self, current) {
            (
                OutOfDate | OutOfDateConfigurationNeeded,
                UpToDate | SWHardeningNeeded | ConfigurationNeeded | ConfigurationAndSWHardeningNeeded,
            ) => {
                if config(self) || config(current) {
                    TDRelaunchAdvisedConfigurationNeeded
                } else {
                    TDRelaunchAdvised
                }
            }
            _ => self,
        }
    }
}

impl std::fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

use TcbStatus::*;
const TCB_INFO_STATUSES: &[TcbStatus] = &[
    UpToDate,
    SWHardeningNeeded,
    ConfigurationNeeded,
    ConfigurationAndSWHardeningNeeded,
    OutOfDate,
    OutOfDateConfigurationNeeded,
    Revoked,
];
const TDX_MODULE_STATUSES: &[TcbStatus] = &[UpToDate, OutOfDate, Revoked];
const QE_STATUSES: &[TcbStatus] = &[UpToDate, ConfigurationNeeded, OutOfDate, OutOfDateConfigurationNeeded, Revoked];

/// A date from collateral: the text (for claims) and its Unix time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Date {
    pub text: String,
    pub unix: i64,
}

fn date(s: &str, field: &str) -> Result<Date> {
    let t = OffsetDateTime::parse(s, &Rfc3339)
        .map_err(|e| Error::Collateral(format!("{field}: {s:?} is not an RFC 3339 date: {e}")))?;
    Ok(Date { text: s.to_string(), unix: t.unix_timestamp() })
}

fn hex_array<const N: usize>(s: &str, field: &str) -> Result<[u8; N]> {
    let v = hex::decode(s).map_err(|e| Error::Collateral(format!("{field}: not hex: {e}")))?;
    <[u8; N]>::try_from(v.as_slice())
        .map_err(|_| Error::Collateral(format!("{field}: expected {N} bytes, found {}", v.len())))
}

// ---------------------------------------------------------------- wire (serde) ---

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireTcbInfo {
    id: String,
    version: u32,
    issue_date: String,
    next_update: String,
    fmspc: String,
    pce_id: String,
    tcb_type: u32,
    tcb_evaluation_data_number: u32,
    tcb_levels: Vec<WireTcbLevel>,
    #[serde(default)]
    tdx_module: Option<WireModule>,
    #[serde(default)]
    tdx_module_identities: Vec<WireModuleIdentity>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireTcbLevel {
    tcb: WireTcb,
    tcb_date: String,
    tcb_status: String,
    #[serde(rename = "advisoryIDs", default)]
    advisory_ids: Vec<String>,
}

#[derive(Deserialize)]
struct WireTcb {
    sgxtcbcomponents: Vec<WireComponent>,
    #[serde(default)]
    tdxtcbcomponents: Vec<WireComponent>,
    pcesvn: u16,
}

#[derive(Deserialize)]
struct WireComponent {
    svn: u8,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireModule {
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireModuleIdentity {
    id: String,
    mrsigner: String,
    attributes: String,
    attributes_mask: String,
    tcb_levels: Vec<WireModuleLevel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireModuleLevel {
    tcb: WireIsvSvn<u8>,
    tcb_date: String,
    tcb_status: String,
    #[serde(rename = "advisoryIDs", default)]
    advisory_ids: Vec<String>,
}

#[derive(Deserialize)]
struct WireIsvSvn<T> {
    isvsvn: T,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireQeIdentity {
    id: String,
    version: u32,
    issue_date: String,
    next_update: String,
    tcb_evaluation_data_number: u32,
    miscselect: String,
    miscselect_mask: String,
    attributes: String,
    attributes_mask: String,
    mrsigner: String,
    isvprodid: u16,
    tcb_levels: Vec<WireQeLevel>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireQeLevel {
    tcb: WireIsvSvn<u16>,
    tcb_date: String,
    tcb_status: String,
    #[serde(rename = "advisoryIDs", default)]
    advisory_ids: Vec<String>,
}

// ---------------------------------------------------------------- typed ---

/// TCB info for a TDX platform (FMSPC), after its signature was verified.
#[derive(Debug, Clone)]
pub(crate) struct TcbInfo {
    pub issue_date: Date,
    pub next_update: Date,
    pub fmspc: [u8; 6],
    pub pce_id: [u8; 2],
    pub tcb_evaluation_data_number: u32,
    /// Ordered as QVL orders them (see the module docs).
    pub levels: Vec<TcbLevel>,
    pub tdx_module: ModuleIdentity,
    pub module_identities: Vec<(String, ModuleIdentity)>,
}

#[derive(Debug, Clone)]
pub(crate) struct TcbLevel {
    pub sgx: [u8; 16],
    pub pce_svn: u16,
    pub tdx: [u8; 16],
    pub date: Date,
    pub status: TcbStatus,
    pub advisory_ids: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct ModuleIdentity {
    pub mrsigner: [u8; 48],
    pub attributes: [u8; 8],
    pub attributes_mask: [u8; 8],
    /// In JSON order (QVL takes the first level met).
    pub levels: Vec<ModuleLevel>,
}

#[derive(Debug, Clone)]
pub(crate) struct ModuleLevel {
    pub isvsvn: u8,
    pub date: Date,
    pub status: TcbStatus,
    pub advisory_ids: Vec<String>,
}

/// QE identity of the TD quoting enclave, after its signature was verified.
#[derive(Debug, Clone)]
pub(crate) struct QeIdentity {
    pub issue_date: Date,
    pub next_update: Date,
    pub miscselect: u32,
    pub miscselect_mask: u32,
    pub attributes: [u8; 16],
    pub attributes_mask: [u8; 16],
    pub mrsigner: [u8; 32],
    pub isvprodid: u16,
    pub tcb_evaluation_data_number: u32,
    /// In JSON order (QVL takes the first level met).
    pub levels: Vec<QeLevel>,
}

#[derive(Debug, Clone)]
pub(crate) struct QeLevel {
    pub isvsvn: u16,
    pub status: TcbStatus,
    pub advisory_ids: Vec<String>,
}

fn components(c: &[WireComponent], field: &str) -> Result<[u8; 16]> {
    let mut out = [0u8; 16];
    if c.len() != out.len() {
        return Err(Error::Collateral(format!("{field}: expected 16 components, found {}", c.len())));
    }
    for (o, w) in out.iter_mut().zip(c) {
        *o = w.svn;
    }
    Ok(out)
}

/// Parse the `tcbInfo` JSON value (the signed bytes) of a TDX platform.
pub(crate) fn parse_tcb_info(json: &str) -> Result<TcbInfo> {
    let w: WireTcbInfo =
        serde_json::from_str(json).map_err(|e| Error::Collateral(format!("tcbInfo: malformed JSON: {e}")))?;
    if w.id != "TDX" {
        return Err(Error::Collateral(format!("tcbInfo.id: expected \"TDX\", found {:?}", w.id)));
    }
    if w.version != 3 {
        return Err(Error::Collateral(format!("tcbInfo.version: expected 3, found {}", w.version)));
    }
    if w.tcb_type != 0 {
        return Err(Error::Collateral(format!("tcbInfo.tcbType: expected 0, found {}", w.tcb_type)));
    }
    let module = |m: &WireModule, levels, field: &str| -> Result<ModuleIdentity> {
        Ok(ModuleIdentity {
            mrsigner: hex_array(&m.mrsigner, &format!("{field}.mrsigner"))?,
            attributes: hex_array(&m.attributes, &format!("{field}.attributes"))?,
            attributes_mask: hex_array(&m.attributes_mask, &format!("{field}.attributesMask"))?,
            levels,
        })
    };
    let tdx_module = match &w.tdx_module {
        Some(m) => module(m, Vec::new(), "tcbInfo.tdxModule")?,
        None => return Err(Error::Collateral("tcbInfo.tdxModule: missing from TDX TCB info".into())),
    };
    let mut module_identities = Vec::with_capacity(w.tdx_module_identities.len());
    for mi in &w.tdx_module_identities {
        let field = "tcbInfo.tdxModuleIdentities";
        let mut levels = Vec::with_capacity(mi.tcb_levels.len());
        for l in &mi.tcb_levels {
            levels.push(ModuleLevel {
                isvsvn: l.tcb.isvsvn,
                date: date(&l.tcb_date, "tcbInfo.tdxModuleIdentities.tcbLevels.tcbDate")?,
                status: TcbStatus::parse(&l.tcb_status, TDX_MODULE_STATUSES, field)?,
                advisory_ids: l.advisory_ids.clone(),
            });
        }
        let m = WireModule {
            mrsigner: mi.mrsigner.clone(),
            attributes: mi.attributes.clone(),
            attributes_mask: mi.attributes_mask.clone(),
        };
        module_identities.push((mi.id.clone(), module(&m, levels, field)?));
    }
    let mut levels = Vec::with_capacity(w.tcb_levels.len());
    for l in &w.tcb_levels {
        levels.push(TcbLevel {
            sgx: components(&l.tcb.sgxtcbcomponents, "tcbInfo.tcbLevels.tcb.sgxtcbcomponents")?,
            pce_svn: l.tcb.pcesvn,
            tdx: components(&l.tcb.tdxtcbcomponents, "tcbInfo.tcbLevels.tcb.tdxtcbcomponents")?,
            date: date(&l.tcb_date, "tcbInfo.tcbLevels.tcbDate")?,
            status: TcbStatus::parse(&l.tcb_status, TCB_INFO_STATUSES, "tcbInfo.tcbLevels")?,
            advisory_ids: l.advisory_ids.clone(),
        });
    }
    // QVL's order, highest first; a stable sort keeps JSON order among equals.
    levels.sort_by(|a, b| b.sgx.cmp(&a.sgx).then(b.pce_svn.cmp(&a.pce_svn)).then(b.tdx.cmp(&a.tdx)));
    Ok(TcbInfo {
        issue_date: date(&w.issue_date, "tcbInfo.issueDate")?,
        next_update: date(&w.next_update, "tcbInfo.nextUpdate")?,
        fmspc: hex_array(&w.fmspc, "tcbInfo.fmspc")?,
        pce_id: hex_array(&w.pce_id, "tcbInfo.pceId")?,
        tcb_evaluation_data_number: w.tcb_evaluation_data_number,
        levels,
        tdx_module,
        module_identities,
    })
}

/// Parse the `enclaveIdentity` JSON value (the signed bytes) of the TD QE.
pub(crate) fn parse_qe_identity(json: &str) -> Result<QeIdentity> {
    let w: WireQeIdentity =
        serde_json::from_str(json).map_err(|e| Error::Collateral(format!("qeIdentity: malformed JSON: {e}")))?;
    if w.id != "TD_QE" {
        return Err(Error::Collateral(format!("qeIdentity.id: expected \"TD_QE\", found {:?}", w.id)));
    }
    if w.version != 2 && w.version != 3 {
        return Err(Error::Collateral(format!("qeIdentity.version: expected 2 or 3, found {}", w.version)));
    }
    let mut levels = Vec::with_capacity(w.tcb_levels.len());
    for l in &w.tcb_levels {
        date(&l.tcb_date, "qeIdentity.tcbLevels.tcbDate")?;
        levels.push(QeLevel {
            isvsvn: l.tcb.isvsvn,
            status: TcbStatus::parse(&l.tcb_status, QE_STATUSES, "qeIdentity.tcbLevels")?,
            advisory_ids: l.advisory_ids.clone(),
        });
    }
    Ok(QeIdentity {
        issue_date: date(&w.issue_date, "qeIdentity.issueDate")?,
        next_update: date(&w.next_update, "qeIdentity.nextUpdate")?,
        miscselect: u32::from_le_bytes(hex_array(&w.miscselect, "qeIdentity.miscselect")?),
        miscselect_mask: u32::from_le_bytes(hex_array(&w.miscselect_mask, "qeIdentity.miscselectMask")?),
        attributes: hex_array(&w.attributes, "qeIdentity.attributes")?,
        attributes_mask: hex_array(&w.attributes_mask, "qeIdentity.attributesMask")?,
        mrsigner: hex_array(&w.mrsigner, "qeIdentity.mrsigner")?,
        isvprodid: w.isvprodid,
        tcb_evaluation_data_number: w.tcb_evaluation_data_number,
        levels,
    })
}

// ---------------------------------------------------------------- matching ---

/// The platform inputs of TCB matching: PCK certificate values and the TD report.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Platform<'a> {
    pub cpu_svn: &'a [u8; 16],
    pub pce_svn: u16,
    pub tee_tcb_svn: &'a [u8; 16],
    pub tee_tcb_svn2: Option<&'a [u8; 16]>,
    pub mr_signer_seam: &'a [u8; 48],
    pub seam_attributes: &'a [u8; 8],
}

/// The outcome of TCB evaluation.
#[derive(Debug, Clone)]
pub(crate) struct TcbVerdict {
    pub status: TcbStatus,
    pub advisory_ids: Vec<String>,
    pub tcb_date: String,
    pub qe_status: TcbStatus,
    pub evaluation_data_number: u32,
}

fn merge_advisories(into: &mut Vec<String>, from: &[String]) {
    for a in from {
        if !into.contains(a) {
            into.push(a.clone());
        }
    }
}

/// Match the QE report against the QE identity; the QE's TCB level.
pub(crate) fn match_qe(qe: &QeIdentity, report: &super::quote::QeReport) -> Result<QeLevel> {
    if report.mr_signer != qe.mrsigner {
        return Err(Error::Tcb(format!(
            "QE identity: MRSIGNER mismatch: expected {}, found {}",
            hex::encode(qe.mrsigner),
            hex::encode(report.mr_signer)
        )));
    }
    if report.isv_prod_id != qe.isvprodid {
        return Err(Error::Tcb(format!(
            "QE identity: ISVPRODID mismatch: expected {}, found {}",
            qe.isvprodid, report.isv_prod_id
        )));
    }
    if report.misc_select & qe.miscselect_mask != qe.miscselect & qe.miscselect_mask {
        return Err(Error::Tcb(format!(
            "QE identity: MISCSELECT mismatch under mask {:08x}: expected {:08x}, found {:08x}",
            qe.miscselect_mask, qe.miscselect, report.misc_select
        )));
    }
    let masked_eq = report
        .attributes
        .iter()
        .zip(&qe.attributes)
        .zip(&qe.attributes_mask)
        .all(|((found, want), mask)| found & mask == want & mask);
    if !masked_eq {
        return Err(Error::Tcb(format!(
            "QE identity: ATTRIBUTES mismatch under mask {}: expected {}, found {}",
            hex::encode(qe.attributes_mask),
            hex::encode(qe.attributes),
            hex::encode(report.attributes)
        )));
    }
    match qe.levels.iter().find(|l| report.isv_svn >= l.isvsvn) {
        Some(l) => Ok(l.clone()),
        None => Err(Error::Tcb(format!(
            "QE identity: QE ISVSVN {} is below every QE identity TCB level (lowest {})",
            report.isv_svn,
            qe.levels.iter().map(|l| l.isvsvn).min().map_or("none".to_string(), |m| m.to_string())
        ))),
    }
}

/// The platform level for one TEE_TCB_SVN, converged with its TDX module level.
fn evaluate(info: &TcbInfo, p: &Platform<'_>, tee_tcb_svn: &[u8; 16], which: &str) -> Result<TcbLevel> {
    let module_version = tee_tcb_svn.get(1).copied().unwrap_or(0);
    let skip = if module_version > 0 { 2 } else { 0 };
    let met = |l: &&TcbLevel| {
        p.cpu_svn.iter().zip(&l.sgx).all(|(have, need)| have >= need)
            && p.pce_svn >= l.pce_svn
            && tee_tcb_svn.iter().zip(&l.tdx).skip(skip).all(|(have, need)| have >= need)
    };
    let Some(found) = info.levels.iter().find(met) else {
        return Err(Error::Tcb(format!(
            "NoMatchingTcbLevel: no TCB level of the TCB info for FMSPC {} is met by the platform \
             (SGX components {:?}, PCESVN {}, {which} {})",
            hex::encode(info.fmspc),
            p.cpu_svn,
            p.pce_svn,
            hex::encode(tee_tcb_svn)
        )));
    };
    let mut level = found.clone();
    if module_version == 0 {
        return Ok(level);
    }
    let (id, module) = module_identity(info, module_version)?;
    let isvsvn = tee_tcb_svn.first().copied().unwrap_or(0);
    let Some(ml) = module.levels.iter().find(|l| isvsvn >= l.isvsvn) else {
        return Err(Error::Tcb(format!(
            "TDX module identity {id}: module ISVSVN {isvsvn} ({which}[0]) is below every TCB level"
        )));
    };
    level.status = level.status.converge(ml.status);
    merge_advisories(&mut level.advisory_ids, &ml.advisory_ids);
    if ml.date.unix < level.date.unix {
        level.date = ml.date.clone();
    }
    Ok(level)
}

fn module_identity(info: &TcbInfo, module_version: u8) -> Result<(&str, &ModuleIdentity)> {
    let want = format!("TDX_{module_version:02X}");
    info.module_identities
        .iter()
        .find(|(id, _)| id.eq_ignore_ascii_case(&want))
        .map(|(id, m)| (id.as_str(), m))
        .ok_or_else(|| Error::Tcb(format!("TCB info has no TDX module identity {want}")))
}

/// The TD report's TDX module signer and attributes against the TCB info.
fn check_module_identity(info: &TcbInfo, p: &Platform<'_>) -> Result<()> {
    let module_version = p.tee_tcb_svn.get(1).copied().unwrap_or(0);
    let (name, m) =
        if module_version == 0 { ("tdxModule", &info.tdx_module) } else { module_identity(info, module_version)? };
    if p.mr_signer_seam != &m.mrsigner {
        return Err(Error::Tcb(format!(
            "TDX module ({name}): MRSIGNER_SEAM mismatch: expected {}, found {}",
            hex::encode(m.mrsigner),
            hex::encode(p.mr_signer_seam)
        )));
    }
    let ok = p
        .seam_attributes
        .iter()
        .zip(&m.attributes)
        .zip(&m.attributes_mask)
        .all(|((found, want), mask)| found & mask == want & mask && found & !mask == 0);
    if !ok {
        return Err(Error::Tcb(format!(
            "TDX module ({name}): SEAMATTRIBUTES {} do not match {} under mask {}",
            hex::encode(p.seam_attributes),
            hex::encode(m.attributes),
            hex::encode(m.attributes_mask)
        )));
    }
    Ok(())
}

/// Evaluate the platform and QE TCB. `qe` is the QE's matched level.
pub(crate) fn evaluate_tdx(
    info: &TcbInfo,
    qe_identity: &QeIdentity,
    p: &Platform<'_>,
    qe: &QeLevel,
) -> Result<TcbVerdict> {
    let with_qe = |e: Error| match e {
        Error::Tcb(m) => Error::Tcb(format!("{m}; QE identity status {}", qe.status)),
        other => other,
    };
    let launch = evaluate(info, p, p.tee_tcb_svn, "TEE_TCB_SVN").map_err(with_qe)?;
    check_module_identity(info, p)?;
    let current = match p.tee_tcb_svn2 {
        Some(svn2) => Some(evaluate(info, p, svn2, "TEE_TCB_SVN2").map_err(with_qe)?),
        None => None,
    };
    let mut status = launch.status.converge(qe.status);
    let mut advisory_ids = launch.advisory_ids.clone();
    merge_advisories(&mut advisory_ids, &qe.advisory_ids);
    let current_status = current.as_ref().map(|c| c.status.converge(qe.status));
    if status == TcbStatus::Revoked || current_status == Some(TcbStatus::Revoked) {
        return Err(Error::Tcb(format!(
            "TCB status Revoked (platform {}, QE {}{}); advisories {:?}",
            launch.status,
            qe.status,
            current.as_ref().map_or(String::new(), |c| format!(", current TCB {}", c.status)),
            advisory_ids
        )));
    }
    if let Some(cur) = current_status {
        status = status.check_for_relaunch(cur);
    }
    Ok(TcbVerdict {
        status,
        advisory_ids,
        tcb_date: launch.date.text,
        qe_status: qe.status,
        // As dcap-qvl: the older of the two evaluation data numbers.
        evaluation_data_number: info.tcb_evaluation_data_number.min(qe_identity.tcb_evaluation_data_number),
    })
}
