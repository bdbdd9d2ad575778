//! TLS for the broker: rustls with the ring provider, TLS 1.3 and 1.2.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

/// A server config from a PEM certificate chain and a PEM private key.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("opening {}", cert.display()))?,
    ))
    .collect::<Result<Vec<_>, _>>()
    .with_context(|| format!("reading {}", cert.display()))?;
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).with_context(|| format!("opening {}", key.display()))?,
    ))
    .with_context(|| format!("reading {}", key.display()))?
    .ok_or_else(|| anyhow::anyhow!("{}: no private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(cfg))
}

/// SHA-256 fingerprint of the first certificate in a PEM file, hex with colons.
pub fn fingerprint(cert: &Path) -> anyhow::Result<String> {
    let first = rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(cert)?))
        .next()
        .ok_or_else(|| anyhow::anyhow!("{}: no certificate", cert.display()))??;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, first.as_ref());
    Ok(d.as_ref().iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"))
}
