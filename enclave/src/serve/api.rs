//! The OpenAI-compatible API: `POST /v1/chat/completions` (JSON and SSE),
//! `POST /v1/completions`, `POST /v1/embeddings`, `GET /v1/models`, errors in OpenAI's
//! shape (`{"error": {"message", "type", "param", "code"}}`).
//!
//! Request bodies are untrusted: they are size-limited before parsing, parsed into
//! typed structs, and every field the models do not support is refused with a 400
//! that names it, rather than silently ignored.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use veil_models::ModelError;
use veil_models::chat::{FinishReason, GenParams, Message};

use super::engine::{ChatEngine, EmbedEngine, EngineError};
use super::{Engine, Serving};

/// The largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;
/// The most stop strings, as OpenAI allows.
const MAX_STOP: usize = 4;

/// What the API serves.
#[derive(Debug, Clone)]
pub struct Api {
    /// The models being served (and those withdrawn).
    pub serving: Arc<Serving>,
    /// Who may call, and how often.
    pub credentials: Credentials,
    /// Rate limits per caller ([`Principal::label`]).
    pub limiter: Arc<veil_kbs::limit::Limiter<String>>,
    /// Evidence for `/v1/attestation`.
    pub evidence: Arc<crate::kbs::EvidenceProvider>,
    /// The runtime's TLS key, as the `tee-pubkey` fresh evidence binds.
    pub tee_pubkey: veil_kbs::TeePubKey,
    /// Signs a receipt for every answer.
    pub receipts: Arc<super::receipt::Signer>,
    /// Prometheus metrics.
    pub metrics: Arc<super::metrics::Metrics>,
}

/// An API error in OpenAI's shape.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    kind: &'static str,
    message: String,
    param: Option<&'static str>,
    /// Seconds, for `Retry-After` (rate limits).
    retry_after: Option<u64>,
}

impl ApiError {
    fn bad(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            kind: "invalid_request_error",
            message: message.into(),
            param,
            retry_after: None,
        }
    }

    /// A 500 with a fixed message (details go to the log, not the client).
    pub fn internal(message: &str) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "server_error",
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    /// A refusal of the request as sent (4xx), with the reason.
    pub fn status(status: StatusCode, message: String) -> Self {
        Self { status, kind: "invalid_request_error", message, param: None, retry_after: None }
    }

    /// A 503 with a fixed message: the runtime cannot serve at all right now.
    pub fn unavailable(message: &str) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "server_error",
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    fn unauthorized(message: &str) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            kind: "authentication_error",
            message: message.into(),
            param: None,
            retry_after: None,
        }
    }

    fn rate_limited(wait: std::time::Duration) -> Self {
        Self {
            status: StatusCode::TOO_MANY_REQUESTS,
            kind: "rate_limit_error",
            message: format!("rate limit exceeded; retry in {} s", wait.as_secs().saturating_add(1)),
            param: None,
            retry_after: Some(wait.as_secs().saturating_add(1)),
        }
    }

    fn not_found(message: String) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            kind: "invalid_request_error",
            message,
            param: Some("model"),
            retry_after: None,
        }
    }

    fn engine(e: EngineError) -> Self {
        match e {
            EngineError::Busy => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                kind: "server_error",
                message: "the model is busy; retry later".into(),
                param: None,
                retry_after: None,
            },
            EngineError::Stopped => Self {
                status: StatusCode::SERVICE_UNAVAILABLE,
                kind: "server_error",
                message: "the model is not being served".into(),
                param: None,
                retry_after: None,
            },
            EngineError::Model(ModelError::InvalidRequest(m)) => Self::bad(m, None),
            EngineError::Model(other) => {
                tracing::error!(error = %other, "inference failed");
                Self {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    kind: "server_error",
                    message: "inference failed".into(),
                    param: None,
                    retry_after: None,
                }
            }
        }
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": Value::Null}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, s.into());
        }
        r
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The router (the caller adds its own layers: body limit, metrics, receipts).
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/attestation", get(attestation))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("no such endpoint".into()) })
        .with_state(api)
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn random_id(prefix: &str) -> String {
    let mut b = [0u8; 12];
    // An id, not a secret: a failure of the RNG leaves zeros, which is still an id.
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    format!("{prefix}-{}", hex::encode(b))
}

