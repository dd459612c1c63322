//! openraft's log storage for one group, in that group's sled tree.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use std::io;

use checkraft_proto::raft::{Entry, LogId, Vote};
use checkraft_proto::{codec, TypeConfig};
use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{read_err, write_err, Flusher};

pub(super) const VOTE: &[u8] = b"m:vote";
pub(super) const COMMITTED: &[u8] = b"m:committed";
pub(super) const PURGED: &[u8] = b"m:purged";

fn log_key(index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = b'l';
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

/// One group's raft log, vote and committed index.
#[derive(Clone)]
pub struct LogStore {
    tree: sled::Tree,
    flusher: Flusher,
}

impl LogStore {
    /// A log store over `tree`.
    pub fn new(tree: sled::Tree, flusher: Flusher) -> Self {
        Self { tree, flusher }
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, io::Error> {
        match self.tree.get(key).map_err(read_err)? {
            Some(v) => codec::decode(&v).map(Some).map_err(read_err),
            None => Ok(None),
        }
    }

    fn put<T: Serialize>(&self, key: &[u8], value: &T) -> Result<(), io::Error> {
        self.tree
            .insert(key, codec::encode(value))
            .map_err(write_err)?;
        Ok(())
    }

    /// The committed log id last saved by openraft on this replica (read
    /// by the metrics scrape).
    pub fn committed(&self) -> Result<Option<LogId>, io::Error> {
        Ok(self.get::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn flush(&self) -> Result<(), io::Error> {
        self.flusher.flush().await.map_err(write_err)
    }

    /// Removes every log key in `range` in one atomic batch, together with
    /// `extra` (key, value) writes.
    fn remove_logs(
        &self,
        from: u64,
        to_inclusive: u64,
        extra: Option<(&[u8], Vec<u8>)>,
    ) -> Result<(), io::Error> {
        let mut batch = sled::Batch::default();
        if let Some((k, v)) = extra {
            batch.insert(k, v);
        }
        for key in self
            .tree
            .range(log_key(from)..=log_key(to_inclusive))
            .keys()
        {
            batch.remove(key.map_err(read_err)?);
        }
        self.tree.apply_batch(batch).map_err(write_err)
    }

    fn last_log_id(&self) -> Result<Option<LogId>, io::Error> {
        match self.tree.range(log_key(0)..=log_key(u64::MAX)).next_back() {
            Some(kv) => {
                let (_, v) = kv.map_err(read_err)?;
                let entry: Entry = codec::decode(&v).map_err(read_err)?;
                Ok(Some(entry.log_id))
            }
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let start = match range.start_bound() {
            Bound::Included(&i) => i,
            Bound::Excluded(&i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&i) => Bound::Included(log_key(i)),
            Bound::Excluded(&i) => Bound::Excluded(log_key(i)),
            Bound::Unbounded => Bound::Included(log_key(u64::MAX)),
        };
        self.tree
            .range((Bound::Included(log_key(start)), end))
            .values()
            .map(|v| codec::decode::<Entry>(&v.map_err(read_err)?).map_err(read_err))
            .collect()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        let vote: Option<Vote> = self.get(VOTE)?;
        if let Some(vote) = &vote {
            crate::raft_check::stored_vote(vote).map_err(read_err)?;
        }
        Ok(vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged: Option<LogId> = self.get(PURGED)?;
        let last = self.last_log_id()?.or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.put(VOTE, vote)?;
        self.flush().await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Not flushed here: losing it only means re-learning the commit
        // index from the leader. The next flush makes it durable.
        self.put(COMMITTED, &committed)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self.get::<Option<LogId>>(COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = sled::Batch::default();
        let mut appended = 0u64;
        for entry in entries {
            batch.insert(&log_key(entry.log_id.index), codec::encode(&entry));
            appended += 1;
        }
        self.tree.apply_batch(batch).map_err(write_err)?;
        // Readable now; reported durable only after the next flush.
        self.flusher.after_append(callback, appended);
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> Result<(), io::Error> {
        let from = last_log_id.map_or(0, |l| l.index + 1);
        self.remove_logs(from, u64::MAX, None)?;
        self.flush().await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        // The purge marker and the removal land in one atomic batch, so a
        // crash never leaves a hole between the marker and the first log.
        self.remove_logs(0, log_id.index, Some((PURGED, codec::encode(&log_id))))?;
        self.flush().await
    }
}
