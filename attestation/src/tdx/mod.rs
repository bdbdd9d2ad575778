//! Intel TDX quotes (v4, v5), PCK chains to the Intel SGX root, and DCAP collateral.
//!
//! ```text
//!  quote bytes ──► quote::parse (Reader, declared lengths; trailing bytes noted)
//!       │
//!       ├─► PCK chain (leaf → PCK CA → root)   ──┐ cached per chain (SHA-256 key):
//!       │     + SGX extension (FMSPC, SVNs)      │ signatures, extension
//!       ├─► QE report signature by the PCK key   │
//!       ├─► QE report_data = SHA-256(attestation key ‖ QE auth data) ‖ 0³²
//!       ├─► quote signature by the attestation key over header‖body as received
//!       └─► with collateral ──► TCB info / QE identity / CRLs ─┐ cached per collateral:
//!                                signatures, chains, revocation  │ parsed, verified
//!             time windows (certificates, CRLs, issueDate..nextUpdate) at Options.at
//!             FMSPC match, QE identity, TCB level (QVL rules), advisories
//!                                         ──► VerifiedEvidence (Claims::Tdx)
//! ```
//!
//! # Why not `dcap-qvl`
//!
//! `dcap-qvl` 0.7.1 (MIT, pure Rust) was evaluated and read to learn the quote
//! layout, the `QuoteCollateralV3` collateral JSON, the TCB-level ordering and
//! matching, the TDX module identity and the QE identity rules; this module
//! follows those rules but shares no code with it, for two reasons:
//!
//! * **Errors and panics.** Its verify path reports `anyhow` strings, and its
//!   parser decodes with SCALE codecs rather than the declared lengths; Veil's
//!   verify path must be panic-free (no indexing, no arithmetic overflow), parse
//!   through [`crate::reader::Reader`] to declared lengths, and return typed
//!   [`Error`]s that name the field, so a broker can tell an operator what to fix.
//! * **Performance.** `dcap_qvl::verify::verify` re-verifies the whole collateral
//!   (two CRLs, TCB info and QE identity signatures, their chains) and the PCK
//!   chain through a WebPKI path builder on every call — six or more ECDSA
//!   verifications and several X.509/CRL parses per quote. Veil's bar is ≤ 0.5 ms
//!   and ≤ 0.5× dcap-qvl per quote with verified collateral cached. A
//!   [`TdxVerifier`] therefore caches verified collateral and verified PCK chains
//!   (keyed by SHA-256 of their bytes); on a hit only the time windows at
//!   `Options::at`, the two per-quote signatures, the binding hash, revocation-set
//!   lookups and TCB matching run.
//!
//! What is checked where: verification here checks signatures, chains, collateral,
//! time and bindings; the TD attributes (debug), measurements and the acceptable
//! TCB statuses are claims for [`crate::appraisal`]. Only `Revoked` and "no matching
//! TCB level" are refused here, as every reference verifier does.

mod collateral;
mod pck;
mod quote;
mod tcb;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::crypto::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use collateral::{Collateral, CollateralJson};
pub use quote::{BodyType, INTEL_QE_VENDOR_ID, QeReport, Quote, QuoteHeader, Td15Fields, TdReport};
pub use tcb::TcbStatus;

use crate::danger::{self, SimulatedCert};
use crate::error::{Error, Result};
use crate::verify::{Claims, Options, Tee, VerifiedEvidence, Verifier};
use crate::x509;
use collateral::VerifiedCollateral;
use pck::VerifiedPck;

/// The Intel SGX Root CA (DER), the trust anchor of every DCAP quote.
///
/// Provenance: `src/TrustedRootCA.der` of Phala-Network/dcap-qvl (MIT; copied via
/// `shared/vectors/tdx/Intel_SGX_RootCA.der`), which is Intel's
/// `https://certificates.trustedservices.intel.com/Intel_SGX_Provisioning_Certification_RootCA.cer`.
/// Subject `CN=Intel SGX Root CA, O=Intel Corporation, L=Santa Clara, ST=CA, C=US`,
/// valid 2018-05-21 to 2049-12-31, SHA-256
/// `44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3` (checked by a test).
pub const INTEL_SGX_ROOT_CA: &[u8] = include_bytes!("Intel_SGX_RootCA.der");

