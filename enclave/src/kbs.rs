//! A client for the Trustee KBS 0.4.0 protocol (Veil's broker or Trustee's): auth →
//! attest with evidence from an [`Attester`] bound to the protocol's report data →
//! resource, decrypted from its JWE with a key pair that never leaves this process.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use veil_attestation::snp::cert_table::{self, guid};
use veil_kbs::jwe::{FlatJwe, TeeKeyPair};
use veil_kbs::{
    Attestation, Challenge, CompositeEvidence, ErrorBody, PROTOCOL_VERSION, Request, RuntimeData, SESSION_COOKIE, Tee,
};
use zeroize::Zeroizing;

use crate::measure::Measurer;
use crate::tpm::TpmAttester;
use crate::{Attester, Evidence, TeeKind};

/// What can go wrong talking to a broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KbsClientError {
    /// The broker refused, with the protocol's error body.
    #[error("the broker refused ({status}): {kind}: {detail}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The error kind (Trustee's variant name).
        kind: String,
        /// The broker's reason class.
        detail: String,
    },
    /// Transport or TLS failure.
    #[error("talking to the broker: {0}")]
    Http(String),
    /// The broker's answer is malformed.
    #[error("malformed answer from the broker: {0}")]
    Protocol(String),
    /// The attester failed.
    #[error("attester: {0}")]
    Attester(String),
}

impl KbsClientError {
    /// Whether the broker refused the release: an answer that is not a success, an
    /// overload (429) or a server failure (5xx). Only a refusal withdraws a model or
    /// stops a boot; everything else is retried (and a serving model kept while its last
    /// token is valid) — otherwise anyone who can flood the broker could withdraw every
    /// model from every runtime.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused { status, .. } if *status != 429 && *status < 500)
    }
}

fn http(e: impl std::fmt::Display) -> KbsClientError {
    KbsClientError::Http(e.to_string())
}

/// Where the primary evidence comes from.
enum Primary {
    /// A CPU TEE (SEV-SNP or TDX through configfs-tsm, or the simulator).
    Cpu(Arc<dyn Attester>),
    /// A TPM on its own: TEE type `tpm`.
    Tpm(Arc<TpmAttester>),
}

/// Turns attesters' evidence into the protocol's `primary_evidence` and
/// `additional_evidence`: a CPU TEE's report, optionally with a TPM quote beside it
/// (Veil's composition, [`veil_kbs::evidence`]), or a TPM on its own.
pub struct EvidenceProvider {
    primary: Primary,
    /// A TPM whose quote travels in `additional_evidence`, bound by the CPU report.
    tpm: Option<Arc<TpmAttester>>,
    /// For TDX: PCS collateral to send with the quote (Veil's extension), as
    /// `veil_attestation::tdx::Collateral` JSON.
    pub tdx_collateral: Option<Value>,
    /// The runtime's measured-boot log, sent as `additional_evidence["event-log"]`.
    measurer: Option<Arc<Measurer>>,
    /// Init-data (TOML) this CVM was launched with, sent with every attestation.
    init_data: Option<String>,
}

/// Evidence produced for one runtime data: what goes on the wire, the report data it
/// is bound to, and the hardware evidence's raw bytes (SNP report, TDX quote).
#[derive(Debug, Clone)]
pub struct Produced {
    /// `primary_evidence` and `additional_evidence`.
    pub evidence: CompositeEvidence,
    /// The report data: the KBS rule over the runtime data and the additional evidence.
    pub report_data: [u8; 64],
    /// The raw report or quote (empty for a TPM-only primary).
    pub raw: Vec<u8>,
}

impl std::fmt::Debug for EvidenceProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvidenceProvider").field("composite_tpm", &self.tpm.is_some()).finish_non_exhaustive()
    }
}

/// A TPM quote as Trustee's TPM evidence JSON.
fn tpm_evidence(ak: &crate::tpm::AkInfo, quote: &crate::tpm::TpmQuote) -> veil_kbs::evidence::TpmEvidence {
    veil_kbs::evidence::TpmEvidence {
        ak_public: STANDARD.encode(&ak.public_der),
        tpm_quote: veil_kbs::evidence::TpmQuote {
            signature: STANDARD.encode(&quote.signature),
            message: STANDARD.encode(&quote.attest),
            // A BTreeMap: ascending by index, as the format requires.
            pcrs: quote.pcr_values.values().map(hex::encode).collect(),
        },
    }
}

