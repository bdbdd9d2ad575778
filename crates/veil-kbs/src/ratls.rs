//! Evidence in an RA-TLS certificate: the extension the runtime puts in its self-signed
//! TLS certificate, and its parser for relying parties.
//!
//! Layout (CCC Interoperable RA-TLS, PROTOCOLS.md section 3): extension OID
//! `2.23.133.5.4.9` (`tcg-dice-tagged-evidence`, DER `06 06 67 81 05 05 04 09`), not
//! critical, whose value is tagged CBOR with definite lengths:
//!
//! ```text
//!   #6.<tag>([ evidence: bstr, claims-buffer: bstr ])
//!     tag            0x1a7501  Intel TEE quote (the TDX quote)      } the evidence format
//!                    0x1a7504  AMD SEV-SNP attestation report       } IDs rats-tls uses
//!     evidence       the raw quote / report, for generic RA-TLS parsers
//!     claims-buffer  CBOR map {
//!        "pubkey-hash":          [1, h'SHA-256(DER SubjectPublicKeyInfo)'],
//!        "veil-kbs-attestation": h'<JSON of the KBS `Attestation`: runtime-data and
//!                                    tee-evidence, exactly as sent to a key broker>'
//!     }
//! ```
//!
//! **Binding.** CCC's SGX/TDX profile binds `report_data = SHA-256(claims-buffer)`. Veil
//! binds by the key broker's rule instead (the issue asks for one rule everywhere): the
//! report data is SHA-384 of the canonical runtime data `{nonce, tee-pubkey,
//! additional-evidence}`, zero-padded ([`crate::report_data`]), where `tee-pubkey` is the
//! certificate's key as a JWK and `nonce` is [`NONCE_PREFIX`] followed by the issue time.
//! So one verifier (the broker's) checks both; the prefix keeps certificate evidence
//! and broker-session evidence apart (a broker nonce is base64, and the runtime's
//! `/v1/attestation` nonce is hex: neither contains `:`). The additional evidence carries
//! the composite TPM quote and the measured-boot event log. A generic CCC parser still
//! finds the raw quote and the `pubkey-hash` claim where the spec puts them.
//!
//! Written over `ciborium`'s value model (no crate implements these RA-TLS shapes).

use ciborium::Value as Cbor;
use kbs_types::{Attestation, Tee};

/// The evidence extension's OID, `tcg-dice-tagged-evidence`.
pub const OID_TAGGED_EVIDENCE: [u64; 6] = [2, 23, 133, 5, 4, 9];
/// Its DER encoding (tag, length, value).
pub const OID_TAGGED_EVIDENCE_DER: [u8; 8] = [0x06, 0x06, 0x67, 0x81, 0x05, 0x05, 0x04, 0x09];
/// CBOR tag: an Intel TEE quote (rats-tls `OCBR_TAG_EVIDENCE_INTEL_TEE_QUOTE`).
pub const TAG_INTEL_TEE_QUOTE: u64 = 0x1a_7501;
/// CBOR tag: an AMD SEV-SNP report (rats-tls `OCBR_TAG_EVIDENCE_SEV_SNP`).
pub const TAG_SEV_SNP: u64 = 0x1a_7504;
/// The runtime-data nonce of certificate evidence starts with this.
pub const NONCE_PREFIX: &str = "veil-ra-tls/v1:";
/// IANA named-information hash id of SHA-256.
pub const HASH_SHA256: u64 = 1;
/// Claim key: the hash of the certificate's public key.
pub const CLAIM_PUBKEY_HASH: &str = "pubkey-hash";
/// Claim key: Veil's KBS attestation JSON.
pub const CLAIM_KBS_ATTESTATION: &str = "veil-kbs-attestation";
/// Largest extension accepted (a TDX quote with its collateral is ~20 KiB).
pub const MAX_EXTENSION: usize = 1 << 20;

