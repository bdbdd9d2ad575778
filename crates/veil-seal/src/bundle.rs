//! The sealed bundle format, version 1 (documented in `docs/formats.md`).
//!
//! ```text
//! offset 0   preamble (32 bytes): "VEILSEAL" | version u16 BE | 0 u16 | header_len u32 BE
//!                                 | header_offset u64 BE | 0 u64
//! offset 32  data: each file's chunks, in header order; a chunk is ciphertext | 16-byte tag
//! header_offset  header: JSON (the `Header` struct), header_len bytes
//!            header MAC (32 bytes): HMAC-SHA256(K_mac, preamble | header)
//! ```
//!
//! The header sits after the data because the OMS signature inside it needs every file's
//! digest, which is known only once the single sealing pass has read the files; the
//! preamble is written last, so an interrupted seal never carries the magic.
//!
//! Keys: from the bundle's 256-bit data key `K`, with HKDF-SHA256 (RFC 5869, empty salt):
//! `K_mac = HKDF(K, "veil-bundle/v1 header-mac")`, and per file
//! `K_file = HKDF(K, "veil-bundle/v1 file-key" | bundle_id | u32 len(path) | path)`.
//! Chunk `i` of a file is sealed with AES-256-GCM under `K_file`, nonce
//! `0u32 | u64 BE i`, associated data
//! `"veil-bundle/v1 chunk" | bundle_id | u32 len(path) | path | u64 BE i | final u8`.
//! The format is hand-written because no standard container binds per-chunk AEAD to an
//! OMS manifest; its parsing is bounded and fuzzed (`fuzz_targets/bundle_header.rs`).

use std::collections::BTreeSet;

use aws_lc_rs::{aead, hkdf, hmac};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::Error;

/// The preamble's magic.
pub const MAGIC: [u8; 8] = *b"VEILSEAL";
/// The format version this build writes and reads.
pub const VERSION: u16 = 1;
/// Length of the fixed preamble.
pub const PREAMBLE_LEN: u64 = 32;
/// Length of the header MAC.
pub const MAC_LEN: usize = 32;
/// Length of each chunk's GCM tag.
pub const TAG_LEN: u64 = 16;
/// Smallest chunk size accepted.
pub const MIN_CHUNK: u32 = 4 << 10;
/// Largest chunk size accepted.
pub const MAX_CHUNK: u32 = 64 << 20;
/// Default chunk size.
pub const DEFAULT_CHUNK: u32 = 4 << 20;
/// Largest header accepted.
pub const MAX_HEADER_LEN: u32 = 16 << 20;
/// Most files in one bundle.
pub const MAX_FILES: usize = 100_000;
/// Longest file name, in bytes.
pub const MAX_NAME_LEN: usize = 4096;
/// The AEAD name written in headers.
pub const AEAD_NAME: &str = "AES-256-GCM";
/// The KDF name written in headers.
pub const KDF_NAME: &str = "HKDF-SHA256";

const LABEL_MAC: &[u8] = b"veil-bundle/v1 header-mac";
const LABEL_FILE: &[u8] = b"veil-bundle/v1 file-key";
const LABEL_CHUNK: &[u8] = b"veil-bundle/v1 chunk";

/// A bundle's 256-bit data key. Zeroized on drop; never printed.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

impl DataKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, Error> {
        let mut k = Zeroizing::new([0u8; 32]);
        crate::random(k.as_mut_slice()).map_err(|_| Error::Random)?;
        Ok(Self(k))
    }

    /// The key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Reads a key file's content: 64 hex digits, surrounding whitespace ignored.
    pub fn from_hex(text: &[u8]) -> Result<Self, Error> {
        let text = std::str::from_utf8(text).map_err(|_| Error::Key("data key file is not text"))?;
        let mut k = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text.trim(), k.as_mut_slice())
            .map_err(|_| Error::Key("data key file must hold exactly 64 hex digits"))?;
        Ok(Self(k))
    }

    /// The key as 64 hex digits and a newline (the key file's format).
    pub fn to_hex(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(hex::encode(self.0.as_slice()));
        s.push('\n');
        s
    }

    /// The raw key bytes (for handing to a key broker).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn prk(&self) -> hkdf::Prk {
        hkdf::Salt::new(hkdf::HKDF_SHA256, &[]).extract(self.0.as_slice())
    }

    /// `K_mac`.
    pub(crate) fn mac_key(&self) -> Result<hmac::Key, Error> {
        let prk = self.prk();
        let okm = prk.expand(&[LABEL_MAC], hmac::HMAC_SHA256).map_err(|_| Error::Signing)?;
        Ok(hmac::Key::from(okm))
    }

    /// `K_file` for `path` in bundle `id`.
    pub(crate) fn file_key(&self, id: &[u8; 32], path: &str) -> Result<aead::LessSafeKey, Error> {
        let len = name_len(path)?;
        let info: [&[u8]; 4] = [LABEL_FILE, id, &len, path.as_bytes()];
        let prk = self.prk();
        let okm = prk.expand(&info, &aead::AES_256_GCM).map_err(|_| Error::Signing)?;
        Ok(aead::LessSafeKey::new(aead::UnboundKey::from(okm)))
    }
}

