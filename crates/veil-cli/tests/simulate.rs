//! `veil attest simulate` output is refused by default — naming the simulated root —
//! and accepted with `--danger-trust-simulator`, marked SIMULATED, for each TEE.

use std::process::Command;

fn veil(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_veil")).args(args).output().unwrap()
}

#[test]
fn simulated_evidence_needs_the_opt_in() {
    for kind in ["snp", "tdx", "tpm"] {
        let dir = tempfile::tempdir().unwrap();
        let out_dir = dir.path().join(kind);
        let data = "11".repeat(if kind == "tpm" { 32 } else { 64 });
        let sim = veil(&["attest", "simulate", kind, "--report-data", &data, "--out", out_dir.to_str().unwrap()]);
        assert!(sim.status.success(), "{kind}: {}", String::from_utf8_lossy(&sim.stderr));
        let case = out_dir.join("case.toml");
        assert!(case.is_file(), "{kind}: no case.toml");
        let case = case.to_str().unwrap();

        let refused = veil(&["attest", "verify", "--case", case]);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        let stdout = String::from_utf8_lossy(&refused.stdout);
        assert_eq!(refused.status.code(), Some(1), "{kind}: {stdout}{stderr}");
        if kind != "tpm" {
            // SNP/TDX chain to a simulated vendor root, refused by name.
            assert!(stderr.contains("simulated root"), "{kind}: {stderr}");
            assert!(stderr.contains("Veil"), "{kind}: the refusal names the simulated root: {stderr}");
        }

        let accepted = veil(&["attest", "verify", "--danger-trust-simulator", "--case", case]);
        let stdout = String::from_utf8_lossy(&accepted.stdout);
        assert!(accepted.status.success(), "{kind}: {stdout}{}", String::from_utf8_lossy(&accepted.stderr));
        assert!(stdout.contains("SIMULATED"), "{kind}: {stdout}");

        let json = veil(&["attest", "verify", "--danger-trust-simulator", "--json", "--case", case]);
        let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
        assert_eq!(v["evidence"]["simulated"], true, "{kind}");
    }
}

#[test]
fn wrong_report_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("snp");
    let sim = veil(&["attest", "simulate", "snp", "--report-data", &"22".repeat(64), "--out", out.to_str().unwrap()]);
    assert!(sim.status.success());
    let base = out.to_str().unwrap();
    let run = |rd: &str| {
        let mut args = vec!["attest", "verify", "--danger-trust-simulator", "snp"];
        let report = format!("{base}/report.bin");
        let vcek = format!("{base}/vcek.der");
        let chain = format!("{base}/cert_chain.pem");
        args.extend(["--report", &report, "--vcek", &vcek, "--chain", &chain, "--report-data", rd]);
        let o = Command::new(env!("CARGO_BIN_EXE_veil")).args(&args).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr))
    };
    let (code, text) = run(&"22".repeat(64));
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run(&"23".repeat(64));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("report_data mismatch"), "{text}");
}
