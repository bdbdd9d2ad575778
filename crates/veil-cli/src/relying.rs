//! The relying party's commands: `veil verify URL --policy P.toml` (a report of every
//! check, pass or fail) and `veil proxy --upstream URL --policy P.toml` (a local
//! plain-HTTP endpoint for any OpenAI client that forwards only to a runtime whose
//! evidence passes the policy, and checks every answer's receipt).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use clap::Args;
use serde_json::{Value, json};
use tokio_stream::StreamExt as _;
use veil_enclave::serve::receipt;
use veil_host::ratls::{Check, ClientPolicy, RaTlsVerifier, evaluate, verify_fresh_evidence};

/// `veil verify`.
#[derive(Args, Debug)]
pub struct VerifyCmd {
    /// The runtime, `https://host:port`.
    url: String,
    /// The relying party's policy (TOML; see docs/relying-party.md). Without it, the
    /// default policy: genuine, non-debug, hardware SNP or TDX, TCB up to date.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Also ask the runtime for fresh evidence bound to a random nonce and the same TLS
    /// key (proves the runtime is live, not a replayed certificate).
    #[arg(long)]
    nonce: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn load_policy(path: Option<&PathBuf>) -> anyhow::Result<ClientPolicy> {
    match path {
        Some(p) => ClientPolicy::load(p).map_err(|e| anyhow::anyhow!("policy {e}")),
        None => Ok(ClientPolicy::default()),
    }
}

fn https(url: &str) -> anyhow::Result<String> {
    let url = url.trim_end_matches('/').trim_end_matches("/v1").to_owned();
    if !url.starts_with("https://") {
        bail!("{url}: a runtime is reached over attested TLS; give an https:// URL");
    }
    Ok(url)
}

fn random_nonce() -> anyhow::Result<String> {
    let mut nonce = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
        .map_err(|_| anyhow::anyhow!("no randomness"))?;
    Ok(hex::encode(nonce))
}

/// `veil verify`: exit 0 when every check passed, 1 when one failed, 2 on a usage error.
pub fn run_verify(cmd: VerifyCmd) -> anyhow::Result<ExitCode> {
    let url = https(&cmd.url)?;
    let policy = load_policy(cmd.policy.as_ref())?;
    // The handshake verifies the evidence and its binding to the TLS key; the policy is
    // judged below so the report can list every check.
    let verifier = Arc::new(RaTlsVerifier::report_only(policy.clone()));
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(verifier.client_config().context("TLS configuration")?)
        .timeout(Duration::from_secs(30))
        .build()
        .context("HTTP client")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let started = Instant::now();
    let mut checks: Vec<Check> = Vec::new();
    let mut add = |name: &'static str, ok: bool, detail: String| checks.push(Check { name, ok, detail });
    // Any request completes the handshake; /v1/attestation also serves --nonce.
    let nonce = random_nonce()?;
    let answer = rt.block_on(async {
        let resp = client.get(format!("{url}/v1/attestation?nonce={nonce}")).send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        Ok::<_, reqwest::Error>((status, body))
    });
    let cert = verifier.verified();
    match (&answer, &cert) {
        (_, Some(cert)) => {
            let a = &cert.appraisal;
            add(
                "evidence",
                true,
                format!(
                    "{} evidence in the TLS certificate verified{}",
                    a.tee,
                    if a.simulated { " (to SIMULATED roots)" } else { "" }
                ),
            );
            add(
                "binding",
                true,
                format!("the evidence binds the TLS key (certificate sha256 {})", cert.certificate_sha256),
            );
        }
        (Err(e), None) => {
            let why = verifier.last_refusal().unwrap_or_else(|| error_chain(e));
            add("evidence", false, format!("the TLS endpoint did not present verifiable evidence: {why}"));
        }
        (Ok(_), None) => add("evidence", false, "the handshake completed without a verified certificate".into()),
    }
    let mut fresh = None;
    if let (Some(cert), true) = (&cert, cmd.nonce) {
        let result = match &answer {
            Ok((s, body)) if s.is_success() => {
                serde_json::from_slice::<Value>(body).map_err(|e| format!("/v1/attestation is not JSON: {e}")).and_then(
                    |v| verify_fresh_evidence(&v, &nonce, cert, true, verifier.verifiers()).map_err(|e| e.to_string()),
                )
            }
            Ok((s, _)) => Err(format!("/v1/attestation answered {s}")),
            Err(e) => Err(error_chain(e)),
        };
        match result {
            Ok(a) => {
                add("fresh", true, format!("new evidence for nonce {}… binds the same TLS key", &nonce[..16]));
                fresh = Some(a);
            }
            Err(e) => add("fresh", false, e),
        }
    }
    if let Some(cert) = &cert {
        checks.extend(evaluate(&cert.appraisal, &policy));
        if let Some(f) = &fresh {
            for c in evaluate(f, &policy).into_iter().filter(|c| !c.ok) {
                checks.push(Check { name: c.name, ok: false, detail: format!("fresh evidence: {}", c.detail) });
            }
        }
    }
    let passed = checks.iter().all(|c| c.ok);
    if cmd.json {
        let out = json!({
            "runtime": url,
            "verified": passed,
            "checks": checks,
            "certificate_sha256": cert.as_ref().map(|c| &c.certificate_sha256),
            "claims": cert.as_ref().map(|c| &c.appraisal),
            "launch_identity": cert.as_ref().map(|c| &c.launch_identity),
            "fresh_evidence": fresh,
            "nonce": cmd.nonce.then_some(&nonce),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "veil verify {url} (policy: {})",
            cmd.policy.as_ref().map_or_else(|| "default".to_owned(), |p| p.display().to_string())
        );
        for c in &checks {
            println!("  {} {:<12} {}", if c.ok { "✓" } else { "✗" }, c.name, c.detail);
        }
        let failed = checks.iter().filter(|c| !c.ok).count();
        if passed {
            println!("PASS: the runtime satisfies the policy ({} ms)", started.elapsed().as_millis());
        } else {
            println!("FAIL: {failed} check(s) failed; send this runtime nothing");
        }
    }
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// `veil proxy`.
#[derive(Args, Debug)]
pub struct ProxyCmd {
    /// The runtime, `https://host:port`.
    #[arg(long)]
    upstream: String,
    /// The relying party's policy (TOML). Without it, the default policy.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Where to listen (plain HTTP: keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

struct Proxy {
    upstream: String,
    client: reqwest::Client,
    verifier: Arc<RaTlsVerifier>,
}

/// An OpenAI-shaped error.
fn oai_error(status: StatusCode, kind: &str, code: &str, message: String) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": code}});
    (status, axum::Json(body)).into_response()
}

fn not_verified(message: String) -> Response {
    oai_error(StatusCode::BAD_GATEWAY, "veil_verification_error", "upstream_not_verified", message)
}

/// `veil proxy`: serves until interrupted.
pub fn run_proxy(cmd: ProxyCmd) -> anyhow::Result<ExitCode> {
    crate::kbs::init_logging();
    let upstream = https(&cmd.upstream)?;
    if !cmd.listen.ip().is_loopback() {
        tracing::warn!(listen = %cmd.listen, "the proxy speaks plain HTTP: anyone who can reach this address can use it");
    }
    let policy = load_policy(cmd.policy.as_ref())?;
    if policy.danger_trust_simulator {
        tracing::warn!("the policy accepts SIMULATED evidence: tests and demos only");
    }
    // Every new TLS connection to the runtime is verified again, policy included.
    let verifier = Arc::new(RaTlsVerifier::new(policy).every_handshake());
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(verifier.client_config().context("TLS configuration")?)
        .connect_timeout(Duration::from_secs(10))
        .build()
        .context("HTTP client")?;
    let proxy = Arc::new(Proxy { upstream: upstream.clone(), client, verifier });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(cmd.listen).await.with_context(|| format!("listening on {}", cmd.listen))?;
        let addr = listener.local_addr()?;
        // Check the upstream once now, so a misconfiguration shows at start; requests
        // are refused while it fails, and it is checked again on each connection.
        match proxy.client.get(format!("{upstream}/v1/models")).send().await {
            Ok(_) => match proxy.verifier.verified() {
                Some(v) => tracing::info!(
                    upstream = %upstream, tee = %v.appraisal.tee, simulated = v.appraisal.simulated,
                    certificate = %v.certificate_sha256, "upstream verified"
                ),
                None => tracing::warn!(upstream = %upstream, "upstream answered without a verified certificate"),
            },
            Err(e) => tracing::warn!(upstream = %upstream, reason = %error_chain(&e), "upstream NOT verified; requests will be refused until it is"),
        }
        println!("proxy: http://{addr}/v1");
        let app = axum::Router::new()
            .fallback(forward)
            .layer(tower_http::limit::RequestBodyLimitLayer::new(4 << 20))
            .with_state(proxy);
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
            .context("serving")
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Request headers passed to the runtime; everything else (cookies, proxies' own) is
/// dropped.
const FORWARDED: [header::HeaderName; 4] =
    [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT, header::USER_AGENT];

async fn forward(State(p): State<Arc<Proxy>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path_and_query().map_or("/", |pq| pq.as_str());
    if !path.starts_with("/v1/") {
        return oai_error(StatusCode::NOT_FOUND, "invalid_request_error", "not_found", format!("no route {path}"));
    }
    let mut req = p.client.request(method.clone(), format!("{}{path}", p.upstream)).body(body.clone());
    for h in FORWARDED {
        if let Some(v) = headers.get(&h) {
            req = req.header(h, v);
        }
    }
    let resp = match req.send().await {
        Ok(r) => r,
        Err(e) => {
            let why = p.verifier.last_refusal().filter(|_| is_tls_refusal(&e)).unwrap_or_else(|| error_chain(&e));
            tracing::warn!(reason = %why, "request refused: the upstream is not verified or not reachable");
            return not_verified(format!(
                "veil proxy: the upstream runtime failed verification or is unreachable: {why}"
            ));
        }
    };
    // The key that signs receipts is the key of the certificate that just verified.
    let Some(verified) = p.verifier.verified() else {
        return not_verified("veil proxy: no verified upstream certificate".into());
    };
    let status = StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out_headers = HeaderMap::new();
    for h in [header::CONTENT_TYPE, header::RETRY_AFTER, header::CACHE_CONTROL] {
        if let Some(v) = resp.headers().get(h.as_str()).and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
            out_headers.insert(h, v);
        }
    }
    if let Some(v) = resp.headers().get("veil-receipt").and_then(|v| HeaderValue::from_bytes(v.as_bytes()).ok()) {
        out_headers.insert("veil-receipt", v);
    }
    let answered = method == Method::POST && status.is_success();
    let streaming = resp
        .headers()
        .get(header::CONTENT_TYPE.as_str())
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let req_hash = receipt::sha256_hex(&body);
    let key = verified.tee_pubkey.clone();
    if answered && streaming {
        // Chunks pass through as they come; the text is collected to check the receipt
        // chunk, and `data: [DONE]` is forwarded only after it verified.
        let mut upstream = resp.bytes_stream();
        let stream = async_stream(move |tx| async move {
            let mut sse = SseCheck::new(req_hash, key);
            while let Some(chunk) = upstream.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                        return;
                    }
                };
                for out in sse.feed(&chunk) {
                    if tx.send(Ok(out)).await.is_err() {
                        return;
                    }
                }
            }
        });
        out_headers.insert("veil-receipt-verified", HeaderValue::from_static("at-end-of-stream"));
        return (status, out_headers, Body::from_stream(stream)).into_response();
    }
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return not_verified(format!("veil proxy: reading the upstream answer: {}", error_chain(&e))),
    };
    if answered {
        match check_json_receipt(&bytes, &req_hash, &key) {
            Ok(seq) => {
                if let Ok(v) = HeaderValue::from_str(&format!("seq={seq}")) {
                    out_headers.insert("veil-receipt-verified", v);
                }
            }
            Err(why) => {
                tracing::warn!(reason = %why, "answer refused: its receipt does not verify");
                return not_verified(format!("veil proxy: the answer's receipt does not verify: {why}"));
            }
        }
    }
    (status, out_headers, bytes).into_response()
}

