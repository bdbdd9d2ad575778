//! Trustee's JSON form of SNP evidence: the serde form of the `sev` crate's
//! `AttestationReport` (numbers for integers and bit fields, arrays of numbers for
//! byte strings, `{fmc, bootloader, tee, snp, microcode}` for TCB values,
//! `{major, minor, build}` for firmware versions, `{r, s}` for the signature),
//! optionally wrapped as `{"attestation_report": …, "cert_chain": [{cert_type, data}]}`.
//!
//! The conversion is only useful if it is exact: the signature covers the binary
//! report, so the JSON is turned into the 1184 bytes, those bytes are parsed back,
//! and the JSON they describe must equal the JSON received, value for value. JSON
//! that carries anything the binary cannot (unknown fields, non-zero reserved
//! parts, a TCB layout that disagrees with the CPUID) is refused instead of being
//! silently normalised.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::report::{AttestationReport, Cpuid, FwVersion, KeyInfo, SigningKey, TcbLayout, TcbParts, TcbVersion};
use crate::error::{ParseError, Result};

const STRUCTURE: &str = "Trustee SNP evidence JSON";

fn err(field: &'static str, detail: impl Into<String>) -> ParseError {
    ParseError::new(STRUCTURE, field, detail)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JTcb {
    fmc: Option<u8>,
    bootloader: u8,
    tee: u8,
    snp: u8,
    microcode: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JVersion {
    major: u8,
    minor: u8,
    build: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JSignature {
    r: Vec<u8>,
    s: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JReport {
    version: u32,
    guest_svn: u32,
    policy: u64,
    family_id: Vec<u8>,
    image_id: Vec<u8>,
    vmpl: u32,
    sig_algo: u32,
    current_tcb: JTcb,
    plat_info: u64,
    key_info: u32,
    report_data: Vec<u8>,
    measurement: Vec<u8>,
    host_data: Vec<u8>,
    id_key_digest: Vec<u8>,
    author_key_digest: Vec<u8>,
    report_id: Vec<u8>,
    report_id_ma: Vec<u8>,
    reported_tcb: JTcb,
    cpuid_fam_id: Option<u8>,
    cpuid_mod_id: Option<u8>,
    cpuid_step: Option<u8>,
    chip_id: Vec<u8>,
    committed_tcb: JTcb,
    current: JVersion,
    committed: JVersion,
    launch_tcb: JTcb,
    launch_mit_vector: Option<u64>,
    current_mit_vector: Option<u64>,
    signature: JSignature,
}

/// Fields every report object must carry. The two mitigation vectors were added
/// to the `sev` crate later and may be absent (they exist only in version 5).
const REQUIRED: &[&str] = &[
    "version",
    "guest_svn",
    "policy",
    "family_id",
    "image_id",
    "vmpl",
    "sig_algo",
    "current_tcb",
    "plat_info",
    "key_info",
    "report_data",
    "measurement",
    "host_data",
    "id_key_digest",
    "author_key_digest",
    "report_id",
    "report_id_ma",
    "reported_tcb",
    "cpuid_fam_id",
    "cpuid_mod_id",
    "cpuid_step",
    "chip_id",
    "committed_tcb",
    "current",
    "committed",
    "launch_tcb",
    "signature",
];
const OPTIONAL: &[&str] = &["launch_mit_vector", "current_mit_vector"];

fn arr<const N: usize>(v: &[u8], field: &'static str) -> Result<[u8; N], ParseError> {
    <[u8; N]>::try_from(v).map_err(|_| err(field, format!("expected {N} bytes, found {}", v.len())))
}

fn layout_of(tcbs: [&JTcb; 4]) -> Result<TcbLayout, ParseError> {
    let with_fmc = tcbs.iter().filter(|t| t.fmc.is_some()).count();
    match with_fmc {
        0 => Ok(TcbLayout::Legacy),
        4 => Ok(TcbLayout::Turin),
        _ => Err(err("*_tcb.fmc", "fmc must be present in all four TCB values (Turin) or in none")),
    }
}

fn tcb(t: &JTcb, layout: TcbLayout) -> TcbVersion {
    TcbVersion::from_parts(
        TcbParts { fmc: t.fmc, bootloader: t.bootloader, tee: t.tee, snp: t.snp, microcode: t.microcode },
        layout,
    )
}

/// Build the report the JSON describes. Not validated here: the caller parses
/// the bytes back.
fn build(j: &JReport) -> Result<AttestationReport, ParseError> {
    let layout = layout_of([&j.current_tcb, &j.reported_tcb, &j.committed_tcb, &j.launch_tcb])?;
    let cpuid = match (j.cpuid_fam_id, j.cpuid_mod_id, j.cpuid_step) {
        (Some(family), Some(model), Some(stepping)) => Some(Cpuid { family, model, stepping }),
        (None, None, None) => None,
        _ => return Err(err("cpuid_*", "cpuid_fam_id, cpuid_mod_id and cpuid_step must all be set or all be null")),
    };
    Ok(AttestationReport {
        version: j.version,
        guest_svn: j.guest_svn,
        policy: j.policy,
        family_id: arr(&j.family_id, "family_id")?,
        image_id: arr(&j.image_id, "image_id")?,
        vmpl: j.vmpl,
        signature_algo: j.sig_algo,
        current_tcb: tcb(&j.current_tcb, layout),
        platform_info: j.plat_info,
        // Only `raw` is encoded; the decoded parts are recomputed when parsing back.
        key_info: KeyInfo {
            raw: j.key_info,
            author_key_en: false,
            mask_chip_key: false,
            signing_key: SigningKey::None,
        },
        report_data: arr(&j.report_data, "report_data")?,
        measurement: arr(&j.measurement, "measurement")?,
        host_data: arr(&j.host_data, "host_data")?,
        id_key_digest: arr(&j.id_key_digest, "id_key_digest")?,
        author_key_digest: arr(&j.author_key_digest, "author_key_digest")?,
        report_id: arr(&j.report_id, "report_id")?,
        report_id_ma: arr(&j.report_id_ma, "report_id_ma")?,
        reported_tcb: tcb(&j.reported_tcb, layout),
        cpuid,
        chip_id: arr(&j.chip_id, "chip_id")?,
        committed_tcb: tcb(&j.committed_tcb, layout),
        current_version: FwVersion { major: j.current.major, minor: j.current.minor, build: j.current.build },
        committed_version: FwVersion { major: j.committed.major, minor: j.committed.minor, build: j.committed.build },
        launch_tcb: tcb(&j.launch_tcb, layout),
        launch_mit_vector: j.launch_mit_vector,
        current_mit_vector: j.current_mit_vector,
        signature_r: arr(&j.signature.r, "signature.r")?,
        signature_s: arr(&j.signature.s, "signature.s")?,
    })
}

fn tcb_json(t: TcbVersion, layout: TcbLayout) -> Value {
    let p = t.parts(layout);
    json!({"fmc": p.fmc, "bootloader": p.bootloader, "tee": p.tee, "snp": p.snp, "microcode": p.microcode})
}

fn ver_json(v: FwVersion) -> Value {
    json!({"major": v.major, "minor": v.minor, "build": v.build})
}

/// The `sev` crate's JSON for a parsed report (the TCB layout from the report's
/// own CPUID, as the `sev` crate decides it).
fn report_json(r: &AttestationReport) -> Value {
    let layout = r.tcb_layout_hint();
    json!({
        "version": r.version,
        "guest_svn": r.guest_svn,
        "policy": r.policy,
        "family_id": r.family_id,
        "image_id": r.image_id,
        "vmpl": r.vmpl,
        "sig_algo": r.signature_algo,
        "current_tcb": tcb_json(r.current_tcb, layout),
        "plat_info": r.platform_info,
        "key_info": r.key_info.raw,
        "report_data": r.report_data.to_vec(),
        "measurement": r.measurement.to_vec(),
        "host_data": r.host_data,
        "id_key_digest": r.id_key_digest.to_vec(),
        "author_key_digest": r.author_key_digest.to_vec(),
        "report_id": r.report_id,
        "report_id_ma": r.report_id_ma,
        "reported_tcb": tcb_json(r.reported_tcb, layout),
        "cpuid_fam_id": r.cpuid.map(|c| c.family),
        "cpuid_mod_id": r.cpuid.map(|c| c.model),
        "cpuid_step": r.cpuid.map(|c| c.stepping),
        "chip_id": r.chip_id.to_vec(),
        "committed_tcb": tcb_json(r.committed_tcb, layout),
        "current": ver_json(r.current_version),
        "committed": ver_json(r.committed_version),
        "launch_tcb": tcb_json(r.launch_tcb, layout),
        "launch_mit_vector": r.launch_mit_vector,
        "current_mit_vector": r.current_mit_vector,
        "signature": {"r": r.signature_r.to_vec(), "s": r.signature_s.to_vec()},
    })
}

fn report_object(v: &Value) -> Result<&Map<String, Value>, ParseError> {
    let Value::Object(top) = v else {
        return Err(err("(top level)", "expected a JSON object"));
    };
    if let Some(inner) = top.get("attestation_report") {
        if let Some(k) = top.keys().find(|k| *k != "attestation_report" && *k != "cert_chain") {
            return Err(err("(top level)", format!("unknown field {k:?}")));
        }
        let Value::Object(obj) = inner else {
            return Err(err("attestation_report", "expected a JSON object"));
        };
        return Ok(obj);
    }
    Ok(top)
}

/// Trustee's JSON form of a binary SNP report (the `attestation_report` object of SNP
/// evidence), as the `sev` crate serialises it; [`report_from_trustee_json`] inverts it.
pub fn report_to_trustee_json(report: &[u8]) -> Result<Value> {
    let parsed = super::report::parse_report(report)?;
    Ok(report_json(&parsed))
}

/// Convert Trustee's JSON form of an SNP report (a bare report object or the
/// `{"attestation_report", "cert_chain"}` evidence) to the 1184-byte report.
/// Refuses JSON with unknown or missing fields, wrong lengths, or anything that
/// does not round-trip to exactly the same JSON through the binary form.
pub fn report_from_trustee_json(json: &[u8]) -> Result<Vec<u8>> {
    let value: Value = serde_json::from_slice(json).map_err(|e| err("(document)", format!("not JSON: {e}")))?;
    report_from_trustee_value(&value)
}

/// [`report_from_trustee_json`] on already-parsed JSON (a broker has the evidence as a
/// `Value` inside the attestation request; this saves serialising and parsing it again).
pub fn report_from_trustee_value(value: &Value) -> Result<Vec<u8>> {
    let obj = report_object(value)?;
    if let Some(k) = REQUIRED.iter().find(|k| !obj.contains_key(**k)) {
        return Err(err("attestation_report", format!("missing field {k:?}")).into());
    }
    if let Some(k) = obj.keys().find(|k| !REQUIRED.contains(&k.as_str()) && !OPTIONAL.contains(&k.as_str())) {
        return Err(err("attestation_report", format!("unknown field {k:?}")).into());
    }
    // The object `report_object` chose, as a `Value`, deserialised in place.
    let report_value = value.get("attestation_report").unwrap_or(value);
    let j = JReport::deserialize(report_value)
        .map_err(|e| err("attestation_report", format!("does not match the sev report form: {e}")))?;
    let bytes = build(&j)?.to_bytes();

    // Parse the bytes back and require the same JSON.
    let parsed = super::report::parse_report(&bytes)?;
    let Value::Object(mut back) = report_json(&parsed) else {
        return Err(err("attestation_report", "internal: report JSON is not an object").into());
    };
    for k in OPTIONAL {
        if !obj.contains_key(*k) && back.get(*k).is_some_and(Value::is_null) {
            back.remove(*k);
        }
    }
    if &back != obj {
        let field =
            REQUIRED.iter().chain(OPTIONAL).find(|k| back.get(**k) != obj.get(**k)).copied().unwrap_or("(unknown)");
        return Err(err(
            "attestation_report",
            format!("field {field:?} does not survive the round trip through the binary report"),
        )
        .into());
    }
    Ok(bytes)
}

/// One entry of Trustee's `cert_chain` (the host's certificate table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertTableEntry {
    /// `cert_type` as given ("VCEK", "VLEK", "ASK", "ARK", ...).
    pub cert_type: String,
    /// The certificate (DER).
    pub data: Vec<u8>,
}

/// The certificates in Trustee's SNP evidence `cert_chain` (empty if absent or null).
pub fn cert_chain_from_trustee_json(json: &[u8]) -> Result<Vec<CertTableEntry>> {
    let value: Value = serde_json::from_slice(json).map_err(|e| err("(document)", format!("not JSON: {e}")))?;
    cert_chain_from_trustee_value(&value)
}

/// [`cert_chain_from_trustee_json`] on already-parsed JSON.
pub fn cert_chain_from_trustee_value(value: &Value) -> Result<Vec<CertTableEntry>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        cert_type: Value,
        data: Vec<u8>,
    }
    let Some(chain) = value.get("cert_chain") else { return Ok(Vec::new()) };
    if chain.is_null() {
        return Ok(Vec::new());
    }
    let entries = Vec::<Entry>::deserialize(chain)
        .map_err(|e| err("cert_chain", format!("expected [{{cert_type, data}}]: {e}")))?;
    entries
        .into_iter()
        .map(|e| {
            // `sev` serialises known types as strings ("VCEK"); others may be objects.
            let cert_type = match e.cert_type {
                Value::String(s) => s,
                other => other.to_string(),
            };
            Ok(CertTableEntry { cert_type, data: e.data })
        })
        .collect()
}
