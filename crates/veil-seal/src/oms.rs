//! OpenSSF Model Signing (OMS) v1.0 with keys, as `model-signing` 1.1.1 writes and reads it
//! (PROTOCOLS.md section 4): a Sigstore bundle v0.3 whose DSSE envelope carries an in-toto
//! statement listing every file of the model with its SHA-256 digest.
//!
//! The bundle JSON is modelled with hand-written serde structs. The Sigstore crates were
//! evaluated (2026-11, versions 0.15): `sigstore-types` writes the DSSE envelope as
//! `payloadType, payload, signatures`, drops an empty `keyid` and always adds
//! `timestampVerificationData`, so it cannot produce `model_signing`'s bytes (the golden
//! test); `sigstore-protobuf-specs` drops empty fields and panics on some inputs in its
//! `Deserialize`; `sigstore-verify` refuses key-only bundles without a tlog entry or
//! timestamp (`MissingSigningTimeEvidence`), which is exactly an OMS key bundle; `sigstore`
//! pulls OpenSSL, tokio and reqwest. The key-only bundle uses a handful of fields, and
//! these structs add no dependency tree to audit. Worth revisiting for keyless bundles.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Error;
use crate::error::Mismatch;
use crate::keys::{PublicKey, SigningKey};

/// The Sigstore bundle media type `model_signing` writes.
pub const BUNDLE_MEDIA_TYPE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
/// The same version in the older spelling, which Sigstore clients also accept.
const BUNDLE_MEDIA_TYPE_ALT: &str = "application/vnd.dev.sigstore.bundle+json;version=0.3";
/// The DSSE payload type of an in-toto statement.
pub const PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
/// The in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The OMS predicate type.
pub const PREDICATE_TYPE: &str = "https://model_signing/signature/v1.0";
/// Paths `model_signing` ignores by default (`ignore_git_paths=True`), relative to the model root.
pub const GIT_PATHS: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];

/// Size of the read buffer each hashing worker uses.
const BUF_SIZE: usize = 1 << 16;
/// Upper bound on hashing threads.
const MAX_WORKERS: usize = 8;

/// One file of a model and its SHA-256 digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Path relative to the model root, `/`-separated.
    pub name: String,
    /// SHA-256 of the file's content.
    pub digest: [u8; 32],
}

/// The OMS manifest of a model directory: its files and their digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The subject name: the model directory's basename.
    pub name: String,
    /// Files in `PurePosixPath` (component-wise) order.
    pub resources: Vec<Resource>,
    /// Ignored paths relative to the model root, as recorded in the signature.
    pub ignore_paths: Vec<String>,
}

/// Splits a recorded `/`-separated path into components, dropping empty and `.` ones.
fn components(p: &str) -> Vec<&str> {
    p.split('/').filter(|c| !c.is_empty() && *c != ".").collect()
}

/// Sorts resources the way Python sorts `PurePosixPath`s: component by component.
fn sort_resources(resources: &mut [Resource]) {
    resources.sort_by(|a, b| components(&a.name).cmp(&components(&b.name)));
}

impl Manifest {
    /// Computes the manifest of `model_dir`: every regular file below it, except the git
    /// paths and `ignore_paths` (relative to the model root, or absolute paths inside it),
    /// hashed in parallel. Symbolic links are refused.
    pub fn compute(model_dir: &Path, ignore_paths: &[PathBuf]) -> Result<Self, Error> {
        let recorded = recorded_ignores(model_dir, ignore_paths)?;
        Self::compute_recorded(model_dir, recorded)
    }

    /// Computes the manifest ignoring exactly `recorded` (relative, `/`-separated).
    fn compute_recorded(model_dir: &Path, recorded: Vec<String>) -> Result<Self, Error> {
        let files = ModelFiles::list_recorded(model_dir, recorded)?;
        let digests = hash_files(model_dir, &files.files)?;
        Ok(files.into_manifest(digests))
    }

    /// Adds a file that is not on disk (the sealed bundle's model card) to the manifest.
    pub fn add_resource(&mut self, name: String, digest: [u8; 32]) -> Result<(), Error> {
        if self.resources.iter().any(|r| r.name == name) {
            return Err(Error::Parse(format!("resource listed twice: {name}")));
        }
        self.resources.push(Resource { name, digest });
        sort_resources(&mut self.resources);
        Ok(())
    }

