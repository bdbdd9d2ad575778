//! Tests against the real vectors in `shared/vectors` (GCE vTPM quotes, Azure vTPM
//! quotes) and synthetic ECDSA quotes signed here.

use std::path::{Path, PathBuf};

use base64::Engine;
use time::OffsetDateTime;

use super::*;
use crate::ErrorKind;

fn vectors() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/vectors")).to_path_buf()
}

fn read(p: impl AsRef<Path>) -> Vec<u8> {
    let p = p.as_ref();
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn at(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
}

/// One `kind = "tpm"` case of cases.toml with its files loaded.
struct Case {
    name: String,
    dir: PathBuf,
    expect_accept: bool,
    reason: Option<String>,
    nonce: Option<Vec<u8>>,
    at: OffsetDateTime,
    bank: HashAlg,
    files: std::collections::BTreeMap<String, Vec<u8>>,
    claims: Option<toml::Table>,
}

fn tpm_cases() -> Vec<Case> {
    let text = String::from_utf8(read(vectors().join("cases.toml"))).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let mut out = Vec::new();
    for c in doc["case"].as_array().unwrap() {
        let c = c.as_table().unwrap();
        if c["kind"].as_str() != Some("tpm") {
            continue;
        }
        let dir = vectors().join(c["dir"].as_str().unwrap());
        let files = c["files"]
            .as_table()
            .unwrap()
            .iter()
            .map(|(role, f)| {
                let f = f.as_str().unwrap();
                let path = if f.contains('/') { vectors().join(f) } else { dir.join(f) };
                (role.clone(), read(path))
            })
            .collect();
        out.push(Case {
            name: c["name"].as_str().unwrap().to_string(),
            dir,
            expect_accept: c["expect"].as_str() == Some("accept"),
            reason: c.get("reason").and_then(|r| r.as_str()).map(String::from),
            nonce: c.get("nonce").and_then(|n| n.as_str()).map(|n| hex::decode(n).unwrap()),
            at: at(c["verify_at"].as_str().unwrap()),
            bank: HashAlg::from_name(c["pcr_bank"].as_str().unwrap()).unwrap(),
            files,
            claims: c.get("claims").and_then(|t| t.as_table()).cloned(),
        });
    }
    out
}

impl Case {
    fn opts(&self) -> Options {
        let o = Options::at(self.at);
        match &self.nonce {
            Some(n) => o.with_nonce(n.clone()),
            None => o,
        }
    }

    fn evidence(&self) -> TpmEvidence<'_> {
        let f = |r: &str| self.files.get(r).map(Vec::as_slice);
        let ak_chain = f("ak_cert").map(|ak_cert| AkCertChain {
            ak_cert,
            intermediates: f("intermediate").into_iter().collect(),
            root: f("root").unwrap(),
        });
        TpmEvidence {
            attest: f("attest").unwrap(),
            signature: f("signature").unwrap(),
            ak: f("ak").unwrap(),
            ak_chain,
            pcrs: f("pcrs").map(|j| PcrValues::from_quotes_json(j, self.bank).unwrap()),
            event_log: f("event_log"),
        }
    }
}

fn claim<'a>(t: &'a toml::Table, k: &str) -> &'a str {
    t[k].as_str().unwrap()
}

