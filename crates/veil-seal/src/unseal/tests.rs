//! Round trips and every bad-input case of the sealed bundle (issue 3's list), each a
//! clear typed error with nothing half-written.

use std::path::Path;

use super::*;
use crate::bundle::{Header, MIN_CHUNK};
use crate::keys::SigningKey;
use crate::seal::{SealOptions, Sealed, seal};

/// Test-only keys (OpenSSL `ecparam -genkey`, P-256).
const OWNER: &str = "-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIGzFy70KAk2vt7gwZwwiqC99XvCxbArSVQVOeyOJrF4SoAoGCCqGSM49
AwEHoUQDQgAEhSvjJNTALeSV+Kv9AxXz29hprzMaDBOeeMxMp5gh649XXzJ+i+QT
ixgvrvcMf/mdsp/4WNZhHizS78l8dA9xIA==
-----END EC PRIVATE KEY-----
";

const CARD: &str = "---\nlicense: apache-2.0\nlanguage: [en]\n---\n# Test model\n";
const CHUNK: u32 = MIN_CHUNK;

fn pub_pem(priv_pem: &str) -> Vec<u8> {
    SigningKey::from_pem(priv_pem.as_bytes()).unwrap().public_key().spki_pem().into_bytes()
}

fn other_pub() -> Vec<u8> {
    // A second key, generated so the test does not depend on a fixed PEM being valid.
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 =
        ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pkcs8.as_ref());
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
    pub_pem(&pem)
}

/// A model: README card, a file of exactly 3 chunks, one of 2.5 chunks, an empty file,
/// two same-size files for moving chunks between them, a nested file, and git paths.
fn model(root: &Path) -> std::path::PathBuf {
    let m = root.join("tiny-model");
    std::fs::create_dir_all(m.join("sub/deeper")).unwrap();
    std::fs::create_dir_all(m.join(".git")).unwrap();
    std::fs::write(m.join("README.md"), CARD).unwrap();
    let c = CHUNK as usize;
    std::fs::write(m.join("weights.bin"), (0..3 * c).map(|i| (i % 251) as u8).collect::<Vec<_>>()).unwrap();
    std::fs::write(m.join("tail.bin"), (0..5 * c / 2).map(|i| (i % 13) as u8).collect::<Vec<_>>()).unwrap();
    std::fs::write(m.join("empty"), b"").unwrap();
    std::fs::write(m.join("sub/a.bin"), vec![1u8; 2 * c]).unwrap();
    std::fs::write(m.join("sub/deeper/b.bin"), vec![2u8; 2 * c]).unwrap();
    std::fs::write(m.join(".git/HEAD"), b"ref").unwrap();
    m
}

fn opts() -> SealOptions<'static> {
    SealOptions { chunk_size: CHUNK, threads: 2, ..SealOptions::default() }
}

struct Fixture {
    dir: tempfile::TempDir,
    model: std::path::PathBuf,
    bundle: std::path::PathBuf,
    sealed: Sealed,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let model = model(dir.path());
    let bundle = dir.path().join("model.veil");
    let sealed = seal(&model, OWNER.as_bytes(), &bundle, &opts()).unwrap();
    Fixture { dir, model, bundle, sealed }
}

fn unseal_bytes(f: &Fixture, bytes: &[u8]) -> Result<Unsealed, Error> {
    let p = f.dir.path().join("edited.veil");
    let _ = std::fs::remove_file(&p);
    std::fs::write(&p, bytes).unwrap();
    open(&p, &pub_pem(OWNER))?.unseal(&f.sealed.data_key, 2, &NoProgress)
}

/// The parts of a bundle, to rebuild it as an attacker who holds the data key would.
struct Parts {
    header: Header,
    data: Vec<Vec<u8>>,
}

fn split(bytes: &[u8]) -> Parts {
    let meta = Meta::from_bytes(bytes).unwrap();
    let data =
        meta.header.files.iter().map(|f| bytes[f.offset as usize..(f.offset + f.length) as usize].to_vec()).collect();
    Parts { header: meta.header, data }
}

/// Reassembles with consistent offsets and a valid header MAC under `key`.
fn rebuild(mut p: Parts, key: &DataKey) -> Vec<u8> {
    let mut at = PREAMBLE_LEN;
    for (f, d) in p.header.files.iter_mut().zip(&p.data) {
        f.offset = at;
        f.length = d.len() as u64;
        at += f.length;
    }
    let header = serde_json::to_vec(&p.header).unwrap();
    let pre = bundle::preamble(header.len() as u32, at);
    let mac = bundle::header_mac(key, &pre, &header).unwrap();
    let mut out = pre.to_vec();
    for d in &p.data {
        out.extend_from_slice(d);
    }
    out.extend_from_slice(&header);
    out.extend_from_slice(&mac);
    out
}

