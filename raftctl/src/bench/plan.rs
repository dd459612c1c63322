//! What one worker process is told to do ([`WorkerPlan`], passed as JSON
//! on its command line), and the deterministic per-client choices made
//! from it: source address, gateway, viewport.

use std::net::Ipv4Addr;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// One shard's box range, for attributing Acks to shards.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct ShardRange {
    /// The shard id.
    pub id: u64,
    /// First box.
    pub start: u64,
    /// One past the last box.
    pub end: u64,
}

/// A worker's share of the load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerPlan {
    /// The worker's number (0-based).
    pub worker: u32,
    /// Workers in the run. Worker `w` writes only boxes `i` with
    /// `i % workers == w`, so that no other process changes a box it
    /// times (see [`Self::writable`]).
    pub workers: u32,
    /// Gateway addresses, `HOST:PORT`; client `i` uses `gateways[i % len]`.
    pub gateways: Vec<String>,
    /// Global index of this worker's first client.
    pub first_client: u64,
    /// This worker's clients.
    pub clients: u64,
    /// Clients per source address.
    pub per_address: u32,
    /// Grid boxes.
    pub boxes: u64,
    /// Boxes per chunk.
    pub chunk_size: u32,
    /// Chunks per viewport.
    pub viewport: u32,
    /// Share of hot viewports.
    pub hot_fraction: f64,
    /// Hot area, in chunks.
    pub hot_chunks: u32,
    /// Sets per second per client (`None`: as fast as `inflight` allows).
    pub rate_per_client: Option<f64>,
    /// Sets awaiting an Ack per client at most.
    pub inflight: u32,
    /// Shard ranges, for the per-shard ack gaps.
    pub shards: Vec<ShardRange>,
    /// Ack gaps per shard shorter than this are not reported, in ms.
    pub gap_threshold_ms: u64,
    /// Connection handshakes in flight at once in this worker.
    pub connect_concurrency: usize,
}

impl WorkerPlan {
    /// Number of chunks in the grid.
    pub fn chunks(&self) -> u32 {
        self.boxes.div_ceil(u64::from(self.chunk_size)) as u32
    }

    /// The source address of global client `client`: 127.10.0.1 onwards,
    /// `per_address` clients each, skipping .0 and .255 host bytes.
    pub fn source_address(&self, client: u64) -> Ipv4Addr {
        source_address(client / u64::from(self.per_address))
    }

    /// The gateway of global client `client`.
    pub fn gateway(&self, client: u64) -> &str {
        &self.gateways[(client % self.gateways.len() as u64) as usize]
    }

    /// A viewport: `(first_chunk, count)`, hot with probability
    /// `hot_fraction`.
    pub fn viewport(&self, rng: &mut impl Rng) -> (u32, u32) {
        let chunks = self.chunks().max(1);
        let count = self.viewport.clamp(1, chunks);
        let span = chunks - count + 1;
        let hot = self.hot_chunks.clamp(1, span);
        let first = if rng.gen_bool(self.hot_fraction) {
            rng.gen_range(0..hot)
        } else {
            rng.gen_range(0..span)
        };
        (first, count)
    }

    /// The box of `[first, end)` nearest to `index` that this worker
    /// writes (`i % workers == worker`); `None` if the range has none.
    /// `end` is a u64 so that a range can end at 2^32, the end of the
    /// largest grid.
    pub fn writable(&self, index: u32, first: u64, end: u64) -> Option<u32> {
        let w = self.workers.max(1);
        let base = index - index % w + self.worker % w;
        [Some(base), base.checked_add(w), base.checked_sub(w)]
            .into_iter()
            .flatten()
            .find(|i| (first..end).contains(&u64::from(*i)))
    }

    /// The shard owning box `index`, as an index into [`Self::shards`].
    pub fn shard_of(&self, index: u32) -> Option<usize> {
        let i = u64::from(index);
        self.shards.iter().position(|s| s.start <= i && i < s.end)
    }
}

/// Source address number `n`: 127.10.0.1, 127.10.0.2, ... 127.10.0.254,
/// 127.10.1.1, ...
pub fn source_address(n: u64) -> Ipv4Addr {
    let host = (n % 254) as u8 + 1;
    let net = n / 254;
    Ipv4Addr::new(127, 10 + (net / 256) as u8, (net % 256) as u8, host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_skip_zero_and_broadcast_bytes() {
        assert_eq!(source_address(0), Ipv4Addr::new(127, 10, 0, 1));
        assert_eq!(source_address(253), Ipv4Addr::new(127, 10, 0, 254));
        assert_eq!(source_address(254), Ipv4Addr::new(127, 10, 1, 1));
        assert_eq!(source_address(254 * 256), Ipv4Addr::new(127, 11, 0, 1));
    }

    #[test]
    fn workers_write_disjoint_boxes() {
        let mut plan = sample();
        plan.workers = 3;
        for w in 0..3 {
            plan.worker = w;
            for i in 100..200 {
                let got = plan.writable(i, 100, 200).unwrap();
                assert_eq!(got % 3, w);
                assert!((100..200).contains(&got));
            }
        }
        // Worker 2 of 3 has no box in [100, 101).
        assert_eq!(plan.writable(100, 100, 101), None);
    }

    #[test]
    fn the_last_chunk_of_a_2_pow_32_grid_is_writable() {
        let mut plan = sample();
        plan.boxes = 1 << 32;
        plan.workers = 2;
        assert_eq!(plan.chunks(), 1 << 20);
        let (first, end) = ((1u64 << 32) - 4096, 1u64 << 32);
        plan.worker = 1;
        assert_eq!(plan.writable(u32::MAX, first, end), Some(u32::MAX));
        plan.worker = 0;
        assert_eq!(plan.writable(u32::MAX, first, end), Some(u32::MAX - 1));
    }

    fn sample() -> WorkerPlan {
        WorkerPlan {
            worker: 0,
            workers: 1,
            gateways: vec!["a".into()],
            first_client: 0,
            clients: 1,
            per_address: 50,
            boxes: 100_000,
            chunk_size: 4096,
            viewport: 2,
            hot_fraction: 0.8,
            hot_chunks: 4,
            rate_per_client: None,
            inflight: 1,
            shards: vec![],
            gap_threshold_ms: 50,
            connect_concurrency: 1,
        }
    }

    #[test]
    fn viewports_stay_in_the_grid_and_lean_hot() {
        let plan = sample();
        let mut rng = rand::thread_rng();
        let mut hot = 0;
        for _ in 0..1000 {
            let (first, count) = plan.viewport(&mut rng);
            assert_eq!(count, 2);
            assert!(first + count <= plan.chunks());
            hot += usize::from(first < 4);
        }
        assert!(hot > 700, "{hot} of 1000 viewports hot");
    }
}
