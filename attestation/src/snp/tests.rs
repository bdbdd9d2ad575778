//! Tests against the real vectors in `shared/vectors/sev-snp` (cases.toml, kind = "snp").

use std::path::PathBuf;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::*;
use crate::error::ErrorKind;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

/// A file of a case: a name without "/" is inside the case's dir, else relative to
/// the vectors folder (cases.toml convention).
fn file(dir: &str, name: &str) -> Vec<u8> {
    let p: PathBuf =
        if name.contains('/') { [VECTORS, name].iter().collect() } else { [VECTORS, dir, name].iter().collect() };
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn at(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

#[derive(Clone, Copy)]
enum Role {
    Report,
    Cert,
}

/// Expected claims of an accepted case (`[case.claims]`).
struct Want {
    version: u32,
    guest_svn: u32,
    policy: u64,
    vmpl: u32,
    signing_key: &'static str,
    measurement: &'static str,
    host_data: &'static str,
    reported_tcb: &'static str,
    chip_id_prefix: &'static str,
    cpuid_fms: Option<&'static str>,
    product: &'static str,
}

struct Case {
    name: &'static str,
    dir: &'static str,
    report: Option<&'static str>,
    cert: &'static str,
    is_vlek: bool,
    chain: &'static str,
    verify_at: &'static str,
    report_data: Option<&'static str>,
    mutate: Option<(Role, usize, u8)>,
    expect: Result<(), ErrorKind>,
    want: Option<Want>,
}

const RD_GOSEV: &str = "01020304050000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000";
const RD_VIRTEE: &str = "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd";
const RD_TRUSTEE_V2: &str = "ec6c52d7533cc2c4f45be7849cf112ab82b2009fe7bd43e71ed08c14400ad7e20000000000000000000000000000000000000000000000000000000000000000";
const RD_VLEK: &str = "819770b7e6ea6df8dd8fd4dd146b073c0bf4f3ce5b0977ecac486e3a05ed1bd54e2a7ac1f5d1ca02e7d7d5ef9f73b8574fd9359e3a480d741a4478e8a7bc27ca";
const RD_GENOA: &str = "7e7320889600c7ac133aea7b896c51f41026002982292a7369559796999c1bf929eef3ff23c46e858f0b1982f9a92b17c51b578d958cde6b0c92978f150cf9b0";
const ZERO32: &str = "0000000000000000000000000000000000000000000000000000000000000000";

fn cases() -> Vec<Case> {
    let base = |name, dir, report: Option<&'static str>, cert, chain| Case {
        name,
        dir,
        report,
        cert,
        is_vlek: false,
        chain,
        verify_at: "2025-06-01T00:00:00Z",
        report_data: None,
        mutate: None,
        expect: Ok(()),
        want: None,
    };
    let milan_v2 = "sev-snp/trustee-milan-vcek-v2";
    let virtee = "sev-snp/virtee-milan-report";
    let vlek = "sev-snp/trustee-milan-vlek-v3";
    vec![
        Case {
            verify_at: "2022-09-24T01:00:00Z",
            report_data: Some(RD_GOSEV),
            want: Some(Want {
                version: 2,
                guest_svn: 0,
                policy: 0xb0000,
                vmpl: 0,
                signing_key: "vcek",
                measurement: "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01",
                host_data: ZERO32,
                reported_tcb: "0x4405000000000002",
                chip_id_prefix: "3ac3fe21e13fb099",
                cpuid_fms: None,
                product: "Milan-B0",
            }),
            ..base(
                "snp/gosevguest-milan-attestation",
                "sev-snp/gosevguest-milan-attestation",
                Some("report.bin"),
                "vcek.der",
                "cert_chain.pem",
            )
        },
        Case {
            report_data: Some(RD_VIRTEE),
            want: Some(Want {
                version: 2,
                guest_svn: 0,
                policy: 0x30000,
                vmpl: 0,
                signing_key: "vcek",
                measurement: "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f",
                host_data: ZERO32,
                reported_tcb: "0x7308000000000003",
                chip_id_prefix: "d49554ec717f4e5b",
                cpuid_fms: None,
                product: "Milan-B0",
            }),
            ..base("snp/virtee-milan-report", virtee, Some("report.bin"), "vcek.der", "cert_chain.pem")
        },
        Case {
            report_data: Some(RD_TRUSTEE_V2),
            want: Some(Want {
                version: 2,
                guest_svn: 4,
                policy: 0x3001f,
                vmpl: 0,
                signing_key: "vcek",
                measurement: "a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c",
                host_data: ZERO32,
                reported_tcb: "0x7308000000000003",
                chip_id_prefix: "c38427a30d4c7af9",
                cpuid_fms: None,
                product: "Milan-B0",
            }),
            ..base("snp/trustee-milan-vcek-v2", milan_v2, Some("report.bin"), "vcek.der", "cert_chain.pem")
        },
        Case {
            is_vlek: true,
            report_data: Some(RD_VLEK),
            want: Some(Want {
                version: 3,
                guest_svn: 0,
                policy: 0x30000,
                vmpl: 1,
                signing_key: "vlek",
                measurement: "8922ebbdd00ec2c541f36a6e7a82a8773a7accb451ed67bc94e740dbe92c93c4e8c9af857f5ceeb5a493df2a570d7bf0",
                host_data: ZERO32,
                reported_tcb: "0xd918000000000004",
                chip_id_prefix: "0000000000000000",
                cpuid_fms: Some("190101"),
                product: "Milan",
            }),
            ..base("snp/trustee-milan-vlek-v3", vlek, Some("report.bin"), "vlek.der", "cert_chain.pem")
        },
        Case {
            report_data: Some(RD_GENOA),
            want: Some(Want {
                version: 3,
                guest_svn: 0,
                policy: 0x30000,
                vmpl: 0,
                signing_key: "vcek",
                measurement: "6a6519d757e68c2e939c9dbbbc1828498e8de35d2766dd05f1a2cca5059d0cf4ae62a36d75c837974dd50b315506e73e",
                host_data: ZERO32,
                reported_tcb: "0x191700000000000a",
                chip_id_prefix: "371c55d6d15cb50f",
                cpuid_fms: Some("19a002"),
                product: "Genoa",
            }),
            ..base(
                "snp/trustee-e2e-genoa-v3",
                "sev-snp/trustee-e2e-genoa-v3",
                Some("report.bin"),
                "vcek.der",
                "cert_chain.pem",
            )
        },
        // Chain only (claims checked in `turin_chain_only_claims`).
        base("snp/virtee-turin-vcek-chain", "sev-snp/virtee-turin-vcek-chain", None, "vcek.der", "cert_chain.pem"),
        // Negatives.
        Case {
            expect: Err(ErrorKind::Chain),
            ..base(
                "snp/neg-milan-report-genoa-chain",
                milan_v2,
                Some("report.bin"),
                "vcek.der",
                "sev-snp/amd-kds-chains/ask_ark_genoa.pem",
            )
        },
        Case {
            expect: Err(ErrorKind::Chain),
            ..base(
                "snp/neg-milan-fake-vcek-legacy",
                milan_v2,
                Some("report.bin"),
                "test-vcek-invalid-legacy.der",
                "cert_chain.pem",
            )
        },
        Case {
            expect: Err(ErrorKind::Chain),
            ..base(
                "snp/neg-milan-fake-vcek-new",
                milan_v2,
                Some("report.bin"),
                "test-vcek-invalid-new.der",
                "cert_chain.pem",
            )
        },
        Case {
            mutate: Some((Role::Report, 42, 0x1)),
            expect: Err(ErrorKind::Signature),
            ..base("snp/neg-milan-report-byte42", milan_v2, Some("report.bin"), "vcek.der", "cert_chain.pem")
        },
        Case {
            mutate: Some((Role::Cert, 42, 0x7)),
            expect: Err(ErrorKind::Chain),
            ..base("snp/neg-milan-vcek-byte42", milan_v2, Some("report.bin"), "vcek.der", "cert_chain.pem")
        },
        Case {
            mutate: Some((Role::Report, 21, 0x80)),
            expect: Err(ErrorKind::Signature),
            ..base("snp/neg-virtee-report-bitflip21", virtee, Some("report.bin"), "vcek.der", "cert_chain.pem")
        },
        Case {
            mutate: Some((Role::Cert, 40, 0xff)),
            expect: Err(ErrorKind::Chain),
            ..base("snp/neg-virtee-vcek-byte40", virtee, Some("report.bin"), "vcek.der", "cert_chain.pem")
        },
        Case {
            expect: Err(ErrorKind::Signature),
            ..base(
                "snp/neg-virtee-report-other-vcek",
                virtee,
                Some("report.bin"),
                "sev-snp/gosevguest-milan-attestation/vcek.der",
                "cert_chain.pem",
            )
        },
        Case {
            report_data: Some(RD_GOSEV),
            expect: Err(ErrorKind::Nonce),
            ..base("snp/neg-virtee-wrong-report-data", virtee, Some("report.bin"), "vcek.der", "cert_chain.pem")
        },
        Case {
            verify_at: "2022-09-24T00:50:00Z",
            expect: Err(ErrorKind::Expired),
            ..base(
                "snp/neg-gosevguest-vcek-not-yet-valid",
                "sev-snp/gosevguest-milan-attestation",
                Some("report.bin"),
                "vcek.der",
                "cert_chain.pem",
            )
        },
        Case {
            is_vlek: true,
            verify_at: "2026-11-21T00:00:00Z",
            expect: Err(ErrorKind::Expired),
            ..base("snp/neg-vlek-expired", vlek, Some("report.bin"), "vlek.der", "cert_chain.pem")
        },
        Case {
            is_vlek: true,
            expect: Err(ErrorKind::Chain),
            ..base(
                "snp/neg-vlek-report-vcek-chain",
                vlek,
                Some("report.bin"),
                "vlek.der",
                "sev-snp/amd-kds-chains/ask_ark_milan.pem",
            )
        },
        Case {
            expect: Err(ErrorKind::Chain),
            ..base(
                "snp/neg-genoa-report-milan-chain",
                "sev-snp/trustee-e2e-genoa-v3",
                Some("report.bin"),
                "vcek.der",
                "sev-snp/amd-kds-chains/ask_ark_milan.pem",
            )
        },
        Case {
            expect: Err(ErrorKind::Chain),
            ..base(
                "snp/neg-turin-vcek-milan-chain",
                "sev-snp/virtee-turin-vcek-chain",
                None,
                "vcek.der",
                "sev-snp/amd-kds-chains/ask_ark_milan.pem",
            )
        },
    ]
}

struct Loaded {
    report: Option<Vec<u8>>,
    cert: Vec<u8>,
    chain: Vec<u8>,
    opts: Options,
}

fn load(c: &Case) -> Loaded {
    let mut report = c.report.map(|r| file(c.dir, r));
    let mut cert = file(c.dir, c.cert);
    let chain = file(c.dir, c.chain);
    if let Some((role, off, x)) = c.mutate {
        let buf = match role {
            Role::Report => report.as_mut().unwrap(),
            Role::Cert => &mut cert,
        };
        buf[off] ^= x;
    }
    let mut opts = Options::at(at(c.verify_at));
    if let Some(rd) = c.report_data {
        opts = opts.with_report_data(hex::decode(rd).unwrap());
    }
    Loaded { report, cert, chain, opts }
}

fn run(v: &SnpVerifier, c: &Case, l: &Loaded) -> Result<VerifiedEvidence> {
    match &l.report {
        Some(report) => {
            let ev = SnpEvidence {
                report,
                vcek: (!c.is_vlek).then_some(l.cert.as_slice()),
                vlek: c.is_vlek.then_some(l.cert.as_slice()),
                chain: Some(&l.chain),
            };
            v.verify(&ev, &l.opts)
        }
        None => v.verify_chain_only(&l.cert, c.is_vlek, &l.chain, &l.opts),
    }
}

fn snp_claims(ev: &VerifiedEvidence) -> &SnpClaims {
    match ev.claims() {
        Claims::Snp(c) => c,
        other => panic!("expected SNP claims, got {other:?}"),
    }
}

fn check_claims(name: &str, c: &SnpClaims, w: &Want) {
    assert_eq!(c.version, w.version, "{name}");
    assert_eq!(c.guest_svn, w.guest_svn, "{name}");
    assert_eq!(c.policy.raw, w.policy, "{name}");
    assert_eq!(c.vmpl, w.vmpl, "{name}");
    assert_eq!(c.signing_key.as_str(), w.signing_key, "{name}");
    assert_eq!(hex::encode(c.measurement), w.measurement, "{name}");
    assert_eq!(hex::encode(c.host_data), w.host_data, "{name}");
    assert_eq!(c.reported_tcb.raw.hex(), w.reported_tcb, "{name}");
    assert_eq!(hex::encode(&c.chip_id[..8]), w.chip_id_prefix, "{name}");
    let fms = c.cpuid_fam_id.map(|f| format!("{f:02x}{:02x}{:02x}", c.cpuid_mod_id.unwrap(), c.cpuid_step.unwrap()));
    assert_eq!(fms.as_deref(), w.cpuid_fms, "{name}");
    assert_eq!(c.product_name.as_deref(), Some(w.product), "{name}");
    assert!(w.product.starts_with(c.product.name()), "{name}");
    // The serialised claims use hex strings and the raw TCB form.
    let j = serde_json::to_value(c).unwrap();
    assert_eq!(j["measurement"], w.measurement, "{name}");
    assert_eq!(j["reported_tcb"]["raw"], w.reported_tcb, "{name}");
    assert_eq!(j["signing_key"], w.signing_key, "{name}");
}

#[test]
fn every_snp_case_of_cases_toml() {
    let v = SnpVerifier::new();
    let all = cases();
    assert_eq!(all.len(), 20);
    for c in &all {
        let l = load(c);
        // Twice: a cold and a cached chain must agree.
        for round in 0..2 {
            let got = run(&v, c, &l);
            match (&c.expect, &got) {
                (Ok(()), Ok(ev)) => {
                    assert_eq!(ev.tee(), Tee::Snp, "{}", c.name);
                    assert!(!ev.simulated(), "{}", c.name);
                    if let Some(w) = &c.want {
                        check_claims(c.name, snp_claims(ev), w);
                    }
                }
                (Err(kind), Err(e)) => assert_eq!(e.kind(), *kind, "{} (round {round}): {e}", c.name),
                _ => panic!("{} (round {round}): expected {:?}, got {got:?}", c.name, c.expect),
            }
        }
    }
}

/// Also with no chain file (the embedded roots) and with the chain file's
/// certificates in reverse order.
#[test]
fn embedded_chain_and_any_order() {
    let v = SnpVerifier::new();
    for c in cases().iter().filter(|c| c.expect.is_ok() && c.report.is_some()) {
        let l = load(c);
        let report = l.report.as_ref().unwrap();
        let (vcek, vlek) = if c.is_vlek { (None, Some(l.cert.as_slice())) } else { (Some(l.cert.as_slice()), None) };
        let ev = SnpEvidence { report, vcek, vlek, chain: None };
        v.verify(&ev, &l.opts).unwrap_or_else(|e| panic!("{}: {e}", c.name));

        let mut ders = crate::x509::certs_from_pem_or_der(&l.chain, "chain").unwrap();
        ders.reverse();
        let pem: String = ders.iter().map(|d| pem_block(d)).collect();
        let ev = SnpEvidence { report, vcek, vlek, chain: Some(pem.as_bytes()) };
        v.verify(&ev, &l.opts).unwrap_or_else(|e| panic!("{} (reversed chain): {e}", c.name));

        // The VCEK/VLEK as PEM works too.
        let cert_pem = pem_block(&l.cert);
        let (vcek, vlek) =
            if c.is_vlek { (None, Some(cert_pem.as_bytes())) } else { (Some(cert_pem.as_bytes()), None) };
        let ev = SnpEvidence { report, vcek, vlek, chain: Some(&l.chain) };
        v.verify(&ev, &l.opts).unwrap_or_else(|e| panic!("{} (PEM cert): {e}", c.name));
    }
}

fn pem_block(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

#[test]
fn turin_chain_only_claims() {
    let v = SnpVerifier::new();
    let dir = "sev-snp/virtee-turin-vcek-chain";
    let ev = v
        .verify_chain_only(
            &file(dir, "vcek.der"),
            false,
            &file(dir, "cert_chain.pem"),
            &Options::at(at("2025-06-01T00:00:00Z")),
        )
        .unwrap();
    let Claims::SnpCertChain(c) = ev.claims() else { panic!("{:?}", ev.claims()) };
    assert_eq!(c.product, Product::Turin);
    assert_eq!(c.product_name.as_deref(), Some("Turin"));
    assert_eq!((c.tcb.fmc, c.tcb.bootloader, c.tee_snp(), c.tcb.microcode), (Some(0), 0, (0, 0), 9));
    assert_eq!(c.hwid.as_ref().map(Vec::len), Some(8));
    assert!(!ev.not_evaluated_items().is_empty());
    // A Turin VCEK claiming to be a VLEK has no ASVK issuer.
    let e = v
        .verify_chain_only(
            &file(dir, "vcek.der"),
            true,
            &file(dir, "cert_chain.pem"),
            &Options::at(at("2025-06-01T00:00:00Z")),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Chain, "{e}");
    // Expired at 2032.
    let e = v
        .verify_chain_only(
            &file(dir, "vcek.der"),
            false,
            &file(dir, "cert_chain.pem"),
            &Options::at(at("2032-01-01T00:00:00Z")),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Expired, "{e}");
}

impl SnpCertClaims {
    fn tee_snp(&self) -> (u8, u8) {
        (self.tcb.tee, self.tcb.snp)
    }
}

fn accepted() -> Vec<(Case, Loaded)> {
    cases()
        .into_iter()
        .filter(|c| c.expect.is_ok() && c.report.is_some())
        .map(|c| {
            let l = load(&c);
            (c, l)
        })
        .collect()
}

fn evidence<'a>(c: &Case, l: &'a Loaded, report: &'a [u8], cert: &'a [u8]) -> SnpEvidence<'a> {
    SnpEvidence { report, vcek: (!c.is_vlek).then_some(cert), vlek: c.is_vlek.then_some(cert), chain: Some(&l.chain) }
}

