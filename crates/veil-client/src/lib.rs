//! # veil-client
//!
//! What a relying party links to talk to a Veil runtime without trusting the network or
//! the host: nothing is sent until the runtime has proved, in its TLS handshake, that it
//! is a genuine TEE running what the relying party's policy allows, and every answer's
//! signed receipt is checked against the request that was sent.
//!
//! - [`ratls`]: the policy file ([`ClientPolicy`]) and the rustls verifier
//!   ([`RaTlsVerifier`]) that checks the evidence in the runtime's certificate.
//! - [`evidence`]: evidence verification and appraisal into claims (shared with the key
//!   broker, which judges the same evidence).
//! - [`receipt`]: receipts, for JSON answers and streams.
//! - [`Client`]: all of it over HTTPS: [`Client::report`] (what `veil verify` prints) and
//!   [`Client::post`] (a request whose answer comes back only with a verified receipt).
//!
//! ```no_run
//! # async fn f() -> Result<(), veil_client::ClientError> {
//! let policy = veil_client::ClientPolicy::load(std::path::Path::new("policy.toml")).map_err(veil_client::ClientError::Policy)?;
//! let client = veil_client::Client::new("https://10.0.0.7:8443", policy)?.with_api_key("sk-...");
//! let answer = client
//!     .post("/v1/chat/completions", &serde_json::json!({"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}]}))
//!     .await?;
//! println!("{} (receipt #{})", answer.body["choices"][0]["message"]["content"], answer.receipt.seq);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod evidence;
pub mod ratls;
pub mod receipt;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use zeroize::Zeroizing;

pub use evidence::Appraised;
pub use ratls::{Check, ClientPolicy, RaTlsVerifier, VerifiedRuntime};
pub use receipt::ReceiptClaims;

/// Why a request through [`Client`] did not return a verified answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not an `https://` URL.
    #[error("{0}: a runtime is reached over attested TLS; give an https:// URL")]
    Url(String),
    /// The policy file could not be read or is invalid.
    #[error("policy {0}")]
    Policy(String),
    /// The runtime's certificate was refused: its evidence did not verify, did not bind
    /// the TLS key, or did not satisfy the policy. Nothing was sent.
    #[error("the runtime was not verified: {0}")]
    NotVerified(String),
    /// The runtime could not be reached, or the exchange failed.
    #[error("{0}")]
    Http(String),
    /// The runtime answered with an error status (its OpenAI-shaped error body).
    #[error("the runtime answered {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The body, as text.
        body: String,
    },
    /// The answer's receipt is missing, does not verify, or is for something else.
    #[error(transparent)]
    Receipt(#[from] receipt::ReceiptError),
}

/// A verified answer: its body and the receipt that vouches for it.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The JSON answer (its `veil_receipt` field included).
    pub body: Value,
    /// The receipt's claims, checked: signed by the attested key, for this request and
    /// this answer.
    pub receipt: ReceiptClaims,
}

/// What [`Client::report`] found: every check, pass or fail.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// The runtime.
    pub runtime: String,
    /// True only if every check passed.
    pub verified: bool,
    /// The checks, in order: evidence, binding, (fresh,) then the policy's.
    pub checks: Vec<Check>,
    /// SHA-256 of the certificate, hex.
    pub certificate_sha256: Option<String>,
    /// The certificate evidence's claims.
    pub claims: Option<Appraised>,
    /// The launch identity init-data names, if any.
    pub launch_identity: Option<veil_kbs::initdata::LaunchIdentity>,
    /// The fresh evidence's claims (with a nonce).
    pub fresh_evidence: Option<Appraised>,
    /// The nonce asked for (with a nonce).
    pub nonce: Option<String>,
}

/// An HTTPS client for one Veil runtime.
#[derive(Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    verifier: Arc<RaTlsVerifier>,
    api_key: Option<Zeroizing<String>>,
}

/// `url` without a trailing `/` or `/v1`; an error unless it is `https://`.
pub fn runtime_url(url: &str) -> Result<String, ClientError> {
    let url = url.trim_end_matches('/').trim_end_matches("/v1").to_owned();
    if url.starts_with("https://") { Ok(url) } else { Err(ClientError::Url(url)) }
}

/// A random 32-byte nonce, hex.
pub fn random_nonce() -> Result<String, ClientError> {
    let mut nonce = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| ClientError::Http("no randomness".into()))?;
    Ok(hex::encode(nonce))
}

/// The error and its sources: reqwest hides the TLS verifier's reason two levels down.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

impl Client {
    /// A client that completes a TLS handshake with the runtime at `url` only if the
    /// certificate's evidence verifies, binds the TLS key and satisfies `policy`, on
    /// every new connection.
    pub fn new(url: &str, policy: ClientPolicy) -> Result<Self, ClientError> {
        Self::with_verifier(url, RaTlsVerifier::new(policy).every_handshake())
    }

    /// A client for [`Client::report`]: the handshake requires verified evidence bound
    /// to the TLS key (simulated included, so the report can say what it is) but not
    /// the policy, which the report evaluates. Use it for reports only.
    pub fn report_only(url: &str, policy: ClientPolicy) -> Result<Self, ClientError> {
        Self::with_verifier(url, RaTlsVerifier::report_only(policy))
    }

    fn with_verifier(url: &str, verifier: RaTlsVerifier) -> Result<Self, ClientError> {
        let base = runtime_url(url)?;
        let verifier = Arc::new(verifier);
        let tls = verifier.client_config().map_err(|e| ClientError::Http(format!("TLS configuration: {e}")))?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .map_err(|e| ClientError::Http(format!("HTTP client: {}", error_chain(&e))))?;
        Ok(Self { base, http, verifier, api_key: None })
    }