/// Why a certificate's evidence extension was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RaTlsError {
    /// Not CBOR, or not the shape above.
    #[error("RA-TLS evidence: {0}")]
    Malformed(String),
    /// A CBOR tag for evidence this verifier does not know.
    #[error("RA-TLS evidence: unknown evidence tag {0:#x}")]
    UnknownTag(u64),
    /// The tag does not match the TEE the attestation names.
    #[error("RA-TLS evidence: tag {tag:#x} does not fit TEE {tee}")]
    TagMismatch {
        /// The tag.
        tag: u64,
        /// The TEE in the attestation.
        tee: String,
    },
}

fn bad(m: impl Into<String>) -> RaTlsError {
    RaTlsError::Malformed(m.into())
}

/// The parsed extension. Nothing in it is trusted until the evidence verified.
#[derive(Debug, Clone)]
pub struct CertEvidence {
    /// The CBOR tag.
    pub tag: u64,
    /// The TEE the tag names.
    pub tee: Tee,
    /// The raw quote or report.
    pub raw: Vec<u8>,
    /// The `pubkey-hash` claim: (IANA hash id, digest).
    pub pubkey_hash: (u64, Vec<u8>),
    /// The KBS attestation (runtime data and evidence).
    pub attestation: Attestation,
}

/// The tag for a TEE's evidence, if certificates carry it.
pub fn tag_for(tee: Tee) -> Option<u64> {
    match tee {
        Tee::Snp => Some(TAG_SEV_SNP),
        Tee::Tdx => Some(TAG_INTEL_TEE_QUOTE),
        _ => None,
    }
}

/// Encodes the extension value for `tee`'s raw evidence, the certificate key's DER
/// SubjectPublicKeyInfo and the KBS attestation whose runtime data names that key.
pub fn encode(tee: Tee, raw: &[u8], spki_der: &[u8], attestation: &Attestation) -> Result<Vec<u8>, RaTlsError> {
    let tag = tag_for(tee).ok_or_else(|| bad(format!("no RA-TLS evidence format for TEE {tee:?}")))?;
    let json = serde_json::to_vec(attestation).map_err(|e| bad(e.to_string()))?;
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, spki_der);
    let claims = Cbor::Map(vec![
        (
            Cbor::Text(CLAIM_PUBKEY_HASH.into()),
            Cbor::Array(vec![Cbor::Integer(HASH_SHA256.into()), Cbor::Bytes(hash.as_ref().to_vec())]),
        ),
        (Cbor::Text(CLAIM_KBS_ATTESTATION.into()), Cbor::Bytes(json)),
    ]);
    let mut claims_buffer = Vec::new();
    ciborium::into_writer(&claims, &mut claims_buffer).map_err(|e| bad(e.to_string()))?;
    let value = Cbor::Tag(tag, Box::new(Cbor::Array(vec![Cbor::Bytes(raw.to_vec()), Cbor::Bytes(claims_buffer)])));
    let mut out = Vec::new();
    ciborium::into_writer(&value, &mut out).map_err(|e| bad(e.to_string()))?;
    Ok(out)
}

