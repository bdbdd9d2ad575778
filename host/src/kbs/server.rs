//! The HTTP side of the broker: the KBS 0.4.0 endpoints, the admin API, TLS.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tracing::{info, warn};
use veil_kbs::ear::{self, EarClaims, Status, Submod, TokenKey, VeilClaims, VerifierId};
use veil_kbs::{Attestation, Challenge, ErrorBody, PROTOCOL_VERSION, Request, SESSION_COOKIE, Tee};

use super::config::Config;
use super::evidence::{InitDataRule, Verifiers};
use super::metrics::Metrics;
use super::policy;
use super::store::{self, Store};

/// The broker's state, shared by all requests.
pub struct Kbs {
    cfg: Config,
    store: Arc<Store>,
    /// Group commit for decision records.
    audit_log: store::AuditWriter,
    token_key: TokenKey,
    jwks: JwkSet,
    admin_keys: Vec<DecodingKey>,
    verifiers: Verifiers,
    sessions: Mutex<HashMap<String, Session>>,
    metrics: Metrics,
    limiter: veil_kbs::limit::Limiter<IpAddr>,
    last_sweep: Mutex<Instant>,
    /// Policies parsed with their reference values, and the revocation list, as of the
    /// last admin change; `None` after a change, rebuilt from the store on next use.
    policies: Mutex<Option<Arc<Policies>>>,
}

/// The store's policies, prepared.
struct Policies {
    attestation: policy::Prepared,
    resource: policy::Prepared,
    revoked: Vec<String>,
}

/// The peer address of a connection, added to each request's extensions.
#[derive(Debug, Clone, Copy)]
struct Peer(IpAddr);

impl std::fmt::Debug for Kbs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kbs").field("listen", &self.cfg.listen).finish_non_exhaustive()
    }
}

struct Session {
    tee: Tee,
    nonce: String,
    expires: Instant,
    state: SessionState,
}

enum SessionState {
    /// Challenged; the nonce is unused.
    Challenged,
    /// The nonce was used by an attestation that failed.
    Spent,
    /// Attested: the token's claims.
    Attested(Box<EarClaims>),
}

/// The longest admin token lifetime accepted (`exp - iat`).
const MAX_ADMIN_TOKEN_SECS: i64 = 600;

/// An error response in the protocol's shape.
#[derive(Debug)]
pub struct KbsError {
    status: StatusCode,
    kind: &'static str,
    detail: String,
}

impl KbsError {
    fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self { status, kind, detail: detail.into() }
    }
    fn bad(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequest", detail)
    }
    fn unauth(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, kind, detail)
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        warn!(error = %e, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "internal error")
    }
}

/// How long a client may take to send a request body once its headers are in. hyper
/// bounds the headers (`header_read_timeout`) but not the body, and tower-http's body
/// timeout restarts at every frame, so without this a client trickling a byte a second
/// would hold its connection and a task for as long as it liked.
pub const BODY_DEADLINE: Duration = Duration::from_secs(30);

/// Whether a body read failed on a length limit (the error comes wrapped, once per
/// layer that limits or boxes the body).
fn over_limit(e: &axum::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(x) = cur {
        if x.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cur = x.source();
    }
    false
}

/// Reads the whole request body (already capped by `RequestBodyLimitLayer`) within
/// `deadline` ([`BODY_DEADLINE`] in the router) before any handler runs: 408 for a body that does not arrive in
/// time, 413 for one over the limit, each as a problem document saying why.
async fn body_deadline(
    axum::extract::State(deadline): axum::extract::State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let fail = |status: StatusCode, detail: String| {
        let mut r = KbsError::new(status, "InvalidRequest", detail).into_response();
        // The rest of the body may still be on the wire: this connection is done.
        r.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        r
    };
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, usize::MAX)).await {
        Ok(Ok(bytes)) => next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Ok(Err(e)) if over_limit(&e) => {
            fail(StatusCode::PAYLOAD_TOO_LARGE, "the request body is over the broker's max_body_bytes".into())
        }
        Ok(Err(e)) => fail(StatusCode::BAD_REQUEST, format!("the request body could not be read: {e}")),
        Err(_) => fail(
            StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {} s", deadline.as_secs_f64()),
        ),
    }
}

