//! TDX runtime measurement registers through the kernel's measurement files
//! (Linux ≥ 6.16, `Documentation/ABI/testing/sysfs-devices-virtual-misc-tdx_guest`).
//!
//! ```text
//!   /sys/devices/virtual/misc/tdx_guest/measurements/rtmr{0..3}:sha384
//!     read  -> the 48-byte register value
//!     write -> exactly 48 bytes at offset 0 extends the register (anything else: EINVAL)
//! ```
//!
//! Veil extends RTMR3 ([`VEIL_RTMR`]); RTMR0–2 belong to firmware, bootloader and
//! kernel. The functions take the directory so tests (and the simulator) can use a
//! temporary one.

use std::fs::OpenOptions;
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use crate::error::{AttestError, Result};

/// Where the kernel exposes the TDX measurement registers.
pub const DEFAULT_MEASUREMENTS_DIR: &str = "/sys/devices/virtual/misc/tdx_guest/measurements";

/// The RTMR Veil extends with its runtime events.
pub const VEIL_RTMR: u8 = 3;

/// Length of an RTMR (SHA-384).
pub const RTMR_LEN: usize = 48;

/// One more than [`RTMR_LEN`]: reading that many detects an over-long file.
const RTMR_LEN_PLUS_ONE: u64 = 49;

/// The file of RTMR `index` in `dir`: `rtmr{index}:sha384`. Refuses an index above 3.
pub fn path(dir: &Path, index: u8) -> Result<PathBuf> {
    if index > 3 {
        return Err(AttestError::InvalidArgument {
            what: "RTMR index",
            detail: format!("{index} (TDX has RTMR0 to RTMR3)"),
        });
    }
    Ok(dir.join(format!("rtmr{index}:sha384")))
}

/// Extend RTMR `index` with `digest`: one 48-byte write at offset 0 to
/// `rtmr{index}:sha384`. The file must exist (the kernel creates it; this never
/// creates or truncates it). A short write is an error, never retried: the kernel
/// accepts only the whole 48 bytes in one write.
pub fn extend(measurements_dir: &Path, index: u8, digest: &[u8; RTMR_LEN]) -> Result<()> {
    let path = path(measurements_dir, index)?;
    let file = OpenOptions::new().write(true).open(&path).map_err(|e| AttestError::io("open", &path, e))?;
    let written = file.write_at(digest, 0).map_err(|e| AttestError::io("write", &path, e))?;
    if written != RTMR_LEN {
        return Err(AttestError::Malformed {
            path,
            detail: format!("short write: {written} of {RTMR_LEN} bytes; the register may not be extended"),
        });
    }
    Ok(())
}

/// Read RTMR `index`: the file must hold exactly 48 bytes.
pub fn read(measurements_dir: &Path, index: u8) -> Result<[u8; RTMR_LEN]> {
    let path = path(measurements_dir, index)?;
    let mut file = OpenOptions::new().read(true).open(&path).map_err(|e| AttestError::io("open", &path, e))?;
    let mut buf = Vec::with_capacity(RTMR_LEN + 1);
    file.by_ref().take(RTMR_LEN_PLUS_ONE).read_to_end(&mut buf).map_err(|e| AttestError::io("read", &path, e))?;
    <[u8; RTMR_LEN]>::try_from(buf.as_slice()).map_err(|_| AttestError::Malformed {
        path: path.clone(),
        detail: format!(
            "holds {}{} bytes, expected exactly {RTMR_LEN}",
            buf.len().min(RTMR_LEN),
            if buf.len() > RTMR_LEN { " or more" } else { "" }
        ),
    })
}
