//! The relying party's side of attested TLS: verifies a Veil runtime's RA-TLS
//! certificate ([`veil_kbs::ratls`]) and, as a rustls [`ServerCertVerifier`], refuses
//! the handshake unless the evidence verifies and satisfies the client's policy —
//! before a single byte of a prompt is sent.
//!
//! ```text
//!   certificate ─► extension 2.23.133.5.4.9 ─► #6.tag([raw, claims])
//!     1. pubkey-hash        == SHA-256(the certificate's DER SubjectPublicKeyInfo)
//!     2. runtime-data        nonce starts "veil-ra-tls/v1:", tee-pubkey == the certificate's key
//!     3. report data         == SHA-384(JCS{additional-evidence, nonce, tee-pubkey}) ‖ 0^16
//!        evidence            verified to AMD / Intel roots (simulated roots only if allowed),
//!                            composite TPM quote and event log checked (the broker's verifier)
//!     4. raw                 == the report / quote that verified
//!     5. policy              measurements, debug, models and signers the event log names
//!   then the TLS 1.3 handshake signature is checked with the certificate's key.
//! ```
//!
//! The server name is not checked: what identifies the server is its evidence, not a
//! DNS name, and the certificate is self-signed by design.

use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use veil_kbs::ratls::{self, CertEvidence};
use veil_kbs::{Tee, TeePubKey};

use crate::evidence::{Appraised, Verifiers};

/// Why a runtime's certificate was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertRefusal {
    /// Not a certificate, or no usable evidence extension.
    #[error("certificate: {0}")]
    Certificate(String),
    /// The extension is malformed.
    #[error(transparent)]
    Extension(#[from] ratls::RaTlsError),
    /// The evidence does not bind this certificate's key.
    #[error("binding: {0}")]
    Binding(String),
    /// The evidence did not verify.
    #[error("evidence: {0}")]
    Evidence(String),
    /// The evidence verified, but the client's policy refuses it.
    #[error("policy: {0}")]
    Policy(String),
}

/// What a relying party requires of a runtime: `veil verify --policy P.toml`, `veil
/// proxy --policy P.toml`, or built in code. The default accepts any genuine,
/// non-debug, hardware (never simulated) SEV-SNP or TDX runtime at an up-to-date TCB,
/// whatever it serves; a real policy names measurements, models and signers.
///
/// ```toml
/// tee = ["snp", "tdx"]              # accepted TEE types (default: these two)
/// allow_simulated = false           # the simulator's roots prove nothing: tests only
/// allow_debug = false
/// measurements = ["<hex>"]          # SNP MEASUREMENT / TDX MRTD; empty: any
/// tdx_tcb_status = ["UpToDate"]     # accepted TDX TCB statuses (default: UpToDate)
/// containers = ["sha256:<hex>"]     # container images the event log may name; empty: any
/// models = ["sha256:<hex>"]         # model manifests that must be loaded
/// signers = ["sha256:<hex>"]        # every loaded model's signer must be one; empty: any
/// [min_snp_tcb]                     # SNP reported TCB at least this (each SVN)
/// bootloader = 4
/// tee = 0
/// snp = 22
/// microcode = 213
/// ```
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientPolicy {
    /// Accepted TEE types, as the broker protocol names them. Empty: `snp` and `tdx`.
    pub tee: Vec<String>,
    /// Accept evidence chained to the simulator's roots. Never in production; the
    /// verified result then says `simulated: true`.
    #[serde(rename = "allow_simulated")]
    pub danger_trust_simulator: bool,
    /// Accept a debug guest.
    pub allow_debug: bool,
    /// Allowed launch measurements (SNP MEASUREMENT / TDX MRTD, hex). Empty: any.
    pub measurements: Vec<String>,
    /// The lowest SNP reported TCB accepted, SVN by SVN.
    pub min_snp_tcb: Option<SnpTcb>,
    /// Accepted TDX TCB statuses. Empty: `UpToDate` only.
    pub tdx_tcb_status: Vec<String>,
    /// Container image digests (`sha256:<hex>`) the runtime may run. Empty: any.
    pub containers: Vec<String>,
    /// Model manifest digests (`sha256:<hex>`) the event log must show loaded.
    pub models: Vec<String>,
    /// Model signers (`sha256:<hex>`): every loaded model's signer must be one of these.
    /// Empty: any.
    pub signers: Vec<String>,
}

/// An SNP TCB version, by component SVN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnpTcb {
    /// Boot loader SVN.
    pub bootloader: u8,
    /// PSP OS (TEE) SVN.
    pub tee: u8,
    /// SNP firmware SVN.
    pub snp: u8,
    /// Microcode SVN.
    pub microcode: u8,
}

