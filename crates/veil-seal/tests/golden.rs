//! A bundle written by `model_signing sign key` 1.1.1 (P-256) over a three-file model,
//! verified without Python; and Veil's payload for the same model compared with it.

use base64::Engine as _;
use veil_seal::oms;

const SIG: &[u8] = include_bytes!("data/model_signing-1.1.1.sig");
const PUB: &[u8] = include_bytes!("data/model_signing-1.1.1.pub");

/// The model that was signed: directory `m` with `a.txt`, `d/b` and an ignored `.gitignore`.
fn model() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let m = t.path().join("m");
    std::fs::create_dir_all(m.join("d")).unwrap();
    std::fs::write(m.join("a.txt"), b"a\n").unwrap();
    std::fs::write(m.join("d/b"), b"b\n").unwrap();
    std::fs::write(m.join(".gitignore"), b"g\n").unwrap();
    t
}

#[test]
fn model_signing_bundle_verifies() {
    let t = model();
    let v = oms::verify(SIG, PUB, &t.path().join("m")).unwrap();
    assert_eq!(v.manifest_digest, "sha256:6ec7b73f58839768f5eb006d96b02ebaa7bf3d30c5daaccc832663c8266e0931");
    assert_eq!(v.files.len(), 2);
    let m = oms::Manifest::compute(&t.path().join("m"), &[]).unwrap();
    assert_eq!(m.digest_string(), v.manifest_digest);
}

#[test]
fn tampered_payload_refused() {
    let t = model();
    let mut b: serde_json::Value = serde_json::from_slice(SIG).unwrap();
    let payload = b["dsseEnvelope"]["payload"].as_str().unwrap();
    let mut raw = base64::engine::general_purpose::STANDARD.decode(payload).unwrap();
    raw.push(b'\n');
    b["dsseEnvelope"]["payload"] = base64::engine::general_purpose::STANDARD.encode(raw).into();
    let e = oms::verify(&serde_json::to_vec(&b).unwrap(), PUB, &t.path().join("m")).unwrap_err();
    assert!(matches!(e, veil_seal::Error::Signature), "{e:?}");
}

/// Veil writes the statement as model_signing does (protobuf JSON, indent 2), up to the
/// order of `ignore_paths`, which model_signing takes from a frozenset.
#[test]
fn veil_payload_matches_model_signing_layout() {
    let t = model();
    let m = oms::Manifest::compute(&t.path().join("m"), &[]).unwrap();
    // Any P-256 key: only the payload is compared.
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 =
        ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref())
    );
    let ours = oms::sign(&m, pem.as_bytes()).unwrap();
    let payload = |bundle: &[u8]| {
        let b: serde_json::Value = serde_json::from_slice(bundle).unwrap();
        let p = b["dsseEnvelope"]["payload"].as_str().unwrap().to_owned();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(p).unwrap()).unwrap()
    };
    let sorted_ignores = |p: &str| {
        let mut lines: Vec<&str> = p.lines().collect();
        let start = lines.iter().position(|l| l.contains("\"ignore_paths\"")).unwrap() + 1;
        let end = start + lines[start..].iter().position(|l| l.trim_start().starts_with(']')).unwrap();
        lines[start..end].iter_mut().for_each(|l| *l = l.trim_end_matches(','));
        lines[start..end].sort_unstable();
        lines.join("\n")
    };
    assert_eq!(sorted_ignores(&payload(&ours)), sorted_ignores(&payload(SIG)));
    // The bundle's outer layout: same keys in the same order, compact.
    let theirs = String::from_utf8(SIG.to_vec()).unwrap();
    let ours = String::from_utf8(ours).unwrap();
    let skeleton = |s: &str| s.split('"').step_by(2).collect::<Vec<_>>().len();
    assert_eq!(skeleton(&ours), skeleton(&theirs));
    assert!(ours.starts_with(
        r#"{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","verificationMaterial":{"publicKey":{"hint":""#
    ));
    assert!(ours.contains(r#""tlogEntries":[]},"dsseEnvelope":{"payload":""#));
    assert!(ours.contains(r#"","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":""#));
    assert!(ours.ends_with(r#"","keyid":""}]}}"#));
}