fn is_tls_refusal(e: &reqwest::Error) -> bool {
    e.is_connect() || error_chain(e).contains("certificate")
}

/// Checks a JSON answer's `veil_receipt`: signed by the verified key, for this request
/// body and this answer. Returns its sequence number.
fn check_json_receipt(body: &[u8], req_hash: &str, key: &veil_kbs::TeePubKey) -> Result<u64, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let token = v.get("veil_receipt").and_then(Value::as_str).ok_or("the answer carries no receipt")?;
    let claims = receipt::verify(token, key).map_err(|e| e.to_string())?;
    if claims.req != req_hash {
        return Err("the receipt is for another request".into());
    }
    let resp = receipt::json_answer_hash(&v).map_err(|e| e.to_string())?;
    if claims.resp != resp {
        return Err("the receipt is for another answer".into());
    }
    Ok(claims.seq)
}

/// Follows an SSE stream: collects the generated text (chat `delta.content`, completion
/// `text`), checks the receipt chunk, and holds `data: [DONE]` back until the receipt
/// has verified; without one, or with a bad one, the client gets an error event instead.
struct SseCheck {
    buf: Vec<u8>,
    text: String,
    req_hash: String,
    key: veil_kbs::TeePubKey,
    verified: Option<Result<u64, String>>,
}