fn name_len(path: &str) -> Result<[u8; 4], Error> {
    u32::try_from(path.len())
        .map(u32::to_be_bytes)
        .map_err(|_| Error::BadName { name: String::new(), reason: "longer than 4 GiB" })
}

/// The nonce of chunk `index`: 32 zero bits, then the index as u64 big-endian. Each file
/// has its own key, so (key, nonce) never repeats.
pub(crate) fn chunk_nonce(index: u64) -> aead::Nonce {
    let mut n = [0u8; 12];
    let (_, tail) = n.split_at_mut(4);
    tail.copy_from_slice(&index.to_be_bytes());
    aead::Nonce::assume_unique_for_key(n)
}

/// The associated data of chunk `index` of `path`.
pub(crate) fn chunk_aad(id: &[u8; 32], path: &str, index: u64, last: bool) -> Result<Vec<u8>, Error> {
    let mut ad = Vec::with_capacity(LABEL_CHUNK.len() + 32 + 4 + path.len() + 9);
    ad.extend_from_slice(LABEL_CHUNK);
    ad.extend_from_slice(id);
    ad.extend_from_slice(&name_len(path)?);
    ad.extend_from_slice(path.as_bytes());
    ad.extend_from_slice(&index.to_be_bytes());
    ad.push(u8::from(last));
    Ok(ad)
}

/// The number of chunks a file of `size` bytes has: at least one, so that an empty file
/// still carries an authenticated final chunk.
pub fn chunk_count(size: u64, chunk_size: u32) -> u64 {
    size.div_ceil(u64::from(chunk_size.max(1))).max(1)
}

/// The sealed length of a file: its size plus one tag per chunk.
pub fn sealed_len(size: u64, chunk_size: u32) -> Option<u64> {
    chunk_count(size, chunk_size).checked_mul(TAG_LEN)?.checked_add(size)
}

/// The header, as JSON. Field order is the write order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// 32 random bytes, hex.
    pub bundle_id: String,
    /// Always [`AEAD_NAME`].
    pub aead: String,
    /// Always [`KDF_NAME`].
    pub kdf: String,
    /// Plaintext bytes per chunk (the last chunk of a file may be shorter).
    pub chunk_size: u32,
    /// The OMS signature (Sigstore bundle JSON) over the plaintext files, verbatim.
    pub signature: String,
    /// The model card.
    pub card: CardEntry,
    /// The sealed files, in data order.
    pub files: Vec<FileEntry>,
}

/// The model card's entry in the header.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CardEntry {
    /// The card's name among the model's files (its digest is in the signed manifest).
    pub path: String,
    /// The card's text, in plaintext.
    pub text: String,
}

/// One sealed file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Relative, `/`-separated name.
    pub path: String,
    /// Plaintext size in bytes.
    pub size: u64,
    /// Offset of the first chunk in the bundle.
    pub offset: u64,
    /// Sealed length: size plus 16 bytes per chunk.
    pub length: u64,
}

/// A header that parsed and whose layout is consistent with the bundle's length. Not yet
/// authenticated: that needs the data key (header MAC) or the signer (signature).
#[derive(Debug, Clone)]
pub struct Meta {
    /// The raw preamble.
    pub preamble: [u8; PREAMBLE_LEN as usize],
    /// The raw header bytes.
    pub header_bytes: Vec<u8>,
    /// The header MAC as read.
    pub mac: [u8; MAC_LEN],
    /// The parsed header.
    pub header: Header,
    /// The decoded bundle id.
    pub bundle_id: [u8; 32],
}

