//! Test support: a software TPM (`swtpm`) on loopback, one per test.
//!
//! ```text
//!   Swtpm::start()  ─► free ports P, P+1 ─► swtpm socket --tpm2 --server P --ctrl P+1
//!                        --tpmstate <fresh temp dir> --flags not-need-init,startup-clear
//!                  ─► wait until P accepts ─► tcti() = "swtpm:host=127.0.0.1,port=P"
//!   drop            ─► kill, wait, remove the state directory
//! ```
//!
//! Each instance has its own ports and state, so tests run in parallel. A missing
//! `swtpm` binary is an error, never a skip: a test that needs a TPM must fail
//! where there is none (install the Debian package `swtpm`; `scripts/test` does).
//! Not for production use: the TPM state lives in a temporary directory.

use std::fs;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{AttestError, Result};

/// How long to wait for swtpm to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// How many port pairs to try (another process may take a port between our
/// probe and swtpm's bind).
const PORT_ATTEMPTS: u32 = 5;

/// A running swtpm; killed and cleaned up on drop.
#[derive(Debug)]
pub struct Swtpm {
    child: Child,
    port: u16,
    state_dir: PathBuf,
}

impl Swtpm {
    /// Start a fresh TPM 2.0 simulator (`swtpm` on `PATH`, or the binary named by
    /// the `SWTPM` environment variable) on two free loopback ports.
    pub fn start() -> Result<Self> {
        let binary = std::env::var_os("SWTPM").unwrap_or_else(|| "swtpm".into());
        Self::start_with(Path::new(&binary))
    }

    /// Start the swtpm binary at `binary` (a path, or a name looked up on `PATH`).
    pub fn start_with(binary: &Path) -> Result<Self> {
        let binary = binary.as_os_str();
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port_pair()?;
            let state_dir = unique_temp_dir()?;
            match Self::spawn(binary, port, &state_dir) {
                Ok(child) => {
                    let mut swtpm = Swtpm { child, port, state_dir };
                    match swtpm.wait_ready() {
                        Ok(()) => return Ok(swtpm),
                        Err(e) => last = e, // dropped: killed and cleaned up
                    }
                }
                Err(e) => {
                    let _ = fs::remove_dir_all(&state_dir);
                    return Err(e);
                }
            }
        }
        Err(AttestError::Swtpm(format!("could not start after {PORT_ATTEMPTS} attempts: {last}")))
    }

    fn spawn(binary: &std::ffi::OsStr, port: u16, state_dir: &Path) -> Result<Child> {
        let ctrl = port.checked_add(1).ok_or_else(|| AttestError::Swtpm("port overflow".into()))?;
        let log = state_dir.join("stderr.log");
        let stderr = fs::File::create(&log).map_err(|e| AttestError::io("create", &log, e))?;
        Command::new(binary)
            .arg("socket")
            .arg("--tpm2")
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={ctrl},bindaddr=127.0.0.1"))
            .arg("--tpmstate")
            .arg(format!("dir={}", state_dir.display()))
            .arg("--flags")
            .arg("not-need-init,startup-clear")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .map_err(|e| {
                AttestError::Swtpm(format!(
                    "cannot run {:?}: {e} (install the Debian package `swtpm`, or set SWTPM to its path)",
                    binary
                ))
            })
    }

    fn wait_ready(&mut self) -> std::result::Result<(), String> {
        let deadline = Instant::now().checked_add(START_TIMEOUT);
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = fs::read_to_string(self.state_dir.join("stderr.log")).unwrap_or_default();
                return Err(format!("swtpm exited with {status} on port {}: {}", self.port, log.trim()));
            }
            if TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if deadline.is_none_or(|d| Instant::now() >= d) {
                return Err(format!("port {} not accepting after {:?}", self.port, START_TIMEOUT));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The TCTI string for [`crate::tpm::TpmAttester::open`].
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The TPM command port (the control port is the next one).
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.state_dir);
    }
}

/// A port P such that P and P+1 were both free a moment ago.
fn free_port_pair() -> Result<u16> {
    for _ in 0..64 {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| AttestError::Swtpm(format!("bind: {e}")))?;
        let port = l.local_addr().map_err(|e| AttestError::Swtpm(format!("local_addr: {e}")))?.port();
        let Some(next) = port.checked_add(1) else {
            continue;
        };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, next)).is_ok() {
            return Ok(port);
        }
    }
    Err(AttestError::Swtpm("no free pair of consecutive loopback ports".into()))
}

fn unique_temp_dir() -> Result<PathBuf> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "veil-swtpm-{}-{}-{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir(&dir).map_err(|e| AttestError::io("mkdir", &dir, e))?;
    Ok(dir)
}
