//! Tests of the TDX verifier against the real vectors in `shared/vectors` (every
//! `kind = "tdx"` case of `cases.toml`), their mutations and truncations, collateral
//! tampering, the caches and the root selection.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use base64::Engine as _;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::*;
use crate::error::ErrorKind;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors");

fn read(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(VECTORS).join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn at(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

#[derive(Debug, Deserialize)]
struct CaseFile {
    case: Vec<Case>,
}

#[derive(Debug, Clone, Deserialize)]
struct Mutate {
    role: String,
    offset: usize,
    xor: u8,
}

#[derive(Debug, Clone, Deserialize)]
struct Case {
    name: String,
    kind: String,
    dir: String,
    files: BTreeMap<String, String>,
    verify_at: String,
    expect: String,
    reason: Option<String>,
    expect_status: Option<String>,
    expect_qe_status: Option<String>,
    expect_advisories: Option<Vec<String>>,
    report_data: Option<String>,
    mutate: Option<Mutate>,
    #[serde(default)]
    claims: toml::Table,
}

impl Case {
    fn file(&self, role: &str) -> Option<Vec<u8>> {
        let f = self.files.get(role)?;
        let rel = if f.contains('/') { f.clone() } else { format!("{}/{f}", self.dir) };
        let mut bytes = read(&rel);
        if let Some(m) = &self.mutate {
            if m.role == role {
                bytes[m.offset] ^= m.xor;
            }
        }
        Some(bytes)
    }

    fn options(&self) -> Options {
        let mut o = Options::at(at(&self.verify_at));
        if let Some(rd) = &self.report_data {
            o = o.with_report_data(hex::decode(rd).unwrap());
        }
        o
    }
}

fn tdx_cases() -> Vec<Case> {
    let text = String::from_utf8(read("cases.toml")).unwrap();
    let file: CaseFile = toml::from_str(&text).unwrap();
    file.case.into_iter().filter(|c| c.kind == "tdx").collect()
}

struct Loaded {
    quote: Vec<u8>,
    collateral: Option<Collateral>,
    root: Option<Vec<u8>>,
}

impl Loaded {
    fn of(case: &Case) -> Self {
        Loaded {
            quote: case.file("quote").unwrap(),
            collateral: case.file("collateral").map(|j| Collateral::from_json(&j).unwrap()),
            root: case.file("root"),
        }
    }

    fn evidence(&self) -> TdxEvidence<'_> {
        TdxEvidence { quote: &self.quote, collateral: self.collateral.as_ref(), root: self.root.as_deref() }
    }
}

fn tdx_claims(v: &VerifiedEvidence) -> &TdxClaims {
    match v.claims() {
        Claims::Tdx(c) => c,
        other => panic!("not TDX claims: {other:?}"),
    }
}

fn kind_name(e: &Error) -> String {
    serde_json::to_value(e.kind()).unwrap().as_str().unwrap().to_string()
}

fn check_claims(case: &Case, claims: &TdxClaims) {
    let json = serde_json::to_value(claims).unwrap();
    for (k, want) in &case.claims {
        let found = json.get(k).unwrap_or_else(|| panic!("{}: claim {k} missing from {json}", case.name));
        match want {
            toml::Value::String(s) => assert_eq!(found.as_str(), Some(s.as_str()), "{}: claim {k}", case.name),
            toml::Value::Integer(i) => assert_eq!(found.as_i64(), Some(*i), "{}: claim {k}", case.name),
            other => panic!("{}: unexpected claim type {other:?}", case.name),
        }
    }
}

#[test]
fn embedded_root_is_intel_sgx_root_ca() {
    assert_eq!(x509::sha256_hex(INTEL_SGX_ROOT_CA), "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3");
    assert_eq!(INTEL_SGX_ROOT_CA, read("tdx/Intel_SGX_RootCA.der").as_slice());
    let cert = x509::parse_der(INTEL_SGX_ROOT_CA, "root").unwrap();
    assert!(cert.subject().to_string().contains("Intel SGX Root CA"));
}

/// Every `kind = "tdx"` case of cases.toml gives its expected result.
#[test]
fn cases_toml_tdx() {
    let cases = tdx_cases();
    assert!(cases.len() >= 18, "only {} tdx cases", cases.len());
    let verifier = TdxVerifier::default();
    for case in &cases {
        let loaded = Loaded::of(case);
        // Twice through one verifier: the second run is served from the caches.
        for pass in ["cold", "cached"] {
            let result = verifier.verify(&loaded.evidence(), &case.options());
            let ctx = format!("{} ({pass})", case.name);
            match (case.expect.as_str(), result) {
                ("accept", Ok(v)) => {
                    assert_eq!(v.tee(), Tee::Tdx);
                    assert!(!v.simulated());
                    let c = tdx_claims(&v);
                    check_claims(case, c);
                    if let Some(s) = &case.expect_status {
                        assert_eq!(c.tcb_status.map(|s| s.as_str()), Some(s.as_str()), "{ctx}");
                    }
                    if let Some(s) = &case.expect_qe_status {
                        assert_eq!(c.qe_tcb_status.map(|s| s.as_str()), Some(s.as_str()), "{ctx}");
                    }
                    if let Some(a) = &case.expect_advisories {
                        assert_eq!(&c.advisory_ids, a, "{ctx}");
                    }
                    if case.files.contains_key("collateral") {
                        assert!(v.not_evaluated_items().is_empty(), "{ctx}: {:?}", v.not_evaluated_items());
                    } else {
                        assert!(c.tcb_status.is_none() && c.qe_tcb_status.is_none(), "{ctx}");
                        let ne = v.not_evaluated_items().join("; ");
                        assert!(ne.contains("TCB status: not evaluated, no collateral"), "{ctx}: {ne}");
                        assert!(ne.contains("QE identity"), "{ctx}: {ne}");
                    }
                    assert_eq!(c.trailing_bytes > 0, !v.notes().is_empty(), "{ctx}: {:?}", v.notes());
                }
                ("reject", Err(e)) => {
                    let reason = case.reason.as_deref().unwrap();
                    assert_eq!(kind_name(&e), reason, "{ctx}: {e}");
                    let msg = e.to_string();
                    if let Some(s) = &case.expect_status {
                        assert!(msg.contains(s.as_str()), "{ctx}: {msg}");
                    }
                    if let Some(s) = &case.expect_qe_status {
                        assert!(msg.contains(&format!("QE identity status {s}")), "{ctx}: {msg}");
                    }
                }
                (want, got) => panic!("{ctx}: expected {want}, got {got:?}"),
            }
        }
    }
}

/// The accepted real quotes (one per quote file) and a time at which they verify
/// without collateral.
fn accepted_quotes() -> Vec<(String, Vec<u8>, OffsetDateTime)> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for case in tdx_cases() {
        if case.expect != "accept" || case.mutate.is_some() {
            continue;
        }
        let q = case.file("quote").unwrap();
        if seen.insert(q.clone()) {
            out.push((case.name.clone(), q, at(&case.verify_at)));
        }
    }
    assert_eq!(out.len(), 7, "seven distinct real TDX quotes");
    out
}

