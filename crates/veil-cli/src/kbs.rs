//! `veil kbs serve` (the key broker) and `veil kbs admin` (its admin API).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use veil_host::kbs::admin::{AdminClient, PolicyKind};
use veil_host::kbs::{Config, Kbs, dev, serve, tls};

/// `veil kbs`.
#[derive(Subcommand, Debug)]
pub enum KbsCmd {
    /// Run the key broker.
    Serve(ServeCmd),
    /// Drive the broker's admin API.
    Admin(AdminCmd),
}

/// `veil kbs serve`.
#[derive(Args, Debug)]
pub struct ServeCmd {
    /// The configuration file.
    #[arg(long, value_name = "kbs.toml", required_unless_present = "dev", conflicts_with = "dev")]
    config: Option<PathBuf>,
    /// Development mode: write a complete configuration into DIR if absent (self-signed
    /// TLS, admin key, store, simulated evidence accepted), listen on a free loopback
    /// port, and print `kbs:`, `admin-key:` and `ca-cert:` lines.
    #[arg(long, value_name = "DIR")]
    dev: Option<PathBuf>,
}

/// `veil kbs admin`.
#[derive(Args, Debug)]
pub struct AdminCmd {
    /// The broker, `https://HOST:PORT`.
    #[arg(long, value_name = "URL")]
    kbs: String,
    /// The admin's private key (PEM PKCS#8, P-256).
    #[arg(long, value_name = "FILE")]
    admin_key: PathBuf,
    /// A CA certificate to trust for the broker (e.g. the dev self-signed one).
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    op: AdminOp,
}

#[derive(Subcommand, Debug)]
enum AdminOp {
    /// Register a resource from a file (raw bytes; `--hex` decodes a hex key file).
    Register {
        /// `repository/type/tag`.
        #[arg(long)]
        path: String,
        /// The value.
        #[arg(long)]
        file: PathBuf,
        /// The file holds hex (e.g. `veil seal --key-out`), register its bytes.
        #[arg(long)]
        hex: bool,
    },
    /// Revoke a model manifest digest (`sha256:<hex>`): its key is no longer released.
    Revoke {
        /// The digest.
        digest: String,
    },
    /// Replace the reference values (a JSON object; see host/policies/attestation.rego).
    SetReference {
        /// The JSON file.
        file: PathBuf,
    },
    /// Replace a Rego policy.
    SetPolicy {
        /// `attestation` or `resource`.
        #[arg(long)]
        kind: String,
        /// The Rego file.
        file: PathBuf,
    },
    /// Show recent decisions and changes (the audit log).
    Decisions {
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Installs a tracing subscriber writing to stderr (`RUST_LOG` filters; default info),
/// coloured only when stderr is a terminal (a log file gets plain `key=value` text).
pub fn init_logging() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}

/// Runs `veil kbs ...`.
pub fn run(cmd: KbsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        KbsCmd::Serve(c) => {
            init_logging();
            let (config_path, dev_paths) = match (&c.config, &c.dev) {
                (Some(p), _) => (p.clone(), None),
                (None, Some(dir)) => {
                    let d = dev::ensure(dir)?;
                    (d.config.clone(), Some(d))
                }
                (None, None) => anyhow::bail!("give --config or --dev"),
            };
            let cfg = Config::load(&config_path)?;
            let cert = cfg.tls_cert.clone();
            let kbs = Kbs::new(cfg)?;
            runtime()?.block_on(serve(kbs, |addr| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "kbs: https://{addr}");
                if let Some(d) = &dev_paths {
                    let _ = writeln!(out, "admin-key: {}", d.admin_key.display());
                    let _ = writeln!(out, "ca-cert: {}", d.ca_cert.display());
                }
                if let Ok(fp) = tls::fingerprint(&cert) {
                    let _ = writeln!(out, "tls-sha256: {fp}");
                }
                let _ = out.flush();
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        KbsCmd::Admin(c) => {
            let key = std::fs::read(&c.admin_key).with_context(|| format!("reading {}", c.admin_key.display()))?;
            let ca = c.ca_cert.as_ref().map(std::fs::read).transpose().context("reading the CA certificate")?;
            let client = AdminClient::new(&c.kbs, ca.as_deref(), &key)?;
            runtime()?.block_on(async {
                match c.op {
                    AdminOp::Register { path, file, hex } => {
                        let raw = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                        let value = if hex { veil_seal::DataKey::from_hex(&raw)?.as_bytes().to_vec() } else { raw };
                        client.register(&path, &value).await?;
                        println!("registered {path} ({} bytes)", value.len());
                    }
                    AdminOp::Revoke { digest } => {
                        client.revoke(&digest).await?;
                        println!("revoked {digest}");
                    }
                    AdminOp::SetReference { file } => {
                        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&file)?)
                            .with_context(|| format!("{} is not JSON", file.display()))?;
                        client.set_reference_values(&v).await?;
                        println!("reference values set");
                    }
                    AdminOp::SetPolicy { kind, file } => {
                        let kind = match kind.as_str() {
                            "attestation" => PolicyKind::Attestation,
                            "resource" => PolicyKind::Resource,
                            other => anyhow::bail!("--kind is attestation or resource, not {other:?}"),
                        };
                        let rego = std::fs::read_to_string(&file)?;
                        client.set_policy(kind, &rego).await?;
                        println!("policy set");
                    }
                    AdminOp::Decisions { limit } => {
                        println!("{}", serde_json::to_string_pretty(&client.decisions(limit).await?)?);
                    }
                }
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Registers a freshly sealed model's key with a broker (`veil seal --kbs`).
pub fn register_sealed(
    kbs: &str,
    admin_key: &std::path::Path,
    ca_cert: Option<&std::path::Path>,
    manifest_digest: &str,
    key: &veil_seal::DataKey,
) -> anyhow::Result<String> {
    let pem = std::fs::read(admin_key).with_context(|| format!("reading {}", admin_key.display()))?;
    let ca = ca_cert.map(std::fs::read).transpose().context("reading the CA certificate")?;
    let client = AdminClient::new(kbs, ca.as_deref(), &pem)?;
    runtime()?.block_on(client.register_model_key(manifest_digest, key))
}