#[test]
fn every_tpm_case_gives_its_expected_result() {
    let cases = tpm_cases();
    assert_eq!(cases.len(), 12, "tpm cases in cases.toml");
    for case in &cases {
        let result = TpmVerifier.verify(&case.evidence(), &case.opts());
        if !case.expect_accept {
            let e = result.err().unwrap_or_else(|| panic!("{}: accepted", case.name));
            let want = match case.reason.as_deref() {
                Some("signature") => ErrorKind::Signature,
                Some("chain") => ErrorKind::Chain,
                Some("nonce") => ErrorKind::Nonce,
                r => panic!("{}: unexpected reason {r:?}", case.name),
            };
            assert_eq!(e.kind(), want, "{}: {e}", case.name);
            continue;
        }
        let v = result.unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(v.tee(), Tee::Tpm);
        assert!(!v.simulated());
        let Claims::Tpm(c) = v.claims() else { panic!("{}: not TPM claims", case.name) };
        let want = case.claims.as_ref().unwrap();
        assert_eq!(c.pcr_bank.map(HashAlg::name), Some(claim(want, "pcr_bank")), "{}", case.name);
        let sel: Vec<u32> =
            want["pcr_select"].as_array().unwrap().iter().map(|v| v.as_integer().unwrap() as u32).collect();
        assert_eq!(c.pcr_select, sel);
        assert_eq!(c.pcr_digest, claim(want, "pcr_digest"));
        assert_eq!(c.pcrs.as_ref().unwrap().get(&0).map(String::as_str), Some(claim(want, "pcr0")));
        assert_eq!(c.pcrs.as_ref().unwrap().len(), 24);
        assert_eq!(c.qualified_signer, claim(want, "qualified_signer"));
        assert_eq!(c.signature_scheme, claim(want, "sig_scheme"));
        assert_eq!(c.firmware_version, claim(want, "firmware_version"));
        assert_eq!(c.qualifying_data, hex::encode(case.nonce.as_ref().unwrap()));
        assert!(c.nonce_checked);
        assert!(c.ak_cert_sha256.is_some());
        // The event log replays to PCRs 0-9; PCR 10 (IMA) is not in it.
        let log = c.event_log.as_ref().unwrap();
        assert_eq!(log.bank, case.bank);
        assert_eq!(log.matched_pcrs, (0..10).collect::<Vec<_>>());
        assert!(log.pcrs_without_events.contains(&10));
        assert!(v.not_evaluated_items().is_empty(), "{}: {:?}", case.name, v.not_evaluated_items());
        assert!(v.notes().iter().any(|n| n.contains("10")), "{:?}", v.notes());
        // The AK as a TPMT_PUBLIC is the same key, and its name is the case's ak_name.
        let tpmt = AkPublic::from_tpmt_public(&read(case.dir.join("ak_pub.tpmt_public.bin"))).unwrap();
        let pem = AkPublic::from_pem_or_der(&case.files["ak"]).unwrap();
        assert_eq!(tpmt.spki_der(), pem.spki_der());
        assert_eq!(hex::encode(tpmt.name().unwrap()), claim(want, "ak_name"));
        // The canonical SPKI is the PEM's DER itself.
        let der = x509_parser::pem::parse_x509_pem(&case.files["ak"]).unwrap().1.contents;
        assert_eq!(pem.spki_der(), der.as_slice());
        assert_eq!(c.ak_spki_sha256, hex::encode(pem.spki_sha256()));
        let _ = serde_json::to_string(v.claims()).unwrap();
    }
}

fn gce(nonce: bool, bank: HashAlg) -> Case {
    let name = format!("tpm/gce-cos85-{}-{}", if nonce { "nonce9009" } else { "no-nonce" }, bank.name());
    tpm_cases().into_iter().find(|c| c.name == name).unwrap()
}

#[test]
fn not_evaluated_items_say_what_was_skipped() {
    let case = gce(true, HashAlg::Sha256);
    let mut ev = case.evidence();
    ev.ak_chain = None;
    ev.pcrs = None;
    ev.event_log = None;
    let v = TpmVerifier.verify(&ev, &Options::at(case.at)).unwrap();
    let items = v.not_evaluated_items();
    for want in [
        "nonce: not checked",
        "PCR values: not supplied, only pcrDigest is bound",
        "AK: not bound to a certificate",
        "event log: not supplied",
    ] {
        assert!(items.iter().any(|i| i == want), "{want} missing from {items:?}");
    }
    let Claims::Tpm(c) = v.claims() else { panic!() };
    assert!(c.pcrs.is_none() && !c.nonce_checked && c.event_log.is_none());
    assert_eq!(c.qualifying_data, "9009");

    // An event log without PCR values cannot be checked.
    let mut ev = case.evidence();
    ev.pcrs = None;
    assert_eq!(TpmVerifier.verify(&ev, &case.opts()).unwrap_err().kind(), ErrorKind::EventLog);

    // A TPMT_PUBLIC AK gives the AK name claim.
    let tpmt = read(case.dir.join("ak_pub.tpmt_public.bin"));
    let mut ev = case.evidence();
    ev.ak = &tpmt;
    let v = TpmVerifier.verify(&ev, &case.opts()).unwrap();
    let Claims::Tpm(c) = v.claims() else { panic!() };
    assert_eq!(c.ak_name.as_deref(), Some("000bf175bdb57297b2b289973f819863d6c9d09c236725676914f4248c9a2404c2a4"));
}

