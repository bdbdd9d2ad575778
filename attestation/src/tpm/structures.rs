//! TPM 2.0 wire structures of a quote: `TPM_ALG_ID` hashes, `TPMS_ATTEST` and
//! `TPMT_SIGNATURE` (TPM 2.0 Library, Part 2: Structures, rev. 1.59: §6.3 TPM_ALG_ID,
//! §10.12 TPMS_ATTEST, §10.12.1 TPMS_QUOTE_INFO, §11.3.4 TPMT_SIGNATURE).
//!
//! TPM structures are big-endian. Every length is checked against the remaining
//! bytes and against the maximum the specification allows, and a structure must
//! end where its declared lengths say (nothing may follow a signed `TPMS_ATTEST`).

use serde::Serialize;

use crate::error::{ParseError, Result};
use crate::reader::Reader;

/// `TPM_GENERATED_VALUE`: the magic a TPM puts at the start of every structure it
/// signs with a restricted key, so that it cannot be made to sign a look-alike.
pub const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`: the `type` of a `TPMS_ATTEST` made by `TPM2_Quote`.
pub const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;

/// Highest PCR index + 1 this crate accepts (a `sizeofSelect` of at most 4 bytes).
/// PC-Client TPMs have 24 PCRs.
pub const MAX_PCRS: u32 = 32;
const MAX_SIZEOF_SELECT: u8 = 4;
/// `sizeof(TPMU_NAME)` = `sizeof(TPMT_HA)` with SHA-512 = 2 + 64.
const MAX_NAME: usize = 66;
/// `TPM2B_DATA` holds up to `sizeof(TPMT_HA)` bytes.
const MAX_DATA: usize = 66;
/// `TPM2B_DIGEST` holds up to the largest digest (SHA-512).
const MAX_DIGEST: usize = 64;
/// `TPML_PCR_SELECTION` holds at most one entry per implemented hash (`HASH_COUNT`).
const MAX_PCR_BANKS: u32 = 16;
/// RSA signatures up to 8192 bits (`TPM2B_PUBLIC_KEY_RSA`).
const MAX_RSA_BYTES: usize = 1024;
/// `TPM2B_ECC_PARAMETER` up to P-521.
const MAX_ECC_BYTES: usize = 66;

const ATTEST: &str = "TPMS_ATTEST";
const SIGNATURE: &str = "TPMT_SIGNATURE";

/// A hash algorithm by its `TPM_ALG_ID` (the PCR banks and signing hashes Veil
/// supports). Serialised as its lower-case name ("sha256").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HashAlg {
    /// `TPM_ALG_SHA1` (0x0004).
    Sha1,
    /// `TPM_ALG_SHA256` (0x000B).
    Sha256,
    /// `TPM_ALG_SHA384` (0x000C).
    Sha384,
    /// `TPM_ALG_SHA512` (0x000D).
    Sha512,
}

impl HashAlg {
    /// All supported algorithms.
    pub const ALL: [HashAlg; 4] = [HashAlg::Sha1, HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512];

    /// The algorithm for a `TPM_ALG_ID`, if supported.
    pub fn from_alg_id(id: u16) -> Option<Self> {
        match id {
            0x0004 => Some(HashAlg::Sha1),
            0x000B => Some(HashAlg::Sha256),
            0x000C => Some(HashAlg::Sha384),
            0x000D => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    /// The `TPM_ALG_ID`.
    pub fn alg_id(self) -> u16 {
        match self {
            HashAlg::Sha1 => 0x0004,
            HashAlg::Sha256 => 0x000B,
            HashAlg::Sha384 => 0x000C,
            HashAlg::Sha512 => 0x000D,
        }
    }

    /// The lower-case name ("sha1", "sha256", "sha384", "sha512").
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        }
    }

    /// The algorithm named `name` (as [`HashAlg::name`] spells it; case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        HashAlg::ALL.into_iter().find(|h| h.name().eq_ignore_ascii_case(name))
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    /// The digest of `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        self.digest_parts([data])
    }

    /// The digest of the concatenation of `parts` (without building it).
    pub fn digest_parts<'a>(self, parts: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
        fn run<'a, D: sha2::Digest>(parts: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
            let mut h = D::new();
            for p in parts {
                h.update(p);
            }
            h.finalize().to_vec()
        }
        match self {
            HashAlg::Sha1 => run::<sha1::Sha1>(parts),
            HashAlg::Sha256 => run::<sha2::Sha256>(parts),
            HashAlg::Sha384 => run::<sha2::Sha384>(parts),
            HashAlg::Sha512 => run::<sha2::Sha512>(parts),
        }
    }
}

