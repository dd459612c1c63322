//! The byte-level pieces of the websocket protocol: unsigned LEB128
//! varints and a strict reader over one message.
//!
//! A varint holds 7 bits per byte, least significant group first; the top
//! bit of a byte says another follows. A `u64` takes 1 to 10 bytes. Every
//! varint must be **minimal**: no final `0x00` group after the first byte
//! (so `0x80 0x00` for 0 is refused), at most 10 bytes, and a 10th byte of
//! 0 or 1 only (nothing past `u64::MAX`). With that, each value has exactly
//! one encoding, and a decoded message re-encodes to the same bytes.

use super::WsError;

/// Longest varint (a `u64`).
pub const MAX_VARINT_BYTES: usize = 10;

/// Appends `value` as a minimal varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The length of `value`'s varint (1 to 10 bytes).
pub fn varint_len(value: u64) -> usize {
    let bits = 64 - value.max(1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// A reader over one message, after its type byte. Every read names its
/// field, so an error says which one was short or malformed.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader of `bytes` (the whole message) from the byte after its
    /// type.
    pub fn new(bytes: &'a [u8]) -> Result<Self, WsError> {
        if bytes.is_empty() {
            return Err(WsError::Empty);
        }
        Ok(Self { bytes, pos: 1 })
    }

    fn kind(&self) -> u8 {
        self.bytes[0]
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WsError> {
        if self.remaining() < n {
            return Err(WsError::Truncated {
                kind: self.kind(),
                field,
            });
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self, field: &'static str) -> Result<u8, WsError> {
        Ok(self.bytes(1, field)?[0])
    }

    /// A `checked` byte: 0 or 1.
    pub fn flag(&mut self, field: &'static str) -> Result<bool, WsError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(WsError::BadValue {
                field,
                value: u64::from(v),
            }),
        }
    }

    /// A minimal varint of at most 10 bytes.
    pub fn varint(&mut self, field: &'static str) -> Result<u64, WsError> {
        let mut value = 0u64;
        for i in 0..MAX_VARINT_BYTES {
            let byte = self.u8(field)?;
            if i == MAX_VARINT_BYTES - 1 && byte > 1 {
                // A continuation bit on the 10th byte, or bits past 2^64.
                return Err(WsError::VarintTooLong { field });
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if byte == 0 && i > 0 {
                    return Err(WsError::VarintNotMinimal { field });
                }
                return Ok(value);
            }
        }
        unreachable!("the 10th byte ends the varint or fails")
    }

    /// A varint that must fit in 32 bits.
    pub fn varint_u32(&mut self, field: &'static str) -> Result<u32, WsError> {
        let value = self.varint(field)?;
        u32::try_from(value).map_err(|_| WsError::BadValue { field, value })
    }

    /// A varint that must fit in 16 bits.
    pub fn varint_u16(&mut self, field: &'static str) -> Result<u16, WsError> {
        let value = self.varint(field)?;
        u16::try_from(value).map_err(|_| WsError::BadValue { field, value })
    }

    /// Ends the message: no byte may be left.
    pub fn finish(self) -> Result<(), WsError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(WsError::Trailing {
                kind: self.kind(),
                extra,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<u64, WsError> {
        let mut message = vec![0x84];
        message.extend_from_slice(bytes);
        Reader::new(&message)?.varint("v")
    }

    #[test]
    fn varints_round_trip_at_every_length() {
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            1 << 35,
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(out.len(), varint_len(value), "{value}");
            assert_eq!(read(&out), Ok(value));
        }
        let mut max = Vec::new();
        put_varint(&mut max, u64::MAX);
        assert_eq!(
            max,
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn malformed_varints_are_refused() {
        let field = "v";
        assert_eq!(read(&[0x80]), Err(WsError::Truncated { kind: 0x84, field }));
        assert_eq!(
            read(&[0x80, 0x00]),
            Err(WsError::VarintNotMinimal { field })
        );
        // 11 bytes, and a 10th byte past u64::MAX.
        assert_eq!(read(&[0xff; 11]), Err(WsError::VarintTooLong { field }));
        let mut past = vec![0xff; 9];
        past.push(0x02);
        assert_eq!(read(&past), Err(WsError::VarintTooLong { field }));
    }
}