#[test]
fn chain_errors_are_typed() {
    let case = gce(true, HashAlg::Sha256);
    // Before the AK certificate's notBefore.
    let e = TpmVerifier.verify(&case.evidence(), &case.opts().clone_at(at("2021-01-01T00:00:00Z"))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Expired, "{e}");
    // Missing intermediate.
    let mut ev = case.evidence();
    ev.ak_chain.as_mut().unwrap().intermediates.clear();
    assert_eq!(TpmVerifier.verify(&ev, &case.opts()).unwrap_err().kind(), ErrorKind::Chain);
    // Intermediate as root (not the configured anchor) does not help: its issuer is the real root.
    let inter = case.files["intermediate"].clone();
    let mut ev = case.evidence();
    let chain = ev.ak_chain.as_mut().unwrap();
    chain.root = &inter;
    chain.intermediates.clear();
    assert!(TpmVerifier.verify(&ev, &case.opts()).is_ok(), "an intermediate configured as the anchor is an anchor");
    // A root that is not the issuer.
    let other_root = read(case.dir.join("gcp_ek_ak_ca_root.crt"));
    let mut ev = case.evidence();
    ev.ak_chain.as_mut().unwrap().root = &other_root;
    assert_eq!(TpmVerifier.verify(&ev, &case.opts()).unwrap_err().kind(), ErrorKind::Chain);
    // The AK certificate certifies another key than the AK.
    let azure_ak =
        AkPublic::from_pem_or_der(&read(vectors().join("azure-snp-vtpm/trustee-hcl-milan-v2/ak_pub.pem"))).unwrap();
    let ev = case.evidence();
    let e = chain::verify_ak_chain(ev.ak_chain.as_ref().unwrap(), &azure_ak, &case.opts()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Binding, "{e}");
    // Garbage certificates.
    let mut ev = case.evidence();
    ev.ak_chain.as_mut().unwrap().ak_cert = b"not a certificate";
    assert_eq!(TpmVerifier.verify(&ev, &case.opts()).unwrap_err().kind(), ErrorKind::Chain);
}

trait CloneAt {
    fn clone_at(&self, t: OffsetDateTime) -> Options;
}
impl CloneAt for Options {
    fn clone_at(&self, t: OffsetDateTime) -> Options {
        let mut o = self.clone();
        o.at = t;
        o
    }
}

#[test]
fn pcr_value_errors_are_typed() {
    let case = gce(false, HashAlg::Sha256);
    let ak = AkPublic::from_bytes(&case.files["ak"]).unwrap();
    let (a, s) = (&case.files["attest"], &case.files["signature"]);
    let good = PcrValues::from_quotes_json(&case.files["pcrs"], HashAlg::Sha256).unwrap();
    assert!(verify_quote(a, s, &ak, Some(&good), &case.opts()).is_ok());
    // A missing PCR.
    let mut p = good.clone();
    p.values.remove(&23);
    assert_eq!(verify_quote(a, s, &ak, Some(&p), &case.opts()).unwrap_err().kind(), ErrorKind::Binding);
    // A changed PCR.
    let mut p = good.clone();
    p.values.get_mut(&10).unwrap()[31] ^= 0x80;
    let e = verify_quote(a, s, &ak, Some(&p), &case.opts()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Binding);
    assert!(e.to_string().contains("pcrDigest"), "{e}");
    // Another bank's values.
    let sha1 = PcrValues::from_quotes_json(&case.files["pcrs"], HashAlg::Sha1).unwrap();
    assert_eq!(verify_quote(a, s, &ak, Some(&sha1), &case.opts()).unwrap_err().kind(), ErrorKind::Binding);
    // Wrong-length values built by hand.
    let mut p = good.clone();
    p.values.insert(3, vec![0; 20]);
    assert_eq!(verify_quote(a, s, &ak, Some(&p), &case.opts()).unwrap_err().kind(), ErrorKind::Parse);
    // Extra values outside the selection are ignored, not reported as quoted.
    let mut p = good.clone();
    p.values.insert(30, vec![0; 32]);
    let c = verify_quote(a, s, &ak, Some(&p), &case.opts()).unwrap();
    assert!(!c.pcrs.unwrap().contains_key(&30));
    // quotes.json errors.
    assert!(PcrValues::from_quotes_json(b"{}", HashAlg::Sha256).is_err());
    assert!(PcrValues::from_quotes_json(&case.files["pcrs"], HashAlg::Sha512).is_err());
}

