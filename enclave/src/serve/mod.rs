//! `veil serve`: the confidential serving runtime.
//!
//! Boot: for each configured model, open its sealed bundle and verify the owner's
//! signature (no key needed), attest to the key broker for the key registered under the
//! bundle's manifest digest, unseal in memory, load the plaintext into candle, wipe it.
//! Then serve the OpenAI-compatible API over TLS with a key pair generated here, and
//! re-attest on an interval: when the broker refuses (model revoked, TCB raised), the
//! model is dropped from memory and its requests get a 503 that says why.
//!
//! Measured boot: before anything is used, its digest is recorded by the
//! [`crate::measure::Measurer`] (extended into RTMR3 / PCR 23 and logged): the runtime
//! binary and configuration at start, each model's manifest digest, signer and card
//! once its signature verified and before its key is asked for. The log travels in
//! every piece of evidence (`additional_evidence["event-log"]`).
//!
//! Attested TLS: the certificate carries evidence binding its key (RA-TLS,
//! [`veil_kbs::ratls`]), made after every model is loaded, so its log names them.

pub mod api;
pub mod audit;
pub mod engine;
pub mod metrics;
pub mod receipt;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;
use tracing::{error, info, warn};
use veil_models::chat::ChatModel;
use veil_models::embed::Embedder;
use zeroize::Zeroizing;

use crate::kbs::{EvidenceProvider, KbsClient};
use engine::{ChatEngine, EmbedEngine};

/// The runtime's configuration (`serve.toml`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Where to listen (default 127.0.0.1:0, a free loopback port).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// A directory for the runtime's public files (its TLS certificate). Never holds
    /// model data.
    pub state_dir: PathBuf,
    /// The key broker.
    pub kbs: KbsSection,
    /// The TEE to attest with.
    pub tee: TeeSection,
    /// API authentication.
    #[serde(default)]
    pub api: ApiSection,
    /// Seconds between re-attestations (default 60).
    #[serde(default = "default_reattest")]
    pub reattest_secs: u64,
    /// The models (one chat model and/or one embedding model).
    #[serde(rename = "model")]
    pub models: Vec<ModelSection>,
    /// `sha256:<hex>` of the configuration text (measured at start).
    #[serde(skip)]
    pub digest: String,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn default_reattest() -> u64 {
    60
}

/// `[kbs]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KbsSection {
    /// `https://host:port`.
    pub url: String,
    /// A CA certificate (PEM) to trust for the broker, beside the system roots.
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
}

/// `[tee]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeeSection {
    /// `auto`, `snp`, `tdx` (configfs-tsm), or `sim` (the simulator).
    pub kind: String,
    /// configfs-tsm report directory (default `/sys/kernel/config/tsm/report`).
    #[serde(default)]
    pub tsm_dir: Option<PathBuf>,
    /// For `sim`: which CPU TEE to simulate, `snp` (default) or `tdx`.
    #[serde(default)]
    pub sim_provider: Option<String>,
    /// A TPM TCTI (`device:/dev/tpmrm0`, `swtpm:host=...,port=...`) whose quote goes
    /// beside the CPU evidence.
    #[serde(default)]
    pub tpm: Option<String>,
    /// Must be `true` for `kind = "sim"`: simulated evidence proves nothing.
    #[serde(default)]
    pub danger_simulated: bool,
    /// TDX: the kernel's measurement files (default
    /// `/sys/devices/virtual/misc/tdx_guest/measurements`), where RTMR3 is extended.
    #[serde(default)]
    pub measurements_dir: Option<PathBuf>,
    /// Refuse to start when memory cannot be locked into RAM ([`lock_memory`]). Off by
    /// default (an unprivileged process usually may not lock a model's worth); a failure
    /// is then a loud warning.
    #[serde(default)]
    pub require_locked_memory: bool,
    /// Let the allocator back memory with transparent huge pages (off by default: see
    /// [`set_transparent_huge_pages`]).
    #[serde(default)]
    pub transparent_huge_pages: bool,
    /// Init-data (CoCo TOML) this CVM was launched with: its digest must be HOSTDATA /
    /// MRCONFIGID, and its `data."veil.toml"` launch identity lists the configurations
    /// and models this runtime may load ([`veil_kbs::initdata`]).
    #[serde(default)]
    pub init_data: Option<PathBuf>,
}

/// `[api]`: who may call the API, and how often.
///
/// A request is authenticated by an API key (`Authorization: Bearer`) or by a TLS client
/// certificate that chains to `client_ca`. With `require_client_cert`, the handshake
/// refuses clients without one, and when API keys are configured too, a request needs
/// both. Every authenticated caller (each key, each certificate) has its own rate limit;
/// `/v1/attestation`, which needs no credentials, is limited per client address.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSection {
    /// Accepted API keys as `sha256:<hex>` of the key, under the default rate limit.
    #[serde(default)]
    pub key_hashes: Vec<String>,
    /// Accepted API keys with a name (for logs and the audit log) and their own limits.
    #[serde(default)]
    pub keys: Vec<ApiKeySection>,
    /// A CA certificate (PEM): client certificates it issued authenticate requests.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Refuse TLS clients without a certificate from `client_ca`.
    #[serde(default)]
    pub require_client_cert: bool,
    /// Serve without any credentials (only when none are configured). Must be said
    /// explicitly; callers are then limited per client address.
    #[serde(default)]
    pub allow_unauthenticated: bool,
    /// The default rate limit per caller.
    #[serde(default)]
    pub rate_limit: RateLimitSection,
}

/// `[[api.keys]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySection {
    /// `sha256:<hex>` of the key.
    pub hash: String,
    /// A name for the key's holder (not a secret; it appears in logs and audit records).
    pub name: String,
    /// This key's rate, if not the default.
    #[serde(default)]
    pub requests_per_sec: Option<f64>,
    /// This key's burst, if not the default.
    #[serde(default)]
    pub burst: Option<f64>,
}

/// `[api.rate_limit]`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSection {
    /// Requests per second each caller may make on average (default 10).
    #[serde(default = "default_rate")]
    pub requests_per_sec: f64,
    /// Requests a caller may make at once (default 20).
    #[serde(default = "default_burst")]
    pub burst: f64,
}

impl Default for RateLimitSection {
    fn default() -> Self {
        Self { requests_per_sec: default_rate(), burst: default_burst() }
    }
}

