//! AMD SEV-SNP: attestation reports (versions 2, 3 and 5) signed by a VCEK or VLEK,
//! whose chain ends at an embedded AMD ARK (Milan, Genoa, Turin).
//!
//! ```text
//!  report bytes ──► parse_report (layout, version, reserved = 0)
//!  VCEK/VLEK + chain ──► [cache: SHA-256(cert ‖ chain)] ──► ARK self-sig, ARK→ASK/ASVK,
//!                         ASK→VCEK / ASVK→VLEK (RSA-PSS SHA-384), AMD extensions
//!  ──► validity @ Options.at ──► ECDSA P-384 over report[0..0x2A0] (the received bytes)
//!  ──► signing key kind, reported TCB == VCEK SPLs, chip ID == hwID ──► report data
//!  ──► VerifiedEvidence { Tee::Snp, Claims::Snp(SnpClaims) }
//! ```
//!
//! Policy bits (debug, SMT, migration agent, ...) are claims here; refusing them is
//! the appraisal's job ([`crate::appraisal`]).

pub mod cert_table;
mod certs;
mod claims;
pub mod json;
mod report;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::crypto::signature::{ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};
use sha2::{Digest, Sha256};

pub use certs::{Product, VekExtensions};
pub use claims::{PlatformInfoClaims, PolicyClaims, SnpCertClaims, SnpClaims, TcbClaims};
pub use report::{
    AttestationReport, Cpuid, FwVersion, KeyInfo, REPORT_SIZE, SIGNED_LEN, SigningKey, TcbLayout, TcbParts, TcbVersion,
    parse_report,
};

use certs::VerifiedChain;

use crate::error::{Error, Result};
use crate::verify::{Claims, Options, Tee, VerifiedEvidence, Verifier};

/// SEV-SNP evidence as received.
#[derive(Debug, Clone, Copy)]
pub struct SnpEvidence<'a> {
    /// The attestation report (1184 bytes; bytes after it are tolerated and noted).
    pub report: &'a [u8],
    /// The VCEK certificate (DER or PEM), when the report is VCEK-signed.
    pub vcek: Option<&'a [u8]>,
    /// The VLEK certificate (DER or PEM), when the report is VLEK-signed.
    pub vlek: Option<&'a [u8]>,
    /// The ASK + ARK (+ ASVK) PEM file, in any order. Every certificate in it must be
    /// byte-identical to an embedded AMD certificate (or a trusted simulated one).
    /// `None`: use the embedded certificates directly.
    pub chain: Option<&'a [u8]>,
}

/// Bound on cached chains; beyond it an arbitrary entry is evicted.
const CACHE_CAPACITY: usize = 64;

/// The SEV-SNP verifier. It caches verified VCEK/VLEK chains (keyed by SHA-256 of
/// the certificate and chain bytes), so a repeat verification costs one ECDSA
/// P-384 check plus the validity, TCB and chip-ID comparisons.
pub struct SnpVerifier {
    cache: Mutex<HashMap<[u8; 32], Arc<VerifiedChain>>>,
    store: certs::TrustStore,
}

impl Default for SnpVerifier {
    fn default() -> Self {
        SnpVerifier { cache: Mutex::new(HashMap::new()), store: certs::TrustStore::standard() }
    }
}

impl std::fmt::Debug for SnpVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.cache.lock().map(|c| c.len()).unwrap_or(0);
        f.debug_struct("SnpVerifier").field("cached_chains", &n).finish()
    }
}

fn cache_key(cert: &[u8], kind: SigningKey, chain: Option<&[u8]>) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"veil snp chain v1\0");
    h.update([match kind {
        SigningKey::Vcek => 0u8,
        SigningKey::Vlek => 1,
        SigningKey::None => 7,
    }]);
    // Length-prefixed so that (cert, chain) pairs cannot collide by shifting bytes.
    h.update((cert.len() as u64).to_le_bytes());
    h.update(cert);
    match chain {
        Some(c) => {
            h.update([1u8]);
            h.update(c);
        }
        None => h.update([0u8]),
    }
    h.finalize().into()
}