/// Offsets of a parsed quote's regions (relative to the quote's start).
struct Layout {
    signed_end: usize,
    /// End of the QE authentication data.
    auth_end: usize,
    declared_end: usize,
}

fn layout(q: &[u8]) -> Layout {
    let p = parse_quote(q).unwrap();
    let signed_end = p.signed_region().len();
    // length(4) sig(64) key(64) type(2) size(4) qe report(384) qe sig(64) auth size(2) auth
    let auth_end = signed_end + 4 + 128 + 6 + 384 + 64 + 2 + p.qe_auth_data.len();
    let declared_end = q.len() - p.trailing_len();
    assert_eq!(declared_end, auth_end + 6 + p.pck_chain_pem.len());
    Layout { signed_end, auth_end, declared_end }
}

/// A one-bit flip anywhere in the header, body, signature, attestation key,
/// certification data header, QE report, QE report signature and QE authentication
/// data (length fields included) is refused with a typed error.
#[test]
fn every_bit_flip_in_the_signed_structure_is_refused() {
    for (name, quote, t) in accepted_quotes() {
        let verifier = TdxVerifier::default();
        let opts = Options::at(t);
        let ev = TdxEvidence { quote: &quote, collateral: None, root: None };
        verifier.verify(&ev, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
        let l = layout(&quote);
        assert!(l.signed_end == 632 || l.signed_end == 702, "{name}: signed region {}", l.signed_end);
        let mut kinds = BTreeMap::<String, usize>::new();
        let mut m = quote.clone();
        for i in 0..l.auth_end {
            let bit = 1u8 << (i % 8);
            m[i] ^= bit;
            let ev = TdxEvidence { quote: &m, collateral: None, root: None };
            match verifier.verify(&ev, &opts) {
                Ok(_) => panic!("{name}: flipping bit {} of byte {i} was accepted", i % 8),
                Err(e) => *kinds.entry(kind_name(&e)).or_default() += 1,
            }
            m[i] ^= bit;
        }
        assert_eq!(m, quote);
        // The signed region fails the quote signature; the rest their own checks.
        assert!(kinds.get("signature").copied().unwrap_or(0) >= l.signed_end / 2, "{name}: {kinds:?}");
        assert!(kinds.contains_key("binding"), "{name}: {kinds:?}");
    }
}

/// Flips in the PCK chain PEM and in the trailing bytes never panic; flips in the
/// trailing bytes are ignored (they are outside the declared structure).
#[test]
fn flips_in_pem_and_trailing_bytes_never_panic() {
    for (name, quote, t) in accepted_quotes() {
        let verifier = TdxVerifier::default();
        let opts = Options::at(t);
        let l = layout(&quote);
        let mut m = quote.clone();
        for i in (l.auth_end..quote.len()).step_by(7) {
            m[i] ^= 0x20;
            let ev = TdxEvidence { quote: &m, collateral: None, root: None };
            let r = verifier.verify(&ev, &opts);
            if i >= l.declared_end {
                let v = r.unwrap_or_else(|e| panic!("{name}: trailing byte {i}: {e}"));
                assert_eq!(tdx_claims(&v).trailing_bytes, quote.len() - l.declared_end);
            }
            m[i] ^= 0x20;
        }
    }
}

/// Every truncation inside the declared structure is a parse error; truncating
/// only trailing bytes is accepted with fewer trailing bytes reported.
#[test]
fn every_truncation_is_refused() {
    for (name, quote, t) in accepted_quotes() {
        let verifier = TdxVerifier::default();
        let opts = Options::at(t);
        let l = layout(&quote);
        for len in 0..l.declared_end {
            let ev = TdxEvidence { quote: &quote[..len], collateral: None, root: None };
            match verifier.verify(&ev, &opts) {
                Err(Error::Parse(p)) => assert_eq!(p.structure, "TDX quote"),
                other => panic!("{name}: truncated to {len}: {other:?}"),
            }
        }
        for len in l.declared_end..=quote.len() {
            let ev = TdxEvidence { quote: &quote[..len], collateral: None, root: None };
            let v = verifier.verify(&ev, &opts).unwrap_or_else(|e| panic!("{name}: {len}: {e}"));
            assert_eq!(tdx_claims(&v).trailing_bytes, len - l.declared_end);
            assert_eq!(v.notes().is_empty(), len == l.declared_end);
        }
    }
}

#[test]
fn parse_errors_name_the_field() {
    let quote = read("tdx/dcapqvl-tdx_quote_outdated/quote.bin");
    let field = |mutate: &dyn Fn(&mut Vec<u8>)| {
        let mut q = quote.clone();
        mutate(&mut q);
        match parse_quote(&q) {
            Err(Error::Parse(p)) => p.field,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(field(&|q| q[0] = 3), "header.version");
    assert_eq!(field(&|q| q[2] = 3), "header.attestation_key_type");
    assert_eq!(field(&|q| q[4] = 0), "header.tee_type");
    assert_eq!(field(&|q| q[12] ^= 1), "header.qe_vendor_id");
    assert_eq!(field(&|q| q[48] = 4), "body.type");
    assert_eq!(field(&|q| q[50] ^= 1), "body.size");
    // Body type 2 with a TD 1.5 size.
    assert_eq!(field(&|q| q[48] = 2), "body.size");
    // Signature data one byte longer than what it holds (the quote has no
    // trailing bytes, so the sub-reader itself is short).
    assert_eq!(field(&|q| q[702] ^= 1), "signature_data");
    assert_eq!(field(&|q| q[702 + 4 + 128] = 5), "signature_data.certification_data.type");
    let p = parse_quote(&quote).unwrap();
    assert_eq!(p.header.version, 5);
    assert_eq!(p.body_type, BodyType::Td15);
    assert!(p.td_report.td15.is_some());
    assert_eq!(p.trailing_len(), 0);
    // A v4 quote with trailing bytes: a longer declared signature data now
    // swallows trailing bytes and no longer matches its contents.
    let q4 = read("tdx/dcapqvl-tdx_quote/quote.bin");
    let mut m = q4.clone();
    m[632] ^= 0x02;
    match parse_quote(&m) {
        Err(Error::Parse(p)) => assert_eq!(p.field, "signature_data"),
        other => panic!("{other:?}"),
    }
}

fn case(name: &str) -> Case {
    tdx_cases().into_iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no case {name}"))
}

/// Rebuild collateral JSON with one field changed.
fn collateral_with(json: &[u8], field: &str, f: &dyn Fn(&str) -> String) -> Vec<u8> {
    let mut v: serde_json::Value = serde_json::from_slice(json).unwrap();
    let old = v[field].as_str().unwrap().to_string();
    let new = f(&old);
    assert_ne!(old, new, "mutation of {field} changed nothing");
    v[field] = serde_json::Value::String(new);
    serde_json::to_vec(&v).unwrap()
}

fn flip_hex_byte(s: &str, index: usize) -> String {
    let mut b = hex::decode(s).unwrap();
    let i = index.min(b.len() - 1);
    b[i] ^= 0x01;
    hex::encode(b)
}

#[test]
fn tampered_collateral_is_refused() {
    let c = case("tdx/dcapqvl-tdx_quote");
    let loaded = Loaded::of(&c);
    let json = c.file("collateral").unwrap();
    let opts = c.options();
    let foreign_pem = pem_of(&read("tpm/gotpmtools-gce-cos85-no-nonce/tpm_ek_root_1.cer"));
    let mutations: Vec<(&str, Vec<u8>, &[&str])> = vec![
        (
            "a TCB level's status",
            collateral_with(&json, "tcb_info", &|s| s.replacen("\"OutOfDate\"", "\"UpToDate\"", 1)),
            &["signature"],
        ),
        (
            "a TCB level's SVN",
            collateral_with(&json, "tcb_info", &|s| s.replacen("\"pcesvn\":11", "\"pcesvn\":10", 1)),
            &["signature"],
        ),
        (
            "TCB info nextUpdate",
            collateral_with(&json, "tcb_info", &|s| s.replacen("2025-07-19", "2026-07-19", 1)),
            &["signature"],
        ),
        (
            "the TCB info signature",
            collateral_with(&json, "tcb_info_signature", &|s| flip_hex_byte(s, 5)),
            &["signature"],
        ),
        (
            "the TCB info signature (s)",
            collateral_with(&json, "tcb_info_signature", &|s| flip_hex_byte(s, 63)),
            &["signature"],
        ),
        (
            "the TCB info signature length",
            collateral_with(&json, "tcb_info_signature", &|s| format!("{s}00")),
            &["collateral"],
        ),
        (
            "the QE identity",
            collateral_with(&json, "qe_identity", &|s| s.replacen("\"isvsvn\":", "\"isvsvn\":1", 1)),
            &["signature"],
        ),
        (
            "the QE identity signature",
            collateral_with(&json, "qe_identity_signature", &|s| flip_hex_byte(s, 0)),
            &["signature"],
        ),
        (
            "the root CA CRL signature",
            collateral_with(&json, "root_ca_crl", &|s| flip_hex_byte(s, 1000)),
            &["signature"],
        ),
        (
            "the root CA CRL body",
            collateral_with(&json, "root_ca_crl", &|s| flip_hex_byte(s, 120)),
            &["signature", "collateral"],
        ),
        ("the PCK CRL signature", collateral_with(&json, "pck_crl", &|s| flip_hex_byte(s, 100_000)), &["signature"]),
        (
            "the PCK CRL body",
            collateral_with(&json, "pck_crl", &|s| flip_hex_byte(s, 400)),
            &["signature", "collateral"],
        ),
        (
            "the TCB signing chain",
            collateral_with(&json, "tcb_info_issuer_chain", &|_| foreign_pem.clone()),
            &["chain"],
        ),
        (
            "the PCK CRL issuer chain",
            collateral_with(&json, "pck_crl_issuer_chain", &|_| foreign_pem.clone()),
            &["chain"],
        ),
        (
            "swapped signatures",
            collateral_with(&json, "tcb_info_signature", &|_| {
                serde_json::from_slice::<serde_json::Value>(&json).unwrap()["qe_identity_signature"]
                    .as_str()
                    .unwrap()
                    .to_string()
            }),
            &["signature"],
        ),
    ];
    let verifier = TdxVerifier::default();
    // The genuine collateral verifies (and is cached: tampered copies must not hit).
    verifier.verify(&loaded.evidence(), &opts).unwrap();
    for (what, bytes, kinds) in &mutations {
        let col = match Collateral::from_json(bytes) {
            Ok(c) => c,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Collateral, "{what}: {e}");
                continue;
            }
        };
        assert_ne!(col.digest, loaded.collateral.as_ref().unwrap().digest);
        let ev = TdxEvidence { collateral: Some(&col), ..loaded.evidence() };
        match verifier.verify(&ev, &opts) {
            Ok(_) => panic!("tampered {what} accepted"),
            Err(e) => assert!(kinds.contains(&kind_name(&e).as_str()), "{what}: {e}"),
        }
    }
    assert_eq!(verifier.collateral.len(), 1, "only the genuine collateral is cached");
    // Malformed JSON is a typed error.
    for bad in [&b""[..], b"{}", b"[]", b"{\"tcb_info\": 5}", b"\xff\xfe", &json[..json.len() / 2]] {
        assert_eq!(Collateral::from_json(bad).unwrap_err().kind(), ErrorKind::Collateral);
    }
    let bad_hex = collateral_with(&json, "pck_crl", &|s| format!("{s}z"));
    assert_eq!(Collateral::from_json(&bad_hex).unwrap_err().kind(), ErrorKind::Collateral);
}

#[test]
fn cache_hits_give_the_same_result_and_recheck_time() {
    let c = case("tdx/dcapqvl-tdx_quote");
    let loaded = Loaded::of(&c);
    let verifier = TdxVerifier::default();
    let first = verifier.verify(&loaded.evidence(), &c.options()).unwrap();
    assert_eq!((verifier.pck.len(), verifier.collateral.len()), (1, 1));
    let second = verifier.verify(&loaded.evidence(), &c.options()).unwrap();
    assert_eq!((verifier.pck.len(), verifier.collateral.len()), (1, 1));
    assert_eq!(serde_json::to_value(&first).unwrap(), serde_json::to_value(&second).unwrap());
    // Same as an uncached verifier.
    let fresh = TdxVerifier::default().verify(&loaded.evidence(), &c.options()).unwrap();
    assert_eq!(serde_json::to_value(&first).unwrap(), serde_json::to_value(&fresh).unwrap());

    // A hit at a time after nextUpdate, or before issueDate, is refused.
    for t in ["2025-07-19T10:00:36Z", "2025-08-01T00:00:00Z", "2025-06-19T10:32:26Z", "2024-01-01T00:00:00Z"] {
        let e = verifier.verify(&loaded.evidence(), &Options::at(at(t))).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Expired, "{t}: {e}");
    }
    // Without collateral, the cached PCK chain's validity is rechecked: the PCK
    // certificate is not valid before 2025-02-06.
    let ev = TdxEvidence { collateral: None, ..loaded.evidence() };
    let e = verifier.verify(&ev, &Options::at(at("2025-02-01T00:00:00Z"))).unwrap_err();
    assert!(matches!(&e, Error::Expired { what, .. } if what == "PCK certificate"), "{e}");
    assert!(verifier.verify(&ev, &Options::at(at("2031-01-01T00:00:00Z"))).is_ok());
    assert_eq!((verifier.pck.len(), verifier.collateral.len()), (1, 1));
    // The window still holds at its last second.
    verifier.verify(&loaded.evidence(), &c.options()).unwrap();
}