fn idx(p: &Parts, name: &str) -> usize {
    p.header.files.iter().position(|f| f.path == name).unwrap()
}

const SEALED_CHUNK: usize = CHUNK as usize + 16;

#[test]
fn round_trip_matches_the_model_and_its_oms_manifest() {
    let f = fixture();
    let opened = open(&f.bundle, &pub_pem(OWNER)).unwrap();
    assert_eq!(opened.card().license(), Some("apache-2.0"));
    assert_eq!(opened.signer(), f.sealed.signer);
    assert_eq!(opened.manifest_digest(), f.sealed.manifest_digest);
    // The manifest digest is exactly model_signing's over the plaintext model.
    let manifest = crate::oms::Manifest::compute(&f.model, &[]).unwrap();
    assert_eq!(manifest.digest_string(), f.sealed.manifest_digest);

    for threads in [1, 2, 4] {
        let u = opened.unseal(&f.sealed.data_key, threads, &NoProgress).unwrap();
        assert_eq!(u.files.len(), 6);
        for file in &u.files {
            let on_disk = std::fs::read(f.model.join(&file.path)).unwrap();
            assert_eq!(&*file.data, on_disk.as_slice(), "{}", file.path);
        }
        assert!(u.file(".git/HEAD").is_none());
    }

    // Written out, the model verifies with the bundle's own OMS signature.
    let u = opened.unseal(&f.sealed.data_key, 0, &NoProgress).unwrap();
    let out = f.dir.path().join("out/tiny-model");
    std::fs::create_dir(f.dir.path().join("out")).unwrap();
    write_out(&u, &out).unwrap();
    let sig = Meta::from_bytes(&std::fs::read(&f.bundle).unwrap()).unwrap().header.signature;
    let v = crate::oms::verify(sig.as_bytes(), &pub_pem(OWNER), &out).unwrap();
    assert_eq!(v.manifest_digest, f.sealed.manifest_digest);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(out.join("weights.bin")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Never overwrites.
    assert!(matches!(write_out(&u, &out), Err(Error::Exists(_))));
    // No partial directories left beside it.
    assert_eq!(std::fs::read_dir(f.dir.path().join("out")).unwrap().count(), 1);
}

#[test]
fn two_seals_of_one_model_share_the_manifest_but_not_keys_or_ids() {
    let f = fixture();
    let b2 = f.dir.path().join("again.veil");
    let s2 = seal(&f.model, OWNER.as_bytes(), &b2, &opts()).unwrap();
    assert_eq!(s2.manifest_digest, f.sealed.manifest_digest);
    assert_ne!(s2.bundle_id, f.sealed.bundle_id);
    assert_ne!(s2.data_key.as_bytes(), f.sealed.data_key.as_bytes());
    // Each key opens only its own bundle.
    let o2 = open(&b2, &pub_pem(OWNER)).unwrap();
    assert!(matches!(o2.unseal(&f.sealed.data_key, 1, &NoProgress), Err(Error::WrongKey)));
}

#[test]
fn flipped_byte_in_any_chunk_is_refused_naming_file_and_chunk() {
    let f = fixture();
    let bytes = std::fs::read(&f.bundle).unwrap();
    let meta = Meta::from_bytes(&bytes).unwrap();
    for entry in &meta.header.files {
        let chunks = bundle::chunk_count(entry.size, CHUNK);
        for index in 0..chunks {
            let start = entry.offset as usize + index as usize * SEALED_CHUNK;
            let end = (start + SEALED_CHUNK).min((entry.offset + entry.length) as usize);
            // First byte, a middle byte, and the last tag byte.
            for at in [start, (start + end) / 2, end - 1] {
                let mut b = bytes.clone();
                b[at] ^= 0x01;
                match unseal_bytes(&f, &b) {
                    Err(Error::Chunk { path, index: i, .. }) => {
                        assert_eq!((path.as_str(), i), (entry.path.as_str(), index));
                    }
                    other => panic!("{} chunk {index} byte {at}: {other:?}", entry.path),
                }
            }
        }
    }
}

#[test]
fn chunks_swapped_within_a_file_are_refused() {
    let f = fixture();
    let mut p = split(&std::fs::read(&f.bundle).unwrap());
    let w = idx(&p, "weights.bin");
    let d = &mut p.data[w];
    let (a, b) = d.split_at_mut(SEALED_CHUNK);
    a.swap_with_slice(&mut b[..SEALED_CHUNK]);
    let e = unseal_bytes(&f, &rebuild(p, &f.sealed.data_key)).unwrap_err();
    assert!(matches!(&e, Error::Chunk { path, index: 0, .. } if path == "weights.bin"), "{e}");
}

#[test]
fn chunk_moved_between_files_is_refused() {
    let f = fixture();
    let mut p = split(&std::fs::read(&f.bundle).unwrap());
    let (a, b) = (idx(&p, "sub/a.bin"), idx(&p, "sub/deeper/b.bin"));
    let moved = p.data[a][..SEALED_CHUNK].to_vec();
    p.data[b][..SEALED_CHUNK].copy_from_slice(&moved);
    let e = unseal_bytes(&f, &rebuild(p, &f.sealed.data_key)).unwrap_err();
    assert!(matches!(&e, Error::Chunk { path, index: 0, .. } if path == "sub/deeper/b.bin"), "{e}");
}

#[test]
fn truncated_file_is_refused() {
    let f = fixture();
    let bytes = std::fs::read(&f.bundle).unwrap();
    // Without the key: the layout no longer adds up.
    let e = unseal_bytes(&f, &bytes[..bytes.len() - 1]).unwrap_err();
    assert!(matches!(e, Error::Header(_)), "{e}");
    // With the key, dropping the last chunk and fixing the header: the new last chunk was
    // not sealed as final.
    let mut p = split(&bytes);
    let w = idx(&p, "weights.bin");
    p.data[w].truncate(2 * SEALED_CHUNK);
    p.header.files[w].size = 2 * CHUNK as u64;
    let e = unseal_bytes(&f, &rebuild(p, &f.sealed.data_key)).unwrap_err();
    assert!(matches!(&e, Error::Chunk { path, index: 1, chunks: 2 } if path == "weights.bin"), "{e}");
}

#[test]
fn extra_trailing_chunk_is_refused() {
    let f = fixture();
    let mut p = split(&std::fs::read(&f.bundle).unwrap());
    let w = idx(&p, "weights.bin");
    // A well-formed extra chunk 3, sealed as final under the right file key.
    let id: [u8; 32] = hex::decode(&p.header.bundle_id).unwrap().try_into().unwrap();
    let key = f.sealed.data_key.file_key(&id, "weights.bin").unwrap();
    let mut extra = vec![9u8; CHUNK as usize];
    let aad = bundle::chunk_aad(&id, "weights.bin", 3, true).unwrap();
    let tag = key.seal_in_place_separate_tag(bundle::chunk_nonce(3), aead::Aad::from(aad), &mut extra).unwrap();
    extra.extend_from_slice(tag.as_ref());
    p.data[w].extend_from_slice(&extra);
    p.header.files[w].size += CHUNK as u64;
    let e = unseal_bytes(&f, &rebuild(p, &f.sealed.data_key)).unwrap_err();
    assert!(matches!(&e, Error::Chunk { path, index: 2, chunks: 4 } if path == "weights.bin"), "{e}");
}

#[test]
fn wrong_data_key_is_refused_before_any_chunk() {
    let f = fixture();
    let opened = open(&f.bundle, &pub_pem(OWNER)).unwrap();
    let wrong = DataKey::generate().unwrap();
    assert!(matches!(opened.unseal(&wrong, 1, &NoProgress), Err(Error::WrongKey)));
}

#[test]
fn untrusted_signer_is_refused() {
    let f = fixture();
    let e = open(&f.bundle, &other_pub()).unwrap_err();
    assert!(matches!(e, Error::Signature), "{e}");
    // A bundle re-signed by someone else (who also holds the data key) is still refused.
    let mut p = split(&std::fs::read(&f.bundle).unwrap());
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 =
        ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pkcs8.as_ref());
    let mallory = format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n");
    let manifest = crate::oms::Manifest::compute(&f.model, &[]).unwrap();
    p.header.signature = String::from_utf8(crate::oms::sign(&manifest, mallory.as_bytes()).unwrap()).unwrap();
    let e = unseal_bytes(&f, &rebuild(p, &f.sealed.data_key)).unwrap_err();
    assert!(matches!(e, Error::Signature), "{e}");
}

