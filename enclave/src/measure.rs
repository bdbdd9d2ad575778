//! Measured boot for the runtime: every identity-bearing thing the runtime loads after
//! launch (its binary, its configuration, each model's manifest digest, signer and card
//! digest) is recorded as a [`veil_attestation::runtime_log::Event`] and extended into
//! the runtime measurement registers the platform has, *before* it is used.
//!
//! ```text
//!   Measurer::record(type, content)
//!     for each register backend:  digest = H("veil-runtime-event/v1" ‖ 0 ‖ type ‖ 0 ‖ content)
//!        TDX   ─► rtmr3:sha384 measurement file (kernel)  or the in-process simulator
//!        TPM   ─► PCR 23, SHA-256 bank (TPM2_PCR_Extend)
//!     append the event to the log (one JSON line per event and register)
//! ```
//!
//! A relying party replays the log against the register values of *verified* evidence
//! ([`veil_attestation::runtime_log::RuntimeLog::verify`]) before it trusts any event.
//! On SEV-SNP without a TPM there is no runtime register: the log then travels in the
//! evidence's `additional-evidence`, which the report data binds, so it is as trustworthy
//! as the launch-measured runtime that wrote it, and no more.
//!
//! The order is extend-then-append: if an extend fails the runtime refuses to go on
//! (a register that misses an event makes the log unverifiable, and a log that lists an
//! event the register does not hold would be a lie).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use veil_attestation::runtime_log::{Event, Register, RuntimeLog};

use crate::error::{AttestError, Result};
use crate::tpm::TpmAttester;

/// A runtime measurement register this process can extend.
pub trait RegisterBackend: Send + Sync {
    /// Which register (decides the event digest's hash).
    fn register(&self) -> Register;
    /// Extends the register with `digest` (its bank's length).
    fn extend(&self, digest: &[u8]) -> Result<()>;
    /// The register's current value.
    fn read(&self) -> Result<Vec<u8>>;
}

/// TDX RTMR through the kernel's measurement files ([`crate::rtmr`]).
#[derive(Debug)]
pub struct KernelRtmr {
    /// The measurements directory.
    pub dir: PathBuf,
    /// The RTMR (Veil uses 3).
    pub index: u8,
}

impl RegisterBackend for KernelRtmr {
    fn register(&self) -> Register {
        Register::Rtmr(self.index)
    }
    fn extend(&self, digest: &[u8]) -> Result<()> {
        let d: &[u8; crate::rtmr::RTMR_LEN] = digest.try_into().map_err(|_| AttestError::InvalidArgument {
            what: "RTMR digest",
            detail: format!("{} bytes, expected 48", digest.len()),
        })?;
        crate::rtmr::extend(&self.dir, self.index, d)
    }
    fn read(&self) -> Result<Vec<u8>> {
        crate::rtmr::read(&self.dir, self.index).map(|v| v.to_vec())
    }
}

/// A TPM PCR of the SHA-256 bank.
#[derive(Debug)]
pub struct TpmPcr {
    /// The TPM.
    pub tpm: Arc<TpmAttester>,
    /// The PCR (Veil uses 23).
    pub index: u8,
}

impl RegisterBackend for TpmPcr {
    fn register(&self) -> Register {
        Register::Pcr(self.index)
    }
    fn extend(&self, digest: &[u8]) -> Result<()> {
        let d: &[u8; 32] = digest.try_into().map_err(|_| AttestError::InvalidArgument {
            what: "PCR digest",
            detail: format!("{} bytes, expected 32", digest.len()),
        })?;
        self.tpm.extend(self.index, d)
    }
    fn read(&self) -> Result<Vec<u8>> {
        let values = self.tpm.read_pcrs(&[self.index])?;
        values.get(&self.index).map(|v| v.to_vec()).ok_or_else(|| AttestError::InvalidArgument {
            what: "PCR read",
            detail: format!("PCR {} was not returned", self.index),
        })
    }
}

