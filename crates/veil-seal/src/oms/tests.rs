use super::*;
use crate::keys::PublicKey;

/// An OpenSSL `ecparam -genkey` P-256 key (SEC1) and the same key as PKCS#8 (`openssl pkey`).
/// Test-only keys.
const SEC1_P256: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIGzFy70KAk2vt7gwZwwiqC99XvCxbArSVQVOeyOJrF4SoAoGCCqGSM49
AwEHoUQDQgAEhSvjJNTALeSV+Kv9AxXz29hprzMaDBOeeMxMp5gh649XXzJ+i+QT
ixgvrvcMf/mdsp/4WNZhHizS78l8dA9xIA==
-----END EC PRIVATE KEY-----
";
const PKCS8_P256: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgbMXLvQoCTa+3uDBn
DCKoL31e8LFsCtJVBU57I4msXhKhRANCAASFK+Mk1MAt5JX4q/0DFfPb2GmvMxoM
E554zEynmCHrj1dfMn6L5BOLGC+u9wx/+Z2yn/hY1mEeLNLvyXx0D3Eg
-----END PRIVATE KEY-----
";
const SEC1_P384: &str = "-----BEGIN EC PRIVATE KEY-----
MIGkAgEBBDAdOEzx0cW1qHisSyl83LZaklyB03OF1DqGt1VRLX8hTZNpeJ/vGPDC
2QBcwucf8DugBwYFK4EEACKhZANiAATYDFZuWmCgpitL3VrHPCddI0bydZmAfcT8
8u7ggDvoxBa/xhKvFSUGTEJgN5h+nKjU82zEC3k8SdYRxeba+uOb+lpOEQV0lJBO
E/rIAcPbJuRkQbRwUuwtnQXCEtqlS6I=
-----END EC PRIVATE KEY-----
";

fn model() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path();
    std::fs::create_dir_all(m.join("a/b")).unwrap();
    std::fs::create_dir_all(m.join(".git")).unwrap();
    std::fs::write(m.join("a.txt"), b"top").unwrap();
    std::fs::write(m.join("a/b/c.bin"), vec![7u8; 200_000]).unwrap();
    std::fs::write(m.join("a/x"), b"x").unwrap();
    std::fs::write(m.join(".git/HEAD"), b"ref").unwrap();
    std::fs::write(m.join(".gitignore"), b"*.tmp").unwrap();
    dir
}

fn pub_pem(priv_pem: &str) -> String {
    crate::keys::SigningKey::from_pem(priv_pem.as_bytes()).unwrap().public_key().spki_pem()
}

#[test]
fn manifest_order_ignores_and_digest() {
    let dir = model();
    let m = Manifest::compute(dir.path(), &[]).unwrap();
    let names: Vec<_> = m.resources.iter().map(|r| r.name.as_str()).collect();
    // Component-wise order: "a/..." sorts before "a.txt" ('a' < 'a.txt' as components).
    assert_eq!(names, ["a/b/c.bin", "a/x", "a.txt"]);
    let mut h = Sha256::new();
    for r in &m.resources {
        h.update(r.digest);
    }
    assert_eq!(m.digest(), <[u8; 32]>::from(h.finalize()));
    assert_eq!(m.resources[2].digest, <[u8; 32]>::from(Sha256::digest(b"top")));
    let m2 = Manifest::compute(dir.path(), &[PathBuf::from("a/b")]).unwrap();
    assert_eq!(m2.resources.len(), 2);
    assert!(m2.ignore_paths.contains(&"a/b".to_owned()));
}

#[cfg(unix)]
#[test]
fn symlinks_refused() {
    let dir = model();
    std::os::unix::fs::symlink("a.txt", dir.path().join("link")).unwrap();
    assert!(matches!(Manifest::compute(dir.path(), &[]), Err(Error::Symlink(_))));
}

#[test]
fn sign_verify_round_trip_and_tamper() {
    for key in [PKCS8_P256, SEC1_P256, SEC1_P384] {
        let dir = model();
        let m = Manifest::compute(dir.path(), &[]).unwrap();
        let bundle = sign(&m, key.as_bytes()).unwrap();
        let pk = pub_pem(key);
        let v = verify(&bundle, pk.as_bytes(), dir.path()).unwrap();
        assert_eq!(v.manifest_digest, m.digest_string());
        assert_eq!(v.files.len(), 3);
        // Ignored paths stay ignored.
        std::fs::write(dir.path().join(".git/HEAD"), b"changed").unwrap();
        verify(&bundle, pk.as_bytes(), dir.path()).unwrap();

        std::fs::write(dir.path().join("a/x"), b"y").unwrap();
        std::fs::write(dir.path().join("new"), b"n").unwrap();
        std::fs::remove_file(dir.path().join("a.txt")).unwrap();
        match verify(&bundle, pk.as_bytes(), dir.path()) {
            Err(Error::Mismatch(mm)) => {
                assert_eq!(mm.added, ["new"]);
                assert_eq!(mm.removed, ["a.txt"]);
                assert_eq!(mm.changed, ["a/x"]);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn sec1_and_pkcs8_are_the_same_key() {
    assert_eq!(pub_pem(SEC1_P256), pub_pem(PKCS8_P256));
    let pk = PublicKey::from_pem(pub_pem(SEC1_P256).as_bytes()).unwrap();
    assert!(pk.signer_id().starts_with("sha256:"));
}

#[test]
fn wrong_key_and_malformed_bundles() {
    let dir = model();
    let m = Manifest::compute(dir.path(), &[]).unwrap();
    let bundle = sign(&m, PKCS8_P256.as_bytes()).unwrap();
    let other = pub_pem(SEC1_P384);
    assert!(matches!(verify(&bundle, other.as_bytes(), dir.path()), Err(Error::Signature)));
    let pk = pub_pem(PKCS8_P256);
    let text = String::from_utf8(bundle.clone()).unwrap();
    let cases = [
        (text.replace("bundle.v0.3", "bundle.v0.9"), "media"),
        (text.replace("\"application/vnd.in-toto+json\"", "\"text/plain\""), "payload type"),
        (text.replace("\"payload\":\"", "\"payload\":\"!!"), "base64"),
        (text[..text.len() / 2].to_owned(), "json"),
    ];
    for (c, what) in cases {
        let e = verify(c.as_bytes(), pk.as_bytes(), dir.path()).unwrap_err();
        assert!(matches!(e, Error::Parse(_) | Error::Unsupported { .. }), "{what}: {e:?}");
    }
    crate::fuzz_bundle(&bundle);
    crate::fuzz_bundle(b"{\"mediaType\":1}");
}

#[test]
fn pae_layout() {
    assert_eq!(pae(b"{}"), b"DSSEv1 28 application/vnd.in-toto+json 2 {}".to_vec());
}
