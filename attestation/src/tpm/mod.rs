//! TPM 2.0 quotes: `TPMS_ATTEST`, `TPMT_SIGNATURE`, the attestation key (AK), its
//! certificate chain, PCR digests and the firmware event log.
//!
//! ```text
//!  TPMS_ATTEST bytes ─┬─► AK signature (ring, over the bytes as received)
//!  TPMT_SIGNATURE  ───┘        │
//!                              ├─► extraData == Options.nonce        (if given)
//!  PCR values ─────────────────┼─► H_sig(PCR[i] for i selected) == pcrDigest
//!  AK cert → inter → root ─────┼─► chain @ Options.at, cert key == AK (if given)
//!  TCG event log ──────────────┴─► replay == quoted PCRs            (if given)
//! ```
//!
//! [`verify_quote`] is the building block (the Azure vTPM verifier reuses it with
//! an AK that the hardware report binds); [`TpmVerifier`] adds the AK certificate
//! chain and the event log.
//!
//! Why a signed `TPMS_ATTEST` can be trusted: a *restricted* signing key only signs
//! data that starts with `TPM_GENERATED_VALUE` when the TPM produced it. A PEM/DER
//! AK does not say whether it is restricted; the AK certificate (or the hardware
//! report that binds the AK) vouches for that. [`AkPublic::from_tpmt_public`]
//! checks the attributes itself.
//!
//! Limits (typed errors, not silent passes): RSA 2048–8192 bits; RSA-PSS only with
//! salt length = hash length (ring's PSS verifier; TPMs from spec revision 1.38 on
//! do this); SHA-1 signatures refused; ECDSA on P-256/P-384 only; one PCR bank per
//! quote.

mod ak;
mod chain;
mod pcrs;
mod structures;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::Serialize;

pub use ak::{AkPublic, Curve};
pub use chain::AkCertChain;
pub use pcrs::PcrValues;
pub use structures::{
    Attest, ClockInfo, HashAlg, MAX_PCRS, PcrSelection, SigScheme, Signature, SignatureValue, TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE, parse_attest, parse_signature,
};

use crate::error::{Error, Result};
use crate::tcg::EventLogSummary;
use crate::verify::{Claims, Options, Tee, VerifiedEvidence, Verifier};

/// Claims of a verified TPM quote. Byte strings are lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TpmClaims {
    /// `extraData`: the qualifying data (nonce).
    pub qualifying_data: String,
    /// Whether `qualifying_data` was compared with an expected nonce.
    pub nonce_checked: bool,
    /// `qualifiedSigner`: the qualified name of the signing key.
    pub qualified_signer: String,
    /// `clockInfo`.
    pub clock_info: ClockInfo,
    /// `firmwareVersion`, as "0x" and 16 hex digits.
    pub firmware_version: String,
    /// The PCR bank the quote covers (`None` if it lists no bank).
    pub pcr_bank: Option<HashAlg>,
    /// The quoted PCR indices, ascending.
    pub pcr_select: Vec<u32>,
    /// `pcrDigest`.
    pub pcr_digest: String,
    /// The quoted PCR values (index → hex), when PCR values were supplied and
    /// matched `pcrDigest`.
    pub pcrs: Option<BTreeMap<u32, String>>,
    /// SHA-256 of the AK's canonical DER SubjectPublicKeyInfo.
    pub ak_spki_sha256: String,
    /// The AK's TPM name, when the AK came as a `TPMT_PUBLIC`.
    pub ak_name: Option<String>,
    /// SHA-256 of the AK certificate's DER, when a chain was verified.
    pub ak_cert_sha256: Option<String>,
    /// "rsassa-sha256", "rsapss-sha384", "ecdsa-sha256", ...
    pub signature_scheme: String,
    /// What the event log replay found, when a log was supplied.
    pub event_log: Option<EventLogSummary>,
}

impl TpmClaims {
    /// What a quote verification left unevaluated; verifiers record these in
    /// [`VerifiedEvidence`].
    pub fn not_evaluated(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.nonce_checked {
            out.push("nonce: not checked");
        }
        if self.pcrs.is_none() {
            out.push("PCR values: not supplied, only pcrDigest is bound");
        }
        out
    }
}

/// Verify a quote: the AK's signature over the `TPMS_ATTEST` bytes as received,
/// the qualifying data against `opts.nonce` (when given), and the supplied PCR
/// values against `pcrDigest` (when given). The AK itself is *not* authenticated
/// here: the caller binds it (AK certificate, hardware report).
pub fn verify_quote(
    attest: &[u8],
    signature: &[u8],
    ak: &AkPublic,
    pcrs: Option<&PcrValues>,
    opts: &Options,
) -> Result<TpmClaims> {
    let sig = parse_signature(signature)?;
    verify_quote_with(attest, &sig, ak, pcrs, opts)
}

