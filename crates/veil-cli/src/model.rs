//! `veil model`: sign and verify models with OpenSSF Model Signing (OMS) key signatures,
//! interoperable with `model_signing sign key` / `model_signing verify key`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use veil_seal::oms;

/// Model signing commands.
#[derive(Subcommand, Debug)]
pub enum Model {
    /// Sign a model directory (OMS Sigstore bundle, ECDSA key).
    Sign(SignCmd),
    /// Verify a model directory against an OMS signature and a public key.
    Verify(VerifyCmd),
}

#[derive(Args, Debug)]
pub struct SignCmd {
    /// Private key PEM (PKCS#8 or SEC1; P-256 or P-384).
    #[arg(long, value_name = "PRIV.pem")]
    key: PathBuf,
    /// Where to write the signature.
    #[arg(long, value_name = "OUT", default_value = "model.sig")]
    signature: PathBuf,
    /// Extra paths to leave out of the manifest (relative to the model).
    #[arg(long = "ignore-path", value_name = "PATH")]
    ignore_paths: Vec<PathBuf>,
    /// The model directory.
    model: PathBuf,
}

#[derive(Args, Debug)]
pub struct VerifyCmd {
    /// Public key PEM (SubjectPublicKeyInfo).
    #[arg(long, value_name = "PUB.pem")]
    key: PathBuf,
    /// The signature to check.
    #[arg(long, value_name = "SIG", default_value = "model.sig")]
    signature: PathBuf,
    /// The model directory.
    model: PathBuf,
}

fn read(p: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("reading {}", p.display()))
}

/// The signature file's path as an absolute path, so that it is ignored when it lies
/// inside the model (as `model_signing` does).
fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(std::path::absolute(p)?)
}

/// Runs a `veil model` command.
pub fn run(cmd: Model) -> anyhow::Result<ExitCode> {
    match cmd {
        Model::Sign(c) => {
            let key = read(&c.key)?;
            let mut ignore =
                c.ignore_paths.iter().map(|p| c.model.join(p)).map(|p| absolute(&p)).collect::<Result<Vec<_>, _>>()?;
            ignore.push(absolute(&c.signature)?);
            let manifest = oms::Manifest::compute(&c.model, &ignore)?;
            let bundle = oms::sign(&manifest, &key)?;
            std::fs::write(&c.signature, bundle).with_context(|| format!("writing {}", c.signature.display()))?;
            println!("signed {} files", manifest.resources.len());
            println!("manifest digest: {}", manifest.digest_string());
            Ok(ExitCode::SUCCESS)
        }
        Model::Verify(c) => {
            let key = read(&c.key)?;
            let sig = read(&c.signature)?;
            match oms::verify(&sig, &key, &c.model) {
                Ok(v) => {
                    println!("verified {} files", v.files.len());
                    println!("manifest digest: {}", v.manifest_digest);
                    println!("signer: {}", v.signer);
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("veil: verification failed: {e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}
