//! The two wire forms of an `Update`'s entries (`docs/protocol.md`,
//! "Update"): the **list** form (type `0x82`) and the **bitset** form
//! (type `0x88`). Both carry the same message, a chunk's changed boxes with
//! their new values in ascending offset order; the encoder sends the
//! bitset form exactly when it is smaller, so every Update has one
//! encoding, and a decoder refuses a bitset form that is not smaller.
//!
//! - List: `varint count`, then per entry `varint (gap << 1 | checked)`,
//!   where `gap` is the offset minus the previous entry's offset minus 1
//!   (the first entry's gap is its offset). Close boxes cost one byte each.
//! - Bitset: `varint first_byte`, `varint mask_len`, `mask_len` bytes of
//!   mask (box `8 * first_byte + i` changed iff bit `i` is set, LSB first),
//!   then the changed boxes' new values packed one bit each in ascending
//!   offset order (LSB first, unused high bits of the last byte zero). The
//!   mask's first and last bytes are non-zero. Dense changes cost about a
//!   bit per box of their span.

use super::wire::{put_varint, varint_len, Reader};
use super::{UpdateEntry, WsError, MAX_CHUNK_SIZE};

/// Type byte of the list form.
pub const LIST: u8 = 0x82;
/// Type byte of the bitset form.
pub const BITSET: u8 = 0x88;

/// Checks that `entries` are in strictly ascending offset order below
/// [`MAX_CHUNK_SIZE`]. Panics otherwise: a gateway bug.
fn check_order(entries: &[UpdateEntry]) {
    let mut next = 0u32;
    for e in entries {
        let offset = u32::from(e.offset);
        assert!(
            offset >= next && offset < MAX_CHUNK_SIZE,
            "update entries must ascend strictly below {MAX_CHUNK_SIZE}; got offset {offset}"
        );
        next = offset + 1;
    }
}

fn list_item(e: &UpdateEntry, next: u32) -> u64 {
    (u64::from(u32::from(e.offset) - next) << 1) | u64::from(e.checked)
}

/// Bytes of the list form's body.
fn list_len(entries: &[UpdateEntry]) -> usize {
    let mut next = 0u32;
    let mut len = varint_len(entries.len() as u64);
    for e in entries {
        len += varint_len(list_item(e, next));
        next = u32::from(e.offset) + 1;
    }
    len
}

/// `(first_byte, mask_len)` of the bitset form, `None` without entries.
fn span(entries: &[UpdateEntry]) -> Option<(usize, usize)> {
    let first = usize::from(entries.first()?.offset) / 8;
    let last = usize::from(entries.last()?.offset) / 8;
    Some((first, last - first + 1))
}

/// Bytes of the bitset form's body (`None` without entries).
fn bitset_len(entries: &[UpdateEntry]) -> Option<usize> {
    let (first, mask_len) = span(entries)?;
    Some(
        varint_len(first as u64)
            + varint_len(mask_len as u64)
            + mask_len
            + entries.len().div_ceil(8),
    )
}

/// The type byte the encoder uses for `entries`: the bitset form only
/// when strictly smaller.
pub fn form(entries: &[UpdateEntry]) -> u8 {
    check_order(entries);
    match bitset_len(entries) {
        Some(bits) if bits < list_len(entries) => BITSET,
        _ => LIST,
    }
}

/// Appends the body of `entries` in the form `kind` (from [`form`]).
pub fn encode_body(out: &mut Vec<u8>, kind: u8, entries: &[UpdateEntry]) {
    if kind == LIST {
        put_varint(out, entries.len() as u64);
        let mut next = 0u32;
        for e in entries {
            put_varint(out, list_item(e, next));
            next = u32::from(e.offset) + 1;
        }
        return;
    }
    let (first, mask_len) = span(entries).expect("the bitset form has entries");
    put_varint(out, first as u64);
    put_varint(out, mask_len as u64);
    let mask_at = out.len();
    out.resize(mask_at + mask_len, 0);
    let values_at = out.len();
    out.resize(values_at + entries.len().div_ceil(8), 0);
    for (i, e) in entries.iter().enumerate() {
        let bit = usize::from(e.offset) - 8 * first;
        out[mask_at + bit / 8] |= 1 << (bit % 8);
        if e.checked {
            out[values_at + i / 8] |= 1 << (i % 8);
        }
    }
}