impl EvidenceProvider {
    /// Evidence from a CPU TEE attester.
    pub fn new(attester: Arc<dyn Attester>) -> Self {
        Self { primary: Primary::Cpu(attester), tpm: None, tdx_collateral: None, measurer: None, init_data: None }
    }

    /// Evidence from a TPM on its own (TEE type `tpm`). A relying party can trust it
    /// only if it trusts the AK (the broker's `tpm_aks` reference values).
    pub fn tpm_only(tpm: Arc<TpmAttester>) -> Self {
        Self { primary: Primary::Tpm(tpm), tpm: None, tdx_collateral: None, measurer: None, init_data: None }
    }

    /// Adds a TPM whose quote goes into `additional_evidence` beside the CPU evidence.
    pub fn with_tpm(mut self, tpm: Arc<TpmAttester>) -> Self {
        self.tpm = Some(tpm);
        self
    }

    /// Sends the measurer's event log with every piece of evidence.
    pub fn with_measurer(mut self, measurer: Arc<Measurer>) -> Self {
        self.measurer = Some(measurer);
        self
    }

    /// Sends `body` (init-data TOML, whose digest the host set as HOSTDATA / MRCONFIGID)
    /// as the attestation's `init-data`.
    pub fn with_init_data(mut self, body: String) -> Self {
        self.init_data = Some(body);
        self
    }

    /// The init-data, if any.
    pub fn init_data(&self) -> Option<&str> {
        self.init_data.as_deref()
    }

    /// The attestation's `init-data` field.
    pub fn init_data_field(&self) -> Option<veil_kbs::InitDataField> {
        self.init_data.as_ref().map(|b| veil_kbs::InitDataField { format: "toml".into(), body: b.clone() })
    }

    /// The launch field init-data is bound by, read from a fresh report of this CVM:
    /// SEV-SNP HOST_DATA (32 bytes) or TDX MRCONFIGID (48 bytes).
    pub fn launch_field(&self) -> Result<Vec<u8>, KbsClientError> {
        let att = |e: &dyn std::fmt::Display| KbsClientError::Attester(e.to_string());
        let (_, raw) = self.primary_raw(&[0u8; 64])?;
        match self.tee()? {
            Tee::Snp => Ok(veil_attestation::snp::parse_report(&raw).map_err(|e| att(&e))?.host_data.to_vec()),
            Tee::Tdx => {
                Ok(veil_attestation::tdx::parse_quote(&raw).map_err(|e| att(&e))?.td_report.mr_config_id.to_vec())
            }
            other => Err(KbsClientError::Attester(format!("no init-data launch field for TEE {other:?}"))),
        }
    }

    /// The measurer, if any.
    pub fn measurer(&self) -> Option<&Arc<Measurer>> {
        self.measurer.as_ref()
    }

    /// Evidence for `runtime_data`: the additional evidence (composite TPM quote, event
    /// log), the report data over both, and the primary evidence bound to it. The event
    /// log cannot change in between: the measurer's log is held until the evidence is
    /// made, so the log always matches the registers the evidence reports.
    pub fn produce(&self, runtime_data: &RuntimeData) -> Result<Produced, KbsClientError> {
        let log_guard = match &self.measurer {
            Some(m) => Some(m.hold().map_err(|e| KbsClientError::Attester(e.to_string()))?),
            None => None,
        };
        let mut map = serde_json::Map::new();
        if let Some(tpm) = &self.tpm {
            let qd =
                veil_kbs::tpm_qualifying_data(runtime_data).map_err(|e| KbsClientError::Protocol(e.to_string()))?;
            let (ak, quote) = tpm.quote_now(&qd).map_err(|e| KbsClientError::Attester(e.to_string()))?;
            let v =
                serde_json::to_value(tpm_evidence(&ak, &quote)).map_err(|e| KbsClientError::Protocol(e.to_string()))?;
            map.insert(veil_kbs::evidence::ADDITIONAL_TPM.into(), v);
        }
        if let Some(log) = log_guard.as_ref().filter(|l| !l.events().is_empty()) {
            map.insert(veil_kbs::evidence::ADDITIONAL_EVENT_LOG.into(), Value::String(log.to_jsonl()));
        }
        let additional = if map.is_empty() {
            String::new()
        } else {
            serde_json::to_string(&map).map_err(|e| KbsClientError::Protocol(e.to_string()))?
        };
        let report_data =
            veil_kbs::report_data(runtime_data, &additional).map_err(|e| KbsClientError::Protocol(e.to_string()))?;
        let (primary, raw) = self.primary_raw(&report_data)?;
        drop(log_guard);
        Ok(Produced {
            evidence: CompositeEvidence { primary_evidence: primary, additional_evidence: additional },
            report_data,
            raw,
        })
    }

