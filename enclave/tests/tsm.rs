//! The configfs-tsm attester against a small in-test fake: a thread that watches a
//! temporary directory and answers like a simulated configfs-tsm would (see the
//! contract in `veil_enclave::tsm`). `veil_sim::tsm::TsmSim` takes its place in the
//! integration tests.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use veil_enclave::tsm::{TsmAttester, TsmReport};
use veil_enclave::{AttestError, Attester, Evidence, TeeKind};

const PREFIX: &[u8] = b"FAKE-REPORT";

#[derive(Debug, Clone)]
struct Behaviour {
    provider: String,
    auxblob: Option<Vec<u8>>,
    /// For this many requests, `generation` jumps by two (a racing writer).
    races: u32,
    /// Never answer.
    silent: bool,
}

impl Behaviour {
    fn snp() -> Self {
        Self { provider: "sev_guest".into(), auxblob: Some(b"CERT-TABLE".to_vec()), races: 0, silent: false }
    }
}

#[derive(Debug, Default)]
struct Seen {
    /// Inblobs answered, in order.
    requests: Vec<Vec<u8>>,
    /// Directory names seen.
    dirs: Vec<String>,
}

struct FakeTsm {
    root: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Seen>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeTsm {
    fn start(b: Behaviour) -> Self {
        let root = tempfile::tempdir().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (r, s, sn) = (root.path().to_path_buf(), stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || watch(&r, b, &s, &sn));
        Self { root, stop, seen, thread: Some(thread) }
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    fn requests(&self) -> Vec<Vec<u8>> {
        self.seen.lock().unwrap().requests.clone()
    }

    fn dirs(&self) -> Vec<String> {
        self.seen.lock().unwrap().dirs.clone()
    }

    fn entries(&self) -> Vec<PathBuf> {
        fs::read_dir(self.path()).unwrap().map(|e| e.unwrap().path()).collect()
    }
}

impl Drop for FakeTsm {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(root: &Path, b: Behaviour, stop: &AtomicBool, seen: &Mutex<Seen>) {
    let mut answered: HashMap<PathBuf, bool> = HashMap::new();
    let mut races = b.races;
    while !stop.load(Ordering::Relaxed) {
        let Ok(rd) = fs::read_dir(root) else { return };
        for entry in rd.flatten() {
            let dir = entry.path();
            if !dir.is_dir() {
                continue;
            }
            // Errors are ignored throughout: the attester may remove the
            // directory at any moment.
            let done = answered.entry(dir.clone()).or_insert_with(|| {
                let _ = fs::write(dir.join("generation"), b"0\n");
                let _ = fs::write(dir.join("provider"), format!("{}\n", b.provider));
                seen.lock().unwrap().dirs.push(entry.file_name().to_string_lossy().into_owned());
                false
            });
            if *done || b.silent {
                continue;
            }
            let Ok(inblob) = fs::read(dir.join("inblob")) else {
                continue;
            };
            if inblob.len() != 64 {
                continue;
            }
            // What privlevel said when the inblob arrived (0xff: not written).
            let privlevel = fs::read_to_string(dir.join("privlevel"))
                .ok()
                .and_then(|s| s.trim().parse::<u8>().ok())
                .unwrap_or(0xff);
            let mut out = PREFIX.to_vec();
            out.push(privlevel);
            out.extend_from_slice(&inblob);
            if let Some(aux) = &b.auxblob {
                let _ = fs::write(dir.join("auxblob"), aux);
            }
            let generation = if races > 0 {
                races -= 1;
                2
            } else {
                1
            };
            let _ = fs::write(dir.join("generation"), format!("{generation}\n"));
            // outblob last and atomically: it is the "answer complete" signal.
            let tmp = dir.join(".outblob.tmp");
            if fs::write(&tmp, &out).is_ok() {
                let _ = fs::rename(&tmp, dir.join("outblob"));
            }
            seen.lock().unwrap().requests.push(inblob);
            *done = true;
        }
        answered.retain(|d, _| d.exists());
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn expected_outblob(privlevel: u8, inblob: &[u8; 64]) -> Vec<u8> {
    let mut v = PREFIX.to_vec();
    v.push(privlevel);
    v.extend_from_slice(inblob);
    v
}

fn report_data(tag: u8) -> [u8; 64] {
    let mut r = [0u8; 64];
    r[..48].fill(tag); // a 48-byte hash, zero-padded to 64 like the KBS report data
    r
}

/// The attester removes its directories; give the (asynchronous) fake no chance
/// to leave anything behind.
fn assert_cleaned(fake: &FakeTsm) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !fake.entries().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(fake.entries().is_empty(), "left behind: {:?}", fake.entries());
}

#[test]
fn snp_round_trip() -> Result<()> {
    let fake = FakeTsm::start(Behaviour::snp());
    let tsm = TsmAttester::new(fake.path());
    let rd = report_data(0xab);
    let r = tsm.report(&rd)?;
    assert_eq!(
        r,
        TsmReport {
            provider: "sev_guest".into(),
            outblob: expected_outblob(0xff, &rd),
            auxblob: Some(b"CERT-TABLE".to_vec()),
            generation: 1,
        }
    );
    assert_eq!(fake.requests(), vec![rd.to_vec()], "inblob is exactly the 64 bytes");
    assert_cleaned(&fake);
    Ok(())
}

#[test]
fn attester_trait_gives_tsm_evidence_and_tee() -> Result<()> {
    let fake = FakeTsm::start(Behaviour::snp());
    let tsm = TsmAttester::new(fake.path());
    assert_eq!(tsm.tee()?, TeeKind::Snp);
    assert_eq!(tsm.provider()?, "sev_guest");
    let attester: &dyn Attester = &tsm;
    let ev = attester.evidence(&report_data(1))?;
    assert_eq!(ev.tee(), Some(TeeKind::Snp));
    let Evidence::Tsm(r) = ev else { bail!("not TSM evidence") };
    assert_eq!(r.outblob, expected_outblob(0xff, &report_data(1)));
    assert_cleaned(&fake);
    Ok(())
}

#[test]
fn tdx_without_auxblob() -> Result<()> {
    let fake = FakeTsm::start(Behaviour { provider: "tdx_guest".into(), auxblob: None, ..Behaviour::snp() });
    let tsm = TsmAttester::new(fake.path());
    let r = tsm.report(&report_data(2))?;
    assert_eq!(r.provider, "tdx_guest");
    assert_eq!(r.auxblob, None, "absent auxblob is fine");
    assert_eq!(tsm.tee()?, TeeKind::Tdx);
    Ok(())
}

#[test]
fn empty_auxblob_is_none() -> Result<()> {
    let fake = FakeTsm::start(Behaviour { auxblob: Some(Vec::new()), ..Behaviour::snp() });
    let r = TsmAttester::new(fake.path()).report(&report_data(3))?;
    assert_eq!(r.auxblob, None);
    Ok(())
}

#[test]
fn privlevel_is_written_before_inblob() -> Result<()> {
    let fake = FakeTsm::start(Behaviour::snp());
    let tsm = TsmAttester::new(fake.path()).with_privlevel(2)?;
    let rd = report_data(4);
    let r = tsm.report(&rd)?;
    // The fake records privlevel as it was when the inblob arrived.
    assert_eq!(r.outblob, expected_outblob(2, &rd));
    assert!(matches!(
        TsmAttester::new(fake.path()).with_privlevel(4),
        Err(AttestError::InvalidArgument { what: "privlevel", .. })
    ));
    Ok(())
}

#[test]
fn one_fresh_directory_per_request() -> Result<()> {
    let fake = FakeTsm::start(Behaviour::snp());
    let tsm = Arc::new(TsmAttester::new(fake.path()));
    let handles: Vec<_> = (0..4u8)
        .map(|i| {
            let tsm = tsm.clone();
            std::thread::spawn(move || tsm.report(&report_data(0x10 + i)))
        })
        .collect();
    for (i, h) in (0..4u8).zip(handles) {
        let r = h.join().unwrap()?;
        assert_eq!(r.outblob, expected_outblob(0xff, &report_data(0x10 + i)), "each caller gets its own answer");
    }
    let dirs = fake.dirs();
    let mut unique = dirs.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(dirs.len(), 4);
    assert_eq!(unique.len(), 4, "names are unique: {dirs:?}");
    assert_cleaned(&fake);
    Ok(())
}

#[test]
fn generation_race_is_retried_in_a_fresh_directory() -> Result<()> {
    let fake = FakeTsm::start(Behaviour { races: 1, ..Behaviour::snp() });
    let tsm = TsmAttester::new(fake.path());
    let rd = report_data(5);
    let r = tsm.report(&rd)?;
    assert_eq!(r.generation, 1);
    assert_eq!(r.outblob, expected_outblob(0xff, &rd));
    assert_eq!(fake.requests().len(), 2, "first answer refused, second accepted");
    assert_eq!(fake.dirs().len(), 2, "the retry used a new directory");
    assert_cleaned(&fake);
    Ok(())
}

#[test]
fn persistent_generation_race_is_an_error() {
    let fake = FakeTsm::start(Behaviour { races: u32::MAX, ..Behaviour::snp() });
    let tsm = TsmAttester::new(fake.path()).with_max_attempts(3);
    let err = tsm.report(&report_data(6)).unwrap_err();
    let AttestError::GenerationRace { path, before, after, attempts } = &err else { panic!("{err}") };
    assert_eq!((*before, *after, *attempts), (0, 2, 3));
    assert!(path.ends_with("generation"));
    assert!(err.to_string().contains("another writer raced"), "{err}");
    assert_eq!(fake.requests().len(), 3);
    assert_cleaned(&fake);
}

#[test]
fn no_answer_times_out_naming_outblob() {
    let fake = FakeTsm::start(Behaviour { silent: true, ..Behaviour::snp() });
    let tsm = TsmAttester::new(fake.path()).with_poll_timeout(Duration::from_millis(150));
    let start = Instant::now();
    let err = tsm.report(&report_data(7)).unwrap_err();
    let waited = start.elapsed();
    let AttestError::Timeout { path, waited: reported } = &err else { panic!("{err}") };
    assert!(path.ends_with("outblob"), "{err}");
    assert!(*reported >= Duration::from_millis(150));
    assert!(waited >= Duration::from_millis(150) && waited < Duration::from_secs(5), "{waited:?}");
    assert!(err.to_string().contains("outblob"), "{err}");
    assert_cleaned(&fake);
}

#[test]
fn unknown_provider_is_refused() {
    let fake = FakeTsm::start(Behaviour { provider: "arm_cca_guest".into(), ..Behaviour::snp() });
    let tsm = TsmAttester::new(fake.path());
    // The raw report is available; as evidence it is refused.
    assert_eq!(tsm.report(&report_data(8)).unwrap().provider, "arm_cca_guest");
    assert!(matches!(tsm.evidence(&report_data(8)), Err(AttestError::UnknownProvider(p)) if p == "arm_cca_guest"));
    assert!(matches!(tsm.tee(), Err(AttestError::UnknownProvider(_))));
}

#[test]
fn missing_root_names_the_path_and_os_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("no-such-tsm");
    let err = TsmAttester::new(&root).report(&report_data(9)).unwrap_err();
    let AttestError::Io { op, path, source } = &err else { panic!("{err}") };
    assert_eq!(*op, "mkdir");
    assert!(path.starts_with(&root));
    assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
    let msg = err.to_string();
    assert!(msg.contains("no-such-tsm") && msg.contains("os error 2"), "{msg}");
}

#[test]
fn malformed_generation_is_a_typed_error() {
    // A hand-made "configfs" whose generation is not a number: answer by hand.
    let root = tempfile::tempdir().unwrap();
    let r = root.path().to_path_buf();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let t = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            for e in fs::read_dir(&r).unwrap().flatten() {
                let _ = fs::write(e.path().join("provider"), "sev_guest\n");
                let _ = fs::write(e.path().join("generation"), "zero\n");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let err = TsmAttester::new(root.path()).report(&report_data(10)).unwrap_err();
    stop.store(true, Ordering::Relaxed);
    t.join().unwrap();
    assert!(matches!(&err, AttestError::Malformed { path, .. } if path.ends_with("generation")), "{err}");
}
