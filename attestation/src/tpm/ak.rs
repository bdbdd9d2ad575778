//! The attestation key (AK): its public key from an SPKI (PEM or DER), from RSA
//! components (Azure's HCLAkPub JWK) or from a `TPMT_PUBLIC`, and the check of a
//! quote signature with ring.
//!
//! Every form is reduced to one canonical `SubjectPublicKeyInfo` DER encoding, so
//! [`AkPublic::spki_sha256`] names the same key the same way whichever form it came
//! in, and "the AK certificate's key equals the AK" is a byte comparison.

use crate::crypto::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::structures::{HashAlg, SigScheme, Signature, SignatureValue, tpm2b};
use crate::error::{Error, ParseError, Result};
use crate::reader::Reader;
use crate::x509::oid;

const AK: &str = "AK public key";
const TPMT_PUBLIC: &str = "TPMT_PUBLIC";

/// An elliptic curve Veil verifies TPM signatures on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256 (`TPM_ECC_NIST_P256`).
    P256,
    /// NIST P-384 (`TPM_ECC_NIST_P384`).
    P384,
}

impl Curve {
    /// Field element length in bytes.
    pub fn field_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    /// DER encoding of the curve's OID (prime256v1 / secp384r1).
    fn oid_der(self) -> &'static [u8] {
        match self {
            Curve::P256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            Curve::P384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    /// Modulus and public exponent, big-endian, without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed SEC1 point `04 || x || y`.
    Ec { curve: Curve, point: Vec<u8> },
}

/// The public part of a TPM attestation key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AkPublic {
    key: Key,
    /// Canonical DER SubjectPublicKeyInfo.
    spki: Vec<u8>,
    /// TPM name (nameAlg || H(TPMT_PUBLIC)) when the key came as a `TPMT_PUBLIC`.
    name: Option<Vec<u8>>,
    /// The key's own signing scheme when the key came as a `TPMT_PUBLIC`.
    scheme: Option<(SigScheme, HashAlg)>,
}

impl AkPublic {
    /// A key from a PEM `PUBLIC KEY` block or a DER `SubjectPublicKeyInfo` (RSA, or
    /// EC on P-256/P-384).
    pub fn from_pem_or_der(bytes: &[u8]) -> Result<Self> {
        let n = bytes.iter().take_while(|c| c.is_ascii_whitespace()).count();
        let trimmed = bytes.get(n..).unwrap_or(&[]);
        if !trimmed.starts_with(b"-----BEGIN") {
            return Self::from_spki_der(bytes);
        }
        let mut blocks = x509_parser::pem::Pem::iter_from_buffer(bytes);
        let pem = match blocks.next() {
            Some(Ok(p)) => p,
            Some(Err(e)) => return Err(ParseError::new(AK, "PEM", format!("bad PEM: {e}")).into()),
            None => return Err(ParseError::new(AK, "PEM", "no PEM block").into()),
        };
        if pem.label != "PUBLIC KEY" {
            return Err(
                ParseError::new(AK, "PEM", format!("expected a PUBLIC KEY block, found {:?}", pem.label)).into()
            );
        }
        if blocks.next().is_some() {
            return Err(ParseError::new(AK, "PEM", "more than one PEM block").into());
        }
        Self::from_spki_der(&pem.contents)
    }

    /// A key from a DER `SubjectPublicKeyInfo`.
    pub fn from_spki_der(der: &[u8]) -> Result<Self> {
        let spki = match SubjectPublicKeyInfo::from_der(der) {
            Ok(([], spki)) => spki,
            Ok((rest, _)) => {
                return Err(
                    ParseError::new(AK, "SubjectPublicKeyInfo", format!("{} trailing bytes", rest.len())).into()
                );
            }
            Err(e) => return Err(ParseError::new(AK, "SubjectPublicKeyInfo", format!("not DER: {e}")).into()),
        };
        Self::from_spki(&spki)
    }