#[test]
fn manifest_edited_after_signing_is_refused() {
    let f = fixture();
    let bytes = std::fs::read(&f.bundle).unwrap();
    let p = split(&bytes);
    let b: serde_json::Value = serde_json::from_str(&p.header.signature).unwrap();
    let payload_b64 = b["dsseEnvelope"]["payload"].as_str().unwrap();
    let payload = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, payload_b64).unwrap();
    let text = String::from_utf8(payload).unwrap();
    // Drop a resource from the signed statement, as if the file were never part of the model.
    let edited = text.replacen("\"name\": \"empty\"", "\"name\": \"emptx\"", 1);
    assert_ne!(edited, text);
    let edited_b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, edited.as_bytes());
    let sig = p.header.signature.replace(payload_b64, &edited_b64);

    // Even an attacker holding the data key cannot re-authenticate it: the signature fails.
    let mut p2 = split(&bytes);
    p2.header.signature = sig;
    let e = unseal_bytes(&f, &rebuild(p2, &f.sealed.data_key)).unwrap_err();
    assert!(matches!(e, Error::Signature), "{e}");
}

#[test]
fn header_edited_without_the_key_is_refused() {
    let f = fixture();
    let bytes = std::fs::read(&f.bundle).unwrap();
    // The card is checked against the signature before any key is involved.
    let mut p = split(&bytes);
    p.header.card.text = p.header.card.text.replace("apache-2.0", "mit");
    let e = unseal_bytes(&f, &rebuild(p, &f.sealed.data_key)).unwrap_err();
    assert!(matches!(&e, Error::Card(m) if m.contains("differs")), "{e}");
    // Edits the signature does not cover (here, two same-size files trade places in the
    // data region) fail the header MAC: only the data key's holder could have made them.
    let mut p = split(&bytes);
    let (a, b) = (idx(&p, "sub/a.bin"), idx(&p, "sub/deeper/b.bin"));
    p.header.files.swap(a, b);
    p.data.swap(a, b);
    let e = unseal_bytes(&f, &rebuild(p, &DataKey::generate().unwrap())).unwrap_err();
    assert!(matches!(e, Error::WrongKey), "{e}");
}