/// An accepted API key.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    /// SHA-256 of the key.
    pub digest: [u8; 32],
    /// `key:<name>`, or `key:<first 12 hex digits of the digest>` for unnamed keys.
    pub label: String,
    /// Its rate limit.
    pub quota: veil_kbs::limit::Quota,
}

/// Who may call the API ([`super::ApiSection`]).
#[derive(Debug, Clone)]
pub struct Credentials {
    /// Accepted API keys.
    pub keys: Vec<KeyEntry>,
    /// The CA (PEM) whose client certificates authenticate requests.
    pub client_ca: Option<Vec<u8>>,
    /// The TLS handshake requires a client certificate.
    pub require_client_cert: bool,
    /// No credentials at all (said explicitly in the configuration).
    pub unauthenticated: bool,
    /// The rate limit for callers without a key of their own.
    pub default_quota: veil_kbs::limit::Quota,
}

/// What the connection says about the caller, set per connection by the server.
#[derive(Debug, Clone)]
pub struct Conn {
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// SHA-256 (hex) of the client certificate, when one was presented and verified
    /// against the client CA during the handshake.
    pub client_cert: Option<String>,
}

/// An authenticated (or, where allowed, anonymous) caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// `key:<name>`, `cert:<sha256 prefix>` or `addr:<ip>`: what the rate limit and the
    /// audit log know the caller by. Never a secret.
    pub label: String,
    quota: veil_kbs::limit::Quota,
}

impl Principal {
    fn by_addr(creds: &Credentials, conn: Option<&Conn>) -> Self {
        let label = conn.map_or_else(|| "addr:unknown".to_owned(), |c| format!("addr:{}", c.peer.ip()));
        Self { label, quota: creds.default_quota }
    }
}

/// Authenticates a request, then takes one request from the caller's rate limit.
fn authorize(api: &Api, headers: &HeaderMap, conn: Option<&Conn>) -> ApiResult<Principal> {
    admit(api, authenticate(&api.credentials, headers, conn)?)
}

/// Who is calling: `Authorization: Bearer <key>` against the configured key digests
/// (every digest compared, branch-free), and the client certificate the handshake
/// verified.
fn authenticate(creds: &Credentials, headers: &HeaderMap, conn: Option<&Conn>) -> ApiResult<Principal> {
    Ok(if creds.unauthenticated {
        Principal::by_addr(creds, conn)
    } else {
        let cert = conn.and_then(|c| c.client_cert.as_deref());
        let key = match headers.get(header::AUTHORIZATION) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .ok()
                    .and_then(|v| v.strip_prefix("Bearer "))
                    .ok_or_else(|| ApiError::unauthorized("the Authorization header must be \"Bearer <API key>\""))?,
            ),
        };
        let key = match key {
            None => None,
            Some(k) => {
                let digest: [u8; 32] =
                    sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(k.as_bytes())).into();
                // Digests are compared, so timing says nothing useful about a key; the
                // comparison is branch-free anyway, and every configured digest is checked.
                let mut found = None;
                for entry in &creds.keys {
                    let diff = entry.digest.iter().zip(&digest).fold(0u8, |acc, (a, b)| acc | (a ^ b));
                    if std::hint::black_box(diff) == 0 {
                        found = Some(entry);
                    }
                }
                Some(found.ok_or_else(|| ApiError::unauthorized("invalid API key"))?)
            }
        };
        match (key, cert) {
            // With a required certificate, configured keys are a second factor.
            (None, Some(_)) if creds.require_client_cert && !creds.keys.is_empty() => {
                return Err(ApiError::unauthorized("an API key is required (Authorization: Bearer ...)"));
            }
            (Some(k), _) => Principal { label: k.label.clone(), quota: k.quota },
            (None, Some(fp)) => {
                Principal { label: format!("cert:{}", fp.get(..16).unwrap_or(fp)), quota: creds.default_quota }
            }
            (None, None) if creds.keys.is_empty() => {
                return Err(ApiError::unauthorized("a client certificate is required"));
            }
            (None, None) => return Err(ApiError::unauthorized("an API key is required (Authorization: Bearer ...)")),
        }
    })
}

