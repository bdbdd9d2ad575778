//! SEV-SNP and TDX evidence through the kernel's configfs-tsm report interface
//! (Linux ≥ 6.7, `Documentation/ABI/testing/configfs-tsm-report`).
//!
//! ```text
//!   <root>/<fresh unique name>/            mkdir  (one directory per request)
//!       generation  read  -> G             (after privlevel: that write advances it too)
//!       privlevel   write "N"              (only if configured; always before inblob)
//!       inblob      write 64 bytes         (the KBS report data, exactly 64)
//!       outblob     read  -> report/quote
//!       auxblob     read  -> SNP cert table (absent or empty: none; normal on TDX)
//!       generation  read  -> must be G+1, else another writer raced: retry in a
//!                            fresh directory, a bounded number of times
//!       provider    read  -> sev_guest | tdx_guest
//!   rmdir
//! ```
//!
//! ## Real and simulated configfs
//!
//! A real configfs answers synchronously: the report is generated while `outblob`
//! is read, and `generation` exists from the `mkdir`. A simulated configfs-tsm (a
//! plain directory answered by a watcher thread, like `veil_sim::tsm::TsmSim`)
//! answers asynchronously, so this attester waits, polling every few milliseconds
//! up to [`TsmAttester::with_poll_timeout`] (default 2 s), for:
//! - `generation` and `provider` to appear after the `mkdir`,
//! - `outblob` to appear non-empty after the `inblob` write,
//! - `generation` to move off its old value after `outblob` was read.
//!
//! On a real configfs none of these waits ever loops. A simulator must therefore:
//! create `generation` (`0`) and `provider` in each new directory; on a complete
//! 64-byte `inblob`, write `auxblob` (optional) and `generation` + 1, and
//! `outblob` **atomically** (write elsewhere and rename), as the signal that
//! the answer is complete. Files are written with create + truncate (as `echo >`
//! does), which a real configfs accepts for its attributes.
//!
//! Cleanup is `rmdir` of the request directory. On a plain file system (a
//! simulator) that fails with "directory not empty", and only then is the
//! directory — which this attester created under a unique name — removed
//! recursively. Cleanup failures are ignored: they cannot affect the evidence.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{AttestError, Result};
use crate::{Attester, Evidence, TeeKind};

/// Where the kernel exposes configfs-tsm reports.
pub const DEFAULT_ROOT: &str = "/sys/kernel/config/tsm/report";

/// The only `inblob` length Veil writes (the kernel accepts up to 64 bytes).
pub const INBLOB_LEN: usize = 64;

/// Default bound on the waits for a simulated configfs (see the module docs).
pub const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(2);

/// Default number of attempts when another writer races on `generation`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// Interval between polls of a simulated configfs.
const POLL_INTERVAL: Duration = Duration::from_millis(2);

/// Upper bound on what is read from any attribute (the kernel's outblob limit is
/// 32 KiB; SNP certificate tables are a few KiB; 1 MiB leaves room).
const MAX_READ: u64 = 1 << 20;

/// The `provider` of an SEV-SNP guest.
pub const PROVIDER_SNP: &str = "sev_guest";
/// The `provider` of a TDX guest.
pub const PROVIDER_TDX: &str = "tdx_guest";

/// Map a configfs-tsm `provider` to the TEE it stands for.
pub fn tee_for_provider(provider: &str) -> Option<TeeKind> {
    match provider {
        PROVIDER_SNP => Some(TeeKind::Snp),
        PROVIDER_TDX => Some(TeeKind::Tdx),
        _ => None,
    }
}

/// One configfs-tsm answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsmReport {
    /// `provider`: `sev_guest` or `tdx_guest` (trailing newline removed).
    pub provider: String,
    /// `outblob`: the SNP ATTESTATION_REPORT or TDX quote, as the kernel returned it.
    pub outblob: Vec<u8>,
    /// `auxblob`: the SNP certificate table; `None` if absent or empty.
    pub auxblob: Option<Vec<u8>>,
    /// `generation` after the read (one more than before our `inblob` write).
    pub generation: u64,
}

/// Produces SEV-SNP reports / TDX quotes through configfs-tsm.
#[derive(Debug)]
pub struct TsmAttester {
    root: PathBuf,
    privlevel: Option<u8>,
    poll_timeout: Duration,
    max_attempts: u32,
    provider: OnceLock<String>,
}

