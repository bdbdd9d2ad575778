//! Verifying the `tee-evidence` of an attestation request with veil-attestation, bound
//! to the KBS report-data rule, into one summary the policies read.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::Value;
use veil_attestation::snp::{SnpEvidence, SnpVerifier};
use veil_attestation::tdx::{Collateral, TdxEvidence, TdxVerifier};
use veil_attestation::verify::{Claims, Options, Verifier as _};
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
    /// HOST_DATA / MRCONFIGID, hex.
    pub init_data: Option<String>,
    /// The report data, hex.
    pub report_data: String,
    /// Everything the verifier established.
    pub claims: Value,
    /// What the verifier could not evaluate.
    pub not_evaluated: Vec<String>,
}

/// The verifiers, reused across requests for their caches.
#[derive(Default)]
pub struct Verifiers {
    snp: SnpVerifier,
    tdx: TdxVerifier,
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

impl Verifiers {
    /// Verifies `att`'s evidence for `tee`, requiring report data `expected`.
    pub fn verify(
        &self,
        tee: Tee,
        att: &Attestation,
        expected: &[u8; 64],
        trust_simulator: bool,
    ) -> Result<Appraised, Refusal> {
        let now = time::OffsetDateTime::now_utc();
        let opts = Options::at(now).with_report_data(expected.to_vec()).danger_trust_simulator(trust_simulator);
        let primary = &att.tee_evidence.primary_evidence;
        let verified = match tee {
            Tee::Snp => {
                let raw = serde_json::to_vec(primary).map_err(|e| refuse(format!("snp evidence: {e}")))?;
                let report = veil_attestation::snp::json::report_from_trustee_json(&raw)
                    .map_err(|e| refuse(format!("snp evidence: {e}")))?;
                let chain = veil_attestation::snp::json::cert_chain_from_trustee_json(&raw)
                    .map_err(|e| refuse(format!("snp evidence: {e}")))?;
                let pick =
                    |t: &str| chain.iter().find(|c| c.cert_type.eq_ignore_ascii_case(t)).map(|c| c.data.as_slice());
                let ev = SnpEvidence { report: &report, vcek: pick("VCEK"), vlek: pick("VLEK"), chain: None };
                self.snp.verify(&ev, &opts).map_err(|e| refuse(format!("snp evidence: {e}")))?
            }
            Tee::Tdx => {
                let p: TdxPrimary =
                    serde_json::from_value(primary.clone()).map_err(|e| refuse(format!("tdx evidence: {e}")))?;
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
                self.tdx.verify(&ev, &opts).map_err(|e| refuse(format!("tdx evidence: {e}")))?
            }
            Tee::Sample => {
                if !trust_simulator {
                    return Err(refuse(
                        "sample evidence is unsigned test evidence; refused without danger_trust_simulator",
                    ));
                }
                let p: SamplePrimary =
                    serde_json::from_value(primary.clone()).map_err(|e| refuse(format!("sample evidence: {e}")))?;
                let rd = STANDARD
                    .decode(&p.report_data)
                    .map_err(|_| refuse("sample evidence: report_data is not base64"))?;
                let mut padded = rd.clone();
                padded.resize(64, 0);
                if rd.len() > 64 || padded.as_slice() != expected.as_slice() {
                    return Err(refuse("sample evidence: report_data does not bind this session's runtime data"));
                }
                return Ok(Appraised {
                    tee: "sample".into(),
                    simulated: true,
                    debug: false,
                    measurement: None,
                    tcb: Some(format!("svn {}", p.svn)),
                    snp_tcb: None,
                    init_data: None,
                    report_data: hex::encode(expected),
                    claims: serde_json::json!({"svn": p.svn}),
                    not_evaluated: vec!["everything: sample evidence is unsigned".into()],
                });
            }
            other => return Err(refuse(format!("TEE type {other} is not supported by this broker"))),
        };
        let claims = serde_json::to_value(&verified).map_err(|e| refuse(e.to_string()))?;
        let mut a = Appraised {
            tee: tee.to_string(),
            simulated: verified.simulated(),
            debug: false,
            measurement: None,
            tcb: None,
            snp_tcb: None,
            init_data: None,
            report_data: hex::encode(expected),
            claims,
            not_evaluated: verified.not_evaluated_items().to_vec(),
        };
        match verified.claims() {
            Claims::Snp(c) => {
                a.debug = c.policy.debug;
                a.measurement = Some(hex::encode(c.measurement));
                a.init_data = Some(hex::encode(c.host_data));
                let t = &c.reported_tcb;
                a.tcb =
                    Some(format!("bootloader {} tee {} snp {} microcode {}", t.bootloader, t.tee, t.snp, t.microcode));
                a.snp_tcb = Some(
                    serde_json::json!({"bootloader": t.bootloader, "tee": t.tee, "snp": t.snp, "microcode": t.microcode}),
                );
            }
            Claims::Tdx(c) => {
                a.debug = c.td_attributes_flags.debug;
                a.measurement = Some(c.mr_td.clone());
                a.init_data = Some(c.mr_config_id.clone());
                a.tcb = c.tcb_status.as_ref().map(|s| format!("{s:?}"));
            }
            _ => {}
        }
        Ok(a)
    }
}
