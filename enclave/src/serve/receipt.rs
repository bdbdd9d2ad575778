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
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use serde_json::Value;

pub use veil_client::receipt::{ReceiptClaims, ReceiptError, TYP, json_answer_hash, sha256_hex, verify};

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
