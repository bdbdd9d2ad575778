//! Verifying the `tee-evidence` of an attestation request with veil-attestation, bound
//! to the KBS report-data rule, into one summary the policies read.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use veil_attestation::azure::{AzSnpEvidence, AzSnpVtpmVerifier, AzTdxEvidence, AzTdxVtpmVerifier};
use veil_attestation::runtime_log::{self, Event, RuntimeLog};
use veil_attestation::snp::{SnpEvidence, SnpVerifier};
use veil_attestation::tdx::{Collateral, TdxEvidence, TdxVerifier};
use veil_attestation::tpm::{HashAlg, PcrValues, TpmClaims, TpmEvidence as AttTpmEvidence, TpmVerifier};
use veil_attestation::verify::{Claims, Options, VerifiedEvidence, Verifier as _};
use veil_kbs::evidence::{ADDITIONAL_EVENT_LOG, ADDITIONAL_TPM, TpmEvidence};
use veil_kbs::{Attestation, Tee};

/// Why evidence was refused: the class goes to the client, the detail to the log.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub struct Refusal {
    /// Logged in full.
    pub detail: String,
}

fn refuse(detail: impl Into<String>) -> Refusal {
    Refusal { detail: detail.into() }
}

/// What the policies see of verified evidence.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Appraised {
    /// The TEE as the protocol names it.
    pub tee: String,
    /// Chained to simulated roots, or Trustee's `sample` TEE.
    pub simulated: bool,
    /// Debug guest.
    pub debug: bool,
    /// SNP MEASUREMENT or TDX MRTD, hex.
    pub measurement: Option<String>,
    /// TDX TCB status or SNP reported TCB, as text.
    pub tcb: Option<String>,
    /// SNP reported TCB as its four SVNs, for minimum-TCB rules.
    pub snp_tcb: Option<Value>,
    /// The launch-time field init-data is checked against, hex: HOST_DATA (SNP),
    /// MRCONFIGID (TDX), or PCR 8 (TPM-based TEEs; see `init_data_rule`).
    pub init_data: Option<String>,
    /// How `init_data` binds the init-data digest.
    pub init_data_rule: InitDataRule,
    /// The TPM quote, for `tpm`, the Azure vTPM TEEs, and a CPU TEE with Veil's
    /// composite TPM evidence. Absent from the policy input when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tpm: Option<TpmSummary>,
    /// Veil's runtime event log, when the evidence carried one, after it was checked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime_events: Option<RuntimeEvents>,
    /// The report data, hex.
    pub report_data: String,
    /// Everything the verifier established.
    pub claims: Value,
    /// What the verifier could not evaluate.
    pub not_evaluated: Vec<String>,
}

/// How init-data's digest appears in the evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitDataRule {
    /// The digest, zero-padded, is the launch field (SNP HOST_DATA, TDX MRCONFIGID).
    #[default]
    LaunchField,
    /// PCR 8 is `SHA-256(0^32 ‖ SHA-256 digest)`: one extend from reset, as
    /// Trustee's TPM and Azure vTPM verifiers check it.
    Pcr8,
}

/// A runtime event log that passed verification, and what vouches for it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuntimeEvents {
    /// `registers`: the log replays to the runtime registers the verified evidence
    /// reports (TDX RTMR3, TPM PCR 23). `report-data`: the evidence reports no runtime
    /// register (SEV-SNP without a TPM), so only the report data, which covers the
    /// additional evidence, binds the log: it says what the launch-measured runtime
    /// chose to log, no more.
    pub bound_by: &'static str,
    /// The events, in log order.
    pub events: Vec<Event>,
}

/// What the policies see of a verified TPM quote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TpmSummary {
    /// SHA-256 of the AK's DER SubjectPublicKeyInfo, hex.
    pub ak_sha256: String,
    /// What vouches for the AK: `cpu-report` (Veil's composition: the CPU report data
    /// binds the additional evidence), `hcl-report` (Azure: the hardware report binds
    /// the HCL variable data holding the AK), or `none` (a bare TPM: only a configured
    /// list of trusted AKs makes it mean anything).
    pub ak_bound_by: &'static str,
    /// The quote's pcrDigest, hex.
    pub pcr_digest: String,
    /// The quoted SHA-256 PCR values (index → hex).
    pub pcrs: BTreeMap<u32, String>,
}

