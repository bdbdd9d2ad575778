//! Helpers shared by the CLI integration tests.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

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

/// A key broker process (`veil kbs serve --dev`) on loopback, killed on drop.
pub struct Broker {
    pub child: std::process::Child,
    pub url: String,
    pub admin_key: PathBuf,
    /// The broker's CA certificate (PEM) and where it lies.
    pub ca: Vec<u8>,
    pub ca_path: PathBuf,
    pub _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a broker from the dev configuration in a fresh directory, once it listens.
pub fn start_broker() -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let (child, url, admin_key, ca_path) = spawn_broker(&dir.path().join("kbs"));
    let ca = std::fs::read(&ca_path).unwrap();
    Broker { child, url, admin_key, ca, ca_path, _dir: dir }
}

/// `veil kbs serve --dev DIR` (which reuses DIR's configuration when there is one); its
/// process, URL, admin key and CA certificate once it listens.
fn spawn_broker(dir: &std::path::Path) -> (std::process::Child, String, PathBuf, PathBuf) {
    use std::io::{BufRead as _, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["kbs", "serve", "--dev"])
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut get = |prefix: &str| {
        let l = lines.next().expect("broker exited before printing its address").unwrap();
        l.strip_prefix(prefix).unwrap_or_else(|| panic!("expected {prefix:?}, got {l:?}")).to_owned()
    };
    let url = get("kbs: ");
    let admin_key = PathBuf::from(get("admin-key: "));
    let ca_path = PathBuf::from(get("ca-cert: "));
    (child, url, admin_key, ca_path)
}

impl Broker {
    /// Stops the broker, lets `edit` change its directory (configuration, store), and
    /// starts it again on a new port.
    #[allow(dead_code)]
    pub fn restart(&mut self, edit: impl FnOnce(&std::path::Path)) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = self._dir.path().join("kbs");
        edit(&dir);
        let (child, url, _, _) = spawn_broker(&dir);
        self.child = child;
        self.url = url;
    }

    /// Stops the broker.
    #[allow(dead_code)]
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Seals `model` (with a card) and registers its key with the broker; returns the
/// manifest digest.
pub fn seal(d: &Path, b: &Broker, model: &Path, name: &str) -> String {
    seal_full(d, b, model, name).0
}

/// [`seal`], also returning the signer (`sha256:<hex>`).
pub fn seal_full(d: &Path, b: &Broker, model: &Path, name: &str) -> (String, String) {
    let staged = d.join(format!("{name}-src"));
    std::fs::create_dir_all(&staged).unwrap();
    for e in std::fs::read_dir(model).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), staged.join(e.file_name())).unwrap();
        }
    }
    std::fs::write(staged.join("MODEL_CARD.md"), "---\nlicense: apache-2.0\n---\nA test model.\n").unwrap();
    let o = veil(
        &[
            "seal",
            staged.to_str().unwrap(),
            "--signing-key",
            "owner.pem",
            "--out",
            &format!("{name}.veil"),
            "--kbs",
            &b.url,
            "--admin-key",
            b.admin_key.to_str().unwrap(),
            "--ca-cert",
            b.ca_path.to_str().unwrap(),
        ],
        d,
    );
    assert!(o.status.success(), "seal {name}: {}", stderr(&o));
    std::fs::remove_dir_all(&staged).unwrap();
    let out = stdout(&o);
    let field = |k: &str| out.lines().find_map(|l| l.strip_prefix(k)).unwrap().to_owned();
    (field("manifest digest: "), field("signer: "))
}

pub struct Runtime {
    pub _p: Proc,
    pub url: String,
    pub cert: PathBuf,
}

/// Starts `veil serve`; returns the runtime once it prints its address, or the process's
/// exit status and stderr if it stops first.
pub fn start_runtime(cfg: &Path, tmp: &Path) -> Result<Runtime, (i32, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["serve", "--config"])
        .arg(cfg)
        .env("RUST_LOG", "info")
        .env("TMPDIR", tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    match lines.next() {
        Some(Ok(l)) if l.starts_with("runtime: ") => {
            let url = l["runtime: ".len()..].to_owned();
            let _fp = lines.next().unwrap().unwrap();
            let cert = PathBuf::from(lines.next().unwrap().unwrap().strip_prefix("tls-cert: ").unwrap());
            // Keep draining stderr so the runtime never blocks on a full pipe.
            let err = child.stderr.take().unwrap();
            std::thread::spawn(move || for _ in BufReader::new(err).lines() {});
            Ok(Runtime { _p: Proc(child), url, cert })
        }
        _ => {
            let status = child.wait().unwrap();
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            Err((status.code().unwrap_or(-1), err))
        }
    }
}
