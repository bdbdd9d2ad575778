//! The Trustee KBS attestation protocol, version 0.4.0, as Veil speaks it on both sides
//! (PROTOCOLS.md sections 1–2): the wire types come from `kbs-types`; this crate adds the
//! report-data rule, the resource JWE, the error bodies and the EAR attestation token;
//! and what broker and runtime share beyond the wire: init-data, RA-TLS, rate limits.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing))]

pub mod ear;
pub mod evidence;
pub mod initdata;
pub mod jwe;
pub mod limit;
pub mod ratls;

pub use kbs_types::{
    Attestation, Challenge, CompositeEvidence, InitData as InitDataField, Request, RuntimeData, Tee, TeePubKey,
};

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};

/// The protocol version the broker requires and the client sends.
pub const PROTOCOL_VERSION: &str = "0.4.0";
/// The path prefix.
pub const PREFIX: &str = "/kbs/v0";
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "kbs-session-id";
/// The resource repository Veil stores model keys in: `veil/model-key/<manifest hex>`.
pub const MODEL_KEY_REPO: &str = "veil";
/// The resource type of model keys.
pub const MODEL_KEY_TYPE: &str = "model-key";

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A JWE could not be built or opened.
    #[error("JWE: {0}")]
    Jwe(&'static str),
    /// A field is malformed.
    #[error("{field}: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A token is malformed, expired or badly signed.
    #[error("token: {0}")]
    Token(String),
    /// The crypto library failed.
    #[error("cryptographic operation failed")]
    Crypto,
}

/// The report data a CPU TEE's evidence must carry for `runtime_data` and the
/// `additional_evidence` string: SHA-384 of the RFC 8785 canonical JSON of
/// `{"additional-evidence", "nonce", "tee-pubkey"}` (all three keys, always), right-padded
/// with zeros to 64 bytes; compared over all 64 bytes.
pub fn report_data(runtime_data: &RuntimeData, additional_evidence: &str) -> Result<[u8; 64], Error> {
    let value = serde_json::json!({
        "additional-evidence": additional_evidence,
        "nonce": runtime_data.nonce,
        "tee-pubkey": runtime_data.tee_pubkey,
    });
    let canonical = serde_json_canonicalizer::to_vec(&value).map_err(|_| Error::Crypto)?;
    let d = digest::digest(&digest::SHA384, &canonical);
    let mut out = [0u8; 64];
    out.iter_mut().zip(d.as_ref()).for_each(|(o, i)| *o = *i);
    Ok(out)
}

/// The qualifying data of a TPM quote that accompanies a CPU TEE's evidence (Veil's
/// composition): SHA-256 of the canonical `{"nonce", "tee-pubkey"}`. The quote itself
/// travels in `additional_evidence`, which the CPU report data binds.
pub fn tpm_qualifying_data(runtime_data: &RuntimeData) -> Result<[u8; 32], Error> {
    let value = serde_json::json!({ "nonce": runtime_data.nonce, "tee-pubkey": runtime_data.tee_pubkey });
    let canonical = serde_json_canonicalizer::to_vec(&value).map_err(|_| Error::Crypto)?;
    digest::digest(&digest::SHA256, &canonical).as_ref().try_into().map_err(|_| Error::Crypto)
}

/// The protocol's error body: `{"type": ".../errors/<Kind>", "detail": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// `https://github.com/confidential-containers/kbs/errors/<Kind>`.
    #[serde(rename = "type")]
    pub error_type: String,
    /// A human-readable reason (the reason class only; details go to the broker's log).
    pub detail: String,
}

/// The error type URL prefix.
pub const ERROR_TYPE_PREFIX: &str = "https://github.com/confidential-containers/kbs/errors/";

impl ErrorBody {
    /// A body of `kind` (Trustee's variant name).
    pub fn new(kind: &str, detail: impl Into<String>) -> Self {
        Self { error_type: format!("{ERROR_TYPE_PREFIX}{kind}"), detail: detail.into() }
    }
    /// The kind (the URL's last segment).
    pub fn kind(&self) -> &str {
        self.error_type.strip_prefix(ERROR_TYPE_PREFIX).unwrap_or(&self.error_type)
    }
}

