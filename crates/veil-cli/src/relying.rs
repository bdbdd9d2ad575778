//! The relying party's commands: `veil verify URL --policy P.toml` (a report of every
//! check, pass or fail) and `veil proxy --upstream URL --policy P.toml` (a local
//! plain-HTTP endpoint for any OpenAI client that forwards only to a runtime whose
//! evidence passes the policy, and checks every answer's receipt).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use clap::Args;
use serde_json::json;
use tokio_stream::StreamExt as _;
use veil_client::receipt::{self, StreamCheck, StreamEvent};
use veil_client::{Client, ClientPolicy, RaTlsVerifier, Report};

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

/// Prints a report, human-readable or as JSON.
pub(crate) fn print_report(report: &Report, policy_name: &str, json: bool, elapsed: Duration) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
        return Ok(());
    }
    println!("veil verify {} (policy: {policy_name})", report.runtime);
    for c in &report.checks {
        println!("  {} {:<12} {}", if c.ok { "✓" } else { "✗" }, c.name, c.detail);
    }
    if report.verified {
        println!("PASS: the runtime satisfies the policy ({} ms)", elapsed.as_millis());
    } else {
        let failed = report.checks.iter().filter(|c| !c.ok).count();
        println!("FAIL: {failed} check(s) failed; send this runtime nothing");
    }
    Ok(())
}

/// `veil verify`: exit 0 when every check passed, 1 when one failed, 2 on a usage error.
pub fn run_verify(cmd: VerifyCmd) -> anyhow::Result<ExitCode> {
    let policy = load_policy(cmd.policy.as_ref())?;
    // The handshake verifies the evidence and its binding to the TLS key; the policy is
    // judged in the report so it can list every check.
    let client = Client::report_only(&cmd.url, policy)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let started = Instant::now();
    let report = rt.block_on(client.report(cmd.nonce))?;
    let name = cmd.policy.as_ref().map_or_else(|| "default".to_owned(), |p| p.display().to_string());
    print_report(&report, &name, cmd.json, started.elapsed())?;
    Ok(if report.verified { ExitCode::SUCCESS } else { ExitCode::from(1) })
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
    let upstream = veil_client::runtime_url(&cmd.upstream)?;
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
            let mut sse = StreamCheck::new(req_hash, key);
            while let Some(chunk) = upstream.next().await {
                let chunk = match chunk {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                        return;
                    }
                };
                for event in sse.feed(&chunk) {
                    let out = match event {
                        StreamEvent::Pass(b) => Bytes::from(b),
                        StreamEvent::Done(b, seq) => {
                            tracing::debug!(seq, "streamed answer's receipt verified");
                            Bytes::from(b)
                        }
                        StreamEvent::Refused(why) => error_event(&format!("veil proxy: {why}")),
                    };
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
        match receipt::check_json(&bytes, &req_hash, &key).map(|c| c.seq) {
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

pub(crate) use veil_client::error_chain;