/// Reads the body of an Update of type `kind` (list or bitset).
pub fn decode_body(r: &mut Reader<'_>, kind: u8) -> Result<Vec<UpdateEntry>, WsError> {
    if kind == LIST {
        let count = r.varint("count")?;
        // Each entry takes at least one byte: a count past what is left
        // (or past the largest chunk) is refused before allocating.
        if count > u64::from(MAX_CHUNK_SIZE) {
            return Err(WsError::BadValue {
                field: "count",
                value: count,
            });
        }
        if count as usize > r.remaining() {
            return Err(WsError::Truncated {
                kind,
                field: "entry",
            });
        }
        let mut entries = Vec::with_capacity(count as usize);
        let mut next = 0u64;
        for _ in 0..count {
            let item = r.varint("entry")?;
            let offset = next + (item >> 1);
            if offset >= u64::from(MAX_CHUNK_SIZE) {
                return Err(WsError::BadValue {
                    field: "entry offset",
                    value: offset,
                });
            }
            entries.push(UpdateEntry {
                offset: offset as u16,
                checked: item & 1 == 1,
            });
            next = offset + 1;
        }
        if bitset_len(&entries).is_some_and(|bits| bits < list_len(&entries)) {
            return Err(WsError::NotCanonical(
                "the list form is only used when the bitset form is not smaller",
            ));
        }
        return Ok(entries);
    }
    let max_bytes = u64::from(MAX_CHUNK_SIZE / 8);
    let first = r.varint("first_byte")?;
    let mask_len = r.varint("mask_len")?;
    if first >= max_bytes {
        return Err(WsError::BadValue {
            field: "first_byte",
            value: first,
        });
    }
    if mask_len == 0 || mask_len > max_bytes - first {
        return Err(WsError::BadValue {
            field: "mask_len",
            value: mask_len,
        });
    }
    let mask = r.bytes(mask_len as usize, "mask")?;
    if mask[0] == 0 || mask[mask.len() - 1] == 0 {
        return Err(WsError::NotCanonical(
            "the bitset form's mask must start and end with a non-zero byte",
        ));
    }
    let count: usize = mask.iter().map(|b| b.count_ones() as usize).sum();
    let values = r.bytes(count.div_ceil(8), "values")?;
    if !count.is_multiple_of(8) && values[values.len() - 1] >> (count % 8) != 0 {
        return Err(WsError::NotCanonical(
            "the bitset form's unused value bits must be zero",
        ));
    }
    let mut entries = Vec::with_capacity(count);
    for (byte, bits) in mask.iter().enumerate() {
        for bit in 0..8 {
            if bits & (1 << bit) != 0 {
                let i = entries.len();
                entries.push(UpdateEntry {
                    offset: ((first as usize + byte) * 8 + bit) as u16,
                    checked: values[i / 8] & (1 << (i % 8)) != 0,
                });
            }
        }
    }
    if bitset_len(&entries) >= Some(list_len(&entries)) {
        return Err(WsError::NotCanonical(
            "the bitset form is only used when smaller than the list form",
        ));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(offsets: impl IntoIterator<Item = u16>) -> Vec<UpdateEntry> {
        offsets
            .into_iter()
            .map(|offset| UpdateEntry {
                offset,
                checked: offset % 3 == 0,
            })
            .collect()
    }

    fn round_trip(entries: &[UpdateEntry]) -> (u8, usize) {
        let kind = form(entries);
        let mut body = vec![kind];
        encode_body(&mut body, kind, entries);
        let mut r = Reader::new(&body).unwrap();
        assert_eq!(decode_body(&mut r, kind).as_deref(), Ok(entries));
        r.finish().unwrap();
        (kind, body.len() - 1)
    }

    #[test]
    fn sparse_changes_are_listed_and_dense_ones_are_bitsets() {
        assert_eq!(round_trip(&[]), (LIST, 1));
        assert_eq!(round_trip(&entries([4095])), (LIST, 3));
        assert_eq!(round_trip(&entries((0..4096).step_by(40))), (LIST, 104));
        // Every box of the largest chunk: 4096 bytes of mask, 4096 of values.
        let all = entries(0..=u16::MAX >> 1);
        assert_eq!(all.len(), MAX_CHUNK_SIZE as usize);
        assert_eq!(round_trip(&all), (BITSET, 1 + 2 + 4096 + 4096));
        assert_eq!(round_trip(&entries((100..300).step_by(2))).0, BITSET);
    }

    #[test]
    #[should_panic(expected = "ascend strictly")]
    fn unordered_entries_are_a_bug() {
        form(&entries([5, 3]));
    }

    #[test]
    fn a_list_that_a_bitset_beats_is_refused_and_a_huge_mask_length_is_an_error() {
        // Found by the fuzz target: boxes close together sent as a list
        // where the bitset form is smaller.
        let dense = entries(100..124);
        assert_eq!(form(&dense), BITSET);
        let mut list = vec![LIST];
        encode_body(&mut list, LIST, &dense);
        let mut r = Reader::new(&list).unwrap();
        assert!(matches!(
            decode_body(&mut r, LIST),
            Err(WsError::NotCanonical(_))
        ));
        // first_byte 45, mask_len 2^64 - 1: refused, not an overflow.
        let huge = [
            BITSET, 0x2d, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        let mut r = Reader::new(&huge).unwrap();
        assert!(matches!(
            decode_body(&mut r, BITSET),
            Err(WsError::BadValue {
                field: "mask_len",
                ..
            })
        ));
    }

    #[test]
    fn a_bitset_that_is_not_smaller_is_refused() {
        // One box as a bitset: 1 + 1 + 1 + 1 bytes, the list takes 2.
        let body = [BITSET, 0x00, 0x01, 0x01, 0x01];
        let mut r = Reader::new(&body).unwrap();
        assert!(matches!(
            decode_body(&mut r, BITSET),
            Err(WsError::NotCanonical(_))
        ));
    }
}