/// Takes one request from `principal`'s rate limit.
fn admit(api: &Api, principal: Principal) -> ApiResult<Principal> {
    match api.limiter.admit_with(&principal.label, principal.quota) {
        Ok(()) => Ok(principal),
        Err(wait) => {
            tracing::debug!(caller = %principal.label, "rate limited");
            Err(ApiError::rate_limited(wait))
        }
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad(format!("invalid request body: {e}"), None))
}

async fn models(
    State(api): State<Arc<Api>>,
    conn: Option<axum::Extension<Conn>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&api, &headers, conn.as_deref())?;
    let created = now();
    let names: Vec<String> =
        api.serving.models.read().map(|m| m.iter().map(|(l, _)| l.section.name.clone()).collect()).unwrap_or_default();
    let data: Vec<Value> =
        names.iter().map(|n| json!({"id": n, "object": "model", "created": created, "owned_by": "veil"})).collect();
    Ok(axum::Json(json!({"object": "list", "data": data})).into_response())
}

/// `stop`: a string or up to four strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

/// Message content: a string, or text parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Debug, Deserialize)]
struct InMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

/// Sampling fields common to chat and text completions. Fields a model cannot honour
/// (`n` > 1, penalties, logprobs, tools, ...) are refused by [`refuse_unsupported`].
#[derive(Debug, Deserialize)]
struct Sampling {
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    stream: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: String,
    messages: Vec<InMessage>,
    #[serde(flatten)]
    sampling: Sampling,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct CompletionRequest {
    model: String,
    prompt: Value,
    #[serde(flatten)]
    sampling: Sampling,
    #[serde(flatten)]
    rest: serde_json::Map<String, Value>,
}

/// Fields clients send that are harmless at their defaults; anything else unknown,
/// or one of these at a value the runtime cannot honour, is a 400.
fn refuse_unsupported(rest: &serde_json::Map<String, Value>) -> ApiResult<()> {
    for (k, v) in rest {
        let default_ok = match k.as_str() {
            "n" => v.is_null() || v == &json!(1),
            "frequency_penalty" | "presence_penalty" => v.is_null() || v.as_f64() == Some(0.0),
            "logprobs" | "echo" | "parallel_tool_calls" => v.is_null() || v == &json!(false),
            "user" | "stream_options" | "metadata" | "store" | "service_tier" => true,
            "logit_bias" | "tools" | "tool_choice" | "functions" | "function_call" | "response_format" => {
                v.is_null() || v.as_object().is_some_and(|o| o.is_empty()) || v == &json!("auto") || v == &json!("none")
            }
            _ => false,
        };
        if !default_ok {
            return Err(ApiError::bad(format!("parameter {k:?} is not supported by this runtime"), None));
        }
    }
    Ok(())
}

fn gen_params(s: &Sampling, context: usize, prompt_len: usize) -> ApiResult<GenParams> {
    let requested = s.max_completion_tokens.or(s.max_tokens);
    let room = context.saturating_sub(prompt_len);
    let max_tokens = match requested {
        Some(0) => return Err(ApiError::bad("max_tokens must be at least 1", Some("max_tokens"))),
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        // OpenAI's default is "until the context is full"; cap it to keep one request
        // from holding the model for minutes.
        None => room.min(1024),
    };
    if prompt_len.saturating_add(max_tokens) > context {
        return Err(ApiError::bad(
            format!(
                "this model's context length is {context} tokens; the prompt has {prompt_len} and max_tokens is {max_tokens}"
            ),
            Some("max_tokens"),
        ));
    }
    let temperature = s.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::bad("temperature must be between 0 and 2", Some("temperature")));
    }
    let top_p = s.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::bad("top_p must be in (0, 1]", Some("top_p")));
    }
    let stop = match &s.stop {
        None => Vec::new(),
        Some(Stop::One(x)) => vec![x.clone()],
        Some(Stop::Many(v)) => v.clone(),
    };
    if stop.len() > MAX_STOP || stop.iter().any(|x| x.is_empty() || x.len() > 256) {
        return Err(ApiError::bad("stop: at most 4 non-empty strings of at most 256 bytes", Some("stop")));
    }
    let seed = match s.seed {
        Some(seed) => seed,
        None => {
            let mut b = [0u8; 8];
            let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
            u64::from_le_bytes(b)
        }
    };
    Ok(GenParams { max_tokens, temperature, top_p, seed, stop })
}

