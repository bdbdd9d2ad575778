//! The TPM attester against a real software TPM (swtpm), one per test.
//!
//! Quotes are checked here independently of tss-esapi and of the crate's own
//! self-check: TPMS_ATTEST and TPMT_SIGNATURE are parsed by hand (TPM 2.0 Part 2,
//! §10.12.8 and §11.3.4) and the signature is verified with ring against the SPKI
//! from the AK's PEM.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result, bail, ensure};
use base64::Engine as _;
use ring::rand::SecureRandom as _;
use sha2::{Digest as _, Sha256};
use veil_enclave::swtpm::Swtpm;
use veil_enclave::tpm::{self, AkInfo, TpmAttester, TpmQuote};
use veil_enclave::{AttestError, Attester, Evidence, TeeKind};

const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
const TPM_ALG_SHA256: u16 = 0x000b;
const TPM_ALG_ECDSA: u16 = 0x0018;

/// A panic-free big-endian cursor for the test's own parsing.
struct Cur<'a>(&'a [u8]);

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let (a, b) = self.0.split_at_checked(n).context("truncated")?;
        self.0 = b;
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into()?))
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into()?))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into()?))
    }
    fn tpm2b(&mut self) -> Result<&'a [u8]> {
        let n = self.u16()?;
        self.take(n.into())
    }
    fn end(&self) -> Result<()> {
        ensure!(self.0.is_empty(), "{} trailing bytes", self.0.len());
        Ok(())
    }
}

#[derive(Debug)]
struct Quote {
    magic: u32,
    typ: u16,
    qualified_signer: Vec<u8>,
    extra_data: Vec<u8>,
    /// (hash alg, PCR indices) per bank.
    selection: Vec<(u16, Vec<u8>)>,
    pcr_digest: Vec<u8>,
}

fn parse_attest(bytes: &[u8]) -> Result<Quote> {
    let mut c = Cur(bytes);
    let magic = c.u32()?;
    let typ = c.u16()?;
    let qualified_signer = c.tpm2b()?.to_vec();
    let extra_data = c.tpm2b()?.to_vec();
    // TPMS_CLOCK_INFO: clock u64, resetCount u32, restartCount u32, safe u8.
    let _clock = c.u64()?;
    let _reset = c.u32()?;
    let _restart = c.u32()?;
    let _safe = c.u8()?;
    let _firmware = c.u64()?;
    // TPMS_QUOTE_INFO: TPML_PCR_SELECTION, TPM2B_DIGEST.
    let count = c.u32()?;
    let mut selection = Vec::new();
    for _ in 0..count {
        let alg = c.u16()?;
        let size = c.u8()?;
        let bits = c.take(size.into())?;
        let mut pcrs = Vec::new();
        for (i, byte) in bits.iter().enumerate() {
            for bit in 0..8 {
                if byte & (1 << bit) != 0 {
                    pcrs.push(u8::try_from(i * 8 + bit)?);
                }
            }
        }
        selection.push((alg, pcrs));
    }
    let pcr_digest = c.tpm2b()?.to_vec();
    c.end()?;
    Ok(Quote { magic, typ, qualified_signer, extra_data, selection, pcr_digest })
}

/// TPMT_SIGNATURE (ECDSA) -> the 64-byte r ‖ s ring wants.
fn parse_signature(bytes: &[u8]) -> Result<[u8; 64]> {
    let mut c = Cur(bytes);
    ensure!(c.u16()? == TPM_ALG_ECDSA, "not ECDSA");
    ensure!(c.u16()? == TPM_ALG_SHA256, "not SHA-256");
    let r = c.tpm2b()?;
    let s = c.tpm2b()?;
    c.end()?;
    ensure!(r.len() <= 32 && s.len() <= 32, "r or s longer than 32 bytes");
    let mut out = [0u8; 64];
    out[32 - r.len()..32].copy_from_slice(r);
    out[64 - s.len()..].copy_from_slice(s);
    Ok(out)
}

/// The uncompressed point from the AK's SPKI PEM.
fn ak_point(ak: &AkInfo) -> Result<Vec<u8>> {
    let pem = std::str::from_utf8(&ak.public_pem)?;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    ensure!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "PEM header");
    ensure!(pem.ends_with("-----END PUBLIC KEY-----\n"), "PEM footer");
    let der = base64::engine::general_purpose::STANDARD.decode(body)?;
    ensure!(der == ak.public_der, "PEM and DER differ");
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused) 04‖X‖Y }
    let prefix = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200")?;
    ensure!(der.len() == 91 && der.starts_with(&prefix), "not a P-256 SPKI: {}", hex::encode(&der));
    ensure!(der[26] == 0x04, "not an uncompressed point");
    Ok(der[26..].to_vec())
}

