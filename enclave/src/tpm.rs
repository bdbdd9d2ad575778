//! TPM 2.0 attester through tss-esapi (the C TSS from Debian's `libtss2-dev`).
//!
//! ```text
//!   TpmAttester::open(tcti)          "swtpm:host=127.0.0.1,port=P" | "device:/dev/tpmrm0"
//!     create_ak()  ─► TPM2_CreatePrimary (endorsement hierarchy): restricted ECC P-256
//!                     signing key, ECDSA-SHA256, transient ─► AkInfo {SPKI PEM, name, ...}
//!     extend(pcr, d) ─► TPM2_PCR_Extend, SHA-256 bank, password session
//!     quote(qd, pcrs) ─► TPM2_Quote (+ TPM2_PCR_Read) ─► self-check ─► TpmQuote
//! ```
//!
//! **Self-check.** Before a quote is returned, this module verifies it the way a
//! relying party will: the ECDSA signature over the returned `attest` bytes with
//! the AK's public key (ring), the attestation type, `extraData` = the qualifying
//! data, the PCR selection, and `pcrDigest` = SHA-256 of the returned PCR values.
//! tss-esapi 7.7 hands out the quote as a parsed `Attest` that we marshal again
//! (the raw `TPM2B_ATTEST` is reachable only through `unsafe` FFI, which this
//! crate forbids). TPM marshalling is canonical, and the signature check on the
//! re-marshalled bytes proves they are exactly the bytes the TPM signed.
//!
//! **Why the endorsement hierarchy.** A primary key is derived from its
//! hierarchy's seed and template, so the AK is the same on every boot. The
//! endorsement seed survives `TPM2_Clear` (the owner/storage seed does not), so an
//! AK certificate or a pinned AK stays valid across an owner change.
//!
//! **Qualifying data.** Through [`Attester::evidence`] the quote's qualifying data
//! is SHA-256 of the 64-byte report data ([`qualifying_data_for`]): many hardware
//! TPMs accept at most 32 bytes (their largest digest). The key broker flow calls
//! [`TpmAttester::quote`] directly with SHA-256 of the canonical runtime data.

use std::collections::BTreeMap;
use std::str::FromStr as _;
use std::sync::Mutex;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use tss_esapi::Context;
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::handles::{KeyHandle, PcrHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    AttestInfo, Data, Digest, DigestValues, EccPoint, EccScheme, HashScheme, KeyDerivationFunctionScheme,
    PcrSelectionList, PcrSelectionListBuilder, PcrSlot, Public, PublicBuilder, PublicEccParametersBuilder, Signature,
    SignatureScheme, SymmetricDefinitionObject,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::Marshall as _;

use crate::error::{AttestError, Result};
use crate::{Attester, Evidence, TeeKind};

/// The PCR Veil extends with its runtime events (the application PCR; starts at zero).
pub const VEIL_PCR: u8 = 23;

/// Highest PCR index of a PC-client TPM.
pub const MAX_PCR: u8 = 23;

/// PCRs quoted by [`Attester::evidence`] unless changed with
/// [`TpmAttester::with_quote_pcrs`]: the boot chain (0–7) and Veil's PCR 23.
pub const DEFAULT_QUOTE_PCRS: &[u8] = &[0, 1, 2, 3, 4, 5, 6, 7, VEIL_PCR];

/// Attempts at a quote whose PCR values are stable (another process may be
/// extending between the quote and the read).
const QUOTE_ATTEMPTS: u32 = 3;

/// DER prefix of a P-256 SubjectPublicKeyInfo (id-ecPublicKey, prime256v1,
/// BIT STRING of 66 bytes), followed by the 65-byte uncompressed point. Fixed for
/// this one key type, so written out rather than pulling in a DER encoder.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// TPM_ALG_SHA256, the name algorithm of the AK.
const TPM_ALG_SHA256: [u8; 2] = [0x00, 0x0b];

/// TPM_RH_ENDORSEMENT: the qualified name of the endorsement hierarchy is its handle.
const TPM_RH_ENDORSEMENT: [u8; 4] = [0x40, 0x00, 0x00, 0x0b];

/// The qualifying data [`Attester::evidence`] uses for `report_data`:
/// SHA-256 of the 64 bytes.
pub fn qualifying_data_for(report_data: &[u8; 64]) -> [u8; 32] {
    Sha256::digest(report_data).into()
}

/// The attestation key as a relying party needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AkInfo {
    /// SubjectPublicKeyInfo, PEM (`-----BEGIN PUBLIC KEY-----`).
    pub public_pem: Vec<u8>,
    /// SubjectPublicKeyInfo, DER (the bytes inside the PEM).
    pub public_der: Vec<u8>,
    /// The marshalled TPMT_PUBLIC: lets a verifier check the key's attributes
    /// (restricted, fixedTPM, sign) against `name`.
    pub public_area: Vec<u8>,
    /// The TPM name: `0x000B ‖ SHA-256(public_area)`.
    pub name: Vec<u8>,
    /// The qualified name of a primary key in the endorsement hierarchy:
    /// `0x000B ‖ SHA-256(TPM_RH_ENDORSEMENT ‖ name)`; equals the quote's
    /// `qualifiedSigner` (TPM 2.0 Part 1, §16 "Names", qualified names).
    pub qualified_name: Vec<u8>,
}

