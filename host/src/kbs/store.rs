//! The broker's store: an embedded redb database. Every change is one ACID write
//! transaction committed durably before it is acknowledged, so a `kill -9` at any moment
//! loses no acknowledged write and never leaves half of one. Resource values are
//! encrypted at rest with AES-256-GCM under the key-encryption key (KEK), bound to their
//! path; no plaintext key is ever written. Every change and every release decision is
//! appended to a hash-chained audit log in the same transaction.

use std::path::Path;

use aws_lc_rs::{aead, digest};
use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

const RESOURCES: TableDefinition<&str, &[u8]> = TableDefinition::new("resources");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const REVOKED: TableDefinition<&str, u64> = TableDefinition::new("revoked");
const AUDIT: TableDefinition<u64, &str> = TableDefinition::new("audit");

/// Meta keys.
pub const RESOURCE_POLICY: &str = "resource_policy";
/// Meta keys.
pub const ATTESTATION_POLICY: &str = "attestation_policy";
/// Meta keys.
pub const REFERENCE: &str = "reference_values";
const AUDIT_HEAD: &str = "audit_head";

const AAD_LABEL: &[u8] = b"veil-kbs resource v1\0";

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("store: {0}")]
    Db(String),
    /// A stored value failed authentication under the KEK (wrong KEK or tampering).
    #[error("store: resource {0} does not decrypt under this KEK")]
    Decrypt(String),
}

fn db<E: std::fmt::Display>(e: E) -> StoreError {
    StoreError::Db(e.to_string())
}

/// One audit entry.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuditEntry {
    /// Sequence number from 1.
    pub seq: u64,
    /// Unix seconds.
    pub time: u64,
    /// What happened (`register`, `revoke`, `set-policy`, `release`, `deny`, ...).
    pub event: String,
    /// The subject (a resource path, a digest, a policy name, a session).
    pub subject: String,
    /// Outcome details (never a secret).
    pub detail: String,
    /// Hex SHA-256 of the previous entry's `hash` (zeros for the first).
    pub prev: String,
    /// Hex SHA-256 over `prev` and this entry's other fields.
    pub hash: String,
}

fn entry_hash(e: &AuditEntry) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for part in [
        e.prev.as_bytes(),
        &e.seq.to_be_bytes(),
        &e.time.to_be_bytes(),
        e.event.as_bytes(),
        e.subject.as_bytes(),
        e.detail.as_bytes(),
    ] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    hex::encode(ctx.finish().as_ref())
}