impl ClientPolicy {
    /// Reads a policy file (TOML).
    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Parses a policy (TOML), checking that every digest and measurement is hex.
    pub fn parse(text: &str) -> Result<Self, String> {
        let p: Self = toml::from_str(text).map_err(|e| e.to_string())?;
        for m in &p.measurements {
            if m.is_empty() || hex::decode(m).is_err() {
                return Err(format!("measurement {m:?} is not hex"));
            }
        }
        for (what, list) in [("container", &p.containers), ("model", &p.models), ("signer", &p.signers)] {
            for d in list {
                let ok = d.strip_prefix("sha256:").is_some_and(|h| h.len() == 64 && hex::decode(h).is_ok());
                if !ok {
                    return Err(format!("{what} {d:?} is not sha256:<64 hex digits>"));
                }
            }
        }
        for t in &p.tee {
            if !["snp", "tdx", "az-snp-vtpm", "az-tdx-vtpm", "tpm"].contains(&t.as_str()) {
                return Err(format!("tee {t:?} is not a TEE type (snp, tdx, az-snp-vtpm, az-tdx-vtpm, tpm)"));
            }
        }
        Ok(p)
    }
}

/// One line of a policy report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was found, and why it failed if it did.
    pub detail: String,
}

/// Every policy check on verified evidence, passed or not (for a report).
pub fn evaluate(a: &Appraised, policy: &ClientPolicy) -> Vec<Check> {
    let mut out = Vec::new();
    let mut check = |name: &'static str, ok: bool, detail: String| out.push(Check { name, ok, detail });

    let tees: Vec<&str> =
        if policy.tee.is_empty() { vec!["snp", "tdx"] } else { policy.tee.iter().map(String::as_str).collect() };
    let tee_ok = tees.iter().any(|t| *t == a.tee);
    check("tee", tee_ok, if tee_ok { a.tee.clone() } else { format!("{} is not one of {}", a.tee, tees.join(", ")) });

    let (ok, detail) = match (a.simulated, policy.danger_trust_simulator) {
        (false, _) => (true, "hardware roots (AMD / Intel)".to_owned()),
        (true, true) => (true, "SIMULATED roots, accepted because the policy allows simulated evidence".to_owned()),
        (true, false) => (false, "SIMULATED roots: the policy does not accept simulated evidence".to_owned()),
    };
    check("roots", ok, detail);

    let ok = !a.debug || policy.allow_debug;
    check(
        "debug",
        ok,
        if a.debug { "a debug guest (the host can read its memory)".into() } else { "not a debug guest".into() },
    );

    let m = a.measurement.clone().unwrap_or_default();
    if policy.measurements.is_empty() {
        check("measurement", true, format!("{m} (the policy accepts any)"));
    } else {
        let ok = policy.measurements.iter().any(|x| x.eq_ignore_ascii_case(&m));
        check("measurement", ok, if ok { m } else { format!("{m} is not one of the allowed") });
    }

    match a.tee.as_str() {
        "snp" | "az-snp-vtpm" => {
            let got: Option<SnpTcb> = a.snp_tcb.clone().and_then(|v| serde_json::from_value(v).ok());
            match (policy.min_snp_tcb, got) {
                (None, _) => {
                    check("tcb", true, format!("{} (no minimum in the policy)", a.tcb.as_deref().unwrap_or("-")))
                }
                (Some(min), Some(got)) => {
                    let ok = got.bootloader >= min.bootloader
                        && got.tee >= min.tee
                        && got.snp >= min.snp
                        && got.microcode >= min.microcode;
                    let d = format!(
                        "bootloader {} tee {} snp {} microcode {}",
                        got.bootloader, got.tee, got.snp, got.microcode
                    );
                    check("tcb", ok, if ok { d } else { format!("{d} is below the policy's minimum") });
                }
                (Some(_), None) => check("tcb", false, "the evidence reports no SNP TCB".into()),
            }
        }
        "tdx" | "az-tdx-vtpm" => {
            let allowed: Vec<&str> = if policy.tdx_tcb_status.is_empty() {
                vec!["UpToDate"]
            } else {
                policy.tdx_tcb_status.iter().map(String::as_str).collect()
            };
            let status = a.tcb.clone().unwrap_or_default();
            let ok = allowed.contains(&status.as_str());
            check(
                "tcb",
                ok,
                if ok { status } else { format!("TCB status {status:?} is not one of {}", allowed.join(", ")) },
            );
        }
        _ => check("tcb", true, a.tcb.clone().unwrap_or_else(|| "-".into())),
    }

    use veil_attestation::runtime_log::types;
    let events = a.runtime_events.as_ref();
    let of = |ty: &str| -> Vec<&str> {
        events
            .map(|e| e.events.iter().filter(|e| e.event_type == ty).map(|e| e.content.as_str()).collect())
            .unwrap_or_default()
    };
    let no_log = "the evidence carries no event log, so it cannot say what the runtime loaded".to_owned();
    let listed = |want: &[String], got: &str| want.iter().any(|w| w.eq_ignore_ascii_case(got));

    let containers = of(types::CONTAINER_IMAGE);
    if policy.containers.is_empty() {
        check(
            "container",
            true,
            if containers.is_empty() {
                "none named (the policy accepts any)".into()
            } else {
                format!("{} (the policy accepts any)", containers.join(", "))
            },
        );
    } else if events.is_none() {
        check("container", false, no_log.clone());
    } else if containers.is_empty() {
        check("container", false, "the event log names no container image".into());
    } else {
        let bad: Vec<&str> = containers.iter().copied().filter(|c| !listed(&policy.containers, c)).collect();
        check(
            "container",
            bad.is_empty(),
            if bad.is_empty() { containers.join(", ") } else { format!("{} not allowed", bad.join(", ")) },
        );
    }

    let loaded = of(types::MODEL_MANIFEST);
    if policy.models.is_empty() {
        check(
            "model",
            true,
            if loaded.is_empty() {
                "none named (the policy requires none)".into()
            } else {
                format!("{} (the policy requires none)", loaded.join(", "))
            },
        );
    } else if events.is_none() {
        check("model", false, no_log.clone());
    } else {
        let missing: Vec<&str> = policy
            .models
            .iter()
            .map(String::as_str)
            .filter(|w| !loaded.iter().any(|l| l.eq_ignore_ascii_case(w)))
            .collect();
        check(
            "model",
            missing.is_empty(),
            if missing.is_empty() {
                loaded.join(", ")
            } else {
                format!("model {} is not in the runtime's event log", missing.join(", "))
            },
        );
    }

    let signers = of(types::MODEL_SIGNER);
    if policy.signers.is_empty() {
        check(
            "signer",
            true,
            if signers.is_empty() {
                "none named (the policy accepts any)".into()
            } else {
                format!("{} (the policy accepts any)", signers.join(", "))
            },
        );
    } else if events.is_none() {
        check("signer", false, no_log);
    } else {
        let bad: Vec<&str> = signers.iter().copied().filter(|s| !listed(&policy.signers, s)).collect();
        check(
            "signer",
            bad.is_empty(),
            if bad.is_empty() {
                signers.join(", ")
            } else {
                format!("a loaded model is signed by {}, not an allowed signer", bad.join(", "))
            },
        );
    }
    out
}

