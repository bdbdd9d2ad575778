//! The simulator's error type.

use std::path::PathBuf;

/// Everything the simulator can refuse or fail at.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A caller-supplied value is out of range for the format being produced.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The offending argument or option.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A committed fixture could not be decoded (the repository is damaged).
    #[error("simulator fixture {0} is malformed")]
    Fixture(&'static str),
    /// A signing operation failed.
    #[error("signing with the simulated {0} failed")]
    Signing(&'static str),
    /// A file-system operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("write", "create directory", ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Serialising an output (JSON, TOML, a timestamp) failed.
    #[error("encoding {what}: {reason}")]
    Encode {
        /// Which output.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// The simulator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidInput { field, reason: reason.into() }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { op, path: path.into(), source }
    }
}