/// Records runtime events into every configured register and keeps the log.
pub struct Measurer {
    backends: Vec<Box<dyn RegisterBackend>>,
    log: Mutex<RuntimeLog>,
    /// Where the log is kept across restarts of the runtime within one boot of the CVM.
    file: Option<Mutex<std::fs::File>>,
}

impl std::fmt::Debug for Measurer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let regs: Vec<Register> = self.backends.iter().map(|b| b.register()).collect();
        f.debug_struct("Measurer").field("registers", &regs).finish_non_exhaustive()
    }
}

impl Measurer {
    /// A measurer over `backends` (none: events are only logged, as on SNP alone),
    /// keeping its log in memory only.
    pub fn new(backends: Vec<Box<dyn RegisterBackend>>) -> Self {
        Self { backends, log: Mutex::new(RuntimeLog::default()), file: None }
    }

    /// A measurer whose log is also kept in `path` (JSON lines, public), so a runtime
    /// restarted within one boot of the CVM — its registers still holding the earlier
    /// run's events — continues the same log instead of one that can never replay.
    ///
    /// At open: when every register is zero the CVM has just booted, and the log starts
    /// afresh (a saved one is from an earlier boot). Otherwise the saved log must replay
    /// exactly to every register's current value; if not, the registers hold events
    /// nobody can account for, and the runtime must not start (reboot the CVM to reset
    /// them, or restore the log). Without registers there is nothing to continue.
    pub fn open(backends: Vec<Box<dyn RegisterBackend>>, path: &Path) -> Result<Self> {
        let io = |op: &'static str| move |source| AttestError::Io { op, path: path.into(), source };
        let saved = if backends.is_empty() {
            RuntimeLog::default()
        } else {
            match std::fs::read(path) {
                Ok(bytes) => RuntimeLog::parse(&bytes).map_err(|e| AttestError::Malformed {
                    path: path.into(),
                    detail: format!("saved event log: {e}"),
                })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => RuntimeLog::default(),
                Err(e) => return Err(io("read")(e)),
            }
        };
        // Registers all at zero: a fresh boot of the CVM (registers reset); whatever log an
        // earlier boot left is stale and starts afresh.
        let mut current = Vec::with_capacity(backends.len());
        for b in &backends {
            current.push(b.read()?);
        }
        let fresh_boot = current.iter().all(|v| v.iter().all(|b| *b == 0));
        let saved = if fresh_boot { RuntimeLog::default() } else { saved };
        let replayed =
            saved.replay().map_err(|e| AttestError::Malformed { path: path.into(), detail: e.to_string() })?;
        let ours: Vec<Register> = backends.iter().map(|b| b.register()).collect();
        if let Some(r) = replayed.keys().find(|r| !ours.contains(r)) {
            return Err(AttestError::Malformed {
                path: path.into(),
                detail: format!("the saved event log names {}, which this runtime does not extend", String::from(*r)),
            });
        }
        for (b, current) in backends.iter().zip(current) {
            let reg = b.register();
            let want = replayed.get(&reg).cloned().unwrap_or_else(|| vec![0u8; reg.digest_len()]);
            if current != want {
                return Err(AttestError::Malformed {
                    path: path.into(),
                    detail: format!(
                        "{} holds {}, but the saved event log replays to {}: the register carries events this \
                         runtime has no record of; reboot the CVM (which resets it) or restore the log",
                        String::from(reg),
                        hex::encode(&current),
                        hex::encode(&want)
                    ),
                });
            }
        }
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io("open"))?;
        if backends.is_empty() || saved.events().is_empty() {
            file.set_len(0).map_err(io("truncate"))?;
        } else {
            tracing::info!(events = saved.events().len(), "continuing the saved event log of an earlier run");
        }
        let _ = std::io::Write::flush(&mut file);
        Ok(Self { backends, log: Mutex::new(saved), file: Some(Mutex::new(file)) })
    }

    fn persist(&self, ev: &Event) -> Result<()> {
        let Some(f) = &self.file else { return Ok(()) };
        let mut line = serde_json::to_vec(ev)
            .map_err(|e| AttestError::InvalidArgument { what: "event", detail: e.to_string() })?;
        line.push(b'\n');
        let mut f = f.lock().map_err(|_| AttestError::Poisoned)?;
        std::io::Write::write_all(&mut *f, &line).map_err(|source| AttestError::Io {
            op: "append to",
            path: "event log".into(),
            source,
        })
    }

    /// The registers extended.
    pub fn registers(&self) -> Vec<Register> {
        self.backends.iter().map(|b| b.register()).collect()
    }

    /// Extends every register with the event, then appends it to the log. The log lock
    /// is held across the extends so the log's order is the registers' order.
    pub fn record(&self, event_type: &str, content: &str) -> Result<()> {
        let mut log = self.log.lock().map_err(|_| AttestError::Poisoned)?;
        if self.backends.is_empty() {
            // No runtime register: the log is bound by the report data only. The
            // event names no register it was extended into, so record it against
            // the register a TDX guest would use, with digest for that bank.
            let ev = Event::new(Register::VEIL_RTMR, event_type, content);
            self.persist(&ev)?;
            log.push(ev);
            return Ok(());
        }
        for b in &self.backends {
            let ev = Event::new(b.register(), event_type, content);
            let digest = ev
                .digest_bytes()
                .map_err(|e| AttestError::InvalidArgument { what: "event digest", detail: e.to_string() })?;
            b.extend(&digest)?;
            // Extended: the event is a fact now, whether or not the file takes it.
            let saved = self.persist(&ev);
            log.push(ev);
            saved?;
        }
        Ok(())
    }

    /// Holds the log (no event can be recorded meanwhile) while evidence is produced, so
    /// the log handed out matches the registers the evidence reports.
    pub fn hold(&self) -> Result<std::sync::MutexGuard<'_, RuntimeLog>> {
        self.log.lock().map_err(|_| AttestError::Poisoned)
    }

    /// The log so far, one JSON event per line.
    pub fn log_jsonl(&self) -> String {
        self.log.lock().map(|l| l.to_jsonl()).unwrap_or_default()
    }

    /// Whether the log's events were extended into registers that evidence reports
    /// (false on SNP without a TPM: see the module docs).
    pub fn is_register_backed(&self) -> bool {
        !self.backends.is_empty()
    }
}