/// A certificate that passed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifiedRuntime {
    /// The verified evidence and its event log.
    pub appraisal: Appraised,
    /// SHA-256 of the certificate, hex (pin it for later connections).
    pub certificate_sha256: String,
    /// The certificate evidence's issue time (from the runtime-data nonce), Unix seconds.
    pub issued_at: u64,
    /// The certificate's key, as the runtime data names it.
    pub tee_pubkey: TeePubKey,
    /// The launch identity from init-data the hardware binds (HOSTDATA / MRCONFIGID),
    /// when the runtime was launched with one.
    pub launch_identity: Option<veil_kbs::initdata::LaunchIdentity>,
}

/// Init-data sent with evidence must be what the verified launch field binds.
fn check_init_data(
    init: Option<&veil_kbs::InitDataField>,
    a: &Appraised,
) -> Result<Option<veil_kbs::initdata::LaunchIdentity>, CertRefusal> {
    let Some(init) = init else { return Ok(None) };
    if init.format != "toml" {
        return Err(CertRefusal::Binding(format!("init-data format {:?}", init.format)));
    }
    let parsed = veil_kbs::initdata::parse(&init.body).map_err(|e| CertRefusal::Binding(e.to_string()))?;
    let field = a
        .init_data
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .ok_or_else(|| CertRefusal::Binding("the evidence has no init-data launch field".into()))?;
    parsed.check_launch_field(&field).map_err(|e| CertRefusal::Binding(e.to_string()))?;
    Ok(parsed.identity)
}