/// A TPM2_Quote as the TPM returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmQuote {
    /// The marshalled TPMS_ATTEST: exactly the bytes the signature covers
    /// (re-marshalled from tss-esapi's parsed form, and proven identical by the
    /// self-check's signature verification over these bytes).
    pub attest: Vec<u8>,
    /// The marshalled TPMT_SIGNATURE (ECDSA, SHA-256, r and s as TPM2B).
    pub signature: Vec<u8>,
    /// The quoted PCRs of the SHA-256 bank, read right after the quote and checked
    /// against its `pcrDigest`.
    pub pcr_values: BTreeMap<u8, [u8; 32]>,
}

/// A TPM attester over one TCTI connection.
#[derive(Debug)]
pub struct TpmAttester {
    inner: Mutex<Inner>,
    quote_pcrs: Vec<u8>,
}

#[derive(Debug)]
struct Inner {
    ctx: Context,
    ak: Option<Ak>,
}

#[derive(Debug)]
struct Ak {
    handle: KeyHandle,
    info: AkInfo,
    /// Uncompressed SEC1 point, for ring.
    point: [u8; 65],
}

impl TpmAttester {
    /// Connect to the TPM named by `tcti`: `swtpm:host=127.0.0.1,port=P` (swtpm),
    /// `device:/dev/tpmrm0` (the kernel's resource manager), or any TCTI
    /// configuration string tss-esapi understands.
    pub fn open(tcti: &str) -> Result<Self> {
        let conf = TctiNameConf::from_str(tcti).map_err(AttestError::tpm("TCTI configuration"))?;
        let ctx = Context::new(conf).map_err(AttestError::tpm("TCTI open"))?;
        Ok(Self { inner: Mutex::new(Inner { ctx, ak: None }), quote_pcrs: DEFAULT_QUOTE_PCRS.to_vec() })
    }

    /// The PCRs [`Attester::evidence`] quotes (default [`DEFAULT_QUOTE_PCRS`]).
    pub fn with_quote_pcrs(mut self, pcrs: &[u8]) -> Result<Self> {
        self.quote_pcrs = normalise_pcrs(pcrs)?;
        Ok(self)
    }

    /// Create (or re-create) the attestation key: a primary, restricted ECC P-256
    /// signing key with scheme ECDSA-SHA256 in the endorsement hierarchy, held
    /// transiently. A previous AK of this attester is flushed first; the current
    /// one is flushed when the attester is dropped (tss-esapi's `Context` flushes
    /// the transient objects it created), so the TPM's few object slots do not
    /// fill up on a TPM without a resource manager (swtpm, `/dev/tpm0`).
    pub fn create_ak(&mut self) -> Result<AkInfo> {
        self.inner_mut()?.create_ak()
    }