/// The engine serving `model`; a withdrawn model is a 503 that says why.
fn find(api: &Api, model: &str) -> ApiResult<Option<(String, Engine)>> {
    let found = api
        .serving
        .models
        .read()
        .map_err(|_| ApiError::engine(EngineError::Stopped))?
        .iter()
        .find(|(l, _)| l.section.name == model)
        .map(|(l, e)| (l.manifest_digest.clone(), e.clone()));
    if found.is_some() {
        return Ok(found);
    }
    let withdrawn = api.serving.withdrawn.read().ok().and_then(|w| w.iter().find(|(n, _)| n == model).cloned());
    if let Some((_, why)) = withdrawn {
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "server_error",
            message: format!("the model {model:?} was withdrawn: the key broker no longer releases its key ({why})"),
            param: Some("model"),
            retry_after: None,
        });
    }
    Ok(None)
}

fn chat_engine(api: &Api, model: &str) -> ApiResult<(String, ChatEngine)> {
    match find(api, model)? {
        Some((m, Engine::Chat(e))) => Ok((m, e)),
        _ => Err(ApiError::not_found(format!("the model {model:?} does not exist or is not a chat model"))),
    }
}

fn embed_engine(api: &Api, model: &str) -> ApiResult<(String, EmbedEngine)> {
    match find(api, model)? {
        Some((m, Engine::Embed(e))) => Ok((m, e)),
        _ => Err(ApiError::not_found(format!("the model {model:?} does not exist or is not an embedding model"))),
    }
}

fn messages(input: Vec<InMessage>) -> ApiResult<Vec<Message>> {
    if input.is_empty() {
        return Err(ApiError::bad("messages must not be empty", Some("messages")));
    }
    input
        .into_iter()
        .map(|m| {
            let role = match m.role.as_str() {
                "system" | "developer" => "system",
                "user" => "user",
                "assistant" => "assistant",
                other => {
                    return Err(ApiError::bad(format!("message role {other:?} is not supported"), Some("messages")));
                }
            };
            let content = match m.content {
                None => String::new(),
                Some(Content::Text(t)) => t,
                Some(Content::Parts(parts)) => {
                    let mut t = String::new();
                    for p in parts {
                        match (p.kind.as_str(), p.text) {
                            ("text", Some(x)) => t.push_str(&x),
                            (k, _) => {
                                return Err(ApiError::bad(
                                    format!("content part type {k:?} is not supported (text only)"),
                                    Some("messages"),
                                ));
                            }
                        }
                    }
                    t
                }
            };
            Ok(Message { role: role.into(), content })
        })
        .collect()
}

fn finish(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

/// Signs a receipt for a JSON answer and attaches it: the `veil_receipt` field and the
/// `Veil-Receipt` header.
fn with_receipt(
    api: &Api,
    request: &[u8],
    mut answer: Value,
    model: &str,
    manifest: &str,
    id: &str,
    caller: &str,
) -> ApiResult<Response> {
    use super::receipt::{ReceiptClaims, json_answer_hash, sha256_hex};
    let internal = |e: super::receipt::ReceiptError| {
        tracing::error!(error = %e, "receipt");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            kind: "server_error",
            message: "receipt failed".into(),
            param: None,
            retry_after: None,
        }
    };
    let claims = ReceiptClaims {
        req: sha256_hex(request),
        resp: json_answer_hash(&answer).map_err(internal)?,
        model: model.to_owned(),
        manifest: manifest.to_owned(),
        id: id.to_owned(),
        iat: now(),
        seq: 0,
    };
    let token = api.receipts.issue(claims, caller).map_err(internal)?;
    if let Some(o) = answer.as_object_mut() {
        o.insert("veil_receipt".into(), Value::String(token.clone()));
    }
    let mut resp = axum::Json(answer).into_response();
    if let Ok(h) = axum::http::HeaderValue::from_str(&token) {
        resp.headers_mut().insert("veil-receipt", h);
    }
    Ok(resp)
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt.saturating_add(completion)})
}