impl Default for TsmAttester {
    fn default() -> Self {
        Self::new(DEFAULT_ROOT)
    }
}

impl TsmAttester {
    /// An attester over the report directory `root` (normally [`DEFAULT_ROOT`];
    /// a simulator's directory in tests). Touches nothing until used.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            privlevel: None,
            poll_timeout: DEFAULT_POLL_TIMEOUT,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            provider: OnceLock::new(),
        }
    }

    /// Request reports at this privilege level (SEV-SNP VMPL, 0..=3), written to
    /// `privlevel` before `inblob`. The kernel refuses a level below
    /// `privlevel_floor`.
    pub fn with_privlevel(mut self, privlevel: u8) -> Result<Self> {
        if privlevel > 3 {
            return Err(AttestError::InvalidArgument {
                what: "privlevel",
                detail: format!("{privlevel} (allowed: 0 to 3)"),
            });
        }
        self.privlevel = Some(privlevel);
        Ok(self)
    }

    /// Bound on each wait for a simulated configfs (see the module docs).
    pub fn with_poll_timeout(mut self, timeout: Duration) -> Self {
        self.poll_timeout = timeout;
        self
    }

    /// Attempts (each in a fresh directory) before a generation race is an error;
    /// at least one.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The report root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The configured privilege level.
    pub fn privlevel(&self) -> Option<u8> {
        self.privlevel
    }

    /// The provider (`sev_guest`, `tdx_guest`, ...), read once from a scratch
    /// report directory and cached.
    pub fn provider(&self) -> Result<String> {
        if let Some(p) = self.provider.get() {
            return Ok(p.clone());
        }
        let dir = ReportDir::create(&self.root)?;
        let p = read_provider(&dir.path, self.poll_timeout)?;
        drop(dir);
        Ok(self.provider.get_or_init(|| p).clone())
    }

    /// Ask the TEE for a report over `inblob` (exactly 64 bytes), in a fresh report
    /// directory, checking `generation` for racing writers.
    pub fn report(&self, inblob: &[u8; INBLOB_LEN]) -> Result<TsmReport> {
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            match self.report_once(inblob)? {
                Attempt::Done(report) => {
                    let _ = self.provider.set(report.provider.clone());
                    return Ok(report);
                }
                Attempt::Raced { path, before, after } => {
                    if attempt >= self.max_attempts {
                        return Err(AttestError::GenerationRace { path, before, after, attempts: attempt });
                    }
                }
            }
        }
    }

    fn report_once(&self, inblob: &[u8; INBLOB_LEN]) -> Result<Attempt> {
        let dir = ReportDir::create(&self.root)?;
        let d = dir.path.as_path();
        let provider = read_provider(d, self.poll_timeout)?;

        if let Some(level) = self.privlevel {
            // Writing privlevel advances `generation`, so it is read afterwards.
            write_file(&d.join("privlevel"), format!("{level}\n").as_bytes())?;
        }
        let gen_path = d.join("generation");
        let before = poll(&gen_path, self.poll_timeout, |b| !b.is_empty())?;
        let before = parse_generation(&gen_path, &before)?;

        write_file(&d.join("inblob"), inblob)?;

        // A real configfs advances `generation` on the inblob write and answers in the
        // outblob read; a simulator answers late and advances `generation` only after
        // writing every blob. Waiting for the advance first serves both, so that the
        // outblob and auxblob read below belong to the same answer.
        let after =
            match poll(&gen_path, self.poll_timeout, |b| parse_generation(&gen_path, b).is_ok_and(|g| g != before)) {
                Ok(b) => parse_generation(&gen_path, &b)?,
                // Never advanced (or never parsed): report what is there now.
                Err(AttestError::Timeout { .. }) => parse_generation(&gen_path, &read_file(&gen_path)?)?,
                Err(e) => return Err(e),
            };
        let outblob = poll(&d.join("outblob"), self.poll_timeout, |b| !b.is_empty())?;
        let auxblob = match read_file(&d.join("auxblob")) {
            Ok(b) if b.is_empty() => None,
            Ok(b) => Some(b),
            Err(AttestError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        // Another writer between our inblob write and our reads shows as a generation
        // other than exactly one more than before, now or after the reads.
        let last = parse_generation(&gen_path, &read_file(&gen_path)?)?;
        if before.checked_add(1) != Some(after) || last != after {
            return Ok(Attempt::Raced { path: gen_path, before, after: last.max(after) });
        }
        Ok(Attempt::Done(TsmReport { provider, outblob, auxblob, generation: after }))
    }
}

impl Attester for TsmAttester {
    fn evidence(&self, report_data: &[u8; 64]) -> Result<Evidence> {
        let report = self.report(report_data)?;
        if tee_for_provider(&report.provider).is_none() {
            return Err(AttestError::UnknownProvider(report.provider));
        }
        Ok(Evidence::Tsm(report))
    }

    fn tee(&self) -> Result<TeeKind> {
        let p = self.provider()?;
        tee_for_provider(&p).ok_or(AttestError::UnknownProvider(p))
    }
}

enum Attempt {
    Done(TsmReport),
    Raced { path: PathBuf, before: u64, after: u64 },
}

/// A report directory this attester created; removed on drop.
struct ReportDir {
    path: PathBuf,
}

impl ReportDir {
    fn create(root: &Path) -> Result<Self> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let mut last = None;
        for _ in 0..8 {
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
            let path =
                root.join(format!("veil-{}-{}-{nanos:08x}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed)));
            match fs::create_dir(&path) {
                Ok(()) => return Ok(ReportDir { path }),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some((path, e)),
                Err(e) => return Err(AttestError::io("mkdir", path, e)),
            }
        }
        let (path, e) = last.unwrap_or_else(|| (root.to_path_buf(), ErrorKind::AlreadyExists.into()));
        Err(AttestError::io("mkdir", path, e))
    }
}

impl Drop for ReportDir {
    fn drop(&mut self) {
        match fs::remove_dir(&self.path) {
            // Only a plain file system (a simulator) says "not empty" here: configfs
            // removes a report item with its attributes.
            Err(e) if e.kind() == ErrorKind::DirectoryNotEmpty => {
                let _ = fs::remove_dir_all(&self.path);
            }
            _ => {}
        }
    }
}

fn read_provider(dir: &Path, timeout: Duration) -> Result<String> {
    let path = dir.join("provider");
    let raw = poll(&path, timeout, |b| !b.is_empty())?;
    let s = std::str::from_utf8(&raw)
        .map_err(|_| AttestError::Malformed { path: path.clone(), detail: "not UTF-8".into() })?;
    Ok(s.trim_end_matches(['\n', '\0']).to_owned())
}

fn parse_generation(path: &Path, raw: &[u8]) -> Result<u64> {
    std::str::from_utf8(raw).ok().and_then(|s| s.trim_end_matches(['\n', '\0']).parse::<u64>().ok()).ok_or_else(|| {
        AttestError::Malformed {
            path: path.to_path_buf(),
            detail: format!("generation is not a decimal counter: {:?}", String::from_utf8_lossy(raw)),
        }
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    // One open + write_all + close: configfs commits a binary attribute on close.
    fs::write(path, bytes).map_err(|e| AttestError::io("write", path, e))
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let file = fs::File::open(path).map_err(|e| AttestError::io("open", path, e))?;
    let mut buf = Vec::new();
    file.take(MAX_READ.saturating_add(1)).read_to_end(&mut buf).map_err(|e| AttestError::io("read", path, e))?;
    if buf.len() as u64 > MAX_READ {
        return Err(AttestError::Malformed {
            path: path.to_path_buf(),
            detail: format!("larger than {MAX_READ} bytes"),
        });
    }
    Ok(buf)
}

/// Read `path` until `ready` accepts its contents, for at most `timeout`. Absent
/// (`NotFound`) counts as not ready; any other error is returned at once.
fn poll(path: &Path, timeout: Duration, ready: impl Fn(&[u8]) -> bool) -> Result<Vec<u8>> {
    let start = Instant::now();
    loop {
        match read_file(path) {
            Ok(b) if ready(&b) => return Ok(b),
            Ok(_) => {}
            Err(AttestError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let waited = start.elapsed();
        if waited >= timeout {
            return Err(AttestError::Timeout { path: path.to_path_buf(), waited });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
