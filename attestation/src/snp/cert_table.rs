//! The GHCB certificate table that the host hands the guest beside an SNP report
//! (configfs-tsm `auxblob`, `SNP_GET_EXT_REPORT`): entries of GUID (16 bytes, RFC
//! 4122 byte order) ‖ offset (u32 LE, from the table start) ‖ length (u32 LE),
//! terminated by an all-zero entry, followed by the DER certificates.
//!
//! The host is untrusted: the table only *locates* certificates; the chain walk
//! decides whether they are any good. Every offset and length is checked against
//! the buffer, entries may not overlap the header, and a GUID may not repeat.

use crate::error::{ParseError, Result};
use crate::reader::Reader;

const STRUCT: &str = "GHCB certificate table";
/// At most this many entries (the GHCB spec defines four kinds).
const MAX_ENTRIES: usize = 64;

/// Well-known GUIDs (RFC 4122 byte order).
pub mod guid {
    /// VCEK: 63da758d-e664-4564-adc5-f4b93be8accd
    pub const VCEK: [u8; 16] =
        [0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd];
    /// VLEK: a8074bc2-a25a-483e-aae6-39c045a0b8a1
    pub const VLEK: [u8; 16] =
        [0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e, 0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1];
    /// ASK: 4ab7b379-bbac-4fe4-a02f-05aef327c782
    pub const ASK: [u8; 16] =
        [0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4, 0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82];
    /// ARK: c0b406a4-a803-4952-9743-3fb6014cd0ae
    pub const ARK: [u8; 16] =
        [0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52, 0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae];
}

/// One entry of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The entry's GUID.
    pub guid: [u8; 16],
    /// The certificate bytes it points at.
    pub data: &'a [u8],
}

/// Parse a certificate table.
pub fn parse(table: &[u8]) -> Result<Vec<Entry<'_>>> {
    let mut r = Reader::new(table, STRUCT);
    let mut raw = Vec::new();
    loop {
        if raw.len() > MAX_ENTRIES {
            return Err(ParseError::new(STRUCT, "entries", format!("more than {MAX_ENTRIES} entries")).into());
        }
        let guid: [u8; 16] = r.array("entry.guid")?;
        let offset = r.u32_le("entry.offset")?;
        let length = r.u32_le("entry.length")?;
        if guid == [0; 16] && offset == 0 && length == 0 {
            break;
        }
        raw.push((guid, offset, length));
    }
    let header_end = r.position();
    let mut out: Vec<Entry<'_>> = Vec::with_capacity(raw.len());
    for (guid, offset, length) in raw {
        let start = usize::try_from(offset).map_err(|_| ParseError::new(STRUCT, "entry.offset", "too large"))?;
        let len = usize::try_from(length).map_err(|_| ParseError::new(STRUCT, "entry.length", "too large"))?;
        if start < header_end {
            return Err(ParseError::new(
                STRUCT,
                "entry.offset",
                format!("offset {start} points into the table header (ends at {header_end})"),
            )
            .into());
        }
        let end = start
            .checked_add(len)
            .ok_or_else(|| ParseError::new(STRUCT, "entry.length", "offset + length overflows"))?;
        let data = table.get(start..end).ok_or_else(|| {
            ParseError::new(
                STRUCT,
                "entry.length",
                format!("entry {start}..{end} beyond the table ({} bytes)", table.len()),
            )
        })?;
        if out.iter().any(|e| e.guid == guid) {
            return Err(ParseError::new(STRUCT, "entry.guid", format!("GUID {} repeats", hex::encode(guid))).into());
        }
        out.push(Entry { guid, data });
    }
    Ok(out)
}

/// The certificate with `guid`, if the table has one.
pub fn find<'a>(entries: &[Entry<'a>], guid: &[u8; 16]) -> Option<&'a [u8]> {
    entries.iter().find(|e| &e.guid == guid).map(|e| e.data)
}

/// Parse a table from untrusted bytes, for the fuzzer.
#[doc(hidden)]
pub fn fuzz_cert_table(data: &[u8]) {
    if let Ok(entries) = parse(data) {
        let _ = find(&entries, &guid::VCEK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(entries: &[([u8; 16], &[u8])]) -> Vec<u8> {
        let header = (entries.len() + 1) * 24;
        let mut h = Vec::new();
        let mut body = Vec::new();
        for (g, d) in entries {
            h.extend_from_slice(g);
            h.extend_from_slice(&((header + body.len()) as u32).to_le_bytes());
            h.extend_from_slice(&(d.len() as u32).to_le_bytes());
            body.extend_from_slice(d);
        }
        h.extend_from_slice(&[0; 24]);
        h.extend_from_slice(&body);
        h
    }

    #[test]
    fn guids_match_the_spec_strings() {
        assert_eq!(hex::encode(guid::VCEK), "63da758de6644564adc5f4b93be8accd");
        assert_eq!(hex::encode(guid::ARK), "c0b406a4a803495297433fb6014cd0ae");
    }

    #[test]
    fn parses_and_finds() {
        let t = table(&[(guid::VCEK, b"vcek"), (guid::ASK, b"ask!")]);
        let e = parse(&t).unwrap();
        assert_eq!(find(&e, &guid::VCEK), Some(&b"vcek"[..]));
        assert_eq!(find(&e, &guid::ASK), Some(&b"ask!"[..]));
        assert_eq!(find(&e, &guid::ARK), None);
    }

    #[test]
    fn hostile_tables_are_refused() {
        let t = table(&[(guid::VCEK, b"vcek")]);
        for n in 0..t.len() {
            let r = parse(&t[..n]);
            // Truncation either cuts the header or the certificate.
            assert!(r.is_err(), "truncated at {n}");
        }
        let mut bad = t.clone();
        bad[20] = 0xff; // length beyond the buffer
        assert!(parse(&bad).unwrap_err().to_string().contains("beyond the table"));
        let mut bad = t.clone();
        bad[16] = 0; // offset into the header
        assert!(parse(&bad).unwrap_err().to_string().contains("into the table header"));
        let dup = table(&[(guid::VCEK, b"a"), (guid::VCEK, b"b")]);
        assert!(parse(&dup).unwrap_err().to_string().contains("repeats"));
        let many: Vec<([u8; 16], &[u8])> = (0..70u8).map(|i| ([i.wrapping_add(1); 16], &b"x"[..])).collect();
        assert!(parse(&table(&many)).is_err());
    }
}