fn verify(ak: &AkInfo, q: &TpmQuote) -> Result<()> {
    let point = ak_point(ak)?;
    let sig = parse_signature(&q.signature)?;
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &point)
        .verify(&q.attest, &sig)
        .map_err(|_| anyhow::anyhow!("signature does not verify"))
}

fn pcr_digest(values: &BTreeMap<u8, [u8; 32]>) -> Vec<u8> {
    let mut h = Sha256::new();
    values.values().for_each(|v| h.update(v));
    h.finalize().to_vec()
}

fn nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut n).unwrap();
    n
}

fn open() -> Result<(Swtpm, TpmAttester)> {
    let sw = Swtpm::start()?;
    let tpm = TpmAttester::open(&sw.tcti())?;
    Ok((sw, tpm))
}

#[test]
fn quote_after_extend_verifies_and_binds_nonce_and_pcrs() -> Result<()> {
    let (_sw, mut tpm) = open()?;
    let ak = tpm.create_ak()?;

    let digest: [u8; 32] = Sha256::digest(b"veil runtime event").into();
    assert_eq!(tpm.read_pcrs(&[23])?[&23], [0u8; 32], "PCR 23 starts at zero");
    tpm.extend(23, &digest)?;
    let mut h = Sha256::new();
    h.update([0u8; 32]);
    h.update(digest);
    let expected: [u8; 32] = h.finalize().into();
    assert_eq!(tpm.read_pcrs(&[23])?[&23], expected, "PCR 23 = SHA-256(zeros ‖ digest)");

    let n = nonce();
    let q = tpm.quote(&n, &[23, 0])?;
    verify(&ak, &q)?;

    let parsed = parse_attest(&q.attest)?;
    assert_eq!(parsed.magic, TPM_GENERATED_VALUE);
    assert_eq!(parsed.typ, TPM_ST_ATTEST_QUOTE);
    assert_eq!(parsed.extra_data, n);
    // qualifiedSigner = QN of a primary in the endorsement hierarchy.
    let mut qn = vec![0x00, 0x0b];
    qn.extend_from_slice(&Sha256::new().chain_update([0x40, 0x00, 0x00, 0x0b]).chain_update(&ak.name).finalize());
    assert_eq!(parsed.qualified_signer, qn);
    assert_eq!(ak.qualified_name, qn);
    assert_eq!(parsed.selection, vec![(TPM_ALG_SHA256, vec![0, 23])]);
    assert_eq!(q.pcr_values.keys().copied().collect::<Vec<_>>(), vec![0, 23]);
    assert_eq!(q.pcr_values[&23], expected);
    assert_eq!(parsed.pcr_digest, pcr_digest(&q.pcr_values), "pcrDigest = SHA-256(PCR0 ‖ PCR23)");
    Ok(())
}

#[test]
fn two_nonces_give_two_different_quotes() -> Result<()> {
    let (_sw, mut tpm) = open()?;
    let ak = tpm.create_ak()?;
    let (n1, n2) = (nonce(), nonce());
    let q1 = tpm.quote(&n1, &[23])?;
    let q2 = tpm.quote(&n2, &[23])?;
    verify(&ak, &q1)?;
    verify(&ak, &q2)?;
    assert_ne!(q1.attest, q2.attest);
    assert_ne!(q1.signature, q2.signature);
    assert_eq!(parse_attest(&q1.attest)?.extra_data, n1);
    assert_eq!(parse_attest(&q2.attest)?.extra_data, n2);

    // One quote's signature does not verify over the other's bytes.
    let swapped =
        TpmQuote { attest: q1.attest.clone(), signature: q2.signature.clone(), pcr_values: q1.pcr_values.clone() };
    assert!(verify(&ak, &swapped).is_err());
    Ok(())
}

#[test]
fn any_flipped_bit_in_attest_breaks_the_signature() -> Result<()> {
    let (_sw, mut tpm) = open()?;
    let ak = tpm.create_ak()?;
    let q = tpm.quote(&nonce(), &[23])?;
    for i in [0, 6, q.attest.len() / 2, q.attest.len() - 1] {
        let mut bad = q.clone();
        bad.attest[i] ^= 0x01;
        assert!(verify(&ak, &bad).is_err(), "flip at byte {i} must not verify");
    }
    Ok(())
}