/// The certificate's EC P-256 point, checked against the JWK in the runtime data.
fn check_key(jwk: &TeePubKey, spki_key: &[u8]) -> Result<(), CertRefusal> {
    let TeePubKey::EC { crv, x, y, .. } = jwk else {
        return Err(CertRefusal::Binding("tee-pubkey is not an EC key".into()));
    };
    if crv != "P-256" {
        return Err(CertRefusal::Binding(format!("tee-pubkey curve {crv}, expected P-256")));
    }
    let dec =
        |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| CertRefusal::Binding("tee-pubkey is not base64url".into()));
    let mut point = vec![4u8];
    point.extend(dec(x)?);
    point.extend(dec(y)?);
    if point != spki_key {
        return Err(CertRefusal::Binding("tee-pubkey in the runtime data is not the certificate's key".into()));
    }
    Ok(())
}

/// The raw evidence element must be the report / quote inside the verified JSON.
fn check_raw(ev: &CertEvidence) -> Result<(), CertRefusal> {
    let primary = &ev.attestation.tee_evidence.primary_evidence;
    let inner = match ev.tee {
        Tee::Snp => veil_attestation::snp::json::report_from_trustee_value(primary)
            .map_err(|e| CertRefusal::Evidence(e.to_string()))?,
        Tee::Tdx => primary
            .get("quote")
            .and_then(serde_json::Value::as_str)
            .and_then(|q| STANDARD.decode(q).ok())
            .ok_or_else(|| CertRefusal::Evidence("tdx evidence without a base64 quote".into()))?,
        other => return Err(CertRefusal::Evidence(format!("TEE {other:?} in a certificate"))),
    };
    if inner != ev.raw {
        return Err(CertRefusal::Binding("the raw evidence differs from the evidence that verified".into()));
    }
    Ok(())
}

/// The first failed check of [`evaluate`], as a refusal.
pub fn check_policy(a: &Appraised, policy: &ClientPolicy) -> Result<(), CertRefusal> {
    match evaluate(a, policy).into_iter().find(|c| !c.ok) {
        Some(c) => Err(CertRefusal::Policy(format!("{}: {}", c.name, c.detail))),
        None => Ok(()),
    }
}

/// Verifies a runtime certificate (DER) against `policy`.
pub fn verify_certificate(
    cert_der: &[u8],
    policy: &ClientPolicy,
    verifiers: &Verifiers,
    now: time::OffsetDateTime,
) -> Result<VerifiedRuntime, CertRefusal> {
    let v = verify_certificate_evidence(cert_der, policy.danger_trust_simulator, verifiers, now)?;
    check_policy(&v.appraisal, policy)?;
    Ok(v)
}

/// Verifies a runtime certificate's evidence and its bindings (key, report data, raw
/// evidence, init-data), but not a relying party's policy: for a report that lists every
/// policy check ([`evaluate`]). `trust_simulator` lets simulated evidence verify so
/// that the report can say so; nothing may be sent to a runtime on this alone.
pub fn verify_certificate_evidence(
    cert_der: &[u8],
    trust_simulator: bool,
    verifiers: &Verifiers,
    now: time::OffsetDateTime,
) -> Result<VerifiedRuntime, CertRefusal> {
    let (rest, cert) =
        x509_parser::parse_x509_certificate(cert_der).map_err(|e| CertRefusal::Certificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CertRefusal::Certificate("trailing bytes after the certificate".into()));
    }
    let validity = cert.validity();
    if now < validity.not_before.to_datetime() || now > validity.not_after.to_datetime() {
        return Err(CertRefusal::Certificate("outside its validity period".into()));
    }
    let oid = x509_parser::oid_registry::Oid::from(&ratls::OID_TAGGED_EVIDENCE)
        .map_err(|_| CertRefusal::Certificate("OID".into()))?;
    let mut found = cert.extensions().iter().filter(|e| e.oid == oid);
    let (Some(ext), None) = (found.next(), found.next()) else {
        return Err(CertRefusal::Certificate("not exactly one RA-TLS evidence extension (2.23.133.5.4.9)".into()));
    };
    let spki = cert.public_key();
    let ev = ratls::decode(ext.value)?;
    if !ratls::pubkey_hash_matches(&ev.pubkey_hash, spki.raw) {
        return Err(CertRefusal::Binding("pubkey-hash is not the hash of the certificate's public key".into()));
    }
    let rd = &ev.attestation.runtime_data;
    let issued_at =
        rd.nonce.strip_prefix(ratls::NONCE_PREFIX).and_then(|t| t.parse::<u64>().ok()).ok_or_else(|| {
            CertRefusal::Binding(format!("runtime-data nonce is not {}<seconds>", ratls::NONCE_PREFIX))
        })?;
    check_key(&rd.tee_pubkey, &spki.subject_public_key.data)?;
    let expected = veil_kbs::report_data(rd, &ev.attestation.tee_evidence.additional_evidence)
        .map_err(|e| CertRefusal::Binding(e.to_string()))?;
    let appraisal = verifiers
        .verify(ev.tee, &ev.attestation, &expected, trust_simulator)
        .map_err(|r| CertRefusal::Evidence(r.detail))?;
    check_raw(&ev)?;
    let launch_identity = check_init_data(ev.attestation.init_data.as_ref(), &appraisal)?;
    let certificate_sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(cert_der));
    Ok(VerifiedRuntime { appraisal, certificate_sha256, issued_at, tee_pubkey: rd.tee_pubkey.clone(), launch_identity })
}