/// Parses an extension value. Checks the shape only; the caller verifies the evidence,
/// the key hash and the binding.
pub fn decode(ext_value: &[u8]) -> Result<CertEvidence, RaTlsError> {
    if ext_value.len() > MAX_EXTENSION {
        return Err(bad(format!("{} bytes, more than the {MAX_EXTENSION} accepted", ext_value.len())));
    }
    let value: Cbor = ciborium::from_reader(ext_value).map_err(|e| bad(format!("not CBOR: {e}")))?;
    let Cbor::Tag(tag, inner) = value else { return Err(bad("not a tagged CBOR item")) };
    let tee = match tag {
        TAG_SEV_SNP => Tee::Snp,
        TAG_INTEL_TEE_QUOTE => Tee::Tdx,
        other => return Err(RaTlsError::UnknownTag(other)),
    };
    let Cbor::Array(items) = *inner else { return Err(bad("the tagged item is not an array")) };
    let [Cbor::Bytes(raw), Cbor::Bytes(claims_buffer)] = <[Cbor; 2]>::try_from(items)
        .map_err(|_| bad("the tagged array must hold exactly [evidence, claims-buffer]"))?
    else {
        return Err(bad("evidence and claims-buffer must be byte strings"));
    };
    let claims: Cbor =
        ciborium::from_reader(claims_buffer.as_slice()).map_err(|e| bad(format!("claims-buffer is not CBOR: {e}")))?;
    let Cbor::Map(entries) = claims else { return Err(bad("claims-buffer is not a map")) };
    let mut pubkey_hash = None;
    let mut attestation = None;
    for (k, v) in entries {
        let Cbor::Text(k) = k else { return Err(bad("a claim key is not text")) };
        let dup = || bad(format!("claim {k:?} appears twice"));
        match k.as_str() {
            CLAIM_PUBKEY_HASH => {
                let Cbor::Array(pair) = v else { return Err(bad("pubkey-hash is not [alg, hash]")) };
                let [Cbor::Integer(alg), Cbor::Bytes(h)] =
                    <[Cbor; 2]>::try_from(pair).map_err(|_| bad("pubkey-hash is not [alg, hash]"))?
                else {
                    return Err(bad("pubkey-hash is not [alg, hash]"));
                };
                let alg = u64::try_from(alg).map_err(|_| bad("pubkey-hash algorithm id"))?;
                if pubkey_hash.replace((alg, h)).is_some() {
                    return Err(dup());
                }
            }
            CLAIM_KBS_ATTESTATION => {
                let Cbor::Bytes(json) = v else { return Err(bad("veil-kbs-attestation is not a byte string")) };
                let a: Attestation =
                    serde_json::from_slice(&json).map_err(|e| bad(format!("veil-kbs-attestation: {e}")))?;
                if attestation.replace(a).is_some() {
                    return Err(dup());
                }
            }
            // CCC defines other optional claims (e.g. "nonce"); they bind nothing here.
            _ => {}
        }
    }
    let pubkey_hash = pubkey_hash.ok_or_else(|| bad("no pubkey-hash claim"))?;
    let attestation = attestation.ok_or_else(|| bad("no veil-kbs-attestation claim"))?;
    Ok(CertEvidence { tag, tee, raw, pubkey_hash, attestation })
}

/// `pubkey-hash` over `spki_der` with the claim's algorithm (SHA-256, -384 or -512).
pub fn pubkey_hash_matches(claim: &(u64, Vec<u8>), spki_der: &[u8]) -> bool {
    use aws_lc_rs::digest::{SHA256, SHA384, SHA512, digest};
    let alg = match claim.0 {
        1 => &SHA256,
        7 => &SHA384,
        8 => &SHA512,
        _ => return false,
    };
    digest(alg, spki_der).as_ref() == claim.1.as_slice()
}

