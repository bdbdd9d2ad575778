//! The simulator's evidence round-trips through the real attesters into the real
//! verifiers: SEV-SNP and TDX through the configfs-tsm attester (against the
//! simulated configfs-tsm directory), TPM through tss-esapi against swtpm — and the
//! runtime event log replays against the quoted PCR.

use std::collections::BTreeMap;

use sha2::Digest as _;
use time::{Duration, OffsetDateTime};
use veil_attestation::runtime_log::{Event, Register, RuntimeLog, types};
use veil_attestation::snp::cert_table;
use veil_attestation::{Claims, ErrorKind, Options, Verifier, snp, tdx, tpm};
use veil_enclave::swtpm::Swtpm;
use veil_enclave::tpm::TpmAttester;
use veil_enclave::tsm::TsmAttester;
use veil_sim::tsm::{Provider, TsmSim};

fn report_data(tag: u8) -> [u8; 64] {
    let mut rd = [0u8; 64];
    rd.iter_mut().enumerate().for_each(|(i, b)| *b = tag ^ (i as u8));
    rd
}

#[test]
fn snp_through_configfs_tsm() {
    let dir = tempfile::tempdir().unwrap();
    let _sim = TsmSim::start(dir.path(), Provider::SevGuest).unwrap();
    let rd = report_data(0x5a);
    let got = TsmAttester::new(dir.path()).report(&rd).unwrap();
    assert_eq!(got.provider, "sev_guest");
    let table = got.auxblob.expect("SNP answers carry the certificate table");
    let entries = cert_table::parse(&table).unwrap();
    let vcek = cert_table::find(&entries, &cert_table::guid::VCEK).expect("VCEK in the table");

    let ev = snp::SnpEvidence { report: &got.outblob, vcek: Some(vcek), vlek: None, chain: None };
    let now = OffsetDateTime::now_utc();
    let v = snp::SnpVerifier::default();
    // Refused by default, naming the simulated root.
    let e = v.verify(&ev, &Options::at(now).with_report_data(rd.to_vec())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Simulated, "{e}");
    assert!(e.to_string().contains("Veil simulated"), "{e}");
    // Accepted with the opt-in, bound to our report data, marked simulated.
    let ok = v.verify(&ev, &Options::at(now).with_report_data(rd.to_vec()).danger_trust_simulator(true)).unwrap();
    assert!(ok.simulated());
    let Claims::Snp(c) = ok.claims() else { panic!("not SNP claims") };
    assert_eq!(c.report_data, rd);
    // Other report data: refused.
    let e = v.verify(&ev, &Options::at(now).with_report_data(report_data(1).to_vec()).danger_trust_simulator(true));
    assert_eq!(e.unwrap_err().kind(), ErrorKind::Nonce);
}

#[test]
fn tdx_through_configfs_tsm() {
    let dir = tempfile::tempdir().unwrap();
    let _sim = TsmSim::start(dir.path(), Provider::TdxGuest).unwrap();
    let rd = report_data(0xa5);
    let got = TsmAttester::new(dir.path()).report(&rd).unwrap();
    assert_eq!(got.provider, "tdx_guest");
    let now = OffsetDateTime::now_utc();
    let coll_json = veil_sim::tdx::collateral_json(now - Duration::days(1), now + Duration::days(29)).unwrap();
    let coll = tdx::Collateral::from_json(&coll_json).unwrap();
    let ev = tdx::TdxEvidence { quote: &got.outblob, collateral: Some(&coll), root: None };
    let v = tdx::TdxVerifier::default();
    let e = v.verify(&ev, &Options::at(now)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Simulated, "{e}");
    let ok = v.verify(&ev, &Options::at(now).with_report_data(rd.to_vec()).danger_trust_simulator(true)).unwrap();
    assert!(ok.simulated());
    let Claims::Tdx(c) = ok.claims() else { panic!("not TDX claims") };
    assert_eq!(c.report_data, hex::encode(rd));
    assert_eq!(c.tcb_status, Some(veil_attestation::tdx::TcbStatus::UpToDate));
}

