//! EAR attestation results (draft-ietf-rats-ear) as JWTs, in the shape Trustee's
//! attestation service issues (PROTOCOLS.md section 2), with Veil's appraised claims as an
//! extension of each submodule. Signed ES256 with jsonwebtoken (aws-lc-rs backend).

use std::collections::BTreeMap;

use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64U;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters, Jwk, JwkSet,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::{Error, TeePubKey};

/// The EAT profile Trustee uses.
pub const EAT_PROFILE: &str = "tag:github.com,2024:confidential-containers/Trustee";

/// The AR4SI trustworthiness claims, in the order EAR lists them.
pub const TRUST_CLAIMS: [&str; 8] = [
    "instance-identity",
    "configuration",
    "executables",
    "file-system",
    "hardware",
    "runtime-opaque",
    "storage-opaque",
    "sourced-data",
];

/// An EAR status tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// No claim was made.
    None,
    /// Every claim is in the affirming range (2..=31).
    Affirming,
    /// Some claim is in the warning range (32..=95).
    Warning,
    /// Some claim is in the contraindicated range (96..=127).
    Contraindicated,
}

impl Status {
    /// The tier of one AR4SI value (draft-ietf-rats-ar4si: -1..=1 none — 0 no claim,
    /// 1 unexpected evidence, -1 verifier malfunction —, 2..=31 affirming, 32..=95 warning,
    /// 96..=127 contraindicated; negatives mirror).
    pub fn of(value: i8) -> Self {
        match value.unsigned_abs() {
            0 | 1 => Status::None,
            2..=31 => Status::Affirming,
            32..=95 => Status::Warning,
            _ => Status::Contraindicated,
        }
    }

    /// The status of a vector: the worst tier, `None` only when every claim is 0.
    pub fn of_vector(v: &BTreeMap<String, i8>) -> Self {
        v.values().map(|x| Status::of(*x)).max().unwrap_or(Status::None)
    }
}

/// Veil's appraised claims, carried as the `veil` extension of a submodule.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct VeilClaims {
    /// The TEE type as the protocol names it (`snp`, `tdx`, ...).
    pub tee: String,
    /// True when the evidence chained to the Veil simulator's roots (or is `sample`).
    pub simulated: bool,
    /// Whether the guest runs with debug enabled.
    pub debug: bool,
    /// The launch measurement (SNP MEASUREMENT / TDX MRTD), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement: Option<String>,
    /// The TCB status (TDX) or reported TCB (SNP), as the verifier states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcb: Option<String>,
    /// Host data / MRCONFIGID (hex): the launch-time init-data digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_data: Option<String>,
    /// The container image digest, when the runtime log carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The model manifest digest, when the runtime log carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The model signer, when the runtime log carries it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
}

/// One appraised component (`cpu0`, ...).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Submod {
    /// The status derived from the vector.
    #[serde(rename = "ear.status")]
    pub status: Status,
    /// The trustworthiness vector.
    #[serde(rename = "ear.trustworthiness-vector")]
    pub vector: BTreeMap<String, i8>,
    /// The appraisal policy's id.
    #[serde(rename = "ear.appraisal-policy-id")]
    pub policy_id: String,
    /// `{report_data, runtime_data_claims: {nonce, tee-pubkey}, <tee>: claims}`.
    #[serde(rename = "ear.veraison.annotated-evidence")]
    pub annotated_evidence: serde_json::Value,
    /// Veil's appraised claims.
    pub veil: VeilClaims,
}

/// The verifier's identity.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct VerifierId {
    /// Who built the verifier.
    pub developer: String,
    /// Its build.
    pub build: String,
}

/// The EAR claims set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EarClaims {
    /// [`EAT_PROFILE`].
    pub eat_profile: String,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Issuer.
    pub iss: String,
    /// The verifier.
    #[serde(rename = "ear.verifier-id")]
    pub verifier_id: VerifierId,
    /// Components by name.
    pub submods: BTreeMap<String, Submod>,
}

impl EarClaims {
    /// The TEE public key the token was issued to
    /// (`/submods/cpu0/ear.veraison.annotated-evidence/runtime_data_claims/tee-pubkey`).
    pub fn tee_pubkey(&self) -> Result<TeePubKey, Error> {
        let v = self
            .submods
            .get("cpu0")
            .and_then(|s| s.annotated_evidence.pointer("/runtime_data_claims/tee-pubkey"))
            .ok_or_else(|| Error::Token("no cpu0 runtime_data_claims.tee-pubkey".into()))?;
        serde_json::from_value(v.clone()).map_err(|e| Error::Token(format!("tee-pubkey: {e}")))
    }
}

/// The broker's token signing key (ES256).
pub struct TokenKey {
    pkcs8: Zeroizing<Vec<u8>>,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey").field("kid", &self.jwk.common.key_id).finish_non_exhaustive()
    }
}