impl IntoResponse for KbsError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(ErrorBody::new(self.kind, self.detail))).into_response()
    }
}

type KResult<T> = Result<T, KbsError>;

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn random_b64(n: usize) -> KResult<String> {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).map_err(KbsError::internal)?;
    Ok(STANDARD.encode(b))
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == SESSION_COOKIE).then(|| v.to_owned())
    })
}

impl Kbs {
    /// Builds the broker from its configuration: opens the store, loads the keys.
    pub fn new(cfg: Config) -> anyhow::Result<Arc<Self>> {
        let kek = super::load_kek(&cfg)?;
        let store = Arc::new(Store::open(&cfg.store, &kek)?);
        let audit_log = store::AuditWriter::start(store.clone())?;
        let der = std::fs::read(&cfg.token_key).map_err(|e| anyhow::anyhow!("{}: {e}", cfg.token_key.display()))?;
        let token_key = TokenKey::from_pkcs8(&der)?;
        let jwks = token_key.jwks();
        let mut admin_keys = Vec::new();
        for p in &cfg.admin_keys {
            let pem = std::fs::read(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
            admin_keys.push(DecodingKey::from_ec_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?);
        }
        // Seed aws-lc's RNG now (it gathers CPU jitter on first use, ~60 ms) rather than
        // in the first request.
        let mut seed = [0u8; 1];
        aws_lc_rs::rand::fill(&mut seed).map_err(|_| anyhow::anyhow!("no randomness"))?;
        if cfg.danger_trust_simulator {
            warn!(
                "danger_trust_simulator = true: simulated evidence and the sample TEE are accepted; every result says simulated"
            );
        }
        let limiter = veil_kbs::limit::Limiter::new(cfg.rate_limit());
        Ok(Arc::new(Self {
            cfg,
            store,
            audit_log,
            token_key,
            jwks,
            admin_keys,
            verifiers: Verifiers::default(),
            sessions: Mutex::new(HashMap::new()),
            metrics: Metrics::default(),
            limiter,
            last_sweep: Mutex::new(Instant::now()),
            policies: Mutex::new(None),
        }))
    }

    /// The router.
    pub fn router(self: &Arc<Self>) -> Router {
        Router::new()
            .route("/kbs/v0/auth", post(auth))
            .route("/kbs/v0/attest", post(attest))
            .route("/kbs/v0/resource/{repo}/{kind}/{tag}", get(resource).post(register))
            .route("/kbs/v0/resource-policy", post(set_resource_policy))
            .route("/kbs/v0/attestation-policy", post(set_attestation_policy))
            .route("/kbs/v0/reference-values", post(set_reference_values))
            .route("/kbs/v0/revoke", post(revoke))
            .route("/kbs/v0/decisions", get(decisions))
            .route("/.well-known/jwks.json", get(jwks))
            .route("/metrics", get(metrics))
            .layer(axum::middleware::from_fn_with_state(BODY_DEADLINE, body_deadline))
            .layer(axum::middleware::from_fn_with_state(self.clone(), track))
            .layer(tower_http::limit::RequestBodyLimitLayer::new(self.cfg.max_body_bytes))
            .with_state(self.clone())
    }

    fn sessions(&self) -> KResult<std::sync::MutexGuard<'_, HashMap<String, Session>>> {
        self.sessions.lock().map_err(KbsError::internal)
    }

    fn reference(&self) -> KResult<Value> {
        let r = self.store.meta(store::REFERENCE).map_err(KbsError::internal)?;
        let r: Value =
            r.as_deref().map(serde_json::from_str).transpose().map_err(KbsError::internal)?.unwrap_or(json!({}));
        Ok(json!({ "reference": r }))
    }

    /// The prepared policies, built from the store when an admin change invalidated them.
    fn policies(&self) -> KResult<Arc<Policies>> {
        let mut slot = self.policies.lock().map_err(KbsError::internal)?;
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let data = self.reference()?;
        let att = self.policy_text(store::ATTESTATION_POLICY, policy::DEFAULT_ATTESTATION_POLICY)?;
        let res = self.policy_text(store::RESOURCE_POLICY, policy::DEFAULT_RESOURCE_POLICY)?;
        let p = Arc::new(Policies {
            attestation: policy::Prepared::new(&att, &data).map_err(KbsError::internal)?,
            resource: policy::Prepared::new(&res, &data).map_err(KbsError::internal)?,
            revoked: self.store.revoked().map_err(KbsError::internal)?,
        });
        *slot = Some(p.clone());
        Ok(p)
    }