/// One bit flipped in every byte of every accepted report (signed region,
/// signature and reserved signature space): always a typed refusal.
#[test]
fn every_report_byte_bit_flip_is_refused() {
    let v = SnpVerifier::new();
    for (c, l) in accepted() {
        let report = l.report.as_ref().unwrap();
        assert_eq!(report.len(), REPORT_SIZE);
        let mut buf = report.clone();
        for i in 0..REPORT_SIZE {
            let bit = 1u8 << (i % 8);
            buf[i] ^= bit;
            let e = v.verify(&evidence(&c, &l, &buf, &l.cert), &l.opts).expect_err(&format!("{} byte {i}", c.name));
            assert!(
                matches!(e.kind(), ErrorKind::Parse | ErrorKind::Signature | ErrorKind::Binding),
                "{} byte {i}: {e}",
                c.name
            );
            buf[i] ^= bit;
        }
        v.verify(&evidence(&c, &l, &buf, &l.cert), &l.opts).unwrap();
    }
}

#[test]
fn every_report_truncation_is_a_parse_error() {
    let v = SnpVerifier::new();
    for (c, l) in accepted() {
        let report = l.report.as_ref().unwrap();
        for n in 0..REPORT_SIZE {
            let e = parse_report(&report[..n]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Parse, "{} len {n}", c.name);
            let e = v.verify(&evidence(&c, &l, &report[..n], &l.cert), &l.opts).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Parse, "{} len {n}: {e}", c.name);
        }
    }
}

