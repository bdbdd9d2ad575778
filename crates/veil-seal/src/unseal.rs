//! Opening and unsealing bundles.
//!
//! [`open`] needs no key: it parses the header, verifies the OMS signature against the
//! trusted signer, and checks that the bundle's files and plaintext card are exactly what
//! was signed — what a broker or runtime checks before a key is released.
//! [`Opened::unseal`] then authenticates the header with the data key, decrypts and
//! authenticates every chunk in parallel into memory, and checks each file's SHA-256
//! against the signed manifest; it returns the plaintext only if all of that holds.

use std::collections::BTreeMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use aws_lc_rs::{aead, digest};

use crate::Error;
use crate::bundle::{self, DataKey, FileEntry, MAC_LEN, Meta, PREAMBLE_LEN, TAG_LEN};
use crate::card::{Card, CardPolicy};
use crate::error::Mismatch;
use crate::oms::{self, SignedManifest};
use crate::seal::{partial_sibling, refuse_existing, sync_dir};
use crate::work::{self, NoProgress, Phase, Progress};

/// A bundle whose header parsed and whose signature verified against a trusted signer.
#[derive(Debug)]
pub struct Opened {
    path: PathBuf,
    file: File,
    meta: Meta,
    signed: SignedManifest,
    signer: String,
    card: Card,
}

/// Opens a bundle and verifies, without the data key, that it was signed by the signer
/// whose public key is `trusted_signer_pem`, that its files are exactly the signed ones,
/// and that its plaintext card is the signed card.
pub fn open(path: &Path, trusted_signer_pem: &[u8]) -> Result<Opened, Error> {
    let io = |source| Error::Io { path: path.into(), source };
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    let mut preamble = [0u8; PREAMBLE_LEN as usize];
    if len < PREAMBLE_LEN {
        return Err(Error::NotABundle(format!("{len} bytes, shorter than the preamble")));
    }
    file.read_exact_at(&mut preamble, 0).map_err(io)?;
    let pre = bundle::parse_preamble(&preamble, len)?;
    let hlen = usize::try_from(pre.header_len).map_err(|_| Error::Header("header length".into()))?;
    let mut header = vec![0u8; hlen.saturating_add(MAC_LEN)];
    file.read_exact_at(&mut header, pre.header_offset).map_err(io)?;
    let meta = Meta::parse(preamble, &header, len)?;

    let (signed, signer) = oms::verify_signature(meta.header.signature.as_bytes(), trusted_signer_pem)?;
    let in_bundle: BTreeMap<&str, ()> = meta.header.files.iter().map(|f| (f.path.as_str(), ())).collect();
    let in_sig: BTreeMap<&str, &[u8; 32]> = signed.resources.iter().map(|r| (r.name.as_str(), &r.digest)).collect();
    let mismatch = Mismatch {
        added: in_bundle.keys().filter(|n| !in_sig.contains_key(*n)).map(|n| (*n).to_owned()).collect(),
        removed: in_sig.keys().filter(|n| !in_bundle.contains_key(*n)).map(|n| (*n).to_owned()).collect(),
        changed: Vec::new(),
    };
    if !mismatch.is_empty() {
        return Err(Error::Contents(mismatch));
    }
    let card_entry = &meta.header.card;
    // Which file is the card is fixed by rule, not by the (unsigned) header: MODEL_CARD.md
    // when the signed model has one, otherwise README.md. A header naming another signed
    // file (one with a friendlier licence, say) is refused before any key is involved.
    let expected_card = if in_sig.contains_key(crate::seal::CARD_FILE_NAME) {
        crate::seal::CARD_FILE_NAME
    } else {
        crate::seal::README_NAME
    };
    if card_entry.path != expected_card {
        return Err(Error::Card(format!(
            "the header names {:?} as the card, but the card of this model is {expected_card:?}",
            card_entry.path
        )));
    }
    let card_digest = digest::digest(&digest::SHA256, card_entry.text.as_bytes());
    match in_sig.get(card_entry.path.as_str()) {
        None => return Err(Error::Card(format!("the card {:?} is not one of the signed files", card_entry.path))),
        Some(d) if d.as_slice() != card_digest.as_ref() => {
            return Err(Error::Card(format!("the card text differs from the signed {:?}", card_entry.path)));
        }
        Some(_) => {}
    }
    let card = Card::parse(&card_entry.text)?;
    Ok(Opened { path: path.into(), file, meta, signed, signer, card })
}

/// The plaintext of one file.
pub struct PlainFile {
    /// Relative `/`-separated name.
    pub path: String,
    /// The content; wiped on drop.
    pub data: crate::SecretBytes,
}

impl std::fmt::Debug for PlainFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainFile").field("path", &self.path).field("len", &self.data.len()).finish()
    }
}

