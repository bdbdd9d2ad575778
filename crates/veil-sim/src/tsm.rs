//! Simulated configfs-tsm (`/sys/kernel/config/tsm/report/`), for attesters that read
//! SEV-SNP reports or TDX quotes through the kernel's TSM report interface.
//!
//! ```text
//!  attester: mkdir <root>/<name>; [write privlevel]; write inblob (≤ 64 bytes)
//!  TsmSim thread (polls every few ms): sees a new, stable inblob ─► removes outblob/auxblob,
//!     writes outblob (report/quote, report_data = inblob zero-padded to 64), auxblob (SNP:
//!     GHCB certificate table with the VCEK), provider, then increments generation
//! ```
//!
//! # Differences from the kernel an attester must tolerate
//!
//! A real configfs-tsm answers **synchronously**: a write to `inblob` increments
//! `generation` at once and reading `outblob` runs the request in the read. This
//! simulator answers **asynchronously**: `outblob` appears, and `generation` is
//! incremented, a few milliseconds after the write. An attester that works with both:
//!
//! 1. read `generation` (absent counts as 0) as `g0`; write `privlevel` (if any) *before*
//!    `inblob`, then write `inblob`;
//! 2. wait — bounded, e.g. one second, polling every millisecond — until `generation`
//!    reads `g0 + 1` or more *and* `outblob` is present and non-empty (a real kernel passes
//!    this at once); treat an absent or empty `outblob` as "not ready" only inside that
//!    bounded wait, and as an error after it;
//! 3. read `outblob` (and `auxblob`), then read `generation` again: if it changed, another
//!    writer raced you — retry.
//!
//! The simulator also differs in that: writes it cannot answer (`inblob` over 64 bytes,
//! `privlevel` above 3) produce no output and are listed by [`TsmSim::errors`] (the
//! kernel fails the `write` with `EINVAL`); the report directory is a plain directory,
//! removed with `remove_dir_all` (configfs uses `rmdir`); and two writes that land within
//! one poll interval produce one generation, not two. TDX has no `auxblob` (the quote
//! carries its certificates) and ignores `privlevel`.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::error::{Error, Result};
use crate::snp::{self, SnpOptions};
use crate::tdx::{self, TdxOptions};

/// Which TSM provider the simulator impersonates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// AMD SEV-SNP guest driver (`provider` reads `sev_guest`).
    SevGuest,
    /// Intel TDX guest driver (`provider` reads `tdx_guest`).
    TdxGuest,
}

impl Provider {
    /// The text of the `provider` attribute.
    pub fn name(self) -> &'static str {
        match self {
            Provider::SevGuest => "sev_guest",
            Provider::TdxGuest => "tdx_guest",
        }
    }
}

/// Options of a simulated TSM.
#[derive(Debug, Clone)]
pub struct TsmConfig {
    /// SNP report options (`vmpl` is replaced by a written `privlevel`).
    pub snp: SnpOptions,
    /// TDX quote options.
    pub tdx: TdxOptions,
    /// How often the background thread scans for requests.
    pub poll_interval: Duration,
}

impl Default for TsmConfig {
    fn default() -> Self {
        Self { snp: SnpOptions::default(), tdx: TdxOptions::default(), poll_interval: Duration::from_millis(3) }
    }
}

