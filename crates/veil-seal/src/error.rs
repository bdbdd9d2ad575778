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
    /// The model card is missing or malformed.
    #[error("model card: {0}")]
    Card(String),
    /// The model card fails the card policy.
    #[error("model card field `{field}`: {reason}")]
    CardPolicy {
        /// The field that failed.
        field: String,
        /// Why.
        reason: String,
    },
    /// The file is not a Veil bundle, or not a complete one (an interrupted seal leaves
    /// the magic unwritten).
    #[error("not a complete Veil bundle: {0}")]
    NotABundle(String),
    /// The bundle's format version is not one this build reads.
    #[error("bundle format version {0} is not supported (this build reads version 1)")]
    UnsupportedVersion(u16),
    /// The bundle header is malformed or inconsistent with the file.
    #[error("bundle header: {0}")]
    Header(String),
    /// A file name in a bundle is unsafe or malformed.
    #[error("bundle file name {name:?}: {reason}")]
    BadName {
        /// The name as written in the bundle.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The data key does not authenticate the bundle header: a wrong key, or a header
    /// changed after sealing.
    #[error("the data key does not open this bundle (header authentication failed: wrong key or modified header)")]
    WrongKey,
    /// A chunk failed authentication: flipped, swapped, moved, truncated or extended.
    #[error("{path}: chunk {index} of {chunks} failed authentication (modified, reordered, moved or truncated)")]
    Chunk {
        /// The file the chunk belongs to.
        path: String,
        /// The chunk's index in the file.
        index: u64,
        /// The number of chunks the header declares for the file.
        chunks: u64,
    },
    /// The bundle's files differ from what the signer signed.
    #[error("bundle content differs from the signed manifest: {0}")]
    Contents(Mismatch),
    /// An output path already exists; Veil never overwrites.
    #[error("{0} already exists; refusing to overwrite")]
    Exists(PathBuf),
    /// A model file changed while it was being sealed.
    #[error("{0} changed while it was being sealed")]
    Changed(PathBuf),
    /// The operating system could not supply random bytes.
    #[error("no randomness available")]
    Random,
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