/// A fully verified, decrypted model in memory.
#[derive(Debug)]
#[non_exhaustive]
pub struct Unsealed {
    /// The model manifest digest: `sha256:<hex>`.
    pub manifest_digest: String,
    /// The signer: `sha256:<hex>`.
    pub signer: String,
    /// The model card.
    pub card: Card,
    /// The files, in bundle order.
    pub files: Vec<PlainFile>,
}

impl Unsealed {
    /// The file named `path`.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files.iter().find(|f| f.path == path).map(|f| &*f.data)
    }
}

/// Per-file state while unsealing: decrypted chunks as they land, and the running hash
/// that consumes them in order.
struct FileState<'a> {
    slots: Vec<OnceLock<&'a [u8]>>,
    hasher: Mutex<(usize, digest::Context)>,
}

impl FileState<'_> {
    /// Hashes the decrypted chunks that are next in order, if no other thread is doing so.
    fn advance(&self) {
        loop {
            let Ok(mut g) = self.hasher.try_lock() else { return };
            while let Some(chunk) = self.slots.get(g.0).and_then(OnceLock::get) {
                g.1.update(chunk);
                g.0 = g.0.saturating_add(1);
            }
            let next = g.0;
            drop(g);
            // A chunk that landed while the lock was held would otherwise wait for the final sweep.
            if self.slots.get(next).and_then(OnceLock::get).is_none() {
                return;
            }
        }
    }
}

struct Job<'a> {
    file: usize,
    index: u64,
    out: &'a mut [u8],
}

impl Opened {
    /// The model manifest digest: `sha256:<hex>`.
    pub fn manifest_digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.signed.subject_digest))
    }
    /// The signer: `sha256:<hex>`.
    pub fn signer(&self) -> &str {
        &self.signer
    }
    /// The verified model card.
    pub fn card(&self) -> &Card {
        &self.card
    }
    /// The bundle id, hex.
    pub fn bundle_id(&self) -> &str {
        &self.meta.header.bundle_id
    }
    /// The sealed files.
    pub fn files(&self) -> &[FileEntry] {
        &self.meta.header.files
    }
    /// The OMS signature (Sigstore bundle JSON) over the plaintext files.
    pub fn signature(&self) -> &str {
        &self.meta.header.signature
    }
    /// The chunk size.
    pub fn chunk_size(&self) -> u32 {
        self.meta.header.chunk_size
    }
    /// Checks the card against a policy.
    pub fn check_card(&self, policy: &CardPolicy) -> Result<(), Error> {
        policy.check(&self.card)
    }

    /// Decrypts and verifies everything in memory, on `threads` threads (0: all cores).
    pub fn unseal(&self, key: &DataKey, threads: usize, progress: &dyn Progress) -> Result<Unsealed, Error> {
        self.meta.authenticate(key)?;
        let h = &self.meta.header;
        let chunk = u64::from(h.chunk_size);
        let chunk_usize = usize::try_from(h.chunk_size).map_err(|_| Error::Header("chunk size".into()))?;
        let mut buffers: Vec<crate::SecretBytes> = Vec::with_capacity(h.files.len());
        for f in &h.files {
            let n = usize::try_from(f.size).map_err(|_| Error::Header(format!("{}: too large", f.path)))?;
            buffers.push(crate::SecretBytes::zeroed(n));
        }
        let total = h.files.iter().map(|f| f.size).fold(0, u64::saturating_add);
        progress.begin(Phase::Decrypt, total);
        {
            let states: Vec<FileState<'_>> = h
                .files
                .iter()
                .map(|f| FileState {
                    slots: (0..bundle::chunk_count(f.size, h.chunk_size)).map(|_| OnceLock::new()).collect(),
                    hasher: Mutex::new((0, digest::Context::new(&digest::SHA256))),
                })
                .collect();
            let mut jobs = Vec::new();
            for (file, buf) in buffers.iter_mut().enumerate() {
                if buf.is_empty() {
                    jobs.push(Job { file, index: 0, out: &mut buf[..] });
                } else {
                    for (index, out) in buf.chunks_mut(chunk_usize).enumerate() {
                        jobs.push(Job { file, index: index as u64, out });
                    }
                }
            }
            work::run(
                jobs,
                threads,
                || (None::<(usize, aead::LessSafeKey)>, vec![0u8; chunk_usize.saturating_add(TAG_LEN as usize)]),
                |(cached, scratch), job| {
                    let entry = h.files.get(job.file).ok_or_else(|| Error::Header("job".into()))?;
                    let state = states.get(job.file).ok_or_else(|| Error::Header("job".into()))?;
                    let key = match cached {
                        Some((kf, k)) if *kf == job.file => &*k,
                        _ => &cached.insert((job.file, key.file_key(&self.meta.bundle_id, &entry.path)?)).1,
                    };
                    let chunks = bundle::chunk_count(entry.size, h.chunk_size);
                    let n = job.out.len();
                    let sealed = scratch
                        .get_mut(..n.saturating_add(TAG_LEN as usize))
                        .ok_or_else(|| Error::Header("chunk larger than the chunk size".into()))?;
                    let at = entry.offset.saturating_add(job.index.saturating_mul(chunk.saturating_add(TAG_LEN)));
                    self.file
                        .read_exact_at(sealed, at)
                        .map_err(|source| Error::Io { path: self.path.clone(), source })?;
                    let (ct, tag) = sealed.split_at(n);
                    let aad = bundle::chunk_aad(&self.meta.bundle_id, &entry.path, job.index, job.index + 1 == chunks)?;
                    key.open_separate_gather(bundle::chunk_nonce(job.index), aead::Aad::from(aad), ct, tag, job.out)
                        .map_err(|_| Error::Chunk { path: entry.path.clone(), index: job.index, chunks })?;
                    let done: &[u8] = job.out;
                    let _ = state.slots.get(usize::try_from(job.index).unwrap_or(usize::MAX)).map(|s| s.set(done));
                    state.advance();
                    progress.advance(Phase::Decrypt, n as u64);
                    Ok(())
                },
            )?;
            // Every chunk decrypted: finish each file's hash and compare with the signature.
            let signed: BTreeMap<&str, &[u8; 32]> =
                self.signed.resources.iter().map(|r| (r.name.as_str(), &r.digest)).collect();
            let mut mismatch = Mismatch::default();
            for (entry, state) in h.files.iter().zip(states) {
                let (next, ctx) = state.hasher.into_inner().map_err(|_| Error::Header("hasher poisoned".into()))?;
                let mut ctx = ctx;
                let rest = state.slots.get(next..).unwrap_or_default();
                for slot in rest {
                    let c = slot
                        .get()
                        .ok_or_else(|| Error::Header(format!("{}: a chunk was not decrypted", entry.path)))?;
                    ctx.update(c);
                }
                let d = ctx.finish();
                if signed.get(entry.path.as_str()).map(|s| s.as_slice()) != Some(d.as_ref()) {
                    mismatch.changed.push(entry.path.clone());
                }
            }
            if !mismatch.is_empty() {
                return Err(Error::Contents(mismatch));
            }
        }
        progress.end(Phase::Decrypt);
        Ok(Unsealed {
            manifest_digest: self.manifest_digest(),
            signer: self.signer.clone(),
            card: self.card.clone(),
            files: h.files.iter().zip(buffers).map(|(e, data)| PlainFile { path: e.path.clone(), data }).collect(),
        })
    }
}