#[test]
fn ak_is_a_restricted_p256_key_with_a_consistent_name() -> Result<()> {
    let (_sw, mut tpm) = open()?;
    let ak = tpm.create_ak()?;
    ak_point(&ak)?;
    let mut name = vec![0x00, 0x0b];
    name.extend_from_slice(&Sha256::digest(&ak.public_area));
    assert_eq!(ak.name, name, "name = nameAlg ‖ SHA-256(TPMT_PUBLIC)");

    // TPMT_PUBLIC: type ECC (0x0023), nameAlg SHA-256, objectAttributes.
    let mut c = Cur(&ak.public_area);
    assert_eq!(c.u16()?, 0x0023);
    assert_eq!(c.u16()?, TPM_ALG_SHA256);
    let attrs = c.u32()?;
    for (bit, what) in [
        (1, "fixedTPM"),
        (4, "fixedParent"),
        (5, "sensitiveDataOrigin"),
        (6, "userWithAuth"),
        (16, "restricted"),
        (18, "sign"),
    ] {
        assert!(attrs & (1 << bit) != 0, "{what} must be set");
    }
    assert!(attrs & (1 << 17) == 0, "decrypt must be clear");

    // A primary key is derived from the seed and template: the same AK again.
    let again = tpm.create_ak()?;
    assert_eq!(again, ak);
    assert_eq!(tpm.ak()?, Some(ak));
    Ok(())
}

#[test]
fn attester_trait_quotes_sha256_of_report_data() -> Result<()> {
    let (_sw, tpm) = open()?;
    let tpm = tpm.with_quote_pcrs(&[23, 7])?;
    assert_eq!(tpm.tee()?, TeeKind::Tpm);
    let mut report_data = [0u8; 64];
    report_data[..48].copy_from_slice(&[0x5a; 48]);

    let attester: &dyn Attester = &tpm;
    let ev = attester.evidence(&report_data)?;
    assert_eq!(ev.tee(), Some(TeeKind::Tpm));
    let Evidence::Tpm { ak, quote } = ev else { bail!("not TPM evidence: {ev:?}") };
    verify(&ak, &quote)?;
    let parsed = parse_attest(&quote.attest)?;
    assert_eq!(parsed.extra_data, Sha256::digest(report_data).to_vec());
    assert_eq!(parsed.extra_data, tpm::qualifying_data_for(&report_data));
    assert_eq!(parsed.selection, vec![(TPM_ALG_SHA256, vec![7, 23])]);
    assert_eq!(parsed.pcr_digest, pcr_digest(&quote.pcr_values));

    // The AK made on first use is kept.
    let Evidence::Tpm { ak: ak2, .. } = attester.evidence(&report_data)? else { bail!("not TPM evidence") };
    assert_eq!(ak, ak2);
    Ok(())
}

#[test]
fn default_evidence_quotes_boot_pcrs_and_pcr23() -> Result<()> {
    let (_sw, tpm) = open()?;
    let Evidence::Tpm { ak, quote } = tpm.evidence(&[7u8; 64])? else { bail!("not TPM evidence") };
    verify(&ak, &quote)?;
    let parsed = parse_attest(&quote.attest)?;
    assert_eq!(parsed.selection, vec![(TPM_ALG_SHA256, tpm::DEFAULT_QUOTE_PCRS.to_vec())]);
    assert_eq!(parsed.pcr_digest, pcr_digest(&quote.pcr_values));
    Ok(())
}

#[test]
fn bad_arguments_are_refused_before_the_tpm() -> Result<()> {
    let (_sw, mut tpm) = open()?;
    assert!(matches!(tpm.quote(&nonce(), &[23]), Err(AttestError::NoAk)));
    assert!(matches!(tpm.extend(24, &[0; 32]), Err(AttestError::InvalidArgument { what: "PCR index", .. })));
    assert!(matches!(tpm.read_pcrs(&[0, 99]), Err(AttestError::InvalidArgument { .. })));
    tpm.create_ak()?;
    assert!(matches!(tpm.quote(&[0u8; 65], &[23]), Err(AttestError::InvalidArgument { what: "qualifying data", .. })));
    Ok(())
}

#[test]
fn many_attesters_on_one_tpm_do_not_exhaust_object_slots() -> Result<()> {
    // Re-creating the AK flushes the previous one, and dropping an attester
    // flushes its AK: swtpm has only three transient object slots.
    let sw = Swtpm::start()?;
    for _ in 0..4 {
        let mut tpm = TpmAttester::open(&sw.tcti())?;
        for _ in 0..4 {
            tpm.create_ak()?;
        }
    }
    Ok(())
}

#[test]
fn missing_swtpm_binary_fails_loudly() {
    let err = Swtpm::start_with(Path::new("/nonexistent/veil/swtpm")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("/nonexistent/veil/swtpm") && msg.contains("swtpm"), "{msg}");
}

#[test]
fn unreachable_tcti_is_a_typed_error() {
    // A port nothing listens on: bind one and drop it.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let err = TpmAttester::open(&format!("swtpm:host=127.0.0.1,port={port}")).unwrap_err();
    assert!(matches!(err, AttestError::Tpm { .. }), "{err}");
    let err = TpmAttester::open("nonsense").unwrap_err();
    assert!(matches!(err, AttestError::Tpm { op: "TCTI configuration", .. }), "{err}");
}
