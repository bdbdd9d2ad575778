//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while signing or verifying a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading the model directory or a file in it failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The path being read.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The model contains a symbolic link (OMS `allow_symlinks=false`).
    #[error("symbolic link in the model, refused: {0}")]
    Symlink(PathBuf),
    /// A path in the model is not valid UTF-8 or cannot be named relative to the model root.
    #[error("unsupported path in the model: {0}")]
    BadPath(PathBuf),
    /// A key is not a PEM document of the expected kind, or not a supported algorithm.
    #[error("key: {0}")]
    Key(&'static str),
    /// The bundle, its envelope or its statement is malformed.
    #[error("malformed bundle: {0}")]
    Parse(String),
    /// The bundle names a media type, payload type, predicate type or serialization that
    /// this verifier does not accept.
    #[error("unsupported {field}: {found:?}")]
    Unsupported {
        /// Which field.
        field: &'static str,
        /// What the bundle says.
        found: String,
    },
    /// The DSSE signature does not verify with the given key.
    #[error("signature does not verify with the given public key")]
    Signature,
    /// Signing failed inside the crypto library.
    #[error("signing failed")]
    Signing,
    /// The files on disk differ from the signed manifest.
    #[error("model differs from the signed manifest: {0}")]
    Mismatch(Mismatch),
    /// The signed subject digest does not match the signed resources.
    #[error("subject digest {found} does not match the resources' digest {expected}")]
    SubjectDigest {
        /// The digest computed over the resources.
        expected: String,
        /// The digest in the statement's subject.
        found: String,
    },
}

/// Differences between a signed manifest and the files on disk.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// Files present on disk but not signed.
    pub added: Vec<String>,
    /// Signed files missing from disk.
    pub removed: Vec<String>,
    /// Files whose content differs.
    pub changed: Vec<String>,
}

impl Mismatch {
    /// True when there is no difference.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (label, list) in [("added", &self.added), ("removed", &self.removed), ("changed", &self.changed)] {
            if !list.is_empty() {
                parts.push(format!("{label}: {}", list.join(", ")));
            }
        }
        f.write_str(&parts.join("; "))
    }
}