#[test]
fn vcek_truncations_and_bit_flips_are_refused() {
    let v = SnpVerifier::new();
    for (c, l) in accepted() {
        let report = l.report.as_ref().unwrap();
        for n in 0..l.cert.len() {
            let e = v.verify(&evidence(&c, &l, report, &l.cert[..n]), &l.opts).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Chain, "{} len {n}: {e}", c.name);
        }
        let mut cert = l.cert.clone();
        for i in 0..cert.len() {
            let bit = 1u8 << (i % 8);
            cert[i] ^= bit;
            let r = v.verify(&evidence(&c, &l, report, &cert), &l.opts);
            assert!(r.is_err(), "{} cert byte {i} bit {bit:#x} accepted", c.name);
            cert[i] ^= bit;
        }
    }
}

#[test]
fn trailing_bytes_are_noted_not_verified() {
    let v = SnpVerifier::new();
    let (c, l) = accepted().into_iter().next().unwrap();
    let mut report = l.report.clone().unwrap();
    report.extend_from_slice(b"junk after the report");
    let ev = v.verify(&evidence(&c, &l, &report, &l.cert), &l.opts).unwrap();
    assert_eq!(ev.notes().len(), 1, "{:?}", ev.notes());
    assert!(ev.notes()[0].contains("21 bytes"), "{:?}", ev.notes());
}