    /// The protocol's TEE type.
    pub fn tee(&self) -> Result<Tee, KbsClientError> {
        let attester = match &self.primary {
            Primary::Tpm(_) => return Ok(Tee::Tpm),
            Primary::Cpu(a) => a,
        };
        match attester.tee().map_err(|e| KbsClientError::Attester(e.to_string()))? {
            TeeKind::Snp => Ok(Tee::Snp),
            TeeKind::Tdx => Ok(Tee::Tdx),
            other => Err(KbsClientError::Attester(format!("{other:?} evidence is not sent as primary evidence"))),
        }
    }

    /// Evidence bound to `report_data`, as `primary_evidence` JSON (no additional
    /// evidence: for callers that bind their own report data).
    pub fn primary(&self, report_data: &[u8; 64]) -> Result<Value, KbsClientError> {
        self.primary_raw(report_data).map(|(v, _)| v)
    }

    fn primary_raw(&self, report_data: &[u8; 64]) -> Result<(Value, Vec<u8>), KbsClientError> {
        let att = |e: &dyn std::fmt::Display| KbsClientError::Attester(e.to_string());
        let attester = match &self.primary {
            Primary::Cpu(a) => a,
            Primary::Tpm(tpm) => {
                let nonce = veil_kbs::evidence::tpm_primary_nonce(report_data);
                let (ak, quote) = tpm.quote_now(&nonce).map_err(|e| att(&e))?;
                return Ok((serde_json::to_value(tpm_evidence(&ak, &quote)).map_err(|e| att(&e))?, Vec::new()));
            }
        };
        match attester.evidence(report_data).map_err(|e| att(&e))? {
            Evidence::Tsm(r) if r.provider == crate::tsm::PROVIDER_SNP => {
                let report = veil_attestation::snp::json::report_to_trustee_json(&r.outblob).map_err(|e| att(&e))?;
                let mut chain = Vec::new();
                if let Some(aux) = r.auxblob.as_deref().filter(|a| !a.is_empty()) {
                    for e in cert_table::parse(aux).map_err(|e| att(&e))? {
                        let name = match e.guid {
                            g if g == guid::VCEK => "VCEK",
                            g if g == guid::VLEK => "VLEK",
                            g if g == guid::ASK => "ASK",
                            g if g == guid::ARK => "ARK",
                            _ => continue,
                        };
                        chain.push(json!({"cert_type": name, "data": e.data}));
                    }
                }
                Ok((json!({"attestation_report": report, "cert_chain": chain}), r.outblob))
            }
            Evidence::Tsm(r) if r.provider == crate::tsm::PROVIDER_TDX => {
                let mut v = json!({"quote": STANDARD.encode(&r.outblob), "cc_eventlog": null});
                if let (Some(c), Some(obj)) = (&self.tdx_collateral, v.as_object_mut()) {
                    obj.insert("collateral".into(), c.clone());
                }
                Ok((v, r.outblob))
            }
            _ => Err(KbsClientError::Attester("unsupported evidence for KBS primary evidence".into())),
        }
    }
}

/// A KBS client over HTTPS.
#[derive(Debug, Clone)]
pub struct KbsClient {
    base: String,
    http: reqwest::Client,
}

async fn check(resp: reqwest::Response) -> Result<reqwest::Response, KbsClientError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let body = resp.bytes().await.map_err(http)?;
    match serde_json::from_slice::<ErrorBody>(&body) {
        Ok(e) => Err(KbsClientError::Refused { status, kind: e.kind().to_owned(), detail: e.detail }),
        Err(_) => Err(KbsClientError::Refused {
            status,
            kind: "Unknown".into(),
            detail: String::from_utf8_lossy(body.get(..body.len().min(200)).unwrap_or_default()).into_owned(),
        }),
    }
}

