//! `veil kbs serve --dev DIR`: a complete working configuration, written once.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use veil_kbs::ear::TokenKey;

use super::config::Config;
use super::store::{self, Store};

/// The files of a dev configuration.
#[derive(Debug, Clone)]
pub struct DevPaths {
    /// `kbs.toml`.
    pub config: PathBuf,
    /// The admin's private key (PEM PKCS#8, mode 0600).
    pub admin_key: PathBuf,
    /// The TLS certificate, to trust as a CA.
    pub ca_cert: PathBuf,
}

fn write_new(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

/// Writes a dev configuration into `dir` unless `dir/kbs.toml` exists; returns its paths.
pub fn ensure(dir: &Path) -> anyhow::Result<DevPaths> {
    let paths =
        DevPaths { config: dir.join("kbs.toml"), admin_key: dir.join("admin.key"), ca_cert: dir.join("tls.crt") };
    if paths.config.exists() {
        return Ok(paths);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tls = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])?;
    write_new(&dir.join("tls.crt"), tls.cert.pem().as_bytes(), 0o644)?;
    write_new(&dir.join("tls.key"), tls.signing_key.serialize_pem().as_bytes(), 0o600)?;
    let token = TokenKey::generate()?;
    write_new(&dir.join("token.pk8"), token.pkcs8(), 0o600)?;
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let admin = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .map_err(|_| anyhow::anyhow!("generating the admin key"))?;
    let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        admin.as_ref(),
    )
    .map_err(|_| anyhow::anyhow!("admin key"))?;
    write_new(&paths.admin_key, veil_seal::keys::pem_encode("PRIVATE KEY", admin.as_ref()).as_bytes(), 0o600)?;
    let spki = spki_p256(aws_lc_rs::signature::KeyPair::public_key(&pair).as_ref());
    write_new(&dir.join("admin.pub"), veil_seal::keys::pem_encode("PUBLIC KEY", &spki).as_bytes(), 0o644)?;
    let mut kek = zeroize::Zeroizing::new([0u8; 32]);
    aws_lc_rs::rand::fill(kek.as_mut_slice()).map_err(|_| anyhow::anyhow!("randomness"))?;
    write_new(&dir.join("kek"), zeroize::Zeroizing::new(hex::encode(kek.as_slice())).as_bytes(), 0o600)?;
    let toml = "# Written by `veil kbs serve --dev`: development only.\n\
        listen = \"127.0.0.1:0\"\n\
        tls_cert = \"tls.crt\"\n\
        tls_key = \"tls.key\"\n\
        token_key = \"token.pk8\"\n\
        admin_keys = [\"admin.pub\"]\n\
        store = \"store.redb\"\n\
        kek_file = \"kek\"\n\
        danger_trust_simulator = true\n";
    // The store and its dev reference values first, the config last: a config file
    // means a complete set-up.
    let cfg_tmp = dir.join(".kbs.toml.partial");
    let _ = std::fs::remove_file(&cfg_tmp);
    write_new(&cfg_tmp, toml.as_bytes(), 0o644)?;
    let cfg = Config::load(&cfg_tmp)?;
    let store = Store::open(&cfg.store, &super::load_kek(&cfg)?)?;
    store.set_meta(store::REFERENCE, r#"{"allow_simulated":true,"allow_any_measurement":true}"#)?;
    drop(store);
    std::fs::rename(&cfg_tmp, &paths.config)?;
    Ok(paths)
}

/// The DER SubjectPublicKeyInfo of an uncompressed P-256 point.
pub fn spki_p256(point: &[u8]) -> Vec<u8> {
    const PREFIX: [u8; 26] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
        0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    [&PREFIX[..], point].concat()
}