#[test]
fn tpm_through_swtpm_with_runtime_log() {
    let swtpm = Swtpm::start().unwrap();
    let mut tpm_att = TpmAttester::open(&swtpm.tcti()).unwrap();
    let ak = tpm_att.create_ak().unwrap();

    // The runtime measures what it loads into PCR 23 and keeps the log.
    let mut log = RuntimeLog::default();
    for (ty, content) in [(types::BINARY, "sha256:aa"), (types::MODEL_MANIFEST, "sha256:bb")] {
        let ev = Event::new(Register::VEIL_PCR, ty, content);
        let d: [u8; 32] = ev.digest_bytes().unwrap().try_into().unwrap();
        tpm_att.extend(23, &d).unwrap();
        log.push(ev);
    }
    let nonce = sha2::Sha256::digest(b"fresh challenge").to_vec();
    let q = tpm_att.quote(&nonce, &[0, 7, 23]).unwrap();
    let values: BTreeMap<u32, Vec<u8>> = q.pcr_values.iter().map(|(k, v)| (u32::from(*k), v.to_vec())).collect();
    let pcrs = tpm::PcrValues { bank: tpm::HashAlg::Sha256, values };
    let ev = tpm::TpmEvidence {
        attest: &q.attest,
        signature: &q.signature,
        ak: &ak.public_pem,
        ak_chain: None,
        pcrs: Some(pcrs.clone()),
        event_log: None,
    };
    let now = OffsetDateTime::now_utc();
    let ok = tpm::TpmVerifier.verify(&ev, &Options::at(now).with_nonce(nonce.clone())).unwrap();
    // swtpm's AK is not the simulator's fixed AK: nothing says "simulated" here; the
    // AK is trusted because the caller supplied it (in a CVM, the hardware report binds it).
    assert!(!ok.simulated());
    assert!(ok.not_evaluated_items().iter().any(|s| s.contains("AK: not bound")));
    let Claims::Tpm(c) = ok.claims() else { panic!("not TPM claims") };
    assert_eq!(c.qualifying_data, hex::encode(&nonce));

    // The runtime log replays to the quoted PCR 23 of the *verified* quote; a forged
    // log, and a log that leaves the events out, do not.
    let trusted = log.verify_evidence(&ok).unwrap();
    assert_eq!(trusted.values(types::MODEL_MANIFEST).collect::<Vec<_>>(), ["sha256:bb"]);
    let mut forged = RuntimeLog::default();
    forged.push(Event::new(Register::VEIL_PCR, types::BINARY, "sha256:aa"));
    forged.push(Event::new(Register::VEIL_PCR, types::MODEL_MANIFEST, "sha256:evil"));
    assert_eq!(forged.verify_evidence(&ok).unwrap_err().kind(), ErrorKind::EventLog);
    let e = RuntimeLog::default().verify_evidence(&ok).unwrap_err();
    assert!(e.to_string().contains("events missing or altered"), "{e}");

    // A stale nonce is refused.
    let e = tpm::TpmVerifier.verify(&ev, &Options::at(now).with_nonce(vec![0; 32])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Nonce);
}

#[test]
fn simulated_tpm_quote_needs_the_opt_in() {
    let pcrs: BTreeMap<u32, [u8; 32]> = (0..8).map(|i| (i, [i as u8; 32])).collect();
    let q = veil_sim::tpm::quote(b"nonce", &pcrs).unwrap();
    let ev = tpm::TpmEvidence {
        attest: &q.attest,
        signature: &q.signature,
        ak: &q.ak_pem,
        ak_chain: None,
        pcrs: None,
        event_log: None,
    };
    let now = OffsetDateTime::now_utc();
    let e = tpm::TpmVerifier.verify(&ev, &Options::at(now)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Simulated, "{e}");
    let ok = tpm::TpmVerifier
        .verify(&ev, &Options::at(now).with_nonce(b"nonce".to_vec()).danger_trust_simulator(true))
        .unwrap();
    assert!(ok.simulated());
}

#[test]
fn runtime_log_replays_against_a_verified_td_quote() {
    // The runtime extends RTMR3 with each event; the quote reports RTMR3.
    let mut log = RuntimeLog::default();
    log.push(Event::new(Register::VEIL_RTMR, types::CONFIG, "sha256:cfg"));
    log.push(Event::new(Register::VEIL_RTMR, types::MODEL_SIGNER, "sha256:signer"));
    let rtmr3: [u8; 48] = log.replay().unwrap()[&Register::VEIL_RTMR].clone().try_into().unwrap();
    let opts = veil_sim::tdx::TdxOptions { rtmr: [[0; 48], [0; 48], [0; 48], rtmr3], ..Default::default() };
    let quote = veil_sim::tdx::quote(&report_data(7), &opts).unwrap();
    let now = OffsetDateTime::now_utc();
    let coll = tdx::Collateral::from_json(
        &veil_sim::tdx::collateral_json(now - Duration::days(1), now + Duration::days(29)).unwrap(),
    )
    .unwrap();
    let ev = tdx::TdxEvidence { quote: &quote, collateral: Some(&coll), root: None };
    let verified = tdx::TdxVerifier::default().verify(&ev, &Options::at(now).danger_trust_simulator(true)).unwrap();
    let events = log.verify_evidence(&verified).unwrap();
    assert_eq!(events.values(types::MODEL_SIGNER).collect::<Vec<_>>(), ["sha256:signer"]);
    // Dropping the last event no longer replays to the reported RTMR3.
    let mut short = RuntimeLog::default();
    short.push(log.events()[0].clone());
    let e = short.verify_evidence(&verified).unwrap_err();
    assert!(e.to_string().contains("rtmr3"), "{e}");
}