    /// Drops the prepared policies after an admin change (which is already durable).
    fn invalidate(&self) {
        if let Ok(mut slot) = self.policies.lock() {
            *slot = None;
        }
    }

    fn policy_text(&self, key: &str, default: &str) -> KResult<String> {
        Ok(self.store.meta(key).map_err(KbsError::internal)?.unwrap_or_else(|| default.to_owned()))
    }

    async fn audit(&self, event: &str, subject: &str, detail: &str) {
        if let Err(e) = self.audit_log.append(event, subject, detail).await {
            warn!(error = %e, "audit append failed");
        }
    }

    fn check_admin(&self, headers: &HeaderMap) -> KResult<()> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| KbsError::unauth("AdminAuth", "admin bearer token required"))?;
        let mut v = Validation::new(Algorithm::ES256);
        v.leeway = 0;
        v.validate_aud = false;
        v.set_required_spec_claims(&["exp", "iat"]);
        for key in &self.admin_keys {
            if let Ok(t) = jsonwebtoken::decode::<Value>(token, key, &v) {
                let c = t.claims;
                let num = |k: &str| c.get(k).and_then(Value::as_i64);
                let lifetime = num("exp").unwrap_or(i64::MAX).saturating_sub(num("iat").unwrap_or(0));
                if c.get("role").and_then(Value::as_str) != Some("admin") {
                    return Err(KbsError::unauth("AdminAuth", "admin token lacks role \"admin\""));
                }
                if !(0..=MAX_ADMIN_TOKEN_SECS).contains(&lifetime) {
                    return Err(KbsError::unauth("AdminAuth", "admin token lifetime exceeds 10 minutes"));
                }
                return Ok(());
            }
        }
        Err(KbsError::unauth("AdminAuth", "admin token is not signed by a configured admin key, or expired"))
    }
}

fn parse<T: for<'de> Deserialize<'de>>(body: &Bytes, what: &str) -> KResult<T> {
    serde_json::from_slice(body).map_err(|e| KbsError::bad(format!("{what}: {e}")))
}

async fn auth(State(kbs): State<Arc<Kbs>>, body: Bytes) -> KResult<Response> {
    let req: Request = parse(&body, "auth request")?;
    if req.version != PROTOCOL_VERSION {
        return Err(KbsError::bad(format!(
            "protocol version {} is not supported (want {PROTOCOL_VERSION})",
            req.version
        )));
    }
    let id = hex::encode(STANDARD.decode(random_b64(16)?).map_err(KbsError::internal)?);
    let nonce = random_b64(32)?;
    let timeout = Duration::from_secs(kbs.cfg.session_timeout_secs);
    {
        let mut s = kbs.sessions()?;
        let now = Instant::now();
        // Sweep expired sessions at most once a second, or when the table is full: a sweep
        // walks every session, which must not be paid on every challenge.
        let sweep_due = kbs.last_sweep.lock().map(|mut t| {
            let due = now.duration_since(*t) >= Duration::from_secs(1);
            if due {
                *t = now;
            }
            due
        });
        if sweep_due.unwrap_or(true) || s.len() >= kbs.cfg.max_sessions {
            s.retain(|_, v| v.expires > now);
        }
        if s.len() >= kbs.cfg.max_sessions {
            return Err(KbsError::new(StatusCode::SERVICE_UNAVAILABLE, "Overloaded", "too many live sessions"));
        }
        s.insert(
            id.clone(),
            Session { tee: req.tee, nonce: nonce.clone(), expires: now + timeout, state: SessionState::Challenged },
        );
    }
    let cookie = format!("{SESSION_COOKIE}={id}; Path=/kbs; HttpOnly; Secure; Max-Age={}", timeout.as_secs());
    let mut resp = axum::Json(Challenge { nonce, extra_params: Value::String(String::new()) }).into_response();
    resp.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(KbsError::internal)?);
    Ok(resp)
}