fn default_rate() -> f64 {
    10.0
}

fn default_burst() -> f64 {
    20.0
}

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// A GGUF chat model.
    Chat,
    /// A BERT sentence-embedding model.
    Embedding,
}

/// `[[model]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// The public model name (`"model"` in requests).
    pub name: String,
    /// Chat or embedding.
    pub kind: ModelKind,
    /// The sealed bundle.
    pub bundle: PathBuf,
    /// The model owner's public key (PEM): the bundle's OMS signature must verify with it.
    pub signer: PathBuf,
}

/// Why the runtime cannot start or serve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// A bundle failed to open, verify or unseal.
    #[error("model {name}: {reason}")]
    Bundle {
        /// The model.
        name: String,
        /// Why.
        reason: String,
    },
    /// The broker refused the key or could not be reached in time.
    #[error("model {name}: key release: {reason}")]
    KeyRelease {
        /// The model.
        name: String,
        /// Why.
        reason: String,
    },
    /// Init-data does not match the launch, or forbids what the runtime was asked to do.
    #[error("launch identity: {0}")]
    Launch(String),
    /// A measurement could not be recorded (the runtime does not go on unmeasured).
    #[error("measured boot: {0}")]
    Measure(String),
    /// The attested TLS certificate could not be made.
    #[error("attested TLS: {0}")]
    Tls(String),
    /// I/O.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn measure_err(e: crate::AttestError) -> ServeError {
    ServeError::Measure(e.to_string())
}

impl ServeConfig {
    /// Parses and checks a configuration.
    pub fn from_toml(text: &str) -> Result<Self, ServeError> {
        let mut cfg: Self = toml::from_str(text).map_err(|e| ServeError::Config(e.to_string()))?;
        cfg.check()?;
        cfg.digest = crate::measure::bytes_digest(text.as_bytes());
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ServeError> {
        let bad = |m: String| Err(ServeError::Config(m));
        if self.models.is_empty() {
            return bad("no [[model]] configured".into());
        }
        for kind in [ModelKind::Chat, ModelKind::Embedding] {
            if self.models.iter().filter(|m| m.kind == kind).count() > 1 {
                return bad(format!("at most one {kind:?} model"));
            }
        }
        let mut names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        if names.len() != self.models.len() || names.iter().any(|n| n.is_empty() || n.len() > 128) {
            return bad("model names must be distinct, non-empty and at most 128 bytes".into());
        }
        self.credentials()?;
        match self.tee.kind.as_str() {
            "sim" if !self.tee.danger_simulated => {
                return bad("tee kind \"sim\" needs danger_simulated = true: simulated evidence proves nothing".into());
            }
            "auto" | "snp" | "tdx" | "sim" => {}
            other => return bad(format!("tee kind {other:?}: auto, snp, tdx or sim")),
        }
        if !(1..=86_400).contains(&self.reattest_secs) {
            return bad("reattest_secs must be between 1 and 86400".into());
        }
        Ok(())
    }

    /// Who may call the API, as [`api::Credentials`] checks it (client CA read here).
    pub fn credentials(&self) -> Result<api::Credentials, ServeError> {
        let a = &self.api;
        let bad = |m: String| Err(ServeError::Config(format!("[api] {m}")));
        let default = veil_kbs::limit::Quota { per_sec: a.rate_limit.requests_per_sec, burst: a.rate_limit.burst };
        if let Err(e) = default.check() {
            return bad(format!("rate_limit: {e}"));
        }
        let mut keys = Vec::new();
        for h in &a.key_hashes {
            let digest = parse_key_hash(h)?;
            keys.push(api::KeyEntry { digest, label: format!("key:{}", hex::encode(&digest[..6])), quota: default });
        }
        for k in &a.keys {
            let digest = parse_key_hash(&k.hash)?;
            if k.name.is_empty() || k.name.len() > 64 || k.name.chars().any(|c| c.is_control()) {
                return bad(format!("keys: name {:?} must be 1 to 64 printable characters", k.name));
            }
            let quota = veil_kbs::limit::Quota {
                per_sec: k.requests_per_sec.unwrap_or(default.per_sec),
                burst: k.burst.unwrap_or(default.burst),
            };
            if let Err(e) = quota.check() {
                return bad(format!("keys: {}: {e}", k.name));
            }
            keys.push(api::KeyEntry { digest, label: format!("key:{}", k.name), quota });
        }
        let mut seen: Vec<[u8; 32]> = keys.iter().map(|k| k.digest).collect();
        seen.sort_unstable();
        seen.dedup();
        if seen.len() != keys.len() {
            return bad("the same API key hash is listed twice".into());
        }
        if a.require_client_cert && a.client_ca.is_none() {
            return bad("require_client_cert needs client_ca".into());
        }
        let client_ca = match &a.client_ca {
            None => None,
            Some(p) => Some(
                std::fs::read(p).map_err(|e| ServeError::Config(format!("[api] client_ca {}: {e}", p.display())))?,
            ),
        };
        let none = keys.is_empty() && client_ca.is_none();
        if none && !a.allow_unauthenticated {
            return bad("no credentials: add key_hashes, keys or client_ca, or set allow_unauthenticated = true".into());
        }
        if !none && a.allow_unauthenticated {
            return bad("allow_unauthenticated contradicts the configured credentials".into());
        }
        Ok(api::Credentials {
            keys,
            client_ca,
            require_client_cert: a.require_client_cert,
            unauthenticated: none,
            default_quota: default,
        })
    }
}

fn parse_key_hash(h: &str) -> Result<[u8; 32], ServeError> {
    let hex_part = h
        .strip_prefix("sha256:")
        .ok_or_else(|| ServeError::Config(format!("API key hash {h:?} must be sha256:<64 hex digits>")))?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut out)
        .map_err(|_| ServeError::Config(format!("API key hash {h:?} must be sha256:<64 hex digits>")))?;
    Ok(out)
}

/// Process hygiene for a process that will hold model keys and plaintext weights: no
/// core dumps (RLIMIT_CORE 0) and not dumpable (PR_SET_DUMPABLE 0, which also keeps
/// same-user processes from ptrace-attaching).
pub fn harden_process() -> std::io::Result<()> {
    use rustix::process::{DumpableBehavior, Resource, Rlimit, set_dumpable_behavior, setrlimit};
    setrlimit(Resource::Core, Rlimit { current: Some(0), maximum: Some(0) }).map_err(std::io::Error::from)?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable).map_err(std::io::Error::from)?;
    Ok(())
}

