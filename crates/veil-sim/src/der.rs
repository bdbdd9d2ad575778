//! A minimal DER *writer* (X.690), enough to build the simulator's certificates,
//! CRLs and public keys. It never parses: every input is produced by this crate.
//!
//! This file is also compiled into `examples/generate_fixtures.rs` (via `#[path]`),
//! so it depends on nothing but `std` and `time`.

use time::OffsetDateTime;

/// Universal tags used here.
pub mod tag {
    /// BOOLEAN
    pub const BOOLEAN: u8 = 0x01;
    /// INTEGER
    pub const INTEGER: u8 = 0x02;
    /// BIT STRING
    pub const BIT_STRING: u8 = 0x03;
    /// OCTET STRING
    pub const OCTET_STRING: u8 = 0x04;
    /// NULL
    pub const NULL: u8 = 0x05;
    /// OBJECT IDENTIFIER
    pub const OID: u8 = 0x06;
    /// ENUMERATED
    pub const ENUMERATED: u8 = 0x0A;
    /// UTF8String
    pub const UTF8_STRING: u8 = 0x0C;
    /// PrintableString
    pub const PRINTABLE_STRING: u8 = 0x13;
    /// IA5String
    pub const IA5_STRING: u8 = 0x16;
    /// UTCTime
    pub const UTC_TIME: u8 = 0x17;
    /// GeneralizedTime
    pub const GENERALIZED_TIME: u8 = 0x18;
    /// SEQUENCE (constructed)
    pub const SEQUENCE: u8 = 0x30;
    /// SET (constructed)
    pub const SET: u8 = 0x31;
}

/// One TLV with a definite length.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len().saturating_add(6));
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = &bytes[skip..];
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// SEQUENCE of already-encoded parts.
pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag::SEQUENCE, &parts.concat())
}

/// SET of already-encoded parts (the caller orders them; single-element sets here).
pub fn set(parts: &[&[u8]]) -> Vec<u8> {
    tlv(tag::SET, &parts.concat())
}

/// Context-specific tag `[n]`, constructed (EXPLICIT wrapping or IMPLICIT SEQUENCE).
pub fn ctx_cons(n: u8, content: &[u8]) -> Vec<u8> {
    tlv(0xA0 | n, content)
}

/// Context-specific tag `[n]`, primitive (IMPLICIT primitive types, e.g. a URI).
pub fn ctx_prim(n: u8, content: &[u8]) -> Vec<u8> {
    tlv(0x80 | n, content)
}

/// OBJECT IDENTIFIER from its arcs (first two arcs must be valid per X.690).
pub fn oid(arcs: &[u64]) -> Vec<u8> {
    let mut body = Vec::new();
    let (first, rest) = match arcs {
        [a, b, rest @ ..] => (a * 40 + b, rest),
        [a] => (a * 40, &[][..]),
        [] => (0, &[][..]),
    };
    push_base128(&mut body, first);
    for arc in rest {
        push_base128(&mut body, *arc);
    }
    tlv(tag::OID, &body)
}

fn push_base128(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 10];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            break;
        }
    }
    let last = tmp.len() - 1;
    for (j, b) in tmp.iter().enumerate().skip(i) {
        out.push(if j == last { *b } else { *b | 0x80 });
    }
}

/// INTEGER from an unsigned big-endian magnitude (minimal encoding, non-negative).
pub fn uint_bytes(be: &[u8]) -> Vec<u8> {
    let skip = be.iter().take_while(|b| **b == 0).count();
    let mag = &be[skip..];
    let mut body = Vec::with_capacity(mag.len() + 1);
    if mag.is_empty() {
        body.push(0);
    } else {
        if mag[0] & 0x80 != 0 {
            body.push(0);
        }
        body.extend_from_slice(mag);
    }
    tlv(tag::INTEGER, &body)
}

/// INTEGER from a u64.
pub fn uint(v: u64) -> Vec<u8> {
    uint_bytes(&v.to_be_bytes())
}

/// ENUMERATED from a small non-negative value.
pub fn enumerated(v: u64) -> Vec<u8> {
    let mut i = uint(v);
    i[0] = tag::ENUMERATED;
    i
}

/// BOOLEAN (DER: TRUE is 0xFF).
pub fn boolean(v: bool) -> Vec<u8> {
    tlv(tag::BOOLEAN, &[if v { 0xFF } else { 0x00 }])
}

/// NULL.
pub fn null() -> Vec<u8> {
    tlv(tag::NULL, &[])
}

/// OCTET STRING.
pub fn octets(content: &[u8]) -> Vec<u8> {
    tlv(tag::OCTET_STRING, content)
}