async fn attest(State(kbs): State<Arc<Kbs>>, headers: HeaderMap, body: Bytes) -> KResult<Response> {
    let id =
        session_id(&headers).ok_or_else(|| KbsError::unauth("UnAuthenticatedCookie", "no kbs-session-id cookie"))?;
    let att: Attestation = parse(&body, "attestation")?;
    // Take the challenge and spend the nonce before any verification: one try per nonce.
    let (tee, nonce) = {
        let mut s = kbs.sessions()?;
        let sess = s.get_mut(&id).ok_or_else(|| KbsError::unauth("UnAuthenticatedCookie", "unknown session"))?;
        if sess.expires <= Instant::now() {
            return Err(KbsError::unauth("ExpiredCookie", "session expired"));
        }
        if !matches!(sess.state, SessionState::Challenged) {
            return Err(KbsError::unauth("AttestationFailed", "this session's nonce was already used"));
        }
        sess.state = SessionState::Spent;
        (sess.tee, sess.nonce.clone())
    };
    let span = tracing::info_span!("attest", session = %id, tee = %tee);
    let _g = span.enter();
    if att.runtime_data.nonce != nonce {
        kbs.metrics.decision("attest_refused");
        kbs.audit("deny-attest", &id, "runtime-data nonce is not this session's challenge").await;
        return Err(KbsError::unauth("AttestationFailed", "runtime-data nonce is not this session's challenge"));
    }
    if !matches!(&att.runtime_data.tee_pubkey, veil_kbs::TeePubKey::EC { crv, alg, .. } if crv == "P-256" && alg == veil_kbs::jwe::ALG)
    {
        return Err(KbsError::bad("tee-pubkey must be EC P-256 with alg ECDH-ES+A256KW"));
    }
    let expected = veil_kbs::report_data(&att.runtime_data, &att.tee_evidence.additional_evidence)
        .map_err(|e| KbsError::bad(e.to_string()))?;
    let appraised = match kbs.verifiers.verify(tee, &att, &expected, kbs.cfg.danger_trust_simulator) {
        Ok(a) => a,
        Err(r) => {
            warn!(reason = %r.detail, "evidence refused");
            kbs.metrics.decision("attest_refused");
            kbs.audit("deny-attest", &id, &r.detail).await;
            return Err(KbsError::unauth("AttestationFailed", "evidence verification failed"));
        }
    };
    // Init-data (CoCo): its digest, with the algorithm it names, must be the launch-time
    // HOST_DATA (SNP) or MRCONFIGID (TDX), zero-padded.
    let init_data_claims = match &att.init_data {
        None => Value::Null,
        Some(init) => match check_init_data(init, appraised.init_data.as_deref(), appraised.init_data_rule) {
            Ok(v) => v,
            Err(why) => {
                warn!(reason = %why, "init-data refused");
                kbs.metrics.decision("attest_refused");
                kbs.audit("deny-attest", &id, &why).await;
                return Err(KbsError::unauth("AttestationFailed", "init-data does not match the evidence"));
            }
        },
    };
    let input = serde_json::to_value(&appraised).map_err(KbsError::internal)?;
    let vector = kbs.policies()?.attestation.trust_vector(&input).map_err(KbsError::internal)?;
    let status = Status::of_vector(&vector);
    let now = unix_now();
    let lifetime = i64::try_from(kbs.cfg.token_lifetime_secs).unwrap_or(300);
    let veil = VeilClaims {
        tee: appraised.tee.clone(),
        simulated: appraised.simulated,
        debug: appraised.debug,
        measurement: appraised.measurement.clone(),
        tcb: appraised.tcb.clone(),
        init_data: appraised.init_data.clone(),
        ..VeilClaims::default()
    };
    let annotated = json!({
        "init_data_claims": init_data_claims,
        "report_data": appraised.report_data,
        "runtime_data_claims": { "nonce": att.runtime_data.nonce, "tee-pubkey": att.runtime_data.tee_pubkey },
        appraised.tee.clone(): appraised.claims,
    });
    let claims = EarClaims {
        eat_profile: ear::EAT_PROFILE.into(),
        iat: now,
        exp: now.saturating_add(lifetime),
        iss: "veil-kbs".into(),
        verifier_id: VerifierId {
            developer: "https://github.com/veil".into(),
            build: format!("veil-kbs {}", env!("CARGO_PKG_VERSION")),
        },
        submods: [(
            "cpu0".to_owned(),
            Submod { status, vector, policy_id: "default".into(), annotated_evidence: annotated, veil },
        )]
        .into_iter()
        .collect(),
    };
    let token = kbs.token_key.sign(&claims).map_err(KbsError::internal)?;
    info!(status = ?status, simulated = appraised.simulated, "attested");
    kbs.metrics.decision("attested");
    kbs.audit(
        "attest",
        &id,
        &format!(
            "tee {} status {status:?} simulated {} measurement {}",
            appraised.tee,
            appraised.simulated,
            appraised.measurement.as_deref().unwrap_or("-")
        ),
    )
    .await;
    if let Some(s) = kbs.sessions()?.get_mut(&id) {
        s.state = SessionState::Attested(Box::new(claims));
    }
    Ok(axum::Json(json!({ "token": token })).into_response())
}