impl SseCheck {
    fn new(req_hash: String, key: veil_kbs::TeePubKey) -> Self {
        Self { buf: Vec::new(), text: String::new(), req_hash, key, verified: None }
    }

    /// The bytes to pass on for `chunk`: every complete event, unchanged, except
    /// `[DONE]`, which is replaced by an error event if the receipt did not verify.
    fn feed(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = find_event_end(&self.buf) {
            let event: Vec<u8> = self.buf.drain(..end).collect();
            out.push(self.event(event));
        }
        out
    }

    fn event(&mut self, event: Vec<u8>) -> Bytes {
        let text = String::from_utf8_lossy(&event);
        let data: String =
            text.lines().filter_map(|l| l.strip_prefix("data:")).map(|d| d.trim_start()).collect::<Vec<_>>().join("\n");
        if data.trim() == "[DONE]" {
            return match &self.verified {
                Some(Ok(seq)) => {
                    tracing::debug!(seq, "streamed answer's receipt verified");
                    Bytes::from(event)
                }
                Some(Err(why)) => error_event(&format!("veil proxy: the answer's receipt does not verify: {why}")),
                None => error_event("veil proxy: the stream ended without a receipt"),
            };
        }
        if let Ok(v) = serde_json::from_str::<Value>(&data) {
            if let Some(token) = v.get("veil_receipt").and_then(Value::as_str) {
                self.verified = Some(self.check(token));
            } else if let Some(choices) = v.get("choices").and_then(Value::as_array) {
                for c in choices {
                    if let Some(t) = c.pointer("/delta/content").and_then(Value::as_str) {
                        self.text.push_str(t);
                    } else if let Some(t) = c.get("text").and_then(Value::as_str) {
                        self.text.push_str(t);
                    }
                }
            }
        }
        Bytes::from(event)
    }

