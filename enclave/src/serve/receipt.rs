//! Signed receipts: every API answer carries a compact JWS (ES256) made with the
//! runtime's own key, the key `/v1/attestation` binds into fresh evidence.
//!
//! Claims (`docs/formats.md`, "Receipts"): `req` and `resp` are lower-case hex SHA-256 of
//! the request body and of the answer — for JSON answers the RFC 8785 canonical JSON of
//! the response object without its `veil_receipt` field; for streams the concatenated
//! generated text — plus `model`, `manifest` (the bundle's manifest digest), `id` (the
//! completion id), `iat` (Unix seconds, the runtime's clock: informative only) and `seq`
//! (this runtime's receipt counter, from 1).

use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// The JWS `typ` of receipts.
pub const TYP: &str = "veil-receipt+jws";

/// What a receipt says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptClaims {
    /// SHA-256 (hex) of the request body as received.
    pub req: String,
    /// SHA-256 (hex) of the answer (see the module docs).
    pub resp: String,
    /// The model name.
    pub model: String,
    /// The model bundle's manifest digest (`sha256:<hex>`).
    pub manifest: String,
    /// The completion id.
    pub id: String,
    /// Issued at (Unix seconds, the runtime's clock).
    pub iat: u64,
    /// This runtime's receipt counter.
    pub seq: u64,
}

/// Why a receipt does not verify.
#[derive(Debug, thiserror::Error)]
#[error("receipt: {0}")]
pub struct ReceiptError(pub String);

fn err(m: impl Into<String>) -> ReceiptError {
    ReceiptError(m.into())
}

/// Signs receipts.
pub struct Signer {
    key: EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
    header: String,
    seq: AtomicU64,
    audit: Option<std::sync::Arc<super::audit::AuditLog>>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("seq", &self.seq).finish_non_exhaustive()
    }
}

/// SHA-256 (hex) of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The `resp` hash of a JSON answer: canonical JSON of the object without `veil_receipt`.
pub fn json_answer_hash(answer: &Value) -> Result<String, ReceiptError> {
    let mut v = answer.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("veil_receipt");
    }
    let canonical = serde_json_canonicalizer::to_vec(&v).map_err(|e| err(e.to_string()))?;
    Ok(sha256_hex(&canonical))
}

impl Signer {
    /// A signer over the runtime key (PKCS#8), whose public JWK goes in every header.
    pub fn new(pkcs8: &[u8], jwk: &veil_kbs::TeePubKey) -> Result<Self, ReceiptError> {
        let rng = ring::rand::SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8, &rng)
            .map_err(|_| err("the runtime key is not a P-256 PKCS#8 key"))?;
        let header = serde_json::json!({"alg": "ES256", "typ": TYP, "jwk": jwk});
        let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).map_err(|e| err(e.to_string()))?);
        Ok(Self { key, rng, header, seq: AtomicU64::new(0), audit: None })
    }

    /// Records every issued receipt in `log`, which gives it its sequence number.
    pub fn with_audit(mut self, log: std::sync::Arc<super::audit::AuditLog>) -> Self {
        self.audit = Some(log);
        self
    }

    /// Issues a receipt: appends its record to the audit log (the record's sequence
    /// number becomes the receipt's `seq`; without a log, the counter's), then signs.
    /// A receipt that cannot be audited is not issued. `caller` ([`super::api::Principal`]'s
    /// label, never a secret) goes in the audit record, not in the receipt.
    pub fn issue(&self, mut claims: ReceiptClaims, caller: &str) -> Result<String, ReceiptError> {
        claims.seq = match &self.audit {
            Some(log) => {
                let mut rec = serde_json::Map::new();
                rec.insert("type".into(), Value::from("receipt"));
                rec.insert("model".into(), Value::from(claims.model.clone()));
                rec.insert("manifest".into(), Value::from(claims.manifest.clone()));
                rec.insert("id".into(), Value::from(claims.id.clone()));
                rec.insert("req".into(), Value::from(claims.req.clone()));
                rec.insert("resp".into(), Value::from(claims.resp.clone()));
                rec.insert("caller".into(), Value::from(caller));
                log.append(rec).map_err(|e| err(e.to_string()))?
            }
            None => self.next_seq(),
        };
        self.sign(&claims)
    }

    /// The next sequence number.
    pub fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed).saturating_add(1)
    }

    /// Signs `claims` as a compact JWS.
    pub fn sign(&self, claims: &ReceiptClaims) -> Result<String, ReceiptError> {
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).map_err(|e| err(e.to_string()))?);
        let input = format!("{}.{payload}", self.header);
        let sig = self.key.sign(&self.rng, input.as_bytes()).map_err(|_| err("signing failed"))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref())))
    }
}