#[test]
fn a_poisoned_cache_is_a_miss() {
    let c = case("tdx/dcapqvl-tdx_quote");
    let loaded = Loaded::of(&c);
    let verifier = TdxVerifier::default();
    verifier.verify(&loaded.evidence(), &c.options()).unwrap();
    std::thread::scope(|s| {
        let _ = s
            .spawn(|| {
                let _g1 = verifier.pck.map.lock().unwrap();
                let _g2 = verifier.collateral.map.lock().unwrap();
                panic!("poison the caches");
            })
            .join();
    });
    assert!(verifier.pck.map.is_poisoned() && verifier.collateral.map.is_poisoned());
    let v = verifier.verify(&loaded.evidence(), &c.options()).unwrap();
    assert_eq!(tdx_claims(&v).tcb_status, Some(TcbStatus::UpToDate));
    assert_eq!(format!("{verifier:?}").matches("None").count(), 2);
}

#[test]
fn cache_is_bounded() {
    let cache: Cache<u32> = Cache::default();
    for i in 0..(CACHE_CAPACITY as u32 + 50) {
        let mut k = [0u8; 32];
        k[..4].copy_from_slice(&i.to_le_bytes());
        cache.insert(k, Arc::new(i));
    }
    assert_eq!(cache.len(), CACHE_CAPACITY);
}

