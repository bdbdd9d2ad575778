//! Typed errors for everything the verifiers refuse.
//!
//! One `#[non_exhaustive]` top-level [`Error`] (after rustls' `error/mod.rs`):
//! every variant says *what* was wrong — the structure and field, the expected
//! and the found value — so an operator can act on it without reading code.
//! Verification never panics; every malformed input ends here.

use std::fmt;

/// Why a piece of evidence, a certificate or a collateral document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes do not parse as the structure they claim to be.
    #[error(transparent)]
    Parse(#[from] ParseError),

    /// A certificate chain does not lead to a trusted root, or a certificate in it
    /// is malformed, revoked or of the wrong kind.
    #[error("certificate chain: {0}")]
    Chain(String),

    /// A signature over the received bytes does not verify.
    #[error("signature: {what} does not verify")]
    Signature {
        /// Which signature (e.g. "SNP report signature by VCEK").
        what: &'static str,
    },

    /// A certificate or collateral document is not valid at the verification time.
    #[error("{what} is not valid at {at}: valid from {not_before} to {not_after}")]
    Expired {
        /// The certificate or document.
        what: String,
        /// Start of its validity window (RFC 3339).
        not_before: String,
        /// End of its validity window (RFC 3339).
        not_after: String,
        /// The verification time (RFC 3339).
        at: String,
    },

    /// The report data (or TPM qualifying data) is not the value the caller expected.
    #[error("{field} mismatch: expected {expected}, found {found}")]
    ReportDataMismatch {
        /// "report_data", "TPM qualifying data", ...
        field: &'static str,
        /// Hex of the expected value.
        expected: String,
        /// Hex of the value in the evidence.
        found: String,
    },

    /// The platform's TCB is not acceptable (no matching level, revoked, out of date,
    /// or collateral for another platform).
    #[error("TCB: {0}")]
    Tcb(String),

    /// Two pieces of evidence that must be bound to each other are not.
    #[error("binding: {0}")]
    Binding(String),

    /// Collateral is malformed, inconsistent or not signed by the expected issuer.
    #[error("collateral: {0}")]
    Collateral(String),

    /// The evidence chains to a simulated root, and the verifier was not told to
    /// trust the simulator.
    #[error(
        "evidence is signed by the simulated root {root:?}; simulated roots are trusted only with the explicit danger_trust_simulator option"
    )]
    SimulatedRoot {
        /// The subject of the simulated root.
        root: String,
    },

    /// An event log does not replay to the registers it claims to describe.
    #[error("event log: {0}")]
    EventLog(String),

    /// The caller asked for something the evidence cannot answer (e.g. a policy that
    /// needs the TCB status of a quote verified without collateral).
    #[error("not evaluated: {0}")]
    NotEvaluated(String),

    /// Appraisal against reference values failed.
    #[error("policy: {field}: expected {expected}, found {found}")]
    Policy {
        /// The claim that failed (e.g. "snp.measurement").
        field: String,
        /// What policy allows.
        expected: String,
        /// What the evidence says.
        found: String,
    },
}

/// The class of a refusal, matching the `reason` column of the test-vector table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// Malformed bytes.
    Parse,
    /// Chain to a trusted root.
    Chain,
    /// Signature over the evidence.
    Signature,
    /// Validity window.
    Expired,
    /// Nonce / report data.
    Nonce,
    /// TCB level.
    Tcb,
    /// Pieces of evidence not bound together.
    Binding,
    /// Collateral problem.
    Collateral,
    /// Simulated root without opt-in.
    Simulated,
    /// Event log replay.
    EventLog,
    /// Could not be evaluated.
    NotEvaluated,
    /// Reference values.
    Policy,
}

impl Error {
    /// The class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Parse(_) => ErrorKind::Parse,
            Error::Chain(_) => ErrorKind::Chain,
            Error::Signature { .. } => ErrorKind::Signature,
            Error::Expired { .. } => ErrorKind::Expired,
            Error::ReportDataMismatch { .. } => ErrorKind::Nonce,
            Error::Tcb(_) => ErrorKind::Tcb,
            Error::Binding(_) => ErrorKind::Binding,
            Error::Collateral(_) => ErrorKind::Collateral,
            Error::SimulatedRoot { .. } => ErrorKind::Simulated,
            Error::EventLog(_) => ErrorKind::EventLog,
            Error::NotEvaluated(_) => ErrorKind::NotEvaluated,
            Error::Policy { .. } => ErrorKind::Policy,
        }
    }

    /// Shorthand for a chain error.
    pub fn chain(msg: impl Into<String>) -> Self {
        Error::Chain(msg.into())
    }

    /// Shorthand for a policy error.
    pub fn policy(field: impl Into<String>, expected: impl fmt::Display, found: impl fmt::Display) -> Self {
        Error::Policy { field: field.into(), expected: expected.to_string(), found: found.to_string() }
    }
}

/// A structure did not parse: which structure, which field, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{structure}: {field}: {detail}")]
pub struct ParseError {
    /// The structure being parsed ("SNP attestation report", "TDX quote", ...).
    pub structure: &'static str,
    /// The field ("signature", "header.version", ...).
    pub field: &'static str,
    /// What was wrong, with expected and found values where they apply.
    pub detail: String,
}

impl ParseError {
    /// Build a parse error.
    pub fn new(structure: &'static str, field: &'static str, detail: impl Into<String>) -> Self {
        Self { structure, field, detail: detail.into() }
    }
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
