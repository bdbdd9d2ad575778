//! Writing a simulated verification case to disk, in the `cases.toml` schema of the
//! shared test vectors (one `[[case]]`, `dir = "."`, `simulated = true`).
//!
//! ```text
//!  write_case("snp"|"tdx"|"tpm", data, DIR, at) ─► DIR/{evidence files, simulated roots /
//!                                                   chain, collateral}, DIR/case.toml
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::{params, snp, tdx, tpm};

#[derive(Serialize)]
struct CaseFile {
    case: Vec<Case>,
}

#[derive(Serialize)]
struct Case {
    name: String,
    kind: &'static str,
    dir: &'static str,
    simulated: bool,
    files: BTreeMap<&'static str, &'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pcr_bank: Option<&'static str>,
    verify_at: String,
    expect: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expect_status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expect_advisories: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expect_qe_status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report_data: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<String>,
    note: String,
    claims: toml::Table,
}

fn write_file(dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, data).map_err(|e| Error::io("write", path, e))
}

fn padded_report_data(data: &[u8]) -> Result<[u8; 64]> {
    if data.len() > 64 {
        return Err(Error::invalid("report_data", format!("{} bytes (at most 64)", data.len())));
    }
    let mut out = [0u8; 64];
    if let Some(dst) = out.get_mut(..data.len()) {
        dst.copy_from_slice(data);
    }
    Ok(out)
}

fn int(v: impl Into<i64>) -> toml::Value {
    toml::Value::Integer(v.into())
}

fn text(v: impl Into<String>) -> toml::Value {
    toml::Value::String(v.into())
}