impl std::fmt::Display for HashAlg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `TPMS_CLOCK_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered since it was last cleared.
    pub clock: u64,
    /// TPM resets since the last clear.
    pub reset_count: u32,
    /// TPM restarts/resumes since the last reset.
    pub restart_count: u32,
    /// `false` if `clock` may have been reported lower before (lost NV write).
    pub safe: bool,
}

/// One `TPMS_PCR_SELECTION`: a bank and the PCRs selected in it (ascending).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PcrSelection {
    /// The PCR bank.
    pub bank: HashAlg,
    /// Selected PCR indices, ascending.
    pub pcrs: Vec<u32>,
}

/// A parsed `TPMS_ATTEST` of type `TPM_ST_ATTEST_QUOTE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attest {
    /// `qualifiedSigner`: the qualified name of the signing key.
    pub qualified_signer: Vec<u8>,
    /// `extraData`: the qualifying data (nonce) the caller passed to `TPM2_Quote`.
    pub extra_data: Vec<u8>,
    /// `clockInfo`.
    pub clock_info: ClockInfo,
    /// `firmwareVersion` (vendor-specific).
    pub firmware_version: u64,
    /// `attested.quote.pcrSelect`, in the order the TPM listed it.
    pub pcr_select: Vec<PcrSelection>,
    /// `attested.quote.pcrDigest`: digest of the selected PCR values, with the
    /// signing scheme's hash.
    pub pcr_digest: Vec<u8>,
}

/// Read a `TPM2B_*`: a big-endian u16 size (at most `max`) and that many bytes.
pub(crate) fn tpm2b<'a>(r: &mut Reader<'a>, field: &'static str, max: usize) -> Result<&'a [u8], ParseError> {
    let size = usize::from(r.u16_be(field)?);
    if size > max {
        return Err(r.error(field, format!("size {size} exceeds the maximum {max}")));
    }
    r.take(size, field)
}

/// Parse a `TPMS_ATTEST` produced by `TPM2_Quote`. The structure must end exactly
/// where its fields do.
pub fn parse_attest(bytes: &[u8]) -> Result<Attest> {
    let mut r = Reader::new(bytes, ATTEST);
    let magic = r.u32_be("magic")?;
    if magic != TPM_GENERATED_VALUE {
        return Err(r
            .error("magic", format!("expected {TPM_GENERATED_VALUE:#010x} (TPM_GENERATED_VALUE), found {magic:#010x}"))
            .into());
    }
    let ty = r.u16_be("type")?;
    if ty != TPM_ST_ATTEST_QUOTE {
        return Err(r
            .error("type", format!("expected {TPM_ST_ATTEST_QUOTE:#06x} (TPM_ST_ATTEST_QUOTE), found {ty:#06x}"))
            .into());
    }
    let qualified_signer = tpm2b(&mut r, "qualifiedSigner", MAX_NAME)?.to_vec();
    let extra_data = tpm2b(&mut r, "extraData", MAX_DATA)?.to_vec();
    let clock = r.u64_be("clockInfo.clock")?;
    let reset_count = r.u32_be("clockInfo.resetCount")?;
    let restart_count = r.u32_be("clockInfo.restartCount")?;
    let safe = match r.u8("clockInfo.safe")? {
        0 => false,
        1 => true,
        v => return Err(r.error("clockInfo.safe", format!("TPMI_YES_NO must be 0 or 1, found {v}")).into()),
    };
    let firmware_version = r.u64_be("firmwareVersion")?;
    let pcr_select = parse_pcr_selection(&mut r)?;
    let pcr_digest = tpm2b(&mut r, "quote.pcrDigest", MAX_DIGEST)?.to_vec();
    r.expect_end("end of TPMS_ATTEST")?;
    Ok(Attest {
        qualified_signer,
        extra_data,
        clock_info: ClockInfo { clock, reset_count, restart_count, safe },
        firmware_version,
        pcr_select,
        pcr_digest,
    })
}