/// Opens with [`open`] and unseals with [`Opened::unseal`], reporting no progress.
pub fn unseal(path: &Path, trusted_signer_pem: &[u8], key: &DataKey) -> Result<Unsealed, Error> {
    open(path, trusted_signer_pem)?.unseal(key, 0, &NoProgress)
}

/// Removes a directory tree on drop unless kept.
struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Writes unsealed files under `dir`, which must not exist, with their relative paths
/// (files mode 0600, directories 0700). The files are written into a hidden sibling
/// directory that is renamed to `dir` only when every file is written and synced.
///
/// This is the operator's tool outside the CVM; the runtime never writes plaintext.
pub fn write_out(unsealed: &Unsealed, dir: &Path) -> Result<(), Error> {
    refuse_existing(dir)?;
    bundle::check_names(unsealed.files.iter().map(|f| f.path.as_str()))?;
    let tmp = TempDir { path: partial_sibling(dir)?, keep: false };
    let mut builder = DirBuilder::new();
    builder.mode(0o700);
    builder.create(&tmp.path).map_err(|source| Error::Io { path: tmp.path.clone(), source })?;
    builder.recursive(true);
    for f in &unsealed.files {
        let path = f.path.split('/').fold(tmp.path.clone(), |p, c| p.join(c));
        if let Some(parent) = path.parent() {
            builder.create(parent).map_err(|source| Error::Io { path: parent.into(), source })?;
        }
        let io = |source| Error::Io { path: path.clone(), source };
        // create_new never follows a symlink at the final component; the directories
        // above were created here, inside a directory only this process knows.
        let mut out = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(io)?;
        out.write_all(&f.data).map_err(io)?;
        out.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp.path, dir).map_err(|source| Error::Io { path: dir.into(), source })?;
    let mut tmp = tmp;
    tmp.keep = true;
    sync_dir(dir.parent().unwrap_or(Path::new(".")))
}

#[cfg(test)]
mod tests;