/// BIT STRING with zero unused bits.
pub fn bits(content: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(content.len() + 1);
    body.push(0);
    body.extend_from_slice(content);
    tlv(tag::BIT_STRING, &body)
}

/// UTF8String.
pub fn utf8(s: &str) -> Vec<u8> {
    tlv(tag::UTF8_STRING, s.as_bytes())
}

/// PrintableString (the caller passes a printable-safe value).
pub fn printable(s: &str) -> Vec<u8> {
    tlv(tag::PRINTABLE_STRING, s.as_bytes())
}

/// IA5String.
pub fn ia5(s: &str) -> Vec<u8> {
    tlv(tag::IA5_STRING, s.as_bytes())
}

/// X.509 `Time`: UTCTime up to 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5).
/// Sub-second precision is dropped; the value is converted to UTC.
pub fn time(t: OffsetDateTime) -> Vec<u8> {
    let t = t.to_offset(time::UtcOffset::UTC);
    let (y, mo, d) = (t.year(), u8::from(t.month()), t.day());
    let (h, mi, s) = (t.hour(), t.minute(), t.second());
    if (1950..2050).contains(&y) {
        let s = format!("{:02}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z", y % 100);
        tlv(tag::UTC_TIME, s.as_bytes())
    } else {
        let s = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}Z");
        tlv(tag::GENERALIZED_TIME, s.as_bytes())
    }
}

/// Well-known object identifiers.
pub mod oids {
    /// id-ecPublicKey
    pub const EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];
    /// prime256v1 / secp256r1
    pub const P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
    /// secp384r1
    pub const P384: &[u64] = &[1, 3, 132, 0, 34];
    /// ecdsa-with-SHA256
    pub const ECDSA_SHA256: &[u64] = &[1, 2, 840, 10045, 4, 3, 2];
    /// rsaEncryption
    pub const RSA_ENCRYPTION: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];
    /// id-RSASSA-PSS
    pub const RSASSA_PSS: &[u64] = &[1, 2, 840, 113549, 1, 1, 10];
    /// id-mgf1
    pub const MGF1: &[u64] = &[1, 2, 840, 113549, 1, 1, 8];
    /// id-sha384
    pub const SHA384: &[u64] = &[2, 16, 840, 1, 101, 3, 4, 2, 2];
    /// commonName
    pub const CN: &[u64] = &[2, 5, 4, 3];
    /// countryName
    pub const C: &[u64] = &[2, 5, 4, 6];
    /// localityName
    pub const L: &[u64] = &[2, 5, 4, 7];
    /// stateOrProvinceName
    pub const ST: &[u64] = &[2, 5, 4, 8];
    /// organizationName
    pub const O: &[u64] = &[2, 5, 4, 10];
    /// organizationalUnitName
    pub const OU: &[u64] = &[2, 5, 4, 11];
    /// subjectKeyIdentifier
    pub const SKI: &[u64] = &[2, 5, 29, 14];
    /// keyUsage
    pub const KEY_USAGE: &[u64] = &[2, 5, 29, 15];
    /// basicConstraints
    pub const BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
    /// cRLNumber
    pub const CRL_NUMBER: &[u64] = &[2, 5, 29, 20];
    /// cRLReason
    pub const CRL_REASON: &[u64] = &[2, 5, 29, 21];
    /// cRLDistributionPoints
    pub const CRL_DP: &[u64] = &[2, 5, 29, 31];
    /// authorityKeyIdentifier
    pub const AKI: &[u64] = &[2, 5, 29, 35];
}

/// AlgorithmIdentifier ecdsa-with-SHA256 (no parameters, RFC 5758).
pub fn alg_ecdsa_sha256() -> Vec<u8> {
    seq(&[&oid(oids::ECDSA_SHA256)])
}