/// Checks a runtime's `GET /v1/attestation?nonce=<nonce_hex>` answer: evidence made now
/// for the caller's nonce, binding the key of the certificate that already verified
/// (so the TLS session is with the same attested runtime), and passing `policy`.
pub fn verify_fresh(
    body: &serde_json::Value,
    nonce_hex: &str,
    cert: &VerifiedRuntime,
    policy: &ClientPolicy,
    verifiers: &Verifiers,
) -> Result<Appraised, CertRefusal> {
    let a = verify_fresh_evidence(body, nonce_hex, cert, policy.danger_trust_simulator, verifiers)?;
    check_policy(&a, policy)?;
    Ok(a)
}

/// [`verify_fresh`] without the policy (see [`verify_certificate_evidence`]).
pub fn verify_fresh_evidence(
    body: &serde_json::Value,
    nonce_hex: &str,
    cert: &VerifiedRuntime,
    trust_simulator: bool,
    verifiers: &Verifiers,
) -> Result<Appraised, CertRefusal> {
    let field = |k: &str| body.get(k).ok_or_else(|| CertRefusal::Evidence(format!("the answer has no {k:?}")));
    let tee: Tee = serde_json::from_value(field("tee")?.clone()).map_err(|e| CertRefusal::Evidence(e.to_string()))?;
    let init_data = match body.get("init-data") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => {
            Some(serde_json::from_value(v.clone()).map_err(|e| CertRefusal::Evidence(format!("init-data: {e}")))?)
        }
    };
    let att = veil_kbs::Attestation {
        init_data,
        runtime_data: serde_json::from_value(field("runtime-data")?.clone())
            .map_err(|e| CertRefusal::Evidence(format!("runtime-data: {e}")))?,
        tee_evidence: serde_json::from_value(field("tee-evidence")?.clone())
            .map_err(|e| CertRefusal::Evidence(format!("tee-evidence: {e}")))?,
    };
    if !att.runtime_data.nonce.eq_ignore_ascii_case(nonce_hex) {
        return Err(CertRefusal::Binding("the evidence is not for this nonce".into()));
    }
    let same_key =
        serde_json::to_value(&att.runtime_data.tee_pubkey).ok() == serde_json::to_value(&cert.tee_pubkey).ok();
    if !same_key {
        return Err(CertRefusal::Binding("the fresh evidence binds another key than the TLS certificate's".into()));
    }
    let expected = veil_kbs::report_data(&att.runtime_data, &att.tee_evidence.additional_evidence)
        .map_err(|e| CertRefusal::Binding(e.to_string()))?;
    let appraisal =
        verifiers.verify(tee, &att, &expected, trust_simulator).map_err(|r| CertRefusal::Evidence(r.detail))?;
    let identity = check_init_data(att.init_data.as_ref(), &appraisal)?;
    if identity != cert.launch_identity {
        return Err(CertRefusal::Binding(
            "the fresh evidence names another launch identity than the certificate".into(),
        ));
    }
    Ok(appraisal)
}

/// A rustls verifier that accepts a server only if its certificate's evidence passes
/// [`verify_certificate`]. One certificate is verified once per verifier and then
/// recognised by its bytes.
pub struct RaTlsVerifier {
    policy: ClientPolicy,
    verifiers: Verifiers,
    provider: Arc<rustls::crypto::CryptoProvider>,
    last: Mutex<Option<(Vec<u8>, VerifiedRuntime)>>,
    /// Verify every handshake, even of a certificate verified before.
    every_handshake: bool,
    /// Apply the policy in the handshake (else only the evidence and its bindings, for
    /// a report: see [`RaTlsVerifier::report_only`]).
    enforce: bool,
    /// Why the last refused certificate was refused.
    last_refusal: Mutex<Option<String>>,
}

