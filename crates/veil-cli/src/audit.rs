//! `veil audit verify LOG`: checks a runtime's request audit log (hash chain, sequence,
//! signed checkpoints; `veil_enclave::serve::audit`) and names the first broken record.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use base64::Engine as _;
use clap::{Args, Subcommand};

/// `veil audit`.
#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Verify an audit log.
    Verify(VerifyArgs),
}

/// `veil audit verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The log (`<state_dir>/audit.log`).
    log: PathBuf,
    /// The runtime's TLS certificate (PEM) as you verified it (`veil verify-runtime
    /// --save-cert`): the log's last run must be signed by its key.
    #[arg(long)]
    cert: Option<PathBuf>,
}

pub fn run(cmd: AuditCmd) -> anyhow::Result<ExitCode> {
    let AuditCmd::Verify(a) = cmd;
    let bytes = std::fs::read(&a.log).with_context(|| format!("reading {}", a.log.display()))?;
    let summary = match veil_enclave::serve::audit::verify_log(&bytes) {
        Ok(s) => s,
        Err(broken) => {
            eprintln!("{}: {broken}", a.log.display());
            return Ok(ExitCode::from(1));
        }
    };
    if let Some(cert) = &a.cert {
        let pem = std::fs::read_to_string(cert).with_context(|| format!("reading {}", cert.display()))?;
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD.decode(b64).context("certificate PEM")?;
        let (_, c) = x509_parser::parse_x509_certificate(&der).map_err(|e| anyhow::anyhow!("certificate: {e}"))?;
        let point = c.public_key().subject_public_key.data.to_vec();
        let logged = summary.last_key.as_ref().and_then(veil_enclave::serve::audit::jwk_point);
        if logged.as_deref() != Some(point.as_slice()) {
            bail!("the log's last run was signed by another key than {}'s", cert.display());
        }
    }
    println!("{}", serde_json::to_string_pretty(&summary)?);
    if summary.unsigned_tail > 0 {
        eprintln!(
            "note: the last {} record(s) follow the last checkpoint and are not signed yet",
            summary.unsigned_tail
        );
    }
    Ok(ExitCode::SUCCESS)
}
