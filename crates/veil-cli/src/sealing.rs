//! `veil seal` and `veil unseal`: sealed model bundles (format: docs/formats.md).

use std::io::{IsTerminal as _, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use veil_seal::DataKey;
use veil_seal::card::CardPolicy;
use veil_seal::seal::{SealOptions, seal};
use veil_seal::unseal::{open, write_out};
use veil_seal::work::{Phase, Progress};

/// `veil seal`.
#[derive(Args, Debug)]
pub struct SealCmd {
    /// The model directory.
    model: PathBuf,
    /// The model owner's private key, PEM (PKCS#8 or SEC1; P-256 or P-384).
    #[arg(long, value_name = "PRIV.pem")]
    signing_key: PathBuf,
    /// Where to write the bundle (must not exist).
    #[arg(long, value_name = "BUNDLE")]
    out: PathBuf,
    /// Where to write the fresh data key (64 hex digits, mode 0600; must not exist). This
    /// file is the key to the model: hand it to the key broker, then delete it. Optional
    /// with --kbs: then the key goes only to the broker and never touches the disk.
    #[arg(long, value_name = "FILE", required_unless_present = "kbs")]
    key_out: Option<PathBuf>,
    /// Plaintext bytes per encrypted chunk (e.g. 4MiB, 64KiB, 1048576).
    #[arg(long, value_name = "SIZE", default_value = "4MiB", value_parser = parse_size)]
    chunk_size: u32,
    /// The model card (YAML header + Markdown); default: the model's README.md.
    #[arg(long, value_name = "FILE")]
    card: Option<PathBuf>,
    /// A card policy (TOML: `required = [...]`, `[allowed] license = [...]`).
    #[arg(long, value_name = "FILE")]
    card_policy: Option<PathBuf>,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Extra paths to leave out of the bundle (relative to the model).
    #[arg(long = "ignore-path", value_name = "PATH")]
    ignore_paths: Vec<PathBuf>,
    /// Also register the data key with this key broker as
    /// `veil/model-key/<manifest digest hex>` (needs --admin-key).
    #[arg(long, value_name = "URL", requires = "admin_key")]
    kbs: Option<String>,
    /// The broker admin's private key (PEM PKCS#8, P-256).
    #[arg(long, value_name = "FILE")]
    admin_key: Option<PathBuf>,
    /// A CA certificate to trust for the broker.
    #[arg(long, value_name = "FILE")]
    ca_cert: Option<PathBuf>,
}

/// `veil unseal`.
#[derive(Args, Debug)]
pub struct UnsealCmd {
    /// The bundle.
    bundle: PathBuf,
    /// The data key file written by `veil seal --key-out`.
    #[arg(long, value_name = "FILE")]
    data_key: PathBuf,
    /// The public key (PEM SubjectPublicKeyInfo) whose signature the model must carry.
    #[arg(long, value_name = "PUB.pem")]
    trusted_signer: PathBuf,
    /// Write the plaintext files under this new directory (mode 0600 files). Plaintext on
    /// disk: an operator tool, for use outside the CVM only.
    #[arg(long, value_name = "DIR", required_unless_present = "check", conflicts_with = "check")]
    out: Option<PathBuf>,
    /// Decrypt and verify everything in memory, write nothing.
    #[arg(long)]
    check: bool,
    /// Also write the bundle's OMS signature (a Sigstore bundle, public) to this file, so
    /// that `model_signing verify key` can check the unsealed files.
    #[arg(long, value_name = "FILE")]
    signature_out: Option<PathBuf>,
    /// A card policy the bundle's card must pass.
    #[arg(long, value_name = "FILE")]
    card_policy: Option<PathBuf>,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Parses `4MiB`, `64KiB`, `4M`, `64K` or a plain byte count.
fn parse_size(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let (num, mult) = [("MiB", 1u64 << 20), ("KiB", 1 << 10), ("M", 1 << 20), ("K", 1 << 10)]
        .iter()
        .find_map(|(suf, m)| s.strip_suffix(suf).map(|n| (n, *m)))
        .unwrap_or((s, 1));
    let n: u64 = num.trim().parse().map_err(|_| format!("not a size: {s:?} (use e.g. 4MiB, 64KiB, 1048576)"))?;
    n.checked_mul(mult).and_then(|v| u32::try_from(v).ok()).ok_or_else(|| format!("size too large: {s:?}"))
}

fn read(p: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("reading {}", p.display()))
}

fn policy(p: Option<&Path>) -> anyhow::Result<Option<CardPolicy>> {
    p.map(|p| {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        CardPolicy::from_toml(&text).with_context(|| format!("card policy {}", p.display()))
    })
    .transpose()
}

/// Progress bars on stderr when it is a terminal; nothing otherwise.
struct Bars {
    hash: ProgressBar,
    crypt: ProgressBar,
}

impl Bars {
    fn new(crypt_label: &'static str, with_hash: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        let multi = MultiProgress::with_draw_target(if tty {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let style =
            ProgressStyle::with_template("{prefix:>10} [{bar:40}] {bytes}/{total_bytes} {binary_bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> ");
        let bar = |label: &'static str| {
            let b = multi.add(ProgressBar::new(0));
            b.set_style(style.clone());
            b.set_prefix(label);
            b
        };
        let hash = if with_hash { bar("hashing") } else { ProgressBar::hidden() };
        Self { hash, crypt: bar(crypt_label) }
    }
    fn bar(&self, phase: Phase) -> &ProgressBar {
        match phase {
            Phase::Hash => &self.hash,
            Phase::Encrypt | Phase::Decrypt => &self.crypt,
        }
    }
}