/// The store.
pub struct Store {
    db: Database,
    kek: aead::LessSafeKey,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Store {
    /// Opens (or creates) the store at `path` with a 32-byte KEK.
    pub fn open(path: &Path, kek: &Zeroizing<[u8; 32]>) -> Result<Self, StoreError> {
        let database = Database::create(path).map_err(db)?;
        let key =
            aead::UnboundKey::new(&aead::AES_256_GCM, kek.as_slice()).map_err(|_| StoreError::Db("KEK".into()))?;
        let s = Self { db: database, kek: aead::LessSafeKey::new(key) };
        // Create the tables so that readers never meet a missing one.
        let tx = s.db.begin_write().map_err(db)?;
        {
            tx.open_table(RESOURCES).map_err(db)?;
            tx.open_table(META).map_err(db)?;
            tx.open_table(REVOKED).map_err(db)?;
            tx.open_table(AUDIT).map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(s)
    }

    fn seal(&self, path: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; 12];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| StoreError::Db("randomness".into()))?;
        let mut out = value.to_vec();
        let aad = [AAD_LABEL, path.as_bytes()].concat();
        let tag = self
            .kek
            .seal_in_place_separate_tag(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(aad), &mut out)
            .map_err(|_| StoreError::Db("encrypt".into()))?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&out);
        sealed.extend_from_slice(tag.as_ref());
        Ok(sealed)
    }

    fn open_value(&self, path: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let (nonce, rest) = sealed.split_at_checked(12).ok_or_else(|| StoreError::Decrypt(path.into()))?;
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| StoreError::Decrypt(path.into()))?;
        let mut buf = Zeroizing::new(rest.to_vec());
        let aad = [AAD_LABEL, path.as_bytes()].concat();
        let n = self
            .kek
            .open_in_place(aead::Nonce::assume_unique_for_key(nonce), aead::Aad::from(aad), &mut buf)
            .map_err(|_| StoreError::Decrypt(path.into()))?
            .len();
        buf.truncate(n);
        Ok(buf)
    }

    fn audit_in(
        tx: &redb::WriteTransaction,
        event: &str,
        subject: &str,
        detail: &str,
    ) -> Result<AuditEntry, StoreError> {
        let mut meta = tx.open_table(META).map_err(db)?;
        let prev = meta.get(AUDIT_HEAD).map_err(db)?.map(|v| v.value().to_owned()).unwrap_or_else(|| "0".repeat(64));
        let mut audit = tx.open_table(AUDIT).map_err(db)?;
        let seq = audit.last().map_err(db)?.map_or(0, |(k, _)| k.value()).saturating_add(1);
        let mut e = AuditEntry {
            seq,
            time: now(),
            event: event.into(),
            subject: subject.into(),
            detail: detail.into(),
            prev,
            hash: String::new(),
        };
        e.hash = entry_hash(&e);
        let line = serde_json::to_string(&e).map_err(db)?;
        audit.insert(seq, line.as_str()).map_err(db)?;
        meta.insert(AUDIT_HEAD, e.hash.as_str()).map_err(db)?;
        Ok(e)
    }

    /// Stores a resource (encrypted) and audits it, durably, in one transaction.
    pub fn put_resource(&self, path: &str, value: &[u8]) -> Result<(), StoreError> {
        let sealed = self.seal(path, value)?;
        let tx = self.db.begin_write().map_err(db)?;
        {
            let mut t = tx.open_table(RESOURCES).map_err(db)?;
            t.insert(path, sealed.as_slice()).map_err(db)?;
        }
        Self::audit_in(&tx, "register", path, &format!("{} bytes", value.len()))?;
        tx.commit().map_err(db)
    }

    /// A resource's plaintext, if registered.
    pub fn resource(&self, path: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(RESOURCES).map_err(db)?;
        let Some(v) = t.get(path).map_err(db)? else { return Ok(None) };
        self.open_value(path, v.value()).map(Some)
    }

    /// Registered resource paths.
    pub fn resource_paths(&self) -> Result<Vec<String>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(RESOURCES).map_err(db)?;
        t.iter().map_err(db)?.map(|r| r.map(|(k, _)| k.value().to_owned()).map_err(db)).collect()
    }

    /// Sets a meta value (a policy, the reference values) and audits it.
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        {
            let mut t = tx.open_table(META).map_err(db)?;
            t.insert(key, value).map_err(db)?;
        }
        let d = hex::encode(digest::digest(&digest::SHA256, value.as_bytes()).as_ref());
        Self::audit_in(&tx, "set", key, &format!("sha256 {d}"))?;
        tx.commit().map_err(db)
    }

    /// A meta value.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(META).map_err(db)?;
        Ok(t.get(key).map_err(db)?.map(|v| v.value().to_owned()))
    }

    /// Revokes a model manifest digest (hex) and audits it.
    pub fn revoke(&self, digest_hex: &str) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        {
            let mut t = tx.open_table(REVOKED).map_err(db)?;
            t.insert(digest_hex, now()).map_err(db)?;
        }
        Self::audit_in(&tx, "revoke", digest_hex, "")?;
        tx.commit().map_err(db)
    }

    /// The revoked digests.
    pub fn revoked(&self) -> Result<Vec<String>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(REVOKED).map_err(db)?;
        t.iter().map_err(db)?.map(|r| r.map(|(k, _)| k.value().to_owned()).map_err(db)).collect()
    }

    /// Appends a decision to the audit log.
    pub fn audit(&self, event: &str, subject: &str, detail: &str) -> Result<AuditEntry, StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        let e = Self::audit_in(&tx, event, subject, detail)?;
        tx.commit().map_err(db)?;
        Ok(e)
    }

    /// Appends several decisions in one transaction: one durable commit for the batch.
    pub fn audit_batch<'a>(
        &self,
        records: impl IntoIterator<Item = (&'a str, &'a str, &'a str)>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        let mut out = Vec::new();
        for (event, subject, detail) in records {
            out.push(Self::audit_in(&tx, event, subject, detail)?);
        }
        tx.commit().map_err(db)?;
        Ok(out)
    }

    /// The last `limit` audit entries, oldest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(AUDIT).map_err(db)?;
        let mut out: Vec<AuditEntry> = Vec::new();
        for r in t.iter().map_err(db)?.rev().take(limit) {
            let (_, v) = r.map_err(db)?;
            out.push(serde_json::from_str(v.value()).map_err(db)?);
        }
        out.reverse();
        Ok(out)
    }

    /// Checks the whole audit chain; returns the number of entries.
    pub fn verify_audit(&self) -> Result<u64, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let t = tx.open_table(AUDIT).map_err(db)?;
        let mut prev = "0".repeat(64);
        let mut n = 0u64;
        for r in t.iter().map_err(db)? {
            let (k, v) = r.map_err(db)?;
            let e: AuditEntry = serde_json::from_str(v.value()).map_err(db)?;
            if e.seq != k.value() || e.prev != prev || entry_hash(&e) != e.hash {
                return Err(StoreError::Db(format!("audit chain broken at entry {}", k.value())));
            }
            prev = e.hash;
            n = n.saturating_add(1);
        }
        Ok(n)
    }
}

