//! `veil`: the Veil command line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use veil_attestation::appraisal::{self, Policy};
use veil_attestation::{Error, VerifiedEvidence};
use veil_cli::cases::CaseFile;
use veil_cli::outcome::{judge, to_json};
use veil_cli::run::{Inputs, parse_hex, parse_time};

mod audit;
mod demo;
mod kbs;
mod model;
mod relying;
mod sealing;
mod serve;
mod verify_runtime;

/// mimalloc rather than glibc malloc: the broker's request path is allocation-heavy
/// (JSON evidence, Rego values) and glibc's arenas cost ~17% of its CPU under load
/// (docs/decisions.md, "Key broker"). Secrets are wiped explicitly before they are
/// freed, so the allocator choice does not change what stays in memory.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "veil", version, about = "Veil: attested, sealed inference for confidential VMs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Verify and simulate TEE evidence.
    #[command(subcommand)]
    Attest(Attest),
    /// Sign and verify models (OpenSSF Model Signing).
    #[command(subcommand)]
    Model(model::Model),
    /// Seal a model: sign it (OMS) and encrypt it into a bundle under a fresh data key.
    Seal(Box<sealing::SealCmd>),
    /// Verify and decrypt a sealed bundle (operator tool; writes plaintext only with --out).
    Unseal(Box<sealing::UnsealCmd>),
    /// The key broker (Trustee KBS protocol) and its admin API.
    #[command(subcommand)]
    Kbs(kbs::KbsCmd),
    /// Run the confidential serving runtime (attest, unseal, serve the OpenAI API).
    Serve(serve::ServeCmd),
    /// Verify a serving runtime before sending it anything: its RA-TLS certificate's
    /// evidence, then fresh evidence for a random nonce.
    VerifyRuntime(Box<verify_runtime::VerifyRuntimeCmd>),
    /// The runtime's request audit log.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Check a serving runtime against a relying-party policy file: a report of every
    /// check (evidence, binding, TEE, roots, debug, measurement, TCB, container, model,
    /// signer); exit 0 only if all pass.
    Verify(relying::VerifyCmd),
    /// A local plain-HTTP endpoint for any OpenAI client that forwards only to a runtime
    /// whose evidence passes the policy (checked on every new TLS connection) and checks
    /// every answer's receipt.
    Proxy(relying::ProxyCmd),
    /// The whole flow on the simulated TEE with real models, one timed line per step:
    /// seal, broker, boot, verify, chat and embed with receipts, audit, revoke. With
    /// --serve, keeps the runtime and a verifying proxy running for your OpenAI client.
    Demo(demo::DemoCmd),
}

#[derive(Subcommand, Debug)]
enum Attest {
    /// Verify evidence offline: signatures, chains to the embedded vendor roots,
    /// collateral, bindings; then, with --policy, appraise the claims.
    Verify(Box<VerifyCmd>),
    /// Produce evidence from the software TEE simulator (simulated roots).
    Simulate(SimulateCmd),
}

#[derive(Args, Debug)]
struct VerifyCmd {
    /// Verify the cases in a case file (the schema of shared/vectors/cases.toml).
    #[arg(long, value_name = "FILE")]
    case: Option<PathBuf>,
    /// With --case: only this case.
    #[arg(long, requires = "case")]
    name: Option<String>,
    /// With --case: only cases of this evidence kind (repeatable).
    #[arg(long = "kind", value_name = "KIND", requires = "case")]
    kinds: Vec<String>,
    /// Trust the simulator's roots (development and CI only).
    #[arg(long, global = true)]
    danger_trust_simulator: bool,
    /// Print the claims, or the typed error, as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    kind: Option<Kind>,
}