impl std::fmt::Debug for RaTlsVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaTlsVerifier").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl RaTlsVerifier {
    /// A verifier enforcing `policy`.
    pub fn new(policy: ClientPolicy) -> Self {
        Self {
            policy,
            verifiers: Verifiers::default(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            last: Mutex::new(None),
            every_handshake: false,
            enforce: true,
            last_refusal: Mutex::new(None),
        }
    }

    /// Verifies the certificate on every handshake, not once per certificate: a proxy
    /// re-checks each new connection (the evidence's validity and the policy as of now).
    #[must_use]
    pub fn every_handshake(mut self) -> Self {
        self.every_handshake = true;
        self
    }

    /// A verifier for a report (`veil verify`): the handshake requires verified evidence
    /// that binds the certificate's key (simulated evidence included, so the report can
    /// say what it is), but not the policy; the caller evaluates the policy on
    /// [`RaTlsVerifier::verified`] with [`evaluate`] and sends nothing unless it passes.
    pub fn report_only(policy: ClientPolicy) -> Self {
        Self { enforce: false, ..Self::new(policy) }
    }

    /// Why the last refused certificate was refused.
    pub fn last_refusal(&self) -> Option<String> {
        self.last_refusal.lock().ok().and_then(|l| l.clone())
    }

    /// The evidence verifiers (for [`verify_fresh`]).
    pub fn verifiers(&self) -> &Verifiers {
        &self.verifiers
    }

    /// The policy.
    pub fn policy(&self) -> &ClientPolicy {
        &self.policy
    }

    /// The last accepted certificate, DER.
    pub fn verified_der(&self) -> Option<Vec<u8>> {
        self.last.lock().ok().and_then(|l| l.as_ref().map(|(d, _)| d.clone()))
    }

    /// What the last accepted certificate proved.
    pub fn verified(&self) -> Option<VerifiedRuntime> {
        self.last.lock().ok().and_then(|l| l.as_ref().map(|(_, v)| v.clone()))
    }

    /// A rustls client configuration (TLS 1.3) that uses this verifier.
    pub fn client_config(self: &Arc<Self>) -> Result<rustls::ClientConfig, rustls::Error> {
        Ok(rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_no_client_auth())
    }
}