/// `sha256:<hex>` of a file's bytes (the runtime binary, the configuration).
pub fn file_digest(path: &Path) -> Result<String> {
    use std::io::Read as _;
    let mut f =
        std::fs::File::open(path).map_err(|source| AttestError::Io { op: "open", path: path.into(), source })?;
    // ring's SHA-256 is assembly: fast in every build profile (the binary may be large).
    let mut h = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|source| AttestError::Io { op: "read", path: path.into(), source })?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(format!("sha256:{}", hex::encode(h.finish())))
}

/// `sha256:<hex>` of bytes.
pub fn bytes_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A register held in memory, for the unit tests of the measurer itself.
    struct MemReg(Register, Mutex<Vec<u8>>);
    impl RegisterBackend for MemReg {
        fn register(&self) -> Register {
            self.0
        }
        fn extend(&self, digest: &[u8]) -> Result<()> {
            let mut v = self.1.lock().map_err(|_| AttestError::Poisoned)?;
            *v = self.0.extend(&v, digest);
            Ok(())
        }
        fn read(&self) -> Result<Vec<u8>> {
            Ok(self.1.lock().map_err(|_| AttestError::Poisoned)?.clone())
        }
    }

    /// A shared handle on a [`MemReg`], so a test can read the register it extended.
    struct Shared(Arc<MemReg>);
    impl RegisterBackend for Shared {
        fn register(&self) -> Register {
            self.0.register()
        }
        fn extend(&self, d: &[u8]) -> Result<()> {
            self.0.extend(d)
        }
        fn read(&self) -> Result<Vec<u8>> {
            self.0.read()
        }
    }

    #[test]
    fn log_replays_to_the_registers_it_extended() {
        let rtmr = Arc::new(MemReg(Register::Rtmr(3), Mutex::new(vec![0; 48])));
        let pcr = Arc::new(MemReg(Register::Pcr(23), Mutex::new(vec![0; 32])));
        let m = Measurer::new(vec![Box::new(Shared(rtmr.clone())), Box::new(Shared(pcr.clone()))]);
        m.record("veil.binary", "sha256:aa").unwrap();
        m.record("veil.model-manifest", "sha256:bb").unwrap();
        let log = RuntimeLog::parse(m.log_jsonl().as_bytes()).unwrap();
        assert_eq!(log.events().len(), 4);
        let mut regs = BTreeMap::new();
        regs.insert(Register::Rtmr(3), rtmr.1.lock().unwrap().clone());
        regs.insert(Register::Pcr(23), pcr.1.lock().unwrap().clone());
        let verified = log.verify(&regs).unwrap();
        // One event per register it was extended into.
        assert_eq!(verified.values("veil.model-manifest").collect::<Vec<_>>(), ["sha256:bb", "sha256:bb"]);
        // A register that missed an event does not verify.
        regs.insert(Register::Pcr(23), vec![0; 32]);
        assert!(log.verify(&regs).is_err());
    }

    #[test]
    fn a_failed_extend_is_not_logged() {
        struct Broken;
        impl RegisterBackend for Broken {
            fn register(&self) -> Register {
                Register::Pcr(23)
            }
            fn extend(&self, _: &[u8]) -> Result<()> {
                Err(AttestError::InvalidArgument { what: "test", detail: "refused".into() })
            }
            fn read(&self) -> Result<Vec<u8>> {
                Ok(vec![0; 32])
            }
        }
        let m = Measurer::new(vec![Box::new(Broken)]);
        assert!(m.record("veil.binary", "sha256:aa").is_err());
        assert_eq!(m.log_jsonl(), "");
    }

    #[test]
    fn a_restarted_runtime_continues_the_saved_log_and_refuses_unaccounted_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("event-log.jsonl");
        let reg = Arc::new(MemReg(Register::Pcr(23), Mutex::new(vec![0; 32])));
        let m = Measurer::open(vec![Box::new(Shared(reg.clone()))], &path).unwrap();
        m.record("veil.binary", "sha256:aa").unwrap();
        drop(m);
        // The same boot, the runtime restarted: the register still holds the event.
        let m = Measurer::open(vec![Box::new(Shared(reg.clone()))], &path).unwrap();
        m.record("veil.binary", "sha256:bb").unwrap();
        let log = RuntimeLog::parse(m.log_jsonl().as_bytes()).unwrap();
        assert_eq!(log.events().len(), 2);
        let regs = BTreeMap::from([(Register::Pcr(23), reg.1.lock().unwrap().clone())]);
        log.verify(&regs).unwrap();
        drop(m);
        // The saved log lost: the register holds events no log accounts for.
        std::fs::remove_file(&path).unwrap();
        let e = Measurer::open(vec![Box::new(Shared(reg.clone()))], &path).unwrap_err();
        assert!(e.to_string().contains("no record of"), "{e}");
        // A saved log for a register this runtime does not extend.
        std::fs::write(&path, m_line(Register::Rtmr(3))).unwrap();
        let e = Measurer::open(vec![Box::new(Shared(reg.clone()))], &path).unwrap_err();
        assert!(e.to_string().contains("does not extend"), "{e}");
        // A reboot resets the register: a stale saved log is dropped, not continued.
        std::fs::write(&path, m_line(Register::Pcr(23))).unwrap();
        *reg.1.lock().unwrap() = vec![0; 32];
        let m = Measurer::open(vec![Box::new(Shared(reg))], &path).unwrap();
        assert_eq!(m.log_jsonl(), "");
        assert_eq!(std::fs::read(&path).unwrap(), b"");
    }

    fn m_line(r: Register) -> String {
        serde_json::to_string(&Event::new(r, "veil.binary", "sha256:aa")).unwrap() + "\n"
    }

    #[test]
    fn digests() {
        assert_eq!(bytes_digest(b"abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        assert_eq!(file_digest(&p).unwrap(), bytes_digest(b"abc"));
        assert!(matches!(file_digest(&dir.path().join("missing")), Err(AttestError::Io { .. })));
    }
}