impl Progress for Bars {
    fn begin(&self, phase: Phase, total: u64) {
        self.bar(phase).set_length(total);
    }
    fn advance(&self, phase: Phase, bytes: u64) {
        self.bar(phase).inc(bytes);
    }
    fn end(&self, phase: Phase) {
        self.bar(phase).finish();
    }
}

/// Creates a new file with mode 0600 holding `text`.
pub(crate) fn write_secret_file(path: &Path, text: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(text).and_then(|()| f.sync_all()).with_context(|| format!("writing {}", path.display()))
}

/// Runs `veil seal`.
pub fn run_seal(c: SealCmd) -> anyhow::Result<ExitCode> {
    if let Some(k) = c.key_out.as_ref().filter(|k| std::fs::symlink_metadata(k).is_ok()) {
        bail!("{} already exists; refusing to overwrite a key file", k.display());
    }
    let key = read(&c.signing_key)?;
    let card_policy = policy(c.card_policy.as_deref())?;
    let mut ignore: Vec<PathBuf> = c.ignore_paths.iter().map(|p| c.model.join(p)).collect();
    if let Some(k) = &c.key_out {
        ignore.push(std::path::absolute(k)?);
    }
    let bars = Bars::new("encrypting", true);
    let opts = SealOptions {
        chunk_size: c.chunk_size,
        threads: c.threads,
        card: c.card.as_deref(),
        card_policy: card_policy.as_ref(),
        ignore_paths: &ignore,
        progress: &bars,
    };
    let start = std::time::Instant::now();
    let sealed = seal(&c.model, &key, &c.out, &opts)?;
    let secs = start.elapsed().as_secs_f64();
    if let Some(k) = &c.key_out {
        if let Err(e) = write_secret_file(k, sealed.data_key.to_hex().as_bytes()) {
            // A bundle nobody can open is worse than none.
            let _ = std::fs::remove_file(&c.out);
            return Err(e.context("the bundle was removed because its key could not be saved"));
        }
    }
    println!("sealed {} files, {} bytes, in {secs:.2} s", sealed.files, sealed.bytes);
    println!("bundle: {}", c.out.display());
    println!("bundle id: {}", sealed.bundle_id);
    println!("manifest digest: {}", sealed.manifest_digest);
    println!("signer: {}", sealed.signer);
    if let Some(k) = &c.key_out {
        println!("data key: {} (mode 0600; hand it to the key broker, then delete it)", k.display());
    }
    if let (Some(url), Some(admin)) = (&c.kbs, &c.admin_key) {
        let registered =
            crate::kbs::register_sealed(url, admin, c.ca_cert.as_deref(), &sealed.manifest_digest, &sealed.data_key);
        let path = match (registered, &c.key_out) {
            (Ok(p), _) => p,
            (Err(e), Some(_)) => {
                return Err(e.context("registering the data key with the broker (the bundle and key file are kept)"));
            }
            (Err(e), None) => {
                // The broker held the only copy of the key: without it the bundle is noise.
                let _ = std::fs::remove_file(&c.out);
                return Err(e.context("registering the data key with the broker; the bundle was removed"));
            }
        };
        println!("registered: {url}/kbs/v0/resource/{path}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `veil unseal`.
pub fn run_unseal(c: UnsealCmd) -> anyhow::Result<ExitCode> {
    let signer = read(&c.trusted_signer)?;
    let key = DataKey::from_hex(&zeroize::Zeroizing::new(read(&c.data_key)?))?;
    let card_policy = policy(c.card_policy.as_deref())?;
    if let Some(out) = &c.out {
        if std::fs::symlink_metadata(out).is_ok() {
            bail!("{} already exists; refusing to overwrite", out.display());
        }
    }
    let start = std::time::Instant::now();
    let opened = open(&c.bundle, &signer).with_context(|| format!("opening {}", c.bundle.display()))?;
    if let Some(p) = &card_policy {
        opened.check_card(p)?;
    }
    let bars = Bars::new("decrypting", false);
    let unsealed =
        opened.unseal(&key, c.threads, &bars).with_context(|| format!("unsealing {}", c.bundle.display()))?;
    let secs = start.elapsed().as_secs_f64();
    let bytes: usize = unsealed.files.iter().map(|f| f.data.len()).sum();
    if let Some(p) = &c.signature_out {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p)
            .and_then(|mut f| f.write_all(opened.signature().as_bytes()))
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(out) = &c.out {
        write_out(&unsealed, out)?;
        println!("unsealed {} files, {bytes} bytes, in {secs:.2} s, into {}", unsealed.files.len(), out.display());
    } else {
        println!("verified {} files, {bytes} bytes, in {secs:.2} s (nothing written)", unsealed.files.len());
    }
    println!("manifest digest: {}", unsealed.manifest_digest);
    println!("signer: {}", unsealed.signer);
    if let Some(l) = unsealed.card.license() {
        println!("license: {l}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_size("64KiB"), Ok(64 << 10));
        assert_eq!(parse_size("4M"), Ok(4 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("4GiB").is_err());
        assert!(parse_size("8192MiB").is_err());
        assert!(parse_size("lots").is_err());
    }
}