fn pem_of(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).unwrap());
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

/// The quote with its PCK chain PEM replaced (all lengths rewritten).
fn with_chain(quote: &[u8], pem: &[u8]) -> Vec<u8> {
    let p = parse_quote(quote).unwrap();
    let mut cert = Vec::new();
    cert.extend_from_slice(p.qe_report_bytes());
    cert.extend_from_slice(&p.qe_report_signature);
    cert.extend_from_slice(&(p.qe_auth_data.len() as u16).to_le_bytes());
    cert.extend_from_slice(p.qe_auth_data);
    cert.extend_from_slice(&5u16.to_le_bytes());
    cert.extend_from_slice(&(pem.len() as u32).to_le_bytes());
    cert.extend_from_slice(pem);
    let mut sig = Vec::new();
    sig.extend_from_slice(&p.signature);
    sig.extend_from_slice(&p.attestation_key);
    sig.extend_from_slice(&6u16.to_le_bytes());
    sig.extend_from_slice(&(cert.len() as u32).to_le_bytes());
    sig.extend_from_slice(&cert);
    let mut out = p.signed_region().to_vec();
    out.extend_from_slice(&(sig.len() as u32).to_le_bytes());
    out.extend_from_slice(&sig);
    out
}

fn chain_pems(quote: &[u8]) -> Vec<String> {
    let p = parse_quote(quote).unwrap();
    pck::chain_ders(p.pck_chain_pem, "t").unwrap().iter().map(|d| pem_of(d)).collect()
}

