//! Simulated TPM 2.0 quote: TPMS_ATTEST (TPM2_Quote) signed by a fixed ECDSA P-256
//! attestation key, as TPMT_SIGNATURE (TPM 2.0 Library Part 2: 10.12.8, 10.12.12,
//! 11.3.4).
//!
//! ```text
//!  nonce, {PCR index → SHA-256 value} ─► TPMS_ATTEST { magic, TPM_ST_ATTEST_QUOTE, name(AK),
//!     extraData = nonce, clock, firmware, TPML_PCR_SELECTION(sha256), pcrDigest } ─►
//!  ECDSA P-256 over SHA-256(TPMS_ATTEST) ─► TPMT_SIGNATURE { ECDSA, SHA256, r, s }
//! ```
//!
//! This is a format simulator only; the real TPM attester (tss-esapi on swtpm or
//! hardware) lives in `veil-enclave`.

use std::collections::BTreeMap;

use ring::signature;
use serde::Serialize;
use serde::ser::SerializeMap as _;

use crate::der;
use crate::error::{Error, Result};
use crate::keys::{self, Key};

/// TPM_GENERATED_VALUE.
pub const TPM_GENERATED: u32 = 0xff54_4347;
/// TPM_ST_ATTEST_QUOTE.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// TPM_ALG_SHA256.
pub const TPM_ALG_SHA256: u16 = 0x000b;
/// TPM_ALG_ECDSA.
pub const TPM_ALG_ECDSA: u16 = 0x0018;
/// TPM_ALG_ECC.
pub const TPM_ALG_ECC: u16 = 0x0023;
/// TPM_ALG_NULL.
pub const TPM_ALG_NULL: u16 = 0x0010;
/// TPM_ECC_NIST_P256.
pub const TPM_ECC_NIST_P256: u16 = 0x0003;
/// Largest nonce accepted (TPM2B_DATA holds at most a TPMT_HA; 64 = SHA-512 digest).
pub const MAX_NONCE: usize = 64;
/// Highest PCR index (24 PCRs, three-byte select bitmap).
pub const MAX_PCR: u32 = 23;
/// firmwareVersion reported by the simulated TPM ("VEIL" ‖ 1).
pub const FIRMWARE_VERSION: u64 = 0x5645_494C_0000_0001;
/// Fixed TPMS_CLOCK_INFO: clock (ms), resetCount, restartCount, safe.
pub const CLOCK_INFO: (u64, u32, u32, u8) = (0x0000_0000_0123_4567, 1, 0, 1);
/// objectAttributes of the AK: fixedTPM | fixedParent | sensitiveDataOrigin |
/// userWithAuth | restricted | sign.
pub const AK_ATTRIBUTES: u32 = 0x0005_0072;

/// A simulated quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmQuote {
    /// TPMS_ATTEST bytes (the signed message).
    pub attest: Vec<u8>,
    /// TPMT_SIGNATURE (ECDSA, SHA-256, r and s as 32-byte TPM2B).
    pub signature: Vec<u8>,
    /// The AK public key, SubjectPublicKeyInfo PEM.
    pub ak_pem: Vec<u8>,
    /// JSON object shaped like one entry of the vectors' `quotes.json`:
    /// `{"hash":"sha256","tpms_attest":hex,"tpmt_signature":hex,"pcrs":{"0":hex,...}}`.
    pub pcrs_json: Vec<u8>,
    /// The AK as TPMT_PUBLIC (its name is nameAlg ‖ SHA-256 of these bytes).
    pub ak_public: Vec<u8>,
    /// The AK's TPM name (0x000b ‖ SHA-256(TPMT_PUBLIC)) = the quote's qualifiedSigner.
    pub ak_name: Vec<u8>,
}

fn tpm2b(out: &mut Vec<u8>, data: &[u8]) -> Result<()> {
    let len = u16::try_from(data.len()).map_err(|_| Error::invalid("TPM2B", "longer than 65535"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    Ok(())
}

/// The AK's uncompressed point (0x04 ‖ x ‖ y).
fn ak_point() -> Result<Vec<u8>> {
    keys::p256_public(Key::TpmAk)
}

/// The simulated AK as TPMT_PUBLIC (ECC P-256, restricted signing, ECDSA/SHA-256).
pub fn ak_tpmt_public() -> Result<Vec<u8>> {
    let point = ak_point()?;
    let (x, y) = point.get(1..).and_then(|xy| xy.split_at_checked(32)).ok_or(Error::Fixture("tpm/ak.key.pem"))?;
    let mut p = Vec::with_capacity(90);
    p.extend_from_slice(&TPM_ALG_ECC.to_be_bytes());
    p.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes()); // nameAlg
    p.extend_from_slice(&AK_ATTRIBUTES.to_be_bytes());
    tpm2b(&mut p, &[])?; // authPolicy
    p.extend_from_slice(&TPM_ALG_NULL.to_be_bytes()); // symmetric
    p.extend_from_slice(&TPM_ALG_ECDSA.to_be_bytes()); // scheme
    p.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes()); // scheme hash
    p.extend_from_slice(&TPM_ECC_NIST_P256.to_be_bytes());
    p.extend_from_slice(&TPM_ALG_NULL.to_be_bytes()); // kdf
    tpm2b(&mut p, x)?;
    tpm2b(&mut p, y)?;
    Ok(p)
}