    fn check(&self, token: &str) -> Result<u64, String> {
        let claims = receipt::verify(token, &self.key).map_err(|e| e.to_string())?;
        if claims.req != self.req_hash {
            return Err("the receipt is for another request".into());
        }
        if claims.resp != receipt::sha256_hex(self.text.as_bytes()) {
            return Err("the receipt is for another answer".into());
        }
        Ok(claims.seq)
    }
}

/// The end (exclusive, including the blank line) of the first complete SSE event.
fn find_event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn error_event(message: &str) -> Bytes {
    let body =
        json!({"error": {"message": message, "type": "veil_verification_error", "code": "receipt_not_verified"}});
    Bytes::from(format!("data: {body}\n\n"))
}

/// A stream fed by a task through a small channel.
fn async_stream<F, Fut>(f: F) -> impl tokio_stream::Stream<Item = Result<Bytes, std::io::Error>>
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The error and its sources: reqwest hides the TLS verifier's reason two levels down.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_events_are_split_and_done_is_held_for_the_receipt() {
        let key = veil_kbs::TeePubKey::EC {
            crv: "P-256".into(),
            alg: veil_kbs::jwe::ALG.into(),
            x: String::new(),
            y: String::new(),
        };
        let mut s = SseCheck::new("00".into(), key);
        // Split across chunks, and a receipt that does not verify.
        let out = s.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n");
        assert!(out.is_empty());
        let out = s.feed(b"\ndata: {\"choices\":[],\"veil_receipt\":\"x.y.z\"}\n\ndata: [DONE]\n\n");
        assert_eq!(out.len(), 3);
        assert_eq!(s.text, "Hi");
        let last = String::from_utf8(out[2].to_vec()).unwrap();
        assert!(last.contains("receipt does not verify"), "{last}");
        // No receipt at all.
        let mut s = SseCheck::new("00".into(), s.key.clone());
        let out = s.feed(b"data: [DONE]\r\n\r\n");
        assert!(String::from_utf8(out[0].to_vec()).unwrap().contains("without a receipt"));
        assert_eq!(find_event_end(b"data: x"), None);
    }
}