#[test]
fn cache_hit_is_identical_and_still_checks_time() {
    let v = SnpVerifier::new();
    let cases = cases();
    let c = cases.iter().find(|c| c.name == "snp/trustee-milan-vlek-v3").unwrap();
    let l = load(c);
    let report = l.report.as_ref().unwrap();
    let cold = v.verify(&evidence(c, &l, report, &l.cert), &l.opts).unwrap();
    let warm = v.verify(&evidence(c, &l, report, &l.cert), &l.opts).unwrap();
    assert_eq!(serde_json::to_string(&cold).unwrap(), serde_json::to_string(&warm).unwrap());
    assert_eq!(v.cache.lock().unwrap().len(), 1);
    // Same chain, now after the VLEK's notAfter: refused on the cache hit.
    let late = Options::at(at("2026-11-21T00:00:00Z"));
    let e = v.verify(&evidence(c, &l, report, &l.cert), &late).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Expired, "{e}");
    // And before the notBefore.
    let early = Options::at(at("2024-01-01T00:00:00Z"));
    let e = v.verify(&evidence(c, &l, report, &l.cert), &early).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Expired, "{e}");
    // A mutated report on a cache hit is still refused.
    let mut bad = report.clone();
    bad[0x90] ^= 1;
    let e = v.verify(&evidence(c, &l, &bad, &l.cert), &l.opts).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Signature, "{e}");
    assert_eq!(v.cache.lock().unwrap().len(), 1);
}