/// A running simulated configfs-tsm. Dropping it stops the background thread.
#[derive(Debug)]
pub struct TsmSim {
    root: PathBuf,
    rtmr: Arc<Mutex<[[u8; 48]; 4]>>,
    stop: Arc<AtomicBool>,
    errors: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl TsmSim {
    /// Start serving report requests under `root` (created if missing) with default
    /// options.
    pub fn start(root: &Path, provider: Provider) -> Result<TsmSim> {
        Self::start_with(root, provider, TsmConfig::default())
    }

    /// Start with explicit options.
    pub fn start_with(root: &Path, provider: Provider, config: TsmConfig) -> Result<TsmSim> {
        fs::create_dir_all(root).map_err(|e| Error::io("create directory", root, e))?;
        let stop = Arc::new(AtomicBool::new(false));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let rtmr = Arc::new(Mutex::new(config.tdx.rtmr));
        let mut worker = Worker {
            root: root.to_path_buf(),
            provider,
            config,
            rtmr: Arc::clone(&rtmr),
            entries: HashMap::new(),
            errors: Arc::clone(&errors),
        };
        let stop_flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("veil-sim-tsm".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::Acquire) {
                    worker.scan();
                    std::thread::sleep(worker.config.poll_interval);
                }
            })
            .map_err(|e| Error::io("spawn TSM thread for", root, e))?;
        Ok(TsmSim { root: root.to_path_buf(), rtmr, stop, errors, thread: Some(thread) })
    }

    /// Extends the simulated TD's RTMR `index` (0–3) with a 48-byte digest:
    /// `RTMR = SHA-384(RTMR ‖ digest)`, as the TDX module's `TDG.MR.RTMR.EXTEND` does
    /// (the kernel's `rtmrN:sha384` measurement files are the real interface; an
    /// in-process simulator takes the call directly). Later quotes report the new value.
    pub fn extend_rtmr(&self, index: u8, digest: &[u8; 48]) -> Result<()> {
        use sha2::Digest as _;
        let mut regs = self.rtmr.lock().map_err(|_| Error::invalid("RTMR", "lock poisoned"))?;
        let reg = regs
            .get_mut(usize::from(index))
            .ok_or_else(|| Error::invalid("RTMR index", format!("{index} (TDX has RTMR0 to RTMR3)")))?;
        let mut h = sha2::Sha384::new();
        h.update(*reg);
        h.update(digest);
        *reg = h.finalize().into();
        Ok(())
    }

    /// The simulated TD's RTMR `index` (0–3).
    pub fn rtmr(&self, index: u8) -> Result<[u8; 48]> {
        let regs = self.rtmr.lock().map_err(|_| Error::invalid("RTMR", "lock poisoned"))?;
        regs.get(usize::from(index))
            .copied()
            .ok_or_else(|| Error::invalid("RTMR index", format!("{index} (TDX has RTMR0 to RTMR3)")))
    }

    /// The emulated `/sys/kernel/config/tsm/report` directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Requests the simulator refused (for diagnostics; the kernel would fail the write).
    pub fn errors(&self) -> Vec<String> {
        self.errors.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl Drop for TsmSim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // A panicked worker has nothing left to clean up.
            let _ = thread.join();
        }
    }
}

/// What one request directory last looked like.
#[derive(Debug, Default)]
struct Entry {
    /// Observation seen on the previous scan (answered once it is seen twice: stable).
    pending: Option<Observation>,
    /// Observation last answered.
    answered: Option<Observation>,
    generation: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Observation {
    inblob: Vec<u8>,
    inblob_mtime: Option<SystemTime>,
    privlevel: Option<String>,
    privlevel_mtime: Option<SystemTime>,
}

struct Worker {
    root: PathBuf,
    provider: Provider,
    config: TsmConfig,
    rtmr: Arc<Mutex<[[u8; 48]; 4]>>,
    entries: HashMap<PathBuf, Entry>,
    errors: Arc<Mutex<Vec<String>>>,
}

fn read_opt(path: &Path) -> (Option<Vec<u8>>, Option<SystemTime>) {
    match fs::read(path) {
        Ok(bytes) => (Some(bytes), fs::metadata(path).and_then(|m| m.modified()).ok()),
        Err(_) => (None, None),
    }
}

/// Write `data` to `dir/name` atomically (temporary file + rename).
fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> Result<()> {
    let tmp = dir.join(format!(".{name}.veil-sim-tmp"));
    fs::write(&tmp, data).map_err(|e| Error::io("write", &tmp, e))?;
    let dst = dir.join(name);
    fs::rename(&tmp, &dst).map_err(|e| Error::io("rename", &dst, e))
}

impl Worker {
    fn scan(&mut self) {
        let Ok(dirs) = fs::read_dir(&self.root) else {
            return;
        };
        let mut seen = Vec::new();
        for dir in dirs.flatten() {
            let path = dir.path();
            if !dir.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            seen.push(path.clone());
            if let Err(e) = self.visit(&path) {
                // A directory removed mid-scan is not an error worth reporting.
                if path.is_dir() {
                    self.record(format!("{}: {e}", path.display()));
                }
            }
        }
        self.entries.retain(|p, _| seen.contains(p));
    }