/// Verifies a receipt against the runtime key a relying party attested (`jwk`, the
/// `tee-pubkey` of verified evidence): the header's key must be that key, and the
/// signature must verify with it. Returns the claims; checking them against the
/// request and answer is the caller's part.
pub fn verify(token: &str, jwk: &veil_kbs::TeePubKey) -> Result<ReceiptClaims, ReceiptError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(err("not a compact JWS"));
    };
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).map_err(|_| err("header is not base64url"))?)
        .map_err(|_| err("header is not JSON"))?;
    if header.get("alg").and_then(Value::as_str) != Some("ES256")
        || header.get("typ").and_then(Value::as_str) != Some(TYP)
    {
        return Err(err("header must say alg ES256 and typ veil-receipt+jws"));
    }
    let in_header: veil_kbs::TeePubKey =
        serde_json::from_value(header.get("jwk").cloned().unwrap_or(Value::Null)).map_err(|_| err("header jwk"))?;
    let (veil_kbs::TeePubKey::EC { crv, x, y, .. }, veil_kbs::TeePubKey::EC { crv: c2, x: x2, y: y2, .. }) =
        (&in_header, jwk)
    else {
        return Err(err("keys must be EC"));
    };
    if (crv, x, y) != (c2, x2, y2) || crv != "P-256" {
        return Err(err("signed by another key than the attested one"));
    }
    let mut point = vec![4u8];
    point.extend(URL_SAFE_NO_PAD.decode(x).map_err(|_| err("jwk x"))?);
    point.extend(URL_SAFE_NO_PAD.decode(y).map_err(|_| err("jwk y"))?);
    let sig = URL_SAFE_NO_PAD.decode(s).map_err(|_| err("signature is not base64url"))?;
    let input_len = h.len().saturating_add(1).saturating_add(p.len());
    let input = token.get(..input_len).ok_or_else(|| err("malformed"))?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(input.as_bytes(), &sig)
        .map_err(|_| err("bad signature"))?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).map_err(|_| err("payload is not base64url"))?)
        .map_err(|e| err(format!("claims: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipts_verify_only_with_the_attested_key_and_intact() {
        let k = crate::serve::RuntimeKey::generate().unwrap();
        let s = Signer::new(k.pkcs8(), &k.jwk).unwrap();
        let claims = ReceiptClaims {
            req: sha256_hex(b"{}"),
            resp: sha256_hex(b"answer"),
            model: "m".into(),
            manifest: "sha256:00".into(),
            id: "chatcmpl-1".into(),
            iat: 1,
            seq: s.next_seq(),
        };
        let t = s.sign(&claims).unwrap();
        assert_eq!(verify(&t, &k.jwk).unwrap(), claims);
        let other = crate::serve::RuntimeKey::generate().unwrap();
        assert!(verify(&t, &other.jwk).is_err());
        // A changed payload or signature fails.
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        let mut c2 = claims.clone();
        c2.resp = sha256_hex(b"other");
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&c2).unwrap());
        assert!(verify(&parts.join("."), &k.jwk).is_err());
        assert!(verify("a.b", &k.jwk).is_err());
        assert!(verify("", &k.jwk).is_err());
        // Canonical answer hashing ignores the receipt field and key order.
        let a = serde_json::json!({"b": 1, "a": [1, 2]});
        let b = serde_json::json!({"a": [1, 2], "veil_receipt": "x", "b": 1});
        assert_eq!(json_answer_hash(&a).unwrap(), json_answer_hash(&b).unwrap());
    }
}
