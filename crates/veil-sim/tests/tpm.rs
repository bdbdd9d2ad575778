//! TPM: TPMS_ATTEST / TPMT_SIGNATURE structure, signature (ring) and PCR digest, compared
//! with a real GCE vTPM quote where the shared vectors are present.

mod common;

use std::collections::BTreeMap;

use anyhow::{Result, ensure};
use sha2::Digest as _;
use veil_sim::tpm;

/// (qualifiedSigner, extraData, pcrSelect bitmap, pcrDigest)
type Attest = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>);

/// Parse a TPMS_ATTEST (quote) like a verifier.
fn parse_attest(a: &[u8]) -> Result<Attest> {
    let mut p = 0usize;
    let mut take = |n: usize| -> Result<&[u8]> {
        let s = a.get(p..p + n).ok_or_else(|| anyhow::anyhow!("short at {p}"))?;
        p += n;
        Ok(s)
    };
    ensure!(take(4)? == [0xff, 0x54, 0x43, 0x47], "magic");
    ensure!(take(2)? == [0x80, 0x18], "type");
    let n = u16::from_be_bytes(take(2)?.try_into()?) as usize;
    let name = take(n)?.to_vec();
    let n = u16::from_be_bytes(take(2)?.try_into()?) as usize;
    let extra = take(n)?.to_vec();
    take(17)?; // clock info
    take(8)?; // firmware
    ensure!(take(4)? == [0, 0, 0, 1], "one selection");
    ensure!(take(2)? == [0x00, 0x0b], "sha256 bank");
    let n = take(1)?[0] as usize;
    let select = take(n)?.to_vec();
    let n = u16::from_be_bytes(take(2)?.try_into()?) as usize;
    let digest = take(n)?.to_vec();
    ensure!(p == a.len(), "trailing bytes");
    Ok((name, extra, select, digest))
}

fn verify_sig(q: &tpm::TpmQuote) -> Result<()> {
    let s = &q.signature;
    ensure!(s[..4] == [0x00, 0x18, 0x00, 0x0b], "ECDSA/SHA256");
    ensure!(s[4..6] == [0, 32] && s[38..40] == [0, 32] && s.len() == 72, "TPM2B r, s");
    let mut rs = s[6..38].to_vec();
    rs.extend_from_slice(&s[40..72]);
    let pem = String::from_utf8(q.ak_pem.clone())?;
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    use base64::Engine as _;
    let spki = base64::engine::general_purpose::STANDARD.decode(b64)?;
    let point = &spki[spki.len() - 65..];
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(&q.attest, &rs)
        .map_err(|_| anyhow::anyhow!("TPM quote signature does not verify"))
}

#[test]
fn quote_structure_signature_and_digest() -> Result<()> {
    let pcrs: BTreeMap<u32, [u8; 32]> = [(0, [1u8; 32]), (7, [7u8; 32]), (10, [10u8; 32]), (23, [2u8; 32])].into();
    let nonce = b"fresh nonce 0123456789";
    let q = tpm::quote(nonce, &pcrs)?;
    let (name, extra, select, digest) = parse_attest(&q.attest)?;
    assert_eq!(extra, nonce);
    assert_eq!(select, vec![0b1000_0001, 0b0000_0100, 0b1000_0000]);
    let mut h = sha2::Sha256::new();
    for v in pcrs.values() {
        h.update(v);
    }
    assert_eq!(digest, h.finalize().to_vec());
    assert_eq!(name, q.ak_name);
    let mut expect_name = vec![0x00, 0x0b];
    expect_name.extend_from_slice(&sha2::Sha256::digest(&q.ak_public));
    assert_eq!(name, expect_name);
    verify_sig(&q)?;

    let mut bad = q.clone();
    bad.attest[20] ^= 1;
    assert!(verify_sig(&bad).is_err());

    let json: serde_json::Value = serde_json::from_slice(&q.pcrs_json)?;
    assert_eq!(json["hash"], "sha256");
    assert_eq!(json["pcrs"]["23"], hex::encode([2u8; 32]));
    assert_eq!(json["tpms_attest"], hex::encode(&q.attest));
    assert_eq!(json["tpmt_signature"], hex::encode(&q.signature));
    Ok(())
}

#[test]
fn limits_and_determinism() -> Result<()> {
    assert!(tpm::quote(&[0; 65], &tpm::default_pcrs()).is_err());
    assert!(tpm::quote(b"", &[(24, [0; 32])].into()).is_err());
    let a = tpm::quote(b"n", &tpm::default_pcrs())?;
    let b = tpm::quote(b"n", &tpm::default_pcrs())?;
    assert_eq!(a.attest, b.attest, "TPMS_ATTEST is a function of the inputs");
    assert_eq!(a.ak_pem, b.ak_pem);
    let empty = tpm::quote(b"", &tpm::default_pcrs())?;
    assert_eq!(parse_attest(&empty.attest)?.1, Vec::<u8>::new());
    Ok(())
}

#[test]
fn layout_matches_real_quote() -> Result<()> {
    let Some(v) = common::vectors() else {
        return Ok(());
    };
    let real = std::fs::read(v.join("tpm/gotpmtools-gce-cos85-nonce9009/quote_sha256.tpms_attest.bin"))?;
    let (name, extra, select, digest) = parse_attest(&real)?;
    assert_eq!((name.len(), extra, select.len(), digest.len()), (34, vec![0x90, 0x09], 3, 32));
    let ours = tpm::quote(&[0x90, 0x09], &(0..24).map(|i| (i, [0u8; 32])).collect())?;
    assert_eq!(ours.attest.len(), real.len(), "same size for the same selection and nonce");
    let (_, _, select, _) = parse_attest(&ours.attest)?;
    assert_eq!(select, vec![0xff, 0xff, 0xff]);
    Ok(())
}
