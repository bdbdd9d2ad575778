//! Sealing: one pass over the model that hashes every file for the OMS manifest and
//! encrypts it chunk by chunk, in parallel, into a bundle that appears under its final
//! name only once complete.

use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use aws_lc_rs::{aead, digest};
use zeroize::Zeroizing;

use crate::Error;
use crate::bundle::{self, CardEntry, DataKey, FileEntry, Header, PREAMBLE_LEN, TAG_LEN};
use crate::card::{Card, CardPolicy};
use crate::keys::SigningKey;
use crate::oms::{self, ModelFiles};
use crate::work::{self, NoProgress, Phase, Progress};

/// The name the card gets among the model's files when it comes from `--card`.
pub const CARD_FILE_NAME: &str = "MODEL_CARD.md";
/// The model's own card, used when no card file is given.
pub const README_NAME: &str = "README.md";

/// How to seal.
#[derive(Clone, Copy)]
pub struct SealOptions<'a> {
    /// Plaintext bytes per chunk.
    pub chunk_size: u32,
    /// Worker threads (0: one per core).
    pub threads: usize,
    /// The model card; `None` uses the model's `README.md`.
    pub card: Option<&'a Path>,
    /// The policy the card must pass.
    pub card_policy: Option<&'a CardPolicy>,
    /// Extra paths to leave out (relative to the model, or absolute).
    pub ignore_paths: &'a [PathBuf],
    /// Progress receiver.
    pub progress: &'a dyn Progress,
}

impl std::fmt::Debug for SealOptions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealOptions")
            .field("chunk_size", &self.chunk_size)
            .field("threads", &self.threads)
            .field("card", &self.card)
            .finish_non_exhaustive()
    }
}

impl Default for SealOptions<'_> {
    fn default() -> Self {
        Self {
            chunk_size: bundle::DEFAULT_CHUNK,
            threads: 0,
            card: None,
            card_policy: None,
            ignore_paths: &[],
            progress: &NoProgress,
        }
    }
}

/// What sealing produced.
#[derive(Debug)]
#[non_exhaustive]
pub struct Sealed {
    /// The bundle id, hex.
    pub bundle_id: String,
    /// The model manifest digest: `sha256:<hex>`.
    pub manifest_digest: String,
    /// The signer: `sha256:<hex>`.
    pub signer: String,
    /// The number of files sealed, the card included.
    pub files: usize,
    /// Plaintext bytes sealed.
    pub bytes: u64,
    /// The fresh data key; the caller stores it (key file or broker).
    pub data_key: DataKey,
}

/// Where a file's plaintext comes from.
enum Source<'a> {
    Disk(PathBuf),
    Memory(&'a [u8]),
}

struct Plan<'a> {
    name: String,
    source: Source<'a>,
    size: u64,
    /// (inode, mtime, ctime) when listed, to detect changes.
    stamp: Option<Stamp>,
    offset: u64,
}

/// What identifies a file's content cheaply: device, inode, size, mtime and ctime.
type Stamp = (u64, u64, u64, i64, i64, i64, i64);

fn stamp(m: &std::fs::Metadata) -> Stamp {
    (m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec())
}

/// Opens a listed file for reading, refusing anything that is no longer the file that was
/// listed (a symlink or another file swapped in): its open handle must have the listed
/// device and inode.
fn open_listed(path: &Path, listed: Option<Stamp>) -> Result<File, Error> {
    let f = File::open(path).map_err(|source| Error::Io { path: path.into(), source })?;
    let m = f.metadata().map_err(|source| Error::Io { path: path.into(), source })?;
    match listed {
        Some(s) if (m.dev(), m.ino()) != (s.0, s.1) || !m.is_file() => Err(Error::Changed(path.into())),
        _ => Ok(f),
    }
}

/// A temporary file removed on drop unless kept.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Fails with [`Error::Exists`] if anything (a file, a directory, a dangling symlink) is at `p`.
pub(crate) fn refuse_existing(p: &Path) -> Result<(), Error> {
    match std::fs::symlink_metadata(p) {
        Ok(_) => Err(Error::Exists(p.into())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io { path: p.into(), source }),
    }
}

/// A sibling of `p` that is hidden and random: `.NAME.partial-XXXXXXXX`.
pub(crate) fn partial_sibling(p: &Path) -> Result<PathBuf, Error> {
    let name = p.file_name().and_then(|n| n.to_str()).ok_or_else(|| Error::BadPath(p.into()))?;
    let mut r = [0u8; 8];
    crate::random(&mut r).map_err(|_| Error::Random)?;
    Ok(p.with_file_name(format!(".{name}.partial-{}", hex::encode(r))))
}