/// Locks the process's memory, present and future, into RAM (`mlockall(MCL_CURRENT |
/// MCL_FUTURE | MCL_ONFAULT)`): keys and plaintext weights must never be written to a
/// swap device, which lies outside the CVM's encrypted memory. Needs `CAP_IPC_LOCK` or
/// an `RLIMIT_MEMLOCK` above the model's size.
pub fn lock_memory() -> std::io::Result<()> {
    use rustix::mm::{MlockAllFlags, mlockall};
    mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT).map_err(std::io::Error::from)
}

/// Allows or forbids transparent huge pages for this process (`PR_SET_THP_DISABLE`).
/// Forbidden by default: the allocator (mimalloc) asks for huge pages, and on a guest
/// whose host reclaims free memory (virtio-balloon free page reporting) every 2 MiB
/// fault of a fresh boot is faulted in again on the host — a sealed SmolLM2 then took
/// 3.6× as long to start as a plaintext load, 1.4× without huge pages, with generation
/// speed unchanged (docs/benchmarks.md). Hosts that do not reclaim guest memory may turn
/// them on (`[tee] transparent_huge_pages = true`).
pub fn set_transparent_huge_pages(enabled: bool) -> std::io::Result<()> {
    rustix::thread::disable_transparent_huge_pages(!enabled).map_err(std::io::Error::from)
}

/// A model as loaded: its engine and what was verified about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration entry.
    pub section: ModelSection,
    /// `sha256:<hex>` of the signed manifest.
    pub manifest_digest: String,
    /// The signer, as the bundle names it.
    pub signer: String,
}

/// Fetches the data key for `digest`, retrying transport failures with backoff for up
/// to `patience`; a refusal by the broker is final.
async fn fetch_key(
    kbs: &KbsClient,
    evidence: &EvidenceProvider,
    name: &str,
    digest: &str,
    patience: Duration,
    ear: &RwLock<Option<String>>,
) -> Result<veil_seal::DataKey, ServeError> {
    let path = veil_kbs::model_key_path(digest);
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(250);
    loop {
        match kbs.fetch_with_token(evidence, &path).await {
            Ok((bytes, token)) => {
                if let Ok(mut t) = ear.write() {
                    *t = Some(token);
                }
                let arr: Zeroizing<[u8; 32]> = Zeroizing::new(bytes.as_slice().try_into().map_err(|_| {
                    ServeError::KeyRelease { name: name.into(), reason: "the released key is not 32 bytes".into() }
                })?);
                return Ok(veil_seal::DataKey::from_bytes(*arr));
            }
            Err(e) if e.is_refusal() => {
                return Err(ServeError::KeyRelease { name: name.into(), reason: e.to_string() });
            }
            Err(e) if started.elapsed().saturating_add(delay) < patience => {
                warn!(model = name, error = %e, retry_in_ms = delay.as_millis() as u64, "key broker unreachable; retrying");
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2).min(Duration::from_secs(10));
            }
            Err(e) => return Err(ServeError::KeyRelease { name: name.into(), reason: e.to_string() }),
        }
    }
}

fn bundle_err(name: &str) -> impl Fn(veil_seal::Error) -> ServeError + '_ {
    move |e| ServeError::Bundle { name: name.into(), reason: e.to_string() }
}

/// Opens, attests for, unseals and loads one model. The plaintext exists only in
/// memory and is wiped when loading is done.
pub async fn load_model(
    section: &ModelSection,
    kbs: &KbsClient,
    evidence: &EvidenceProvider,
    patience: Duration,
    ear: &RwLock<Option<String>>,
    identity: Option<&veil_kbs::initdata::LaunchIdentity>,
) -> Result<(Loaded, Engine), ServeError> {
    let name = section.name.clone();
    let boot = std::time::Instant::now();
    let signer_pem =
        std::fs::read(&section.signer).map_err(|e| ServeError::Config(format!("{}: {e}", section.signer.display())))?;
    let bundle = section.bundle.clone();
    let opened = tokio::task::spawn_blocking(move || veil_seal::unseal::open(&bundle, &signer_pem))
        .await
        .map_err(|e| ServeError::Config(e.to_string()))?
        .map_err(bundle_err(&name))?;
    let digest = opened.manifest_digest();
    let signer = opened.signer().to_owned();
    let open_ms = boot.elapsed().as_secs_f64() * 1e3;
    info!(model = %name, manifest = %digest, signer = %signer, open_ms, "bundle signature verified");
    if let Some(id) = identity
        && !id.allows_model(&digest, &signer)
    {
        return Err(ServeError::Launch(format!(
            "model {name} (manifest {digest}, signer {signer}) is not one this CVM was launched to run"
        )));
    }
    if let Some(m) = evidence.measurer() {
        use veil_attestation::runtime_log::types;
        m.record(types::MODEL_MANIFEST, &digest).map_err(measure_err)?;
        m.record(types::MODEL_SIGNER, &signer).map_err(measure_err)?;
        m.record(types::MODEL_CARD, &crate::measure::bytes_digest(opened.card().text.as_bytes()))
            .map_err(measure_err)?;
    }
    let attest = std::time::Instant::now();
    let key = fetch_key(kbs, evidence, &name, &digest, patience, ear).await?;
    let attest_ms = attest.elapsed().as_secs_f64() * 1e3;
    info!(model = %name, attest_ms, "model key released by the broker");
    let kind = section.kind;
    let n = name.clone();
    let engine = tokio::task::spawn_blocking(move || -> Result<Engine, ServeError> {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let t = std::time::Instant::now();
        let unsealed = opened.unseal(&key, threads, &veil_seal::work::NoProgress).map_err(bundle_err(&n))?;
        drop(key);
        let unseal_ms = t.elapsed().as_secs_f64() * 1e3;
        let bytes = unsealed.files.iter().map(|f| f.data.len()).sum::<usize>();
        info!(model = %n, unseal_ms, bytes, threads, "bundle decrypted and verified");
        let t = std::time::Instant::now();
        let device = veil_models::select_device(true);
        let fail = |e: veil_models::ModelError| ServeError::Bundle { name: n.clone(), reason: e.to_string() };
        let engine = match kind {
            ModelKind::Chat => {
                let mut ggufs = unsealed.files.iter().filter(|f| f.path.ends_with(".gguf"));
                let (Some(f), None) = (ggufs.next(), ggufs.next()) else {
                    return Err(ServeError::Bundle {
                        name: n,
                        reason: "a chat bundle must hold exactly one .gguf file".into(),
                    });
                };
                let model = ChatModel::from_gguf(&f.data, &device).map_err(fail)?;
                info!(model = %n, engine = %model.engine_name(), "chat engine");
                Engine::Chat(ChatEngine::start(model)?)
            }
            ModelKind::Embedding => {
                let need = |p: &str| {
                    unsealed.file(p).ok_or_else(|| ServeError::Bundle {
                        name: n.clone(),
                        reason: format!("an embedding bundle must hold {p}"),
                    })
                };
                let m = Embedder::from_safetensors(
                    need("model.safetensors")?,
                    need("config.json")?,
                    need("tokenizer.json")?,
                    &device,
                )
                .map_err(fail)?;
                Engine::Embed(EmbedEngine::start(m)?)
            }
        };
        info!(model = %n, load_ms = t.elapsed().as_secs_f64() * 1e3, "weights loaded");
        // `unsealed` drops here: every plaintext buffer is wiped.
        Ok(engine)
    })
    .await
    .map_err(|e| ServeError::Config(e.to_string()))??;
    info!(model = %name, total_ms = boot.elapsed().as_secs_f64() * 1e3, "model loaded; plaintext wiped");
    Ok((Loaded { section: section.clone(), manifest_digest: digest, signer }, engine))
}