impl SnpVerifier {
    /// A verifier with an empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The verified chain for `cert`, from the cache or verified now (signatures
    /// only; no time). Only successful verifications are cached.
    fn chain(&self, cert: &[u8], kind: SigningKey, chain: Option<&[u8]>, opts: &Options) -> Result<Arc<VerifiedChain>> {
        let key = cache_key(cert, kind, chain);
        if let Ok(cache) = self.cache.lock() {
            if let Some(hit) = cache.get(&key) {
                return Ok(Arc::clone(hit));
            }
        }
        let verified = Arc::new(certs::verify_chain(cert, kind, chain, opts.trusts_simulator(), self.store)?);
        // A poisoned lock is a cache miss, never a panic.
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_CAPACITY {
                if let Some(evict) = cache.keys().next().copied() {
                    cache.remove(&evict);
                }
            }
            cache.insert(key, Arc::clone(&verified));
        }
        Ok(verified)
    }

    /// Verify a VCEK (`is_vlek == false`) or VLEK certificate and its chain to an
    /// AMD root without a report (e.g. a Turin VCEK, for which no report exists in
    /// the vectors). Validity is checked at `opts.at`.
    pub fn verify_chain_only(
        &self,
        cert: &[u8],
        is_vlek: bool,
        chain: &[u8],
        opts: &Options,
    ) -> Result<VerifiedEvidence> {
        let kind = if is_vlek { SigningKey::Vlek } else { SigningKey::Vcek };
        let vc = self.chain(cert, kind, Some(chain), opts)?;
        vc.check_use(opts.at, opts.trusts_simulator())?;
        let layout = vc.product.tcb_layout();
        let (not_before, not_after) = vc
            .windows
            .first()
            .map(|w| (crate::x509::rfc3339(w.not_before), crate::x509::rfc3339(w.not_after)))
            .unwrap_or_default();
        let claims = SnpCertClaims {
            signing_key: kind,
            product: vc.product,
            product_name: vc.extensions.product_name.clone(),
            tcb: TcbClaims::new(vc.extensions.tcb_version(layout), layout),
            hwid: vc.extensions.hwid.clone(),
            csp_id: vc.extensions.csp_id.clone(),
            not_before,
            not_after,
        };
        Ok(VerifiedEvidence::new(Tee::Snp, vc.simulated.is_some(), Claims::SnpCertChain(claims))
            .not_evaluated("SNP report: certificate chain only, no report verified"))
    }
}

impl Verifier for SnpVerifier {
    type Evidence<'a> = SnpEvidence<'a>;

    fn verify(&self, ev: &SnpEvidence<'_>, opts: &Options) -> Result<VerifiedEvidence> {
        let report = parse_report(ev.report)?;
        // The signed region of the bytes received; never a re-encoding.
        let signed = ev.report.get(..SIGNED_LEN).ok_or_else(|| {
            Error::Parse(crate::ParseError::new("SNP attestation report", "length", "shorter than the signed region"))
        })?;
        let trailing = ev.report.len().saturating_sub(REPORT_SIZE);

        let (cert, kind) = match (ev.vcek, ev.vlek) {
            (Some(c), None) => (c, SigningKey::Vcek),
            (None, Some(c)) => (c, SigningKey::Vlek),
            (Some(_), Some(_)) => return Err(Error::chain("SNP evidence carries both a VCEK and a VLEK; give one")),
            (None, None) => return Err(Error::chain("SNP evidence carries neither a VCEK nor a VLEK")),
        };
        match report.key_info.signing_key {
            SigningKey::None => {
                return Err(Error::Signature {
                    what: "SNP report (key_info.signing_key = none: the report is unsigned)",
                });
            }
            k if k != kind => {
                return Err(Error::Binding(format!(
                    "the report says it is signed by the {} but a {} certificate was supplied",
                    k.as_str().to_uppercase(),
                    kind.as_str().to_uppercase()
                )));
            }
            _ => {}
        }

        let vc = self.chain(cert, kind, ev.chain, opts)?;
        vc.check_use(opts.at, opts.trusts_simulator())?;

        let sig = report.signature_p1363();
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, vc.public_key.as_slice()).verify(signed, &sig).map_err(
            |_| Error::Signature {
                what: match kind {
                    SigningKey::Vlek => "SNP report signature by the VLEK",
                    _ => "SNP report signature by the VCEK",
                },
            },
        )?;

