//! The whole-grid overview: checked boxes per region, for the page's
//! minimap (`GET /api/overview`).
//!
//! Regions are hierarchical: a region at level `k` holds `chunk_size × 2^k`
//! boxes and starts at a multiple of that size, so the regions of level
//! `k + 1` are pairs of those of level `k`. An answer covers a range of the
//! grid (`?start=S&end=E`, default the whole grid) at the finest level
//! whose regions over the range number at most [`MAX_REGIONS`]: a 2^32-box
//! grid of 4096-box chunks answers with 1024 regions of 4 Mi boxes, and a
//! client zooms into a range to see it finer (down to single chunks). The
//! body is small (at most 1024 counts) and compresses to little where the
//! grid is sparse.
//!
//! Counting is `range_cardinality` on the shards' croaring bitmaps, a
//! handful of container reads per region, done per request; the answer
//! carries a content ETag, so a client that polls (the page does when the
//! checked total moves, and every minute) gets a 304 while nothing in the
//! range changed.

use serde::{Deserialize, Serialize};

use crate::chunk;
use crate::error::{Error, Result};
use crate::gateway::Gateway;

/// Most regions in one answer.
pub const MAX_REGIONS: u64 = 1024;

/// The body of `GET /api/overview`: region `i` covers boxes
/// `[start + i × region, min(start + (i + 1) × region, end))`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    /// Boxes in the grid.
    pub boxes: u64,
    /// The first box of the first region (a multiple of `region`).
    pub start: u64,
    /// One past the last box covered.
    pub end: u64,
    /// Boxes per region: `chunk_size × 2^level`.
    pub region: u64,
    /// The level: `region = chunk_size × 2^level`.
    pub level: u32,
    /// Checked boxes per region.
    pub counts: Vec<u64>,
}

/// The finest level whose regions over `[start, end)` number at most
/// [`MAX_REGIONS`], and that region size.
pub fn level_for(chunk_size: u64, start: u64, end: u64) -> (u32, u64) {
    let mut level = 0;
    let mut region = chunk_size.max(1);
    while end.div_ceil(region) - start / region > MAX_REGIONS {
        level += 1;
        region *= 2;
    }
    (level, region)
}

/// Parses `start=S&end=E` (both optional) into a range of the grid.
fn range(query: &str, boxes: u64) -> Result<(u64, u64)> {
    let mut start = 0;
    let mut end = boxes;
    for (key, value) in serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .map_err(|e| Error::BadRequest(format!("query: {e}")))?
    {
        let n: u64 = value
            .parse()
            .map_err(|_| Error::BadRequest(format!("{key} {value:?} is not a number")))?;
        match key.as_str() {
            "start" => start = n,
            "end" => end = n,
            _ => return Err(Error::BadRequest(format!("unknown parameter {key:?}"))),
        }
    }
    let end = end.min(boxes);
    if start >= end {
        return Err(Error::BadRequest(format!(
            "empty range [{start}, {end}) of a grid of {boxes} boxes"
        )));
    }
    Ok((start, end))
}

/// The overview of the range `query` names: 400 for a bad range, 503 while
/// a shard of it is not loaded.
pub fn overview(gateway: &Gateway, query: &str) -> Result<Overview> {
    let map = gateway.current_map()?;
    let grid = map
        .grid
        .ok_or_else(|| Error::Unavailable("the cluster is not initialized".into()))?;
    let (start, end) = range(query, grid.boxes)?;
    let (level, region) = level_for(u64::from(grid.chunk_size), start, end);
    let first = start / region * region;
    let mut counts = vec![0u64; end.saturating_sub(first).div_ceil(region) as usize];
    for record in map.shards.values() {
        let d = &record.descriptor;
        let (lo, hi) = (d.start.max(first), d.end.min(end));
        if lo >= hi {
            continue;
        }
        let handle = gateway
            .shards
            .get(d.shard)
            .filter(|h| h.read().loaded)
            .ok_or_else(|| {
                Error::Unavailable(format!("shard {}'s state is not loaded yet", d.shard))
            })?;
        let state = handle.read();
        let mut at = lo;
        while at < hi {
            let i = (at - first) / region;
            let stop = (first + (i + 1) * region).min(hi);
            // Box indices fit in u32 (the grid has at most 2^32 boxes).
            let (a, b) = (at as u32, (stop - 1) as u32);
            counts[i as usize] += state.bitmap.range_cardinality(a..=b);
            at = stop;
        }
    }
    Ok(Overview {
        boxes: grid.boxes,
        start: first,
        end,
        region,
        level,
        counts,
    })
}

/// The overview's entity tag: a digest of its JSON body.
pub fn etag(body: &[u8]) -> String {
    chunk::etag(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_keep_answers_small() {
        // 1M boxes of 4096-box chunks: one region per chunk.
        assert_eq!(level_for(4096, 0, 1_000_000), (0, 4096));
        // 2^32 boxes: 1024 regions of 4 Mi boxes.
        let (level, region) = level_for(4096, 0, 1 << 32);
        assert_eq!((level, region), (10, 4 << 20));
        assert_eq!((1u64 << 32) / region, MAX_REGIONS);
        // A zoomed range of the same grid is finer.
        assert_eq!(level_for(4096, 1 << 31, (1 << 31) + (1 << 22)), (0, 4096));
        // An unaligned range counts the regions it touches.
        let (_, region) = level_for(4096, 4095, 4096 * 1024 + 1);
        assert!((4096 * 1024 + 1u64).div_ceil(region) - 4095 / region <= MAX_REGIONS);
    }

    #[test]
    fn ranges_parse_and_clamp() {
        assert_eq!(range("", 100).unwrap(), (0, 100));
        assert_eq!(range("start=10&end=500", 100).unwrap(), (10, 100));
        assert!(range("start=100", 100).is_err());
        assert!(range("start=x", 100).is_err());
        assert!(range("zoom=2", 100).is_err());
    }
}