#[test]
fn missing_file_is_refused() {
    let f = fixture();
    let mut p = split(&std::fs::read(&f.bundle).unwrap());
    let t = idx(&p, "tail.bin");
    p.header.files.remove(t);
    p.data.remove(t);
    let e = unseal_bytes(&f, &rebuild(p, &f.sealed.data_key)).unwrap_err();
    assert!(matches!(&e, Error::Contents(m) if m.removed == ["tail.bin"]), "{e}");
}

#[test]
fn path_traversal_names_are_refused() {
    let f = fixture();
    let bytes = std::fs::read(&f.bundle).unwrap();
    for bad in ["../x", "/etc/passwd", "sub/../../x", "a//b", "sub\\x"] {
        let mut p = split(&bytes);
        let t = idx(&p, "tail.bin");
        p.header.files[t].path = bad.into();
        let e = unseal_bytes(&f, &rebuild(p, &f.sealed.data_key)).unwrap_err();
        assert!(matches!(&e, Error::BadName { name, .. } if name == bad), "{bad}: {e}");
        let mut p = split(&bytes);
        p.header.card.path = bad.into();
        let e = unseal_bytes(&f, &rebuild(p, &f.sealed.data_key)).unwrap_err();
        assert!(matches!(&e, Error::BadName { name, .. } if name == bad), "card {bad}: {e}");
    }
}

#[test]
fn symlinks_are_refused_when_sealing_and_never_followed_when_writing() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path());
    std::os::unix::fs::symlink("/etc/passwd", m.join("link")).unwrap();
    let out = dir.path().join("b.veil");
    let e = seal(&m, OWNER.as_bytes(), &out, &opts()).unwrap_err();
    assert!(matches!(e, Error::Symlink(_)), "{e}");
    assert!(!out.exists());

    std::fs::remove_file(m.join("link")).unwrap();
    seal(&m, OWNER.as_bytes(), &out, &opts()).unwrap();
    let target = dir.path().join("elsewhere");
    std::fs::create_dir(&target).unwrap();
    let link = dir.path().join("out-link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let f = fixture();
    let u = open(&f.bundle, &pub_pem(OWNER)).unwrap().unseal(&f.sealed.data_key, 1, &NoProgress).unwrap();
    assert!(matches!(write_out(&u, &link), Err(Error::Exists(_))));
    assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);
}

