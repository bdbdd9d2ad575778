//! Every supported case of `shared/vectors/cases.toml` gives its expected result,
//! through the library and through the `veil` binary (`veil attest verify --case`).

use std::path::PathBuf;
use std::process::Command;

use veil_cli::cases::CaseFile;
use veil_cli::outcome::judge;
use veil_cli::run::{Inputs, KINDS};

fn vectors() -> PathBuf {
    let p = match std::env::var_os("VEIL_VECTORS") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors"),
    };
    assert!(p.join("cases.toml").is_file(), "test vectors not found at {} (set VEIL_VECTORS)", p.display());
    p
}

fn supported_cases() -> (PathBuf, CaseFile) {
    let dir = vectors();
    let mut file = CaseFile::load(&dir.join("cases.toml")).unwrap();
    file.cases.retain(|c| KINDS.contains(&c.kind.as_str()));
    (dir, file)
}

#[test]
fn every_supported_case_matches_through_the_library() {
    let (dir, file) = supported_cases();
    assert_eq!(file.cases.len(), 67, "the issue names 67 snp/tdx/tpm/az-*-vtpm cases");
    let mut failures = Vec::new();
    for case in &file.cases {
        let outcome = Inputs::from_case(case, &dir, false).unwrap().verify().unwrap();
        let verdict = judge(case, &outcome).unwrap();
        println!("{} {:<50} {}", if verdict.matched { "PASS" } else { "FAIL" }, case.name, verdict.summary);
        if !verdict.matched {
            failures.push(format!("{}: {}", case.name, verdict.summary));
        }
        // Accepted vectors: the claims recorded in the table agree with ours.
        if let (Ok(v), Some(expected)) = (&outcome, &case.claims) {
            let ours = serde_json::to_value(v.claims()).unwrap();
            for key in ["measurement", "mr_td", "rtmr0", "fmspc", "pcr_digest", "host_data", "xfam"] {
                if let Some(want) = expected.get(key).and_then(|x| x.as_str()) {
                    let found = find(&ours, key).unwrap_or_else(|| panic!("{}: claim {key} missing", case.name));
                    assert_eq!(found, want, "{}: claim {key}", case.name);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} case(s) did not match:\n{}", failures.len(), failures.join("\n"));
}

fn find(v: &serde_json::Value, key: &str) -> Option<String> {
    match v {
        serde_json::Value::Object(m) => {
            m.get(key).and_then(|x| x.as_str().map(str::to_owned)).or_else(|| m.values().find_map(|x| find(x, key)))
        }
        _ => None,
    }
}

#[test]
fn every_supported_case_matches_through_the_binary() {
    let (dir, file) = supported_cases();
    let table = dir.join("cases.toml");
    let mut failures = Vec::new();
    for case in &file.cases {
        let out = Command::new(env!("CARGO_BIN_EXE_veil"))
            .args(["attest", "verify", "--case"])
            .arg(&table)
            .args(["--name", &case.name])
            .output()
            .unwrap();
        let verified = out.status.success();
        let code = out.status.code();
        let want = case.expect == "accept";
        if verified != want || !matches!(code, Some(0) | Some(1)) {
            failures.push(format!(
                "{}: exit {code:?}, expected {}\n{}{}",
                case.name,
                case.expect,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if !verified {
            // Non-zero comes with a one-line reason.
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(stderr.trim().lines().count(), 1, "{}: stderr {stderr:?}", case.name);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_whole_table_fails_while_unsupported_kinds_remain() {
    // sgx and nvidia-gpu are a later issue: a kind not yet supported is a failure,
    // never a silent pass.
    let dir = vectors();
    let out = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["attest", "verify", "--case"])
        .arg(dir.join("cases.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("FAIL sgx/dcapqvl-sgx_quote"), "{stdout}");
    assert!(stdout.contains("is not supported"), "{stdout}");
}

#[test]
fn json_output_carries_claims_or_typed_error() {
    let dir = vectors();
    let table = dir.join("cases.toml");
    let run = |name: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_veil"))
            .args(["attest", "verify", "--json", "--case"])
            .arg(&table)
            .args(["--name", name])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let ok = run("snp/gosevguest-milan-attestation");
    assert_eq!(ok["verified"], true);
    assert_eq!(ok["evidence"]["simulated"], false);
    let bad = run("snp/neg-milan-report-byte42");
    assert_eq!(bad["verified"], false);
    assert_eq!(bad["error"]["kind"], "signature");
}

#[test]
fn snp_report_in_trustee_json_form_verifies() {
    let d = vectors().join("sev-snp/trustee-e2e-genoa-v3");
    let out = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["attest", "verify", "snp", "--at", "2025-06-01T00:00:00Z", "--report"])
        .arg(d.join("evidence.json"))
        .arg("--vcek")
        .arg(d.join("vcek.der"))
        .arg("--chain")
        .arg(d.join("cert_chain.pem"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("snp: VERIFIED"), "{stdout}");
    assert!(stdout.contains("report data: not checked"), "{stdout}");
}

#[test]
fn the_table_filtered_to_supported_kinds_passes() {
    let dir = vectors();
    let out = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["attest", "verify", "--case"])
        .arg(dir.join("cases.toml"))
        .args(["--kind", "snp", "--kind", "tdx", "--kind", "tpm", "--kind", "az-snp-vtpm", "--kind", "az-tdx-vtpm"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.trim_end().ends_with("67 passed, 0 failed"), "{stdout}");
    let none = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["attest", "verify", "--case"])
        .arg(dir.join("cases.toml"))
        .args(["--kind", "no-such-kind"])
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2));
}