#[test]
fn cache_is_bounded() {
    let v = SnpVerifier::new();
    let dir = "sev-snp/virtee-turin-vcek-chain";
    let cert = file(dir, "vcek.der");
    let chain = file(dir, "cert_chain.pem");
    let opts = Options::at(at("2025-06-01T00:00:00Z"));
    for i in 0..(CACHE_CAPACITY + 10) {
        // Different chain bytes (trailing whitespace) give different cache keys.
        let mut ch = chain.clone();
        ch.extend(std::iter::repeat_n(b'\n', i));
        v.verify_chain_only(&cert, false, &ch, &opts).unwrap();
    }
    assert_eq!(v.cache.lock().unwrap().len(), CACHE_CAPACITY);
}

#[test]
fn poisoned_cache_is_a_miss_not_a_panic() {
    let v = std::sync::Arc::new(SnpVerifier::new());
    let v2 = std::sync::Arc::clone(&v);
    let _ = std::thread::spawn(move || {
        let _g = v2.cache.lock().unwrap();
        panic!("poison the cache lock");
    })
    .join();
    assert!(v.cache.is_poisoned());
    let (c, l) = accepted().into_iter().next().unwrap();
    v.verify(&evidence(&c, &l, l.report.as_ref().unwrap(), &l.cert), &l.opts).unwrap();
    let _ = format!("{v:?}");
}

#[test]
fn signing_key_must_match_the_certificate() {
    let v = SnpVerifier::new();
    let cases = cases();
    let c = cases.iter().find(|c| c.name == "snp/trustee-milan-vlek-v3").unwrap();
    let l = load(c);
    let report = l.report.as_ref().unwrap();
    // A VLEK-signed report with the VLEK passed as a VCEK.
    let ev = SnpEvidence { report, vcek: Some(&l.cert), vlek: None, chain: Some(&l.chain) };
    assert_eq!(v.verify(&ev, &l.opts).unwrap_err().kind(), ErrorKind::Binding);
    // Both, or neither.
    let ev = SnpEvidence { report, vcek: Some(&l.cert), vlek: Some(&l.cert), chain: Some(&l.chain) };
    assert_eq!(v.verify(&ev, &l.opts).unwrap_err().kind(), ErrorKind::Chain);
    let ev = SnpEvidence { report, vcek: None, vlek: None, chain: Some(&l.chain) };
    assert_eq!(v.verify(&ev, &l.opts).unwrap_err().kind(), ErrorKind::Chain);
}

#[test]
fn unknown_certificate_in_chain_file_is_refused() {
    let v = SnpVerifier::new();
    let (c, l) = accepted().into_iter().next().unwrap();
    let mut chain = l.chain.clone();
    chain.extend_from_slice(pem_block(&l.cert).as_bytes());
    let ev = SnpEvidence { chain: Some(&chain), ..evidence(&c, &l, l.report.as_ref().unwrap(), &l.cert) };
    let e = v.verify(&ev, &l.opts).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Chain, "{e}");
    assert!(e.to_string().contains("not one of the embedded"), "{e}");
}