#[test]
fn unknown_version_and_incomplete_bundles_are_refused() {
    let f = fixture();
    let bytes = std::fs::read(&f.bundle).unwrap();
    let mut b = bytes.clone();
    b[9] = 2;
    assert!(matches!(unseal_bytes(&f, &b), Err(Error::UnsupportedVersion(2))));
    // What an interrupted seal leaves: everything but the preamble.
    let mut b = bytes.clone();
    b[..32].fill(0);
    assert!(matches!(unseal_bytes(&f, &b), Err(Error::NotABundle(_))));
    assert!(matches!(unseal_bytes(&f, &bytes[..10]), Err(Error::NotABundle(_))));
    assert!(matches!(unseal_bytes(&f, b""), Err(Error::NotABundle(_))));
}

#[test]
fn sealing_refuses_bad_cards_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path());
    let out = dir.path().join("b.veil");
    let policy =
        crate::card::CardPolicy::from_toml("required = [\"license\"]\n[allowed]\nlicense = [\"mit\"]\n").unwrap();
    let e = seal(&m, OWNER.as_bytes(), &out, &SealOptions { card_policy: Some(&policy), ..opts() }).unwrap_err();
    assert!(matches!(&e, Error::CardPolicy { field, .. } if field == "license"), "{e}");

    std::fs::remove_file(m.join("README.md")).unwrap();
    let e = seal(&m, OWNER.as_bytes(), &out, &opts()).unwrap_err();
    assert!(matches!(&e, Error::Card(msg) if msg.contains("--card")), "{e}");
    // Nothing at all was written beside the model.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["tiny-model"]);

    // A card given separately becomes MODEL_CARD.md and is signed with the model.
    let card = dir.path().join("card.md");
    std::fs::write(&card, "---\nlicense: mit\n---\n").unwrap();
    let s = seal(&m, OWNER.as_bytes(), &out, &SealOptions { card: Some(&card), card_policy: Some(&policy), ..opts() })
        .unwrap();
    let opened = open(&out, &pub_pem(OWNER)).unwrap();
    opened.check_card(&policy).unwrap();
    let u = opened.unseal(&s.data_key, 1, &NoProgress).unwrap();
    assert_eq!(u.file("MODEL_CARD.md"), Some("---\nlicense: mit\n---\n".as_bytes()));
    assert!(matches!(seal(&m, OWNER.as_bytes(), &out, &opts()), Err(Error::Exists(_))));
}

#[test]
fn bad_chunk_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path());
    for size in [0, 1, MIN_CHUNK - 1, crate::bundle::MAX_CHUNK + 1] {
        let e = seal(&m, OWNER.as_bytes(), &dir.path().join("b"), &SealOptions { chunk_size: size, ..opts() });
        assert!(matches!(e, Err(Error::Header(_))), "{size}");
    }
}

#[test]
fn the_card_is_chosen_by_rule_not_by_the_header() {
    // A model whose README says one licence and another signed markdown file another.
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path());
    std::fs::write(m.join("README.md"), "---\nlicense: llama3\n---\n").unwrap();
    std::fs::write(m.join("sub/alt.md"), "---\nlicense: mit\n---\n").unwrap();
    let out = dir.path().join("b.veil");
    let sealed = seal(&m, OWNER.as_bytes(), &out, &opts()).unwrap();
    let bytes = std::fs::read(&out).unwrap();
    // Pointing the header's card at the friendlier signed file is refused without the key,
    let mut p = split(&bytes);
    p.header.card.path = "sub/alt.md".into();
    p.header.card.text = "---\nlicense: mit\n---\n".into();
    let edited = dir.path().join("edited.veil");
    std::fs::write(&edited, rebuild(p, &sealed.data_key)).unwrap();
    let e = open(&edited, &pub_pem(OWNER)).unwrap_err();
    assert!(matches!(&e, Error::Card(msg) if msg.contains("README.md")), "{e}");
    // and the real card is the README.
    assert_eq!(open(&out, &pub_pem(OWNER)).unwrap().card().license(), Some("llama3"));
}

#[test]
fn single_thread_seal_is_the_same_bundle_content() {
    let dir = tempfile::tempdir().unwrap();
    let m = model(dir.path());
    let out = dir.path().join("one.veil");
    let s = seal(&m, OWNER.as_bytes(), &out, &SealOptions { threads: 1, ..opts() }).unwrap();
    let f = fixture();
    assert_eq!(s.manifest_digest, crate::oms::Manifest::compute(&m, &[]).unwrap().digest_string());
    let u = open(&out, &pub_pem(OWNER)).unwrap().unseal(&s.data_key, 1, &NoProgress).unwrap();
    for file in &u.files {
        assert_eq!(&*file.data, std::fs::read(m.join(&file.path)).unwrap().as_slice(), "{}", file.path);
    }
    assert_eq!(u.files.len(), 6);
    drop(f);
}