    /// Sends `Authorization: Bearer KEY` with every request.
    #[must_use]
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(Zeroizing::new(key.into()));
        self
    }

    /// The runtime's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The certificate verifier (what it accepted last, and why it refused).
    pub fn verifier(&self) -> &RaTlsVerifier {
        &self.verifier
    }

    /// What the last verified certificate proved.
    pub fn verified(&self) -> Option<VerifiedRuntime> {
        self.verifier.verified()
    }

    fn send_error(&self, e: &reqwest::Error) -> ClientError {
        match self.verifier.last_refusal() {
            Some(why) if e.is_connect() || error_chain(e).contains("certificate") => ClientError::NotVerified(why),
            _ => ClientError::Http(error_chain(e)),
        }
    }

    /// POSTs `body` as JSON to `path` (`/v1/...`) and returns the answer once its
    /// receipt has verified: signed by the key the verified certificate binds, for these
    /// request bytes and this answer.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Answer, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Http(e.to_string()))?;
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(bytes.clone());
        if let Some(k) = &self.api_key {
            req = req.bearer_auth(k.as_str());
        }
        let resp = req.send().await.map_err(|e| self.send_error(&e))?;
        // The key that signs receipts is the key of the certificate that just verified.
        let key = self
            .verifier
            .verified()
            .map(|v| v.tee_pubkey)
            .ok_or_else(|| ClientError::NotVerified("no verified certificate".into()))?;
        let status = resp.status();
        let answer = resp.bytes().await.map_err(|e| ClientError::Http(error_chain(&e)))?;
        if !status.is_success() {
            return Err(ClientError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&answer).chars().take(2000).collect(),
            });
        }
        let receipt = receipt::check_json(&answer, &receipt::sha256_hex(&bytes), &key)?;
        let body = serde_json::from_slice(&answer).map_err(|e| ClientError::Http(e.to_string()))?;
        Ok(Answer { body, receipt })
    }

    /// Verifies the runtime and reports every check: the certificate's evidence and its
    /// binding to the TLS key, with `fresh` a new evidence round trip bound to a random
    /// nonce and the same key (`/v1/attestation`), then each of the policy's checks.
    /// Nothing is sent but the attestation request. Meant for a client made with
    /// [`Client::report_only`]; with [`Client::new`], a policy failure shows as a refused
    /// certificate.
    pub async fn report(&self, fresh: bool) -> Result<Report, ClientError> {
        let policy = self.verifier.policy();
        let mut checks: Vec<Check> = Vec::new();
        let mut add = |name: &'static str, ok: bool, detail: String| checks.push(Check { name, ok, detail });
        let nonce = random_nonce()?;
        let answer = async {
            let resp = self.http.get(format!("{}/v1/attestation?nonce={nonce}", self.base)).send().await?;
            let status = resp.status();
            Ok::<_, reqwest::Error>((status, resp.bytes().await?))
        }
        .await;
        let cert = self.verifier.verified();
        match (&answer, &cert) {
            (_, Some(cert)) => {
                let a = &cert.appraisal;
                let sim = if a.simulated { " (to SIMULATED roots)" } else { "" };
                add("evidence", true, format!("{} evidence in the TLS certificate verified{sim}", a.tee));
                add(
                    "binding",
                    true,
                    format!("the evidence binds the TLS key (certificate sha256 {})", cert.certificate_sha256),
                );
            }
            (Err(e), None) => {
                let why = self.verifier.last_refusal().unwrap_or_else(|| error_chain(e));
                add("evidence", false, format!("the TLS endpoint did not present verifiable evidence: {why}"));
            }
            (Ok(_), None) => add("evidence", false, "the handshake completed without a verified certificate".into()),
        }
        let mut fresh_evidence = None;
        if let (Some(cert), true) = (&cert, fresh) {
            let result = match &answer {
                Ok((s, body)) if s.is_success() => serde_json::from_slice::<Value>(body)
                    .map_err(|e| format!("/v1/attestation is not JSON: {e}"))
                    .and_then(|v| {
                        ratls::verify_fresh_evidence(&v, &nonce, cert, true, self.verifier.verifiers())
                            .map_err(|e| e.to_string())
                    }),
                Ok((s, _)) => Err(format!("/v1/attestation answered {s}")),
                Err(e) => Err(error_chain(e)),
            };
            match result {
                Ok(a) => {
                    let short = nonce.get(..16).unwrap_or(&nonce);
                    add("fresh", true, format!("new evidence for nonce {short}… binds the same TLS key"));
                    fresh_evidence = Some(a);
                }
                Err(e) => add("fresh", false, e),
            }
        }
        if let Some(cert) = &cert {
            checks.extend(ratls::evaluate(&cert.appraisal, policy));
            if let Some(f) = &fresh_evidence {
                for c in ratls::evaluate(f, policy).into_iter().filter(|c| !c.ok) {
                    checks.push(Check { name: c.name, ok: false, detail: format!("fresh evidence: {}", c.detail) });
                }
            }
        }
        Ok(Report {
            runtime: self.base.clone(),
            verified: checks.iter().all(|c| c.ok),
            checks,
            certificate_sha256: cert.as_ref().map(|c| c.certificate_sha256.clone()),
            claims: cert.as_ref().map(|c| c.appraisal.clone()),
            launch_identity: cert.and_then(|c| c.launch_identity),
            fresh_evidence,
            nonce: fresh.then_some(nonce),
        })
    }
}
