//! Helpers shared by the CLI integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn venv_bin(name: &str) -> PathBuf {
    let p = root().join(".venv/bin").join(name);
    assert!(p.exists(), "{} is missing: run scripts/test (it installs model-signing==1.1.1 into .venv)", p.display());
    p
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

pub fn veil(args: &[&str], dir: &Path) -> Output {
    run(Command::new(env!("CARGO_BIN_EXE_veil")).args(args).current_dir(dir))
}

pub fn model_signing(args: &[&str], dir: &Path) -> Output {
    run(Command::new(venv_bin("model_signing")).args(args).current_dir(dir))
}

/// Generates an EC key pair with Python's `cryptography` (a model-signing dependency):
/// `<name>.pem` (PKCS#8, or SEC1 when `sec1`) and `<name>.pub` (SPKI).
pub fn keygen(dir: &Path, name: &str, curve: &str, sec1: bool) {
    let format = if sec1 { "TraditionalOpenSSL" } else { "PKCS8" };
    let script = format!(
        "from cryptography.hazmat.primitives.asymmetric import ec\n\
         from cryptography.hazmat.primitives import serialization as s\n\
         k = ec.generate_private_key(ec.{curve}())\n\
         open('{name}.pem','wb').write(k.private_bytes(s.Encoding.PEM, s.PrivateFormat.{format}, s.NoEncryption()))\n\
         open('{name}.pub','wb').write(k.public_key().public_bytes(s.Encoding.PEM, s.PublicFormat.SubjectPublicKeyInfo))\n"
    );
    let out = run(Command::new(venv_bin("python")).args(["-c", &script]).current_dir(dir));
    assert!(out.status.success(), "keygen: {}", String::from_utf8_lossy(&out.stderr));
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A model from the cache `scripts/fetch-models` fills; fails (never skips) when absent.
pub fn cached_model(name: &str) -> PathBuf {
    let p = root().join(".cache/models").join(name);
    assert!(p.is_dir(), "{} is missing: run scripts/fetch-models (scripts/test does)", p.display());
    p
}