async fn chat_completions(
    State(api): State<Arc<Api>>,
    conn: Option<axum::Extension<Conn>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let caller = authorize(&api, &headers, conn.as_deref())?;
    let req: ChatRequest = parse(&body)?;
    refuse_unsupported(&req.rest)?;
    let (manifest, engine) = chat_engine(&api, &req.model)?;
    let msgs = messages(req.messages)?;
    let prompt = engine.model().encode_chat(&msgs).map_err(|e| ApiError::bad(e.to_string(), Some("messages")))?;
    let params = gen_params(&req.sampling, engine.model().context_length(), prompt.len())?;
    let id = random_id("chatcmpl");
    let created = now();
    let model = req.model;
    if req.sampling.stream.unwrap_or(false) {
        let receipt =
            (api.receipts.clone(), super::receipt::sha256_hex(&body), manifest, api.metrics.clone(), caller.label);
        return Ok(stream(engine, prompt, params, id, created, model, true, receipt));
    }
    let t0 = std::time::Instant::now();
    let g = engine.generate(prompt, params, None).await.map_err(ApiError::engine)?;
    api.metrics.generation(&model, g.prompt_tokens, g.completion_tokens, t0.elapsed().as_secs_f64());
    let answer = json!({
        "id": id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": g.text},
                     "logprobs": Value::Null, "finish_reason": finish(g.finish_reason)}],
        "usage": usage(g.prompt_tokens, g.completion_tokens),
    });
    with_receipt(&api, &body, answer, &model, &manifest, &id, &caller.label)
}

async fn completions(
    State(api): State<Arc<Api>>,
    conn: Option<axum::Extension<Conn>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let caller = authorize(&api, &headers, conn.as_deref())?;
    let req: CompletionRequest = parse(&body)?;
    refuse_unsupported(&req.rest)?;
    let (manifest, engine) = chat_engine(&api, &req.model)?;
    let text = match &req.prompt {
        Value::String(s) => s.clone(),
        Value::Array(a) if a.len() == 1 && a.first().is_some_and(Value::is_string) => {
            a.first().and_then(Value::as_str).unwrap_or_default().to_owned()
        }
        _ => return Err(ApiError::bad("prompt must be a string (or a list of one string)", Some("prompt"))),
    };
    if text.is_empty() {
        return Err(ApiError::bad("prompt must not be empty", Some("prompt")));
    }
    let prompt = engine.model().encode(&text).map_err(|e| ApiError::bad(e.to_string(), Some("prompt")))?;
    let params = gen_params(&req.sampling, engine.model().context_length(), prompt.len())?;
    let id = random_id("cmpl");
    let created = now();
    let model = req.model;
    if req.sampling.stream.unwrap_or(false) {
        let receipt =
            (api.receipts.clone(), super::receipt::sha256_hex(&body), manifest, api.metrics.clone(), caller.label);
        return Ok(stream(engine, prompt, params, id, created, model, false, receipt));
    }
    let t0 = std::time::Instant::now();
    let g = engine.generate(prompt, params, None).await.map_err(ApiError::engine)?;
    api.metrics.generation(&model, g.prompt_tokens, g.completion_tokens, t0.elapsed().as_secs_f64());
    let answer = json!({
        "id": id, "object": "text_completion", "created": created, "model": model,
        "choices": [{"index": 0, "text": g.text, "logprobs": Value::Null, "finish_reason": finish(g.finish_reason)}],
        "usage": usage(g.prompt_tokens, g.completion_tokens),
    });
    with_receipt(&api, &body, answer, &model, &manifest, &id, &caller.label)
}