/// Where the header lies, from the preamble.
#[derive(Debug, Clone, Copy)]
pub struct Preamble {
    /// Header length.
    pub header_len: u32,
    /// Header offset.
    pub header_offset: u64,
}

/// Parses the preamble of a bundle whose total length is `file_len`.
pub fn parse_preamble(p: &[u8], file_len: u64) -> Result<Preamble, Error> {
    let field =
        |r: std::ops::Range<usize>| p.get(r).ok_or_else(|| Error::NotABundle("shorter than the preamble".into()));
    if field(0..8)? != MAGIC {
        return Err(Error::NotABundle("no VEILSEAL magic (not a bundle, or an interrupted seal)".into()));
    }
    let version = u16::from_be_bytes(field(8..10)?.try_into().map_err(|_| Error::NotABundle("preamble".into()))?);
    if version != VERSION {
        return Err(Error::UnsupportedVersion(version));
    }
    let be32 = |r| -> Result<u32, Error> {
        Ok(u32::from_be_bytes(field(r)?.try_into().map_err(|_| Error::NotABundle("preamble".into()))?))
    };
    let be64 = |r| -> Result<u64, Error> {
        Ok(u64::from_be_bytes(field(r)?.try_into().map_err(|_| Error::NotABundle("preamble".into()))?))
    };
    if field(10..12)? != [0, 0] || be64(24..32)? != 0 {
        return Err(Error::Header("reserved preamble bytes are not zero".into()));
    }
    let header_len = be32(12..16)?;
    let header_offset = be64(16..24)?;
    if header_len > MAX_HEADER_LEN {
        return Err(Error::Header(format!("header length {header_len} exceeds {MAX_HEADER_LEN}")));
    }
    let end = header_offset
        .checked_add(u64::from(header_len))
        .and_then(|e| e.checked_add(MAC_LEN as u64))
        .ok_or_else(|| Error::Header("header offset overflows".into()))?;
    if header_offset < PREAMBLE_LEN || end != file_len {
        return Err(Error::Header(format!(
            "header at {header_offset}+{header_len} and its MAC do not end the {file_len}-byte bundle (truncated or extended)"
        )));
    }
    Ok(Preamble { header_len, header_offset })
}

/// Builds the preamble.
pub(crate) fn preamble(header_len: u32, header_offset: u64) -> [u8; PREAMBLE_LEN as usize] {
    let mut p = [0u8; PREAMBLE_LEN as usize];
    let fields: [(usize, &[u8]); 4] =
        [(0, &MAGIC), (8, &VERSION.to_be_bytes()), (12, &header_len.to_be_bytes()), (16, &header_offset.to_be_bytes())];
    for (at, bytes) in fields {
        if let Some(dst) = p.get_mut(at..at.saturating_add(bytes.len())) {
            dst.copy_from_slice(bytes);
        }
    }
    p
}

/// Deepest name accepted, in components.
pub const MAX_DEPTH: usize = 64;