/// Checks init-data against the launch-time field (hex) of the evidence, by `rule`;
/// returns its claims (the TOML as JSON) on success, the reason otherwise.
fn check_init_data(init: &kbs_types::InitData, field_hex: Option<&str>, rule: InitDataRule) -> Result<Value, String> {
    if init.format != "toml" {
        return Err(format!("init-data format {:?} is not supported (toml)", init.format));
    }
    let parsed = veil_kbs::initdata::parse(&init.body).map_err(|e| e.to_string())?;
    let field = hex::decode(field_hex.ok_or("the evidence carries no launch field for init-data")?)
        .map_err(|_| "launch field is not hex".to_owned())?;
    match rule {
        InitDataRule::LaunchField => parsed.check_launch_field(&field).map_err(|e| e.to_string())?,
        InitDataRule::Pcr8 => {
            // PCR 8 after one extend from zero: SHA-256(0^32 ‖ digest), digest SHA-256.
            if parsed.algorithm != "sha256" {
                return Err(format!("init-data bound by PCR 8 must use sha256, not {}", parsed.algorithm));
            }
            let mut input = [0u8; 64];
            input.iter_mut().skip(32).zip(&parsed.digest).for_each(|(o, i)| *o = *i);
            let expected = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
            if expected.as_ref() != field.as_slice() {
                return Err(format!(
                    "init-data sha256 {} does not match PCR 8 {} (Pcr8)",
                    hex::encode(&parsed.digest),
                    hex::encode(&field)
                ));
            }
        }
    }
    serde_json::to_value(&parsed.doc).map_err(|e| e.to_string())
}