#[test]
fn versions_and_reserved_fields() {
    let report = file("sev-snp/trustee-e2e-genoa-v3", "report.bin");
    assert_eq!(parse_report(&report).unwrap().version, 3);
    for version in [0u32, 1, 4, 6, 0xffff_ffff] {
        let mut r = report.clone();
        r[..4].copy_from_slice(&version.to_le_bytes());
        let e = parse_report(&r).unwrap_err();
        assert!(e.to_string().contains("version"), "{e}");
    }
    // Version 5 layout: the mitigation vectors are fields, not reserved.
    let mut r = report.clone();
    r[..4].copy_from_slice(&5u32.to_le_bytes());
    r[0x1F8] = 7;
    let p = parse_report(&r).unwrap();
    assert_eq!((p.launch_mit_vector, p.current_mit_vector), (Some(7), Some(0)));
    // ... but reserved in version 3 and in version 2.
    r[..4].copy_from_slice(&3u32.to_le_bytes());
    assert!(parse_report(&r).unwrap_err().to_string().contains("0x1F8"));
    // v2: the CPUID bytes are reserved.
    let mut r = report.clone();
    r[..4].copy_from_slice(&2u32.to_le_bytes());
    assert!(parse_report(&r).unwrap_err().to_string().contains("0x188"));
    // Other reserved ranges, signature algorithm, signing key.
    for (off, field) in [
        (0x4C, "0x04C"),
        (0x190, "0x18B"),
        (0x1EB, "0x1EB"),
        (0x1EF, "0x1EF"),
        (0x250, "0x208"),
        (0x2A0 + 60, "signature.r"),
        (0x2E8 + 50, "signature.s"),
        (0x400, "0x330"),
        (0x34, "signature_algo"),
        (0x4B, "key_info"),
    ] {
        let mut r = report.clone();
        r[off] ^= 0x40;
        let e = parse_report(&r).unwrap_err();
        assert!(e.to_string().contains(field), "offset {off:#x}: {e}");
    }
    let mut r = report.clone();
    r[0x48] = 2 << 2; // signing_key 2 is reserved
    assert!(parse_report(&r).unwrap_err().to_string().contains("signing_key"));
}

#[test]
fn unsigned_report_is_refused() {
    let v = SnpVerifier::new();
    let (c, l) = accepted().into_iter().next().unwrap();
    let mut r = l.report.clone().unwrap();
    r[0x48] = 7 << 2;
    let e = v.verify(&evidence(&c, &l, &r, &l.cert), &l.opts).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Signature, "{e}");
}

#[test]
fn tcb_layouts() {
    let t = TcbVersion(0x4405000000000002);
    let p = t.parts(TcbLayout::Legacy);
    assert_eq!((p.fmc, p.bootloader, p.tee, p.snp, p.microcode), (None, 2, 0, 5, 0x44));
    assert_eq!(TcbVersion::from_parts(p, TcbLayout::Legacy), t);
    let turin = TcbVersion(u64::from_le_bytes([1, 2, 3, 4, 0, 0, 0, 9]));
    let p = turin.parts(TcbLayout::Turin);
    assert_eq!((p.fmc, p.bootloader, p.tee, p.snp, p.microcode), (Some(1), 2, 3, 4, 9));
    assert_eq!(TcbVersion::from_parts(p, TcbLayout::Turin), turin);
    assert_eq!(t.hex(), "0x4405000000000002");
}

#[test]
fn policy_and_platform_info_are_decoded() {
    let p = PolicyClaims::new(0xb0000);
    assert!(p.smt && p.reserved_bit17 && p.debug && !p.migrate_ma && !p.single_socket);
    let p = PolicyClaims::new(0x3001f);
    assert_eq!((p.abi_major, p.abi_minor, p.debug), (0, 0x1f, false));
    let i = PlatformInfoClaims::new(0x25);
    assert!(i.smt_enabled && i.ecc_enabled && i.alias_check_complete && !i.tsme_enabled);
}

// ---------------------------------------------------------------- Trustee JSON

fn genoa_json() -> (Vec<u8>, Vec<u8>) {
    let dir = "sev-snp/trustee-e2e-genoa-v3";
    (file(dir, "evidence.json"), file(dir, "report.bin"))
}

#[test]
fn trustee_json_round_trip_is_byte_exact() {
    let (json, bin) = genoa_json();
    assert_eq!(json::report_from_trustee_json(&json).unwrap(), bin);
    // The bare report object works too.
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let bare = serde_json::to_vec(&v["attestation_report"]).unwrap();
    assert_eq!(json::report_from_trustee_json(&bare).unwrap(), bin);
    // The certificate table carries the VCEK, which verifies the rebuilt report.
    let certs = json::cert_chain_from_trustee_json(&json).unwrap();
    assert_eq!(certs.len(), 1);
    assert_eq!(certs[0].cert_type, "VCEK");
    assert_eq!(certs[0].data, file("sev-snp/trustee-e2e-genoa-v3", "vcek.der"));
    let rebuilt = json::report_from_trustee_json(&json).unwrap();
    let ev = SnpEvidence { report: &rebuilt, vcek: Some(&certs[0].data), vlek: None, chain: None };
    SnpVerifier::new().verify(&ev, &Options::at(at("2025-06-01T00:00:00Z"))).unwrap();
}