/// Unicode bidirectional controls and other invisible format characters, which can make a
/// name display as another (e.g. U+202E RIGHT-TO-LEFT OVERRIDE).
fn is_bidi_or_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// Checks that a file name from a bundle is a safe relative path: not empty, no absolute
/// path, no `.`/`..`/empty component, no backslash or control character.
pub fn check_name(name: &str) -> Result<(), Error> {
    let bad = |reason| Err(Error::BadName { name: name.to_owned(), reason });
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("too long");
    }
    if name.starts_with('/') {
        return bad("absolute path");
    }
    if name.chars().any(|c| c == '\\' || c.is_control() || is_bidi_or_format(c)) {
        return bad("backslash, control or bidirectional-format character");
    }
    if name.split('/').count() > MAX_DEPTH {
        return bad("too deep");
    }
    for c in name.split('/') {
        match c {
            "" => return bad("empty path component"),
            "." | ".." => return bad("`.` or `..` component (path traversal)"),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a set of names: each safe, no duplicates, and no name that is also a directory
/// of another (`a` and `a/b`).
pub fn check_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), Error> {
    let mut files = BTreeSet::new();
    for name in names {
        check_name(name)?;
        if !files.insert(name) {
            return Err(Error::BadName { name: name.to_owned(), reason: "listed twice" });
        }
    }
    // A name that is also a directory of another: some other name starts with "name/".
    // One range query per name over the sorted set (no per-prefix work, so a header of
    // deep names costs O(n log n) comparisons, not O(n × depth)).
    for name in &files {
        let dir = format!("{name}/");
        if files
            .range::<str, _>((std::ops::Bound::Included(dir.as_str()), std::ops::Bound::Unbounded))
            .next()
            .is_some_and(|n| n.starts_with(&dir))
        {
            return Err(Error::BadName { name: (*name).to_owned(), reason: "both a file and a directory" });
        }
    }
    Ok(())
}

impl Meta {
    /// Parses the header bytes (and the MAC after them) against the preamble: JSON shape,
    /// names, algorithms, chunk size, and a layout that tiles the data region exactly.
    pub fn parse(preamble: [u8; PREAMBLE_LEN as usize], header_and_mac: &[u8], file_len: u64) -> Result<Self, Error> {
        let pre = parse_preamble(&preamble, file_len)?;
        let hlen = usize::try_from(pre.header_len).map_err(|_| Error::Header("header length".into()))?;
        let (header_bytes, mac) = header_and_mac.split_at_checked(hlen).ok_or_else(|| Error::Header("short".into()))?;
        let mac: [u8; MAC_LEN] = mac.try_into().map_err(|_| Error::Header("header MAC is not 32 bytes".into()))?;
        let header: Header = serde_json::from_slice(header_bytes)
            .map_err(|e| Error::Header(format!("header JSON: {}", e.to_string().escape_debug())))?;
        if header.aead != AEAD_NAME {
            return Err(Error::Header(format!("unsupported AEAD {:?}", header.aead)));
        }
        if header.kdf != KDF_NAME {
            return Err(Error::Header(format!("unsupported KDF {:?}", header.kdf)));
        }
        let mut bundle_id = [0u8; 32];
        hex::decode_to_slice(&header.bundle_id, &mut bundle_id)
            .map_err(|_| Error::Header("bundle_id is not 64 hex digits".into()))?;
        if !(MIN_CHUNK..=MAX_CHUNK).contains(&header.chunk_size) {
            return Err(Error::Header(format!("chunk size {} outside {MIN_CHUNK}..={MAX_CHUNK}", header.chunk_size)));
        }
        if header.files.len() > MAX_FILES {
            return Err(Error::Header(format!("{} files, more than {MAX_FILES}", header.files.len())));
        }
        check_names(header.files.iter().map(|f| f.path.as_str()))?;
        check_name(&header.card.path)?;
        if header.card.text.len() > crate::card::MAX_CARD_LEN {
            return Err(Error::Header("model card too long".into()));
        }
        let mut at = PREAMBLE_LEN;
        for f in &header.files {
            let want = sealed_len(f.size, header.chunk_size)
                .ok_or_else(|| Error::Header(format!("{}: size {} overflows", f.path, f.size)))?;
            if f.offset != at || f.length != want {
                return Err(Error::Header(format!(
                    "{}: sealed at {}+{}, expected {at}+{want} (files must tile the data region)",
                    f.path, f.offset, f.length
                )));
            }
            at = at.checked_add(want).ok_or_else(|| Error::Header("data region overflows".into()))?;
        }
        if at != pre.header_offset {
            return Err(Error::Header(format!("data ends at {at}, but the header starts at {}", pre.header_offset)));
        }
        Ok(Self { preamble, header_bytes: header_bytes.to_vec(), mac, header, bundle_id })
    }

    /// Parses a whole bundle held in memory (the fuzzer's entry point; bundles are read
    /// from files with positional reads).
    pub fn from_bytes(bundle: &[u8]) -> Result<Self, Error> {
        let len = bundle.len() as u64;
        let preamble: [u8; PREAMBLE_LEN as usize] = bundle
            .get(..PREAMBLE_LEN as usize)
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| Error::NotABundle("shorter than the preamble".into()))?;
        let pre = parse_preamble(&preamble, len)?;
        let start = usize::try_from(pre.header_offset).map_err(|_| Error::Header("offset".into()))?;
        Self::parse(preamble, bundle.get(start..).unwrap_or_default(), len)
    }

    /// Checks the header MAC with the data key: a wrong key fails here, before any chunk.
    pub fn authenticate(&self, key: &DataKey) -> Result<(), Error> {
        let mut msg = Vec::with_capacity(self.preamble.len().saturating_add(self.header_bytes.len()));
        msg.extend_from_slice(&self.preamble);
        msg.extend_from_slice(&self.header_bytes);
        hmac::verify(&key.mac_key()?, &msg, &self.mac).map_err(|_| Error::WrongKey)
    }
}