/// A model's inference engine.
#[derive(Debug, Clone)]
pub enum Engine {
    /// Chat.
    Chat(ChatEngine),
    /// Embeddings.
    Embed(EmbedEngine),
}

/// The models being served, swapped out when the broker stops vouching for one.
#[derive(Debug, Default)]
pub struct Serving {
    /// Loaded models and their engines.
    pub models: RwLock<Vec<(Loaded, Engine)>>,
    /// Models dropped after a refusal, with the broker's reason.
    pub withdrawn: RwLock<Vec<(String, String)>>,
    /// The broker's latest EAR attestation token for this runtime.
    pub ear_token: RwLock<Option<String>>,
    /// When the broker last vouched for each model.
    pub vouched: RwLock<std::collections::BTreeMap<String, Vouched>>,
}

/// How long a broker token says it is valid: `exp - iat`, both the broker's clock, so
/// the host's clock does not enter into it. `None` for a token without both claims.
pub fn token_lifetime(token: &str) -> Option<Duration> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    let (iat, exp) = (claims.get("iat")?.as_u64()?, claims.get("exp")?.as_u64()?);
    Some(Duration::from_secs(exp.checked_sub(iat)?))
}

/// When the broker last vouched for a model, by this process's monotonic clock, and for
/// how long its token said the vouching holds.
#[derive(Debug, Clone, Copy)]
pub struct Vouched {
    /// When the key was last released.
    pub at: tokio::time::Instant,
    /// The token's lifetime (`exp - iat`).
    pub lifetime: Duration,
}

impl Vouched {
    /// Whether the vouching has run out at `now`.
    pub fn expired(&self, now: tokio::time::Instant) -> bool {
        now.saturating_duration_since(self.at) > self.lifetime
    }
}

impl Serving {
    /// Records that the broker released `model`'s key with `token` just now.
    pub fn vouch(&self, model: &str, token: &str) {
        let lifetime = token_lifetime(token).unwrap_or(Duration::ZERO);
        if let Ok(mut v) = self.vouched.write() {
            v.insert(model.to_owned(), Vouched { at: tokio::time::Instant::now(), lifetime });
        }
    }

    /// Drops a model (its engine, and so its weights) and records why.
    pub fn withdraw(&self, model: &str, reason: String) {
        if let Ok(mut m) = self.models.write() {
            m.retain(|(x, _)| x.section.name != model);
        }
        if let Ok(mut w) = self.withdrawn.write() {
            w.push((model.to_owned(), reason));
        }
    }
}

/// Re-attests every `interval`: each model's key must still be released. A refusal
/// drops that model (its engine and weights) and records why. Transport failures are
/// retried at the next interval (a broker outage is not a revocation) — but only while
/// the broker's last token for the model is valid: once `exp - iat` of that token has
/// passed on this process's monotonic clock without a successful re-attestation, the
/// model is withdrawn too, so a host that cuts the runtime off from the broker cannot
/// keep a revoked model serving. The host's wall clock plays no part.
pub async fn reattest_loop(serving: Arc<Serving>, kbs: KbsClient, evidence: Arc<EvidenceProvider>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let current: Vec<Loaded> =
            serving.models.read().map(|m| m.iter().map(|(l, _)| l.clone()).collect()).unwrap_or_default();
        for l in current {
            let name = l.section.name.as_str();
            let path = veil_kbs::model_key_path(&l.manifest_digest);
            match kbs.fetch_with_token(&evidence, &path).await {
                Ok((_key, token)) => {
                    serving.vouch(name, &token);
                    if let Ok(mut t) = serving.ear_token.write() {
                        *t = Some(token);
                    }
                }
                Err(e) if e.is_refusal() => {
                    error!(model = %name, reason = %e, "the broker no longer releases this model's key; withdrawing it");
                    serving.withdraw(name, e.to_string());
                }
                Err(e) => {
                    let v = serving.vouched.read().ok().and_then(|v| v.get(name).copied());
                    match v {
                        Some(v) if !v.expired(tokio::time::Instant::now()) => {
                            warn!(model = %name, error = %e, "re-attestation: broker unreachable; will retry");
                        }
                        _ => {
                            let reason = format!(
                                "the broker's last token for this model ({} s) has expired and re-attestation \
                                 fails ({e})",
                                v.map_or(0, |v| v.lifetime.as_secs())
                            );
                            error!(model = %name, %reason, "withdrawing the model");
                            serving.withdraw(name, reason);
                        }
                    }
                }
            }
        }
    }
}