/// Fsyncs a directory so that a rename in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    File::open(dir).and_then(|d| d.sync_all()).map_err(|source| Error::Io { path: dir.into(), source })
}

/// Seals `model_dir` into a new bundle at `out`, signing the OMS manifest with
/// `signing_key_pem`. Returns the fresh data key with the bundle's identity.
///
/// The bundle is written to a hidden temporary file beside `out`, synced, its preamble
/// (with the magic) written last, then linked to `out`, which must not exist. On any
/// error the temporary file is removed; if the process dies, what remains is hidden, has
/// no magic, and is refused by [`crate::unseal::open`].
pub fn seal(model_dir: &Path, signing_key_pem: &[u8], out: &Path, opts: &SealOptions<'_>) -> Result<Sealed, Error> {
    if !(bundle::MIN_CHUNK..=bundle::MAX_CHUNK).contains(&opts.chunk_size) {
        return Err(Error::Header(format!(
            "chunk size {} outside {}..={}",
            opts.chunk_size,
            bundle::MIN_CHUNK,
            bundle::MAX_CHUNK
        )));
    }
    refuse_existing(out)?;
    let signer = SigningKey::from_pem(signing_key_pem)?.public_key().signer_id();

    // The card: read, parse, gate.
    let (card_name, card_text, card_in_model) = match opts.card {
        Some(p) => {
            let t = std::fs::read_to_string(p).map_err(|source| Error::Io { path: p.into(), source })?;
            (CARD_FILE_NAME, t, false)
        }
        None => {
            // The card rule (checked again by `unseal::open`): MODEL_CARD.md if the model
            // has one, otherwise README.md.
            let mut found = None;
            for name in [CARD_FILE_NAME, README_NAME] {
                let p = model_dir.join(name);
                match std::fs::read_to_string(&p) {
                    Ok(t) => {
                        found = Some((name, t));
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(source) => return Err(Error::Io { path: p, source }),
                }
            }
            let Some((name, t)) = found else {
                return Err(Error::Card(format!(
                    "no model card: the model has no {CARD_FILE_NAME} or {README_NAME}; pass one with --card"
                )));
            };
            (name, t, true)
        }
    };
    let card = Card::parse(&card_text)?;
    if let Some(policy) = opts.card_policy {
        policy.check(&card)?;
    }

    // The files: the model's, then the card if it is not one of them.
    let mut ignore = opts.ignore_paths.to_vec();
    ignore.push(std::path::absolute(out).map_err(|source| Error::Io { path: out.into(), source })?);
    let mut listed = ModelFiles::list(model_dir, &ignore)?;
    if card_in_model && !listed.files.iter().any(|f| f == card_name) {
        return Err(Error::Card(format!("the model's {card_name} is ignored or not a regular file")));
    }
    if !card_in_model {
        if listed.files.iter().any(|f| f == CARD_FILE_NAME) {
            return Err(Error::Card(format!("the model already has a {CARD_FILE_NAME}; drop --card or remove it")));
        }
        listed.files.push(CARD_FILE_NAME.to_owned());
    }
    bundle::check_names(listed.files.iter().map(String::as_str))?;
    if listed.files.len() > bundle::MAX_FILES {
        return Err(Error::Header(format!("{} files, more than {}", listed.files.len(), bundle::MAX_FILES)));
    }

    let mut plans = Vec::with_capacity(listed.files.len());
    let mut at = PREAMBLE_LEN;
    for name in &listed.files {
        // The card is sealed from the text that was parsed and checked, never re-read.
        let (source, size, st) = if name == card_name {
            (Source::Memory(card_text.as_bytes()), card_text.len() as u64, None)
        } else {
            let path = listed.path_of(model_dir, name);
            let m = std::fs::symlink_metadata(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
            (Source::Disk(path), m.len(), Some(stamp(&m)))
        };
        let len = bundle::sealed_len(size, opts.chunk_size).ok_or_else(|| Error::Header("file too large".into()))?;
        plans.push(Plan { name: name.clone(), source, size, stamp: st, offset: at });
        at = at.checked_add(len).ok_or_else(|| Error::Header("bundle too large".into()))?;
    }
    let header_offset = at;
    let total: u64 = plans.iter().map(|p| p.size).fold(0, u64::saturating_add);

    let data_key = DataKey::generate()?;
    let mut bundle_id = [0u8; 32];
    crate::random(&mut bundle_id).map_err(|_| Error::Random)?;

    let tmp_path = partial_sibling(out)?;
    let tmp_file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp_path)
        .map_err(|source| Error::Io { path: tmp_path.clone(), source })?;
    let mut tmp = TempFile { path: tmp_path, keep: false };
    let io_out = |source| Error::Io { path: out.into(), source };

    // One pass: hash jobs first (largest file first, so the longest serial stream starts
    // at once), then every chunk in data order.
    let mut order: Vec<usize> = (0..plans.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(plans.get(i).map_or(0, |p| p.size)));
    let mut jobs: Vec<Job> = order.into_iter().map(Job::Hash).collect();
    for (f, p) in plans.iter().enumerate() {
        for i in 0..bundle::chunk_count(p.size, opts.chunk_size) {
            jobs.push(Job::Chunk(f, i));
        }
    }
    let digests: Vec<OnceLock<[u8; 32]>> = plans.iter().map(|_| OnceLock::new()).collect();
    let chunk = u64::from(opts.chunk_size);
    opts.progress.begin(Phase::Hash, total);
    opts.progress.begin(Phase::Encrypt, total);
    // Reads, optionally hashes, encrypts and writes chunk `i` of file `f`.
    let seal_chunk = |w: &mut Worker, f: usize, i: u64, hash: Option<&mut digest::Context>| -> Result<(), Error> {
        let p = plans.get(f).ok_or_else(|| Error::Header("job".into()))?;
        let key = match &w.key {
            Some((kf, k)) if *kf == f => k,
            _ => &w.key.insert((f, data_key.file_key(&bundle_id, &p.name)?)).1,
        };
        let start = i.saturating_mul(chunk);
        let n = p.size.saturating_sub(start).min(chunk);
        let n_usize = usize::try_from(n).map_err(|_| Error::Header("chunk".into()))?;
        let last = i.saturating_add(1) == bundle::chunk_count(p.size, opts.chunk_size);
        // Reuse the buffer without zeroing it again: every byte is overwritten by the read
        // (the tag of the previous chunk is cut off first).
        w.buf.truncate(n_usize);
        if w.buf.len() < n_usize {
            w.buf.resize(n_usize, 0);
        }
        read_source(p, f, &mut w.file, start, &mut w.buf)?;
        if let Some(h) = hash {
            h.update(&w.buf);
            opts.progress.advance(Phase::Hash, n);
        }
        let aad = bundle::chunk_aad(&bundle_id, &p.name, i, last)?;
        let tag = key
            .seal_in_place_separate_tag(bundle::chunk_nonce(i), aead::Aad::from(aad), &mut w.buf)
            .map_err(|_| Error::Signing)?;
        w.buf.extend_from_slice(tag.as_ref());
        let at = p.offset.saturating_add(i.saturating_mul(chunk.saturating_add(TAG_LEN)));
        tmp_file.write_all_at(&w.buf, at).map_err(io_out)?;
        opts.progress.advance(Phase::Encrypt, n);
        Ok(())
    };
    if work::thread_count(opts.threads) == 1 {
        // One thread: a single pass that hashes exactly the bytes it encrypts.
        let mut w = Worker::new();
        for (f, p) in plans.iter().enumerate() {
            let mut h = digest::Context::new(&digest::SHA256);
            for i in 0..bundle::chunk_count(p.size, opts.chunk_size) {
                seal_chunk(&mut w, f, i, Some(&mut h))?;
            }
            let d: [u8; 32] = h.finish().as_ref().try_into().map_err(|_| Error::Signing)?;
            let _ = digests.get(f).map(|slot| slot.set(d));
        }
    } else {
        // Several: each file's hash is one job (a serial stream), chunks are the others.
        work::run(jobs, opts.threads, Worker::new, |w, job| match job {
            Job::Hash(f) => {
                let p = plans.get(f).ok_or_else(|| Error::Header("job".into()))?;
                let d = hash_source(p, opts.progress)?;
                let _ = digests.get(f).map(|slot| slot.set(d));
                Ok(())
            }
            Job::Chunk(f, i) => seal_chunk(w, f, i, None),
        })?;
    }
    opts.progress.end(Phase::Hash);
    opts.progress.end(Phase::Encrypt);

    // The files must not have changed between listing, hashing and encrypting.
    for p in &plans {
        if let (Source::Disk(path), Some(before)) = (&p.source, p.stamp) {
            let m = std::fs::symlink_metadata(path).map_err(|source| Error::Io { path: path.clone(), source })?;
            if stamp(&m) != before {
                return Err(Error::Changed(path.clone()));
            }
        }
    }
    let digests: Vec<[u8; 32]> = digests
        .into_iter()
        .map(|d| d.into_inner().ok_or_else(|| Error::Header("a file was not hashed".into())))
        .collect::<Result<_, _>>()?;
    let manifest = listed.into_manifest(digests);
    let signature = oms::sign(&manifest, signing_key_pem)?;
    let signature = String::from_utf8(signature).map_err(|_| Error::Signing)?;

    let header = Header {
        bundle_id: hex::encode(bundle_id),
        aead: bundle::AEAD_NAME.into(),
        kdf: bundle::KDF_NAME.into(),
        chunk_size: opts.chunk_size,
        signature,
        card: CardEntry { path: card_name.into(), text: card.text },
        files: plans
            .iter()
            .map(|p| FileEntry {
                path: p.name.clone(),
                size: p.size,
                offset: p.offset,
                length: bundle::sealed_len(p.size, opts.chunk_size).unwrap_or(0),
            })
            .collect(),
    };
    let header_bytes = serde_json::to_vec(&header).map_err(|e| Error::Header(format!("serializing: {e}")))?;
    let header_len = u32::try_from(header_bytes.len())
        .ok()
        .filter(|l| *l <= bundle::MAX_HEADER_LEN)
        .ok_or_else(|| Error::Header("header too large".into()))?;
    let preamble = bundle::preamble(header_len, header_offset);
    let mac = bundle::header_mac(&data_key, &preamble, &header_bytes)?;
    tmp_file.write_all_at(&header_bytes, header_offset).map_err(io_out)?;
    tmp_file.write_all_at(&mac, header_offset.saturating_add(u64::from(header_len))).map_err(io_out)?;
    tmp_file.sync_all().map_err(io_out)?;
    // The magic goes in last: a bundle without it is incomplete by definition.
    tmp_file.write_all_at(&preamble, 0).map_err(io_out)?;
    tmp_file.sync_all().map_err(io_out)?;
    drop(tmp_file);
    // A hard link never replaces an existing file, unlike rename.
    std::fs::hard_link(&tmp.path, out).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists { Error::Exists(out.into()) } else { io_out(source) }
    })?;
    // The bundle is complete under its name; failing to remove the hidden link is harmless.
    let _ = std::fs::remove_file(&tmp.path);
    tmp.keep = true;
    sync_dir(out.parent().unwrap_or(Path::new(".")))?;

    Ok(Sealed {
        bundle_id: hex::encode(bundle_id),
        manifest_digest: manifest.digest_string(),
        signer,
        files: manifest.resources.len(),
        bytes: total,
        data_key,
    })
}

