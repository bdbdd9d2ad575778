//! ECDSA keys in PEM: private keys as PKCS#8 (`PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`),
//! public keys as SubjectPublicKeyInfo (`PUBLIC KEY`). Curves P-256 (SHA-256) and
//! P-384 (SHA-384), as `model_signing` pairs them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use sha2::{Digest as _, Sha256};

use crate::Error;

/// DER prefix of a P-256 SubjectPublicKeyInfo up to the uncompressed point (RFC 5480).
const SPKI_P256: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
    0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// DER prefix of a P-384 SubjectPublicKeyInfo up to the uncompressed point (RFC 5480).
const SPKI_P384: &[u8] = &[
    0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00,
    0x22, 0x03, 0x62, 0x00,
];

/// The curves supported, each with the hash `model_signing` uses with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256 with SHA-256.
    P256,
    /// NIST P-384 with SHA-384.
    P384,
}

impl Curve {
    fn spki_prefix(self) -> &'static [u8] {
        match self {
            Curve::P256 => SPKI_P256,
            Curve::P384 => SPKI_P384,
        }
    }
    fn scalar_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
    fn signing_alg(self) -> &'static signature::EcdsaSigningAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            Curve::P384 => &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        }
    }
    fn verify_alg(self) -> &'static signature::EcdsaVerificationAlgorithm {
        match self {
            Curve::P256 => &signature::ECDSA_P256_SHA256_ASN1,
            Curve::P384 => &signature::ECDSA_P384_SHA384_ASN1,
        }
    }
    /// The curve's OID in DER (the SEC1 `parameters` field).
    fn oid_der(self) -> &'static [u8] {
        match self {
            Curve::P256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            Curve::P384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
        }
    }
}

/// Decodes the first PEM block with one of `labels`; returns (label, DER).
fn pem_decode<'l>(pem: &[u8], labels: &[&'l str]) -> Result<(&'l str, Vec<u8>), Error> {
    let text = std::str::from_utf8(pem).map_err(|_| Error::Key("PEM is not UTF-8"))?;
    for &label in labels {
        let begin = format!("-----BEGIN {label}-----");
        let end = format!("-----END {label}-----");
        let Some(start) = text.find(&begin) else { continue };
        let body = text.get(start + begin.len()..).ok_or(Error::Key("truncated PEM"))?;
        let stop = body.find(&end).ok_or(Error::Key("PEM block has no END line"))?;
        let b64: String = body.get(..stop).unwrap_or_default().split_whitespace().collect();
        let der = STANDARD.decode(b64).map_err(|_| Error::Key("PEM body is not base64"))?;
        return Ok((label, der));
    }
    Err(Error::Key("no PEM block of a supported kind"))
}

/// Encodes DER as PEM the way OpenSSL and Python's `cryptography` do (64-column lines,
/// trailing newline).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// An ECDSA public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    curve: Curve,
    spki_der: Vec<u8>,
}

impl PublicKey {
    /// Parses a `PUBLIC KEY` (SubjectPublicKeyInfo) PEM for P-256 or P-384.
    pub fn from_pem(pem: &[u8]) -> Result<Self, Error> {
        let (_, der) = pem_decode(pem, &["PUBLIC KEY"])?;
        Self::from_spki_der(&der)
    }

    /// Parses a DER SubjectPublicKeyInfo for P-256 or P-384 (uncompressed point). The
    /// encoding of these keys is fixed, so the exact prefix and length are required.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, Error> {
        for curve in [Curve::P256, Curve::P384] {
            let prefix = curve.spki_prefix();
            if der.len() == prefix.len() + 1 + 2 * curve.scalar_len() && der.starts_with(prefix) {
                if der.get(prefix.len()) != Some(&0x04) {
                    return Err(Error::Key("public key point is not uncompressed"));
                }
                return Ok(Self { curve, spki_der: der.to_vec() });
            }
        }
        Err(Error::Key("public key is not an uncompressed EC P-256 or P-384 SubjectPublicKeyInfo"))
    }

    /// The curve.
    pub fn curve(&self) -> Curve {
        self.curve
    }

    /// The DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The PEM SubjectPublicKeyInfo text as Python's `cryptography` writes it.
    pub fn spki_pem(&self) -> String {
        pem_encode("PUBLIC KEY", &self.spki_der)
    }

    /// The Veil signer identity: `sha256:<hex of SHA-256 of the DER SPKI>`.
    pub fn signer_id(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(&self.spki_der)))
    }

    /// Verifies a DER ECDSA signature over `message` with the curve's hash.
    pub fn verify(&self, message: &[u8], sig_der: &[u8]) -> Result<(), Error> {
        let point = self.spki_der.get(self.curve.spki_prefix().len()..).ok_or(Error::Signature)?;
        signature::UnparsedPublicKey::new(self.curve.verify_alg(), point)
            .verify(message, sig_der)
            .map_err(|_| Error::Signature)
    }
}