#[test]
fn rebuilt_quote_round_trips() {
    let quote = read("tdx/trustee-tdx_quote_4/quote.bin");
    let p = parse_quote(&quote).unwrap();
    assert_eq!(with_chain(&quote, p.pck_chain_pem), quote);
}

/// Root selection: the embedded root, a supplied copy of it, a foreign root, and a
/// simulated root with and without the opt-in (the simulated list is injected,
/// since `danger::intel_roots()` is filled by the simulator's fixtures).
#[test]
fn roots_and_simulated_roots() {
    let c = case("tdx/dcapqvl-tdx_quote");
    let loaded = Loaded::of(&c);
    let foreign = read("tpm/gotpmtools-gce-cos85-no-nonce/tpm_ek_root_1.cer");
    let sims: &'static [SimulatedCert] = Box::leak(Box::new([SimulatedCert {
        name: "Veil simulated Intel SGX Root CA (test)",
        der: Box::leak(foreign.clone().into_boxed_slice()),
    }]));
    let opts = c.options();
    let trusting = c.options().danger_trust_simulator(true);
    let v = TdxVerifier::default();

    // None and the embedded root are the same.
    let none = TdxEvidence { root: None, ..loaded.evidence() };
    assert!(v.verify_with(&none, &opts, sims).is_ok());
    assert!(v.verify_with(&loaded.evidence(), &opts, sims).is_ok());
    // A foreign root is refused even when the chain verifies to Intel's.
    let ev = TdxEvidence { root: Some(&foreign), ..loaded.evidence() };
    assert_eq!(v.verify_with(&ev, &opts, &[]).unwrap_err().kind(), ErrorKind::Chain);
    // The same bytes, known as a simulated root: refused by name without opt-in…
    match v.verify_with(&ev, &opts, sims).unwrap_err() {
        Error::SimulatedRoot { root } => assert_eq!(root, "Veil simulated Intel SGX Root CA (test)"),
        e => panic!("{e}"),
    }
    // …and with opt-in, the real quote does not chain to it.
    assert_eq!(v.verify_with(&ev, &trusting, sims).unwrap_err().kind(), ErrorKind::Chain);

    // A quote whose chain ends in the simulated root, with no root supplied.
    let pems = chain_pems(&loaded.quote);
    let sim_chain = format!("{}{}{}\0", pems[0], pems[1], pem_of(&foreign));
    let sim_quote = with_chain(&loaded.quote, sim_chain.as_bytes());
    let ev = TdxEvidence { quote: &sim_quote, collateral: None, root: None };
    match v.verify_with(&ev, &opts, sims).unwrap_err() {
        Error::SimulatedRoot { root } => assert_eq!(root, "Veil simulated Intel SGX Root CA (test)"),
        e => panic!("{e}"),
    }
    // Opted in: the Intel PCK CA is not signed by the simulated root.
    assert_eq!(v.verify_with(&ev, &trusting, sims).unwrap_err().kind(), ErrorKind::Chain);
    // Not known as simulated: the chain's root is not the trusted root.
    assert_eq!(v.verify_with(&ev, &trusting, &[]).unwrap_err().kind(), ErrorKind::Chain);

    // Chain shapes: without the root copy it verifies; with an extra cert or only
    // the leaf it does not.
    let two = with_chain(&loaded.quote, format!("{}{}", pems[0], pems[1]).as_bytes());
    let ev = TdxEvidence { quote: &two, collateral: loaded.collateral.as_ref(), root: None };
    let ok = v.verify(&ev, &opts).unwrap();
    assert_eq!(tdx_claims(&ok).tcb_status, Some(TcbStatus::UpToDate));
    for bad in [
        format!("{}{}{}{}", pems[0], pems[1], pems[2], pems[2]),
        pems[0].clone(),
        format!("{}{}", pems[1], pems[2]),
        format!("{}{}{}", pems[1], pems[0], pems[2]),
        String::new(),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_string(),
    ] {
        let q = with_chain(&loaded.quote, bad.as_bytes());
        let ev = TdxEvidence { quote: &q, collateral: None, root: None };
        assert_eq!(v.verify(&ev, &opts).unwrap_err().kind(), ErrorKind::Chain, "{bad:.80}");
    }
}

