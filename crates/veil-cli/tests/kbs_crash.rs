//! Crash safety of the key broker's store: 100 times, start `veil kbs serve`, register
//! keys and release them concurrently, and `kill -9` the broker at a varying moment.
//! Afterwards the store opens, its audit chain verifies, and every registration the broker
//! acknowledged is present with its value.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use veil_enclave::kbs::{EvidenceProvider, KbsClient, KbsClientError};
use veil_enclave::tsm::TsmAttester;
use veil_host::kbs::admin::AdminClient;
use veil_host::kbs::{Config, store::Store};
use veil_sim::tsm::{Provider, TsmSim};

const ITERATIONS: u64 = 100;

/// Registrations the broker acknowledged: (path, value).
type Acked = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

#[test]
fn kill_9_during_writes_and_releases_loses_no_acknowledged_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("kbs");
    let paths = veil_host::kbs::dev::ensure(&d).unwrap();
    let ca = std::fs::read(&paths.ca_cert).unwrap();
    let admin_pem = std::fs::read(&paths.admin_key).unwrap();
    let tsm = tempfile::tempdir().unwrap();
    let _sim = TsmSim::start(tsm.path(), Provider::SevGuest).unwrap();
    let acked: Acked = Arc::default();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut releases = 0u64;

    for i in 0..ITERATIONS {
        let mut child = Command::new(env!("CARGO_BIN_EXE_veil"))
            .args(["kbs", "serve", "--config"])
            .arg(&paths.config)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let line = BufReader::new(child.stdout.take().unwrap()).lines().next().unwrap().unwrap();
        let url = line.strip_prefix("kbs: ").unwrap().to_owned();
        let stop = Arc::new(AtomicBool::new(false));
        let admin = AdminClient::new(&url, Some(&ca), &admin_pem).unwrap();
        let client = KbsClient::new(&url, Some(&ca)).unwrap();
        let writer = {
            let (stop, acked) = (stop.clone(), acked.clone());
            rt.spawn(async move {
                let mut j = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    let path = format!("crash/key/{i}-{j}");
                    let value = format!("value {i}-{j}").into_bytes();
                    if admin.register(&path, &value).await.is_err() {
                        break;
                    }
                    acked.lock().unwrap().push((path, value));
                    j += 1;
                }
            })
        };
        let reader = {
            let (stop, root) = (stop.clone(), tsm.path().to_owned());
            rt.spawn(async move {
                let ev = EvidenceProvider::new(Arc::new(TsmAttester::new(&root)));
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match client.fetch(&ev, "crash/key/0-0").await {
                        Ok(v) => {
                            assert_eq!(v.as_slice(), b"value 0-0");
                            n += 1;
                        }
                        Err(KbsClientError::Refused { kind, .. }) if kind == "ResourceNotFound" => {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(KbsClientError::Refused { kind, detail, .. }) => panic!("refused: {kind}: {detail}"),
                        Err(_) => break,
                    }
                }
                n
            })
        };
        // A varying moment: 40..=239 ms after the broker listens.
        std::thread::sleep(Duration::from_millis(40 + (i * 37) % 200));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        rt.block_on(writer).unwrap();
        releases += rt.block_on(reader).unwrap();
    }

    let acked = acked.lock().unwrap();
    assert!(acked.len() as u64 > ITERATIONS, "too few writes acknowledged to mean anything: {}", acked.len());
    assert!(releases > 0, "no key was released during the run");
    let cfg = Config::load(&paths.config).unwrap();
    let store = Store::open(&cfg.store, &veil_host::kbs::load_kek(&cfg).unwrap()).unwrap();
    for (path, value) in acked.iter() {
        let got = store.resource(path).unwrap().unwrap_or_else(|| panic!("acknowledged {path} is missing"));
        assert_eq!(got.as_slice(), value.as_slice(), "{path}");
    }
    let entries = store.verify_audit().unwrap();
    assert!(entries >= acked.len() as u64);
    eprintln!(
        "{} acknowledged writes, {releases} releases, {entries} audit entries over {ITERATIONS} kills",
        acked.len()
    );
}