impl TpmSummary {
    fn of(c: &TpmClaims, ak_bound_by: &'static str) -> Self {
        Self {
            ak_sha256: c.ak_spki_sha256.clone(),
            ak_bound_by,
            pcr_digest: c.pcr_digest.clone(),
            pcrs: c.pcrs.clone().unwrap_or_default(),
        }
    }
}

/// The verifiers, reused across requests for their caches.
#[derive(Default)]
pub struct Verifiers {
    snp: SnpVerifier,
    tdx: TdxVerifier,
    az_snp: AzSnpVtpmVerifier,
    az_tdx: AzTdxVtpmVerifier,
}

impl std::fmt::Debug for Verifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifiers")
    }
}

#[derive(Deserialize)]
struct TdxPrimary {
    quote: String,
    #[serde(default)]
    cc_eventlog: Option<String>,
    /// Veil extension: PCS collateral for the quote's platform, as
    /// `veil_attestation::tdx::Collateral` JSON. Signed by Intel (or the simulator's
    /// TCB signing key), so it may travel with the evidence.
    #[serde(default)]
    collateral: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SamplePrimary {
    svn: String,
    report_data: String,
}

/// Azure SNP vTPM evidence as Trustee's `az-snp-vtpm` attester sends it: v1/v2
/// `{version, tpm_quote, hcl_report (base64url), vcek (base64url DER)}`, or the
/// legacy v0 `{quote, report (byte array), vcek (PEM)}`
/// (T `deps/verifier/src/az_snp_vtpm/compat.rs`).
#[derive(Deserialize)]
#[serde(untagged)]
enum AzSnpPrimary {
    V1 { version: u32, tpm_quote: Value, hcl_report: String, vcek: String },
    V0 { quote: Value, report: Vec<u8>, vcek: String },
}

/// Azure TDX vTPM evidence: v1/v2 `{version, tpm_quote, hcl_report, td_quote}` (base64url),
/// or v0 with byte arrays (T `deps/verifier/src/az_tdx_vtpm/compat.rs`).
#[derive(Deserialize)]
#[serde(untagged)]
enum AzTdxPrimary {
    V1 { version: u32, tpm_quote: Value, hcl_report: String, td_quote: String },
    V0 { tpm_quote: Value, hcl_report: Vec<u8>, td_quote: Vec<u8> },
}

/// Base64url, padded or not (Trustee's serde_with `Base64<UrlSafe>` writes padding;
/// other producers omit it).
fn b64url(field: &str, s: &str) -> Result<Vec<u8>, Refusal> {
    URL_SAFE.decode(s).or_else(|_| URL_SAFE_NO_PAD.decode(s)).map_err(|_| refuse(format!("{field} is not base64url")))
}

/// Azure evidence from version 2 on carries the runtime-data hash as the HCL
/// variable data's `user-data` (hex); it must start with `hash`.
fn check_user_data(var_data: &Value, hash: &[u8]) -> Result<(), Refusal> {
    let hex_str = var_data
        .get("user-data")
        .and_then(Value::as_str)
        .ok_or_else(|| refuse("version 2 evidence: the HCL variable data has no user-data"))?;
    let user = hex::decode(hex_str).map_err(|_| refuse("HCL user-data is not hex"))?;
    if user.get(..hash.len()) != Some(hash) {
        return Err(refuse("HCL user-data does not carry this session's runtime-data hash"));
    }
    Ok(())
}

/// The PCR list of Trustee's TPM evidence, keyed by the quote's selection: the values
/// are in ascending index order of the quoted (single) SHA-256 bank.
fn pcr_values(message: &[u8], list: &[String]) -> Result<PcrValues, Refusal> {
    let attest = veil_attestation::tpm::parse_attest(message).map_err(|e| refuse(format!("tpm quote: {e}")))?;
    let mut selected: Vec<u32> =
        attest.pcr_select.iter().filter(|s| s.bank == HashAlg::Sha256).flat_map(|s| s.pcrs.iter().copied()).collect();
    selected.sort_unstable();
    selected.dedup();
    if selected.len() != list.len() {
        return Err(refuse(format!("tpm quote: {} PCR values for {} quoted SHA-256 PCRs", list.len(), selected.len())));
    }
    let mut values = BTreeMap::new();
    for (idx, v) in selected.into_iter().zip(list) {
        let bytes = hex::decode(v).map_err(|_| refuse(format!("tpm quote: PCR {idx} is not hex")))?;
        values.insert(idx, bytes);
    }
    PcrValues::new(HashAlg::Sha256, values).map_err(|e| refuse(format!("tpm quote: {e}")))
}

/// Verifies Trustee-shaped TPM evidence whose qualifying data must be `nonce`. The AK
/// is not authenticated here: the caller says what binds it.
fn verify_tpm_json(ev: &TpmEvidence, nonce: &[u8], base: &Options) -> Result<VerifiedEvidence, Refusal> {
    let ak = STANDARD.decode(&ev.ak_public).map_err(|_| refuse("tpm evidence: ak_public is not base64"))?;
    let message = STANDARD.decode(&ev.tpm_quote.message).map_err(|_| refuse("tpm evidence: message is not base64"))?;
    let signature =
        STANDARD.decode(&ev.tpm_quote.signature).map_err(|_| refuse("tpm evidence: signature is not base64"))?;
    let pcrs = pcr_values(&message, &ev.tpm_quote.pcrs)?;
    let opts = base.clone().with_nonce(nonce.to_vec());
    let att = AttTpmEvidence {
        attest: &message,
        signature: &signature,
        ak: &ak,
        ak_chain: None,
        pcrs: Some(pcrs),
        event_log: None,
    };
    TpmVerifier.verify(&att, &opts).map_err(|e| refuse(format!("tpm evidence: {e}")))
}

/// Veil's composition: `additional_evidence` is `""` or a JSON object string whose only
/// key Veil accepts is `"tpm"`. Anything else is refused rather than ignored, so no
/// policy can believe unverified evidence was checked.
/// Veil's additional evidence: `{"tpm": <TPM evidence>, "event-log": "<JSON lines>"}`,
/// each optional. Any other key is refused, not ignored.
#[derive(Default)]
struct Additional {
    tpm: Option<TpmEvidence>,
    event_log: Option<RuntimeLog>,
}

fn additional(additional: &str) -> Result<Additional, Refusal> {
    let mut out = Additional::default();
    if additional.is_empty() {
        return Ok(out);
    }
    let map: BTreeMap<String, Value> =
        serde_json::from_str(additional).map_err(|e| refuse(format!("additional evidence: {e}")))?;
    for (k, v) in map {
        match k.as_str() {
            ADDITIONAL_TPM => {
                out.tpm = Some(serde_json::from_value(v).map_err(|e| refuse(format!("additional tpm evidence: {e}")))?);
            }
            ADDITIONAL_EVENT_LOG => {
                let text = v.as_str().ok_or_else(|| refuse("additional event-log: not a string"))?;
                out.event_log =
                    Some(RuntimeLog::parse(text.as_bytes()).map_err(|e| refuse(format!("additional event-log: {e}")))?);
            }
            _ => return Err(refuse(format!("additional evidence for {k:?} is not supported by this broker"))),
        }
    }
    Ok(out)
}

impl Verifiers {
    /// Verifies `att`'s evidence for `tee`, requiring report data `expected`.
    pub fn verify(
        &self,
        tee: Tee,
        att: &Attestation,
        expected: &[u8; 64],
        trust_simulator: bool,
    ) -> Result<Appraised, Refusal> {
        let base = Options::at(time::OffsetDateTime::now_utc()).danger_trust_simulator(trust_simulator);
        let primary = &att.tee_evidence.primary_evidence;
        let extra = additional(&att.tee_evidence.additional_evidence)?;
        if extra.tpm.is_some() && !matches!(tee, Tee::Snp | Tee::Tdx) {
            return Err(refuse(format!("additional TPM evidence is accepted with snp or tdx, not {tee}")));
        }
        if extra.event_log.is_some() && tee == Tee::Sample {
            return Err(refuse("an event log is not accepted with sample evidence"));
        }
        // The runtime-data hash (SHA-384, 48 bytes) before padding: what Azure's vTPM
        // quote carries as its qualifying data.
        let hash = expected.get(..48).ok_or_else(|| refuse("report data"))?;
        let verified = match tee {
            Tee::Snp => {
                let report = veil_attestation::snp::json::report_from_trustee_value(primary)
                    .map_err(|e| refuse(format!("snp evidence: {e}")))?;
                let chain = veil_attestation::snp::json::cert_chain_from_trustee_value(primary)
                    .map_err(|e| refuse(format!("snp evidence: {e}")))?;
                let pick =
                    |t: &str| chain.iter().find(|c| c.cert_type.eq_ignore_ascii_case(t)).map(|c| c.data.as_slice());
                let ev = SnpEvidence { report: &report, vcek: pick("VCEK"), vlek: pick("VLEK"), chain: None };
                let opts = base.clone().with_report_data(expected.to_vec());
                self.snp.verify(&ev, &opts).map_err(|e| refuse(format!("snp evidence: {e}")))?
            }
            Tee::Tdx => {
                let p: TdxPrimary =
                    Deserialize::deserialize(primary).map_err(|e| refuse(format!("tdx evidence: {e}")))?;
                let quote = STANDARD.decode(&p.quote).map_err(|_| refuse("tdx evidence: quote is not base64"))?;
                let _ = p.cc_eventlog;
                let collateral = match &p.collateral {
                    Some(c) => Some(
                        Collateral::from_json(&serde_json::to_vec(c).map_err(|e| refuse(e.to_string()))?)
                            .map_err(|e| refuse(format!("tdx collateral: {e}")))?,
                    ),
                    None => None,
                };
                let ev = TdxEvidence { quote: &quote, collateral: collateral.as_ref(), root: None };
                let opts = base.clone().with_report_data(expected.to_vec());
                self.tdx.verify(&ev, &opts).map_err(|e| refuse(format!("tdx evidence: {e}")))?
            }
            Tee::AzSnpVtpm => self.az_snp(primary, hash, &base)?,
            Tee::AzTdxVtpm => self.az_tdx(primary, hash, &base)?,
            Tee::Tpm => {
                let ev: TpmEvidence =
                    Deserialize::deserialize(primary).map_err(|e| refuse(format!("tpm evidence: {e}")))?;
                verify_tpm_json(&ev, &veil_kbs::evidence::tpm_primary_nonce(expected), &base)?
            }
            Tee::Sample => return sample(primary, expected, trust_simulator),
            other => return Err(refuse(format!("TEE type {other} is not supported by this broker"))),
        };
        let mut a = appraise(tee, &verified, expected)?;
        let mut registers = runtime_log::registers_of(&verified).map_err(|e| refuse(e.to_string()))?;
        if let Some(tpm) = extra.tpm {
            let qd = veil_kbs::tpm_qualifying_data(&att.runtime_data).map_err(|e| refuse(e.to_string()))?;
            let v = verify_tpm_json(&tpm, &qd, &base).map_err(|r| refuse(format!("additional {}", r.detail)))?;
            if let Claims::Tpm(c) = v.claims() {
                a.tpm = Some(TpmSummary::of(c, "cpu-report"));
            }
            a.simulated |= v.simulated();
            a.not_evaluated.extend(v.not_evaluated_items().iter().map(|n| format!("tpm: {n}")));
            if let Value::Object(m) = &mut a.claims {
                m.insert("tpm".into(), serde_json::to_value(&v).map_err(|e| refuse(e.to_string()))?);
            }
            registers.extend(runtime_log::registers_of(&v).map_err(|e| refuse(e.to_string()))?);
        }
        if let Some(log) = extra.event_log {
            a.runtime_events = Some(if registers.is_empty() {
                RuntimeEvents { bound_by: "report-data", events: log.events().to_vec() }
            } else {
                let v = log.verify_registers(&registers).map_err(|e| refuse(format!("event log: {e}")))?;
                RuntimeEvents { bound_by: "registers", events: v.events().to_vec() }
            });
        }
        Ok(a)
    }