impl TokenKey {
    /// A fresh P-256 key.
    pub fn generate() -> Result<Self, Error> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|_| Error::Crypto)?;
        Self::from_pkcs8(doc.as_ref())
    }

    /// The key from PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, Error> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .map_err(|_| Error::Token("token key is not a P-256 PKCS#8 key".into()))?;
        let point = pair.public_key().as_ref();
        let (x, y) = match point {
            [0x04, rest @ ..] if rest.len() == 64 => rest.split_at(32),
            _ => return Err(Error::Crypto),
        };
        let kid = hex::encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, point).as_ref().get(..8).unwrap_or_default(),
        );
        let jwk = Jwk {
            common: CommonParameters {
                key_algorithm: Some(jsonwebtoken::jwk::KeyAlgorithm::ES256),
                key_id: Some(kid),
                ..CommonParameters::default()
            },
            algorithm: AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                key_type: jsonwebtoken::jwk::EllipticCurveKeyType::EC,
                curve: EllipticCurve::P256,
                x: B64U.encode(x),
                y: B64U.encode(y),
            }),
        };
        Ok(Self { pkcs8: Zeroizing::new(der.to_vec()), encoding: EncodingKey::from_ec_der(der), jwk })
    }

    /// The PKCS#8 DER (for the broker's own key file).
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key as a JWK set (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> JwkSet {
        JwkSet { keys: vec![self.jwk.clone()] }
    }

    /// Signs `claims` as a JWT with `kid` and the public `jwk` in the header.
    pub fn sign(&self, claims: &EarClaims) -> Result<String, Error> {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("JWT".into());
        header.kid = self.jwk.common.key_id.clone();
        header.jwk = Some(self.jwk.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(|e| Error::Token(e.to_string()))
    }
}

/// Verifies an EAR JWT against a trusted JWK set (the broker's), never against a key the
/// token carries in its own header: ES256 only, `exp` checked with no leeway.
pub fn verify(token: &str, trusted: &JwkSet) -> Result<EarClaims, Error> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| Error::Token(format!("header: {e}")))?;
    if header.alg != Algorithm::ES256 {
        return Err(Error::Token(format!("algorithm {:?} is not ES256", header.alg)));
    }
    let kid = header.kid.ok_or_else(|| Error::Token("no kid".into()))?;
    let jwk = trusted.find(&kid).ok_or_else(|| Error::Token(format!("unknown signing key {kid}")))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| Error::Token(format!("key: {e}")))?;
    let mut v = Validation::new(Algorithm::ES256);
    v.leeway = 0;
    v.set_required_spec_claims(&["exp", "iat"]);
    v.validate_aud = false;
    jsonwebtoken::decode::<EarClaims>(token, &key, &v).map(|d| d.claims).map_err(|e| Error::Token(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp_in: i64) -> EarClaims {
        let now = time_now();
        let mut vector = BTreeMap::new();
        vector.insert("hardware".to_owned(), 2);
        vector.insert("executables".to_owned(), 3);
        EarClaims {
            eat_profile: EAT_PROFILE.into(),
            iat: now,
            exp: now + exp_in,
            iss: "veil-kbs".into(),
            verifier_id: VerifierId { developer: "veil".into(), build: "test".into() },
            submods: [(
                "cpu0".to_owned(),
                Submod {
                    status: Status::of_vector(&vector),
                    vector,
                    policy_id: "default".into(),
                    annotated_evidence: serde_json::json!({"runtime_data_claims": {"nonce": "n", "tee-pubkey": {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": "eA", "y": "eQ"}}}),
                    veil: VeilClaims { tee: "snp".into(), simulated: true, ..VeilClaims::default() },
                },
            )]
            .into_iter()
            .collect(),
        }
    }

    fn time_now() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
    }

    #[test]
    fn sign_verify_and_tee_pubkey() {
        let k = TokenKey::generate().unwrap();
        let t = k.sign(&claims(300)).unwrap();
        let c = verify(&t, &k.jwks()).unwrap();
        assert_eq!(c.submods["cpu0"].status, Status::Affirming);
        assert!(matches!(c.tee_pubkey().unwrap(), TeePubKey::EC { .. }));
        let back = TokenKey::from_pkcs8(k.pkcs8()).unwrap();
        assert_eq!(verify(&back.sign(&claims(300)).unwrap(), &k.jwks()).unwrap(), c_with_time(&c));
    }

    fn c_with_time(c: &EarClaims) -> EarClaims {
        c.clone()
    }

    #[test]
    fn refuses_expired_tampered_and_foreign_tokens() {
        let k = TokenKey::generate().unwrap();
        assert!(verify(&k.sign(&claims(-10)).unwrap(), &k.jwks()).is_err(), "expired");
        let t = k.sign(&claims(300)).unwrap();
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = B64U.encode(
            serde_json::to_vec(&{
                let mut c = claims(300);
                c.submods.get_mut("cpu0").unwrap().veil.simulated = false;
                c
            })
            .unwrap(),
        );
        parts[1] = &forged;
        assert!(verify(&parts.join("."), &k.jwks()).is_err(), "tampered payload");
        let other = TokenKey::generate().unwrap();
        let foreign = other.sign(&claims(300)).unwrap();
        assert!(verify(&foreign, &k.jwks()).is_err(), "signed by another key that names itself in the header");
        assert!(verify("not.a.token", &k.jwks()).is_err());
    }

    #[test]
    fn status_tiers() {
        assert_eq!(Status::of(0), Status::None);
        assert_eq!(Status::of(1), Status::None);
        assert_eq!(Status::of(-1), Status::None);
        assert_eq!(Status::of(2), Status::Affirming);
        assert_eq!(Status::of(33), Status::Warning);
        assert_eq!(Status::of(96), Status::Contraindicated);
        assert_eq!(Status::of(-96), Status::Contraindicated);
        let v: BTreeMap<String, i8> = [("a".to_owned(), 2), ("b".to_owned(), 96)].into_iter().collect();
        assert_eq!(Status::of_vector(&v), Status::Contraindicated);
        assert_eq!(Status::of_vector(&BTreeMap::new()), Status::None);
    }
}