/// Flip bits in every byte of `attest` and of `signature` (all 8 bits, or with
/// `!all_bits` one bit per byte, rotating), and cut both at every length: each is a
/// typed error, never a panic or an acceptance.
fn assert_mutations_refused(
    attest: &[u8],
    sig: &Signature,
    sig_bytes: Option<&[u8]>,
    ak: &AkPublic,
    pcrs: &PcrValues,
    opts: &Options,
    all_bits: bool,
) {
    let bits = |i: usize| if all_bits { 0..8 } else { i % 8..i % 8 + 1 };
    let check = |a: &[u8], s: Option<&[u8]>, what: &str| {
        let r = match s {
            Some(s) => verify_quote(a, s, ak, Some(pcrs), opts),
            None => verify_quote_with(a, sig, ak, Some(pcrs), opts),
        };
        assert!(r.is_err(), "{what} accepted");
    };
    for i in 0..attest.len() {
        for bit in bits(i) {
            let mut m = attest.to_vec();
            m[i] ^= 1 << bit;
            check(&m, sig_bytes, &format!("attest byte {i} bit {bit}"));
        }
    }
    for n in 0..attest.len() {
        check(&attest[..n], sig_bytes, &format!("attest cut at {n}"));
    }
    let mut longer = attest.to_vec();
    longer.push(0);
    check(&longer, sig_bytes, "attest with a trailing byte");
    if let Some(s) = sig_bytes {
        for i in 0..s.len() {
            for bit in bits(i) {
                let mut m = s.to_vec();
                m[i] ^= 1 << bit;
                fuzz_signature(&m);
                check(attest, Some(&m), &format!("signature byte {i} bit {bit}"));
            }
        }
        for n in 0..s.len() {
            check(attest, Some(&s[..n]), &format!("signature cut at {n}"));
        }
    }
}

#[test]
fn gce_bit_flips_and_truncations_are_refused() {
    for case in tpm_cases().iter().filter(|c| c.expect_accept) {
        let ak = AkPublic::from_bytes(&case.files["ak"]).unwrap();
        let pcrs = PcrValues::from_quotes_json(&case.files["pcrs"], case.bank).unwrap();
        let a = &case.files["attest"];
        let s = &case.files["signature"];
        fuzz_attest(a);
        assert!(verify_quote(a, s, &ak, Some(&pcrs), &case.opts()).is_ok());
        let sig = parse_signature(s).unwrap();
        assert_mutations_refused(a, &sig, Some(s), &ak, &pcrs, &case.opts(), true);
    }
}

/// The Azure vTPM quote and its AK from the HCL report's var-data (HCLAkPub JWK).
struct AzureQuote {
    dir: PathBuf,
    message: Vec<u8>,
    signature: Vec<u8>,
    pcrs: Vec<Vec<u8>>,
    ak: AkPublic,
    nonce: Vec<u8>,
}

fn azure_quotes() -> Vec<AzureQuote> {
    let text = String::from_utf8(read(vectors().join("cases.toml"))).unwrap();
    let doc: toml::Table = toml::from_str(&text).unwrap();
    let mut out = Vec::new();
    for c in doc["case"].as_array().unwrap() {
        if c["kind"].as_str() != Some("az-snp-vtpm") || c["expect"].as_str() != Some("accept") {
            continue;
        }
        let dir = vectors().join(c["dir"].as_str().unwrap());
        let q: serde_json::Value = serde_json::from_slice(&read(dir.join("tpm_quote.json"))).unwrap();
        let bytes = |v: &serde_json::Value| -> Vec<u8> {
            match v {
                serde_json::Value::String(s) => hex::decode(s).unwrap(),
                serde_json::Value::Array(a) => a.iter().map(|b| b.as_u64().unwrap() as u8).collect(),
                _ => panic!("unexpected {v}"),
            }
        };
        let hcl = read(dir.join("hcl_report.bin"));
        let size = u32::from_le_bytes(hcl[0x4c0 + 16..0x4c0 + 20].try_into().unwrap()) as usize;
        let var: serde_json::Value = serde_json::from_slice(&hcl[0x4d4..0x4d4 + size]).unwrap();
        let jwk = var["keys"].as_array().unwrap().iter().find(|k| k["kid"] == "HCLAkPub").unwrap();
        let b64 = |k: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jwk[k].as_str().unwrap()).unwrap();
        out.push(AzureQuote {
            dir,
            message: bytes(&q["message"]),
            signature: bytes(&q["signature"]),
            pcrs: q["pcrs"].as_array().unwrap().iter().map(bytes).collect(),
            ak: AkPublic::from_rsa_components(&b64("n"), &b64("e")).unwrap(),
            nonce: hex::decode(c["nonce"].as_str().unwrap()).unwrap(),
        });
    }
    out
}