const EMBEDDED: Anchor = Anchor { der: INTEL_SGX_ROOT_CA, name: "Intel SGX Root CA", simulated: false };

/// Parse a TDX quote (v4 or v5) into a typed view, to the lengths it declares.
/// This verifies nothing; use [`TdxVerifier`].
pub fn parse_quote(bytes: &[u8]) -> Result<Quote<'_>> {
    quote::parse(bytes).map_err(Error::from)
}

/// What [`TdxVerifier`] verifies.
#[derive(Debug, Clone, Copy)]
pub struct TdxEvidence<'a> {
    /// The quote as produced by the TDQE (configfs-tsm `outblob`).
    pub quote: &'a [u8],
    /// Collateral for the quote's platform; `None` verifies signatures and the PCK
    /// chain only and marks TCB status and QE identity as not evaluated.
    pub collateral: Option<&'a Collateral>,
    /// A root certificate supplied with the evidence (DER). Accepted only if it is
    /// byte-identical to the embedded Intel SGX Root CA, or to a simulated Intel
    /// root when the options trust the simulator; `None` uses the embedded root.
    pub root: Option<&'a [u8]>,
}

/// A trust anchor: always one of the embedded certificates (never caller bytes).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Anchor {
    pub der: &'static [u8],
    pub name: &'static str,
    pub simulated: bool,
}

/// A validity window (certificate, CRL or collateral document), in Unix seconds,
/// both ends inclusive.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub what: &'static str,
    pub not_before: i64,
    pub not_after: i64,
}

impl Window {
    fn check(&self, at: i64) -> Result<()> {
        if at < self.not_before || at > self.not_after {
            return Err(Error::Expired {
                what: self.what.to_string(),
                not_before: x509::rfc3339(self.not_before),
                not_after: x509::rfc3339(self.not_after),
                at: x509::rfc3339(at),
            });
        }
        Ok(())
    }
}

/// Most entries a cache keeps; beyond it an arbitrary entry is dropped.
const CACHE_CAPACITY: usize = 256;

/// A bounded map from SHA-256 digests to verified values. A poisoned lock is a
/// miss (and skips the insert), never a panic.
struct Cache<T> {
    map: Mutex<HashMap<[u8; 32], Arc<T>>>,
}

impl<T> Default for Cache<T> {
    fn default() -> Self {
        Self { map: Mutex::new(HashMap::new()) }
    }
}

impl<T> fmt::Debug for Cache<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = self.map.lock().map(|m| m.len()).ok();
        f.debug_struct("Cache").field("entries", &len).finish()
    }
}

impl<T> Cache<T> {
    fn get(&self, key: &[u8; 32]) -> Option<Arc<T>> {
        self.map.lock().ok()?.get(key).cloned()
    }

