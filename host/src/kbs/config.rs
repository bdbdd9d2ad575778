//! The broker's configuration (TOML) and `--dev` set-up.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `kbs.toml`. Relative paths are relative to the file's directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM).
    pub tls_cert: PathBuf,
    /// TLS private key (PEM, PKCS#8).
    pub tls_key: PathBuf,
    /// The ES256 key that signs attestation tokens (PKCS#8 DER). The broker's own
    /// credential, mode 0600.
    pub token_key: PathBuf,
    /// Public keys (PEM SPKI, EC P-256) whose ES256 JWTs may use the admin API.
    pub admin_keys: Vec<PathBuf>,
    /// The store (redb file).
    pub store: PathBuf,
    /// File holding the store's key-encryption key (64 hex digits, mode 0600).
    #[serde(default)]
    pub kek_file: Option<PathBuf>,
    /// Environment variable holding the KEK (64 hex digits), instead of a file.
    #[serde(default)]
    pub kek_env: Option<String>,
    /// Accept evidence under the Veil simulator's roots and Trustee's `sample` TEE. For
    /// CI and development only: logged at start and marked in every result.
    #[serde(default)]
    pub danger_trust_simulator: bool,
    /// How long a session (challenge, then token) lives.
    #[serde(default = "default_session_secs")]
    pub session_timeout_secs: u64,
    /// How long an attestation token is valid.
    #[serde(default = "default_token_secs")]
    pub token_lifetime_secs: u64,
    /// Largest request body accepted.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Most live sessions; beyond it new challenges are refused.
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Requests per second each client IP may make (token bucket refill rate).
    #[serde(default = "default_rate")]
    pub rate_limit_per_sec: f64,
    /// Burst each client IP may make (token bucket size).
    #[serde(default = "default_burst")]
    pub rate_limit_burst: f64,
}

fn default_rate() -> f64 {
    500.0
}
fn default_burst() -> f64 {
    1000.0
}

fn default_session_secs() -> u64 {
    300
}
fn default_token_secs() -> u64 {
    300
}
fn default_max_body() -> usize {
    1 << 20
}
fn default_max_sessions() -> usize {
    100_000
}

impl Config {
    /// Reads and parses a config file, resolving relative paths against its directory.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let mut c: Config = toml::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut c.tls_cert);
        fix(&mut c.tls_key);
        fix(&mut c.token_key);
        fix(&mut c.store);
        c.admin_keys.iter_mut().for_each(fix);
        if let Some(k) = c.kek_file.as_mut() {
            fix(k);
        }
        if c.kek_file.is_some() == c.kek_env.is_some() {
            anyhow::bail!("{}: set exactly one of kek_file and kek_env", path.display());
        }
        c.rate_limit()
            .check()
            .map_err(|e| anyhow::anyhow!("{}: rate_limit_per_sec / rate_limit_burst: {e}", path.display()))?;
        Ok(c)
    }

    /// The per-client-address quota.
    pub fn rate_limit(&self) -> veil_kbs::limit::Quota {
        veil_kbs::limit::Quota { per_sec: self.rate_limit_per_sec, burst: self.rate_limit_burst }
    }
}