#[test]
fn azure_vtpm_quotes_parse_and_verify() {
    let quotes = azure_quotes();
    assert_eq!(quotes.len(), 5);
    for q in &quotes {
        let attest = parse_attest(&q.message).unwrap();
        assert_eq!(attest.extra_data, q.nonce, "{}", q.dir.display());
        let sig = Signature::from_raw_rsa(SigScheme::RsaSsa, HashAlg::Sha256, &q.signature).unwrap();
        let pcrs = PcrValues::from_list(HashAlg::Sha256, &q.pcrs).unwrap();
        let opts = Options::at(at("2025-06-01T00:00:00Z")).with_nonce(q.nonce.clone());
        let c = verify_quote_with(&q.message, &sig, &q.ak, Some(&pcrs), &opts).unwrap();
        assert_eq!(c.pcr_bank, Some(HashAlg::Sha256));
        assert_eq!(c.pcr_select, (0..24).collect::<Vec<_>>());
        assert!(c.not_evaluated().is_empty());
        // The same signature wrapped as a TPMT_SIGNATURE goes through parse_signature.
        let mut tpmt = vec![0x00, 0x14, 0x00, 0x0b];
        tpmt.extend_from_slice(&(q.signature.len() as u16).to_be_bytes());
        tpmt.extend_from_slice(&q.signature);
        assert_eq!(parse_signature(&tpmt).unwrap(), sig);
        assert!(verify_quote(&q.message, &tpmt, &q.ak, Some(&pcrs), &opts).is_ok());
        // Another VM's AK does not verify it.
        let other = quotes.iter().find(|o| o.ak != q.ak).unwrap();
        assert_eq!(
            verify_quote_with(&q.message, &sig, &other.ak, None, &opts).unwrap_err().kind(),
            ErrorKind::Signature
        );
    }
    // The JWK AK and the derived PEM are the same key.
    let milan = quotes.iter().find(|q| q.dir.ends_with("trustee-hcl-milan-v2")).unwrap();
    let pem = AkPublic::from_pem_or_der(&read(milan.dir.join("ak_pub.pem"))).unwrap();
    assert_eq!(pem.spki_sha256(), milan.ak.spki_sha256());
    // Bit flips and truncations of one Azure quote message (bare RSA signature).
    let sig = Signature::from_raw_rsa(SigScheme::RsaSsa, HashAlg::Sha256, &milan.signature).unwrap();
    let pcrs = PcrValues::from_list(HashAlg::Sha256, &milan.pcrs).unwrap();
    let opts = Options::at(at("2025-06-01T00:00:00Z")).with_nonce(milan.nonce.clone());
    assert_mutations_refused(&milan.message, &sig, None, &milan.ak, &pcrs, &opts, true);
    let mut bad = milan.signature.clone();
    bad[0] ^= 1;
    let bad = Signature::from_raw_rsa(SigScheme::RsaSsa, HashAlg::Sha256, &bad).unwrap();
    assert!(verify_quote_with(&milan.message, &bad, &milan.ak, Some(&pcrs), &opts).is_err());
}