enum Job {
    Hash(usize),
    Chunk(usize, u64),
}

struct Worker {
    key: Option<(usize, aead::LessSafeKey)>,
    /// The open source file of the last chunk (opened and checked once per file, not
    /// once per chunk).
    file: Option<(usize, File)>,
    buf: Zeroizing<Vec<u8>>,
}

impl Worker {
    fn new() -> Self {
        Self { key: None, file: None, buf: Zeroizing::new(Vec::new()) }
    }
}

/// Reads `buf.len()` bytes of file `f`'s plaintext at `offset`, through `cache`.
fn read_source(
    p: &Plan<'_>,
    f: usize,
    cache: &mut Option<(usize, File)>,
    offset: u64,
    buf: &mut [u8],
) -> Result<(), Error> {
    match &p.source {
        Source::Disk(path) => {
            let file = match cache {
                Some((cf, file)) if *cf == f => &*file,
                _ => &cache.insert((f, open_listed(path, p.stamp)?)).1,
            };
            file.read_exact_at(buf, offset).map_err(|source| {
                if source.kind() == std::io::ErrorKind::UnexpectedEof {
                    Error::Changed(path.clone())
                } else {
                    Error::Io { path: path.clone(), source }
                }
            })
        }
        Source::Memory(bytes) => {
            let start = usize::try_from(offset).map_err(|_| Error::Header("offset".into()))?;
            let src = bytes
                .get(start..start.saturating_add(buf.len()))
                .ok_or_else(|| Error::Header("in-memory file shorter than planned".into()))?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }
}

/// SHA-256 of a file's plaintext, streamed with a fixed buffer.
fn hash_source(p: &Plan<'_>, progress: &dyn Progress) -> Result<[u8; 32], Error> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut seen = 0u64;
    match &p.source {
        Source::Memory(bytes) => {
            ctx.update(bytes);
            seen = bytes.len() as u64;
        }
        Source::Disk(path) => {
            let io = |source| Error::Io { path: path.clone(), source };
            let mut f = open_listed(path, p.stamp)?;
            let mut buf = Zeroizing::new(vec![0u8; 1 << 20]);
            loop {
                let n = f.read(&mut buf).map_err(io)?;
                if n == 0 {
                    break;
                }
                ctx.update(buf.get(..n).unwrap_or_default());
                seen = seen.saturating_add(n as u64);
                progress.advance(Phase::Hash, n as u64);
            }
        }
    }
    if seen != p.size {
        if let Source::Disk(path) = &p.source {
            return Err(Error::Changed(path.clone()));
        }
    }
    ctx.finish().as_ref().try_into().map_err(|_| Error::Signing)
}