/// `TPML_PCR_SELECTION`.
fn parse_pcr_selection(r: &mut Reader<'_>) -> Result<Vec<PcrSelection>, ParseError> {
    let count = r.u32_be("quote.pcrSelect.count")?;
    if count > MAX_PCR_BANKS {
        return Err(r.error("quote.pcrSelect.count", format!("{count} banks, at most {MAX_PCR_BANKS} allowed")));
    }
    let mut out: Vec<PcrSelection> = Vec::new();
    for _ in 0..count {
        let alg = r.u16_be("quote.pcrSelect.hash")?;
        let bank = HashAlg::from_alg_id(alg)
            .ok_or_else(|| r.error("quote.pcrSelect.hash", format!("unsupported PCR bank algorithm {alg:#06x}")))?;
        if out.iter().any(|s| s.bank == bank) {
            return Err(r.error("quote.pcrSelect.hash", format!("bank {bank} is selected twice")));
        }
        let size = r.u8("quote.pcrSelect.sizeofSelect")?;
        if size > MAX_SIZEOF_SELECT {
            return Err(
                r.error("quote.pcrSelect.sizeofSelect", format!("{size} bytes, at most {MAX_SIZEOF_SELECT} allowed"))
            );
        }
        let bitmap = r.take(usize::from(size), "quote.pcrSelect.pcrSelect")?;
        out.push(PcrSelection { bank, pcrs: bitmap_indices(bitmap) });
    }
    Ok(out)
}

/// The PCR indices set in a `pcrSelect` bitmap (bit `j` of byte `i` = PCR `8i + j`).
fn bitmap_indices(bitmap: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut idx: u32 = 0;
    for byte in bitmap {
        for bit in 0..8u32 {
            if byte.checked_shr(bit).unwrap_or(0) & 1 == 1 {
                out.push(idx);
            }
            idx = idx.saturating_add(1);
        }
    }
    out
}

/// The signature scheme of a `TPMT_SIGNATURE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SigScheme {
    /// `TPM_ALG_RSASSA` (0x0014): RSASSA-PKCS1-v1_5.
    RsaSsa,
    /// `TPM_ALG_RSAPSS` (0x0016): RSASSA-PSS (salt length = hash length).
    RsaPss,
    /// `TPM_ALG_ECDSA` (0x0018).
    Ecdsa,
}

impl SigScheme {
    /// The scheme for a `TPM_ALG_ID`, if supported.
    pub fn from_alg_id(id: u16) -> Option<Self> {
        match id {
            0x0014 => Some(SigScheme::RsaSsa),
            0x0016 => Some(SigScheme::RsaPss),
            0x0018 => Some(SigScheme::Ecdsa),
            _ => None,
        }
    }

    /// The lower-case name ("rsassa", "rsapss", "ecdsa").
    pub fn name(self) -> &'static str {
        match self {
            SigScheme::RsaSsa => "rsassa",
            SigScheme::RsaPss => "rsapss",
            SigScheme::Ecdsa => "ecdsa",
        }
    }

    /// Whether the scheme is an RSA scheme.
    pub fn is_rsa(self) -> bool {
        matches!(self, SigScheme::RsaSsa | SigScheme::RsaPss)
    }
}