        let mut notes = Vec::new();
        check_binding(&report, &vc, &mut notes)?;
        opts.check_report_data(&report.report_data)?;

        let claims = SnpClaims::new(&report, vc.product, &vc.extensions);
        let mut out = VerifiedEvidence::new(Tee::Snp, vc.simulated.is_some(), Claims::Snp(claims));
        if trailing > 0 {
            out = out.note(format!(
                "{trailing} bytes after the {REPORT_SIZE}-byte SNP report were ignored (not signed, not parsed)"
            ));
        }
        for n in notes {
            out = out.note(n);
        }
        Ok(out)
    }
}

/// The report and its VCEK/VLEK must describe the same platform: the reported TCB
/// equals the certificate's SPLs, the chip ID equals the VCEK's hwID, and a v3+
/// report's CPUID belongs to the chain's product line.
fn check_binding(report: &AttestationReport, vc: &VerifiedChain, notes: &mut Vec<String>) -> Result<()> {
    let layout = vc.product.tcb_layout();
    let got = report.reported_tcb.parts(layout);
    let want = vc.extensions.tcb_parts();
    let name = vc.kind.as_str().to_uppercase();
    let mismatch = |field: &str, cert: Option<u8>, rep: Option<u8>| -> Result<()> {
        if cert != rep {
            return Err(Error::Binding(format!(
                "reported_tcb.{field} is {} but the {name} was issued for {}",
                rep.map_or("absent".to_string(), |v| v.to_string()),
                cert.map_or("absent".to_string(), |v| v.to_string()),
            )));
        }
        Ok(())
    };
    mismatch("bootloader", Some(want.bootloader), Some(got.bootloader))?;
    mismatch("tee", Some(want.tee), Some(got.tee))?;
    mismatch("snp", Some(want.snp), Some(got.snp))?;
    mismatch("microcode", Some(want.microcode), Some(got.microcode))?;
    if layout == TcbLayout::Turin {
        mismatch("fmc", want.fmc, got.fmc)?;
    }

    if let Some(c) = report.cpuid {
        if let Some(p) = Product::from_cpuid(c.family, c.model) {
            if p != vc.product {
                return Err(Error::Binding(format!(
                    "the report's CPUID (family {:#x}, model {:#x}) is a {} but the {name} chains to {}",
                    c.family,
                    c.model,
                    p.name(),
                    vc.product.name()
                )));
            }
        }
    }

    if let Some(hwid) = &vc.extensions.hwid {
        if report.chip_id.iter().all(|&b| b == 0) {
            // MASK_CHIP_ID: the host hid the chip ID. The VCEK is chip-unique and
            // signed the report, so the chip is still pinned by the signature.
            notes.push("chip_id is masked (all zero); VCEK hwID not compared".to_string());
        } else {
            // hwID is the chip ID; on Turin it is 8 bytes and the rest of CHIP_ID is zero.
            let (head, tail) = report.chip_id.split_at(hwid.len().min(64));
            if head != hwid.as_slice() || tail.iter().any(|&b| b != 0) {
                return Err(Error::Binding(format!(
                    "chip_id {} does not match the VCEK hwID {}",
                    hex::encode(report.chip_id),
                    hex::encode(hwid)
                )));
            }
        }
    }
    Ok(())
}

/// Fuzzing entry: parse `data` as a report (and as Trustee JSON) and verify it
/// against a fixed VCEK with the embedded Milan chain. Must never panic.
#[doc(hidden)]
pub fn fuzz_report(data: &[u8]) {
    use std::sync::OnceLock;
    static VERIFIER: OnceLock<SnpVerifier> = OnceLock::new();
    const VCEK: &[u8] = include_bytes!("fuzz/vcek_milan.der");
    let verifier = VERIFIER.get_or_init(SnpVerifier::new);
    let at = time::macros::datetime!(2025-06-01 00:00:00 UTC);
    let opts = Options::at(at);
    let ev = SnpEvidence { report: data, vcek: Some(VCEK), vlek: None, chain: None };
    let _ = verifier.verify(&ev, &opts);
    let ev = SnpEvidence { report: data, vcek: None, vlek: Some(VCEK), chain: None };
    let _ = verifier.verify(&ev, &opts);
    if let Ok(bytes) = json::report_from_trustee_json(data) {
        let _ = parse_report(&bytes);
    }
}