impl KbsClient {
    /// A client for `base_url` (`https://host:port`), trusting `ca_pem` in addition to
    /// nothing else when given (a broker's self-signed certificate), or the web PKI.
    pub fn new(base_url: &str, ca_pem: Option<&[u8]>) -> Result<Self, KbsClientError> {
        let mut b = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(60));
        if let Some(pem) = ca_pem {
            b = b
                .tls_built_in_root_certs(false)
                .add_root_certificate(reqwest::Certificate::from_pem(pem).map_err(http)?);
        }
        Ok(Self { base: base_url.trim_end_matches('/').to_owned(), http: b.build().map_err(http)? })
    }

    /// The whole flow: returns the resource at `path` (`repo/type/tag`), plaintext.
    pub async fn fetch(&self, evidence: &EvidenceProvider, path: &str) -> Result<Zeroizing<Vec<u8>>, KbsClientError> {
        self.fetch_with_token(evidence, path).await.map(|(r, _)| r)
    }

    /// [`KbsClient::fetch`], also returning the session's EAR attestation token.
    pub async fn fetch_with_token(
        &self,
        evidence: &EvidenceProvider,
        path: &str,
    ) -> Result<(Zeroizing<Vec<u8>>, String), KbsClientError> {
        let session = self.attest(evidence).await?;
        let resource = self.resource(&session, path).await?;
        Ok((resource, session.token))
    }

    /// auth + attest: returns the session (cookie, token, key pair).
    pub async fn attest(&self, evidence: &EvidenceProvider) -> Result<Session, KbsClientError> {
        let tee = evidence.tee()?;
        let req = Request {
            version: PROTOCOL_VERSION.into(),
            tee,
            extra_params: json!({"supported-hash-algorithms": ["sha384"]}),
        };
        let resp =
            check(self.http.post(format!("{}/kbs/v0/auth", self.base)).json(&req).send().await.map_err(http)?).await?;
        let cookie = resp
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| {
                v.split(';').next().filter(|c| c.starts_with(&format!("{SESSION_COOKIE}="))).map(str::to_owned)
            })
            .ok_or_else(|| KbsClientError::Protocol("no kbs-session-id cookie".into()))?;
        let challenge: Challenge = resp.json().await.map_err(|e| KbsClientError::Protocol(e.to_string()))?;
        let keys = TeeKeyPair::generate().map_err(|e| KbsClientError::Protocol(e.to_string()))?;
        let runtime_data = RuntimeData { nonce: challenge.nonce, tee_pubkey: keys.public().clone() };
        let produced = evidence.produce(&runtime_data)?;
        let body = Attestation { init_data: evidence.init_data_field(), runtime_data, tee_evidence: produced.evidence };
        let resp = check(
            self.http
                .post(format!("{}/kbs/v0/attest", self.base))
                .header(reqwest::header::COOKIE, &cookie)
                .json(&body)
                .send()
                .await
                .map_err(http)?,
        )
        .await?;
        let token: Value = resp.json().await.map_err(|e| KbsClientError::Protocol(e.to_string()))?;
        let token = token
            .get("token")
            .and_then(Value::as_str)
            .ok_or_else(|| KbsClientError::Protocol("no token in the attestation response".into()))?
            .to_owned();
        Ok(Session { cookie, token, keys })
    }

    /// Fetches and decrypts a resource within an attested session.
    pub async fn resource(&self, session: &Session, path: &str) -> Result<Zeroizing<Vec<u8>>, KbsClientError> {
        let resp = check(
            self.http
                .get(format!("{}/kbs/v0/resource/{path}", self.base))
                .header(reqwest::header::COOKIE, &session.cookie)
                .send()
                .await
                .map_err(http)?,
        )
        .await?;
        let jwe: FlatJwe = resp.json().await.map_err(|e| KbsClientError::Protocol(e.to_string()))?;
        session.keys.open(&jwe).map_err(|e| KbsClientError::Protocol(e.to_string()))
    }
}

/// An attested session. Debug does not print the cookie or the token.
pub struct Session {
    /// `kbs-session-id=...`.
    pub cookie: String,
    /// The EAR attestation token.
    pub token: String,
    keys: TeeKeyPair,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_policy_answer_is_a_refusal_not_an_overloaded_or_failing_broker() {
        let refused = |status| KbsClientError::Refused { status, kind: "PolicyDeny".into(), detail: String::new() };
        assert!(refused(401).is_refusal());
        assert!(refused(403).is_refusal());
        assert!(refused(404).is_refusal());
        for status in [429, 500, 502, 503] {
            assert!(!refused(status).is_refusal(), "{status}");
        }
        assert!(!KbsClientError::Http("connection refused".into()).is_refusal());
    }
}
