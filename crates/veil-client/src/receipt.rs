//! Receipts, as a relying party checks them. Every answer of a Veil runtime carries a
//! compact JWS (ES256) made with the runtime's own key — the key its attested TLS
//! certificate and fresh evidence bind — over what was asked and what was answered.
//!
//! Claims (`docs/formats.md`, "Receipts"): `req` and `resp` are lower-case hex SHA-256 of
//! the request body and of the answer — for JSON answers the RFC 8785 canonical JSON of
//! the response object without its `veil_receipt` field; for streams the concatenated
//! generated text — plus `model`, `manifest` (the bundle's manifest digest), `id` (the
//! completion id), `iat` (Unix seconds, the runtime's clock: informative only) and `seq`
//! (this runtime's receipt counter, from 1).
//!
//! [`verify`] checks a token's signature against the attested key; [`check_json`] and
//! [`StreamCheck`] also check that it is the receipt of *this* request and *this* answer.
//! The runtime's signing side is `veil_enclave::serve::receipt::Signer`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
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

/// Checks a JSON answer's `veil_receipt`: signed by the attested key `key`, for the
/// request body whose SHA-256 is `req_hash` ([`sha256_hex`]), and for this answer.
/// Returns the receipt's claims.
pub fn check_json(answer: &[u8], req_hash: &str, key: &veil_kbs::TeePubKey) -> Result<ReceiptClaims, ReceiptError> {
    let v: Value = serde_json::from_slice(answer).map_err(|e| err(format!("the answer is not JSON: {e}")))?;
    let token = v.get("veil_receipt").and_then(Value::as_str).ok_or_else(|| err("the answer carries no receipt"))?;
    let claims = verify(token, key)?;
    if claims.req != req_hash {
        return Err(err("it is for another request"));
    }
    if claims.resp != json_answer_hash(&v)? {
        return Err(err("it is for another answer"));
    }
    Ok(claims)
}

/// Follows a streamed (server-sent events) answer as it passes: collects the generated
/// text (chat `delta.content`, completion `text`) and checks the receipt chunk against
/// the request and that text. A caller that forwards the stream holds `data: [DONE]`
/// back until [`StreamCheck::outcome`] is `Some(Ok(_))` ([`StreamCheck::feed`] does).
#[derive(Debug)]
pub struct StreamCheck {
    buf: Vec<u8>,
    text: String,
    req_hash: String,
    key: veil_kbs::TeePubKey,
    verified: Option<Result<ReceiptClaims, String>>,
}

/// An event of a checked stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// An event to pass on unchanged (its bytes, blank line included).
    Pass(Vec<u8>),
    /// The stream's `[DONE]` event, after a receipt that verified (its bytes).
    Done(Vec<u8>, u64),
    /// The stream's end, refused: why (no receipt, or one that does not verify).
    Refused(String),
}

/// How much of an unfinished event [`StreamCheck`] holds before it refuses the stream.
pub const MAX_EVENT: usize = 1 << 20;

impl StreamCheck {
    /// A check for the answer to the request whose body hashes to `req_hash`, signed by
    /// the attested `key`.
    pub fn new(req_hash: String, key: veil_kbs::TeePubKey) -> Self {
        Self { buf: Vec::new(), text: String::new(), req_hash, key, verified: None }
    }

