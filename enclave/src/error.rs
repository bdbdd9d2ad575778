//! Typed errors of the attesters. Every I/O error names the file and carries the
//! OS error; every TPM error names the command that failed.

use std::path::PathBuf;
use std::time::Duration;

/// Result with an [`AttestError`].
pub type Result<T, E = AttestError> = std::result::Result<T, E>;

/// Why evidence could not be produced or a measurement not recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttestError {
    /// A file operation failed (configfs-tsm, TDX measurement files, swtpm state).
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done ("write", "read", "mkdir", ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// A TPM command (or the TSS around it) failed.
    #[error("TPM {op}: {source}")]
    Tpm {
        /// The command or step ("TPM2_Quote", "TCTI open", ...).
        op: &'static str,
        /// The TSS error (response code or wrapper error).
        #[source]
        source: tss_esapi::Error,
    },

    /// The caller passed a value outside what the interface accepts (a PCR index
    /// above 23, RTMR index above 3, privlevel above 3, ...). Nothing was written.
    #[error("invalid argument {what}: {detail}")]
    InvalidArgument {
        /// The argument.
        what: &'static str,
        /// What is allowed and what was given.
        detail: String,
    },

    /// A file held something that is not what the interface defines (a
    /// non-numeric `generation`, an RTMR of the wrong length, ...).
    #[error("{}: {detail}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },

    /// configfs-tsm: `generation` did not advance by exactly one across our
    /// `inblob` write and `outblob` read in any of the attempts: another writer
    /// raced us on the report directory, so the outblob may not be for our inblob.
    #[error(
        "configfs-tsm {}: generation went from {before} to {after} across the request (expected {before}+1); \
         another writer raced, gave up after {attempts} attempts",
        path.display()
    )]
    GenerationRace {
        /// The `generation` file of the last attempt.
        path: PathBuf,
        /// Value read before writing `inblob`.
        before: u64,
        /// Value read after reading `outblob`.
        after: u64,
        /// Attempts made, each in a fresh report directory.
        attempts: u32,
    },

    /// configfs-tsm: a file stayed absent or empty for the whole bounded wait.
    /// A real configfs answers synchronously; only a simulated one should ever
    /// need the wait (see [`crate::tsm`]).
    #[error("configfs-tsm {}: still absent or empty after {} ms", path.display(), waited.as_millis())]
    Timeout {
        /// The file waited for.
        path: PathBuf,
        /// How long it was waited for.
        waited: Duration,
    },

    /// A configfs-tsm provider Veil does not know (neither `sev_guest` nor
    /// `tdx_guest`).
    #[error("configfs-tsm provider {0:?} is not supported (expected sev_guest or tdx_guest)")]
    UnknownProvider(String),

    /// A TPM operation needs an attestation key and none was created.
    #[error("no attestation key: call create_ak first")]
    NoAk,

    /// What the TPM returned does not check out against what was asked for or
    /// against the AK (signature, qualifying data, PCR digest, key shape). Evidence
    /// that fails this is never returned.
    #[error("TPM self-check: {0}")]
    SelfCheck(String),

    /// The PCRs kept changing between reading them and quoting them.
    #[error("PCRs changed while quoting ({attempts} attempts): another process is extending them")]
    PcrsUnstable {
        /// Attempts made.
        attempts: u32,
    },

    /// A previous holder of the TPM lock panicked; the TPM session state is unknown.
    #[error("TPM context lock poisoned by an earlier panic")]
    Poisoned,

    /// The swtpm test helper could not start a software TPM.
    #[error("swtpm: {0}")]
    Swtpm(String),
}

impl AttestError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AttestError::Io { op, path: path.into(), source }
    }

    pub(crate) fn tpm(op: &'static str) -> impl FnOnce(tss_esapi::Error) -> Self {
        move |source| AttestError::Tpm { op, source }
    }
}