/// A `TPMS_ATTEST` for a quote of `pcrs` in `bank` with `digest`.
fn build_attest(extra: &[u8], bank: HashAlg, pcrs: &[u32], digest: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&TPM_GENERATED_VALUE.to_be_bytes());
    b.extend_from_slice(&TPM_ST_ATTEST_QUOTE.to_be_bytes());
    b.extend_from_slice(&[0, 2, 0x40, 0x00_u8]); // qualifiedSigner: a handle-sized name
    b.extend_from_slice(&(extra.len() as u16).to_be_bytes());
    b.extend_from_slice(extra);
    b.extend_from_slice(&[0u8; 8 + 4 + 4]);
    b.push(1);
    b.extend_from_slice(&0x1234u64.to_be_bytes());
    b.extend_from_slice(&1u32.to_be_bytes());
    b.extend_from_slice(&bank.alg_id().to_be_bytes());
    let mut sel = [0u8; 3];
    for p in pcrs {
        sel[*p as usize / 8] |= 1 << (p % 8);
    }
    b.push(3);
    b.extend_from_slice(&sel);
    b.extend_from_slice(&(digest.len() as u16).to_be_bytes());
    b.extend_from_slice(digest);
    b
}

fn ecdsa_tpmt_signature(hash: HashAlg, fixed: &[u8], strip_r: bool) -> Vec<u8> {
    let (r, s) = fixed.split_at(fixed.len() / 2);
    let r = if strip_r { &r[r.iter().take_while(|&&b| b == 0).count()..] } else { r };
    let mut b = vec![0x00, 0x18];
    b.extend_from_slice(&hash.alg_id().to_be_bytes());
    for part in [r, s] {
        b.extend_from_slice(&(part.len() as u16).to_be_bytes());
        b.extend_from_slice(part);
    }
    b
}

#[test]
fn ecdsa_quotes_verify() {
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, KeyPair};
    let rng = SystemRandom::new();
    for (curve, alg, hash) in [
        (Curve::P256, &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, HashAlg::Sha256),
        (Curve::P384, &ring::signature::ECDSA_P384_SHA384_FIXED_SIGNING, HashAlg::Sha384),
    ] {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
        let ak = AkPublic::from_ec_point(curve, key.public_key().as_ref()).unwrap();
        // The SPKI form of the same key is the same AK.
        assert_eq!(AkPublic::from_spki_der(ak.spki_der()).unwrap(), ak);
        let pcrs = PcrValues::from_list(HashAlg::Sha256, &[vec![1u8; 32], vec![2u8; 32], vec![3u8; 32]]).unwrap();
        // pcrDigest is hashed with the signing hash even for a SHA-256 bank.
        let digest = hash.digest_parts([&pcrs.values[&0][..], &pcrs.values[&2][..]]);
        let attest = build_attest(b"nonce", HashAlg::Sha256, &[0, 2], &digest);
        let opts = Options::at(at("2025-06-01T00:00:00Z")).with_nonce(b"nonce".to_vec());
        // Sign until r has a leading zero byte at least once is too slow; test both
        // the full-length and (when possible) the stripped encodings.
        let sig = key.sign(&rng, &attest).unwrap();
        let tpmt = ecdsa_tpmt_signature(hash, sig.as_ref(), true);
        let c = verify_quote(&attest, &tpmt, &ak, Some(&pcrs), &opts).unwrap();
        assert_eq!(c.signature_scheme, format!("ecdsa-{}", hash.name()));
        assert_eq!(c.pcrs.as_ref().unwrap().len(), 2);
        assert!(c.clock_info.safe);
        assert_eq!(c.firmware_version, "0x0000000000001234");
        // A longer-than-curve r with a zero prefix is still accepted (leading zeros).
        let mut padded = vec![0x00, 0x18];
        padded.extend_from_slice(&hash.alg_id().to_be_bytes());
        let (r, s) = sig.as_ref().split_at(sig.as_ref().len() / 2);
        let r2 = [&[0u8][..], r].concat();
        for part in [&r2[..], s] {
            padded.extend_from_slice(&(part.len() as u16).to_be_bytes());
            padded.extend_from_slice(part);
        }
        assert!(verify_quote(&attest, &padded, &ak, Some(&pcrs), &opts).is_ok());
        // The wrong hash in the scheme, an RSA key, a wrong nonce.
        let other = if hash == HashAlg::Sha256 { HashAlg::Sha384 } else { HashAlg::Sha256 };
        let wrong = ecdsa_tpmt_signature(other, sig.as_ref(), false);
        assert!(verify_quote(&attest, &wrong, &ak, None, &Options::at(opts.at)).is_err());
        let rsa = AkPublic::from_bytes(&gce(true, HashAlg::Sha256).files["ak"]).unwrap();
        assert_eq!(verify_quote(&attest, &tpmt, &rsa, None, &opts).unwrap_err().kind(), ErrorKind::Signature);
        let e = verify_quote(&attest, &tpmt, &ak, None, &opts.clone().with_nonce(b"other".to_vec())).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Nonce);
        let parsed = parse_signature(&tpmt).unwrap();
        assert_mutations_refused(&attest, &parsed, Some(&tpmt), &ak, &pcrs, &opts, false);
    }
}