/// The model-key resource path for a manifest digest (`sha256:<hex>` or bare hex).
pub fn model_key_path(manifest_digest: &str) -> String {
    let hex = manifest_digest.strip_prefix("sha256:").unwrap_or(manifest_digest);
    format!("{MODEL_KEY_REPO}/{MODEL_KEY_TYPE}/{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jcs_sha384_vector_from_trustee() {
        // Trustee attestation-service lib.rs test vector.
        let v = serde_json::json!({"b": 1, "a": "test", "c": {"d": "e"}});
        let d = digest::digest(&digest::SHA384, &serde_json_canonicalizer::to_vec(&v).unwrap());
        assert!(hex::encode(d.as_ref()).starts_with("e71ce8e7"));
        assert!(hex::encode(d.as_ref()).ends_with("0f8dbb5e47157e0f3f525cd22c4597480a186427c813ca941da78870c3"));
    }

    #[test]
    fn report_data_binds_all_three_and_pads() {
        let rd = RuntimeData {
            nonce: "bm9uY2U=".into(),
            tee_pubkey: TeePubKey::EC {
                crv: "P-256".into(),
                alg: "ECDH-ES+A256KW".into(),
                x: "eA".into(),
                y: "eQ".into(),
            },
        };
        let a = report_data(&rd, "").unwrap();
        assert_eq!(&a[48..], &[0u8; 16]);
        let expected = digest::digest(
            &digest::SHA384,
            br#"{"additional-evidence":"","nonce":"bm9uY2U=","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"eA","y":"eQ"}}"#,
        );
        assert_eq!(&a[..48], expected.as_ref());
        assert_ne!(a, report_data(&rd, "{}").unwrap());
        let mut rd2 = rd.clone();
        rd2.nonce = "other".into();
        assert_ne!(a, report_data(&rd2, "").unwrap());
    }

    #[test]
    fn error_bodies_decode_as_kbs_types() {
        let b = ErrorBody::new("TokenNotFound", "Attestation Token not found");
        let wire = serde_json::to_string(&b).unwrap();
        let k: kbs_types::ErrorInformation = serde_json::from_str(&wire).unwrap();
        assert_eq!(k.error_type, "https://github.com/confidential-containers/kbs/errors/TokenNotFound");
        assert_eq!(b.kind(), "TokenNotFound");
    }
}

/// Fuzzing entry points: parse untrusted protocol input without panicking.
#[doc(hidden)]
pub mod fuzzing {
    use std::sync::OnceLock;

    /// Request, Challenge and Attestation bodies, and the report data of an attestation.
    pub fn messages(data: &[u8]) {
        let _ = serde_json::from_slice::<crate::Request>(data);
        let _ = serde_json::from_slice::<crate::Challenge>(data);
        let _ = serde_json::from_slice::<crate::ErrorBody>(data);
        if let Ok(a) = serde_json::from_slice::<crate::Attestation>(data) {
            let _ = crate::report_data(&a.runtime_data, &a.tee_evidence.additional_evidence);
            let _ = crate::tpm_qualifying_data(&a.runtime_data);
            let _ = crate::jwe::seal(&a.runtime_data.tee_pubkey, b"fuzz");
        }
    }

    fn keys() -> &'static (crate::jwe::TeeKeyPair, crate::ear::TokenKey) {
        static KEYS: OnceLock<(crate::jwe::TeeKeyPair, crate::ear::TokenKey)> = OnceLock::new();
        KEYS.get_or_init(|| {
            #[allow(clippy::expect_used)]
            (
                crate::jwe::TeeKeyPair::generate().expect("key generation"),
                crate::ear::TokenKey::generate().expect("key generation"),
            )
        })
    }

    /// A resource JWE as the client receives it, opened with a fixed key pair.
    pub fn jwe(data: &[u8]) {
        if let Ok(j) = serde_json::from_slice::<crate::jwe::FlatJwe>(data) {
            let _ = keys().0.open(&j);
        }
    }

    /// An attestation token as a bearer token, verified against a fixed key set.
    pub fn token(data: &[u8]) {
        if let Ok(s) = std::str::from_utf8(data) {
            if let Ok(c) = crate::ear::verify(s, &keys().1.jwks()) {
                let _ = c.tee_pubkey();
            }
        }
    }
}
