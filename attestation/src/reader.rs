//! A panic-free cursor over untrusted bytes (after rustls `msgs/codec.rs` and the
//! `untrusted` crate). Every binary parser in this crate reads through it, so no
//! parser indexes or slices a buffer directly.

use crate::error::ParseError;

/// A cursor over a byte slice. Reads never panic: a short buffer is a
/// [`ParseError`] naming the structure and field.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    structure: &'static str,
}

impl<'a> Reader<'a> {
    /// Start reading `buf`, which holds a `structure` (used in error messages).
    pub fn new(buf: &'a [u8], structure: &'static str) -> Self {
        Self { buf, pos: 0, structure }
    }

    /// The structure name given at construction.
    pub fn structure(&self) -> &'static str {
        self.structure
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// A parse error for `field` in this structure.
    pub fn error(&self, field: &'static str, detail: impl Into<String>) -> ParseError {
        ParseError::new(self.structure, field, detail)
    }

    /// Take exactly `n` bytes for `field`.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], ParseError> {
        let rest = self.rest();
        match rest.split_at_checked(n) {
            Some((head, _)) => {
                self.pos = self.pos.saturating_add(n);
                Ok(head)
            }
            None => {
                Err(self.error(field, format!("truncated: need {n} bytes at offset {}, {} left", self.pos, rest.len())))
            }
        }
    }

    /// Take a fixed-size array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], ParseError> {
        let b = self.take(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    /// Skip `n` bytes.
    pub fn skip(&mut self, n: usize, field: &'static str) -> Result<(), ParseError> {
        self.take(n, field).map(|_| ())
    }

    /// Skip `n` bytes that the specification reserves and requires to be zero.
    pub fn reserved_zero(&mut self, n: usize, field: &'static str) -> Result<(), ParseError> {
        let b = self.take(n, field)?;
        if b.iter().any(|&x| x != 0) {
            return Err(self.error(field, format!("reserved bytes must be zero, found {}", hex::encode(b))));
        }
        Ok(())
    }

    /// A `u8`.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, ParseError> {
        Ok(self.array::<1>(field)?[0])
    }

    /// A little-endian `u16`.
    pub fn u16_le(&mut self, field: &'static str) -> Result<u16, ParseError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }

    /// A little-endian `u32`.
    pub fn u32_le(&mut self, field: &'static str) -> Result<u32, ParseError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    /// A little-endian `u64`.
    pub fn u64_le(&mut self, field: &'static str) -> Result<u64, ParseError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A big-endian `u16` (TPM structures are big-endian).
    pub fn u16_be(&mut self, field: &'static str) -> Result<u16, ParseError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `u32`.
    pub fn u32_be(&mut self, field: &'static str) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    /// A big-endian `u64`.
    pub fn u64_be(&mut self, field: &'static str) -> Result<u64, ParseError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    /// A sub-reader over the next `n` bytes (for length-prefixed structures).
    pub fn sub(&mut self, n: usize, field: &'static str) -> Result<Reader<'a>, ParseError> {
        let b = self.take(n, field)?;
        Ok(Reader::new(b, self.structure))
    }

    /// Require that nothing is left unread.
    pub fn expect_end(&self, field: &'static str) -> Result<(), ParseError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(self.error(field, format!("{n} unexpected trailing bytes"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_are_errors_not_panics() {
        let mut r = Reader::new(&[1, 2, 3], "test");
        assert_eq!(r.u16_le("a").unwrap(), 0x0201);
        let e = r.u16_le("b").unwrap_err();
        assert_eq!(e.field, "b");
        assert!(e.detail.contains("need 2 bytes at offset 2, 1 left"), "{e}");
        assert_eq!(r.u8("c").unwrap(), 3);
        assert!(r.expect_end("end").is_ok());
        assert!(r.take(usize::MAX, "huge").is_err());
    }

    #[test]
    fn reserved_must_be_zero() {
        let mut r = Reader::new(&[0, 0, 1], "test");
        assert!(r.reserved_zero(2, "ok").is_ok());
        let mut r = Reader::new(&[0, 0, 1], "test");
        assert!(r.reserved_zero(3, "bad").is_err());
    }
}