fn with(json: &[u8], f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(json).unwrap();
    f(v["attestation_report"].as_object_mut().unwrap());
    serde_json::to_vec(&v).unwrap()
}

#[test]
fn trustee_json_mutations() {
    let (json, bin) = genoa_json();
    let v = SnpVerifier::new();
    let opts = Options::at(at("2025-06-01T00:00:00Z"));
    let vcek = file("sev-snp/trustee-e2e-genoa-v3", "vcek.der");

    // A changed value converts to different bytes, which the signature refuses.
    let changed = with(&json, |o| o["measurement"][0] = 0.into());
    let bytes = json::report_from_trustee_json(&changed).unwrap();
    assert_ne!(bytes, bin);
    let ev = SnpEvidence { report: &bytes, vcek: Some(&vcek), vlek: None, chain: None };
    assert_eq!(v.verify(&ev, &opts).unwrap_err().kind(), ErrorKind::Signature);

    let refused: Vec<(&str, Vec<u8>)> = vec![
        (
            "unknown field",
            with(&json, |o| {
                o.insert("extra".into(), 1.into());
            }),
        ),
        (
            "missing field",
            with(&json, |o| {
                o.remove("host_data");
            }),
        ),
        (
            "missing cpuid",
            with(&json, |o| {
                o.remove("cpuid_step");
            }),
        ),
        (
            "short array",
            with(&json, |o| {
                o["measurement"].as_array_mut().unwrap().pop();
            }),
        ),
        ("byte out of range", with(&json, |o| o["report_data"][0] = 256.into())),
        ("float", with(&json, |o| o["policy"] = serde_json::json!(196608.0))),
        ("string number", with(&json, |o| o["vmpl"] = "0".into())),
        (
            "fmc on a Genoa",
            with(&json, |o| {
                for k in ["current_tcb", "reported_tcb", "committed_tcb", "launch_tcb"] {
                    o[k]["fmc"] = 0.into();
                }
            }),
        ),
        ("fmc in one TCB", with(&json, |o| o["launch_tcb"]["fmc"] = 0.into())),
        ("signature high bytes", with(&json, |o| o["signature"]["r"][60] = 1.into())),
        ("unknown signature field", with(&json, |o| o["signature"]["x"] = 1.into())),
        ("version 4", with(&json, |o| o["version"] = 4.into())),
        ("reserved key_info bits", with(&json, |o| o["key_info"] = 0x100.into())),
        (
            "mit vector on v3",
            with(&json, |o| {
                o.insert("launch_mit_vector".into(), 1.into());
            }),
        ),
        ("cpuid on v2", with(&json, |o| o["version"] = 2.into())),
    ];
    for (what, j) in refused {
        let e = json::report_from_trustee_json(&j).expect_err(what);
        assert_eq!(e.kind(), ErrorKind::Parse, "{what}: {e}");
    }
    // Null mitigation vectors on v3 are what newer `sev` versions write.
    let nulls = with(&json, |o| {
        o.insert("launch_mit_vector".into(), serde_json::Value::Null);
        o.insert("current_mit_vector".into(), serde_json::Value::Null);
    });
    assert_eq!(json::report_from_trustee_json(&nulls).unwrap(), bin);
    // Not JSON, not an object, junk around the wrapper.
    assert!(json::report_from_trustee_json(b"{").is_err());
    assert!(json::report_from_trustee_json(b"[1]").is_err());
    let mut wrapped: serde_json::Value = serde_json::from_slice(&json).unwrap();
    wrapped["other"] = 1.into();
    assert!(json::report_from_trustee_json(&serde_json::to_vec(&wrapped).unwrap()).is_err());
}

#[test]
fn fuzz_entry_does_not_panic_on_seeds() {
    let (json, bin) = genoa_json();
    for seed in [&bin[..], &json[..], &bin[..100], b"", &[0xff; 2000][..]] {
        fuzz_report(seed);
    }
    let virtee = file("sev-snp/virtee-milan-report", "report.bin");
    let mut r = virtee.clone();
    fuzz_report(&r);
    for i in (0..r.len()).step_by(37) {
        r[i] ^= 0xff;
        fuzz_report(&r);
    }
}

// ---------------------------------------------------------------- simulated roots

/// A verifier whose "simulated" certificates are the real Milan ARK and ASK, and
/// which embeds nothing: exercises the danger path with real signatures.
fn simulated_milan_verifier() -> SnpVerifier {
    use crate::danger::SimulatedCert;
    let sims: Vec<SimulatedCert> = vec![
        SimulatedCert { name: "test-sim ARK-Milan", der: include_bytes!("roots/ark_milan.der") },
        SimulatedCert { name: "test-sim SEV-Milan", der: include_bytes!("roots/ask_milan.der") },
    ];
    let store = certs::TrustStore { embedded: &[], simulated: Box::leak(sims.into_boxed_slice()) };
    SnpVerifier { cache: std::sync::Mutex::new(std::collections::HashMap::new()), store }
}