async fn resource(
    State(kbs): State<Arc<Kbs>>,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> KResult<Response> {
    let path = format!("{repo}/{kind}/{tag}");
    // The cookie first (as Trustee), then a bearer token.
    let from_cookie = match session_id(&headers) {
        Some(id) => {
            let s = kbs.sessions()?;
            match s.get(&id) {
                Some(sess) if sess.expires <= Instant::now() => {
                    return Err(KbsError::unauth("ExpiredCookie", "session expired"));
                }
                Some(Session { state: SessionState::Attested(c), .. }) => Some((**c).clone()),
                _ => None,
            }
        }
        None => None,
    };
    let claims = match from_cookie {
        Some(c) => c,
        None => {
            let token = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or_else(|| KbsError::unauth("TokenNotFound", "Attestation Token not found"))?;
            ear::verify(token, &kbs.jwks).map_err(|e| {
                warn!(error = %e.to_string().escape_debug(), "token refused");
                KbsError::unauth("TokenVerificationFailed", "attestation token is invalid or expired")
            })?
        }
    };
    if claims.exp <= unix_now() {
        return Err(KbsError::unauth("TokenVerificationFailed", "attestation token expired"));
    }
    let policies = kbs.policies()?;
    let revoked = &policies.revoked;
    let input = json!({
        "submods": claims.submods,
        "resource": {"repository": repo, "type": kind, "tag": tag.to_ascii_lowercase()},
        "revoked": revoked,
    });
    if let Err(reasons) = policies.resource.decide(&input).map_err(KbsError::internal)? {
        let detail = reasons.join("; ");
        warn!(resource = %path, reasons = %detail, "release denied");
        kbs.metrics.decision("denied");
        kbs.audit("deny", &path, &detail).await;
        return Err(KbsError::unauth("PolicyDeny", "the resource policy denied the release"));
    }
    let Some(value) = kbs.store.resource(&path).map_err(KbsError::internal)? else {
        return Err(KbsError::new(StatusCode::NOT_FOUND, "ResourceNotFound", format!("no resource {path}")));
    };
    let to = claims.tee_pubkey().map_err(|e| KbsError::bad(e.to_string()))?;
    let jwe = veil_kbs::jwe::seal(&to, &value).map_err(|e| KbsError::bad(e.to_string()))?;
    let sim = claims.submods.get("cpu0").is_some_and(|s| s.veil.simulated);
    // No release that the audit log does not record.
    kbs.audit_log.append("release", &path, &format!("simulated {sim}")).await.map_err(KbsError::internal)?;
    info!(resource = %path, simulated = sim, "released");
    kbs.metrics.decision("released");
    Ok(axum::Json(jwe).into_response())
}

async fn register(
    State(kbs): State<Arc<Kbs>>,
    Path((repo, kind, tag)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> KResult<Response> {
    kbs.check_admin(&headers)?;
    let path = format!("{repo}/{kind}/{tag}");
    for part in [&repo, &kind, &tag] {
        if part.is_empty()
            || part.len() > 256
            || !part.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(KbsError::new(
                StatusCode::NOT_FOUND,
                "InvalidRequestPath",
                "resource path parts are [A-Za-z0-9._-]{1,256}",
            ));
        }
    }
    if body.is_empty() {
        return Err(KbsError::bad("empty resource"));
    }
    kbs.store.put_resource(&path, &body).map_err(KbsError::internal)?;
    info!(resource = %path, bytes = body.len(), "registered");
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize)]
struct PolicyBody {
    policy: String,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    policy_id: Option<String>,
}

fn policy_from(body: &Bytes) -> KResult<String> {
    let p: PolicyBody = parse(body, "policy")?;
    if p.kind.as_deref().is_some_and(|k| k != "rego") {
        return Err(KbsError::bad("only rego policies are supported"));
    }
    let _ = p.policy_id;
    let raw =
        URL_SAFE_NO_PAD.decode(p.policy.trim_end_matches('=')).map_err(|_| KbsError::bad("policy is not base64url"))?;
    let text = String::from_utf8(raw).map_err(|_| KbsError::bad("policy is not UTF-8"))?;
    policy::check(&text).map_err(|e| KbsError::bad(e.to_string()))?;
    Ok(text)
}

async fn set_resource_policy(State(kbs): State<Arc<Kbs>>, headers: HeaderMap, body: Bytes) -> KResult<Response> {
    kbs.check_admin(&headers)?;
    kbs.store.set_meta(store::RESOURCE_POLICY, &policy_from(&body)?).map_err(KbsError::internal)?;
    kbs.invalidate();
    Ok(StatusCode::OK.into_response())
}

async fn set_attestation_policy(State(kbs): State<Arc<Kbs>>, headers: HeaderMap, body: Bytes) -> KResult<Response> {
    kbs.check_admin(&headers)?;
    kbs.store.set_meta(store::ATTESTATION_POLICY, &policy_from(&body)?).map_err(KbsError::internal)?;
    kbs.invalidate();
    Ok(StatusCode::OK.into_response())
}

async fn set_reference_values(State(kbs): State<Arc<Kbs>>, headers: HeaderMap, body: Bytes) -> KResult<Response> {
    kbs.check_admin(&headers)?;
    let v: Value = parse(&body, "reference values")?;
    if !v.is_object() {
        return Err(KbsError::bad("reference values must be a JSON object"));
    }
    kbs.store.set_meta(store::REFERENCE, &v.to_string()).map_err(KbsError::internal)?;
    kbs.invalidate();
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    digest: String,
}

async fn revoke(State(kbs): State<Arc<Kbs>>, headers: HeaderMap, body: Bytes) -> KResult<Response> {
    kbs.check_admin(&headers)?;
    let r: RevokeBody = parse(&body, "revoke")?;
    let hex_digest = r.digest.strip_prefix("sha256:").unwrap_or(&r.digest).to_ascii_lowercase();
    if hex_digest.len() != 64 || !hex_digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(KbsError::bad("digest must be sha256:<64 hex digits>"));
    }
    kbs.store.revoke(&hex_digest).map_err(KbsError::internal)?;
    kbs.invalidate();
    info!(digest = %hex_digest, "revoked");
    Ok(StatusCode::OK.into_response())
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn decisions(State(kbs): State<Arc<Kbs>>, headers: HeaderMap, Query(q): Query<Limit>) -> KResult<Response> {
    kbs.check_admin(&headers)?;
    let n = q.limit.unwrap_or(50).min(1000);
    Ok(axum::Json(kbs.store.recent(n).map_err(KbsError::internal)?).into_response())
}

/// Rate limiting per client IP, then metrics for every request.
async fn track(State(kbs): State<Arc<Kbs>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    if let Some(Peer(ip)) = req.extensions().get::<Peer>().copied() {
        if endpoint != "/metrics" {
            if let Err(wait) = kbs.limiter.admit(&ip) {
                kbs.metrics.request(&endpoint, 429, 0.0);
                let mut resp = KbsError::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", "rate limit exceeded")
                    .into_response();
                resp.headers_mut().insert(header::RETRY_AFTER, wait.as_secs().saturating_add(1).into());
                return resp;
            }
        }
    }
    let t = Instant::now();
    let resp = next.run(req).await;
    kbs.metrics.request(&endpoint, resp.status().as_u16(), t.elapsed().as_secs_f64());
    resp
}

async fn metrics(State(kbs): State<Arc<Kbs>>) -> Response {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], kbs.metrics.render())
        .into_response()
}