    /// A key from a parsed `SubjectPublicKeyInfo` (e.g. a certificate's).
    pub(crate) fn from_spki(spki: &SubjectPublicKeyInfo<'_>) -> Result<Self> {
        let key_oid = spki.algorithm.algorithm.to_id_string();
        match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) if key_oid == oid::RSA => Self::from_rsa_components(rsa.modulus, rsa.exponent),
            Ok(PublicKey::EC(point)) if key_oid == oid::EC_PUBLIC_KEY => {
                let curve_oid =
                    spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
                let curve = match curve_oid.as_deref() {
                    Some(oid::P256) => Curve::P256,
                    Some(oid::P384) => Curve::P384,
                    other => {
                        return Err(ParseError::new(AK, "curve", format!("unsupported curve {other:?}")).into());
                    }
                };
                Self::from_ec_point(curve, point.data())
            }
            Ok(_) => Err(ParseError::new(AK, "algorithm", format!("unsupported key algorithm {key_oid}")).into()),
            Err(e) => Err(ParseError::new(AK, "subjectPublicKey", format!("malformed key: {e}")).into()),
        }
    }

    /// An RSA key from its big-endian modulus and public exponent (leading zeros
    /// are ignored). Used for Azure's HCLAkPub JWK.
    pub fn from_rsa_components(n: &[u8], e: &[u8]) -> Result<Self> {
        let n = strip_zeros(n);
        let e = strip_zeros(e);
        if n.len() < 256 || n.len() > 1024 {
            return Err(ParseError::new(
                AK,
                "modulus",
                format!("{}-bit modulus; 2048 to 8192 bits supported", n.len().saturating_mul(8)),
            )
            .into());
        }
        if n.last().is_none_or(|b| b & 1 == 0) {
            return Err(ParseError::new(AK, "modulus", "even modulus").into());
        }
        if e.is_empty() || e.len() > 4 || e.last().is_none_or(|b| b & 1 == 0) || e == [1] {
            return Err(ParseError::new(AK, "exponent", format!("invalid public exponent {}", hex::encode(e))).into());
        }
        let rsa_key = der(0x30, &[der_uint(n), der_uint(e)].concat());
        let spki = der(
            0x30,
            &[
                der(
                    0x30,
                    &[&[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01][..], &[0x05, 0x00]].concat(),
                ),
                bit_string(&rsa_key),
            ]
            .concat(),
        );
        Ok(Self { key: Key::Rsa { n: n.to_vec(), e: e.to_vec() }, spki, name: None, scheme: None })
    }

    /// An EC key from its SEC1 uncompressed point (`04 || x || y`).
    pub fn from_ec_point(curve: Curve, point: &[u8]) -> Result<Self> {
        let want = curve.field_len().saturating_mul(2).saturating_add(1);
        if point.len() != want || point.first() != Some(&0x04) {
            return Err(ParseError::new(
                AK,
                "point",
                format!("expected an uncompressed point of {want} bytes, found {} bytes", point.len()),
            )
            .into());
        }
        let spki = der(
            0x30,
            &[
                der(0x30, &[&[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01][..], curve.oid_der()].concat()),
                bit_string(point),
            ]
            .concat(),
        );
        Ok(Self { key: Key::Ec { curve, point: point.to_vec() }, spki, name: None, scheme: None })
    }

    /// A key from a `TPMT_PUBLIC` (TPM 2.0 Part 2 §12.2.4), as `TPM2_ReadPublic`
    /// returns it. The key must be a restricted signing key (an AK): only then does
    /// the TPM refuse to sign data that starts with `TPM_GENERATED_VALUE`, which is
    /// what makes a signed `TPMS_ATTEST` trustworthy. Records the TPM name
    /// (`nameAlg || H(TPMT_PUBLIC)`) and the key's signing scheme.
    pub fn from_tpmt_public(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, TPMT_PUBLIC);
        let ty = r.u16_be("type")?;
        let name_alg_id = r.u16_be("nameAlg")?;
        let name_alg = HashAlg::from_alg_id(name_alg_id)
            .ok_or_else(|| r.error("nameAlg", format!("unsupported name algorithm {name_alg_id:#06x}")))?;
        let attrs = r.u32_be("objectAttributes")?;
        const SIGN: u32 = 1 << 18;
        const DECRYPT: u32 = 1 << 17;
        const RESTRICTED: u32 = 1 << 16;
        if attrs & SIGN == 0 || attrs & RESTRICTED == 0 || attrs & DECRYPT != 0 {
            return Err(r
                .error(
                    "objectAttributes",
                    format!("{attrs:#010x} is not a restricted signing key (sign, restricted, not decrypt)"),
                )
                .into());
        }
        tpm2b(&mut r, "authPolicy", 64)?;
        let sym = r.u16_be("parameters.symmetric.algorithm")?;
        if sym != ALG_NULL {
            return Err(r
                .error("parameters.symmetric", format!("a signing key has symmetric TPM_ALG_NULL, found {sym:#06x}"))
                .into());
        }
        let scheme_id = r.u16_be("parameters.scheme.scheme")?;
        let scheme = SigScheme::from_alg_id(scheme_id)
            .ok_or_else(|| r.error("parameters.scheme", format!("unsupported AK signing scheme {scheme_id:#06x}")))?;
        let h = r.u16_be("parameters.scheme.hashAlg")?;
        let hash = HashAlg::from_alg_id(h)
            .ok_or_else(|| r.error("parameters.scheme.hashAlg", format!("unsupported hash {h:#06x}")))?;
        let mut key = match ty {
            ALG_RSA => {
                if !scheme.is_rsa() {
                    return Err(r.error("parameters.scheme", "RSA key with a non-RSA scheme").into());
                }
                let _key_bits = r.u16_be("parameters.keyBits")?;
                let exponent = r.u32_be("parameters.exponent")?;
                let exponent = if exponent == 0 { 65537 } else { exponent };
                let n = tpm2b(&mut r, "unique.rsa", 1024)?;
                Self::from_rsa_components(n, &exponent.to_be_bytes())?
            }
            ALG_ECC => {
                if scheme != SigScheme::Ecdsa {
                    return Err(r.error("parameters.scheme", "ECC key with a non-ECDSA scheme").into());
                }
                let curve = match r.u16_be("parameters.curveID")? {
                    0x0003 => Curve::P256,
                    0x0004 => Curve::P384,
                    c => return Err(r.error("parameters.curveID", format!("unsupported curve {c:#06x}")).into()),
                };
                let kdf = r.u16_be("parameters.kdf.scheme")?;
                if kdf != ALG_NULL {
                    r.u16_be("parameters.kdf.hashAlg")?;
                }
                let x = tpm2b(&mut r, "unique.ecc.x", 66)?;
                let y = tpm2b(&mut r, "unique.ecc.y", 66)?;
                let x =
                    left_pad(x, curve.field_len()).ok_or_else(|| r.error("unique.ecc.x", "longer than the curve"))?;
                let y =
                    left_pad(y, curve.field_len()).ok_or_else(|| r.error("unique.ecc.y", "longer than the curve"))?;
                Self::from_ec_point(curve, &[&[0x04][..], &x, &y].concat())?
            }
            t => return Err(r.error("type", format!("unsupported key type {t:#06x}")).into()),
        };
        r.expect_end("end of TPMT_PUBLIC")?;
        let mut name = name_alg_id.to_be_bytes().to_vec();
        name.extend_from_slice(&name_alg.digest(bytes));
        key.name = Some(name);
        key.scheme = Some((scheme, hash));
        Ok(key)
    }

    /// A key in any of the supported encodings: PEM or DER `SubjectPublicKeyInfo`,
    /// or a `TPMT_PUBLIC` (told apart by the first byte: DER starts with 0x30, a
    /// `TPMT_PUBLIC` with the high byte of `TPM_ALG_RSA`/`TPM_ALG_ECC`, 0x00).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        match bytes.first() {
            Some(0x00) => Self::from_tpmt_public(bytes),
            _ => Self::from_pem_or_der(bytes),
        }
    }

    /// The canonical DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// SHA-256 of the canonical DER `SubjectPublicKeyInfo`.
    pub fn spki_sha256(&self) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(&self.spki).into()
    }

    /// The TPM name (`nameAlg || H(TPMT_PUBLIC)`), when known.
    pub fn name(&self) -> Option<&[u8]> {
        self.name.as_deref()
    }

    /// "rsa-2048", "ecc-p256", ...
    pub fn describe(&self) -> String {
        match &self.key {
            Key::Rsa { n, .. } => format!("rsa-{}", n.len().saturating_mul(8)),
            Key::Ec { curve: Curve::P256, .. } => "ecc-p256".into(),
            Key::Ec { curve: Curve::P384, .. } => "ecc-p384".into(),
        }
    }

    /// Verify `sig` over `msg` (the bytes as received) with this key. The scheme
    /// must fit the key type (and the key's own scheme, when known); SHA-1
    /// signatures are refused.
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> Result<()> {
        const WHAT: &str = "TPM quote signature by the AK";
        if let Some((scheme, hash)) = self.scheme {
            if scheme != sig.scheme() || hash != sig.hash() {
                return Err(Error::Signature {
                    what: "TPM quote signature: its scheme is not the AK's signing scheme",
                });
            }
        }
        if sig.hash() == HashAlg::Sha1 {
            return Err(Error::Signature { what: "TPM quote signature: SHA-1 signatures are not accepted" });
        }
        match (&self.key, sig.value()) {
            (Key::Rsa { n, e }, SignatureValue::Rsa(s)) => {
                let params: &'static signature::RsaParameters = match (sig.scheme(), sig.hash()) {
                    (SigScheme::RsaSsa, HashAlg::Sha256) => &signature::RSA_PKCS1_2048_8192_SHA256,
                    (SigScheme::RsaSsa, HashAlg::Sha384) => &signature::RSA_PKCS1_2048_8192_SHA384,
                    (SigScheme::RsaSsa, HashAlg::Sha512) => &signature::RSA_PKCS1_2048_8192_SHA512,
                    (SigScheme::RsaPss, HashAlg::Sha256) => &signature::RSA_PSS_2048_8192_SHA256,
                    (SigScheme::RsaPss, HashAlg::Sha384) => &signature::RSA_PSS_2048_8192_SHA384,
                    (SigScheme::RsaPss, HashAlg::Sha512) => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return Err(Error::Signature { what: "TPM quote signature: unsupported RSA scheme" }),
                };
                RsaPublicKeyComponents { n: n.as_slice(), e: e.as_slice() }
                    .verify(params, msg, s)
                    .map_err(|_| Error::Signature { what: WHAT })
            }
            (Key::Ec { curve, point }, SignatureValue::Ecdsa { r, s }) if sig.scheme() == SigScheme::Ecdsa => {
                let bad = Error::Signature { what: "TPM quote signature: ECDSA r or s longer than the curve" };
                let flen = curve.field_len();
                let r = left_pad(r, flen).ok_or_else(|| bad.clone())?;
                let s = left_pad(s, flen).ok_or(bad)?;
                // ring has fixed-length (r || s) verifiers for the matching
                // curve/hash pairs; the crossed pairs exist only as ASN.1.
                let (alg, sig_bytes): (&'static dyn signature::VerificationAlgorithm, Vec<u8>) =
                    match (curve, sig.hash()) {
                        (Curve::P256, HashAlg::Sha256) => (&signature::ECDSA_P256_SHA256_FIXED, [r, s].concat()),
                        (Curve::P384, HashAlg::Sha384) => (&signature::ECDSA_P384_SHA384_FIXED, [r, s].concat()),
                        (Curve::P256, HashAlg::Sha384) => (&signature::ECDSA_P256_SHA384_ASN1, ecdsa_der(&r, &s)),
                        (Curve::P384, HashAlg::Sha256) => (&signature::ECDSA_P384_SHA256_ASN1, ecdsa_der(&r, &s)),
                        _ => {
                            return Err(Error::Signature {
                                what: "TPM quote signature: unsupported ECDSA curve/hash pair",
                            });
                        }
                    };
                UnparsedPublicKey::new(alg, point).verify(msg, &sig_bytes).map_err(|_| Error::Signature { what: WHAT })
            }
            _ => Err(Error::Signature {
                what: "TPM quote signature: the signature scheme does not fit the AK's key type",
            }),
        }
    }
}