    /// The subject digest: SHA-256 over the raw resource digests in order.
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for r in &self.resources {
            h.update(r.digest);
        }
        h.finalize().into()
    }

    /// The model manifest digest as Veil names it: `sha256:<hex>`.
    pub fn digest_string(&self) -> String {
        format!("sha256:{}", hex::encode(self.digest()))
    }
}

/// The files of a model directory, listed but not yet hashed.
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// The subject name: the model directory's basename.
    pub name: String,
    /// Relative `/`-separated names of the regular files, in walk order.
    pub files: Vec<String>,
    /// Ignored paths relative to the model root, as recorded in the signature.
    pub ignore_paths: Vec<String>,
}

impl ModelFiles {
    /// Lists the regular files of `model_dir` as [`Manifest::compute`] would hash them.
    pub fn list(model_dir: &Path, ignore_paths: &[PathBuf]) -> Result<Self, Error> {
        let recorded = recorded_ignores(model_dir, ignore_paths)?;
        Self::list_recorded(model_dir, recorded)
    }

    fn list_recorded(model_dir: &Path, recorded: Vec<String>) -> Result<Self, Error> {
        let meta =
            std::fs::symlink_metadata(model_dir).map_err(|source| Error::Io { path: model_dir.into(), source })?;
        if meta.file_type().is_symlink() {
            return Err(Error::Symlink(model_dir.into()));
        }
        let canonical = model_dir.canonicalize().map_err(|source| Error::Io { path: model_dir.into(), source })?;
        let name =
            canonical.file_name().and_then(|n| n.to_str()).ok_or_else(|| Error::BadPath(model_dir.into()))?.to_owned();
        let ignored: Vec<Vec<&str>> = recorded.iter().map(|p| components(p)).filter(|c| !c.is_empty()).collect();
        let mut files = Vec::new();
        walk(model_dir, &mut Vec::new(), &ignored, &mut files)?;
        Ok(Self { name, files, ignore_paths: recorded })
    }

    /// The path of a listed file on disk.
    pub fn path_of(&self, model_dir: &Path, name: &str) -> PathBuf {
        components(name).iter().fold(model_dir.to_path_buf(), |p, c| p.join(c))
    }

    /// Builds the manifest from the digests of `self.files`, in the same order.
    pub fn into_manifest(self, digests: Vec<[u8; 32]>) -> Manifest {
        let mut resources: Vec<Resource> =
            self.files.into_iter().zip(digests).map(|(name, digest)| Resource { name, digest }).collect();
        sort_resources(&mut resources);
        Manifest { name: self.name, resources, ignore_paths: self.ignore_paths }
    }
}

/// The ignore list as recorded in a signature: the git paths plus `ignore_paths` that lie
/// inside the model, relative to its root.
fn recorded_ignores(model_dir: &Path, ignore_paths: &[PathBuf]) -> Result<Vec<String>, Error> {
    let mut recorded: Vec<String> = GIT_PATHS.iter().map(|s| (*s).to_owned()).collect();
    let canonical = model_dir.canonicalize().map_err(|source| Error::Io { path: model_dir.into(), source })?;
    for p in ignore_paths {
        let rel = if p.is_absolute() {
            // Paths outside the model (a signature written elsewhere) need no ignoring.
            match p.strip_prefix(&canonical).or_else(|_| p.strip_prefix(model_dir)) {
                Ok(rel) => rel,
                Err(_) => continue,
            }
        } else {
            p.as_path()
        };
        let s = rel.to_str().ok_or_else(|| Error::BadPath(p.clone()))?;
        let parts = components(s);
        if parts.contains(&"..") {
            continue;
        }
        let s = parts.join("/");
        if !s.is_empty() && !recorded.contains(&s) {
            recorded.push(s);
        }
    }
    Ok(recorded)
}