    fn record(&self, message: String) {
        if let Ok(mut errors) = self.errors.lock() {
            errors.push(message);
        }
    }

    fn visit(&mut self, dir: &Path) -> Result<()> {
        if !self.entries.contains_key(dir) {
            // A fresh report directory: the attributes configfs would show at mkdir.
            write_atomic(dir, "provider", format!("{}\n", self.provider.name()).as_bytes())?;
            write_atomic(dir, "generation", b"0\n")?;
            if self.provider == Provider::SevGuest {
                write_atomic(dir, "privlevel_floor", b"0\n")?;
            }
            self.entries.insert(dir.to_path_buf(), Entry::default());
        }
        let (inblob, inblob_mtime) = read_opt(&dir.join("inblob"));
        let Some(inblob) = inblob.filter(|b| !b.is_empty()) else {
            return Ok(());
        };
        let (privlevel, privlevel_mtime) = read_opt(&dir.join("privlevel"));
        let obs = Observation {
            inblob,
            inblob_mtime,
            privlevel: privlevel.map(|p| String::from_utf8_lossy(&p).trim().to_owned()),
            privlevel_mtime,
        };
        let Some(entry) = self.entries.get_mut(dir) else {
            return Ok(());
        };
        if entry.answered.as_ref() == Some(&obs) {
            return Ok(());
        }
        if entry.pending.as_ref() != Some(&obs) {
            entry.pending = Some(obs); // answer once it reads the same on the next scan
            return Ok(());
        }
        entry.pending = None;
        entry.answered = Some(obs.clone());
        let generation = entry.generation.saturating_add(1);
        let (outblob, auxblob) = self.answer(&obs)?;
        let _ = fs::remove_file(dir.join("outblob"));
        let _ = fs::remove_file(dir.join("auxblob"));
        write_atomic(dir, "outblob", &outblob)?;
        if let Some(aux) = auxblob {
            write_atomic(dir, "auxblob", &aux)?;
        }
        write_atomic(dir, "generation", format!("{generation}\n").as_bytes())?;
        if let Some(entry) = self.entries.get_mut(dir) {
            entry.generation = generation;
        }
        Ok(())
    }

    fn answer(&self, obs: &Observation) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
        if obs.inblob.len() > 64 {
            return Err(Error::invalid("inblob", format!("{} bytes (at most 64)", obs.inblob.len())));
        }
        let mut report_data = [0u8; 64];
        if let Some(dst) = report_data.get_mut(..obs.inblob.len()) {
            dst.copy_from_slice(&obs.inblob);
        }
        match self.provider {
            Provider::SevGuest => {
                let mut opts = self.config.snp.clone();
                if let Some(level) = obs.privlevel.as_deref().filter(|l| !l.is_empty()) {
                    opts.vmpl = level
                        .parse::<u32>()
                        .ok()
                        .filter(|v| *v <= 3)
                        .ok_or_else(|| Error::invalid("privlevel", format!("{level:?} (must be 0..=3)")))?;
                }
                let ev = snp::report(&report_data, &opts)?;
                Ok((ev.report, Some(ev.cert_table)))
            }
            Provider::TdxGuest => {
                let mut opts = self.config.tdx.clone();
                opts.rtmr = *self.rtmr.lock().map_err(|_| Error::invalid("RTMR", "lock poisoned"))?;
                Ok((tdx::quote(&report_data, &opts)?, None))
            }
        }
    }
}