/// Generate evidence of `kind` (`"snp"`, `"tdx"` or `"tpm"`) and write it, the
/// simulated roots/chain, the collateral and `dir/case.toml` into `dir` (created if
/// missing). For SNP and TDX `report_data_or_nonce` is the report data (at most 64
/// bytes, zero-padded to 64 as configfs-tsm does); for TPM it is the nonce (at most 64
/// bytes, used as-is). `at` becomes `verify_at`; TDX collateral is issued a day before
/// `at` and expires 29 days after it. Returns the path of `case.toml`.
pub fn write_case(kind: &str, report_data_or_nonce: &[u8], dir: &Path, at: OffsetDateTime) -> Result<PathBuf> {
    let not_before = OffsetDateTime::from_unix_timestamp(params::CERT_NOT_BEFORE)
        .map_err(|e| Error::invalid("at", e.to_string()))?;
    let not_after =
        OffsetDateTime::from_unix_timestamp(params::CERT_NOT_AFTER).map_err(|e| Error::invalid("at", e.to_string()))?;
    if at < not_before || at > not_after {
        return Err(Error::invalid("at", "outside the simulated certificates' validity (2024-01-01 ..= 2049-12-31)"));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
    let verify_at = tdx::rfc3339(at)?;
    let mut claims = toml::Table::new();
    let case = match kind {
        "snp" => {
            let report_data = padded_report_data(report_data_or_nonce)?;
            let opts = snp::SnpOptions::default();
            let ev = snp::report(&report_data, &opts)?;
            write_file(dir, "report.bin", &ev.report)?;
            write_file(dir, "vcek.der", &ev.cert)?;
            write_file(dir, "cert_chain.pem", &ev.chain_pem)?;
            write_file(dir, "cert_table.bin", &ev.cert_table)?;
            claims.insert("version".into(), int(opts.version));
            claims.insert("guest_svn".into(), int(opts.guest_svn));
            claims.insert("policy".into(), int(i64::try_from(opts.policy).unwrap_or(i64::MAX)));
            claims.insert("vmpl".into(), int(opts.vmpl));
            claims.insert("signing_key".into(), text("vcek"));
            claims.insert("measurement".into(), text(hex::encode(opts.measurement)));
            claims.insert("host_data".into(), text(hex::encode(opts.host_data)));
            claims.insert("reported_tcb".into(), text(format!("{:#018x}", snp::tcb_version())));
            claims.insert("chip_id_prefix".into(), text(hex::encode(&snp::chip_id()[..8])));
            claims.insert("product".into(), text(params::snp::VCEK_PRODUCT_NAME));
            Case {
                name: "sim/snp".into(),
                kind: "snp",
                dir: ".",
                simulated: true,
                files: BTreeMap::from([("report", "report.bin"), ("vcek", "vcek.der"), ("chain", "cert_chain.pem")]),
                pcr_bank: None,
                verify_at,
                expect: "accept",
                expect_status: None,
                expect_advisories: None,
                expect_qe_status: None,
                report_data: Some(hex::encode(report_data)),
                nonce: None,
                note: "SIMULATED evidence from veil-sim: verifies only against the simulated \
                       roots (veil_attestation::danger). cert_table.bin is the GHCB \
                       certificate table (configfs-tsm auxblob)."
                    .into(),
                claims,
            }
        }
        "tdx" => {
            let report_data = padded_report_data(report_data_or_nonce)?;
            let opts = tdx::TdxOptions::default();
            let quote = tdx::quote(&report_data, &opts)?;
            let issue = at - time::Duration::days(1);
            let next = at + time::Duration::days(29);
            write_file(dir, "quote.bin", &quote)?;
            write_file(dir, "collateral.json", &tdx::collateral_json(issue, next)?)?;
            write_file(dir, "root.der", tdx::root_der())?;
            claims.insert("version".into(), int(opts.version));
            claims.insert("tee_type".into(), text("tdx"));
            claims.insert("mr_td".into(), text(hex::encode(opts.mr_td)));
            claims.insert("rtmr0".into(), text(hex::encode(opts.rtmr[0])));
            claims.insert("tee_tcb_svn".into(), text(hex::encode(opts.tee_tcb_svn)));
            claims.insert("td_attributes".into(), text(hex::encode(opts.td_attributes.to_le_bytes())));
            claims.insert("xfam".into(), text(hex::encode(opts.xfam.to_le_bytes())));
            claims.insert("fmspc".into(), text(hex::encode(params::tdx::FMSPC)));
            claims.insert("tcb_date".into(), text(tdx::TCB_DATE_UP_TO_DATE));
            Case {
                name: "sim/tdx".into(),
                kind: "tdx",
                dir: ".",
                simulated: true,
                files: BTreeMap::from([
                    ("quote", "quote.bin"),
                    ("collateral", "collateral.json"),
                    ("root", "root.der"),
                ]),
                pcr_bank: None,
                verify_at,
                expect: "accept",
                expect_status: Some("UpToDate"),
                expect_advisories: Some(vec![]),
                expect_qe_status: Some("UpToDate"),
                report_data: Some(hex::encode(report_data)),
                nonce: None,
                note: format!(
                    "SIMULATED evidence from veil-sim: root.der is the simulated Intel SGX Root \
                     CA (veil_attestation::danger). Collateral window {} ..= {}.",
                    tdx::rfc3339(issue)?,
                    tdx::rfc3339(next)?
                ),
                claims,
            }
        }
        "tpm" => {
            let pcrs = tpm::default_pcrs();
            let q = tpm::quote(report_data_or_nonce, &pcrs)?;
            write_file(dir, "quote_sha256.tpms_attest.bin", &q.attest)?;
            write_file(dir, "quote_sha256.tpmt_signature.bin", &q.signature)?;
            write_file(dir, "ak_pub.pem", &q.ak_pem)?;
            write_file(dir, "ak_pub.tpmt_public.bin", &q.ak_public)?;
            let mut quotes = b"[".to_vec();
            quotes.extend_from_slice(&q.pcrs_json);
            quotes.extend_from_slice(b"]\n");
            write_file(dir, "quotes.json", &quotes)?;
            let digest_at = q.attest.len().saturating_sub(32);
            claims.insert("pcr_bank".into(), text("sha256"));
            claims.insert("pcr_select".into(), toml::Value::Array(pcrs.keys().map(|k| int(*k)).collect()));
            claims.insert("pcr_digest".into(), text(hex::encode(&q.attest[digest_at..])));
            if let Some(pcr0) = pcrs.get(&0) {
                claims.insert("pcr0".into(), text(hex::encode(pcr0)));
            }
            claims.insert("qualified_signer".into(), text(hex::encode(&q.ak_name)));
            claims.insert("ak_name".into(), text(hex::encode(&q.ak_name)));
            claims.insert("sig_scheme".into(), text("ecdsa-sha256"));
            claims.insert("firmware_version".into(), text(format!("{:#018x}", tpm::FIRMWARE_VERSION)));
            Case {
                name: "sim/tpm".into(),
                kind: "tpm",
                dir: ".",
                simulated: true,
                files: BTreeMap::from([
                    ("attest", "quote_sha256.tpms_attest.bin"),
                    ("signature", "quote_sha256.tpmt_signature.bin"),
                    ("ak", "ak_pub.pem"),
                    ("pcrs", "quotes.json"),
                ]),
                pcr_bank: Some("sha256"),
                verify_at,
                expect: "accept",
                expect_status: None,
                expect_advisories: None,
                expect_qe_status: None,
                report_data: None,
                nonce: Some(hex::encode(report_data_or_nonce)),
                note: "SIMULATED TPM quote from veil-sim: the AK (ECDSA P-256) is a public \
                       fixture and is bound by nothing; PCR i = SHA-256(\"veil-sim PCR i\")."
                    .into(),
                claims,
            }
        }
        other => {
            return Err(Error::invalid("kind", format!("{other:?} (expected snp, tdx or tpm)")));
        }
    };
    let body = toml::to_string(&CaseFile { case: vec![case] })
        .map_err(|e| Error::Encode { what: "case.toml", reason: e.to_string() })?;
    let text = format!(
        "# SIMULATED evidence written by veil-sim (veil attest simulate). NOT real hardware\n\
         # evidence: it verifies only when the verifier trusts the simulated roots.\n{body}"
    );
    let path = dir.join("case.toml");
    std::fs::write(&path, text).map_err(|e| Error::io("write", &path, e))?;
    Ok(path)
}