/// AlgorithmIdentifier RSASSA-PSS with SHA-384, MGF1-SHA-384, salt 48 — the shapes
/// AMD's KDS certificates carry: ARK, ASK, ASVK and VCEK certificates spell out the
/// default trailerField (`with_trailer`), VLEK certificates (signed by the ASVK) omit it.
pub fn alg_rsa_pss_sha384(with_trailer: bool) -> Vec<u8> {
    let sha384 = seq(&[&oid(oids::SHA384), &null()]);
    let mgf = seq(&[&oid(oids::MGF1), &sha384]);
    let mut parts = vec![ctx_cons(0, &sha384), ctx_cons(1, &mgf), ctx_cons(2, &uint(48))];
    if with_trailer {
        parts.push(ctx_cons(3, &uint(1)));
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    seq(&[&oid(oids::RSASSA_PSS), &seq(&refs)])
}

/// SubjectPublicKeyInfo for an uncompressed EC point on `curve`.
pub fn spki_ec(curve: &[u64], point: &[u8]) -> Vec<u8> {
    seq(&[&seq(&[&oid(oids::EC_PUBLIC_KEY), &oid(curve)]), &bits(point)])
}

/// SubjectPublicKeyInfo for an RSA public key (`RSAPublicKey` DER).
pub fn spki_rsa(rsa_public_key_der: &[u8]) -> Vec<u8> {
    seq(&[&seq(&[&oid(oids::RSA_ENCRYPTION), &null()]), &bits(rsa_public_key_der)])
}

/// The string type of one RDN attribute value.
#[derive(Debug, Clone, Copy)]
pub enum Str {
    /// UTF8String
    Utf8,
    /// PrintableString
    Printable,
}

/// An X.501 Name: one attribute per RDN, in the given order.
pub fn name(attrs: &[(&[u64], Str, &str)]) -> Vec<u8> {
    let rdns: Vec<Vec<u8>> = attrs
        .iter()
        .map(|(o, kind, v)| {
            let value = match kind {
                Str::Utf8 => utf8(v),
                Str::Printable => printable(v),
            };
            set(&[&seq(&[&oid(o), &value])])
        })
        .collect();
    let refs: Vec<&[u8]> = rdns.iter().map(Vec::as_slice).collect();
    seq(&refs)
}

/// One X.509 extension; `value` is the DER that goes inside extnValue.
pub fn extension(id: &[u64], critical: bool, value: &[u8]) -> Vec<u8> {
    if critical { seq(&[&oid(id), &boolean(true), &octets(value)]) } else { seq(&[&oid(id), &octets(value)]) }
}

/// Minimal encoding of a KeyUsage BIT STRING from bit positions (0 = digitalSignature).
pub fn key_usage(bits_set: &[u8]) -> Vec<u8> {
    let mut value: u16 = 0;
    for b in bits_set {
        value |= 0x8000 >> b;
    }
    let bytes = value.to_be_bytes();
    let highest = bits_set.iter().copied().max().unwrap_or(0);
    let used_bytes = usize::from(highest / 8) + 1;
    let unused = 7 - (highest % 8);
    let mut body = vec![unused];
    body.extend_from_slice(&bytes[..used_bytes]);
    tlv(tag::BIT_STRING, &body)
}

/// CRLDistributionPoints with one full-name URI.
pub fn crl_dp(uri: &str) -> Vec<u8> {
    let general_names = ctx_prim(6, uri.as_bytes());
    let full_name = ctx_cons(0, &general_names);
    let dp_name = ctx_cons(0, &full_name);
    seq(&[&seq(&[&dp_name])])
}

/// AuthorityKeyIdentifier with a keyIdentifier only.
pub fn aki(key_id: &[u8]) -> Vec<u8> {
    seq(&[&ctx_prim(0, key_id)])
}

/// BasicConstraints.
pub fn basic_constraints(ca: bool, path_len: Option<u64>) -> Vec<u8> {
    match (ca, path_len) {
        (false, _) => seq(&[]),
        (true, None) => seq(&[&boolean(true)]),
        (true, Some(n)) => seq(&[&boolean(true), &uint(n)]),
    }
}

/// PEM armour (64-column base64 lines, `\n` line ends).
pub fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The DER of the first PEM block labelled `label`; text around it is ignored.
pub fn pem_decode(text: &[u8], label: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let text = std::str::from_utf8(text).ok()?;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text.get(start..)?.find(&end)?;
    let body: String = text.get(start..stop)?.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_known_values() {
        assert_eq!(oid(&[1, 2, 840, 113741, 1, 13, 1]), hex_bytes("06092a864886f84d010d01"));
        assert_eq!(uint(0), hex_bytes("020100"));
        assert_eq!(uint(0xD9), hex_bytes("020200d9"));
        assert_eq!(uint(0x10000), hex_bytes("0203010000"));
        assert_eq!(key_usage(&[5, 6]), hex_bytes("03020106"));
        assert_eq!(key_usage(&[0, 1]), hex_bytes("030206c0"));
        assert_eq!(key_usage(&[5]), hex_bytes("03020204"));
        assert_eq!(tlv(0x04, &[0u8; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x04, &[0u8; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
        let t = time::macros::datetime!(2025-03-20 11:21:57 UTC);
        assert_eq!(time(t), tlv(0x17, b"250320112157Z"));
        let t = time::macros::datetime!(2050-01-01 00:00:00 UTC);
        assert_eq!(time(t), tlv(0x18, b"20500101000000Z"));
    }

    fn hex_bytes(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap_or_default()
    }
}
