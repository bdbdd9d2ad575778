//! The request audit log: one JSON line per request (hashes and metadata, never a
//! prompt or an answer), each naming the SHA-256 of the line before it, with
//! checkpoints signed by the runtime key. `veil audit verify LOG` checks it
//! ([`verify_log`]) and names the first broken record.
//!
//! ```text
//!   {"seq":0,"type":"genesis","time":…,"prev":"00…00","jwk":{…runtime key…}}
//!   {"seq":1,"type":"receipt","time":…,"prev":H(line 0),"model":…,"manifest":…,"id":…,"req":…,"resp":…,"caller":"key:alice"}
//!   {"seq":2,"type":"request","time":…,"prev":H(line 1),"path":"/v1/models","status":200}
//!   {"seq":3,"type":"checkpoint","time":…,"prev":H(line 2),"sig":"<b64url ES256>"}
//! ```
//!
//! - `prev` is the lower-case hex SHA-256 of the previous line's exact bytes (without
//!   its newline); the first line's is 64 zeros. `seq` counts lines from 0.
//! - `receipt` records carry the same `seq` as the receipt the client got, and its `req`
//!   and `resp` hashes, and the caller's label: `key:<name>` for a named `[[api.keys]]`
//!   entry, `key:<first 12 hex of the key's SHA-256>` for one from `key_hashes`,
//!   `cert:<first 16 hex of the client certificate's SHA-256>`, or `addr:<IP>` when the
//!   API runs without credentials; `request` records cover every other answer (refusals
//!   included).
//! - A `genesis` record starts each run of the runtime, with its key (a fresh one per
//!   boot); a restarted runtime appends to the same file, chained to the last line.
//! - A `checkpoint` signs `"veil-audit-checkpoint/v1" ‖ 0x00 ‖ seq (8 bytes, big-endian)
//!   ‖ prev (32 bytes)` with ES256 (P1363) under the key of the current genesis: one
//!   signature covers every line before it. Checkpoints are written every
//!   [`CHECKPOINT_EVERY`] records, on the runtime's timer, and at shutdown, and are
//!   `fdatasync`ed.
//!
//! What it does not prove: that the tail after the last checkpoint is complete (the host
//! can cut it off, or the whole file): anchor checkpoint hashes elsewhere for that.
//! Times are the runtime's clock, informative only.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::Path;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, UnparsedPublicKey};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

/// A checkpoint is written after this many records.
pub const CHECKPOINT_EVERY: u64 = 256;
/// Domain separation of checkpoint signatures.
pub const CHECKPOINT_DOMAIN: &[u8] = b"veil-audit-checkpoint/v1";
/// The longest line [`verify_log`] accepts.
pub const MAX_LINE: usize = 64 * 1024;

/// Why the log could not be written.
#[derive(Debug, thiserror::Error)]
#[error("audit log: {0}")]
pub struct AuditError(String);

fn aerr(m: impl std::fmt::Display) -> AuditError {
    AuditError(m.to_string())
}

struct State {
    file: File,
    /// Bytes of complete records in `file`.
    len: u64,
    seq: u64,
    head: [u8; 32],
    since_checkpoint: u64,
    /// Why the log stopped taking records. Once a write or sync has failed the log
    /// refuses every later record (until the runtime restarts): the runtime then
    /// answers nothing rather than answer without a record.
    failed: Option<String>,
}