#[derive(Args, Debug)]
struct Common {
    /// Verification time (RFC 3339); default: now, on this machine's clock.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// Reference values to appraise the claims against (TOML).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Kind {
    /// AMD SEV-SNP attestation report.
    Snp {
        #[arg(long)]
        report: PathBuf,
        #[arg(long, conflicts_with = "vlek")]
        vcek: Option<PathBuf>,
        #[arg(long)]
        vlek: Option<PathBuf>,
        /// ASK+ARK (+ASVK) PEM; each must be byte-identical to an embedded AMD root.
        #[arg(long)]
        chain: Option<PathBuf>,
        /// Expected report data (64 bytes, hex); omitted = not checked.
        #[arg(long, value_name = "HEX")]
        report_data: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Intel TDX quote (v4, v5).
    Tdx {
        #[arg(long)]
        quote: PathBuf,
        /// DCAP collateral (QuoteCollateralV3 JSON); omitted = TCB status not evaluated.
        #[arg(long)]
        collateral: Option<PathBuf>,
        /// Root CA (DER); must be byte-identical to the embedded Intel SGX Root CA.
        #[arg(long)]
        root: Option<PathBuf>,
        #[arg(long, value_name = "HEX")]
        report_data: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// TPM 2.0 quote.
    Tpm {
        #[arg(long)]
        attest: PathBuf,
        #[arg(long)]
        signature: PathBuf,
        #[arg(long)]
        ak: PathBuf,
        #[arg(long, requires = "root")]
        ak_cert: Option<PathBuf>,
        #[arg(long, requires = "ak_cert")]
        intermediate: Option<PathBuf>,
        /// The relying party's anchor for the AK certificate chain.
        #[arg(long, requires = "ak_cert")]
        root: Option<PathBuf>,
        /// Expected qualifying data (hex); omitted = not checked.
        #[arg(long, value_name = "HEX")]
        nonce: Option<String>,
        #[arg(long, requires = "pcr_bank")]
        pcrs: Option<PathBuf>,
        #[arg(long, value_name = "BANK")]
        pcr_bank: Option<String>,
        #[arg(long)]
        event_log: Option<PathBuf>,
        #[command(flatten)]
        common: Common,
    },
    /// Azure SEV-SNP confidential VM: HCL report + vTPM quote.
    AzSnpVtpm {
        #[arg(long)]
        hcl_report: PathBuf,
        #[arg(long)]
        tpm_quote: PathBuf,
        #[arg(long)]
        vcek: PathBuf,
        #[arg(long)]
        chain: Option<PathBuf>,
        #[arg(long, value_name = "HEX")]
        nonce: Option<String>,
        #[arg(long, value_name = "HEX")]
        report_data: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Azure TDX confidential VM: HCL report + vTPM quote + TD quote.
    AzTdxVtpm {
        #[arg(long)]
        hcl_report: PathBuf,
        #[arg(long)]
        tpm_quote: PathBuf,
        #[arg(long)]
        td_quote: PathBuf,
        #[arg(long)]
        collateral: Option<PathBuf>,
        #[arg(long)]
        root: Option<PathBuf>,
        #[arg(long, value_name = "HEX")]
        nonce: Option<String>,
        #[arg(long, value_name = "HEX")]
        report_data: Option<String>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Args, Debug)]
struct SimulateCmd {
    /// snp, tdx or tpm.
    #[arg(value_parser = ["snp", "tdx", "tpm"])]
    kind: String,
    /// Report data (SNP/TDX, up to 64 bytes, zero-padded) or nonce (TPM), hex.
    #[arg(long, value_name = "HEX")]
    report_data: String,
    /// Output folder (created).
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("veil: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Attest(Attest::Verify(cmd)) => verify(*cmd),
        Command::Attest(Attest::Simulate(cmd)) => simulate(cmd),
        Command::Model(cmd) => model::run(cmd),
        Command::Seal(cmd) => sealing::run_seal(*cmd),
        Command::Unseal(cmd) => sealing::run_unseal(*cmd),
        Command::Kbs(cmd) => kbs::run(cmd),
        Command::Serve(cmd) => serve::run_serve(cmd),
        Command::VerifyRuntime(cmd) => verify_runtime::run(*cmd),
        Command::Audit(cmd) => audit::run(cmd),
        Command::Verify(cmd) => relying::run_verify(cmd),
        Command::Proxy(cmd) => relying::run_proxy(cmd),
        Command::Demo(cmd) => demo::run(cmd),
    }
}

fn read(p: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("reading {}", p.display()))
}

fn verify(cmd: VerifyCmd) -> anyhow::Result<ExitCode> {
    if let Some(case_path) = &cmd.case {
        if cmd.kind.is_some() {
            bail!("--case and an evidence kind are exclusive: give one or the other");
        }
        return verify_cases(case_path, cmd.name.as_deref(), &cmd.kinds, cmd.danger_trust_simulator, cmd.json);
    }
    let Some(kind) = cmd.kind else {
        bail!("give an evidence kind (snp, tdx, tpm, az-snp-vtpm, az-tdx-vtpm) or --case FILE")
    };
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut add = |role: &str, p: &Option<PathBuf>| -> anyhow::Result<()> {
        if let Some(p) = p {
            files.insert(role.to_string(), read(p)?);
        }
        Ok(())
    };
    let (kind_name, common, report_data, nonce, pcr_bank) = match &kind {
        Kind::Snp { report, vcek, vlek, chain, report_data, common } => {
            add("report", &Some(report.clone()))?;
            add("vcek", vcek)?;
            add("vlek", vlek)?;
            add("chain", chain)?;
            ("snp", common, report_data, &None, &None)
        }
        Kind::Tdx { quote, collateral, root, report_data, common } => {
            add("quote", &Some(quote.clone()))?;
            add("collateral", collateral)?;
            add("root", root)?;
            ("tdx", common, report_data, &None, &None)
        }
        Kind::Tpm { attest, signature, ak, ak_cert, intermediate, root, nonce, pcrs, pcr_bank, event_log, common } => {
            add("attest", &Some(attest.clone()))?;
            add("signature", &Some(signature.clone()))?;
            add("ak", &Some(ak.clone()))?;
            add("ak_cert", ak_cert)?;
            add("intermediate", intermediate)?;
            add("root", root)?;
            add("pcrs", pcrs)?;
            add("event_log", event_log)?;
            ("tpm", common, &None, nonce, pcr_bank)
        }
        Kind::AzSnpVtpm { hcl_report, tpm_quote, vcek, chain, nonce, report_data, common } => {
            add("hcl_report", &Some(hcl_report.clone()))?;
            add("tpm_quote", &Some(tpm_quote.clone()))?;
            add("vcek", &Some(vcek.clone()))?;
            add("chain", chain)?;
            ("az-snp-vtpm", common, report_data, nonce, &None)
        }
        Kind::AzTdxVtpm { hcl_report, tpm_quote, td_quote, collateral, root, nonce, report_data, common } => {
            add("hcl_report", &Some(hcl_report.clone()))?;
            add("tpm_quote", &Some(tpm_quote.clone()))?;
            add("td_quote", &Some(td_quote.clone()))?;
            add("collateral", collateral)?;
            add("root", root)?;
            ("az-tdx-vtpm", common, report_data, nonce, &None)
        }
    };
    let at = match &common.at {
        Some(s) => parse_time(s)?,
        None => time::OffsetDateTime::now_utc(),
    };
    let inputs = Inputs {
        kind: kind_name.to_string(),
        files,
        at,
        report_data: report_data.as_deref().map(|s| parse_hex("--report-data", s)).transpose()?,
        nonce: nonce.as_deref().map(|s| parse_hex("--nonce", s)).transpose()?,
        pcr_bank: pcr_bank.clone(),
        danger_trust_simulator: cmd.danger_trust_simulator,
    };
    let policy = common.policy.as_deref().map(load_policy).transpose()?;
    let outcome = inputs.verify()?;
    let appraisal = match (&outcome, &policy) {
        (Ok(v), Some(p)) => Some(appraisal::appraise(v, p)),
        _ => None,
    };
    report_one(&inputs, &outcome, appraisal.as_ref(), cmd.json)
}

fn load_policy(p: &Path) -> anyhow::Result<Policy> {
    let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
    Policy::from_toml(&text).with_context(|| format!("policy {}", p.display()))
}

fn report_one(
    inputs: &Inputs,
    outcome: &Result<VerifiedEvidence, Error>,
    appraisal: Option<&Result<(), Error>>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let ok = outcome.is_ok() && appraisal.is_none_or(|a| a.is_ok());
    if json {
        let mut v = to_json(outcome);
        if let Some(a) = appraisal {
            v["policy"] = match a {
                Ok(()) => serde_json::json!({ "passed": true }),
                Err(e) => {
                    serde_json::json!({ "passed": false, "error": { "kind": e.kind(), "message": e.to_string() } })
                }
            };
        }
        v["checked"] = serde_json::json!({
            "report_data": inputs.report_data.is_some(),
            "nonce": inputs.nonce.is_some(),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        match outcome {
            Ok(v) => {
                println!(
                    "{}: VERIFIED{}",
                    inputs.kind,
                    if v.simulated() {
                        " — SIMULATED evidence (simulator roots trusted by --danger-trust-simulator)"
                    } else {
                        ""
                    }
                );
                let claims = serde_json::to_value(v.claims())?;
                if let Some(m) = claims.as_object() {
                    for (k, val) in m {
                        match val {
                            // Absent optional claims (e.g. a TCB status without collateral)
                            // are said once below, under "not evaluated".
                            serde_json::Value::Null => {}
                            serde_json::Value::String(s) => println!("  {k}: {s}"),
                            serde_json::Value::Number(n) => println!("  {k}: {n}"),
                            serde_json::Value::Bool(b) => println!("  {k}: {b}"),
                            other => println!("  {k}: {other}"),
                        }
                    }
                }
                if inputs.kind != "tpm" {
                    println!(
                        "  report data: {}",
                        if inputs.report_data.is_some() { "checked" } else { "not checked (no --report-data)" }
                    );
                }
                if inputs.kind == "tpm" || inputs.kind.starts_with("az-") {
                    println!(
                        "  nonce: {}",
                        if inputs.nonce.is_some() { "checked" } else { "not checked (no --nonce)" }
                    );
                }
                for item in v.not_evaluated_items() {
                    println!("  not evaluated: {item}");
                }
                for note in v.notes() {
                    println!("  note: {note}");
                }
                match appraisal {
                    Some(Ok(())) => println!("policy: passed"),
                    Some(Err(e)) => println!("policy: FAILED: {e}"),
                    None => println!("policy: none given"),
                }
            }
            Err(e) => {
                println!("{}: REFUSED [{}]: {e}", inputs.kind, serde_json::to_value(e.kind())?.as_str().unwrap_or("?"))
            }
        }
    }
    if !ok {
        let reason = match (outcome, appraisal) {
            (Err(e), _) => e.to_string(),
            (_, Some(Err(e))) => format!("policy: {e}"),
            _ => String::from("refused"),
        };
        eprintln!("veil: {}: {reason}", inputs.kind);
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn verify_cases(
    path: &Path,
    name: Option<&str>,
    kinds: &[String],
    trust_sim: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let mut file = CaseFile::load(path)?;
    if !kinds.is_empty() {
        file.cases.retain(|c| kinds.contains(&c.kind));
        if file.cases.is_empty() {
            bail!("{}: no case of kind {}", path.display(), kinds.join(", "));
        }
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let selected: Vec<_> = match name {
        Some(n) => {
            let c: Vec<_> = file.cases.iter().filter(|c| c.name == n).collect();
            if c.is_empty() {
                bail!("{}: no case named {n:?}", path.display());
            }
            c
        }
        None => file.cases.iter().collect(),
    };
    // One case: the exit status says whether the evidence verified, whatever the
    // case expects. A table: whether every case matched its expectation.
    if selected.len() == 1 {
        let case = selected[0];
        let inputs = Inputs::from_case(case, base, trust_sim)?;
        let outcome = inputs.verify()?;
        return report_one(&inputs, &outcome, None, json);
    }
    let (mut passed, mut failed) = (0usize, 0usize);
    let mut rows = Vec::new();
    for case in selected {
        let verdict =
            Inputs::from_case(case, base, trust_sim).and_then(|i| i.verify()).and_then(|outcome| judge(case, &outcome));
        let (matched, summary) = match verdict {
            Ok(v) => (v.matched, v.summary),
            Err(e) => (false, format!("error: {e:#}")),
        };
        if matched {
            passed += 1;
        } else {
            failed += 1;
        }
        if json {
            rows.push(
                serde_json::json!({ "name": case.name, "expect": case.expect, "matched": matched, "result": summary }),
            );
        } else {
            println!(
                "{} {:<52} expect {:<6} {}",
                if matched { "PASS" } else { "FAIL" },
                case.name,
                case.expect,
                summary
            );
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "cases": rows, "passed": passed, "failed": failed }))?
        );
    } else {
        println!("{passed} passed, {failed} failed");
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn simulate(cmd: SimulateCmd) -> anyhow::Result<ExitCode> {
    let data = parse_hex("--report-data", &cmd.report_data)?;
    let at = time::OffsetDateTime::now_utc();
    let case = veil_sim::write::write_case(&cmd.kind, &data, &cmd.out, at)
        .with_context(|| format!("simulating {} evidence", cmd.kind))?;
    println!("wrote simulated {} evidence (SIMULATED roots, not trusted by default) to {}", cmd.kind, case.display());
    Ok(ExitCode::SUCCESS)
}