#[test]
fn malformed_structures_are_parse_errors() {
    let case = gce(true, HashAlg::Sha256);
    let a = &case.files["attest"];
    let parsed = parse_attest(a).unwrap();
    assert_eq!(parsed.extra_data, [0x90, 0x09]);
    assert_eq!(parsed.pcr_select, vec![PcrSelection { bank: HashAlg::Sha256, pcrs: (0..24).collect() }]);
    assert_eq!(parsed.clock_info.reset_count, 10);
    for (offset, value, field) in [
        (0, 0x00, "magic"),
        (5, 0x17, "type"),            // TPM_ST_ATTEST_CERTIFY
        (6, 0xff, "qualifiedSigner"), // oversized TPM2B
        (0x3e, 0x02, "clockInfo.safe"),
    ] {
        let mut m = a.clone();
        m[offset] = value;
        let e = parse_attest(&m).unwrap_err();
        assert!(e.to_string().contains(field), "{field}: {e}");
        assert_eq!(e.kind(), ErrorKind::Parse);
    }
    // Unsigned and unknown signature schemes.
    assert!(parse_signature(&[0x00, 0x10, 0x00, 0x0b]).unwrap_err().to_string().contains("TPM_ALG_NULL"));
    assert!(parse_signature(&[0x00, 0x1c, 0x00, 0x0b]).is_err());
    assert!(Signature::from_raw_rsa(SigScheme::Ecdsa, HashAlg::Sha256, &[1; 256]).is_err());
    // AK inputs.
    assert!(AkPublic::from_pem_or_der(b"-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n").is_err());
    assert!(AkPublic::from_bytes(b"").is_err());
    assert!(AkPublic::from_rsa_components(&[0xff; 128], &[1, 0, 1]).is_err(), "1024-bit modulus");
    assert!(AkPublic::from_rsa_components(&[0xff; 256], &[2]).is_err(), "even exponent");
    let tpmt = read(case.dir.join("ak_pub.tpmt_public.bin"));
    for n in 0..tpmt.len() {
        assert!(AkPublic::from_tpmt_public(&tpmt[..n]).is_err());
    }
    let mut unrestricted = tpmt.clone();
    unrestricted[5] &= !0x01; // clear `restricted` (bit 16)
    assert!(AkPublic::from_tpmt_public(&unrestricted).unwrap_err().to_string().contains("restricted"));
    for i in 0..tpmt.len() {
        let mut m = tpmt.clone();
        m[i] ^= 0x10;
        fuzz_signature(&m);
    }
    // SHA-1 signatures are refused even when the RSA maths would work.
    let ak = AkPublic::from_bytes(&case.files["ak"]).unwrap();
    let mut s = case.files["signature"].clone();
    s[3] = 0x04;
    assert_eq!(verify_quote(a, &s, &ak, None, &case.opts()).unwrap_err().kind(), ErrorKind::Signature);
}

#[test]
fn quote_helpers() {
    assert_eq!(HashAlg::from_name("SHA384"), Some(HashAlg::Sha384));
    assert_eq!(HashAlg::from_alg_id(0x0012), None);
    assert_eq!(serde_json::to_string(&HashAlg::Sha256).unwrap(), "\"sha256\"");
    // A quote over two banks is refused by the verifier with a clear reason.
    let mut a = build_attest(b"", HashAlg::Sha256, &[0], &[0; 32]);
    let count_at = a.len() - 32 - 2 - 4 - 2 - 4;
    a[count_at + 3] = 2;
    let tail = a.split_off(count_at + 4 + 6);
    a.extend_from_slice(&[0x00, 0x04, 3, 1, 0, 0]);
    a.extend_from_slice(&tail);
    let parsed = parse_attest(&a).unwrap();
    assert_eq!(parsed.pcr_select.len(), 2);
    assert_eq!(pcrs::quoted_bank(&parsed).unwrap_err().kind(), ErrorKind::NotEvaluated);
}