/// Server-sent events: a role chunk (chat), content chunks as text becomes final, a
/// chunk with the finish reason and usage, a receipt chunk `{"choices": [],
/// "veil_receipt": ...}` over the concatenated text, then `data: [DONE]`. A client that
/// goes away cancels the generation.
#[allow(clippy::too_many_arguments)]
fn stream(
    engine: ChatEngine,
    prompt: Vec<u32>,
    params: GenParams,
    id: String,
    created: u64,
    model: String,
    chat: bool,
    receipt: (Arc<super::receipt::Signer>, String, String, Arc<super::metrics::Metrics>, String),
) -> Response {
    let (text_tx, mut text_rx) = mpsc::channel::<String>(64);
    let (event_tx, event_rx) = mpsc::channel::<Result<Event, Infallible>>(64);
    let (signer, req_hash, manifest, metrics, caller) = receipt;
    let started = std::time::Instant::now();
    let metrics_model = model.clone();
    let (rid, rmodel) = (id.clone(), model.clone());
    let receipt_chunk = move |text: &str| -> Option<Event> {
        let claims = super::receipt::ReceiptClaims {
            req: req_hash,
            resp: super::receipt::sha256_hex(text.as_bytes()),
            model: rmodel.clone(),
            manifest,
            id: rid.clone(),
            iat: now(),
            seq: 0,
        };
        let token = match signer.issue(claims, &caller) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(error = %e, "receipt");
                return None;
            }
        };
        let c = json!({"id": rid, "object": if chat {"chat.completion.chunk"} else {"text_completion"},
                       "created": created, "model": rmodel, "choices": [], "veil_receipt": token});
        Some(Event::default().data(c.to_string()))
    };
    let chunk = move |delta: Value, finish: Option<&str>, usage: Option<Value>| {
        let choice = if chat {
            json!({"index": 0, "delta": delta, "logprobs": Value::Null, "finish_reason": finish})
        } else {
            json!({"index": 0, "text": delta.get("content").cloned().unwrap_or(json!("")), "logprobs": Value::Null, "finish_reason": finish})
        };
        let mut c = json!({"id": id, "object": if chat {"chat.completion.chunk"} else {"text_completion"},
                           "created": created, "model": model, "choices": [choice]});
        if let (Some(u), Some(o)) = (usage, c.as_object_mut()) {
            o.insert("usage".into(), u);
        }
        Event::default().data(c.to_string())
    };
    tokio::spawn(async move {
        if chat && event_tx.send(Ok(chunk(json!({"role": "assistant", "content": ""}), None, None))).await.is_err() {
            return;
        }
        let job = tokio::spawn({
            let engine = engine.clone();
            async move { engine.generate(prompt, params, Some(text_tx)).await }
        });
        let mut all = String::new();
        while let Some(t) = text_rx.recv().await {
            all.push_str(&t);
            if event_tx.send(Ok(chunk(json!({"content": t}), None, None))).await.is_err() {
                // The client left: dropping the receiver cancels the generation.
                drop(text_rx);
                let _ = job.await;
                return;
            }
        }
        let last = match job.await {
            Ok(Ok(g)) => {
                metrics.generation(
                    &metrics_model,
                    g.prompt_tokens,
                    g.completion_tokens,
                    started.elapsed().as_secs_f64(),
                );
                chunk(json!({}), Some(finish(g.finish_reason)), Some(usage(g.prompt_tokens, g.completion_tokens)))
            }
            Ok(Err(e)) => Event::default().data(ApiError::engine(e).body().to_string()),
            Err(_) => Event::default().data(
                ApiError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    kind: "server_error",
                    message: "inference failed".into(),
                    param: None,
                    retry_after: None,
                }
                .body()
                .to_string(),
            ),
        };
        let _ = event_tx.send(Ok(last)).await;
        if let Some(r) = receipt_chunk(&all) {
            let _ = event_tx.send(Ok(r)).await;
        }
        let _ = event_tx.send(Ok(Event::default().data("[DONE]"))).await;
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(event_rx)).into_response()
}

/// Unknown fields are refused by name, as for chat and completions: a client must not
/// believe a parameter was honoured when it was ignored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbeddingRequest {
    model: String,
    input: Value,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<u64>,
    #[serde(default)]
    user: Option<String>,
}

async fn embeddings(
    State(api): State<Arc<Api>>,
    conn: Option<axum::Extension<Conn>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let caller = authorize(&api, &headers, conn.as_deref())?;
    let req: EmbeddingRequest = parse(&body)?;
    let _ = req.user;
    let (manifest, engine) = embed_engine(&api, &req.model)?;
    let inputs: Vec<String> = match req.input {
        Value::String(s) => vec![s],
        Value::Array(a) if !a.is_empty() && a.iter().all(Value::is_string) => {
            a.into_iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
        }
        _ => {
            return Err(ApiError::bad(
                "input must be a string or a non-empty list of strings (token arrays are not supported)",
                Some("input"),
            ));
        }
    };
    if inputs.iter().any(String::is_empty) {
        return Err(ApiError::bad("input strings must not be empty", Some("input")));
    }
    if req.dimensions.is_some_and(|d| d != engine.model().dim() as u64) {
        return Err(ApiError::bad(format!("this model has {} dimensions", engine.model().dim()), Some("dimensions")));
    }
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad(format!("encoding_format {other:?}: float or base64"), Some("encoding_format")));
        }
    };
    let out = engine.embed(inputs).await.map_err(ApiError::engine)?;
    let data: Vec<Value> = out
        .vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let embedding = if base64 {
                // OpenAI's base64 form: the little-endian f32 bytes.
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let answer = json!({
        "object": "list", "data": data, "model": req.model,
        "usage": {"prompt_tokens": out.tokens, "total_tokens": out.tokens},
    });
    let id = random_id("embd");
    with_receipt(&api, &body, answer, &req.model, &manifest, &id, &caller.label)
}