    /// The current attestation key, if one was created.
    pub fn ak(&self) -> Result<Option<AkInfo>> {
        Ok(self.lock()?.ak.as_ref().map(|a| a.info.clone()))
    }

    /// Extend PCR `pcr` (0–23) of the SHA-256 bank with `sha256_digest` (the attester
    /// serialises access, so a shared reference suffices).
    pub fn extend(&self, pcr: u8, sha256_digest: &[u8; 32]) -> Result<()> {
        check_pcr(pcr)?;
        let handle = PcrHandle::try_from(u32::from(pcr)).map_err(AttestError::tpm("PCR handle"))?;
        let mut values = DigestValues::new();
        values.set(
            HashingAlgorithm::Sha256,
            Digest::try_from(sha256_digest.as_slice()).map_err(AttestError::tpm("digest"))?,
        );
        let mut inner = self.lock()?;
        inner
            .ctx
            .execute_with_session(Some(AuthSession::Password), |c| c.pcr_extend(handle, values))
            .map_err(AttestError::tpm("TPM2_PCR_Extend"))
    }

    /// Read PCRs of the SHA-256 bank. Duplicates are read once. The attester
    /// serialises access, so a shared reference suffices.
    pub fn read_pcrs(&self, pcrs: &[u8]) -> Result<BTreeMap<u8, [u8; 32]>> {
        let pcrs = normalise_pcrs(pcrs)?;
        read_pcrs(&mut self.lock()?.ctx, &pcrs)
    }

    /// Quote `pcrs` of the SHA-256 bank with `qualifying_data` (at most the TPM's
    /// largest digest size; 32 bytes fit every TPM) using the AK from
    /// [`TpmAttester::create_ak`]. The quote is self-checked (module docs).
    pub fn quote(&mut self, qualifying_data: &[u8], pcrs: &[u8]) -> Result<TpmQuote> {
        let pcrs = normalise_pcrs(pcrs)?;
        self.inner_mut()?.quote(qualifying_data, &pcrs)
    }

    /// Quote the PCRs of [`TpmAttester::with_quote_pcrs`] with `qualifying_data` through a
    /// shared reference (the attester serialises access), creating the AK on first use:
    /// for protocols whose qualifying-data rule is not [`qualifying_data_for`], such as the
    /// KBS `tpm` TEE and Veil's composite TPM evidence.
    pub fn quote_now(&self, qualifying_data: &[u8]) -> Result<(AkInfo, TpmQuote)> {
        let mut inner = self.lock()?;
        let ak = match &inner.ak {
            Some(ak) => ak.info.clone(),
            None => inner.create_ak()?,
        };
        let quote = inner.quote(qualifying_data, &self.quote_pcrs)?;
        Ok((ak, quote))
    }

    fn inner_mut(&mut self) -> Result<&mut Inner> {
        self.inner.get_mut().map_err(|_| AttestError::Poisoned)
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Inner>> {
        self.inner.lock().map_err(|_| AttestError::Poisoned)
    }
}

impl Attester for TpmAttester {
    /// Quote [`TpmAttester::with_quote_pcrs`] with qualifying data
    /// [`qualifying_data_for`]`(report_data)`, creating the AK on first use.
    fn evidence(&self, report_data: &[u8; 64]) -> Result<Evidence> {
        let mut inner = self.lock()?;
        let ak = match &inner.ak {
            Some(ak) => ak.info.clone(),
            None => inner.create_ak()?,
        };
        let quote = inner.quote(&qualifying_data_for(report_data), &self.quote_pcrs)?;
        Ok(Evidence::Tpm { ak, quote })
    }

