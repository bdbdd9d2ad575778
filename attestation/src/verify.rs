//! The one verifier API: [`Verifier::verify`] per TEE, [`Options`] injected by the
//! caller, and [`VerifiedEvidence`] that only a verifier can construct.
//!
//! ```text
//!   evidence bytes ──► Verifier::verify(&Options{at, anchors, ...}) ──► VerifiedEvidence
//!                                                                        │
//!   reference values (Policy) ──────────► appraisal::appraise ◄──────────┘
//! ```
//!
//! Verification checks signatures, chains, collateral and bindings; appraisal
//! (the separate step in [`crate::appraisal`]) checks the claims against policy.

use serde::Serialize;
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// What the caller injects into a verification: the time, which roots to trust,
/// and the values the evidence must be bound to. No network is reached from here.
#[derive(Debug, Clone)]
pub struct Options {
    /// The time at which certificates and collateral must be valid. A relying party
    /// uses its own clock; tests pin the time of the vectors.
    pub at: OffsetDateTime,
    /// Expected SNP/TDX report data (exactly 64 bytes), or `None` for "not checked".
    pub report_data: Option<Vec<u8>>,
    /// Expected TPM qualifying data (`extraData` of the quote), or `None` for "not
    /// checked". `Some(vec![])` requires empty qualifying data.
    pub nonce: Option<Vec<u8>>,
    /// Trust the Veil simulator's roots. Off by default; see [`crate::danger`].
    danger_trust_simulator: bool,
}

impl Options {
    /// Options verifying at `at`, trusting only the embedded vendor roots, and
    /// checking no report data or nonce.
    pub fn at(at: OffsetDateTime) -> Self {
        Self { at, report_data: None, nonce: None, danger_trust_simulator: false }
    }

    /// Require this report data.
    pub fn with_report_data(mut self, report_data: Vec<u8>) -> Self {
        self.report_data = Some(report_data);
        self
    }

    /// Require this TPM nonce.
    pub fn with_nonce(mut self, nonce: Vec<u8>) -> Self {
        self.nonce = Some(nonce);
        self
    }

    /// Trust the simulator's roots (CI and development only). Evidence that verifies
    /// through them is marked `simulated: true`.
    pub fn danger_trust_simulator(mut self, yes: bool) -> Self {
        self.danger_trust_simulator = yes;
        self
    }

    /// Whether simulated roots are trusted.
    pub fn trusts_simulator(&self) -> bool {
        self.danger_trust_simulator
    }

    /// Check `found` against the expected report data, if one was given. The
    /// comparison is over exactly 64 bytes: an expected value of another length is
    /// an error, never padded or truncated.
    pub fn check_report_data(&self, found: &[u8; 64]) -> Result<()> {
        let Some(expected) = &self.report_data else { return Ok(()) };
        if expected.len() != 64 {
            return Err(Error::ReportDataMismatch {
                field: "report_data",
                expected: format!("{} (length {}, must be 64)", hex::encode(expected), expected.len()),
                found: hex::encode(found),
            });
        }
        if expected.as_slice() != found.as_slice() {
            return Err(Error::ReportDataMismatch {
                field: "report_data",
                expected: hex::encode(expected),
                found: hex::encode(found),
            });
        }
        Ok(())
    }

    /// Check TPM qualifying data against the expected nonce, if one was given.
    pub fn check_nonce(&self, found: &[u8]) -> Result<()> {
        let Some(expected) = &self.nonce else { return Ok(()) };
        if expected.as_slice() != found {
            return Err(Error::ReportDataMismatch {
                field: "TPM qualifying data",
                expected: hex::encode(expected),
                found: hex::encode(found),
            });
        }
        Ok(())
    }
}

/// A verifier for one kind of evidence.
pub trait Verifier {
    /// The evidence this verifier takes (borrowed bytes and parsed collateral).
    type Evidence<'a>;

    /// Verify signatures, chains, collateral and bindings at `options.at`.
    fn verify(&self, evidence: &Self::Evidence<'_>, options: &Options) -> Result<VerifiedEvidence>;
}

/// Which TEE produced the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tee {
    /// AMD SEV-SNP.
    Snp,
    /// Intel TDX.
    Tdx,
    /// A TPM 2.0 quote on its own.
    Tpm,
    /// Azure SEV-SNP CVM with its paravisor vTPM.
    AzSnpVtpm,
    /// Azure TDX CVM with its paravisor vTPM.
    AzTdxVtpm,
}

/// The claims of verified evidence, per TEE.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Claims {
    /// SEV-SNP report claims.
    Snp(crate::snp::SnpClaims),
    /// A SEV-SNP VCEK/VLEK verified to an AMD root, without a report
    /// ([`crate::snp::SnpVerifier::verify_chain_only`]).
    SnpCertChain(crate::snp::SnpCertClaims),
    /// TDX quote claims.
    Tdx(crate::tdx::TdxClaims),
    /// TPM quote claims.
    Tpm(crate::tpm::TpmClaims),
    /// Azure SNP vTPM: the hardware report and the vTPM quote it binds.
    AzSnpVtpm {
        /// The SNP report inside the HCL report.
        snp: crate::snp::SnpClaims,
        /// The vTPM quote.
        tpm: crate::tpm::TpmClaims,
        /// The HCL runtime data (var-data) JSON that the report data binds.
        var_data: serde_json::Value,
    },
    /// Azure TDX vTPM: the TD quote and the vTPM quote it binds.
    AzTdxVtpm {
        /// The TD quote.
        tdx: crate::tdx::TdxClaims,
        /// The vTPM quote.
        tpm: crate::tpm::TpmClaims,
        /// The HCL runtime data (var-data) JSON that the report data binds.
        var_data: serde_json::Value,
    },
}

/// Proof that a verifier ran: this type has no public constructor.
#[derive(Debug, Clone)]
struct Proof(());

/// Evidence that passed verification. Only a [`Verifier`] in this crate can build
/// one, so a function taking `&VerifiedEvidence` cannot be handed unverified claims.
#[derive(Debug, Clone, Serialize)]
pub struct VerifiedEvidence {
    tee: Tee,
    /// `true` when the evidence chains to the Veil simulator's roots.
    simulated: bool,
    claims: Claims,
    /// What this verification did not evaluate (e.g. "TCB status: not evaluated,
    /// no collateral"); a policy that needs one of these fails.
    not_evaluated: Vec<String>,
    /// Observations that are not failures (e.g. trailing bytes after a quote).
    notes: Vec<String>,
    #[serde(skip)]
    _proof: Proof,
}

impl VerifiedEvidence {
    /// Only verifiers in this crate call this.
    pub(crate) fn new(tee: Tee, simulated: bool, claims: Claims) -> Self {
        Self { tee, simulated, claims, not_evaluated: Vec::new(), notes: Vec::new(), _proof: Proof(()) }
    }

    /// Record something that was not evaluated.
    pub(crate) fn not_evaluated(mut self, what: impl Into<String>) -> Self {
        self.not_evaluated.push(what.into());
        self
    }

    /// Record an observation.
    pub(crate) fn note(mut self, what: impl Into<String>) -> Self {
        self.notes.push(what.into());
        self
    }

    /// The TEE.
    pub fn tee(&self) -> Tee {
        self.tee
    }

    /// Whether the evidence chains to simulated roots.
    pub fn simulated(&self) -> bool {
        self.simulated
    }

    /// The verified claims.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// What was not evaluated.
    pub fn not_evaluated_items(&self) -> &[String] {
        &self.not_evaluated
    }

    /// Observations that are not failures.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }
}
