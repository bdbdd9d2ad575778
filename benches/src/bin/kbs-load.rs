//! Load generator for the key broker: full attest + release round trips (auth → attest →
//! resource, keep-alive) with simulated SNP or TDX evidence, for a fixed duration, from
//! N concurrent clients. Evidence generation (the simulator's signing) is timed apart
//! and excluded from the latencies. The broker's CPU time per round trip is read from
//! `/proc/<pid>/stat` when `--broker-pid` is given.
//!
//! `benches/kbs-load` runs it against `veil kbs serve --dev` and writes the report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use veil_kbs::jwe::{FlatJwe, TeeKeyPair};
use veil_kbs::{Attestation, CompositeEvidence, RuntimeData};

struct Args {
    kbs: String,
    ca: Vec<u8>,
    tee: String,
    seconds: u64,
    concurrency: usize,
    broker_pid: Option<u32>,
    path: String,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut a = Args {
        kbs: String::new(),
        ca: Vec::new(),
        tee: "snp".into(),
        seconds: 60,
        concurrency: 4,
        broker_pid: None,
        path: "veil/model-key/load".into(),
    };
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_default();
        match k.as_str() {
            "--kbs" => a.kbs = v,
            "--ca-cert" => a.ca = std::fs::read(&v).expect("reading --ca-cert"),
            "--tee" => a.tee = v,
            "--seconds" => a.seconds = v.parse().expect("--seconds"),
            "--concurrency" => a.concurrency = v.parse().expect("--concurrency"),
            "--broker-pid" => a.broker_pid = Some(v.parse().expect("--broker-pid")),
            "--path" => a.path = v,
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(!a.kbs.is_empty(), "--kbs URL is required");
    a
}

/// Simulated evidence bound to `report_data`, as KBS primary evidence.
fn evidence(tee: &str, report_data: &[u8; 64], collateral: &Value) -> Value {
    match tee {
        "snp" => {
            let ev = veil_sim::snp::report(report_data, &veil_sim::snp::SnpOptions::default()).expect("sim report");
            let report = veil_attestation::snp::json::report_to_trustee_json(&ev.report).expect("report json");
            json!({"attestation_report": report, "cert_chain": [{"cert_type": "VCEK", "data": ev.cert}]})
        }
        "tdx" => {
            let q = veil_sim::tdx::quote(report_data, &veil_sim::tdx::TdxOptions::default()).expect("sim quote");
            json!({"quote": base64::engine::general_purpose::STANDARD.encode(q), "cc_eventlog": null, "collateral": collateral})
        }
        other => panic!("--tee snp|tdx, not {other}"),
    }
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are the 12th and 13th after the command name.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

#[derive(Default)]
struct Stats {
    latencies: Vec<Duration>,
    evidence: Duration,
    errors: u64,
    /// The first failed step's status and body, to say what the errors were.
    first_error: Option<String>,
}

impl Stats {
    async fn fail(&mut self, step: &str, r: reqwest::Response) {
        self.errors += 1;
        if self.first_error.is_none() {
            let status = r.status();
            self.first_error = Some(format!("{step}: {status} {}", r.text().await.unwrap_or_default()));
        }
    }
}

async fn worker(a: Arc<Args>, stop: Arc<AtomicBool>, collateral: Arc<Value>) -> Stats {
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&a.ca).expect("CA"))
        .tls_built_in_root_certs(false)
        .pool_max_idle_per_host(1)
        .build()
        .expect("client");
    let mut s = Stats::default();
    while !stop.load(Ordering::Relaxed) {
        let t0 = Instant::now();
        let r = http
            .post(format!("{}/kbs/v0/auth", a.kbs))
            .json(&json!({"version": "0.4.0", "tee": a.tee, "extra-params": {}}))
            .send()
            .await
            .expect("auth");
        if !r.status().is_success() {
            s.fail("auth", r).await;
            continue;
        }
        let cookie = r.headers()["set-cookie"].to_str().expect("cookie").split(';').next().expect("cookie").to_owned();
        let ch: Value = r.json().await.expect("challenge");
        let keys = TeeKeyPair::generate().expect("keys");
        let rd = RuntimeData { nonce: ch["nonce"].as_str().expect("nonce").into(), tee_pubkey: keys.public().clone() };
        let report_data = veil_kbs::report_data(&rd, "").expect("report data");
        let te = Instant::now();
        let primary = evidence(&a.tee, &report_data, &collateral);
        let evidence_time = te.elapsed();
        let body = Attestation {
            init_data: None,
            runtime_data: rd,
            tee_evidence: CompositeEvidence { primary_evidence: primary, additional_evidence: String::new() },
        };
        let r = http
            .post(format!("{}/kbs/v0/attest", a.kbs))
            .header("cookie", &cookie)
            .json(&body)
            .send()
            .await
            .expect("attest");
        if !r.status().is_success() {
            s.fail("attest", r).await;
            continue;
        }
        let _ = r.bytes().await;
        let r = http
            .get(format!("{}/kbs/v0/resource/{}", a.kbs, a.path))
            .header("cookie", &cookie)
            .send()
            .await
            .expect("resource");
        if !r.status().is_success() {
            s.fail("resource", r).await;
            continue;
        }
        let jwe: FlatJwe = r.json().await.expect("jwe");
        keys.open(&jwe).expect("open");
        s.latencies.push(t0.elapsed().saturating_sub(evidence_time));
        s.evidence += evidence_time;
    }
    s
}