/// The runtime's own key pair: generated in this process at start, never written
/// anywhere. It is the TLS key, and the key `/v1/attestation` binds into fresh evidence.
pub struct RuntimeKey {
    pkcs8: Zeroizing<Vec<u8>>,
    /// The public key as the KBS protocol's `tee-pubkey` JWK (EC P-256).
    pub jwk: veil_kbs::TeePubKey,
    /// The uncompressed public point.
    pub point: Vec<u8>,
}

impl std::fmt::Debug for RuntimeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeKey").field("point", &hex::encode(&self.point)).finish_non_exhaustive()
    }
}

impl RuntimeKey {
    /// A fresh P-256 key.
    pub fn generate() -> Result<Self, ServeError> {
        use base64::Engine as _;
        use ring::signature::KeyPair as _;
        let rng = ring::rand::SystemRandom::new();
        let alg = &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let pkcs8 = Zeroizing::new(
            ring::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng)
                .map_err(|_| ServeError::Config("generating the runtime key".into()))?
                .as_ref()
                .to_vec(),
        );
        let kp = ring::signature::EcdsaKeyPair::from_pkcs8(alg, &pkcs8, &rng)
            .map_err(|_| ServeError::Config("loading the runtime key".into()))?;
        let point = kp.public_key().as_ref().to_vec();
        let (x, y) = match (point.get(1..33), point.get(33..65)) {
            (Some(x), Some(y)) => (x, y),
            _ => return Err(ServeError::Config("unexpected public key length".into())),
        };
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let jwk =
            veil_kbs::TeePubKey::EC { crv: "P-256".into(), alg: "ES256".into(), x: b64.encode(x), y: b64.encode(y) };
        Ok(Self { pkcs8, jwk, point })
    }

    /// The private key, PKCS#8 DER (for the TLS stack and the receipt signer, in
    /// this process only).
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }
}

/// The RA-TLS evidence extension for the runtime key ([`veil_kbs::ratls`]): evidence
/// whose report data binds the key as `tee-pubkey`, with nonce
/// `veil-ra-tls/v1:<unix seconds>`, the composite TPM quote and the event log. Blocks
/// while the TEE answers.
pub fn certificate_evidence(key: &RuntimeKey, evidence: &EvidenceProvider) -> Result<Vec<u8>, ServeError> {
    let tls = |e: &dyn std::fmt::Display| ServeError::Tls(e.to_string());
    let kp = rcgen::KeyPair::try_from(key.pkcs8.as_slice()).map_err(|e| tls(&e))?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&kp);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_err(|e| tls(&e))?.as_secs();
    let runtime_data =
        veil_kbs::RuntimeData { nonce: format!("{}{now}", veil_kbs::ratls::NONCE_PREFIX), tee_pubkey: key.jwk.clone() };
    let produced = evidence.produce(&runtime_data).map_err(|e| tls(&e))?;
    let tee = evidence.tee().map_err(|e| tls(&e))?;
    let att =
        veil_kbs::Attestation { init_data: evidence.init_data_field(), runtime_data, tee_evidence: produced.evidence };
    veil_kbs::ratls::encode(tee, &produced.raw, &spki, &att).map_err(|e| tls(&e))
}

/// A self-signed certificate for the runtime key, for `localhost` and 127.0.0.1, carrying
/// `ratls_extension` (the evidence, [`certificate_evidence`]); writes it (public) to
/// `state_dir/tls.crt` and returns the rustls configuration and the certificate's
/// SHA-256 fingerprint. Client certificates are asked for when `credentials` name a
/// client CA (and required when they say so).
pub fn tls_config(
    key: &RuntimeKey,
    state_dir: &Path,
    ratls_extension: Vec<u8>,
    credentials: &api::Credentials,
) -> Result<(Arc<rustls::ServerConfig>, String), ServeError> {
    let tls = |e: &dyn std::fmt::Display| ServeError::Tls(e.to_string());
    let kp = rcgen::KeyPair::try_from(key.pkcs8.as_slice()).map_err(|e| tls(&e))?;
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).map_err(|e| tls(&e))?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "veil runtime");
    // Valid from a minute ago (clock skew) for a year; what vouches for the key is the
    // evidence, and clients that need freshness ask `/v1/attestation` with a nonce.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now.checked_sub(time::Duration::minutes(1)).unwrap_or(now);
    params.not_after = now.checked_add(time::Duration::days(365)).unwrap_or(now);
    params
        .custom_extensions
        .push(rcgen::CustomExtension::from_oid_content(&veil_kbs::ratls::OID_TAGGED_EVIDENCE, ratls_extension));
    let cert = params.self_signed(&kp).map_err(|e| tls(&e))?;
    std::fs::create_dir_all(state_dir)?;
    std::fs::write(state_dir.join("tls.crt"), cert.pem())?;
    let fp = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(cert.der()));
    let der_key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.pkcs8.to_vec().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| tls(&e))?;
    let builder = match &credentials.client_ca {
        None => builder.with_no_client_auth(),
        Some(pem) => {
            use rustls::pki_types::pem::PemObject as _;
            let mut roots = rustls::RootCertStore::empty();
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(pem) {
                roots
                    .add(c.map_err(|e| ServeError::Config(format!("[api] client_ca: {e}")))?)
                    .map_err(|e| ServeError::Config(format!("[api] client_ca: {e}")))?;
            }
            if roots.is_empty() {
                return Err(ServeError::Config("[api] client_ca holds no certificate".into()));
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if credentials.require_client_cert { v } else { v.allow_unauthenticated() };
            builder
                .with_client_cert_verifier(v.build().map_err(|e| ServeError::Config(format!("[api] client_ca: {e}")))?)
        }
    };
    let cfg = builder.with_single_cert(vec![cert.der().clone()], der_key).map_err(|e| tls(&e))?;
    Ok((Arc::new(cfg), fp))
}

/// Counts every answer and its latency by endpoint (a fixed set of labels: anything
/// else is `other`, so a scan of random paths cannot grow the metrics).
async fn track(
    axum::extract::State(metrics): axum::extract::State<Arc<metrics::Metrics>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    const KNOWN: [&str; 6] =
        ["/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/models", "/v1/attestation", "/metrics"];
    let endpoint = KNOWN.iter().find(|k| **k == req.uri().path()).copied().unwrap_or("other");
    let t0 = std::time::Instant::now();
    let resp = next.run(req).await;
    metrics.request(endpoint, resp.status().as_u16(), t0.elapsed().as_secs_f64());
    resp
}