/// The header MAC over `preamble | header`.
pub(crate) fn header_mac(key: &DataKey, preamble: &[u8], header: &[u8]) -> Result<[u8; MAC_LEN], Error> {
    let mut ctx = hmac::Context::with_key(&key.mac_key()?);
    ctx.update(preamble);
    ctx.update(header);
    ctx.sign().as_ref().try_into().map_err(|_| Error::Signing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["a", "a/b.gguf", "dir/sub/file", "..a", "a..", ".hidden"] {
            check_name(ok).unwrap();
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "a\\b",
            "a\0b",
            "a\nb",
            "a/",
            "evil\u{202E}txt.gguf",
        ] {
            assert!(matches!(check_name(bad), Err(Error::BadName { .. })), "{bad:?}");
        }
        check_names(["a/b", "a/c", "b"]).unwrap();
        assert!(matches!(
            check_name(&vec!["a"; MAX_DEPTH + 1].join("/")),
            Err(Error::BadName { reason: "too deep", .. })
        ));
        check_name(&vec!["a"; MAX_DEPTH].join("/")).unwrap();
        check_names(["a", "a.b/c", "a-b"]).unwrap();
        assert!(matches!(check_names(["a", "a/b"]), Err(Error::BadName { reason: "both a file and a directory", .. })));
        assert!(matches!(check_names(["x/y/z", "x/y"]), Err(Error::BadName { .. })));
        assert!(matches!(check_names(["a", "a"]), Err(Error::BadName { reason: "listed twice", .. })));
    }

    #[test]
    fn chunk_arithmetic() {
        assert_eq!(chunk_count(0, 4096), 1);
        assert_eq!(chunk_count(4096, 4096), 1);
        assert_eq!(chunk_count(4097, 4096), 2);
        assert_eq!(sealed_len(4097, 4096), Some(4097 + 32));
        assert_eq!(sealed_len(u64::MAX, 4096), None);
    }

    #[test]
    fn nonces_and_aad_differ() {
        let id = [7u8; 32];
        assert_ne!(chunk_nonce(1).as_ref(), chunk_nonce(2).as_ref());
        assert_eq!(&chunk_nonce(0x0102).as_ref()[..], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2]);
        let a = chunk_aad(&id, "a", 0, false).unwrap();
        assert_ne!(a, chunk_aad(&id, "a", 0, true).unwrap());
        assert_ne!(a, chunk_aad(&id, "b", 0, false).unwrap());
        assert_ne!(a, chunk_aad(&[8u8; 32], "a", 0, false).unwrap());
        // Length-prefixed path: "ab" + index cannot collide with "a" + other bytes.
        assert_ne!(chunk_aad(&id, "ab", 0, false).unwrap().len(), a.len());
    }

    #[test]
    fn key_file_round_trip_and_debug_redacts() {
        let k = DataKey::generate().unwrap();
        let back = DataKey::from_hex(k.to_hex().as_bytes()).unwrap();
        assert_eq!(k.as_bytes(), back.as_bytes());
        assert_eq!(format!("{k:?}"), "DataKey(<redacted>)");
        assert!(DataKey::from_hex(b"abcd").is_err());
        assert!(DataKey::from_hex(&[0xff; 64]).is_err());
    }

    #[test]
    fn preamble_errors() {
        assert!(matches!(parse_preamble(b"short", 5), Err(Error::NotABundle(_))));
        assert!(matches!(parse_preamble(&[0u8; 32], 100), Err(Error::NotABundle(_))));
        let mut p = preamble(10, 32);
        assert!(parse_preamble(&p, 32 + 10 + 32).is_ok());
        assert!(matches!(parse_preamble(&p, 32 + 10 + 31), Err(Error::Header(_))));
        p[9] = 2;
        assert!(matches!(parse_preamble(&p, 74), Err(Error::UnsupportedVersion(2))));
        let mut p = preamble(10, 32);
        p[30] = 1;
        assert!(matches!(parse_preamble(&p, 74), Err(Error::Header(_))));
        let p = preamble(MAX_HEADER_LEN + 1, 32);
        assert!(matches!(parse_preamble(&p, u64::MAX), Err(Error::Header(_))));
        let p = preamble(10, u64::MAX - 5);
        assert!(matches!(parse_preamble(&p, u64::MAX), Err(Error::Header(_))));
    }
}