/// The PCK CRL must be issued by the quote's PCK CA; FMSPC must match.
#[test]
fn collateral_must_fit_the_platform() {
    let c = case("tdx/neg-fmspc-mismatch");
    let loaded = Loaded::of(&c);
    match TdxVerifier::default().verify(&loaded.evidence(), &c.options()).unwrap_err() {
        Error::Tcb(m) => assert!(m.contains("FMSPC mismatch") && m.contains("b0c06f000000"), "{m}"),
        e => panic!("{e}"),
    }
}

fn platform_of<'a>(q: &'a Quote<'_>, ext: &'a pck::SgxExtension) -> tcb::Platform<'a> {
    tcb::Platform {
        cpu_svn: &ext.cpu_svn,
        pce_svn: ext.pce_svn,
        tee_tcb_svn: &q.td_report.tee_tcb_svn,
        tee_tcb_svn2: q.td_report.td15.as_ref().map(|t| &t.tee_tcb_svn2),
        mr_signer_seam: &q.td_report.mr_signer_seam,
        seam_attributes: &q.td_report.seam_attributes,
    }
}

/// TCB matching rules on verified collateral with modified levels (as after
/// signature verification): statuses, Revoked, module identity, QE identity.
#[test]
fn tcb_matching_rules() {
    let c = case("tdx/gotdxguest-v5-sample-dcapqvl-collateral");
    let loaded = Loaded::of(&c);
    let q = parse_quote(&loaded.quote).unwrap();
    let pck = pck::verify_chain(q.pck_chain_pem, EMBEDDED, &[], false).unwrap();
    let col = loaded.collateral.as_ref().unwrap();
    let info = tcb::parse_tcb_info(&col.tcb_info).unwrap();
    let qe_id = tcb::parse_qe_identity(&col.qe_identity).unwrap();
    let p = platform_of(&q, &pck.ext);
    let qe = tcb::match_qe(&qe_id, &q.qe_report).unwrap();
    assert_eq!(qe.status, TcbStatus::UpToDate);
    let v = tcb::evaluate_tdx(&info, &qe_id, &p, &qe).unwrap();
    assert_eq!((v.status, v.tcb_date.as_str()), (TcbStatus::UpToDate, "2024-11-13T00:00:00Z"));

    // Statuses of the matched level flow into the verdict; Revoked refuses.
    // (Launch and current TCB match the same platform level here.)
    for (st, want) in [
        (TcbStatus::SWHardeningNeeded, Some(TcbStatus::SWHardeningNeeded)),
        (TcbStatus::ConfigurationNeeded, Some(TcbStatus::ConfigurationNeeded)),
        (TcbStatus::OutOfDate, Some(TcbStatus::OutOfDate)),
        (TcbStatus::OutOfDateConfigurationNeeded, Some(TcbStatus::OutOfDateConfigurationNeeded)),
        (TcbStatus::Revoked, None),
    ] {
        let mut i = info.clone();
        let idx = i.levels.iter().position(|l| l.date.text == "2024-11-13T00:00:00Z").unwrap();
        i.levels[idx].status = st;
        i.levels[idx].advisory_ids = vec!["INTEL-SA-99999".into()];
        match (tcb::evaluate_tdx(&i, &qe_id, &p, &qe), want) {
            (Ok(v), Some(w)) => {
                assert_eq!(v.status, w, "{st}");
                assert_eq!(v.advisory_ids, ["INTEL-SA-99999"]);
            }
            (Err(Error::Tcb(m)), None) => assert!(m.contains("Revoked"), "{m}"),
            (got, _) => panic!("{st}: {got:?}"),
        }
    }

    // TD 1.5 relaunch: the launch module ISVSVN (0x0b) is out of date, the current
    // one (TEE_TCB_SVN2[0] = 0x0d) is up to date.
    assert_eq!((p.tee_tcb_svn[0], p.tee_tcb_svn2.unwrap()[0]), (0x0b, 0x0d));
    let mut i = info.clone();
    for (id, m) in &mut i.module_identities {
        if id == "TDX_01" {
            m.levels[0].isvsvn = 0x0c;
        }
    }
    let v = tcb::evaluate_tdx(&i, &qe_id, &p, &qe).unwrap();
    assert_eq!(v.status, TcbStatus::TDRelaunchAdvised);
    assert_eq!(v.tcb_date, "2024-03-13T00:00:00Z", "the older module date");

    // No level at all → NoMatchingTcbLevel.
    let mut i = info.clone();
    for l in &mut i.levels {
        l.sgx = [0xff; 16];
    }
    let e = tcb::evaluate_tdx(&i, &qe_id, &p, &qe).unwrap_err();
    assert!(e.to_string().contains("NoMatchingTcbLevel"), "{e}");

    // The module identity named by TEE_TCB_SVN[1] must exist and match.
    let mut i = info.clone();
    i.module_identities.retain(|(id, _)| id != "TDX_01");
    assert!(tcb::evaluate_tdx(&i, &qe_id, &p, &qe).unwrap_err().to_string().contains("TDX_01"));
    let mut i = info.clone();
    for (_, m) in &mut i.module_identities {
        m.mrsigner[0] ^= 1;
    }
    assert!(tcb::evaluate_tdx(&i, &qe_id, &p, &qe).unwrap_err().to_string().contains("MRSIGNER_SEAM"));
    // An out-of-date module converges the platform status.
    let mut i = info.clone();
    for (id, m) in &mut i.module_identities {
        if id == "TDX_01" {
            for l in &mut m.levels {
                l.status = TcbStatus::OutOfDate;
                l.advisory_ids = vec!["INTEL-SA-MODULE".into()];
            }
        }
    }
    let v = tcb::evaluate_tdx(&i, &qe_id, &p, &qe).unwrap();
    assert_eq!(v.status, TcbStatus::OutOfDate);
    assert_eq!(v.advisory_ids, ["INTEL-SA-MODULE"]);

    // QE identity: each field mismatch is a TCB error naming it.
    let mut bad = qe_id.clone();
    bad.mrsigner[3] ^= 1;
    assert!(tcb::match_qe(&bad, &q.qe_report).unwrap_err().to_string().contains("MRSIGNER"));
    let mut bad = qe_id.clone();
    bad.isvprodid ^= 1;
    assert!(tcb::match_qe(&bad, &q.qe_report).unwrap_err().to_string().contains("ISVPRODID"));
    let mut bad = qe_id.clone();
    bad.miscselect ^= 1;
    assert!(tcb::match_qe(&bad, &q.qe_report).unwrap_err().to_string().contains("MISCSELECT"));
    let mut bad = qe_id.clone();
    bad.attributes[0] ^= 1;
    assert!(tcb::match_qe(&bad, &q.qe_report).unwrap_err().to_string().contains("ATTRIBUTES"));
    let mut bad = qe_id.clone();
    for l in &mut bad.levels {
        l.isvsvn = 1000;
    }
    assert!(tcb::match_qe(&bad, &q.qe_report).unwrap_err().to_string().contains("ISVSVN"));
    // An out-of-date QE converges the platform status.
    let mut old = qe.clone();
    old.status = TcbStatus::OutOfDate;
    old.advisory_ids = vec!["INTEL-SA-QE".into()];
    let v = tcb::evaluate_tdx(&info, &qe_id, &p, &old).unwrap();
    assert_eq!((v.status, v.qe_status), (TcbStatus::OutOfDate, TcbStatus::OutOfDate));
    assert_eq!(v.advisory_ids, ["INTEL-SA-QE"]);
}