    fn insert(&self, key: [u8; 32], value: Arc<T>) {
        let Ok(mut map) = self.map.lock() else { return };
        if map.len() >= CACHE_CAPACITY && !map.contains_key(&key) {
            if let Some(old) = map.keys().next().copied() {
                map.remove(&old);
            }
        }
        map.insert(key, value);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

/// Verifies TDX quotes. Keeps bounded caches of verified PCK chains and verified
/// collateral, so reuse one verifier (it is `Sync`) across quotes.
#[derive(Debug, Default)]
pub struct TdxVerifier {
    pck: Cache<(&'static [u8], VerifiedPck)>,
    collateral: Cache<(&'static [u8], VerifiedCollateral)>,
}

impl TdxVerifier {
    /// A verifier with empty caches.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The decoded TDATTRIBUTES bits (TDX module ABI, TD attributes table).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TdAttributes {
    /// Bit 0, DEBUG: the host can read and write the TD's state and memory.
    pub debug: bool,
    /// Bits 4–6: TD profiling / performance monitoring under debug (TUD group).
    pub profiling: bool,
    /// Bit 16, ICSSD.
    pub icssd: bool,
    /// Bit 17, SERVTD_EXT.
    pub servtd_ext: bool,
    /// Bit 27, LASS.
    pub lass: bool,
    /// Bit 28, SEPT_VE_DISABLE.
    pub sept_ve_disable: bool,
    /// Bit 29, MIGRATABLE.
    pub migratable: bool,
    /// Bit 30, PKS.
    pub pks: bool,
    /// Bit 31, KL.
    pub kl: bool,
    /// Bit 62, TPA.
    pub tpa: bool,
    /// Bit 63, PERFMON.
    pub perfmon: bool,
    /// Reserved (must-be-zero) bits that are set, as 16 hex digits of the
    /// little-endian u64 ("0000000000000000" when none).
    pub reserved_bits: String,
}

impl TdAttributes {
    /// Decode the 8 TDATTRIBUTES bytes (little-endian).
    pub fn decode(raw: [u8; 8]) -> Self {
        let v = u64::from_le_bytes(raw);
        let bit = |n: u32| v.checked_shr(n).is_some_and(|x| x & 1 == 1);
        // Bits 1–3, 7–15, 23–26, 32–61 are reserved (TDX 1.5 ABI).
        const RESERVED: u64 = 0x3FFF_FFFF_0780_FF8E;
        Self {
            debug: bit(0),
            profiling: bit(4) || bit(5) || bit(6),
            icssd: bit(16),
            servtd_ext: bit(17),
            lass: bit(27),
            sept_ve_disable: bit(28),
            migratable: bit(29),
            pks: bit(30),
            kl: bit(31),
            tpa: bit(62),
            perfmon: bit(63),
            reserved_bits: hex::encode((v & RESERVED).to_le_bytes()),
        }
    }
}

/// Claims of a verified TD quote. Byte strings are lower-case hex.
#[derive(Debug, Clone, Serialize)]
pub struct TdxClaims {
    /// Quote version (4 or 5).
    pub version: u16,
    /// Always "tdx".
    pub tee_type: &'static str,
    /// TD report body type.
    pub body_type: BodyType,
    /// TEE_TCB_SVN (16 bytes).
    pub tee_tcb_svn: String,
    /// MRSEAM.
    pub mr_seam: String,
    /// MRSIGNER_SEAM.
    pub mr_signer_seam: String,
    /// SEAMATTRIBUTES.
    pub seam_attributes: String,
    /// TDATTRIBUTES as received (8 bytes).
    pub td_attributes: String,
    /// TDATTRIBUTES decoded (`debug` is the one appraisal must refuse).
    pub td_attributes_flags: TdAttributes,
    /// XFAM.
    pub xfam: String,
    /// MRTD.
    pub mr_td: String,
    /// MRCONFIGID.
    pub mr_config_id: String,
    /// MROWNER.
    pub mr_owner: String,
    /// MROWNERCONFIG.
    pub mr_owner_config: String,
    /// RTMR0.
    pub rtmr0: String,
    /// RTMR1.
    pub rtmr1: String,
    /// RTMR2.
    pub rtmr2: String,
    /// RTMR3.
    pub rtmr3: String,
    /// REPORTDATA (64 bytes).
    pub report_data: String,
    /// TD 1.5: TEE_TCB_SVN2.
    pub tee_tcb_svn2: Option<String>,
    /// TD 1.5: MRSERVICETD.
    pub mr_servicetd: Option<String>,
    /// FMSPC from the PCK certificate.
    pub fmspc: String,
    /// PCEID from the PCK certificate.
    pub pce_id: String,
    /// PCESVN from the PCK certificate.
    pub pce_svn: u16,
    /// CPUSVN (the 16 SGX TCB components) from the PCK certificate.
    pub cpu_svn: String,
    /// Platform TCB status (converged with the TDX module and QE), `None` without
    /// collateral.
    pub tcb_status: Option<TcbStatus>,
    /// TCB date of the matched level, `None` without collateral.
    pub tcb_date: Option<String>,
    /// Intel advisory IDs of the matched levels (platform, module, QE).
    pub advisory_ids: Vec<String>,
    /// QE identity TCB status, `None` without collateral.
    pub qe_tcb_status: Option<TcbStatus>,
    /// The lower tcbEvaluationDataNumber of TCB info and QE identity, `None` without
    /// collateral.
    pub tcb_evaluation_data_number: Option<u32>,
    /// Bytes after the declared end of the quote (ignored).
    pub trailing_bytes: usize,
}

/// Classify a caller-supplied root: the embedded Intel root, an opted-in simulated
/// Intel root, or refused.
fn classify_root(root: &[u8], opts: &Options, simulated: &'static [SimulatedCert]) -> Result<Anchor> {
    if root == INTEL_SGX_ROOT_CA {
        return Ok(EMBEDDED);
    }
    if let Some(s) = simulated.iter().find(|s| s.der == root) {
        if !opts.trusts_simulator() {
            return Err(Error::SimulatedRoot { root: s.name.to_string() });
        }
        return Ok(Anchor { der: s.der, name: s.name, simulated: true });
    }
    Err(Error::chain(format!(
        "the supplied root (SHA-256 {}) is not the Intel SGX Root CA; only the embedded Intel root is trusted",
        x509::sha256_hex(root)
    )))
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn verify_p256(key: &[u8], msg: &[u8], sig: &[u8; 64], what: &'static str) -> Result<()> {
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key).verify(msg, sig).map_err(|_| Error::Signature { what })
}

impl TdxVerifier {
    fn verified_pck(
        &self,
        pem: &[u8],
        default: Anchor,
        sims: &'static [SimulatedCert],
        trust_simulator: bool,
    ) -> Result<Arc<(&'static [u8], VerifiedPck)>> {
        let key = sha256(&[pem]);
        if let Some(hit) = self.pck.get(&key) {
            // The result depends on the chain and the default anchor only.
            if hit.0 == default.der {
                return Ok(hit);
            }
        }
        let v = Arc::new((default.der, pck::verify_chain(pem, default, sims, trust_simulator)?));
        self.pck.insert(key, Arc::clone(&v));
        Ok(v)
    }

    fn verified_collateral(&self, c: &Collateral, anchor: Anchor) -> Result<Arc<(&'static [u8], VerifiedCollateral)>> {
        if let Some(hit) = self.collateral.get(&c.digest) {
            if hit.0 == anchor.der {
                return Ok(hit);
            }
        }
        let v = Arc::new((anchor.der, collateral::verify(c, &anchor)?));
        self.collateral.insert(c.digest, Arc::clone(&v));
        Ok(v)
    }

    fn verify_with(
        &self,
        ev: &TdxEvidence<'_>,
        opts: &Options,
        sims: &'static [SimulatedCert],
    ) -> Result<VerifiedEvidence> {
        let q = parse_quote(ev.quote)?;
        let supplied = ev.root.map(|r| classify_root(r, opts, sims)).transpose()?;
        let pck_entry =
            self.verified_pck(q.pck_chain_pem, supplied.unwrap_or(EMBEDDED), sims, opts.trusts_simulator())?;
        let pck = &pck_entry.1;
        if pck.anchor.simulated && !opts.trusts_simulator() {
            return Err(Error::SimulatedRoot { root: pck.anchor.name.to_string() });
        }
        if let Some(s) = supplied {
            if s.der != pck.anchor.der {
                return Err(Error::chain(format!(
                    "the quote's PCK chain leads to {}, not to the supplied root {}",
                    pck.anchor.name, s.name
                )));
            }
        }
        let at = opts.at.unix_timestamp();
        for w in &pck.windows {
            w.check(at)?;
        }

        verify_p256(
            &pck.leaf_key,
            q.qe_report_bytes(),
            &q.qe_report_signature,
            "QE report signature by the PCK certificate key",
        )?;
        let mut expected = [0u8; 64];
        let digest = sha256(&[&q.attestation_key, q.qe_auth_data]);
        for (e, d) in expected.iter_mut().zip(digest) {
            *e = d;
        }
        if q.qe_report.report_data != expected {
            return Err(Error::Binding(format!(
                "QE report data {} is not SHA-256(attestation key ‖ QE authentication data) ‖ 0^32 = {}",
                hex::encode(q.qe_report.report_data),
                hex::encode(expected)
            )));
        }
        let mut att_key = [4u8; 65];
        for (k, b) in att_key.iter_mut().skip(1).zip(q.attestation_key) {
            *k = b;
        }
        verify_p256(&att_key, q.signed_region(), &q.signature, "TD quote signature by the attestation key")?;
        if q.qe_report.attributes.first().is_some_and(|a| a & 0x02 != 0) {
            return Err(Error::Tcb("QE report: the quoting enclave runs in debug mode".into()));
        }
        opts.check_report_data(&q.td_report.report_data)?;

        let verdict = match ev.collateral {
            None => None,
            Some(c) => Some(self.appraise_collateral(&q, pck, c, at)?),
        };

        let claims = claims(&q, pck, verdict.as_ref());
        let mut out = VerifiedEvidence::new(Tee::Tdx, pck.anchor.simulated, Claims::Tdx(claims));
        if q.trailing_len() > 0 {
            out = out.note(format!(
                "TDX quote: {} bytes after the declared end of the signature data were ignored",
                q.trailing_len()
            ));
        }
        if verdict.is_none() {
            out = out
                .not_evaluated("TCB status: not evaluated, no collateral")
                .not_evaluated("QE identity: not evaluated, no collateral");
        }
        Ok(out)
    }

    fn appraise_collateral(
        &self,
        q: &Quote<'_>,
        pck: &VerifiedPck,
        c: &Collateral,
        at: i64,
    ) -> Result<tcb::TcbVerdict> {
        let entry = self.verified_collateral(c, pck.anchor)?;
        let vc = &entry.1;
        for w in &vc.windows {
            w.check(at)?;
        }
        if vc.pck_crl_issuer_subject != pck.ca_subject || vc.pck_crl_issuer_spki != pck.ca_spki {
            return Err(Error::Collateral(
                "the PCK CRL is issued by another CA than the quote's PCK certificate (Platform vs Processor CA?)"
                    .into(),
            ));
        }
        if vc.pck_crl_revoked.contains(&pck.leaf_serial) {
            return Err(Error::chain(format!(
                "PCK certificate (serial {}) is revoked by the PCK CRL",
                hex::encode(&pck.leaf_serial)
            )));
        }
        if vc.root_crl_revoked.contains(&pck.ca_serial) {
            return Err(Error::chain(format!(
                "PCK CA certificate (serial {}) is revoked by the root CA CRL",
                hex::encode(&pck.ca_serial)
            )));
        }
        if vc.tcb_info.fmspc != pck.ext.fmspc {
            return Err(Error::Tcb(format!(
                "FMSPC mismatch: the TCB info is for {}, the PCK certificate says {}",
                hex::encode(vc.tcb_info.fmspc),
                hex::encode(pck.ext.fmspc)
            )));
        }
        if vc.tcb_info.pce_id != pck.ext.pce_id {
            return Err(Error::Tcb(format!(
                "PCEID mismatch: the TCB info is for {}, the PCK certificate says {}",
                hex::encode(vc.tcb_info.pce_id),
                hex::encode(pck.ext.pce_id)
            )));
        }
        let qe_level = tcb::match_qe(&vc.qe_identity, &q.qe_report)?;
        let r = &q.td_report;
        let platform = tcb::Platform {
            cpu_svn: &pck.ext.cpu_svn,
            pce_svn: pck.ext.pce_svn,
            tee_tcb_svn: &r.tee_tcb_svn,
            tee_tcb_svn2: r.td15.as_ref().map(|t| &t.tee_tcb_svn2),
            mr_signer_seam: &r.mr_signer_seam,
            seam_attributes: &r.seam_attributes,
        };
        tcb::evaluate_tdx(&vc.tcb_info, &vc.qe_identity, &platform, &qe_level)
    }
}

fn claims(q: &Quote<'_>, pck: &VerifiedPck, verdict: Option<&tcb::TcbVerdict>) -> TdxClaims {
    let r = &q.td_report;
    let [rtmr0, rtmr1, rtmr2, rtmr3] = &r.rtmr;
    TdxClaims {
        version: q.header.version,
        tee_type: "tdx",
        body_type: q.body_type,
        tee_tcb_svn: hex::encode(r.tee_tcb_svn),
        mr_seam: hex::encode(r.mr_seam),
        mr_signer_seam: hex::encode(r.mr_signer_seam),
        seam_attributes: hex::encode(r.seam_attributes),
        td_attributes: hex::encode(r.td_attributes),
        td_attributes_flags: TdAttributes::decode(r.td_attributes),
        xfam: hex::encode(r.xfam),
        mr_td: hex::encode(r.mr_td),
        mr_config_id: hex::encode(r.mr_config_id),
        mr_owner: hex::encode(r.mr_owner),
        mr_owner_config: hex::encode(r.mr_owner_config),
        rtmr0: hex::encode(rtmr0),
        rtmr1: hex::encode(rtmr1),
        rtmr2: hex::encode(rtmr2),
        rtmr3: hex::encode(rtmr3),
        report_data: hex::encode(r.report_data),
        tee_tcb_svn2: r.td15.as_ref().map(|t| hex::encode(t.tee_tcb_svn2)),
        mr_servicetd: r.td15.as_ref().map(|t| hex::encode(t.mr_servicetd)),
        fmspc: hex::encode(pck.ext.fmspc),
        pce_id: hex::encode(pck.ext.pce_id),
        pce_svn: pck.ext.pce_svn,
        cpu_svn: hex::encode(pck.ext.cpu_svn),
        tcb_status: verdict.map(|v| v.status),
        tcb_date: verdict.map(|v| v.tcb_date.clone()),
        advisory_ids: verdict.map(|v| v.advisory_ids.clone()).unwrap_or_default(),
        qe_tcb_status: verdict.map(|v| v.qe_status),
        tcb_evaluation_data_number: verdict.map(|v| v.evaluation_data_number),
        trailing_bytes: q.trailing_len(),
    }
}

impl Verifier for TdxVerifier {
    type Evidence<'a> = TdxEvidence<'a>;

    fn verify(&self, evidence: &TdxEvidence<'_>, options: &Options) -> Result<VerifiedEvidence> {
        self.verify_with(evidence, options, danger::intel_roots())
    }
}

/// Fuzzing entry: parse and verify arbitrary quote bytes. Never panics.
#[doc(hidden)]
pub fn fuzz_quote(data: &[u8]) {
    if parse_quote(data).is_ok() {
        let opts = Options::at(time::OffsetDateTime::UNIX_EPOCH);
        let ev = TdxEvidence { quote: data, collateral: None, root: None };
        let _ = TdxVerifier::default().verify(&ev, &opts);
    }
}

/// Fuzzing entry: parse arbitrary collateral JSON and everything inside it, and
/// verify it against the embedded root. Never panics.
#[doc(hidden)]
pub fn fuzz_collateral(data: &[u8]) {
    if let Ok(c) = Collateral::from_json(data) {
        collateral::parse_all(&c);
        let _ = collateral::verify(&c, &EMBEDDED);
    }
}
