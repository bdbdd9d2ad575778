//! `veil verify-runtime URL`: a relying party's check of a serving runtime before it
//! sends a prompt. Connects over TLS with the RA-TLS verifier (the certificate's
//! evidence must verify and pass the policy given by flags, or the handshake fails),
//! then asks `/v1/attestation` with a fresh random nonce and checks that the new
//! evidence binds that nonce and the same TLS key. Prints what was verified as JSON;
//! `--save-cert` writes the verified certificate (PEM) for clients that can only pin
//! a certificate (e.g. the `openai` Python package through `httpx`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use veil_client::ratls::{ClientPolicy, RaTlsVerifier, verify_fresh};

use crate::relying::error_chain;

/// `veil verify-runtime`.
#[derive(Args, Debug)]
pub struct VerifyRuntimeCmd {
    /// The runtime, `https://host:port`.
    url: String,
    /// Allowed launch measurement (SNP MEASUREMENT / TDX MRTD, hex); repeatable.
    #[arg(long = "measurement")]
    measurements: Vec<String>,
    /// A model manifest digest (`sha256:<hex>`) that must be loaded; repeatable.
    #[arg(long = "model")]
    models: Vec<String>,
    /// An allowed model signer (`sha256:<hex>`); repeatable.
    #[arg(long = "signer")]
    signers: Vec<String>,
    /// Accept a debug guest.
    #[arg(long)]
    allow_debug: bool,
    /// Accept evidence from the TEE simulator. It proves nothing: tests and demos only.
    #[arg(long)]
    danger_trust_simulator: bool,
    /// Write the verified certificate (PEM) here.
    #[arg(long)]
    save_cert: Option<PathBuf>,
}

pub fn run(cmd: VerifyRuntimeCmd) -> anyhow::Result<ExitCode> {
    let url = cmd.url.trim_end_matches('/').to_owned();
    if !url.starts_with("https://") {
        bail!("{url}: the runtime is reached over attested TLS; give an https:// URL");
    }
    let policy = ClientPolicy {
        danger_trust_simulator: cmd.danger_trust_simulator,
        allow_debug: cmd.allow_debug,
        measurements: cmd.measurements,
        models: cmd.models,
        signers: cmd.signers,
        ..ClientPolicy::default()
    };
    if policy.measurements.is_empty() {
        eprintln!("note: no --measurement given: any launch measurement is accepted");
    }
    if policy.models.is_empty() {
        eprintln!("note: no --model given: the runtime may serve any model its event log names");
    }
    let verifier = Arc::new(RaTlsVerifier::new(policy));
    let tls = verifier.client_config().context("TLS configuration")?;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("HTTP client")?;
    let mut nonce = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    let nonce = hex::encode(nonce);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let body: serde_json::Value = rt.block_on(async {
        let resp = client
            .get(format!("{url}/v1/attestation?nonce={nonce}"))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{}", error_chain(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            bail!("/v1/attestation answered {status}");
        }
        resp.json().await.context("/v1/attestation: not JSON")
    })?;
    let cert = verifier.verified().context("the TLS handshake completed without a verified certificate")?;
    let fresh = verify_fresh(&body, &nonce, &cert, verifier.policy(), verifier.verifiers())
        .context("fresh evidence from /v1/attestation")?;
    if cert.appraisal.simulated || fresh.simulated {
        eprintln!("warning: the runtime's evidence is SIMULATED; it proves nothing about hardware");
    }
    if let Some(path) = &cmd.save_cert {
        let der = verifier.verified_der().context("no certificate")?;
        std::fs::write(path, veil_seal::keys::pem_encode("CERTIFICATE", &der))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let out = serde_json::json!({
        "verified": true,
        "runtime": url,
        "certificate_sha256": cert.certificate_sha256,
        "certificate_evidence": cert.appraisal,
        "launch_identity": cert.launch_identity,
        "fresh_evidence": fresh,
        "nonce": nonce,
        "models": body.get("models"),
        "ear_token": body.get("ear_token"),
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}