#[test]
fn status_convergence_matches_qvl() {
    use TcbStatus::*;
    for (platform, component, want) in [
        (UpToDate, OutOfDate, OutOfDate),
        (SWHardeningNeeded, OutOfDate, OutOfDate),
        (ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded),
        (ConfigurationNeeded, Revoked, Revoked),
        (UpToDate, ConfigurationNeeded, UpToDate),
        (SWHardeningNeeded, UpToDate, SWHardeningNeeded),
    ] {
        assert_eq!(platform.converge(component), want);
    }
    for (launch, current, want) in [
        (OutOfDate, UpToDate, TDRelaunchAdvised),
        (OutOfDate, ConfigurationNeeded, TDRelaunchAdvisedConfigurationNeeded),
        (OutOfDateConfigurationNeeded, UpToDate, TDRelaunchAdvisedConfigurationNeeded),
        (OutOfDate, OutOfDate, OutOfDate),
        (UpToDate, UpToDate, UpToDate),
    ] {
        assert_eq!(launch.check_for_relaunch(current), want);
    }
    assert_eq!(serde_json::to_value(ConfigurationAndSWHardeningNeeded).unwrap(), "ConfigurationAndSWHardeningNeeded");
}

#[test]
fn td_attributes_decode() {
    let a = TdAttributes::decode(hex::decode("0000001000000000").unwrap().try_into().unwrap());
    assert!(a.sept_ve_disable && !a.debug && !a.migratable);
    assert_eq!(a.reserved_bits, "0000000000000000");
    let a = TdAttributes::decode(hex::decode("0100001000000000").unwrap().try_into().unwrap());
    assert!(a.debug && a.sept_ve_disable);
    let a = TdAttributes::decode(hex::decode("0200000000000080").unwrap().try_into().unwrap());
    assert!(a.perfmon && !a.debug);
    assert_eq!(a.reserved_bits, "0200000000000000");
}

