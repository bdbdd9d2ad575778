//! `veil demo`, the README's main command, as a user runs it: the whole flow with real
//! processes (broker, swtpm, runtime, proxy) on loopback, exit status 0 only when every
//! step passed; and `veil demo --serve`, which keeps a verified runtime behind a
//! verifying proxy until it is told to stop, and then leaves nothing running.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Proc, cached_model, root, stdout};

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

fn models() -> std::path::PathBuf {
    cached_model("smollm2");
    cached_model("minilm");
    root().join(".cache/models")
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(files(&p)) } else { out.push(p) }
    }
    out
}

#[test]
fn the_demo_runs_every_step_and_leaves_no_plaintext_weights_behind() {
    let t = tempfile::tempdir().unwrap();
    let work = t.path().join("work");
    let o = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["demo", "--models"])
        .arg(models())
        .arg("--work-dir")
        .arg(&work)
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    // One timed line per step, in order, each passed; then the table and the verdict.
    let lines: Vec<&str> = out.lines().filter(|l| l.starts_with('✓') || l.starts_with('✗')).collect();
    assert_eq!(lines.len(), STEPS.len(), "{out}");
    for (l, step) in lines.iter().zip(STEPS) {
        assert!(l.starts_with(&format!("✓ {step} ")), "{l:?} is not step {step:?}");
        assert!(l.contains(" ms  "), "{l:?} has no timing");
    }
    for step in STEPS {
        assert!(out.lines().any(|l| l.starts_with(step) && l.ends_with("passed")), "{step} not in the table:\n{out}");
    }
    assert!(out.trim_end().ends_with("demo passed"), "{out}");
    let line = |step: &str| *lines.iter().find(|l| l.starts_with(&format!("✓ {step} "))).unwrap();
    assert!(line("chat").contains("Paris"), "{out}");
    assert!(line("default policy").contains("✗ roots"), "{out}");
    assert!(line("revoke").contains("503"), "{out}");
    assert!(line("embedding").contains("384 dimensions"), "{out}");

    // The runtime unsealed in memory: no file the demo left holds a model file's bytes.
    let digest = |p: &Path| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &std::fs::read(p).unwrap());
    let model_files: Vec<_> =
        files(&models()).into_iter().filter(|p| !p.to_string_lossy().contains("wheels")).collect();
    let plain: std::collections::HashSet<Vec<u8>> = model_files.iter().map(|p| digest(p).as_ref().to_vec()).collect();
    let left = files(&work);
    assert!(left.iter().any(|p| p.ends_with("smollm2.veil")), "{left:?}");
    for p in &left {
        assert!(!plain.contains(digest(p).as_ref()), "{} holds a plaintext model file", p.display());
    }
    // The owner's key is private to its owner.
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(work.join("owner.pem")).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_failed_step_fails_the_demo_and_names_what_did_not_run() {
    let t = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["demo", "--models"])
        .arg(t.path().join("absent"))
        .output()
        .unwrap();
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.lines().any(|l| l.starts_with("✗ models") && l.contains("scripts/fetch-models")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("revoke") && l.ends_with("not run")), "{out}");
    assert!(out.trim_end().ends_with("demo FAILED"), "{out}");
}

#[test]
fn demo_serve_keeps_a_verified_runtime_behind_a_proxy_until_told_to_stop() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(["demo", "--serve", "--models"])
        .arg(models())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut get = |prefix: &str| {
        let l = lines.next().unwrap_or_else(|| panic!("demo --serve stopped before {prefix:?}")).unwrap();
        l.strip_prefix(prefix).unwrap_or_else(|| panic!("expected {prefix:?}, got {l:?}")).to_owned()
    };
    let proxy = get("proxy: ");
    let runtime = get("runtime: ");
    let api_key = get("api-key: ");
    let pid = child.id();
    let child = Proc(child);
    assert!(proxy.starts_with("http://127.0.0.1:") && proxy.ends_with("/v1"), "{proxy}");
    assert!(runtime.starts_with("https://127.0.0.1:"), "{runtime}");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let http = reqwest::Client::new();
    let chat =
        serde_json::json!({"model": "smollm2", "max_tokens": 8, "messages": [{"role": "user", "content": "Hi"}]});
    let post = |key: Option<&str>| {
        let mut req = http.post(format!("{proxy}/chat/completions")).json(&chat);
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        rt.block_on(async {
            let r = req.send().await.unwrap();
            let verified = r.headers().get("veil-receipt-verified").map(|v| v.to_str().unwrap().to_owned());
            (r.status().as_u16(), verified, r.text().await.unwrap())
        })
    };
    // The proxy forwards the client's Authorization: with the key, a verified answer;
    // without it, the runtime's own refusal.
    let (status, verified, body) = post(Some(&api_key));
    assert_eq!(status, 200, "{body}");
    assert!(verified.is_some_and(|v| v.starts_with("seq=")), "{body}");
    let (status, _, body) = post(None);
    assert_eq!(status, 401, "{body}");

    // Told to stop, it stops everything it started.
    let kill = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(kill.success());
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.0.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "demo --serve did not stop");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status}");
    let port = |url: &str| url.rsplit(':').next().unwrap().trim_end_matches("/v1").parse::<u16>().unwrap();
    for url in [&proxy, &runtime] {
        assert!(std::net::TcpStream::connect(("127.0.0.1", port(url))).is_err(), "{url} still listens");
    }
}