impl ServerCertVerifier for RaTlsVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let der = end_entity.as_ref();
        if !self.every_handshake
            && let Ok(last) = self.last.lock()
            && last.as_ref().is_some_and(|(d, _)| d.as_slice() == der)
        {
            return Ok(ServerCertVerified::assertion());
        }
        let now = i64::try_from(now.as_secs())
            .ok()
            .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .ok_or_else(|| rustls::Error::General("clock".into()))?;
        let result = if self.enforce {
            verify_certificate(der, &self.policy, &self.verifiers, now)
        } else {
            verify_certificate_evidence(der, true, &self.verifiers, now)
        };
        match result {
            Ok(v) => {
                if v.appraisal.simulated && self.enforce {
                    tracing::warn!("the runtime's evidence is SIMULATED: accepted only because the policy says so");
                }
                if let Ok(mut last) = self.last.lock() {
                    *last = Some((der.to_vec(), v));
                }
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => {
                tracing::warn!(reason = %e, "the server's certificate was refused");
                if let Ok(mut l) = self.last_refusal.lock() {
                    *l = Some(e.to_string());
                }
                Err(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(Arc::new(e)))))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Fuzz entry: an untrusted certificate through the whole check. Must never panic.
#[doc(hidden)]
pub fn fuzz_certificate(data: &[u8]) {
    let policy = ClientPolicy { danger_trust_simulator: true, ..ClientPolicy::default() };
    let _ = verify_certificate(data, &policy, &Verifiers::default(), time::OffsetDateTime::now_utc());
}

#[cfg(test)]
mod tests {
    use super::*;
    use veil_kbs::{Attestation, CompositeEvidence, RuntimeData};

    /// A P-256 key pair and its JWK.
    fn key() -> (rcgen::KeyPair, TeePubKey) {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = rcgen::PublicKeyData::der_bytes(&kp).to_vec();
        let jwk = TeePubKey::EC {
            crv: "P-256".into(),
            alg: "ES256".into(),
            x: URL_SAFE_NO_PAD.encode(&point[1..33]),
            y: URL_SAFE_NO_PAD.encode(&point[33..65]),
        };
        (kp, jwk)
    }

    /// A self-signed certificate with `ext` (if any) as the evidence extension.
    fn cert(kp: &rcgen::KeyPair, exts: &[Vec<u8>]) -> Vec<u8> {
        let mut p = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        for e in exts {
            p.custom_extensions.push(rcgen::CustomExtension::from_oid_content(&ratls::OID_TAGGED_EVIDENCE, e.clone()));
        }
        p.self_signed(kp).unwrap().der().to_vec()
    }

    fn attestation(nonce: &str, jwk: &TeePubKey) -> Attestation {
        Attestation {
            init_data: None,
            runtime_data: RuntimeData { nonce: nonce.into(), tee_pubkey: jwk.clone() },
            tee_evidence: CompositeEvidence {
                primary_evidence: serde_json::json!({"quote": "AA=="}),
                additional_evidence: String::new(),
            },
        }
    }

    fn check(der: &[u8]) -> Result<VerifiedRuntime, CertRefusal> {
        let policy = ClientPolicy { danger_trust_simulator: true, ..ClientPolicy::default() };
        verify_certificate(der, &policy, &Verifiers::default(), time::OffsetDateTime::now_utc())
    }

    /// Each binding check refuses with its own reason, in order, before any evidence is
    /// trusted; a certificate that passes them all still needs evidence that verifies.
    #[test]
    fn certificates_are_refused_for_each_broken_binding() {
        let (kp, jwk) = key();
        let spki = rcgen::PublicKeyData::subject_public_key_info(&kp);
        let nonce = format!("{}1", ratls::NONCE_PREFIX);
        let ext = |nonce: &str, jwk: &TeePubKey, spki: &[u8]| {
            ratls::encode(Tee::Tdx, b"q", spki, &attestation(nonce, jwk)).unwrap()
        };
        let reason = |der: &[u8]| check(der).unwrap_err().to_string();

        assert!(reason(b"not a certificate").starts_with("certificate:"));
        assert!(reason(&cert(&kp, &[])).contains("not exactly one"));
        let good = ext(&nonce, &jwk, &spki);
        assert!(reason(&cert(&kp, &[good.clone(), good.clone()])).contains("not exactly one"));
        assert!(reason(&cert(&kp, &[vec![0xff]])).contains("RA-TLS evidence"));
        // The hash of another key.
        let (other, other_jwk) = key();
        let other_spki = rcgen::PublicKeyData::subject_public_key_info(&other);
        assert!(reason(&cert(&kp, &[ext(&nonce, &jwk, &other_spki)])).contains("pubkey-hash"));
        // A nonce without the certificate prefix (evidence made for a broker session).
        assert!(reason(&cert(&kp, &[ext("c2Vzc2lvbg==", &jwk, &spki)])).contains("nonce"));
        // The runtime data names another key than the certificate's.
        assert!(reason(&cert(&kp, &[ext(&nonce, &other_jwk, &spki)])).contains("not the certificate's key"));
        // Everything bound: now the evidence itself is checked (and this is no quote).
        assert!(reason(&cert(&kp, &[good])).starts_with("evidence:"));
    }

    #[test]
    fn client_policy_and_init_data_checks() {
        use crate::evidence::{InitDataRule, RuntimeEvents};
        use veil_attestation::runtime_log::{Event, Register, types};
        let ev = |ty: &str, c: &str| Event::new(Register::VEIL_RTMR, ty, c);
        let a = Appraised {
            tee: "tdx".into(),
            simulated: true,
            debug: false,
            measurement: Some("aa".into()),
            tcb: Some("UpToDate".into()),
            snp_tcb: None,
            init_data: Some(hex::encode([0u8; 48])),
            init_data_rule: InitDataRule::LaunchField,
            tpm: None,
            runtime_events: Some(RuntimeEvents {
                bound_by: "registers",
                events: vec![
                    ev(types::CONTAINER_IMAGE, "sha256:0c"),
                    ev(types::MODEL_MANIFEST, "sha256:01"),
                    ev(types::MODEL_SIGNER, "sha256:02"),
                ],
            }),
            report_data: String::new(),
            claims: serde_json::Value::Null,
            not_evaluated: vec![],
        };
        let p = |f: fn(&mut ClientPolicy)| {
            let mut p = ClientPolicy { danger_trust_simulator: true, ..ClientPolicy::default() };
            f(&mut p);
            check_policy(&a, &p).map_err(|e| e.to_string())
        };
        p(|_| {}).unwrap();
        // Simulated evidence only with the policy's opt-in; the report says which.
        let strict = check_policy(&a, &ClientPolicy::default()).unwrap_err().to_string();
        assert!(strict.contains("roots: SIMULATED"), "{strict}");
        let report = evaluate(&a, &ClientPolicy::default());
        assert_eq!(report.iter().filter(|c| !c.ok).map(|c| c.name).collect::<Vec<_>>(), ["roots"]);
        assert!(p(|p| p.tee = vec!["snp".into()]).unwrap_err().contains("tee: tdx is not one of snp"));
        p(|p| p.containers = vec!["sha256:0C".into()]).unwrap();
        assert!(p(|p| p.containers = vec!["sha256:0d".into()]).unwrap_err().contains("sha256:0c not allowed"));
        let mut old_tcb = a.clone();
        old_tcb.tcb = Some("OutOfDate".into());
        let lax = ClientPolicy { danger_trust_simulator: true, ..ClientPolicy::default() };
        assert!(check_policy(&old_tcb, &lax).unwrap_err().to_string().contains("OutOfDate"));
        let listed = ClientPolicy { tdx_tcb_status: vec!["OutOfDate".into()], ..lax.clone() };
        check_policy(&old_tcb, &listed).unwrap();
        let mut snp = a.clone();
        snp.tee = "snp".into();
        snp.snp_tcb = Some(serde_json::json!({"bootloader": 4, "tee": 0, "snp": 22, "microcode": 213}));
        let min = |m: u8| ClientPolicy {
            tee: vec!["snp".into()],
            min_snp_tcb: Some(SnpTcb { bootloader: 4, tee: 0, snp: 22, microcode: m }),
            ..lax.clone()
        };
        check_policy(&snp, &min(213)).unwrap();
        assert!(check_policy(&snp, &min(214)).unwrap_err().to_string().contains("below the policy's minimum"));
        p(|p| p.measurements = vec!["AA".into()]).unwrap();
        assert!(
            p(|p| p.measurements = vec!["bb".into()])
                .unwrap_err()
                .contains("measurement: aa is not one of the allowed")
        );
        p(|p| p.models = vec!["sha256:01".into()]).unwrap();
        assert!(p(|p| p.models = vec!["sha256:09".into()]).unwrap_err().contains("event log"));
        p(|p| p.signers = vec!["sha256:02".into()]).unwrap();
        assert!(p(|p| p.signers = vec!["sha256:03".into()]).unwrap_err().contains("allowed signer"));
        let mut dbg = a.clone();
        dbg.debug = true;
        assert!(check_policy(&dbg, &lax).unwrap_err().to_string().contains("debug"));
        let mut no_log = a.clone();
        no_log.runtime_events = None;
        let models = ClientPolicy { models: vec!["sha256:01".into()], ..lax.clone() };
        assert!(check_policy(&no_log, &models).unwrap_err().to_string().contains("no event log"));

        // Policy files.
        let d = format!("sha256:{}", "ab".repeat(32));
        let text = format!(
            "tee = [\"snp\", \"tdx\"]\nallow_simulated = true\nmeasurements = [\"aa\"]\nmodels = [\"{d}\"]\n\
             signers = [\"{d}\"]\ncontainers = [\"{d}\"]\n[min_snp_tcb]\nbootloader = 1\ntee = 0\nsnp = 2\nmicrocode = 3\n"
        );
        let parsed = ClientPolicy::parse(&text).unwrap();
        assert!(parsed.danger_trust_simulator && parsed.min_snp_tcb.unwrap().microcode == 3);
        assert!(!ClientPolicy::parse("").unwrap().danger_trust_simulator, "simulated evidence is refused by default");
        for (bad, why) in [
            ("allow_simulation = true", "unknown field"),
            ("models = [\"sha256:00\"]", "64 hex"),
            ("measurements = [\"zz\"]", "not hex"),
            ("tee = [\"sgx\"]", "not a TEE type"),
            ("[min_snp_tcb]\nbootloader = 300\ntee = 0\nsnp = 0\nmicrocode = 0", "bootloader"),
        ] {
            let e = ClientPolicy::parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }

        // Init-data must be what the launch field binds.
        let body = "algorithm = \"sha384\"\n".to_owned();
        let init = veil_kbs::InitDataField { format: "toml".into(), body: body.clone() };
        assert!(check_init_data(None, &a).unwrap().is_none());
        assert!(check_init_data(Some(&init), &a).unwrap_err().to_string().contains("launch field"));
        let mut bound = a.clone();
        let mut field = veil_kbs::initdata::parse(&body).unwrap().digest;
        field.resize(48, 0);
        bound.init_data = Some(hex::encode(field));
        assert!(check_init_data(Some(&init), &bound).unwrap().is_none());
        let json = veil_kbs::InitDataField { format: "json".into(), body };
        assert!(check_init_data(Some(&json), &bound).is_err());
    }
}