    fn tee(&self) -> Result<TeeKind> {
        Ok(TeeKind::Tpm)
    }
}

impl Inner {
    fn create_ak(&mut self) -> Result<AkInfo> {
        if let Some(old) = self.ak.take() {
            let _ = self.ctx.flush_context(old.handle.into());
        }
        let template = ak_template()?;
        let created = self
            .ctx
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.create_primary(Hierarchy::Endorsement, template, None, None, None, None)
            })
            .map_err(AttestError::tpm("TPM2_CreatePrimary"))?;
        let handle = created.key_handle;
        match self.describe_ak(handle, &created.out_public) {
            Ok((info, point)) => {
                self.ak = Some(Ak { handle, info: info.clone(), point });
                Ok(info)
            }
            Err(e) => {
                let _ = self.ctx.flush_context(handle.into());
                Err(e)
            }
        }
    }

    fn describe_ak(&mut self, handle: KeyHandle, public: &Public) -> Result<(AkInfo, [u8; 65])> {
        let Public::Ecc { unique, .. } = public else {
            return Err(AttestError::SelfCheck("CreatePrimary returned a non-ECC public area".into()));
        };
        let x = left_pad_32(unique.x().value(), "AK x coordinate")?;
        let y = left_pad_32(unique.y().value(), "AK y coordinate")?;
        let mut point = [0u8; 65];
        point[0] = 0x04;
        point[1..33].copy_from_slice(&x);
        point[33..].copy_from_slice(&y);

        let public_area = public.marshall().map_err(AttestError::tpm("marshal TPMT_PUBLIC"))?;
        let name = self.ctx.tr_get_name(handle.into()).map_err(AttestError::tpm("Esys_TR_GetName"))?.value().to_vec();
        let mut expected_name = TPM_ALG_SHA256.to_vec();
        expected_name.extend_from_slice(&Sha256::digest(&public_area));
        if name != expected_name {
            return Err(AttestError::SelfCheck(format!(
                "AK name {} is not SHA-256 of its public area ({})",
                hex::encode(&name),
                hex::encode(&expected_name)
            )));
        }

        let mut public_der = P256_SPKI_PREFIX.to_vec();
        public_der.extend_from_slice(&point);
        let public_pem = pem_public_key(&public_der);
        let mut qualified_name = TPM_ALG_SHA256.to_vec();
        qualified_name
            .extend_from_slice(&Sha256::new().chain_update(TPM_RH_ENDORSEMENT).chain_update(&name).finalize());
        Ok((AkInfo { public_pem, public_der, public_area, name, qualified_name }, point))
    }

    fn quote(&mut self, qualifying_data: &[u8], pcrs: &[u8]) -> Result<TpmQuote> {
        let Inner { ctx, ak } = self;
        let ak = ak.as_ref().ok_or(AttestError::NoAk)?;
        let data = Data::try_from(qualifying_data).map_err(|_| AttestError::InvalidArgument {
            what: "qualifying data",
            detail: format!("{} bytes (at most 64, and at most the TPM's largest digest)", qualifying_data.len()),
        })?;
        let selection = selection(pcrs)?;
        for _ in 0..QUOTE_ATTEMPTS {
            let (attest, signature) = ctx
                .execute_with_session(Some(AuthSession::Password), |c| {
                    c.quote(ak.handle, data.clone(), SignatureScheme::Null, selection.clone())
                })
                .map_err(AttestError::tpm("TPM2_Quote"))?;
            let pcr_values = read_pcrs(ctx, pcrs)?;

            let AttestInfo::Quote { info } = attest.attested() else {
                return Err(AttestError::SelfCheck("TPM2_Quote returned an attestation that is not a quote".into()));
            };
            if attest.extra_data().value() != qualifying_data {
                return Err(AttestError::SelfCheck(format!(
                    "extraData {} is not the qualifying data {}",
                    hex::encode(attest.extra_data().value()),
                    hex::encode(qualifying_data)
                )));
            }
            if attest.qualified_signer().value() != ak.info.qualified_name.as_slice() {
                return Err(AttestError::SelfCheck(format!(
                    "qualifiedSigner {} is not the AK's qualified name {}",
                    hex::encode(attest.qualified_signer().value()),
                    hex::encode(&ak.info.qualified_name)
                )));
            }
            check_selection(info.pcr_selection(), pcrs)?;
            let mut h = Sha256::new();
            pcr_values.values().for_each(|v| h.update(v));
            if info.pcr_digest().value() != h.finalize().as_slice() {
                continue; // PCRs moved between the quote and the read: try again.
            }

            let attest_bytes = attest.marshall().map_err(AttestError::tpm("marshal TPMS_ATTEST"))?;
            let signature_bytes = signature.marshall().map_err(AttestError::tpm("marshal TPMT_SIGNATURE"))?;
            verify_signature(&ak.point, &attest_bytes, &signature)?;
            return Ok(TpmQuote { attest: attest_bytes, signature: signature_bytes, pcr_values });
        }
        Err(AttestError::PcrsUnstable { attempts: QUOTE_ATTEMPTS })
    }
}

