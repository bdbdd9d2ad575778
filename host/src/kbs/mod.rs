//! The key broker: the Trustee KBS 0.4.0 protocol (`veil kbs serve`).
//!
//! - `POST /kbs/v0/auth`, `POST /kbs/v0/attest`, `GET /kbs/v0/resource/<repo>/<type>/<tag>`
//!   exactly as Trustee's KBS speaks them (PROTOCOLS.md section 1), with EAR tokens.
//! - Admin API (bearer ES256 JWTs from configured admin keys): `POST /kbs/v0/resource/...`
//!   (raw body), `POST /kbs/v0/resource-policy` and `/kbs/v0/attestation-policy`
//!   (`{"policy": b64url(rego)}`), `POST /kbs/v0/reference-values` (JSON object),
//!   `POST /kbs/v0/revoke` (`{"digest": "sha256:..."}`), `GET /kbs/v0/decisions?limit=N`.
//! - `GET /.well-known/jwks.json`: the token verification key.

pub mod admin;
pub mod config;
pub mod dev;
pub use veil_client::evidence;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod store;
pub mod tls;

pub use config::Config;
pub use server::{Kbs, serve};

use anyhow::Context as _;
use zeroize::Zeroizing;

/// Reads the KEK (64 hex digits) from the configured file or environment variable.
pub fn load_kek(cfg: &Config) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let text = Zeroizing::new(match (&cfg.kek_file, &cfg.kek_env) {
        (Some(p), _) => std::fs::read_to_string(p).with_context(|| format!("reading the KEK from {}", p.display()))?,
        (None, Some(v)) => std::env::var(v).with_context(|| format!("reading the KEK from ${v}"))?,
        (None, None) => anyhow::bail!("no KEK configured"),
    });
    let mut k = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), k.as_mut_slice()).context("the KEK must be 64 hex digits")?;
    Ok(k)
}