/// How often unsigned audit records get a checkpoint.
pub const AUDIT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(10);

/// Audits every answer that carries no receipt (refusals, `/v1/models`,
/// `/v1/attestation`): its path and status. Answers with a receipt, and streams (whose
/// receipt comes at their end), are recorded when the receipt is issued.
async fn audit_other(
    axum::extract::State(audit): axum::extract::State<Arc<audit::AuditLog>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    // Bounded: the path is the client's, and a record must stay a short line (a line over
    // `audit::MAX_LINE` would make the whole log fail verification).
    let path = bounded_path(req.uri().path());
    let resp = next.run(req).await;
    let streamed = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !streamed && !resp.headers().contains_key("veil-receipt") {
        let mut rec = serde_json::Map::new();
        rec.insert("type".into(), serde_json::Value::from("request"));
        rec.insert("path".into(), serde_json::Value::from(path));
        rec.insert("status".into(), serde_json::Value::from(resp.status().as_u16()));
        if let Err(e) = audit.append(rec) {
            error!(error = %e, "audit record failed");
            return axum::response::IntoResponse::into_response(api::ApiError::internal("audit failed"));
        }
    }
    resp
}

/// Refuses every request once the audit log has stopped taking records (a full or
/// failing disk): the runtime answers nothing rather than answer without a record. The
/// failure itself was logged when it happened; operators restart the runtime once the
/// log is writable again.
async fn audit_gate(
    axum::extract::State(audit): axum::extract::State<Arc<audit::AuditLog>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if audit.failure().is_some() {
        return axum::response::IntoResponse::into_response(api::ApiError::unavailable(
            "the runtime's audit log cannot be written, so it serves nothing; its operator has been told",
        ));
    }
    next.run(req).await
}

/// The first 256 bytes of a request path (cut on a character boundary, marked with
/// `…`), for the audit log.
fn bounded_path(path: &str) -> String {
    const MAX: usize = 256;
    if path.len() <= MAX {
        return path.to_owned();
    }
    let end = (0..=MAX).rev().find(|&i| path.is_char_boundary(i)).unwrap_or(0);
    format!("{}…", path.get(..end).unwrap_or_default())
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

/// Reads the whole request body (at most [`api::MAX_BODY`]) within `deadline`
/// before any handler runs: 408 for a body that does not arrive in time, 413 for one
/// over the limit, each with the reason.
async fn body_deadline(
    axum::extract::State(deadline): axum::extract::State<Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let fail = |status: axum::http::StatusCode, message: String| {
        let mut r = axum::response::IntoResponse::into_response(api::ApiError::status(status, message));
        // The rest of the body may still be on the wire: this connection is done.
        r.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        r
    };
    let too_large =
        || fail(axum::http::StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is over {} bytes", api::MAX_BODY));
    // A declared length over the limit is refused at once, without waiting for the body.
    let declared =
        parts.headers.get(axum::http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > api::MAX_BODY as u64) {
        return too_large();
    }
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, api::MAX_BODY)).await {
        Ok(Ok(bytes)) => next.run(axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes))).await,
        Ok(Err(e)) if over_limit(&e) => too_large(),
        Ok(Err(e)) => fail(axum::http::StatusCode::BAD_REQUEST, format!("the request body could not be read: {e}")),
        Err(_) => fail(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            format!("the request body did not arrive within {} s", deadline.as_secs_f64()),
        ),
    }
}

/// How long boot waits for an unreachable broker before giving up.
pub const BOOT_PATIENCE: Duration = Duration::from_secs(120);