/// [`verify_quote`] with an already-built [`Signature`] (for Azure's vTPM quote,
/// whose signature is a bare RSA signature: [`Signature::from_raw_rsa`]).
pub fn verify_quote_with(
    attest_bytes: &[u8],
    sig: &Signature,
    ak: &AkPublic,
    pcrs: Option<&PcrValues>,
    opts: &Options,
) -> Result<TpmClaims> {
    let attest = parse_attest(attest_bytes)?;
    ak.verify(attest_bytes, sig)?;
    opts.check_nonce(&attest.extra_data)?;
    let (pcr_bank, pcr_select) = pcrs::quoted_bank(&attest)?;
    let digest_alg = sig.hash();
    if attest.pcr_digest.len() != digest_alg.digest_len() {
        return Err(Error::Binding(format!(
            "pcrDigest has {} bytes; the signing scheme's hash {digest_alg} has {}",
            attest.pcr_digest.len(),
            digest_alg.digest_len()
        )));
    }
    let quoted = match pcrs {
        Some(p) => Some(pcrs::check_pcr_digest(&attest, digest_alg, p)?),
        None => None,
    };
    Ok(TpmClaims {
        qualifying_data: hex::encode(&attest.extra_data),
        nonce_checked: opts.nonce.is_some(),
        qualified_signer: hex::encode(&attest.qualified_signer),
        clock_info: attest.clock_info,
        firmware_version: format!("{:#018x}", attest.firmware_version),
        pcr_bank,
        pcr_select,
        pcr_digest: hex::encode(&attest.pcr_digest),
        pcrs: quoted.map(|q| q.values.iter().map(|(k, v)| (*k, hex::encode(v))).collect()),
        ak_spki_sha256: hex::encode(ak.spki_sha256()),
        ak_name: ak.name().map(hex::encode),
        ak_cert_sha256: None,
        signature_scheme: sig.name(),
        event_log: None,
    })
}

/// A TPM quote and what comes with it.
#[derive(Debug, Clone)]
pub struct TpmEvidence<'a> {
    /// `TPMS_ATTEST` bytes as the TPM signed them.
    pub attest: &'a [u8],
    /// `TPMT_SIGNATURE` bytes.
    pub signature: &'a [u8],
    /// The AK public key: PEM or DER SubjectPublicKeyInfo, or a `TPMT_PUBLIC`.
    pub ak: &'a [u8],
    /// The AK certificate chain to the relying party's root, if the AK is to be
    /// bound by a certificate.
    pub ak_chain: Option<AkCertChain<'a>>,
    /// The PCR values of the quoted bank.
    pub pcrs: Option<PcrValues>,
    /// A TCG PC-Client crypto-agile firmware event log (needs `pcrs`).
    pub event_log: Option<&'a [u8]>,
}

/// Verifier for a TPM 2.0 quote on its own ([`Tee::Tpm`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct TpmVerifier;

impl Verifier for TpmVerifier {
    type Evidence<'a> = TpmEvidence<'a>;

    fn verify(&self, ev: &TpmEvidence<'_>, opts: &Options) -> Result<VerifiedEvidence> {
        let ak = AkPublic::from_bytes(ev.ak)?;
        let mut claims = verify_quote(ev.attest, ev.signature, &ak, ev.pcrs.as_ref(), opts)?;
        let mut not_evaluated: Vec<String> = claims.not_evaluated().into_iter().map(String::from).collect();
        let mut notes = Vec::new();

        // The simulator's fixed AK proves nothing: refused by name without the opt-in.
        let simulated_ak = crate::danger::tpm_aks().iter().find(|k| k.der == ak.spki_der()).map(|k| k.name);
        if let (Some(name), false) = (simulated_ak, opts.trusts_simulator()) {
            return Err(Error::SimulatedRoot { root: name.to_string() });
        }
        // The chain is checked whenever one is given, simulated AK or not.
        let chain_simulated = match &ev.ak_chain {
            Some(chain) => {
                let outcome = chain::verify_ak_chain(chain, &ak, opts)?;
                claims.ak_cert_sha256 = Some(outcome.ak_cert_sha256);
                outcome.simulated
            }
            None => {
                not_evaluated.push("AK: not bound to a certificate".into());
                false
            }
        };
        let simulated = simulated_ak.is_some() || chain_simulated;

        match (ev.event_log, &ev.pcrs) {
            (Some(log), Some(pcrs)) => {
                let log = crate::tcg::parse_event_log(log)?;
                // Only the values the quote bound are compared with the replay.
                let quoted = pcrs.subset(&claims.pcr_select)?;
                let summary = log.verify_against(&quoted)?;
                if !summary.pcrs_without_events.is_empty() {
                    notes.push(format!(
                        "event log: quoted PCRs {:?} have no events in the log; their values are as quoted",
                        summary.pcrs_without_events
                    ));
                }
                if !summary.pcrs_not_quoted.is_empty() {
                    notes.push(format!(
                        "event log: events for PCRs {:?} are not covered by the quote and were not verified",
                        summary.pcrs_not_quoted
                    ));
                }
                claims.event_log = Some(summary);
            }
            (Some(_), None) => {
                return Err(Error::EventLog(
                    "an event log can only be checked against the quoted PCR values, and none were supplied".into(),
                ));
            }
            (None, _) => not_evaluated.push("event log: not supplied".into()),
        }

        let mut out = VerifiedEvidence::new(Tee::Tpm, simulated, Claims::Tpm(claims));
        for n in not_evaluated {
            out = out.not_evaluated(n);
        }
        for n in notes {
            out = out.note(n);
        }
        Ok(out)
    }
}

/// Fuzz entry: parse a `TPMS_ATTEST`. Must never panic.
#[doc(hidden)]
pub fn fuzz_attest(data: &[u8]) {
    let _ = parse_attest(data);
}

/// Fuzz entry: parse a `TPMT_SIGNATURE` and a `TPMT_PUBLIC`, and check the
/// signature with any key that parses. Must never panic.
#[doc(hidden)]
pub fn fuzz_signature(data: &[u8]) {
    if let Ok(sig) = parse_signature(data) {
        let _ = sig.name();
    }
    if let Ok(ak) = AkPublic::from_tpmt_public(data) {
        let _ = ak.spki_sha256();
    }
}