#[test]
fn simulated_roots_need_the_danger_option() {
    let (c, l) = accepted().into_iter().next().unwrap();
    let report = l.report.as_ref().unwrap();
    for chain in [Some(l.chain.as_slice()), None] {
        let v = simulated_milan_verifier();
        let ev = SnpEvidence { chain, ..evidence(&c, &l, report, &l.cert) };
        let e = v.verify(&ev, &l.opts).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Simulated, "{e}");
        assert!(e.to_string().contains("test-sim"), "{e}");
        let trusting = l.opts.clone().danger_trust_simulator(true);
        let ok = v.verify(&ev, &trusting).unwrap();
        assert!(ok.simulated());
        // Cached now; a cache hit without the option is still refused by name.
        let e = v.verify(&ev, &l.opts).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Simulated, "{e}");
        let e = v.verify_chain_only(&l.cert, false, &l.chain, &l.opts).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Simulated, "{e}");
    }
    // The production verifier never marks real evidence as simulated.
    let ev =
        SnpVerifier::new().verify(&evidence(&c, &l, report, &l.cert), &l.opts.clone().danger_trust_simulator(true));
    assert!(!ev.unwrap().simulated());
}

// ---------------------------------------------------------------- report ↔ VCEK binding

#[test]
fn tcb_and_chip_id_must_match_the_vcek() {
    let v = SnpVerifier::new();
    let (c, l) = accepted().into_iter().next().unwrap();
    let report_bytes = l.report.clone().unwrap();
    v.verify(&evidence(&c, &l, &report_bytes, &l.cert), &l.opts).unwrap();
    let vc: VerifiedChain = (*v.cache.lock().unwrap().values().next().unwrap().clone()).clone();
    let report = parse_report(&report_bytes).unwrap();
    let mut notes = Vec::new();
    check_binding(&report, &vc, &mut notes).unwrap();
    assert!(notes.is_empty());

    let tweak = |f: &dyn Fn(&mut VerifiedChain)| {
        let mut vc = vc.clone();
        f(&mut vc);
        check_binding(&report, &vc, &mut Vec::new()).unwrap_err()
    };
    for e in [
        tweak(&|vc| vc.extensions.bl_spl ^= 1),
        tweak(&|vc| vc.extensions.tee_spl ^= 1),
        tweak(&|vc| vc.extensions.snp_spl ^= 1),
        tweak(&|vc| vc.extensions.ucode_spl ^= 1),
        tweak(&|vc| vc.extensions.hwid.as_mut().unwrap()[63] ^= 1),
        tweak(&|vc| vc.extensions.hwid = Some(report.chip_id[..8].to_vec())),
        // A Turin chain reads the TCB differently (and needs fmc).
        tweak(&|vc| vc.product = Product::Turin),
    ] {
        assert_eq!(e.kind(), ErrorKind::Binding, "{e}");
    }
    // Masked chip ID: accepted with a note (the VCEK signature pins the chip).
    let mut masked = report.clone();
    masked.chip_id = [0; 64];
    let mut notes = Vec::new();
    check_binding(&masked, &vc, &mut notes).unwrap();
    assert_eq!(notes.len(), 1);
    // CPUID of another product line.
    let mut other = report.clone();
    other.cpuid = Some(Cpuid { family: 0x19, model: 0x11, stepping: 1 });
    assert_eq!(check_binding(&other, &vc, &mut Vec::new()).unwrap_err().kind(), ErrorKind::Binding);
    // Turin: 8-byte hwID, rest of CHIP_ID zero, fmc compared.
    let mut turin_vc = vc.clone();
    turin_vc.product = Product::Turin;
    turin_vc.extensions.hwid = Some(vec![1, 2, 3, 4, 5, 6, 7, 8]);
    turin_vc.extensions.fmc_spl = Some(1);
    let parts = TcbParts { fmc: Some(1), bootloader: 2, tee: 3, snp: 4, microcode: 9 };
    (turin_vc.extensions.bl_spl, turin_vc.extensions.tee_spl) = (2, 3);
    (turin_vc.extensions.snp_spl, turin_vc.extensions.ucode_spl) = (4, 9);
    let mut turin = report.clone();
    turin.cpuid = Some(Cpuid { family: 0x1A, model: 0x02, stepping: 1 });
    turin.reported_tcb = TcbVersion::from_parts(parts, TcbLayout::Turin);
    turin.chip_id = [0; 64];
    turin.chip_id[..8].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
    check_binding(&turin, &turin_vc, &mut Vec::new()).unwrap();
    turin.chip_id[8] = 1;
    assert_eq!(check_binding(&turin, &turin_vc, &mut Vec::new()).unwrap_err().kind(), ErrorKind::Binding);
    turin.chip_id[8] = 0;
    turin_vc.extensions.fmc_spl = Some(2);
    assert_eq!(check_binding(&turin, &turin_vc, &mut Vec::new()).unwrap_err().kind(), ErrorKind::Binding);
}
