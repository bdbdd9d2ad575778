//! `veil seal` / `veil unseal` end to end on the real test models (fetched by
//! `scripts/fetch-models`), interop of the sealed signature with `model_signing`, the
//! refusals an operator meets, and an interrupted seal.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{cached_model, keygen, model_signing, root, stderr, stdout, veil};

fn card() -> String {
    root().join("models/cards/SmolLM2-135M-Instruct.md").display().to_string()
}

fn policy() -> String {
    root().join("models/cards/policy.toml").display().to_string()
}

fn ok(o: &std::process::Output, what: &str) {
    assert!(o.status.success(), "{what}: {}\n{}", stderr(o), stdout(o));
}

fn line<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.lines().find_map(|l| l.strip_prefix(prefix)).unwrap_or_else(|| panic!("no {prefix:?} in {text}"))
}

/// Compares every file under `a` with the same path under `b`.
fn same_tree(a: &Path, b: &Path) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(a).unwrap() {
        let e = e.unwrap();
        let (pa, pb) = (e.path(), b.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            n += same_tree(&pa, &pb);
        } else {
            assert_eq!(std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap(), "{}", pa.display());
            n += 1;
        }
    }
    n
}

#[test]
fn smollm2_seals_unseals_and_verifies_with_model_signing() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keygen(d, "owner", "SECP256R1", false);
    let model = cached_model("smollm2");
    let o = veil(
        &[
            "seal",
            model.to_str().unwrap(),
            "--signing-key",
            "owner.pem",
            "--out",
            "smollm2.veil",
            "--key-out",
            "smollm2.key",
            "--card",
            &card(),
            "--card-policy",
            &policy(),
            "--chunk-size",
            "1MiB",
        ],
        d,
    );
    ok(&o, "seal");
    let out = stdout(&o);
    let digest = line(&out, "manifest digest: ").to_owned();
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");
    let mode = std::fs::metadata(d.join("smollm2.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The weights are not in the bundle in the clear.
    let weights = std::fs::read(model.join("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    let bundle = std::fs::read(d.join("smollm2.veil")).unwrap();
    let probe = &weights[1 << 20..(1 << 20) + 64];
    assert!(!bundle.windows(64).any(|w| w == probe), "plaintext weights found in the bundle");

    let u = veil(
        &[
            "unseal",
            "smollm2.veil",
            "--data-key",
            "smollm2.key",
            "--trusted-signer",
            "owner.pub",
            "--card-policy",
            &policy(),
            "--out",
            "plain",
            "--signature-out",
            "plain.sig",
        ],
        d,
    );
    ok(&u, "unseal");
    assert_eq!(line(&stdout(&u), "manifest digest: "), digest);
    assert_eq!(line(&stdout(&u), "license: "), "apache-2.0");
    assert_eq!(same_tree(&model, &d.join("plain")), 1);
    assert_eq!(
        std::fs::read_to_string(d.join("plain/MODEL_CARD.md")).unwrap(),
        std::fs::read_to_string(card()).unwrap()
    );

    // The sealed OMS signature is model_signing's format: it verifies the unsealed files.
    let v = model_signing(&["verify", "key", "plain", "--signature", "plain.sig", "--public_key", "owner.pub"], d);
    ok(&v, "model_signing verify");
    // And model_signing signing the same plaintext gives the same manifest digest in Veil.
    let s = veil(&["model", "verify", "--key", "owner.pub", "--signature", "plain.sig", "plain"], d);
    ok(&s, "veil model verify");
    assert_eq!(line(&stdout(&s), "manifest digest: "), digest);
}

#[test]
fn minilm_seals_with_its_own_card_and_refusals_are_clear() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keygen(d, "owner", "SECP256R1", false);
    keygen(d, "other", "SECP256R1", false);
    let model = cached_model("minilm");
    let m = model.to_str().unwrap();
    let o = veil(&["seal", m, "--signing-key", "owner.pem", "--out", "m.veil", "--key-out", "m.key"], d);
    ok(&o, "seal minilm (README.md as the card)");

    let check = |extra: &[&str]| {
        let mut args = vec!["unseal", "m.veil", "--check"];
        args.extend_from_slice(extra);
        veil(&args, d)
    };
    let u = check(&["--data-key", "m.key", "--trusted-signer", "owner.pub", "--threads", "1"]);
    ok(&u, "unseal --check");
    assert!(stdout(&u).contains("(nothing written)"));

    // Wrong key.
    std::fs::write(d.join("wrong.key"), format!("{}\n", "ab".repeat(32))).unwrap();
    let u = check(&["--data-key", "wrong.key", "--trusted-signer", "owner.pub"]);
    assert!(!u.status.success());
    assert!(stderr(&u).contains("data key does not open this bundle"), "{}", stderr(&u));
    // Untrusted signer.
    let u = check(&["--data-key", "m.key", "--trusted-signer", "other.pub"]);
    assert!(!u.status.success());
    assert!(stderr(&u).contains("signature does not verify"), "{}", stderr(&u));
    // A card policy the card fails, naming the field.
    std::fs::write(d.join("strict.toml"), "required = [\"license\"]\n[allowed]\nlicense = [\"mit\"]\n").unwrap();
    let u = check(&["--data-key", "m.key", "--trusted-signer", "owner.pub", "--card-policy", "strict.toml"]);
    assert!(!u.status.success());
    assert!(stderr(&u).contains("field `license`"), "{}", stderr(&u));
    let o = veil(
        &[
            "seal",
            m,
            "--signing-key",
            "owner.pem",
            "--out",
            "x.veil",
            "--key-out",
            "x.key",
            "--card-policy",
            "strict.toml",
        ],
        d,
    );
    assert!(!o.status.success());
    assert!(stderr(&o).contains("field `license`"), "{}", stderr(&o));
    assert!(!d.join("x.veil").exists() && !d.join("x.key").exists());
    // Never overwrites: the bundle, the key file, the output directory.
    let o = veil(&["seal", m, "--signing-key", "owner.pem", "--out", "m.veil", "--key-out", "y.key"], d);
    assert!(!o.status.success() && stderr(&o).contains("already exists"), "{}", stderr(&o));
    let o = veil(&["seal", m, "--signing-key", "owner.pem", "--out", "y.veil", "--key-out", "m.key"], d);
    assert!(!o.status.success() && stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert!(!d.join("y.veil").exists());
    std::fs::create_dir(d.join("taken")).unwrap();
    let u = veil(&["unseal", "m.veil", "--data-key", "m.key", "--trusted-signer", "owner.pub", "--out", "taken"], d);
    assert!(!u.status.success() && stderr(&u).contains("already exists"), "{}", stderr(&u));
}

#[test]
fn interrupted_seal_leaves_no_bundle_that_looks_complete() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    keygen(d, "owner", "SECP256R1", false);
    let model = d.join("big");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(model.join("README.md"), "---\nlicense: mit\n---\n").unwrap();
    // 1 GiB, sparse: cheap to create, takes a single thread about a second to seal.
    std::fs::File::create(model.join("weights.bin")).unwrap().set_len(1 << 30).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["seal", "big", "--signing-key", "owner.pem", "--out", "big.veil", "--key-out", "big.key"])
        .args(["--threads", "1", "--chunk-size", "64KiB"])
        .current_dir(d)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once it has written some of the bundle.
    let deadline = Instant::now() + Duration::from_secs(60);
    let partial = loop {
        let found = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_str().unwrap().starts_with(".big.veil.partial-"));
        if let Some(p) = found {
            if std::fs::metadata(&p).map(|m| m.len() > 4 << 20).unwrap_or(false) {
                break p;
            }
        }
        assert!(child.try_wait().unwrap().is_none(), "seal finished before it could be interrupted");
        assert!(Instant::now() < deadline, "no partial bundle appeared");
        std::thread::sleep(Duration::from_millis(2));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!d.join("big.veil").exists(), "a bundle appeared under the final name");
    assert!(!d.join("big.key").exists());
    // What is left is hidden and, by construction, refused as incomplete.
    let u = veil(
        &["unseal", partial.to_str().unwrap(), "--data-key", "/dev/null", "--trusted-signer", "owner.pub", "--check"],
        d,
    );
    assert!(!u.status.success());
    let key = d.join("k");
    std::fs::write(&key, "00".repeat(32)).unwrap();
    let u = veil(
        &[
            "unseal",
            partial.to_str().unwrap(),
            "--data-key",
            key.to_str().unwrap(),
            "--trusted-signer",
            "owner.pub",
            "--check",
        ],
        d,
    );
    assert!(!u.status.success());
    assert!(stderr(&u).contains("not a complete Veil bundle"), "{}", stderr(&u));
}