async fn jwks(State(kbs): State<Arc<Kbs>>) -> Response {
    axum::Json(kbs.jwks.clone()).into_response()
}

/// Binds, then serves TLS until the process ends. `on_listening` gets the bound address.
pub async fn serve(kbs: Arc<Kbs>, on_listening: impl FnOnce(SocketAddr)) -> anyhow::Result<()> {
    let tls = super::tls::server_config(&kbs.cfg.tls_cert, &kbs.cfg.tls_key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = TcpListener::bind(kbs.cfg.listen).await?;
    let addr = listener.local_addr()?;
    on_listening(addr);
    info!(%addr, simulated_roots_trusted = kbs.cfg.danger_trust_simulator, "key broker listening");
    let router = kbs.router();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "accept failed");
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let router = router.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let svc = hyper_util::service::TowerToHyperService::new(router.layer(axum::Extension(Peer(peer.ip()))));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt as _;

    #[tokio::test]
    async fn a_body_must_arrive_in_time_and_within_the_limit() {
        let app = Router::new()
            .route("/x", post(|b: axum::body::Bytes| async move { b.len().to_string() }))
            .layer(axum::middleware::from_fn_with_state(Duration::from_millis(200), body_deadline))
            .layer(tower_http::limit::RequestBodyLimitLayer::new(1024));
        let req = |body: axum::body::Body| axum::http::Request::post("/x").body(body).unwrap();
        let text = |r: axum::response::Response| async move {
            String::from_utf8(axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap().to_vec()).unwrap()
        };
        let ok = app.clone().oneshot(req(axum::body::Body::from("hello"))).await.unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(text(ok).await, "5");
        // A body that never comes: refused at the deadline, as a problem document.
        let never = tokio_stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
        let slow = app.clone().oneshot(req(axum::body::Body::from_stream(never))).await.unwrap();
        assert_eq!(slow.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(slow.headers()["connection"], "close");
        let t = text(slow).await;
        assert!(t.contains("InvalidRequest") && t.contains("did not arrive within 0.2 s"), "{t}");
        // Over the limit without a declared length (a stream): 413 with the reason.
        let chunks =
            tokio_stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; 256]))));
        let big = app.clone().oneshot(req(axum::body::Body::from_stream(chunks))).await.unwrap();
        assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(text(big).await.contains("max_body_bytes"));
    }
}