/// The AK's TPM name: nameAlg (SHA-256) ‖ SHA-256(TPMT_PUBLIC).
pub fn ak_name() -> Result<Vec<u8>> {
    use sha2::Digest as _;
    let mut name = TPM_ALG_SHA256.to_be_bytes().to_vec();
    name.extend_from_slice(&sha2::Sha256::digest(ak_tpmt_public()?));
    Ok(name)
}

/// The AK public key as SubjectPublicKeyInfo PEM.
pub fn ak_pem() -> Result<Vec<u8>> {
    let spki = der::spki_ec(der::oids::P256, &ak_point()?);
    Ok(der::pem("PUBLIC KEY", &spki).into_bytes())
}

/// Deterministic PCR values for cases: PCR i = SHA-256("veil-sim PCR i") for 0..=7.
pub fn default_pcrs() -> BTreeMap<u32, [u8; 32]> {
    use sha2::Digest as _;
    (0..8u32).map(|i| (i, sha2::Sha256::digest(format!("veil-sim PCR {i}")).into())).collect()
}

struct PcrMap<'a>(&'a BTreeMap<u32, [u8; 32]>);

impl Serialize for PcrMap<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(&k.to_string(), &hex::encode(v))?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct QuoteEntry<'a> {
    hash: &'static str,
    tpms_attest: String,
    tpmt_signature: String,
    pcrs: PcrMap<'a>,
}

/// Quote the SHA-256 bank `pcrs` (index → value) with extraData = `nonce`.
pub fn quote(nonce: &[u8], pcrs: &BTreeMap<u32, [u8; 32]>) -> Result<TpmQuote> {
    use sha2::Digest as _;
    if nonce.len() > MAX_NONCE {
        return Err(Error::invalid("nonce", format!("{} bytes (at most {MAX_NONCE})", nonce.len())));
    }
    let mut select = [0u8; 3];
    let mut digest = sha2::Sha256::new();
    for (index, value) in pcrs {
        if *index > MAX_PCR {
            return Err(Error::invalid("pcrs", format!("PCR index {index} (at most {MAX_PCR})")));
        }
        if let Some(byte) = select.get_mut((index / 8) as usize) {
            *byte |= 1 << (index % 8);
        }
        // BTreeMap iterates in ascending index order, the order TPM2_Quote hashes in.
        digest.update(value);
    }
    let pcr_digest = digest.finalize();
    let name = ak_name()?;

    let mut a = Vec::with_capacity(160);
    a.extend_from_slice(&TPM_GENERATED.to_be_bytes());
    a.extend_from_slice(&TPM_ST_ATTEST_QUOTE.to_be_bytes());
    tpm2b(&mut a, &name)?; // qualifiedSigner
    tpm2b(&mut a, nonce)?; // extraData
    let (clock, reset, restart, safe) = CLOCK_INFO;
    a.extend_from_slice(&clock.to_be_bytes());
    a.extend_from_slice(&reset.to_be_bytes());
    a.extend_from_slice(&restart.to_be_bytes());
    a.push(safe);
    a.extend_from_slice(&FIRMWARE_VERSION.to_be_bytes());
    a.extend_from_slice(&1u32.to_be_bytes()); // TPML_PCR_SELECTION.count
    a.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    a.push(3); // sizeofSelect
    a.extend_from_slice(&select);
    tpm2b(&mut a, &pcr_digest)?;

    let sig = keys::sign(Key::TpmAk, &signature::ECDSA_P256_SHA256_FIXED_SIGNING, "TPM AK", &a)?;
    let (r, s) = sig.split_at_checked(32).ok_or(Error::Signing("TPM AK"))?;
    let mut t = Vec::with_capacity(72);
    t.extend_from_slice(&TPM_ALG_ECDSA.to_be_bytes());
    t.extend_from_slice(&TPM_ALG_SHA256.to_be_bytes());
    tpm2b(&mut t, r)?;
    tpm2b(&mut t, s)?;

    let entry = QuoteEntry {
        hash: "sha256",
        tpms_attest: hex::encode(&a),
        tpmt_signature: hex::encode(&t),
        pcrs: PcrMap(pcrs),
    };
    let pcrs_json =
        serde_json::to_vec(&entry).map_err(|e| Error::Encode { what: "quotes.json entry", reason: e.to_string() })?;
    Ok(TpmQuote { attest: a, signature: t, ak_pem: ak_pem()?, pcrs_json, ak_public: ak_tpmt_public()?, ak_name: name })
}