/// Collects the regular files below `dir` (relative names in `files`), skipping ignored paths.
fn walk(root: &Path, rel: &mut Vec<String>, ignored: &[Vec<&str>], files: &mut Vec<String>) -> Result<(), Error> {
    let dir: PathBuf = rel.iter().fold(root.to_path_buf(), |p, c| p.join(c));
    let entries = std::fs::read_dir(&dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
    for entry in entries {
        let entry = entry.map_err(|source| Error::Io { path: dir.clone(), source })?;
        let path = entry.path();
        let name = entry.file_name().into_string().map_err(|_| Error::BadPath(path.clone()))?;
        rel.push(name);
        let is_ignored =
            ignored.iter().any(|ig| ig.len() <= rel.len() && ig.iter().zip(rel.iter()).all(|(a, b)| a == b));
        if !is_ignored {
            let ft = entry.file_type().map_err(|source| Error::Io { path: path.clone(), source })?;
            if ft.is_symlink() {
                return Err(Error::Symlink(path));
            } else if ft.is_dir() {
                walk(root, rel, ignored, files)?;
            } else if ft.is_file() {
                files.push(rel.join("/"));
            } else {
                return Err(Error::BadPath(path));
            }
        }
        rel.pop();
    }
    Ok(())
}

/// Hashes one file with a fixed-size buffer.
fn hash_file(path: &Path) -> Result<[u8; 32], Error> {
    let io = |source| Error::Io { path: path.into(), source };
    let mut f = File::open(path).map_err(io)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; BUF_SIZE];
    loop {
        let n = f.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(h.finalize().into())
}

/// A file's index in the work list and its digest.
type Hashed = (usize, [u8; 32]);

/// Hashes `files` (relative to `root`) on a bounded pool of scoped threads.
fn hash_files(root: &Path, files: &[String]) -> Result<Vec<[u8; 32]>, Error> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, MAX_WORKERS).min(files.len());
    let next = AtomicUsize::new(0);
    let mut out: Vec<Option<[u8; 32]>> = vec![None; files.len()];
    let results: Vec<Result<Vec<Hashed>, Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                s.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(name) = files.get(i) else { return Ok(done) };
                        let path = components(name).iter().fold(root.to_path_buf(), |p, c| p.join(c));
                        done.push((i, hash_file(&path)?));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::Io { path: root.into(), source: std::io::Error::other("hashing thread panicked") })
                })
            })
            .collect()
    });
    for r in results {
        for (i, d) in r? {
            if let Some(slot) = out.get_mut(i) {
                *slot = Some(d);
            }
        }
    }
    out.into_iter()
        .zip(files)
        .map(|(d, name)| {
            d.ok_or_else(|| Error::Io { path: root.join(name), source: std::io::Error::other("file was not hashed") })
        })
        .collect()
}

// ---- Wire format -------------------------------------------------------------------------

/// The Sigstore bundle (key-based subset).
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    media_type: String,
    verification_material: VerificationMaterial,
    dsse_envelope: Envelope,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerificationMaterial {
    public_key: PublicKeyHint,
    #[serde(default)]
    tlog_entries: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PublicKeyHint {
    #[serde(default)]
    hint: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Serialize, Deserialize)]
struct EnvelopeSignature {
    sig: String,
    #[serde(default)]
    keyid: String,
}

/// The in-toto statement, fields in the order protobuf's `MessageToJson` writes them.
#[derive(Debug, Serialize, Deserialize)]
struct Statement {
    #[serde(rename = "_type")]
    type_: String,
    subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    predicate: Predicate,
}

#[derive(Debug, Serialize, Deserialize)]
struct Subject {
    name: String,
    digest: SubjectDigest,
}