/// The most records one group commit takes.
const AUDIT_BATCH: usize = 256;

/// A waiting audit record.
struct PendingAudit {
    event: String,
    subject: String,
    detail: String,
    done: tokio::sync::oneshot::Sender<Result<AuditEntry, StoreError>>,
}

/// Group commit for decision records: one thread owns the writes, takes every record
/// queued while the previous commit was syncing, and commits them as one durable
/// transaction. A caller's `append` returns only once its record is on disk (or with
/// the error), so "no release without an audit record" holds, while concurrent
/// decisions share one fsync and no async worker ever blocks on the disk.
#[derive(Debug, Clone)]
pub struct AuditWriter {
    queue: std::sync::mpsc::SyncSender<PendingAudit>,
}

impl std::fmt::Debug for PendingAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAudit").field("event", &self.event).finish_non_exhaustive()
    }
}

impl AuditWriter {
    /// Starts the writer thread over `store`. It ends when every `AuditWriter` clone
    /// is dropped.
    pub fn start(store: std::sync::Arc<Store>) -> std::io::Result<Self> {
        let (queue, rx) = std::sync::mpsc::sync_channel::<PendingAudit>(4 * AUDIT_BATCH);
        std::thread::Builder::new().name("veil-kbs-audit".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                let mut batch = vec![first];
                while batch.len() < AUDIT_BATCH {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let result =
                    store.audit_batch(batch.iter().map(|p| (p.event.as_str(), p.subject.as_str(), p.detail.as_str())));
                match result {
                    Ok(entries) => {
                        for (p, e) in batch.into_iter().zip(entries) {
                            let _ = p.done.send(Ok(e));
                        }
                    }
                    Err(e) => {
                        let msg = e.to_string();
                        for p in batch {
                            let _ = p.done.send(Err(StoreError::Db(msg.clone())));
                        }
                    }
                }
            }
        })?;
        Ok(Self { queue })
    }

    /// Appends a record; returns once it is durable.
    pub async fn append(&self, event: &str, subject: &str, detail: &str) -> Result<AuditEntry, StoreError> {
        let (done, wait) = tokio::sync::oneshot::channel();
        let p = PendingAudit { event: event.into(), subject: subject.into(), detail: detail.into(), done };
        // The queue is bounded: when the disk falls behind, callers wait here (on a
        // blocking-aware thread) rather than queueing without limit.
        let stopped = || StoreError::Db("the audit writer has stopped".into());
        match self.queue.try_send(p) {
            Ok(()) => {}
            Err(std::sync::mpsc::TrySendError::Full(p)) => {
                let queue = self.queue.clone();
                tokio::task::spawn_blocking(move || queue.send(p))
                    .await
                    .map_err(|_| StoreError::Db("audit writer task failed".into()))?
                    .map_err(|_| stopped())?;
            }
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return Err(stopped()),
        }
        wait.await.map_err(|_| stopped())?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kek(b: u8) -> Zeroizing<[u8; 32]> {
        Zeroizing::new([b; 32])
    }

    #[test]
    fn resources_are_encrypted_bound_and_audited() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.redb");
        let s = Store::open(&p, &kek(1)).unwrap();
        s.put_resource("veil/model-key/ab", b"SECRET-KEY-BYTES-0123456789abcdef").unwrap();
        assert_eq!(s.resource("veil/model-key/ab").unwrap().unwrap().as_slice(), b"SECRET-KEY-BYTES-0123456789abcdef");
        assert!(s.resource("veil/model-key/cd").unwrap().is_none());
        s.revoke("ab").unwrap();
        s.set_meta(REFERENCE, "{}").unwrap();
        assert_eq!(s.revoked().unwrap(), ["ab"]);
        assert_eq!(s.verify_audit().unwrap(), 3);
        assert_eq!(s.recent(2).unwrap().iter().map(|e| e.event.as_str()).collect::<Vec<_>>(), ["revoke", "set"]);
        drop(s);
        // Never in plaintext on disk.
        let raw = std::fs::read(&p).unwrap();
        assert!(!raw.windows(16).any(|w| w == b"SECRET-KEY-BYTES"));
        // A wrong KEK cannot read it.
        let s = Store::open(&p, &kek(2)).unwrap();
        assert!(matches!(s.resource("veil/model-key/ab"), Err(StoreError::Decrypt(_))));
    }
}