/// The signature value of a [`Signature`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureValue {
    /// An RSA signature (`TPM2B_PUBLIC_KEY_RSA`), big-endian.
    Rsa(Vec<u8>),
    /// An ECDSA signature: `signatureR`, `signatureS` as the TPM sent them (big-endian).
    Ecdsa {
        /// r
        r: Vec<u8>,
        /// s
        s: Vec<u8>,
    },
}

/// A parsed `TPMT_SIGNATURE` (or a raw RSA signature with a known scheme).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    scheme: SigScheme,
    hash: HashAlg,
    value: SignatureValue,
}

impl Signature {
    /// A bare RSA signature (as Azure's vTPM quote carries it: the
    /// `TPM2B_PUBLIC_KEY_RSA` buffer only) with the scheme the caller knows it uses.
    pub fn from_raw_rsa(scheme: SigScheme, hash: HashAlg, signature: &[u8]) -> Result<Self> {
        if !scheme.is_rsa() {
            return Err(ParseError::new(SIGNATURE, "sigAlg", format!("{} is not an RSA scheme", scheme.name())).into());
        }
        if signature.is_empty() || signature.len() > MAX_RSA_BYTES {
            return Err(ParseError::new(
                SIGNATURE,
                "signature",
                format!("RSA signature of {} bytes (1 to {MAX_RSA_BYTES} allowed)", signature.len()),
            )
            .into());
        }
        Ok(Self { scheme, hash, value: SignatureValue::Rsa(signature.to_vec()) })
    }

    /// The signature scheme.
    pub fn scheme(&self) -> SigScheme {
        self.scheme
    }

    /// The hash the scheme signs with (also the hash of the quote's pcrDigest).
    pub fn hash(&self) -> HashAlg {
        self.hash
    }

    /// The signature value.
    pub fn value(&self) -> &SignatureValue {
        &self.value
    }

    /// "rsassa-sha256", "ecdsa-sha384", ...
    pub fn name(&self) -> String {
        format!("{}-{}", self.scheme.name(), self.hash.name())
    }
}

/// Parse a `TPMT_SIGNATURE` (RSASSA, RSAPSS or ECDSA). Nothing may follow it.
pub fn parse_signature(bytes: &[u8]) -> Result<Signature> {
    let mut r = Reader::new(bytes, SIGNATURE);
    let alg = r.u16_be("sigAlg")?;
    let scheme = match SigScheme::from_alg_id(alg) {
        Some(s) => s,
        None if alg == 0x0010 => return Err(r.error("sigAlg", "TPM_ALG_NULL: the quote is not signed").into()),
        None => return Err(r.error("sigAlg", format!("unsupported signature scheme {alg:#06x}")).into()),
    };
    let h = r.u16_be("signature.hash")?;
    let hash = HashAlg::from_alg_id(h)
        .ok_or_else(|| r.error("signature.hash", format!("unsupported hash algorithm {h:#06x}")))?;
    let value = match scheme {
        SigScheme::RsaSsa | SigScheme::RsaPss => {
            let sig = tpm2b(&mut r, "signature.sig", MAX_RSA_BYTES)?;
            if sig.is_empty() {
                return Err(r.error("signature.sig", "empty RSA signature").into());
            }
            SignatureValue::Rsa(sig.to_vec())
        }
        SigScheme::Ecdsa => {
            let sr = tpm2b(&mut r, "signature.signatureR", MAX_ECC_BYTES)?.to_vec();
            let ss = tpm2b(&mut r, "signature.signatureS", MAX_ECC_BYTES)?.to_vec();
            SignatureValue::Ecdsa { r: sr, s: ss }
        }
    };
    r.expect_end("end of TPMT_SIGNATURE")?;
    Ok(Signature { scheme, hash, value })
}