fn main() {
    let a = Arc::new(args());
    let issue = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    let collateral: Value = serde_json::from_slice(
        &veil_sim::tdx::collateral_json(issue, issue + time::Duration::days(30)).expect("collateral"),
    )
    .expect("collateral json");
    let collateral = Arc::new(collateral);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let stop = Arc::new(AtomicBool::new(false));
    let ticks0 = a.broker_pid.and_then(cpu_ticks);
    let start = Instant::now();
    let handles: Vec<_> =
        (0..a.concurrency).map(|_| rt.spawn(worker(a.clone(), stop.clone(), collateral.clone()))).collect();
    std::thread::sleep(Duration::from_secs(a.seconds));
    stop.store(true, Ordering::Relaxed);
    let mut all = Stats::default();
    for h in handles {
        let s = rt.block_on(h).expect("worker");
        all.latencies.extend(s.latencies);
        all.evidence += s.evidence;
        all.errors += s.errors;
        all.first_error = all.first_error.or(s.first_error);
    }
    if let Some(e) = &all.first_error {
        eprintln!("kbs-load: {} failed round trips; the first: {e}", all.errors);
    }
    let wall = start.elapsed().as_secs_f64();
    let ticks1 = a.broker_pid.and_then(cpu_ticks);
    all.latencies.sort();
    let n = all.latencies.len();
    assert!(n > 0, "no round trip completed ({} errors)", all.errors);
    let pct = |p: f64| all.latencies[((n as f64 * p) as usize).min(n - 1)].as_secs_f64() * 1e3;
    let hz = 100.0; // USER_HZ on Linux
    let broker_ms = match (ticks0, ticks1) {
        (Some(t0), Some(t1)) => format!("{:.2}", (t1 - t0) as f64 / hz * 1e3 / n as f64),
        _ => "n/a".into(),
    };
    println!(
        "tee={} concurrency={} seconds={:.0} round_trips={} rps={:.0} p50_ms={:.2} p99_ms={:.2} evidence_ms_per_rt={:.2} broker_cpu_ms_per_rt={} errors={}",
        a.tee,
        a.concurrency,
        wall,
        n,
        n as f64 / wall,
        pct(0.50),
        pct(0.99),
        all.evidence.as_secs_f64() * 1e3 / n as f64,
        broker_ms,
        all.errors
    );
}