const ALG_RSA: u16 = 0x0001;
const ALG_ECC: u16 = 0x0023;
const ALG_NULL: u16 = 0x0010;

fn strip_zeros(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|&&x| x == 0).count();
    b.get(n..).unwrap_or(&[])
}

/// `b` without leading zeros, left-padded with zeros to exactly `len` bytes; `None`
/// if it does not fit.
fn left_pad(b: &[u8], len: usize) -> Option<Vec<u8>> {
    let b = strip_zeros(b);
    let pad = len.checked_sub(b.len())?;
    let mut out = vec![0u8; pad];
    out.extend_from_slice(b);
    Some(out)
}

/// A DER TLV. Hand-written (a few lines) because only SPKI and ECDSA-Sig-Value
/// need encoding here; parsing uses x509-parser.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if let Ok(short) = u8::try_from(len) {
        if short < 0x80 {
            out.push(short);
        } else {
            out.extend_from_slice(&[0x81, short]);
        }
    } else {
        let bytes = len.to_be_bytes();
        let body = strip_zeros(&bytes);
        // At most 8 length bytes: the count fits the 7-bit field.
        out.push(0x80 | u8::try_from(body.len()).unwrap_or(0x7f));
        out.extend_from_slice(body);
    }
    out.extend_from_slice(content);
    out
}

/// A DER INTEGER for an unsigned big-endian value.
fn der_uint(v: &[u8]) -> Vec<u8> {
    let v = strip_zeros(v);
    match v.first() {
        None => der(0x02, &[0]),
        Some(&b) if b & 0x80 != 0 => der(0x02, &[&[0][..], v].concat()),
        Some(_) => der(0x02, v),
    }
}

fn bit_string(v: &[u8]) -> Vec<u8> {
    der(0x03, &[&[0][..], v].concat())
}

fn ecdsa_der(r: &[u8], s: &[u8]) -> Vec<u8> {
    der(0x30, &[der_uint(r), der_uint(s)].concat())
}