/// The runtime's audit log writer.
pub struct AuditLog {
    state: Mutex<State>,
    key: EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn checkpoint_message(seq: u64, prev: &[u8; 32]) -> Vec<u8> {
    let mut m = CHECKPOINT_DOMAIN.to_vec();
    m.push(0);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(prev);
    m
}

/// The last complete line of `file` and the file length up to its newline, from a
/// window at the end (a line is at most [`MAX_LINE`] bytes). `None` when the file holds
/// no complete line. A partial line after it (a crash mid-write) is not included.
fn last_line(file: &mut File) -> Result<Option<(Vec<u8>, u64)>, AuditError> {
    let len = file.metadata().map_err(aerr)?.len();
    let window = len.min(u64::try_from(MAX_LINE.saturating_mul(2).saturating_add(2)).map_err(aerr)?);
    let from = len.saturating_sub(window);
    let mut tail = vec![0u8; usize::try_from(window).map_err(aerr)?];
    file.seek(SeekFrom::Start(from)).map_err(aerr)?;
    file.read_exact(&mut tail).map_err(aerr)?;
    let Some(nl) = tail.iter().rposition(|b| *b == b'\n') else {
        return if from == 0 { Ok(None) } else { Err(aerr("the log ends in an over-long line")) };
    };
    let complete = tail.get(..nl).unwrap_or_default();
    let start = match complete.iter().rposition(|b| *b == b'\n') {
        Some(j) => j.saturating_add(1),
        None if from == 0 => 0,
        None => return Err(aerr("the log ends in an over-long line")),
    };
    let line = complete.get(start..).unwrap_or_default().to_vec();
    Ok(Some((line, from.saturating_add(nl as u64).saturating_add(1))))
}

impl AuditLog {
    /// Opens (or creates) the log at `path` and appends a genesis record naming the
    /// runtime key `jwk` (whose PKCS#8 private key signs the checkpoints). An existing
    /// log is continued: the genesis record chains to its last complete line; a partial
    /// last line left by a crash is cut off first (it was never acknowledged).
    pub fn open(path: &Path, pkcs8: &[u8], jwk: &veil_kbs::TeePubKey) -> Result<Self, AuditError> {
        Self::open_inner(path, pkcs8, jwk).map_err(|e| AuditError(format!("{}: {}", path.display(), e.0)))
    }

    fn open_inner(path: &Path, pkcs8: &[u8], jwk: &veil_kbs::TeePubKey) -> Result<Self, AuditError> {
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|_| aerr("the runtime key is not a P-256 PKCS#8 key"))?;
        let mut file = OpenOptions::new().read(true).append(true).create(true).open(path).map_err(aerr)?;
        let (seq, head, len) = match last_line(&mut file)? {
            None => {
                file.set_len(0).map_err(aerr)?;
                (0, [0u8; 32], 0)
            }
            Some((line, end)) => {
                if end < file.metadata().map_err(aerr)?.len() {
                    tracing::warn!(path = %path.display(), "audit log: cutting off a partial last record");
                    file.set_len(end).map_err(aerr)?;
                }
                let v: Value = serde_json::from_slice(&line).map_err(|e| aerr(format!("last record: {e}")))?;
                let last = v.get("seq").and_then(Value::as_u64).ok_or_else(|| aerr("last record has no seq"))?;
                (last.saturating_add(1), Sha256::digest(&line).into(), end)
            }
        };
        let state = State { file, len, seq, head, since_checkpoint: 0, failed: None };
        let log = Self { state: Mutex::new(state), key, rng };
        let mut genesis = Map::new();
        genesis.insert("type".into(), json!("genesis"));
        genesis.insert("jwk".into(), serde_json::to_value(jwk).map_err(aerr)?);
        log.append(genesis)?;
        log.checkpoint()?;
        Ok(log)
    }

    /// Marks the log failed (logged once) and returns the error.
    fn fail(st: &mut State, what: &str, e: &std::io::Error) -> AuditError {
        let why = format!("{what}: {e}");
        tracing::error!(error = %why, "audit log: cannot write; refusing every request from now on");
        st.failed = Some(why.clone());
        aerr(why)
    }

    fn write_locked(&self, st: &mut State, mut rec: Map<String, Value>) -> Result<u64, AuditError> {
        if let Some(why) = &st.failed {
            return Err(aerr(format!("stopped after an earlier failure ({why})")));
        }
        let seq = st.seq;
        let mut line = Map::new();
        line.insert("seq".into(), json!(seq));
        line.insert("type".into(), rec.remove("type").unwrap_or(json!("request")));
        line.insert("time".into(), json!(now()));
        line.insert("prev".into(), json!(hex::encode(st.head)));
        line.extend(rec);
        let mut bytes = serde_json::to_vec(&line).map_err(aerr)?;
        let head = Sha256::digest(&bytes).into();
        bytes.push(b'\n');
        if let Err(e) = st.file.write_all(&bytes) {
            // Take back whatever part of the line reached the file, so the log stays a
            // chain of whole records (best effort: the next open cuts a partial line too).
            let _ = st.file.set_len(st.len);
            return Err(Self::fail(st, "writing a record", &e));
        }
        st.len = st.len.saturating_add(bytes.len() as u64);
        st.head = head;
        st.seq = seq.saturating_add(1);
        Ok(seq)
    }

