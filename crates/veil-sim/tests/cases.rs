//! Fixtures, the danger module's copies of them, and `write_case` outputs.

mod common;

use anyhow::{Context, Result};
use time::macros::datetime;
use veil_attestation::danger;
use veil_sim::{snp, tdx, write};

#[test]
fn danger_module_embeds_exactly_the_fixture_certificates() {
    let snp_certs = danger::snp_certs();
    assert_eq!(snp_certs.len(), 3);
    assert_eq!(snp_certs[0].der, snp::ark_der());
    assert_eq!(snp_certs[1].der, snp::ask_der());
    assert_eq!(snp_certs[2].der, snp::asvk_der());
    assert_eq!(danger::intel_roots().len(), 1);
    assert_eq!(danger::intel_roots()[0].der, tdx::root_der());
    assert_eq!(danger::intel_intermediates()[0].der, tdx::platform_ca_der());
    assert_eq!(danger::intel_intermediates()[1].der, tdx::tcb_signing_der());
    assert_eq!(danger::simulated_cert_name(snp::ark_der()), Some("Veil simulated ARK-Milan"));
    assert_eq!(danger::simulated_cert_name(tdx::root_der()), Some("Veil simulated Intel SGX Root CA"));
    assert_eq!(danger::simulated_cert_name(snp::vcek_der()), None, "leaves are not anchors");
    assert!(!tdx::root_der().is_empty() && !snp::vcek_der().is_empty());
}

#[test]
fn every_fixture_file_carries_the_marker() -> Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut n = 0;
    for sub in ["snp", "tdx", "tpm"] {
        for entry in std::fs::read_dir(dir.join(sub))? {
            let path = entry?.path();
            let text = std::fs::read_to_string(&path)?;
            assert!(
                text.starts_with("# SIMULATED - NOT A SECRET, NOT A REAL ROOT\n"),
                "{} lacks the marker",
                path.display()
            );
            n += 1;
        }
    }
    assert!(n >= 20);
    let readme = std::fs::read_to_string(dir.join("README.md"))?;
    assert!(readme.contains("SIMULATED — NOT A SECRET, NOT A REAL ROOT"));
    Ok(())
}

fn load_case(path: &std::path::Path) -> Result<toml::Table> {
    let doc: toml::Table = toml::from_str(&std::fs::read_to_string(path)?)?;
    let cases = doc["case"].as_array().context("[[case]]")?;
    assert_eq!(cases.len(), 1);
    Ok(cases[0].as_table().context("case table")?.clone())
}

#[test]
fn write_case_snp() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let at = datetime!(2026-05-01 12:00:00 UTC);
    let path = write::write_case("snp", b"\x01\x02\x03", tmp.path(), at)?;
    let case = load_case(&path)?;
    assert_eq!(case["kind"].as_str(), Some("snp"));
    assert_eq!(case["name"].as_str(), Some("sim/snp"));
    assert_eq!(case["dir"].as_str(), Some("."));
    assert_eq!(case["simulated"].as_bool(), Some(true));
    assert_eq!(case["expect"].as_str(), Some("accept"));
    assert_eq!(case["verify_at"].as_str(), Some("2026-05-01T12:00:00Z"));
    let rd = case["report_data"].as_str().context("report_data")?;
    assert_eq!(rd.len(), 128);
    assert!(rd.starts_with("010203000000"));
    let files = case["files"].as_table().context("files")?;
    let report = std::fs::read(tmp.path().join(files["report"].as_str().context("report")?))?;
    assert_eq!(report.len(), 1184);
    assert_eq!(hex::encode(&report[0x50..0x90]), rd);
    let vcek = std::fs::read(tmp.path().join(files["vcek"].as_str().context("vcek")?))?;
    assert_eq!(vcek, snp::vcek_der());
    let chain = std::fs::read(tmp.path().join(files["chain"].as_str().context("chain")?))?;
    assert_eq!(common::pem_certs(&chain).len(), 2);
    assert_eq!(case["claims"]["reported_tcb"].as_str(), Some("0xd918000000000004"));
    assert!(write::write_case("snp", &[0; 65], tmp.path(), at).is_err());
    assert!(write::write_case("sgx", b"", tmp.path(), at).is_err());
    assert!(write::write_case("snp", b"", tmp.path(), datetime!(2023-01-01 0:00 UTC)).is_err());
    Ok(())
}

#[test]
fn write_case_tdx_verifies_at_verify_at() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let at = datetime!(2027-02-03 04:05:06 UTC);
    let path = write::write_case("tdx", &[0x99; 64], tmp.path(), at)?;
    let case = load_case(&path)?;
    assert_eq!(case["expect_status"].as_str(), Some("UpToDate"));
    assert_eq!(case["expect_qe_status"].as_str(), Some("UpToDate"));
    let files = case["files"].as_table().context("files")?;
    let quote = std::fs::read(tmp.path().join(files["quote"].as_str().context("quote")?))?;
    let collateral: dcap_qvl::QuoteCollateralV3 =
        serde_json::from_slice(&std::fs::read(tmp.path().join(files["collateral"].as_str().context("collateral")?))?)?;
    let root = std::fs::read(tmp.path().join(files["root"].as_str().context("root")?))?;
    let report = dcap_qvl::verify::QuoteVerifier::new(root).verify(&quote, &collateral, at.unix_timestamp() as u64)?;
    assert_eq!(report.status, "UpToDate");
    Ok(())
}

#[test]
fn write_case_tpm() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let path = write::write_case("tpm", b"\x90\x09", tmp.path(), datetime!(2026-01-01 0:00 UTC))?;
    let case = load_case(&path)?;
    assert_eq!(case["pcr_bank"].as_str(), Some("sha256"));
    assert_eq!(case["nonce"].as_str(), Some("9009"));
    let files = case["files"].as_table().context("files")?;
    for role in ["attest", "signature", "ak", "pcrs"] {
        assert!(tmp.path().join(files[role].as_str().context("role")?).exists(), "{role}");
    }
    let quotes: serde_json::Value = serde_json::from_slice(&std::fs::read(tmp.path().join("quotes.json"))?)?;
    let entry = quotes.as_array().and_then(|a| a.iter().find(|e| e["hash"] == "sha256")).context("sha256 entry")?;
    assert_eq!(entry["pcrs"].as_object().map(|m| m.len()), Some(8));
    let attest = std::fs::read(tmp.path().join("quote_sha256.tpms_attest.bin"))?;
    assert_eq!(entry["tpms_attest"].as_str(), Some(hex::encode(&attest).as_str()));
    Ok(())
}
