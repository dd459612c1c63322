//! Writing and reading boxes through the shard map, as a gateway would.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use checkraft_proto::{Rejection, SetBatch, ShardMap, ShardRecord, WriteOutcome};
use croaring::{Bitmap, Portable};

use crate::client::NodeClient;

/// Routes box writes and reads to shard leaders using the shard map.
pub struct Router {
    /// The map in use; refreshed on demand.
    pub map: ShardMap,
    entries: Vec<String>,
}

impl Router {
    /// A router reading the map from the first of `entries` that answers.
    pub async fn new(entries: Vec<String>) -> Result<Self> {
        let mut router = Self {
            map: ShardMap::default(),
            entries,
        };
        router.refresh().await?;
        Ok(router)
    }

    /// Re-reads the map.
    pub async fn refresh(&mut self) -> Result<()> {
        for addr in &self.entries {
            let client = NodeClient::new(addr);
            if let Ok(resp) = client
                .send(client.http().get(client.url("/meta/map")))
                .await
            {
                if let Ok(map) = resp.json::<ShardMap>().await {
                    if map.initialized() {
                        self.map = map;
                        return Ok(());
                    }
                }
            }
        }
        bail!("no entry node served an initialized map")
    }

    fn candidates(&self, shard: &ShardRecord) -> Vec<String> {
        let mut ids: Vec<u64> = shard.leader.into_iter().collect();
        ids.extend(shard.replicas.iter().filter(|r| Some(**r) != shard.leader));
        ids.iter()
            .filter_map(|id| self.map.addr(*id).map(String::from))
            .collect()
    }

    /// Writes `sets` (grouped by shard) and returns the sets that were
    /// acknowledged. Unacknowledged ones (no leader within the retries)
    /// are left out.
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
            let Some(record) = self.map.shards.get(&shard).cloned() else {
                return false;
            };
            let batch = SetBatch {
                epoch: record.descriptor.epoch,
                sets: sets.clone(),
            };
            for addr in self.candidates(&record) {
                match NodeClient::new(&addr).write(shard, &batch).await {
                    Ok(WriteOutcome::Applied { .. }) => return true,
                    // The shard split or merged since the map was read:
                    // nothing was applied; the caller writes again.
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
                    _ => continue,
                }
            }
            tokio::time::sleep(Duration::from_millis(100 + 50 * attempt)).await;
            let _ = self.refresh().await;
        }
        false
    }

    /// The union of every shard's boxes, each read linearizably from its
    /// leader.
    pub async fn read_all(&mut self) -> Result<Bitmap> {
        let mut all = Bitmap::new();
        let shards: Vec<ShardRecord> = self.map.shards.values().cloned().collect();
        for record in shards {
            let mut done = false;
            for _ in 0..40 {
                for addr in self.candidates(&record) {
                    if let Ok(read) = NodeClient::new(&addr)
                        .read(record.descriptor.shard, true)
                        .await
                    {
                        let part =
                            Bitmap::try_deserialize::<Portable>(&read.bitmap).ok_or_else(|| {
                                anyhow!("shard {} sent a bad bitmap", record.descriptor.shard)
                            })?;
                        all.or_inplace(&part);
                        done = true;
                        break;
                    }
                }
                if done {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            if !done {
                bail!(
                    "no replica of shard {} answered a linearizable read",
                    record.descriptor.shard
                );
            }
        }
        Ok(all)
    }
}
