//! Chunks: the unit clients fetch and subscribe to, and their bitset body.
//!
//! The grid `[0, boxes)` is cut into chunks of `chunk_size` boxes: chunk
//! `c` covers `[c * chunk_size, min((c + 1) * chunk_size, boxes))`. Shard
//! boundaries fall on chunk boundaries (the metadata group enforces it), so
//! a chunk lies in exactly one shard and its version is a `seq` of that
//! shard.
//!
//! ## Validator
//! A chunk's HTTP entity tag is [`etag`]: a digest of its bitset body, so
//! it changes exactly when the chunk's content changes (a write elsewhere
//! in the shard leaves it alone) and every gateway holding the same
//! content names it the same, whatever history loaded its state.
//!
//! ## Bit order of a chunk body
//! `ceil(len / 8)` bytes; box `start + i` is bit `i % 8` (value
//! `1 << (i % 8)`) of byte `i / 8`: least significant bit first. Bits past
//! `len` in the last byte are zero. The unit test `test_vector` is the shared
//! test vector for other implementations.

use checkraft_proto::ws::bitset;
use checkraft_proto::Grid;
use croaring::Bitmap;
use sha2::{Digest, Sha256};

/// Where a chunk lies in the grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    /// The chunk's id.
    pub id: u64,
    /// First box of the chunk.
    pub start: u64,
    /// One past the last box of the chunk.
    pub end: u64,
}

impl ChunkRange {
    /// Number of boxes in the chunk.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// True for an empty chunk (never returned by [`chunk_range`]).
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

/// Number of chunks of `grid`.
pub fn chunk_count(grid: &Grid) -> u64 {
    grid.boxes.div_ceil(u64::from(grid.chunk_size.max(1)))
}

/// The range of chunk `id`, or `None` past the grid.
pub fn chunk_range(grid: &Grid, id: u64) -> Option<ChunkRange> {
    let size = u64::from(grid.chunk_size.max(1));
    if id >= chunk_count(grid) {
        return None;
    }
    let start = id * size;
    Some(ChunkRange {
        id,
        start,
        end: (start + size).min(grid.boxes),
    })
}

/// The chunk holding box `index`.
pub fn chunk_of(grid: &Grid, index: u64) -> u64 {
    index / u64::from(grid.chunk_size.max(1))
}

/// The bitset body of the boxes `[start, end)` of `bitmap` (absolute
/// indices), in the LSB-first order of `docs/protocol.md`, encoded by the
/// one shared implementation, [`bitset::encode`].
pub fn encode_bits(bitmap: &Bitmap, start: u64, end: u64) -> Vec<u8> {
    let len = end.saturating_sub(start);
    if len == 0 {
        return Vec::new();
    }
    // Indices are u32 in croaring; a chunk never passes 2^32, and its
    // length is at most `MAX_CHUNK_SIZE`.
    let (lo, hi) = (start as u32, (end - 1) as u32);
    let mut iter = bitmap.iter();
    iter.reset_at_or_after(lo);
    bitset::encode(lo, len as u32, iter.take_while(|i| *i <= hi))
}

/// Bytes of the SHA-256 of a body kept in its entity tag: 128 bits, so
/// two different bodies of one chunk never share a tag in practice.
const ETAG_DIGEST_BYTES: usize = 16;

/// The entity tag of a chunk whose bitset body is `bits`:
/// `W/"{hex of the first 16 bytes of SHA-256(bits)}"`. Weak, because the
/// same tag names the body in every content-coding (`Vary:
/// Accept-Encoding` separates them in caches); `If-None-Match` compares
/// weakly anyway.
pub fn etag(bits: &[u8]) -> String {
    let digest = Sha256::digest(bits);
    let mut tag = String::with_capacity(4 + 2 * ETAG_DIGEST_BYTES);
    tag.push_str("W/\"");
    for b in &digest[..ETAG_DIGEST_BYTES] {
        tag.push_str(&format!("{b:02x}"));
    }
    tag.push('"');
    tag
}

/// Whether box `start + i` is set in a body made by [`encode_bits`].
pub fn bit(body: &[u8], i: u64) -> bool {
    u32::try_from(i).is_ok_and(|i| bitset::get(body, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(boxes: u64, chunk_size: u32) -> Grid {
        Grid { boxes, chunk_size }
    }

    #[test]
    fn ranges_cover_the_grid_and_the_last_chunk_is_partial() {
        let g = grid(10, 4);
        assert_eq!(chunk_count(&g), 3);
        assert_eq!(
            chunk_range(&g, 0),
            Some(ChunkRange {
                id: 0,
                start: 0,
                end: 4
            })
        );
        assert_eq!(chunk_range(&g, 2).unwrap().len(), 2);
        assert_eq!(chunk_range(&g, 3), None);
        assert_eq!(chunk_of(&g, 9), 2);
        assert_eq!(chunk_of(&g, 4), 1);
    }

    /// The shared test vector: in a chunk starting at box 16 of 12 boxes,
    /// boxes 16, 18, 23 and 24 checked give the bytes `85 01`
    /// (`0b1000_0101`, `0b0000_0001`).
    #[test]
    fn test_vector() {
        let bitmap = Bitmap::of(&[3, 16, 18, 23, 24, 28, 40]);
        let body = encode_bits(&bitmap, 16, 28);
        assert_eq!(body, vec![0x85, 0x01]);
        assert!(bit(&body, 0) && bit(&body, 2) && bit(&body, 7) && bit(&body, 8));
        assert!(!bit(&body, 1) && !bit(&body, 12));
    }

    #[test]
    fn every_position_round_trips() {
        for len in [1u64, 7, 8, 9, 64, 100] {
            for i in 0..len {
                let bitmap = Bitmap::of(&[(1000 + i) as u32]);
                let body = encode_bits(&bitmap, 1000, 1000 + len);
                assert_eq!(body.len() as u64, len.div_ceil(8));
                for j in 0..len {
                    assert_eq!(bit(&body, j), i == j, "len {len}, set {i}, probe {j}");
                }
                assert_eq!(body[(i / 8) as usize], 1 << (i % 8));
            }
        }
    }

    #[test]
    fn etags_follow_content_only() {
        let a = etag(&[0x85, 0x01]);
        assert_eq!(a, etag(&[0x85, 0x01]));
        assert_ne!(a, etag(&[0x85, 0x03]));
        assert_ne!(a, etag(&[0x85, 0x01, 0x00]));
        assert!(
            a.starts_with("W/\"") && a.ends_with('"') && a.len() == 36,
            "{a}"
        );
    }

    #[test]
    fn the_top_of_the_index_space_encodes() {
        let top = u32::MAX;
        let bitmap = Bitmap::of(&[top]);
        let body = encode_bits(&bitmap, u64::from(top) - 7, u64::from(top) + 1);
        assert_eq!(body, vec![0x80]);
    }
}