fn ak_template() -> Result<Public> {
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_restricted(true)
        .with_sign_encrypt(true)
        .with_decrypt(false)
        .build()
        .map_err(AttestError::tpm("AK attributes"))?;
    let parameters = PublicEccParametersBuilder::new()
        .with_symmetric(SymmetricDefinitionObject::Null)
        .with_ecc_scheme(EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)))
        .with_curve(EccCurve::NistP256)
        .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
        .with_is_signing_key(true)
        .with_is_decryption_key(false)
        .with_restricted(true)
        .build()
        .map_err(AttestError::tpm("AK ECC parameters"))?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(parameters)
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(AttestError::tpm("AK template"))
}

fn check_pcr(pcr: u8) -> Result<()> {
    if pcr > MAX_PCR {
        return Err(AttestError::InvalidArgument {
            what: "PCR index",
            detail: format!("{pcr} (allowed: 0 to {MAX_PCR})"),
        });
    }
    Ok(())
}

/// Sorted, deduplicated, each at most [`MAX_PCR`].
fn normalise_pcrs(pcrs: &[u8]) -> Result<Vec<u8>> {
    pcrs.iter().try_for_each(|&p| check_pcr(p))?;
    let mut v = pcrs.to_vec();
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

fn slot(pcr: u8) -> Result<PcrSlot> {
    check_pcr(pcr)?;
    let bit = 1u32.checked_shl(u32::from(pcr)).unwrap_or(0);
    PcrSlot::try_from(bit).map_err(AttestError::tpm("PCR slot"))
}

fn selection(pcrs: &[u8]) -> Result<PcrSelectionList> {
    let slots = pcrs.iter().map(|&p| slot(p)).collect::<Result<Vec<_>>>()?;
    PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
        .map_err(AttestError::tpm("PCR selection"))
}

/// The quote must select exactly `pcrs` in the SHA-256 bank and nothing else.
fn check_selection(list: &PcrSelectionList, pcrs: &[u8]) -> Result<()> {
    let mut selected = Vec::new();
    for s in list.get_selections() {
        let quoted = s.selected();
        if quoted.is_empty() {
            continue;
        }
        if s.hashing_algorithm() != HashingAlgorithm::Sha256 {
            return Err(AttestError::SelfCheck(format!("quote selects PCRs of bank {:?}", s.hashing_algorithm())));
        }
        for slot in quoted {
            let bit = u32::from(slot);
            selected.push(u8::try_from(bit.trailing_zeros()).unwrap_or(u8::MAX));
        }
    }
    selected.sort_unstable();
    if selected != pcrs {
        return Err(AttestError::SelfCheck(format!("quote selects PCRs {selected:?}, asked for {pcrs:?}")));
    }
    Ok(())
}

/// Read `pcrs` (sorted, unique) of the SHA-256 bank, at most eight per command
/// (the size of a TPML_DIGEST). Every requested PCR must come back: a TPM without
/// an allocated SHA-256 bank returns none, which is an error here rather than a
/// loop (tss-esapi's `read_all` would retry forever).
fn read_pcrs(ctx: &mut Context, pcrs: &[u8]) -> Result<BTreeMap<u8, [u8; 32]>> {
    let mut out = BTreeMap::new();
    for chunk in pcrs.chunks(8) {
        let (_, read, digests) =
            ctx.execute_without_session(|c| c.pcr_read(selection(chunk)?).map_err(AttestError::tpm("TPM2_PCR_Read")))?;
        let data = tss_esapi::abstraction::pcr::PcrData::create(&read, &digests)
            .map_err(AttestError::tpm("TPM2_PCR_Read result"))?;
        let bank = data.pcr_bank(HashingAlgorithm::Sha256);
        for &pcr in chunk {
            let digest = bank.and_then(|b| slot(pcr).ok().and_then(|s| b.get_digest(s))).ok_or_else(|| {
                AttestError::SelfCheck(format!(
                    "TPM2_PCR_Read returned no SHA-256 value for PCR {pcr} (bank not allocated?)"
                ))
            })?;
            let value = <[u8; 32]>::try_from(digest.value()).map_err(|_| {
                AttestError::SelfCheck(format!("PCR {pcr} value is {} bytes, expected 32", digest.value().len()))
            })?;
            out.insert(pcr, value);
        }
    }
    Ok(out)
}

fn verify_signature(point: &[u8; 65], message: &[u8], signature: &Signature) -> Result<()> {
    let Signature::EcDsa(sig) = signature else {
        return Err(AttestError::SelfCheck(format!("quote signature is {:?}, expected ECDSA", signature.algorithm())));
    };
    if sig.hashing_algorithm() != HashingAlgorithm::Sha256 {
        return Err(AttestError::SelfCheck(format!(
            "quote signature hash is {:?}, expected SHA-256",
            sig.hashing_algorithm()
        )));
    }
    let mut fixed = [0u8; 64];
    fixed[..32].copy_from_slice(&left_pad_32(sig.signature_r().value(), "signature r")?);
    fixed[32..].copy_from_slice(&left_pad_32(sig.signature_s().value(), "signature s")?);
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, point)
        .verify(message, &fixed)
        .map_err(|_| {
            AttestError::SelfCheck("quote signature does not verify with the AK over the marshalled TPMS_ATTEST".into())
        })
}