#[derive(Debug, Deserialize)]
struct NonceQuery {
    nonce: String,
}

/// `GET /metrics`: Prometheus metrics, behind the API keys.
async fn metrics(
    State(api): State<Arc<Api>>,
    conn: Option<axum::Extension<Conn>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    authorize(&api, &headers, conn.as_deref())?;
    let queues: Vec<(String, usize)> = api
        .serving
        .models
        .read()
        .map(|m| {
            m.iter()
                .map(|(l, e)| {
                    let depth = match e {
                        super::Engine::Chat(c) => c.queue_depth(),
                        super::Engine::Embed(_) => 0,
                    };
                    (l.section.name.clone(), depth)
                })
                .collect()
        })
        .unwrap_or_default();
    let mut resp = api.metrics.render(&queues).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(resp)
}

/// `GET /v1/attestation?nonce=HEX`: fresh evidence whose report data binds the caller's
/// nonce and the runtime's TLS key by the key broker protocol's rule (SHA-384 of the
/// canonical `{"additional-evidence", "nonce", "tee-pubkey"}`, zero-padded to 64 bytes),
/// the additional evidence holding the composite TPM quote and the measured-boot event
/// log (also given alone as `event_log`), the broker's latest EAR token, and the models
/// being served. No API key: a relying party checks this before it sends one.
async fn attestation(
    State(api): State<Arc<Api>>,
    conn: Option<axum::Extension<Conn>>,
    axum::extract::Query(q): axum::extract::Query<NonceQuery>,
) -> ApiResult<Response> {
    // Each answer costs a quote from the TEE: limited per client address.
    admit(&api, Principal::by_addr(&api.credentials, conn.as_deref()))?;
    let nonce = hex::decode(&q.nonce).map_err(|_| ApiError::bad("nonce must be hex", Some("nonce")))?;
    if !(16..=64).contains(&nonce.len()) {
        return Err(ApiError::bad("nonce must be 16 to 64 bytes", Some("nonce")));
    }
    let runtime_data =
        veil_kbs::RuntimeData { nonce: q.nonce.to_ascii_lowercase(), tee_pubkey: api.tee_pubkey.clone() };
    let evidence = api.evidence.clone();
    let rd = runtime_data.clone();
    let produced = tokio::task::spawn_blocking(
        move || -> Result<(veil_kbs::Tee, crate::kbs::Produced), crate::kbs::KbsClientError> {
            Ok((evidence.tee()?, evidence.produce(&rd)?))
        },
    )
    .await;
    // The TEE's failure is logged here, not told to the caller (it is the host's
    // business); the caller learns that no evidence could be produced, and may retry.
    let unavailable = || ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        kind: "server_error",
        message: "the TEE could not produce evidence for this nonce; retry later".into(),
        param: None,
        retry_after: Some(1),
    };
    let (tee, produced) = match produced {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "evidence for /v1/attestation failed");
            return Err(unavailable());
        }
        Err(_) => return Err(unavailable()),
    };
    let event_log = api.evidence.measurer().map(|m| m.log_jsonl());
    let ear_token = api.serving.ear_token.read().ok().and_then(|t| t.clone());
    let models: Vec<Value> = api
        .serving
        .models
        .read()
        .map(|m| m.iter().map(|(l, _)| json!({"name": l.section.name, "manifest_digest": l.manifest_digest})).collect())
        .unwrap_or_default();
    Ok(axum::Json(json!({
        "tee": tee,
        "init-data": api.evidence.init_data_field(),
        "runtime-data": runtime_data,
        "tee-evidence": produced.evidence,
        "report_data": hex::encode(produced.report_data),
        "event_log": event_log,
        "ear_token": ear_token,
        "models": models,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use veil_kbs::limit::Quota;

    const Q: Quota = Quota { per_sec: 1.0, burst: 1.0 };

    #[test]
    fn embedding_requests_name_an_unknown_field_instead_of_ignoring_it() {
        let ok: EmbeddingRequest =
            parse(br#"{"model": "m", "input": "x", "encoding_format": "base64", "dimensions": 384, "user": "u"}"#)
                .unwrap();
        assert_eq!(ok.dimensions, Some(384));
        let e = parse::<EmbeddingRequest>(br#"{"model": "m", "input": "x", "truncate": true}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.contains("unknown field `truncate`"), "{}", e.message);
    }

    fn creds(keys: &[&str], ca: bool, required: bool) -> Credentials {
        Credentials {
            keys: keys
                .iter()
                .map(|k| KeyEntry {
                    digest: sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(k.as_bytes()))
                        .into(),
                    label: format!("key:{k}-holder"),
                    quota: Q,
                })
                .collect(),
            client_ca: ca.then(Vec::new),
            require_client_cert: required,
            unauthenticated: keys.is_empty() && !ca,
            default_quota: Q,
        }
    }

    fn bearer(key: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(k) = key {
            h.insert(header::AUTHORIZATION, format!("Bearer {k}").parse().unwrap());
        }
        h
    }

    fn conn(cert: Option<&str>) -> Conn {
        Conn { peer: "192.0.2.7:4000".parse().unwrap(), client_cert: cert.map(str::to_owned) }
    }

    fn who(c: &Credentials, key: Option<&str>, cert: Option<&str>) -> Result<String, (StatusCode, String)> {
        authenticate(c, &bearer(key), Some(&conn(cert))).map(|p| p.label).map_err(|e| (e.status, e.message))
    }

    #[test]
    fn keys_alone() {
        let c = creds(&["k1", "k2"], false, false);
        assert_eq!(who(&c, Some("k2"), None).unwrap(), "key:k2-holder");
        let (s, m) = who(&c, Some("k3"), None).unwrap_err();
        assert_eq!((s, m.as_str()), (StatusCode::UNAUTHORIZED, "invalid API key"));
        assert!(who(&c, None, None).unwrap_err().1.contains("API key is required"));
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, "Basic azE6".parse().unwrap());
        assert!(authenticate(&c, &h, None).is_err());
    }

    #[test]
    fn a_certificate_or_a_key() {
        let c = creds(&["k1"], true, false);
        let fp = "ab".repeat(32);
        assert_eq!(who(&c, None, Some(&fp)).unwrap(), format!("cert:{}", &fp[..16]));
        // A key names the caller even with a certificate; a wrong key is still refused.
        assert_eq!(who(&c, Some("k1"), Some(&fp)).unwrap(), "key:k1-holder");
        assert!(who(&c, Some("nope"), Some(&fp)).is_err());
        assert!(who(&c, None, None).is_err());
    }

    #[test]
    fn a_required_certificate_makes_keys_a_second_factor() {
        let c = creds(&["k1"], true, true);
        let fp = "cd".repeat(32);
        assert!(who(&c, None, Some(&fp)).unwrap_err().1.contains("API key is required"));
        assert_eq!(who(&c, Some("k1"), Some(&fp)).unwrap(), "key:k1-holder");
        // Certificates alone.
        let c = creds(&[], true, true);
        assert_eq!(who(&c, None, Some(&fp)).unwrap(), format!("cert:{}", &fp[..16]));
        assert!(who(&c, None, None).unwrap_err().1.contains("client certificate is required"));
    }

    #[test]
    fn anonymous_callers_are_known_by_address() {
        let c = creds(&[], false, false);
        assert_eq!(who(&c, None, None).unwrap(), "addr:192.0.2.7");
        assert_eq!(authenticate(&c, &HeaderMap::new(), None).unwrap().label, "addr:unknown");
    }

    #[test]
    fn a_rate_limit_refusal_says_when_to_retry() {
        let r = ApiError::rate_limited(std::time::Duration::from_millis(1500)).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
    }
}