    /// Azure SNP vTPM (T `az_snp_vtpm::evaluate`): the HCL report's SNP report verified to
    /// AMD's roots and issued at VMPL 0, its report data binding the HCL variable data
    /// (and so the AK), the vTPM quote under that AK with qualifying data `hash`, and, from
    /// version 2, `hash` in the variable data's user-data.
    fn az_snp(&self, primary: &Value, hash: &[u8], base: &Options) -> Result<VerifiedEvidence, Refusal> {
        let p: AzSnpPrimary =
            Deserialize::deserialize(primary).map_err(|e| refuse(format!("az-snp-vtpm evidence: {e}")))?;
        let (version, quote, hcl, vcek) = match p {
            AzSnpPrimary::V1 { version, tpm_quote, hcl_report, vcek } => {
                (version, tpm_quote, b64url("hcl_report", &hcl_report)?, b64url("vcek", &vcek)?)
            }
            AzSnpPrimary::V0 { quote, report, vcek } => (0, quote, report, vcek.into_bytes()),
        };
        if version > 2 {
            return Err(refuse(format!("az-snp-vtpm evidence version {version} is not supported (0-2)")));
        }
        let quote = serde_json::to_vec(&quote).map_err(|e| refuse(e.to_string()))?;
        let ev = AzSnpEvidence { hcl_report: &hcl, tpm_quote: &quote, vcek: &vcek, chain: None };
        let opts = base.clone().with_nonce(hash.to_vec());
        let v = self.az_snp.verify(&ev, &opts).map_err(|e| refuse(format!("az-snp-vtpm evidence: {e}")))?;
        if let Claims::AzSnpVtpm { snp, var_data, .. } = v.claims() {
            if snp.vmpl != 0 {
                return Err(refuse(format!("az-snp-vtpm evidence: SNP report from VMPL {}, not 0", snp.vmpl)));
            }
            if version >= 2 {
                check_user_data(var_data, hash)?;
            }
        }
        Ok(v)
    }