/// An ECDSA private key for signing.
#[derive(Debug)]
pub struct SigningKey {
    curve: Curve,
    pair: EcdsaKeyPair,
    rng: SystemRandom,
}

impl SigningKey {
    /// Parses a PKCS#8 `PRIVATE KEY` or SEC1 `EC PRIVATE KEY` PEM for P-256 or P-384.
    pub fn from_pem(pem: &[u8]) -> Result<Self, Error> {
        let rng = SystemRandom::new();
        let (label, der) = pem_decode(pem, &["PRIVATE KEY", "EC PRIVATE KEY"])?;
        if label == "PRIVATE KEY" {
            for curve in [Curve::P256, Curve::P384] {
                if let Ok(pair) = EcdsaKeyPair::from_pkcs8(curve.signing_alg(), &der, &rng) {
                    return Ok(Self { curve, pair, rng });
                }
            }
            return Err(Error::Key("private key is not a PKCS#8 EC P-256 or P-384 key"));
        }
        let (curve, scalar, point) = parse_sec1(&der)?;
        let pair = EcdsaKeyPair::from_private_key_and_public_key(curve.signing_alg(), scalar, point, &rng)
            .map_err(|_| Error::Key("SEC1 private and public key do not form a valid pair"))?;
        Ok(Self { curve, pair, rng })
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        let mut spki_der = self.curve.spki_prefix().to_vec();
        spki_der.extend_from_slice(self.pair.public_key().as_ref());
        PublicKey { curve: self.curve, spki_der }
    }

    /// Signs `message`, returning a DER ECDSA signature.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(self.pair.sign(&self.rng, message).map_err(|_| Error::Signing)?.as_ref().to_vec())
    }
}

/// Parses an RFC 5915 `ECPrivateKey` in the one layout OpenSSL writes for these curves
/// (version 1, private key, named-curve parameters, public key), requiring every tag and
/// length exactly; ring then checks that the scalar and the point belong together.
fn parse_sec1(der: &[u8]) -> Result<(Curve, &[u8], &[u8]), Error> {
    const ERR: Error = Error::Key("EC PRIVATE KEY is not an OpenSSL-layout SEC1 P-256 or P-384 key");
    for curve in [Curve::P256, Curve::P384] {
        let n = curve.scalar_len();
        let oid = curve.oid_der();
        let point_len = 1 + 2 * n;
        // [1] { BIT STRING { 0 unused bits, point } }
        let bit_string_len = 1 + point_len;
        let pub_field_len = 2 + bit_string_len;
        let body_len = 3 + (2 + n) + (2 + oid.len()) + (2 + pub_field_len);
        let mut expect = Vec::new();
        expect.push(0x30);
        if body_len >= 0x80 {
            expect.extend_from_slice(&[0x81, body_len as u8]);
        } else {
            expect.push(body_len as u8);
        }
        let header_len = expect.len();
        if der.len() != header_len + body_len || !der.starts_with(&expect) {
            continue;
        }
        let n_byte = u8::try_from(n).map_err(|_| ERR)?;
        if der.get(header_len..header_len + 5) != Some(&[0x02, 0x01, 0x01, 0x04, n_byte][..]) {
            return Err(ERR);
        }
        let scalar_start = header_len + 5;
        let scalar = der.get(scalar_start..scalar_start + n).ok_or(ERR)?;
        let after_scalar = der.get(scalar_start + n..).ok_or(ERR)?;
        let mut rest = after_scalar;
        let mut expect_tail = vec![0xa0, oid.len() as u8];
        expect_tail.extend_from_slice(oid);
        expect_tail.extend_from_slice(&[0xa1, pub_field_len as u8, 0x03, bit_string_len as u8, 0x00]);
        rest = rest.strip_prefix(expect_tail.as_slice()).ok_or(ERR)?;
        if rest.len() != point_len {
            return Err(ERR);
        }
        return Ok((curve, scalar, rest));
    }
    Err(ERR)
}