#[test]
fn fuzz_entries_never_panic() {
    let mut seeds: Vec<Vec<u8>> = accepted_quotes().into_iter().map(|(_, q, _)| q).collect();
    seeds.push(Vec::new());
    seeds.push(vec![4, 0, 2, 0, 0x81, 0, 0, 0]);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for seed in &seeds {
        fuzz_quote(seed);
        for _ in 0..40 {
            let mut m = seed.clone();
            if m.is_empty() {
                m = (0..(next() % 700)).map(|_| next() as u8).collect();
            }
            for _ in 0..(1 + next() % 4) {
                let i = (next() as usize) % m.len();
                m[i] = next() as u8;
            }
            if next() % 3 == 0 {
                m.truncate((next() as usize) % (m.len() + 1));
            }
            fuzz_quote(&m);
        }
    }
    let json = read("tdx/dcapqvl-tdx_quote/collateral.json");
    fuzz_collateral(&json);
    for _ in 0..60 {
        let mut m = json.clone();
        let i = (next() as usize) % m.len();
        m[i] = next() as u8;
        fuzz_collateral(&m);
    }
    for field in ["tcb_info", "qe_identity"] {
        for s in ["", "{}", "[]", "{\"id\":\"TDX\"}", "null", "{\"tcbLevels\":[{}]}"] {
            fuzz_collateral(&collateral_with(&json, field, &|_| s.to_string()));
        }
    }
}

/// Revocation and CRL-issuer checks against the (verified, cached) collateral: the
/// real CRLs revoke none of these certificates, so the cached entry is doctored.
#[test]
fn revoked_certificates_are_refused() {
    let c = case("tdx/dcapqvl-tdx_quote");
    let loaded = Loaded::of(&c);
    let col = loaded.collateral.as_ref().unwrap();
    let q = parse_quote(&loaded.quote).unwrap();
    let pck = pck::verify_chain(q.pck_chain_pem, EMBEDDED, &[], false).unwrap();
    let doctored = |f: &dyn Fn(&mut VerifiedCollateral)| {
        let v = TdxVerifier::default();
        let mut vc = collateral::verify(col, &EMBEDDED).unwrap();
        f(&mut vc);
        v.collateral.insert(col.digest, Arc::new((EMBEDDED.der, vc)));
        v.verify(&loaded.evidence(), &c.options())
    };
    assert!(doctored(&|_| {}).is_ok());
    let e = doctored(&|vc| {
        vc.pck_crl_revoked.insert(pck.leaf_serial.clone());
    })
    .unwrap_err();
    assert!(matches!(&e, Error::Chain(m) if m.contains("PCK certificate") && m.contains("revoked")), "{e}");
    let e = doctored(&|vc| {
        vc.root_crl_revoked.insert(pck.ca_serial.clone());
    })
    .unwrap_err();
    assert!(matches!(&e, Error::Chain(m) if m.contains("PCK CA") && m.contains("revoked")), "{e}");
    let e = doctored(&|vc| vc.pck_crl_issuer_spki[40] ^= 1).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Collateral, "{e}");
    // A window of the cached collateral is judged at every call.
    let e = doctored(&|vc| vc.windows[3].not_after = 0).unwrap_err();
    assert!(matches!(&e, Error::Expired { what, .. } if what == "PCK CRL"), "{e}");
}

/// The TD quotes inside the Azure TDX vTPM vectors (verified by the Azure verifier
/// through this one) verify signature-only and report their trailing bytes.
#[test]
fn azure_td_quotes_verify_without_collateral() {
    let v = TdxVerifier::default();
    for dir in ["trustee-hcl-tdx", "trustee-evidence-v0", "trustee-evidence-v1"] {
        let quote = read(&format!("azure-tdx-vtpm/{dir}/td_quote.bin"));
        let root = read("tdx/Intel_SGX_RootCA.der");
        let ev = TdxEvidence { quote: &quote, collateral: None, root: Some(&root) };
        let r = v.verify(&ev, &Options::at(at("2025-06-01T00:00:00Z"))).unwrap_or_else(|e| panic!("{dir}: {e}"));
        let c = tdx_claims(&r);
        assert_eq!((c.version, c.fmspc.as_str(), c.trailing_bytes), (4, "00806f050000", 70), "{dir}");
    }
}