    /// Azure TDX vTPM (T `az_tdx_vtpm::evaluate`): the TD quote (TCB not evaluated
    /// without collateral), its report data equal to the HCL TDREPORT's and binding the
    /// variable data, the vTPM quote with qualifying data `hash`, and user-data from v2.
    fn az_tdx(&self, primary: &Value, hash: &[u8], base: &Options) -> Result<VerifiedEvidence, Refusal> {
        let p: AzTdxPrimary =
            Deserialize::deserialize(primary).map_err(|e| refuse(format!("az-tdx-vtpm evidence: {e}")))?;
        let (version, quote, hcl, td) = match p {
            AzTdxPrimary::V1 { version, tpm_quote, hcl_report, td_quote } => {
                (version, tpm_quote, b64url("hcl_report", &hcl_report)?, b64url("td_quote", &td_quote)?)
            }
            AzTdxPrimary::V0 { tpm_quote, hcl_report, td_quote } => (0, tpm_quote, hcl_report, td_quote),
        };
        if version > 2 {
            return Err(refuse(format!("az-tdx-vtpm evidence version {version} is not supported (0-2)")));
        }
        let quote = serde_json::to_vec(&quote).map_err(|e| refuse(e.to_string()))?;
        let ev = AzTdxEvidence { hcl_report: &hcl, tpm_quote: &quote, td_quote: &td, collateral: None, root: None };
        let opts = base.clone().with_nonce(hash.to_vec());
        let v = self.az_tdx.verify(&ev, &opts).map_err(|e| refuse(format!("az-tdx-vtpm evidence: {e}")))?;
        if let (Claims::AzTdxVtpm { var_data, .. }, true) = (v.claims(), version >= 2) {
            check_user_data(var_data, hash)?;
        }
        Ok(v)
    }
}

/// Trustee's `sample` TEE: unsigned test evidence, only with the simulator opt-in.
fn sample(primary: &Value, expected: &[u8; 64], trust_simulator: bool) -> Result<Appraised, Refusal> {
    if !trust_simulator {
        return Err(refuse("sample evidence is unsigned test evidence; refused without danger_trust_simulator"));
    }
    let p: SamplePrimary = Deserialize::deserialize(primary).map_err(|e| refuse(format!("sample evidence: {e}")))?;
    let rd = STANDARD.decode(&p.report_data).map_err(|_| refuse("sample evidence: report_data is not base64"))?;
    let mut padded = rd.clone();
    padded.resize(64, 0);
    if rd.len() > 64 || padded.as_slice() != expected.as_slice() {
        return Err(refuse("sample evidence: report_data does not bind this session's runtime data"));
    }
    Ok(Appraised {
        tee: "sample".into(),
        simulated: true,
        debug: false,
        measurement: None,
        tcb: Some(format!("svn {}", p.svn)),
        snp_tcb: None,
        init_data: None,
        init_data_rule: InitDataRule::LaunchField,
        tpm: None,
        runtime_events: None,
        report_data: hex::encode(expected),
        claims: serde_json::json!({"svn": p.svn}),
        not_evaluated: vec!["everything: sample evidence is unsigned".into()],
    })
}

fn snp_fields(a: &mut Appraised, c: &veil_attestation::snp::SnpClaims) {
    a.debug = c.policy.debug;
    a.measurement = Some(hex::encode(c.measurement));
    a.init_data = Some(hex::encode(c.host_data));
    let t = &c.reported_tcb;
    a.tcb = Some(format!("bootloader {} tee {} snp {} microcode {}", t.bootloader, t.tee, t.snp, t.microcode));
    a.snp_tcb =
        Some(serde_json::json!({"bootloader": t.bootloader, "tee": t.tee, "snp": t.snp, "microcode": t.microcode}));
}

fn tdx_fields(a: &mut Appraised, c: &veil_attestation::tdx::TdxClaims) {
    a.debug = c.td_attributes_flags.debug;
    a.measurement = Some(c.mr_td.clone());
    a.init_data = Some(c.mr_config_id.clone());
    a.tcb = c.tcb_status.as_ref().map(|s| format!("{s:?}"));
}

/// Init-data of TPM-based TEEs: PCR 8, when quoted.
fn pcr8(a: &mut Appraised, c: &TpmClaims) {
    a.init_data = c.pcrs.as_ref().and_then(|p| p.get(&8)).cloned();
    a.init_data_rule = InitDataRule::Pcr8;
}

/// The policy input for verified evidence.
fn appraise(tee: Tee, verified: &VerifiedEvidence, expected: &[u8; 64]) -> Result<Appraised, Refusal> {
    let claims = serde_json::to_value(verified).map_err(|e| refuse(e.to_string()))?;
    let mut a = Appraised {
        tee: tee.to_string(),
        simulated: verified.simulated(),
        debug: false,
        measurement: None,
        tcb: None,
        snp_tcb: None,
        init_data: None,
        init_data_rule: InitDataRule::LaunchField,
        tpm: None,
        runtime_events: None,
        report_data: hex::encode(expected),
        claims,
        not_evaluated: verified.not_evaluated_items().to_vec(),
    };
    match verified.claims() {
        Claims::Snp(c) => snp_fields(&mut a, c),
        Claims::Tdx(c) => tdx_fields(&mut a, c),
        Claims::AzSnpVtpm { snp, tpm, .. } => {
            snp_fields(&mut a, snp);
            pcr8(&mut a, tpm);
            a.tpm = Some(TpmSummary::of(tpm, "hcl-report"));
        }
        Claims::AzTdxVtpm { tdx, tpm, .. } => {
            tdx_fields(&mut a, tdx);
            pcr8(&mut a, tpm);
            a.tpm = Some(TpmSummary::of(tpm, "hcl-report"));
        }
        Claims::Tpm(c) => {
            // A bare TPM has no launch measurement: the quoted PCRs' digest stands for
            // it, so reference `measurements` can name allowed PCR states.
            a.measurement = Some(c.pcr_digest.clone());
            pcr8(&mut a, c);
            a.tpm = Some(TpmSummary::of(c, "none"));
        }
        _ => return Err(refuse("the verifier returned claims of an unexpected kind")),
    }
    Ok(a)
}

/// Fuzz entry: an attestation request's evidence through every TEE type's parser and
/// verifier. Must never panic.
#[doc(hidden)]
pub fn fuzz_attestation(data: &[u8]) {
    let Ok(att) = serde_json::from_slice::<Attestation>(data) else { return };
    let v = Verifiers::default();
    for tee in [Tee::Snp, Tee::Tdx, Tee::AzSnpVtpm, Tee::AzTdxVtpm, Tee::Tpm, Tee::Sample] {
        let _ = v.verify(tee, &att, &[0u8; 64], true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vectors() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
    }

    fn evidence(dir: &str) -> Value {
        serde_json::from_slice(&std::fs::read(vectors().join(dir).join("evidence.json")).unwrap()).unwrap()
    }

    fn base() -> Options {
        Options::at(time::macros::datetime!(2026-06-01 00:00 UTC))
    }

    const V2_NONCE: &str =
        "982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9aa398f647caa2338748cd0fd9f5f819ef";
    const GENOA_NONCE: &str =
        "0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f";

    /// Trustee's Azure SNP evidence in all three versions verifies with the nonce its
    /// vTPM quote was made for, and the policy input carries the SNP and TPM fields.
    #[test]
    fn azure_snp_vtpm_evidence_from_trustee_verifies() {
        let v = Verifiers::default();
        let cases = [
            ("azure-snp-vtpm/trustee-evidence-v0", b"challenge".to_vec()),
            ("azure-snp-vtpm/trustee-evidence-v1", b"challenge".to_vec()),
            ("azure-snp-vtpm/trustee-evidence-v2", hex::decode(V2_NONCE).unwrap()),
            ("azure-snp-vtpm/trustee-evidence-genoa", hex::decode(GENOA_NONCE).unwrap()),
        ];
        for (dir, nonce) in cases {
            let verified = v.az_snp(&evidence(dir), &nonce, &base()).unwrap_or_else(|e| panic!("{dir}: {e}"));
            let a = appraise(Tee::AzSnpVtpm, &verified, &[0; 64]).unwrap();
            assert_eq!(a.tee, "az-snp-vtpm");
            assert!(!a.simulated && !a.debug, "{dir}");
            assert_eq!(a.measurement.as_ref().map(String::len), Some(96), "{dir}");
            assert_eq!(a.init_data_rule, InitDataRule::Pcr8);
            assert_eq!(a.init_data.as_ref().map(String::len), Some(64), "{dir}: PCR 8");
            let tpm = a.tpm.unwrap();
            assert_eq!((tpm.ak_bound_by, tpm.pcrs.len()), ("hcl-report", 24), "{dir}");
            // Another nonce: refused.
            let e = v.az_snp(&evidence(dir), b"another", &base()).unwrap_err();
            assert!(e.detail.contains("nonce") || e.detail.contains("qualifying"), "{dir}: {e}");
        }
    }

    /// Version 2 binds the runtime-data hash in the HCL user-data too; Trustee's own test
    /// refuses '123abc'.
    #[test]
    fn azure_v2_user_data_must_carry_the_hash() {
        let var = json!({"user-data": format!("{V2_NONCE}{}", "00".repeat(16))});
        check_user_data(&var, &hex::decode(V2_NONCE).unwrap()).unwrap();
        let e = check_user_data(&json!({"user-data": "123abc"}), &hex::decode(V2_NONCE).unwrap()).unwrap_err();
        assert!(e.detail.contains("user-data"), "{e}");
        assert!(check_user_data(&json!({}), b"x").is_err());
        assert!(check_user_data(&json!({"user-data": "zz"}), b"x").is_err());
    }

    #[test]
    fn azure_tdx_vtpm_evidence_from_trustee_verifies() {
        let v = Verifiers::default();
        for dir in ["azure-tdx-vtpm/trustee-evidence-v0", "azure-tdx-vtpm/trustee-evidence-v1"] {
            let verified = v.az_tdx(&evidence(dir), b"challenge", &base()).unwrap_or_else(|e| panic!("{dir}: {e}"));
            let a = appraise(Tee::AzTdxVtpm, &verified, &[0; 64]).unwrap();
            assert_eq!(a.tee, "az-tdx-vtpm");
            assert_eq!(a.measurement.as_ref().map(String::len), Some(96), "{dir}: MRTD");
            assert!(a.not_evaluated.iter().any(|n| n.to_lowercase().contains("tcb")), "{:?}", a.not_evaluated);
            assert_eq!(a.tpm.unwrap().ak_bound_by, "hcl-report");
            assert!(v.az_tdx(&evidence(dir), b"challengf", &base()).is_err(), "{dir}");
        }
    }

    /// Malformed Azure evidence gets a typed refusal naming what is wrong, never a panic.
    #[test]
    fn malformed_azure_evidence_is_refused() {
        let v = Verifiers::default();
        let mut ev = evidence("azure-snp-vtpm/trustee-evidence-v1");
        ev["version"] = json!(3);
        assert!(v.az_snp(&ev, b"challenge", &base()).unwrap_err().detail.contains("version 3"));
        let mut ev = evidence("azure-snp-vtpm/trustee-evidence-v1");
        ev["hcl_report"] = json!("!!!");
        assert!(v.az_snp(&ev, b"challenge", &base()).unwrap_err().detail.contains("base64url"));
        let mut ev = evidence("azure-snp-vtpm/trustee-evidence-v1");
        ev["tpm_quote"]["pcrs"] = json!(["00"]);
        assert!(v.az_snp(&ev, b"challenge", &base()).is_err());
        assert!(v.az_snp(&json!({"version": 1}), b"challenge", &base()).is_err());
        assert!(v.az_tdx(&json!([]), b"challenge", &base()).is_err());
        // An SNP evidence object sent as Azure TDX evidence.
        assert!(v.az_tdx(&evidence("azure-snp-vtpm/trustee-evidence-v1"), b"challenge", &base()).is_err());
    }

    #[test]
    fn additional_evidence_accepts_only_tpm_and_the_event_log() {
        let none = additional("").unwrap();
        assert!(none.tpm.is_none() && none.event_log.is_none());
        let e = additional(r#"{"nvidia": {}}"#).err().unwrap();
        assert!(e.detail.contains("nvidia"), "{e}");
        assert!(additional("not json").is_err());
        assert!(additional(r#"{"tpm": {"ak_public": "x"}}"#).is_err());
        let ok = r#"{"tpm": {"ak_public": "AA==", "tpm_quote": {"signature": "", "message": "", "pcrs": []}}}"#;
        assert!(additional(ok).unwrap().tpm.is_some());
        // The event log is a string of JSON lines; anything else is refused with a reason.
        let e = additional(r#"{"event-log": 7}"#).err().unwrap();
        assert!(e.detail.contains("not a string"), "{e}");
        let e = additional(r#"{"event-log": "{\"register\": \"rtmr9\"}"}"#).err().unwrap();
        assert!(e.detail.contains("event-log"), "{e}");
        let line =
            serde_json::to_string(&Event::new(runtime_log::Register::VEIL_RTMR, "veil.binary", "sha256:00")).unwrap();
        let ok = serde_json::json!({ "event-log": line }).to_string();
        assert_eq!(additional(&ok).unwrap().event_log.unwrap().events().len(), 1);
    }

    /// Trustee TPM evidence with PCR values that do not line up with the quote's
    /// selection, or bad encodings, is refused with a reason.
    #[test]
    fn malformed_tpm_evidence_is_refused() {
        let bad = |ak: &str, sig: &str, msg: &str, pcrs: Vec<String>| TpmEvidence {
            ak_public: ak.into(),
            tpm_quote: veil_kbs::evidence::TpmQuote { signature: sig.into(), message: msg.into(), pcrs },
        };
        let e = verify_tpm_json(&bad("%", "", "", vec![]), b"n", &base()).unwrap_err();
        assert!(e.detail.contains("ak_public"), "{e}");
        let e = verify_tpm_json(&bad("", "", "%", vec![]), b"n", &base()).unwrap_err();
        assert!(e.detail.contains("message"), "{e}");
        let e = verify_tpm_json(&bad("", "", "AAAA", vec![]), b"n", &base()).unwrap_err();
        assert!(e.detail.contains("tpm quote"), "{e}");
    }
}
