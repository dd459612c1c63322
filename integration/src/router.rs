//! Writing and reading boxes through the shard map, as a gateway would,
//! with `checkraft-client`'s leader routing.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use checkraft_client::{shard_candidates, Budget, Call, NodeApi};
use checkraft_proto::{Rejection, SetBatch, ShardMap, WriteOutcome};
use croaring::{Bitmap, Portable};

use crate::client::peer_api;

/// One pass over a shard's replicas (leader hint first) per write attempt;
/// the map is re-read between attempts.
const WRITE_PASS: Budget = Budget::ONCE;
/// Linearizable reads: 40 passes over the replicas, 250 ms apart.
const READ: Budget = Budget {
    rounds: 40,
    forwards: 40,
    pause: Duration::from_millis(250),
    total: None,
    attempt: None,
};

/// Routes box writes and reads to shard leaders using the shard map.
pub struct Router {
    /// The map in use; refreshed on demand.
    pub map: ShardMap,
    entries: Vec<String>,
    api: NodeApi,
}

impl Router {
    /// A router reading the map from the first of `entries` that answers.
    pub async fn new(entries: Vec<String>) -> Result<Self> {
        let mut router = Self {
            map: ShardMap::default(),
            entries,
            api: peer_api(),
        };
        router.refresh().await?;
        Ok(router)
    }

    /// Re-reads the map.
    pub async fn refresh(&mut self) -> Result<()> {
        for addr in &self.entries {
            if let Ok(map) = self.api.map(addr).await {
                if map.initialized() {
                    self.map = map;
                    return Ok(());
                }
            }
        }
        bail!("no entry node served an initialized map")
    }

    /// Writes `sets` (grouped by shard) and returns the sets that were
    /// acknowledged. Unacknowledged ones (no leader within the retries, or
    /// refused for a stale epoch because the map lagged a reshape) are
    /// left out.
    pub async fn write(&mut self, sets: &[(u32, bool)]) -> Result<Vec<(u32, bool)>> {
        let mut by_shard: BTreeMap<u64, Vec<(u32, bool)>> = BTreeMap::new();
        for &(i, c) in sets {
            let shard = self
                .map
                .shard_for(u64::from(i))
                .ok_or_else(|| anyhow!("no shard owns box {i}"))?;
            by_shard
                .entry(shard.descriptor.shard)
                .or_default()
                .push((i, c));
        }
        let mut acked = Vec::new();
        for (shard, sets) in by_shard {
            if self.write_shard(shard, sets.clone()).await {
                acked.extend(sets);
            }
        }
        Ok(acked)
    }

    async fn write_shard(&mut self, shard: u64, sets: Vec<(u32, bool)>) -> bool {
        for attempt in 0..20 {
            let Some(record) = self.map.shards.get(&shard) else {
                return false;
            };
            let batch = SetBatch {
                epoch: record.descriptor.epoch,
                sets: sets.clone(),
            };
            let call = Call::post_json(format!("/shards/{shard}/write"), &batch);
            let candidates = shard_candidates(&self.map, shard);
            let what = format!("write to shard {shard}");
            let routed = self
                .api
                .outcome_at_leader(&what, &candidates, call, &WRITE_PASS);
            match routed.await {
                Ok(WriteOutcome::Applied { .. }) => return true,
                // The map lags a split or merge that just moved the shard
                // to a new epoch or range, or froze it: nothing was
                // written, so the sets stay unacknowledged (re-read the
                // map; the caller writes again).
                Ok(WriteOutcome::Rejected {
                    rejection:
                        Rejection::StaleEpoch { .. }
                        | Rejection::Moved { .. }
                        | Rejection::Frozen { .. },
                }) => {
                    let _ = self.refresh().await;
                    return false;
                }
                Ok(WriteOutcome::Rejected { rejection }) => {
                    panic!("shard {shard} rejected a valid batch: {rejection}")
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(100 + 50 * attempt)).await;
            let _ = self.refresh().await;
        }
        false
    }

    /// The boxes of `acked` that are not set, reading every shard
    /// linearizably from its leader ([`Router::read_all`]).
    pub async fn missing(&mut self, acked: &[u32]) -> Result<Vec<u32>> {
        let all = self.read_all().await?;
        Ok(acked
            .iter()
            .copied()
            .filter(|i| !all.contains(*i))
            .collect())
    }

    /// The union of every shard's boxes, each read linearizably from its
    /// leader.
    pub async fn read_all(&mut self) -> Result<Bitmap> {
        let mut all = Bitmap::new();
        for &shard in self.map.shards.keys() {
            let read = self.api.read_shard(&self.map, shard, &READ).await;
            let read = read.map_err(|e| {
                anyhow!("no replica of shard {shard} answered a linearizable read: {e}")
            })?;
            let part = Bitmap::try_deserialize::<Portable>(&read.bitmap)
                .ok_or_else(|| anyhow!("shard {shard} sent a bad bitmap"))?;
            all.or_inplace(&part);
        }
        Ok(all)
    }
}