#[doc(hidden)]
pub fn fuzz_decode(data: &[u8]) {
    let _ = decode(data);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbs_types::{CompositeEvidence, RuntimeData, TeePubKey};

    fn attestation() -> Attestation {
        Attestation {
            init_data: None,
            runtime_data: RuntimeData {
                nonce: format!("{NONCE_PREFIX}1"),
                tee_pubkey: TeePubKey::EC { crv: "P-256".into(), alg: "ES256".into(), x: "x".into(), y: "y".into() },
            },
            tee_evidence: CompositeEvidence {
                primary_evidence: serde_json::json!({"quote": "AA=="}),
                additional_evidence: String::new(),
            },
        }
    }

    #[test]
    fn round_trip_and_layout() {
        let ext = encode(Tee::Tdx, b"quote", b"spki", &attestation()).unwrap();
        // Tag 0x1a7501 as a 4-byte CBOR tag head (major type 6, additional info 26),
        // then a definite 2-element array.
        assert_eq!(&ext[..6], &[0xda, 0x00, 0x1a, 0x75, 0x01, 0x82]);
        let d = decode(&ext).unwrap();
        assert_eq!((d.tag, d.tee, d.raw.as_slice()), (TAG_INTEL_TEE_QUOTE, Tee::Tdx, b"quote".as_slice()));
        assert!(pubkey_hash_matches(&d.pubkey_hash, b"spki"));
        assert!(!pubkey_hash_matches(&d.pubkey_hash, b"other"));
        assert_eq!(d.attestation.runtime_data.nonce, format!("{NONCE_PREFIX}1"));
        assert!(encode(Tee::Sample, b"", b"", &attestation()).is_err());
    }

    fn cbor(v: &Cbor) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).unwrap();
        out
    }

    #[test]
    fn malformed_extensions_are_refused_with_a_reason() {
        let json = serde_json::to_vec(&attestation()).unwrap();
        let claims = |entries: Vec<(Cbor, Cbor)>| Cbor::Bytes(cbor(&Cbor::Map(entries)));
        let ph =
            || (Cbor::Text("pubkey-hash".into()), Cbor::Array(vec![Cbor::Integer(1.into()), Cbor::Bytes(vec![0; 32])]));
        let att = || (Cbor::Text("veil-kbs-attestation".into()), Cbor::Bytes(json.clone()));
        let wrap = |tag: u64, items: Vec<Cbor>| cbor(&Cbor::Tag(tag, Box::new(Cbor::Array(items))));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "not CBOR"),
            (vec![0xff; 4], "not CBOR"),
            (cbor(&Cbor::Array(vec![])), "not a tagged"),
            (wrap(7, vec![]), "unknown evidence tag"),
            (cbor(&Cbor::Tag(TAG_SEV_SNP, Box::new(Cbor::Null))), "not an array"),
            (wrap(TAG_SEV_SNP, vec![Cbor::Bytes(vec![])]), "exactly"),
            (wrap(TAG_SEV_SNP, vec![Cbor::Text("r".into()), claims(vec![])]), "byte strings"),
            (wrap(TAG_SEV_SNP, vec![Cbor::Bytes(vec![]), Cbor::Bytes(vec![0xff])]), "claims-buffer is not CBOR"),
            (wrap(TAG_SEV_SNP, vec![Cbor::Bytes(vec![]), Cbor::Bytes(cbor(&Cbor::Null))]), "not a map"),
            (wrap(TAG_SEV_SNP, vec![Cbor::Bytes(vec![]), claims(vec![att()])]), "no pubkey-hash"),
            (wrap(TAG_SEV_SNP, vec![Cbor::Bytes(vec![]), claims(vec![ph()])]), "no veil-kbs-attestation"),
            (wrap(TAG_SEV_SNP, vec![Cbor::Bytes(vec![]), claims(vec![ph(), ph(), att()])]), "twice"),
            (
                wrap(TAG_SEV_SNP, vec![Cbor::Bytes(vec![]), claims(vec![(Cbor::Integer(1.into()), Cbor::Null)])]),
                "not text",
            ),
            (
                wrap(
                    TAG_SEV_SNP,
                    vec![
                        Cbor::Bytes(vec![]),
                        claims(vec![(Cbor::Text("pubkey-hash".into()), Cbor::Bytes(vec![])), att()]),
                    ],
                ),
                "[alg, hash]",
            ),
            (
                wrap(
                    TAG_SEV_SNP,
                    vec![
                        Cbor::Bytes(vec![]),
                        claims(vec![ph(), (Cbor::Text("veil-kbs-attestation".into()), Cbor::Bytes(b"{}".to_vec()))]),
                    ],
                ),
                "veil-kbs-attestation:",
            ),
            (vec![0; MAX_EXTENSION + 1], "more than"),
        ];
        for (bytes, want) in cases {
            let e = decode(&bytes).unwrap_err().to_string();
            assert!(e.contains(want), "{e:?} should mention {want:?}");
        }
        // Unknown claims are ignored; the known ones still decode.
        let ok = wrap(
            TAG_SEV_SNP,
            vec![Cbor::Bytes(vec![]), claims(vec![(Cbor::Text("nonce".into()), Cbor::Bytes(vec![1])), ph(), att()])],
        );
        assert_eq!(decode(&ok).unwrap().tee, Tee::Snp);
        assert!(!pubkey_hash_matches(&(99, vec![]), b""));
    }
}