    /// Points the log at `/dev/full`, so its next write fails as on a full disk.
    #[cfg(test)]
    pub(crate) fn fill_disk_for_test(&self) {
        if let (Ok(mut st), Ok(full)) = (self.state.lock(), OpenOptions::new().append(true).open("/dev/full")) {
            st.file = full;
        }
    }

    /// Why the log stopped taking records, if it did.
    pub fn failure(&self) -> Option<String> {
        match self.state.lock() {
            Ok(st) => st.failed.clone(),
            Err(_) => Some("lock poisoned".into()),
        }
    }

    /// Appends a record (its `type` and fields; `seq`, `time` and `prev` are set here)
    /// and returns its sequence number. Writes a checkpoint every [`CHECKPOINT_EVERY`].
    pub fn append(&self, rec: Map<String, Value>) -> Result<u64, AuditError> {
        let mut st = self.state.lock().map_err(|_| aerr("lock poisoned"))?;
        let seq = self.write_locked(&mut st, rec)?;
        st.since_checkpoint = st.since_checkpoint.saturating_add(1);
        if st.since_checkpoint >= CHECKPOINT_EVERY {
            self.checkpoint_locked(&mut st)?;
        }
        Ok(seq)
    }

    fn checkpoint_locked(&self, st: &mut State) -> Result<(), AuditError> {
        let sig = self
            .key
            .sign(&self.rng, &checkpoint_message(st.seq, &st.head))
            .map_err(|_| aerr("signing a checkpoint failed"))?;
        let mut rec = Map::new();
        rec.insert("type".into(), json!("checkpoint"));
        rec.insert("sig".into(), json!(URL_SAFE_NO_PAD.encode(sig.as_ref())));
        self.write_locked(st, rec)?;
        if let Err(e) = st.file.sync_data() {
            return Err(Self::fail(st, "syncing a checkpoint", &e));
        }
        st.since_checkpoint = 0;
        Ok(())
    }

    /// Signs everything written so far, unless nothing was written since the last
    /// checkpoint.
    pub fn checkpoint(&self) -> Result<(), AuditError> {
        let mut st = self.state.lock().map_err(|_| aerr("lock poisoned"))?;
        if st.since_checkpoint == 0 && st.seq > 0 {
            return Ok(());
        }
        self.checkpoint_locked(&mut st)
    }
}

/// What a verified log holds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogSummary {
    /// Lines.
    pub records: u64,
    /// Runtime runs (genesis records).
    pub runs: u64,
    /// Signed checkpoints.
    pub checkpoints: u64,
    /// Records after the last checkpoint: chained, but not signed.
    pub unsigned_tail: u64,
    /// The key of the last run.
    pub last_key: Option<veil_kbs::TeePubKey>,
}

/// The first broken record: its line (from 1), and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record at line {line}: {reason}")]
pub struct BrokenRecord {
    /// The line, counted from 1.
    pub line: u64,
    /// What is wrong.
    pub reason: String,
}

/// The uncompressed P-256 point of a JWK (to compare with a certificate's key).
pub fn jwk_point(jwk: &veil_kbs::TeePubKey) -> Option<Vec<u8>> {
    let veil_kbs::TeePubKey::EC { crv, x, y, .. } = jwk else { return None };
    if crv != "P-256" {
        return None;
    }
    let mut p = vec![4u8];
    p.extend(URL_SAFE_NO_PAD.decode(x).ok()?);
    p.extend(URL_SAFE_NO_PAD.decode(y).ok()?);
    (p.len() == 65).then_some(p)
}

