//! OMS interoperability with the PyPI `model-signing` 1.1.1 CLI, both directions.
//!
//! Needs `.venv/bin/model_signing` at the workspace root, which `scripts/test` installs.
//! The tests fail (never skip) when it is missing.

use std::path::Path;
use std::process::Output;

mod common;
use common::{keygen, model_signing, stdout, veil};

/// A temp dir with keys `k` (P-256), `k384` (P-384, SEC1), `other` (P-256) and a small model
/// `model/` with a nested directory, an empty file and git paths.
fn setup() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keygen(d, "k", "SECP256R1", false);
    keygen(d, "k384", "SECP384R1", true);
    keygen(d, "other", "SECP256R1", false);
    let m = d.join("model");
    std::fs::create_dir_all(m.join("tok/sub")).unwrap();
    std::fs::create_dir_all(m.join(".git")).unwrap();
    std::fs::write(m.join("config.json"), br#"{"hidden_size": 8}"#).unwrap();
    std::fs::write(m.join("model.safetensors"), (0..300_000u32).map(|i| i as u8).collect::<Vec<_>>()).unwrap();
    std::fs::write(m.join("tok/tokenizer.json"), b"{}").unwrap();
    std::fs::write(m.join("tok/sub/empty"), b"").unwrap();
    std::fs::write(m.join("tok.txt"), b"after tok/ in PurePosixPath order").unwrap();
    std::fs::write(m.join(".git/HEAD"), b"ref: refs/heads/main").unwrap();
    std::fs::write(m.join(".gitattributes"), b"* -text").unwrap();
    t
}

fn digest_line(o: &Output) -> String {
    stdout(o).lines().find(|l| l.starts_with("manifest digest: ")).unwrap_or_default().to_owned()
}

#[test]
fn model_signing_signed_verifies_in_veil() {
    let t = setup();
    let d = t.path();
    // Signature inside the model: model_signing records it in ignore_paths.
    let o = model_signing(&["sign", "key", "model", "--private_key", "k.pem", "--signature", "model/model.sig"], d);
    assert!(o.status.success(), "model_signing sign: {}", String::from_utf8_lossy(&o.stderr));
    let v = veil(&["model", "verify", "--key", "k.pub", "--signature", "model/model.sig", "model"], d);
    assert!(v.status.success(), "veil verify: {}", String::from_utf8_lossy(&v.stderr));
    assert!(stdout(&v).contains("verified 5 files"), "{}", stdout(&v));
    assert!(stdout(&v).contains("signer: sha256:"));
    // Same manifest digest as Veil computes when signing (model.sig left out, as model_signing does).
    let s =
        veil(&["model", "sign", "--key", "k.pem", "--signature", "veil.sig", "--ignore-path", "model.sig", "model"], d);
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    assert_eq!(digest_line(&s), digest_line(&v));
}

#[test]
fn veil_signed_verifies_in_model_signing() {
    let t = setup();
    let d = t.path();
    for (key, sig) in [("k", "out.sig"), ("k384", "model/model.sig")] {
        let o = veil(&["model", "sign", "--key", &format!("{key}.pem"), "--signature", sig, "model"], d);
        assert!(o.status.success(), "veil sign: {}", String::from_utf8_lossy(&o.stderr));
        let pubkey = format!("{key}.pub");
        let v = model_signing(&["verify", "key", "model", "--public_key", &pubkey, "--signature", sig], d);
        assert!(
            v.status.success(),
            "model_signing verify ({key}): {}{}",
            stdout(&v),
            String::from_utf8_lossy(&v.stderr)
        );
        let v = veil(&["model", "verify", "--key", &pubkey, "--signature", sig, "model"], d);
        assert!(v.status.success(), "veil verify ({key}): {}", String::from_utf8_lossy(&v.stderr));
    }
}

/// Each tampering, on a fresh model signed by both tools, is refused by both verifiers.
#[test]
fn tampering_and_wrong_key_refused_by_both() {
    type Tamper = fn(&Path);
    let cases: [(&str, Tamper, &str); 4] = [
        ("changed", |m| std::fs::write(m.join("tok/tokenizer.json"), b"{\"x\":1}").unwrap(), "tok/tokenizer.json"),
        ("added", |m| std::fs::write(m.join("tok/sub/extra.bin"), b"x").unwrap(), "tok/sub/extra.bin"),
        ("removed", |m| std::fs::remove_file(m.join("config.json")).unwrap(), "config.json"),
        ("wrong key", |_| {}, "signature does not verify"),
    ];
    for (what, tamper, expect) in cases {
        let t = setup();
        let d = t.path();
        let o = model_signing(&["sign", "key", "model", "--private_key", "k.pem", "--signature", "ms.sig"], d);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let o = veil(&["model", "sign", "--key", "k.pem", "--signature", "veil.sig", "model"], d);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        tamper(&d.join("model"));
        let key = if what == "wrong key" { "other.pub" } else { "k.pub" };
        for sig in ["ms.sig", "veil.sig"] {
            let v = veil(&["model", "verify", "--key", key, "--signature", sig, "model"], d);
            let err = String::from_utf8_lossy(&v.stderr);
            assert_eq!(v.status.code(), Some(1), "{what}/{sig}: veil accepted: {}", stdout(&v));
            assert!(err.contains(expect) && err.lines().count() == 1, "{what}/{sig}: {err}");
            let v = model_signing(&["verify", "key", "model", "--public_key", key, "--signature", sig], d);
            assert!(!v.status.success(), "{what}/{sig}: model_signing accepted: {}", stdout(&v));
        }
    }
}