#[derive(Debug, Serialize, Deserialize)]
struct SubjectDigest {
    sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Predicate {
    serialization: Serialization,
    resources: Vec<WireResource>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Serialization {
    method: String,
    allow_symlinks: bool,
    hash_type: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ignore_paths: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireResource {
    name: String,
    digest: String,
    algorithm: String,
}

/// A parsed bundle: the raw payload bytes and the signature, not yet verified.
#[derive(Debug)]
pub struct ParsedBundle {
    /// The DSSE payload, exactly as signed.
    pub payload: Vec<u8>,
    /// The DER ECDSA signature.
    pub signature: Vec<u8>,
}

/// The DSSE pre-authentication encoding of an in-toto payload.
pub fn pae(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("DSSEv1 {} {} {} ", PAYLOAD_TYPE.len(), PAYLOAD_TYPE, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Parses the bundle JSON: media type, payload type, one signature, base64 fields.
pub fn parse_bundle(bundle_json: &[u8]) -> Result<ParsedBundle, Error> {
    let b: Bundle = serde_json::from_slice(bundle_json).map_err(|e| Error::Parse(format!("bundle JSON: {e}")))?;
    if b.media_type != BUNDLE_MEDIA_TYPE && b.media_type != BUNDLE_MEDIA_TYPE_ALT {
        return Err(Error::Unsupported { field: "bundle media type", found: b.media_type });
    }
    let env = b.dsse_envelope;
    if env.payload_type != PAYLOAD_TYPE {
        return Err(Error::Unsupported { field: "DSSE payload type", found: env.payload_type });
    }
    let [sig] = env.signatures.as_slice() else {
        return Err(Error::Parse(format!("expected one DSSE signature, found {}", env.signatures.len())));
    };
    let payload = STANDARD.decode(&env.payload).map_err(|e| Error::Parse(format!("payload base64: {e}")))?;
    let signature = STANDARD.decode(&sig.sig).map_err(|e| Error::Parse(format!("signature base64: {e}")))?;
    Ok(ParsedBundle { payload, signature })
}

/// What a signed statement says, checked for internal consistency.
#[derive(Debug)]
pub struct SignedManifest {
    /// The subject's name.
    pub name: String,
    /// The subject digest.
    pub subject_digest: [u8; 32],
    /// The signed resources in order.
    pub resources: Vec<Resource>,
    /// The ignore paths the signer applied.
    pub ignore_paths: Vec<String>,
}

fn hex32(s: &str, what: &str) -> Result<[u8; 32], Error> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|e| Error::Parse(format!("{what}: {e}")))?;
    Ok(out)
}

/// Parses a statement payload (types, serialization, resources, subject).
pub fn parse_statement(payload: &[u8]) -> Result<SignedManifest, Error> {
    let st: Statement = serde_json::from_slice(payload).map_err(|e| Error::Parse(format!("statement JSON: {e}")))?;
    if st.type_ != STATEMENT_TYPE {
        return Err(Error::Unsupported { field: "statement type", found: st.type_ });
    }
    if st.predicate_type != PREDICATE_TYPE {
        return Err(Error::Unsupported { field: "predicate type", found: st.predicate_type });
    }
    let ser = st.predicate.serialization;
    if ser.method != "files" {
        return Err(Error::Unsupported { field: "serialization method", found: ser.method });
    }
    if ser.hash_type != "sha256" {
        return Err(Error::Unsupported { field: "hash type", found: ser.hash_type });
    }
    let [subject] = st.subject.as_slice() else {
        return Err(Error::Parse(format!("expected one subject, found {}", st.subject.len())));
    };
    let subject_digest = hex32(&subject.digest.sha256, "subject digest")?;
    let mut resources = Vec::with_capacity(st.predicate.resources.len());
    let mut seen = BTreeMap::new();
    for r in st.predicate.resources {
        if r.algorithm != "sha256" {
            return Err(Error::Unsupported { field: "resource algorithm", found: r.algorithm });
        }
        let digest = hex32(&r.digest, "resource digest")?;
        if seen.insert(r.name.clone(), ()).is_some() {
            return Err(Error::Parse(format!("resource listed twice: {}", r.name)));
        }
        resources.push(Resource { name: r.name, digest });
    }
    sort_resources(&mut resources);
    Ok(SignedManifest { name: subject.name.clone(), subject_digest, resources, ignore_paths: ser.ignore_paths })
}

/// Serializes like Python's `json.dumps(indent=2)` (which `MessageToJson` uses).
fn to_python_pretty<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"  ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    value.serialize(&mut ser).map_err(|e| Error::Parse(format!("serializing: {e}")))?;
    Ok(out)
}

/// Signs `manifest` with a PEM private key (PKCS#8 or SEC1, P-256 or P-384), returning the
/// Sigstore bundle JSON bytes as `model_signing sign key` writes them.
pub fn sign(manifest: &Manifest, signing_key_pem: &[u8]) -> Result<Vec<u8>, Error> {
    let key = SigningKey::from_pem(signing_key_pem)?;
    let statement = Statement {
        type_: STATEMENT_TYPE.into(),
        subject: vec![Subject {
            name: manifest.name.clone(),
            digest: SubjectDigest { sha256: hex::encode(manifest.digest()) },
        }],
        predicate_type: PREDICATE_TYPE.into(),
        predicate: Predicate {
            serialization: Serialization {
                method: "files".into(),
                allow_symlinks: false,
                hash_type: "sha256".into(),
                ignore_paths: manifest.ignore_paths.clone(),
            },
            resources: manifest
                .resources
                .iter()
                .map(|r| WireResource {
                    name: r.name.clone(),
                    digest: hex::encode(r.digest),
                    algorithm: "sha256".into(),
                })
                .collect(),
        },
    };
    let payload = to_python_pretty(&statement)?;
    let sig = key.sign(&pae(&payload))?;
    let hint = hex::encode(Sha256::digest(key.public_key().spki_pem().as_bytes()));
    let bundle = Bundle {
        media_type: BUNDLE_MEDIA_TYPE.into(),
        verification_material: VerificationMaterial { public_key: PublicKeyHint { hint }, tlog_entries: Vec::new() },
        dsse_envelope: Envelope {
            payload: STANDARD.encode(&payload),
            payload_type: PAYLOAD_TYPE.into(),
            signatures: vec![EnvelopeSignature { sig: STANDARD.encode(sig), keyid: String::new() }],
        },
    };
    serde_json::to_vec(&bundle).map_err(|e| Error::Parse(format!("serializing: {e}")))
}

/// A model whose files match a bundle signed by the given key. Only [`verify`] makes one.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Verified {
    /// The model manifest digest (the OMS subject digest): `sha256:<hex>`.
    pub manifest_digest: String,
    /// The signer: `sha256:<hex of SHA-256 of the DER SubjectPublicKeyInfo>`.
    pub signer: String,
    /// The verified files in order.
    pub files: Vec<Resource>,
}

/// Verifies an OMS bundle against a PEM public key (SPKI, P-256 or P-384) and the model
/// directory: the DSSE signature over the payload bytes as received, then the statement,
/// then the files on disk (recomputed with the signature's ignore paths), which must be
/// exactly the signed set.
///
/// The key's `hint` in the bundle is not checked: it only helps pick a key, and the key
/// given here is the trust decision.
pub fn verify(bundle_json: &[u8], public_key_pem: &[u8], model_dir: &Path) -> Result<Verified, Error> {
    let (signed, signer) = verify_signature(bundle_json, public_key_pem)?;
    let actual = Manifest::compute_recorded(model_dir, signed.ignore_paths.clone())?;
    let on_disk: BTreeMap<&str, &[u8; 32]> = actual.resources.iter().map(|r| (r.name.as_str(), &r.digest)).collect();
    let in_sig: BTreeMap<&str, &[u8; 32]> = signed.resources.iter().map(|r| (r.name.as_str(), &r.digest)).collect();
    let mut mismatch = Mismatch::default();
    for (name, d) in &on_disk {
        match in_sig.get(name) {
            None => mismatch.added.push((*name).to_owned()),
            Some(s) if s != d => mismatch.changed.push((*name).to_owned()),
            Some(_) => {}
        }
    }
    for name in in_sig.keys() {
        if !on_disk.contains_key(name) {
            mismatch.removed.push((*name).to_owned());
        }
    }
    if !mismatch.is_empty() {
        return Err(Error::Mismatch(mismatch));
    }
    if actual.digest() != signed.subject_digest {
        return Err(Error::SubjectDigest {
            expected: hex::encode(actual.digest()),
            found: hex::encode(signed.subject_digest),
        });
    }
    Ok(Verified {
        manifest_digest: format!("sha256:{}", hex::encode(signed.subject_digest)),
        signer,
        files: signed.resources,
    })
}

/// Verifies an OMS bundle's signature with a PEM public key and checks that the signed
/// subject digest is the digest of the signed resources, without looking at any files.
/// Returns what was signed and the signer (`sha256:<hex of the SPKI DER digest>`).
pub fn verify_signature(bundle_json: &[u8], public_key_pem: &[u8]) -> Result<(SignedManifest, String), Error> {
    let key = PublicKey::from_pem(public_key_pem)?;
    let bundle = parse_bundle(bundle_json)?;
    key.verify(&pae(&bundle.payload), &bundle.signature)?;
    let signed = parse_statement(&bundle.payload)?;
    let mut h = Sha256::new();
    for r in &signed.resources {
        h.update(r.digest);
    }
    let expected: [u8; 32] = h.finalize().into();
    if expected != signed.subject_digest {
        return Err(Error::SubjectDigest {
            expected: hex::encode(expected),
            found: hex::encode(signed.subject_digest),
        });
    }
    Ok((signed, key.signer_id()))
}

#[cfg(test)]
mod tests;