/// Boots and serves until `shutdown` resolves: loads every model (or fails with the
/// reason), then listens; `on_listening` gets the address and the certificate
/// fingerprint once the socket is bound.
pub async fn run(
    cfg: ServeConfig,
    evidence: Arc<EvidenceProvider>,
    on_listening: impl FnOnce(SocketAddr, &str, &Path),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let ca = match &cfg.kbs.ca_cert {
        Some(p) => Some(std::fs::read(p).map_err(|e| ServeError::Config(format!("{}: {e}", p.display())))?),
        None => None,
    };
    let kbs = KbsClient::new(&cfg.kbs.url, ca.as_deref()).map_err(|e| ServeError::Config(e.to_string()))?;
    let identity = match evidence.init_data() {
        None => None,
        Some(body) => {
            let init = veil_kbs::initdata::parse(body).map_err(|e| ServeError::Launch(e.to_string()))?;
            let ev = evidence.clone();
            let field = tokio::task::spawn_blocking(move || ev.launch_field())
                .await
                .map_err(|e| ServeError::Launch(e.to_string()))?
                .map_err(|e| ServeError::Launch(e.to_string()))?;
            init.check_launch_field(&field).map_err(|e| ServeError::Launch(e.to_string()))?;
            info!(algorithm = %init.algorithm, digest = %hex::encode(&init.digest), "init-data matches the launch");
            let id = init.identity.ok_or_else(|| {
                ServeError::Launch(format!("the init-data has no data.{:?} entry", veil_kbs::initdata::VEIL_ENTRY))
            })?;
            if !id.allows_config(&cfg.digest) {
                return Err(ServeError::Launch(format!(
                    "configuration {} is not one this CVM was launched with",
                    cfg.digest
                )));
            }
            Some(id)
        }
    };
    if let Some(m) = evidence.measurer() {
        use veil_attestation::runtime_log::types;
        let exe = std::env::current_exe()?;
        m.record(types::BINARY, &crate::measure::file_digest(&exe).map_err(measure_err)?).map_err(measure_err)?;
        m.record(types::CONFIG, &cfg.digest).map_err(measure_err)?;
        info!(registers = ?m.registers(), "runtime binary and configuration measured");
    }
    let serving = Arc::new(Serving::default());
    for m in &cfg.models {
        let loaded = load_model(m, &kbs, &evidence, BOOT_PATIENCE, &serving.ear_token, identity.as_ref()).await?;
        if let Some(token) = serving.ear_token.read().ok().and_then(|t| t.clone()) {
            serving.vouch(&m.name, &token);
        }
        serving.models.write().map_err(|_| ServeError::Config("lock poisoned".into()))?.push(loaded);
    }
    let key = RuntimeKey::generate()?;
    let credentials = cfg.credentials()?;
    std::fs::create_dir_all(&cfg.state_dir)?;
    let audit = Arc::new(
        audit::AuditLog::open(&cfg.state_dir.join("audit.log"), key.pkcs8(), &key.jwk)
            .map_err(|e| ServeError::Config(e.to_string()))?,
    );
    let api = Arc::new(api::Api {
        serving: serving.clone(),
        limiter: Arc::new(veil_kbs::limit::Limiter::new(credentials.default_quota)),
        credentials: credentials.clone(),
        evidence: evidence.clone(),
        tee_pubkey: key.jwk.clone(),
        receipts: Arc::new(
            receipt::Signer::new(key.pkcs8(), &key.jwk)
                .map_err(|e| ServeError::Config(e.to_string()))?
                .with_audit(audit.clone()),
        ),
        metrics: Arc::new(metrics::Metrics::default()),
    });
    let audited = audit.clone();
    let measured = api.metrics.clone();
    let router = api::router(api)
        // Outermost first: metrics, the audit gate (refuse at once when the log cannot be
        // written), the audit record of every answer without a receipt (refusals of the
        // body included), then the body read, then the routes.
        .layer(axum::middleware::from_fn_with_state(BODY_DEADLINE, body_deadline))
        .layer(axum::middleware::from_fn_with_state(audited.clone(), audit_other))
        .layer(axum::middleware::from_fn_with_state(audited, audit_gate))
        .layer(axum::middleware::from_fn_with_state(measured, track))
        .layer(axum::extract::DefaultBodyLimit::max(api::MAX_BODY))
        .layer(axum::middleware::map_response(|mut r: axum::response::Response| async move {
            // An oversized body is refused before it is read; the rest of it is still on
            // the wire, so the connection cannot carry another request. Say so, or a
            // client would reuse it and see its next request fail.
            if r.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                r.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
            }
            r
        }));
    let checkpoints = {
        let audit = audit.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(AUDIT_CHECKPOINT_INTERVAL);
            loop {
                tick.tick().await;
                let a = audit.clone();
                if audit.failure().is_some() {
                    continue; // already logged when it failed; every request is refused
                }
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || a.checkpoint()).await {
                    error!(error = %e, "audit checkpoint failed");
                }
            }
        })
    };
    let reattest = tokio::spawn(reattest_loop(
        serving.clone(),
        kbs.clone(),
        evidence.clone(),
        Duration::from_secs(cfg.reattest_secs),
    ));
    let key = Arc::new(key);
    let ext = {
        let (key, evidence) = (key.clone(), evidence.clone());
        tokio::task::spawn_blocking(move || certificate_evidence(&key, &evidence))
            .await
            .map_err(|e| ServeError::Tls(e.to_string()))??
    };
    let (tls, fp) = tls_config(&key, &cfg.state_dir, ext, &credentials)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = tokio::net::TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    info!(%addr, models = cfg.models.len(), "runtime listening");
    on_listening(addr, &fp, &cfg.state_dir.join("tls.crt"));
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    continue;
                }
            },
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
            // What the connection proved about the caller goes with each request.
            let conn_info = api::Conn {
                peer,
                client_cert: tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(c))),
            };
            let router = tower::ServiceExt::map_request(router, move |mut req: axum::http::Request<_>| {
                req.extensions_mut().insert(conn_info.clone());
                req
            });
            let svc = hyper_util::service::TowerToHyperService::new(router);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(tls), svc);
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    info!("shutting down");
    reattest.abort();
    checkpoints.abort();
    if let Err(e) = audit.checkpoint() {
        error!(error = %e, "final audit checkpoint failed");
    }
    if let Ok(mut m) = serving.models.write() {
        m.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn audited_paths_are_bounded() {
        assert_eq!(bounded_path("/v1/models"), "/v1/models");
        let long = format!("/{}", "é".repeat(200));
        let b = bounded_path(&long);
        assert!(b.len() <= 256 + '…'.len_utf8() && b.ends_with('…') && long.starts_with(b.trim_end_matches('…')));
    }

    #[tokio::test]
    async fn a_body_must_arrive_in_time_and_within_the_limit() {
        use tower::ServiceExt as _;
        let app = axum::Router::new()
            .route("/x", axum::routing::post(|b: axum::body::Bytes| async move { b.len().to_string() }))
            .layer(axum::middleware::from_fn_with_state(Duration::from_millis(200), body_deadline));
        let post = |body: axum::body::Body| axum::http::Request::post("/x").body(body).unwrap();
        let text = |r: axum::response::Response| async move {
            String::from_utf8(axum::body::to_bytes(r.into_body(), 1 << 16).await.unwrap().to_vec()).unwrap()
        };
        let ok = app.clone().oneshot(post(axum::body::Body::from("hello"))).await.unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(text(ok).await, "5");
        // A body that never comes: refused at the deadline, the connection closed.
        let never = tokio_stream::pending::<Result<axum::body::Bytes, std::io::Error>>();
        let slow = app.clone().oneshot(post(axum::body::Body::from_stream(never))).await.unwrap();
        assert_eq!(slow.status(), 408);
        assert_eq!(slow.headers()["connection"], "close");
        assert!(text(slow).await.contains("did not arrive within 0.2 s"));
        let big = app.clone().oneshot(post(axum::body::Body::from(vec![b'x'; api::MAX_BODY + 1]))).await.unwrap();
        assert_eq!(big.status(), 413);
        assert!(text(big).await.contains("over 1048576 bytes"));
        // A declared length over the limit: refused at once, the body never awaited.
        let mut declared =
            post(axum::body::Body::from_stream(tokio_stream::pending::<Result<axum::body::Bytes, std::io::Error>>()));
        declared.headers_mut().insert("content-length", axum::http::HeaderValue::from(2u64 << 20));
        let r = app.clone().oneshot(declared).await.unwrap();
        assert_eq!(r.status(), 413);
        assert_eq!(r.headers()["connection"], "close");
        // Chunks adding up to more than the limit, without a declared length.
        let chunks = tokio_stream::iter(
            (0..5).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b'x'; api::MAX_BODY / 4]))),
        );
        let r = app.clone().oneshot(post(axum::body::Body::from_stream(chunks))).await.unwrap();
        assert_eq!(r.status(), 413);
    }

    #[tokio::test]
    async fn a_runtime_whose_audit_log_fails_answers_nothing() {
        use tower::ServiceExt as _;
        let dir = tempfile::tempdir().unwrap();
        let k = RuntimeKey::generate().unwrap();
        let audit = Arc::new(audit::AuditLog::open(&dir.path().join("audit.log"), k.pkcs8(), &k.jwk).unwrap());
        let app = axum::Router::new()
            .route("/v1/models", axum::routing::get(|| async { "models" }))
            .layer(axum::middleware::from_fn_with_state(Duration::from_secs(5), body_deadline))
            .layer(axum::middleware::from_fn_with_state(audit.clone(), audit_other))
            .layer(axum::middleware::from_fn_with_state(audit.clone(), audit_gate));
        // A refused body is an answer without a receipt: it is recorded.
        let mut big = axum::http::Request::get("/v1/models").body(axum::body::Body::empty()).unwrap();
        big.headers_mut().insert("content-length", axum::http::HeaderValue::from(2u64 << 20));
        assert_eq!(app.clone().oneshot(big).await.unwrap().status(), 413);
        let log = std::fs::read_to_string(dir.path().join("audit.log")).unwrap();
        assert!(log.lines().last().unwrap().contains("\"status\":413"), "{log}");
        let get = || axum::http::Request::get("/v1/models").body(axum::body::Body::empty()).unwrap();
        let ok = app.clone().oneshot(get()).await.unwrap();
        assert_eq!(ok.status(), axum::http::StatusCode::OK);
        // The disk fills: the answer whose record fails is withheld (500), and every
        // request after it is refused before any handler runs (503), with the reason.
        audit.fill_disk_for_test();
        let failed = app.clone().oneshot(get()).await.unwrap();
        assert_eq!(failed.status(), axum::http::StatusCode::INTERNAL_SERVER_ERROR);
        let refused = app.clone().oneshot(get()).await.unwrap();
        assert_eq!(refused.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(refused.into_body(), 1 << 16).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["error"]["message"].as_str().unwrap().contains("audit log cannot be written"), "{v}");
        assert!(audit.failure().unwrap().contains("No space left"));
    }

    fn token(claims: serde_json::Value) -> String {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.sig", b.encode(b"{}"), b.encode(claims.to_string()))
    }

    #[test]
    fn vouching_lasts_the_tokens_own_lifetime() {
        assert_eq!(
            token_lifetime(&token(serde_json::json!({"iat": 1000, "exp": 1300}))),
            Some(Duration::from_secs(300))
        );
        assert_eq!(token_lifetime(&token(serde_json::json!({"iat": 1000}))), None);
        assert_eq!(token_lifetime(&token(serde_json::json!({"iat": 9, "exp": 1}))), None);
        assert_eq!(token_lifetime("not a token"), None);
        let now = tokio::time::Instant::now();
        let v = Vouched { at: now, lifetime: Duration::from_secs(300) };
        assert!(!v.expired(now + Duration::from_secs(300)));
        assert!(v.expired(now + Duration::from_secs(301)));
        // A token without a lifetime vouches for nothing beyond the moment.
        let s = Serving::default();
        s.vouch("m", "x.y.z");
        let v = s.vouched.read().unwrap()["m"];
        assert!(v.expired(v.at + Duration::from_millis(1)));
    }

    fn cfg(api: &str) -> Result<ServeConfig, ServeError> {
        ServeConfig::from_toml(&format!(
            "state_dir = \"/tmp/x\"\n[kbs]\nurl = \"https://127.0.0.1:1\"\n[tee]\nkind = \"snp\"\n[api]\n{api}\n\
             [[model]]\nname = \"m\"\nkind = \"chat\"\nbundle = \"b\"\nsigner = \"s\"\n"
        ))
    }

    fn refused(api: &str, why: &str) {
        match cfg(api) {
            Err(ServeError::Config(m)) => assert!(m.contains(why), "{api}: {m}"),
            other => panic!("{api}: {other:?}"),
        }
    }

    #[test]
    fn api_credentials_and_limits_are_checked() {
        let h = format!("sha256:{}", "a".repeat(64));
        refused("", "no credentials");
        refused(&format!("key_hashes = [\"{h}\"]\nallow_unauthenticated = true"), "contradicts");
        refused("require_client_cert = true\nallow_unauthenticated = true", "needs client_ca");
        refused("client_ca = \"/nonexistent/ca.pem\"", "client_ca /nonexistent/ca.pem");
        refused(&format!("key_hashes = [\"{h}\"]\n[api.rate_limit]\nrequests_per_sec = 0"), "positive");
        refused(&format!("key_hashes = [\"{h}\"]\n[api.rate_limit]\nburst = 0.5"), "at least 1");
        refused(&format!("key_hashes = [\"{h}\"]\n[[api.keys]]\nhash = \"{h}\"\nname = \"a\""), "twice");
        refused(&format!("[[api.keys]]\nhash = \"{h}\"\nname = \"\""), "printable");
        refused(&format!("[[api.keys]]\nhash = \"{h}\"\nname = \"a\"\nburst = -1.0"), "keys: a: the burst");
        refused("[[api.keys]]\nhash = \"md5:00\"\nname = \"a\"", "sha256:<64 hex digits>");

        let c = cfg(&format!(
            "key_hashes = [\"{h}\"]\n[[api.keys]]\nhash = \"sha256:{}\"\nname = \"batch\"\nrequests_per_sec = 0.5\n\
             [api.rate_limit]\nburst = 5",
            "b".repeat(64)
        ))
        .unwrap();
        let creds = c.credentials().unwrap();
        assert_eq!(creds.default_quota, veil_kbs::limit::Quota { per_sec: 10.0, burst: 5.0 });
        assert_eq!(creds.keys[0].label, "key:aaaaaaaaaaaa");
        assert_eq!(creds.keys[1].label, "key:batch");
        assert_eq!(creds.keys[1].quota, veil_kbs::limit::Quota { per_sec: 0.5, burst: 5.0 });
        assert!(!creds.unauthenticated && creds.client_ca.is_none());
        assert!(cfg("allow_unauthenticated = true").unwrap().credentials().unwrap().unauthenticated);
    }
}