    /// The complete events in `chunk` (with what came before), in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<StreamEvent> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = find_event_end(&self.buf) {
            let event: Vec<u8> = self.buf.drain(..end).collect();
            out.push(self.event(event));
        }
        if self.buf.len() > MAX_EVENT {
            self.buf.clear();
            out.push(StreamEvent::Refused(format!("an event longer than {MAX_EVENT} bytes")));
        }
        out
    }

    /// The generated text so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The receipt's verdict, once its chunk has passed.
    pub fn outcome(&self) -> Option<&Result<ReceiptClaims, String>> {
        self.verified.as_ref()
    }

    fn event(&mut self, event: Vec<u8>) -> StreamEvent {
        let text = String::from_utf8_lossy(&event);
        let data: String =
            text.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim_start).collect::<Vec<_>>().join("\n");
        if data.trim() == "[DONE]" {
            return match &self.verified {
                Some(Ok(c)) => StreamEvent::Done(event, c.seq),
                Some(Err(why)) => StreamEvent::Refused(format!("the answer's receipt does not verify: {why}")),
                None => StreamEvent::Refused("the stream ended without a receipt".into()),
            };
        }
        if let Ok(v) = serde_json::from_str::<Value>(&data) {
            if let Some(token) = v.get("veil_receipt").and_then(Value::as_str) {
                self.verified = Some(self.check(token));
            } else if let Some(choices) = v.get("choices").and_then(Value::as_array) {
                for c in choices {
                    if let Some(t) = c.pointer("/delta/content").and_then(Value::as_str) {
                        self.text.push_str(t);
                    } else if let Some(t) = c.get("text").and_then(Value::as_str) {
                        self.text.push_str(t);
                    }
                }
            }
        }
        StreamEvent::Pass(event)
    }

    fn check(&self, token: &str) -> Result<ReceiptClaims, String> {
        let claims = verify(token, &self.key).map_err(|e| e.to_string())?;
        if claims.req != self.req_hash {
            return Err("it is for another request".into());
        }
        if claims.resp != sha256_hex(self.text.as_bytes()) {
            return Err("it is for another answer".into());
        }
        Ok(claims)
    }
}

/// The end (exclusive, including the blank line) of the first complete SSE event.
fn find_event_end(buf: &[u8]) -> Option<usize> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i.saturating_add(2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i.saturating_add(4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Fuzz entry: untrusted bytes as a receipt token, as a JSON answer and as an answer
/// stream (split where the first byte says). Must never panic.
#[doc(hidden)]
pub fn fuzz_receipt(data: &[u8]) {
    let key = veil_kbs::TeePubKey::EC {
        crv: "P-256".into(),
        alg: "ES256".into(),
        x: "WbbaSStuffL8ZLtmGFazjMs94pdA4IuD5bEG2e4eMNY".into(),
        y: "Sh8Uh1N8JOvB5HkZDKp1pFaCD7S8aUWIUIHGbuIjrTk".into(),
    };
    let _ = verify(&String::from_utf8_lossy(data), &key);
    let _ = check_json(data, "00", &key);
    let split = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
    let (a, b) = data.split_at(split);
    let mut s = StreamCheck::new("00".into(), key);
    let _ = s.feed(a);
    let _ = s.feed(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> veil_kbs::TeePubKey {
        veil_kbs::TeePubKey::EC {
            crv: "P-256".into(),
            alg: veil_kbs::jwe::ALG.into(),
            x: String::new(),
            y: String::new(),
        }
    }

    #[test]
    fn sse_events_are_split_and_done_is_held_for_the_receipt() {
        let mut s = StreamCheck::new("00".into(), key());
        // Split across chunks, and a receipt that does not verify.
        let out = s.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}]}\n");
        assert!(out.is_empty());
        let out = s.feed(b"\ndata: {\"choices\":[],\"veil_receipt\":\"x.y.z\"}\n\ndata: [DONE]\n\n");
        assert_eq!(out.len(), 3);
        assert_eq!(s.text(), "Hi");
        assert!(matches!(&out[2], StreamEvent::Refused(why) if why.contains("does not verify")), "{out:?}");
        assert!(matches!(s.outcome(), Some(Err(_))));
        // No receipt at all.
        let mut s = StreamCheck::new("00".into(), key());
        let out = s.feed(b"data: [DONE]\r\n\r\n");
        assert!(matches!(&out[0], StreamEvent::Refused(why) if why.contains("without a receipt")), "{out:?}");
        assert_eq!(find_event_end(b"data: x"), None);
        // An event that never ends is refused, not buffered without bound.
        let mut s = StreamCheck::new("00".into(), key());
        let out = s.feed(&vec![b'a'; MAX_EVENT + 1]);
        assert!(matches!(&out[..], [StreamEvent::Refused(_)]), "{out:?}");
        // The fuzz entry over a few shapes.
        for d in [&b""[..], b"\x05data: [DONE]\n\n", b"a.b.c", b"{\"veil_receipt\": 1}"] {
            fuzz_receipt(d);
        }
    }

    #[test]
    fn json_answers_without_a_good_receipt_are_refused() {
        let k = key();
        for (body, why) in [
            (&b"not json"[..], "not JSON"),
            (&b"{}"[..], "no receipt"),
            (&b"{\"veil_receipt\": \"a.b\"}"[..], "not a compact JWS"),
        ] {
            let e = check_json(body, "00", &k).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
    }
}