/// Checks a whole log: every line JSON with `seq` counting from 0, `prev` the hash of
/// the line before (zeros for the first), the first record a genesis, and every
/// checkpoint's signature valid under the key of the run it belongs to. Returns the
/// first broken record.
pub fn verify_log(bytes: &[u8]) -> Result<LogSummary, BrokenRecord> {
    let mut s = LogSummary { records: 0, runs: 0, checkpoints: 0, unsigned_tail: 0, last_key: None };
    let mut prev = [0u8; 32];
    let mut key: Option<Vec<u8>> = None;
    let body = match bytes.strip_suffix(b"\n") {
        Some(b) => b,
        None if bytes.is_empty() => return Err(BrokenRecord { line: 1, reason: "the log is empty".into() }),
        None => bytes,
    };
    for (i, line) in body.split(|b| *b == b'\n').enumerate() {
        let n = i as u64;
        let broken = |reason: String| BrokenRecord { line: n.saturating_add(1), reason };
        if line.len() > MAX_LINE {
            return Err(broken(format!("{} bytes, more than {MAX_LINE}", line.len())));
        }
        let v: Map<String, Value> =
            serde_json::from_slice(line).map_err(|e| broken(format!("not a JSON object: {e}")))?;
        let seq = v.get("seq").and_then(Value::as_u64).ok_or_else(|| broken("no seq".into()))?;
        if seq != n {
            return Err(broken(format!("seq {seq}, expected {n} (a record was removed or inserted)")));
        }
        let p = v.get("prev").and_then(Value::as_str).ok_or_else(|| broken("no prev".into()))?;
        if !p.eq(&hex::encode(prev)) {
            return Err(broken("prev is not the hash of the line before (that line or this one was altered)".into()));
        }
        let ty = v.get("type").and_then(Value::as_str).ok_or_else(|| broken("no type".into()))?;
        if n == 0 && ty != "genesis" {
            return Err(broken("the first record is not a genesis record".into()));
        }
        match ty {
            "genesis" => {
                let jwk: veil_kbs::TeePubKey = serde_json::from_value(v.get("jwk").cloned().unwrap_or(Value::Null))
                    .map_err(|_| broken("genesis without a key".into()))?;
                key = Some(jwk_point(&jwk).ok_or_else(|| broken("genesis key is not a P-256 JWK".into()))?);
                s.last_key = Some(jwk);
                s.runs = s.runs.saturating_add(1);
                s.unsigned_tail = s.unsigned_tail.saturating_add(1);
            }
            "checkpoint" => {
                let sig = v
                    .get("sig")
                    .and_then(Value::as_str)
                    .and_then(|x| URL_SAFE_NO_PAD.decode(x).ok())
                    .ok_or_else(|| broken("checkpoint without a signature".into()))?;
                let k = key.as_deref().ok_or_else(|| broken("checkpoint before any genesis".into()))?;
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, k)
                    .verify(&checkpoint_message(seq, &prev), &sig)
                    .map_err(|_| broken("checkpoint signature does not verify with the run's key".into()))?;
                s.checkpoints = s.checkpoints.saturating_add(1);
                s.unsigned_tail = 0;
            }
            "receipt" | "request" => s.unsigned_tail = s.unsigned_tail.saturating_add(1),
            other => return Err(broken(format!("unknown record type {other:?}"))),
        }
        prev = Sha256::digest(line).into();
        s.records = n.saturating_add(1);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ty: &str, n: u64) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("type".into(), json!(ty));
        m.insert("req".into(), json!(format!("{n:064x}")));
        m
    }

    #[test]
    fn a_failed_write_stops_the_log_and_leaves_whole_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let k = crate::serve::RuntimeKey::generate().unwrap();
        let log = AuditLog::open(&path, k.pkcs8(), &k.jwk).unwrap();
        assert_eq!(log.append(rec("receipt", 1)).unwrap(), 2);
        assert_eq!(log.failure(), None);
        // The disk fills: every write fails with ENOSPC.
        let full = OpenOptions::new().append(true).open("/dev/full").unwrap();
        let good = std::mem::replace(&mut log.state.lock().unwrap().file, full);
        let e = log.append(rec("receipt", 2)).unwrap_err().to_string();
        assert!(e.contains("writing a record") && e.contains("No space left"), "{e}");
        assert!(log.failure().unwrap().contains("No space left"));
        // Space comes back: the log still refuses, and says why.
        log.state.lock().unwrap().file = good;
        let e = log.append(rec("receipt", 3)).unwrap_err().to_string();
        assert!(e.contains("stopped after an earlier failure") && e.contains("No space left"), "{e}");
        assert!(log.checkpoint().is_err());
        // What reached the file is a whole chain, without the failed record.
        drop(log);
        let s = verify_log(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(s.records, 3);
        // A partial line (a write cut short) is taken back.
        let k2 = crate::serve::RuntimeKey::generate().unwrap();
        let log = AuditLog::open(&path, k2.pkcs8(), &k2.jwk).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        {
            let mut st = log.state.lock().unwrap();
            st.file.write_all(b"{\"seq\":99,\"partial").unwrap();
            let ro = File::open(&path).unwrap(); // read-only: the next write fails
            st.file = ro;
        }
        assert!(log.append(rec("receipt", 4)).is_err());
        drop(log);
        // The read-only handle could not cut the partial line; the next open does.
        let log = AuditLog::open(&path, k2.pkcs8(), &k2.jwk).unwrap();
        drop(log);
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() as u64 > len);
        assert_eq!(verify_log(&bytes).unwrap().runs, 3);
    }

    #[test]
    fn a_log_verifies_and_any_edit_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let k = crate::serve::RuntimeKey::generate().unwrap();
        let log = AuditLog::open(&path, k.pkcs8(), &k.jwk).unwrap();
        for n in 0..5 {
            assert_eq!(log.append(rec("receipt", n)).unwrap(), n + 2);
        }
        log.checkpoint().unwrap();
        log.append(rec("request", 9)).unwrap();
        drop(log);
        let bytes = std::fs::read(&path).unwrap();
        let s = verify_log(&bytes).unwrap();
        assert_eq!((s.records, s.runs, s.checkpoints, s.unsigned_tail), (9, 1, 2, 1));
        assert_eq!(serde_json::to_value(&s.last_key).unwrap(), serde_json::to_value(&k.jwk).unwrap());
        // A restarted runtime continues the chain with its own key.
        let k2 = crate::serve::RuntimeKey::generate().unwrap();
        let log = AuditLog::open(&path, k2.pkcs8(), &k2.jwk).unwrap();
        log.append(rec("receipt", 10)).unwrap();
        log.checkpoint().unwrap();
        drop(log);
        let bytes = std::fs::read(&path).unwrap();
        let s = verify_log(&bytes).unwrap();
        assert_eq!((s.records, s.runs, s.unsigned_tail), (13, 2, 0));
        assert_eq!(serde_json::to_value(&s.last_key).unwrap(), serde_json::to_value(&k2.jwk).unwrap());

        let lines: Vec<&[u8]> = bytes.strip_suffix(b"\n").unwrap().split(|b| *b == b'\n').collect();
        let join = |ls: &[Vec<u8>]| {
            let mut out = ls.join(&b'\n');
            out.push(b'\n');
            out
        };
        let owned: Vec<Vec<u8>> = lines.iter().map(|l| l.to_vec()).collect();
        // A changed hash in record 4 (line 4): the next line's prev no longer matches.
        let mut edited = owned.clone();
        edited[3] = String::from_utf8(edited[3].clone()).unwrap().replace("\"req\":\"0", "\"req\":\"1").into_bytes();
        let e = verify_log(&join(&edited)).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        // A removed record.
        let mut removed = owned.clone();
        removed.remove(4);
        let e = verify_log(&join(&removed)).unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        assert!(e.reason.contains("seq"), "{e}");
        // A forged checkpoint (signature of another line).
        let mut forged = owned.clone();
        let sig_line = forged.iter().position(|l| l.windows(10).any(|w| w == b"checkpoint")).unwrap();
        let other_sig = {
            let v: Value = serde_json::from_slice(&forged[7]).unwrap();
            v["sig"].as_str().unwrap().to_owned()
        };
        let mut v: Map<String, Value> = serde_json::from_slice(&forged[sig_line]).unwrap();
        assert_ne!(v["sig"], json!(other_sig));
        v.insert("sig".into(), json!(other_sig));
        forged[sig_line] = serde_json::to_vec(&v).unwrap();
        // (re-chaining the following lines is what a forger would have to do; the
        // signature check fails first)
        let e = verify_log(&join(&forged[..=sig_line])).unwrap_err();
        assert!(e.reason.contains("signature"), "{e}");
        // Garbage, an empty log, a log not starting with genesis.
        assert!(verify_log(b"").is_err());
        assert_eq!(verify_log(b"{\n").unwrap_err().line, 1);
        assert!(verify_log(&join(&owned[1..])).is_err());
    }

    #[test]
    fn a_partial_last_line_is_cut_off_when_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let k = crate::serve::RuntimeKey::generate().unwrap();
        let log = AuditLog::open(&path, k.pkcs8(), &k.jwk).unwrap();
        log.append(rec("receipt", 1)).unwrap();
        drop(log);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":3,\"type\":\"rec").unwrap();
        drop(f);
        let log = AuditLog::open(&path, k.pkcs8(), &k.jwk).unwrap();
        log.checkpoint().unwrap();
        drop(log);
        verify_log(&std::fs::read(&path).unwrap()).unwrap();
    }
}