/// A P-256 coordinate or scalar as 32 big-endian bytes (the TPM may drop leading zeros).
fn left_pad_32(v: &[u8], what: &str) -> Result<[u8; 32]> {
    let mut out = [0u8; 32];
    let tail = 32usize.checked_sub(v.len()).and_then(|start| out.get_mut(start..));
    let tail = tail.ok_or_else(|| AttestError::SelfCheck(format!("{what} is {} bytes, more than 32", v.len())))?;
    tail.copy_from_slice(v);
    Ok(out)
}

fn pem_public_key(der: &[u8]) -> Vec<u8> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
    let bytes = b64.as_bytes();
    for line in bytes.chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END PUBLIC KEY-----\n");
    pem.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcr_lists_are_checked_sorted_and_unique() {
        assert_eq!(normalise_pcrs(&[23, 0, 7, 0]).unwrap(), vec![0, 7, 23]);
        assert!(matches!(normalise_pcrs(&[24]), Err(AttestError::InvalidArgument { .. })));
    }

    #[test]
    fn left_pad_restores_dropped_zeros() {
        let p = left_pad_32(&[1, 2], "x").unwrap();
        assert_eq!(&p[..30], &[0u8; 30]);
        assert_eq!(&p[30..], &[1, 2]);
        assert!(left_pad_32(&[0u8; 33], "x").is_err());
    }

    #[test]
    fn pem_wraps_at_64_columns() {
        let pem = String::from_utf8(pem_public_key(&[0u8; 91])).unwrap();
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines.first(), Some(&"-----BEGIN PUBLIC KEY-----"));
        assert_eq!(lines.last(), Some(&"-----END PUBLIC KEY-----"));
        assert!(lines.iter().all(|l| l.len() <= 64));
        assert_eq!(lines.len(), 4); // 91 bytes -> 124 base64 chars -> 2 lines
    }
}
