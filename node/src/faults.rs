//! [`Faults`]: the groups this node cannot serve, and why.
//!
//! Two kinds of fault take a group out of service:
//! - **load failures**: its stored state could not be read or is
//!   impossible (see [`crate::raft_check::stored_vote`]). The node keeps
//!   serving its other groups; restarting would not help, so it does not
//!   exit (no crash loop). `DELETE /admin/groups/{g}` clears it.
//! - **fatal storage errors while running** (a full disk, an I/O error):
//!   openraft stops the group's raft core. [`watch_group`] sees it in the
//!   group's metrics and records it here, which also raises [`Faults::fatal`]:
//!   sled keeps the first I/O error for the life of the database, so no
//!   group of this process can write again. The server then reports the
//!   fault for a grace period and exits (code 75) so that a supervisor
//!   restarts the node once space is back.
//!
//! Either way calls to the group get 503 naming the reason, `/health`
//! answers 503 listing every faulty group, and `checkraft_node_failed_groups`
//! counts them.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use checkraft_proto::GroupId;
use openraft::async_runtime::WatchReceiver;
use openraft::error::Fatal;
use tokio::sync::watch;

/// Faulty groups and the process-wide fatal storage error, if any.
#[derive(Debug)]
pub struct Faults {
    failed: RwLock<BTreeMap<GroupId, String>>,
    fatal: watch::Sender<Option<String>>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            failed: RwLock::new(BTreeMap::new()),
            fatal: watch::channel(None).0,
        }
    }
}

impl Faults {
    /// Records that group `id` failed to load.
    pub fn load_failed(&self, id: GroupId, reason: String) {
        tracing::error!(shard_id = id, error = %reason, "group not started: its stored state is damaged; the node serves the other groups");
        self.insert(id, reason);
    }

    /// Records that group `id`'s raft stopped on a storage error.
    pub fn storage_failed(&self, id: GroupId, reason: String) {
        tracing::error!(shard_id = id, error = %reason, "group stopped on a storage error");
        self.insert(id, reason.clone());
        self.fatal.send_if_modified(|fatal| {
            if fatal.is_some() {
                return false;
            }
            *fatal = Some(format!("group {id}: {reason}"));
            true
        });
    }

    fn insert(&self, id: GroupId, reason: String) {
        self.failed
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, reason);
    }

    /// Why group `id` is not served, if it is faulty.
    pub fn reason(&self, id: GroupId) -> Option<String> {
        self.failed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Forgets group `id` (its replica was deleted); true if it was faulty.
    pub fn forget(&self, id: GroupId) -> bool {
        self.failed
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
            .is_some()
    }

    /// Every faulty group with its reason.
    pub fn all(&self) -> BTreeMap<GroupId, String> {
        self.failed
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Becomes `Some(reason)` at the first fatal storage error.
    pub fn fatal(&self) -> watch::Receiver<Option<String>> {
        self.fatal.subscribe()
    }
}

/// Watches group `id`'s raft and records a storage error that stops it.
/// A normal stop (shutdown, deletion) is not a fault.
pub fn watch_group(id: GroupId, raft: &crate::group::GroupRaft, faults: Arc<Faults>) {
    let mut metrics = raft.metrics();
    tokio::spawn(async move {
        loop {
            let state = metrics.borrow_watched().running_state.clone();
            match state {
                Ok(()) => {}
                Err(Fatal::Stopped) => return,
                Err(e) => {
                    faults.storage_failed(id, format!("raft stopped: {e}"));
                    return;
                }
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_storage_failure_is_fatal_and_load_failures_are_not() {
        let faults = Faults::default();
        let fatal = faults.fatal();
        faults.load_failed(3, "bad vote".into());
        assert!(fatal.borrow().is_none());
        faults.storage_failed(4, "No space left on device".into());
        faults.storage_failed(5, "later".into());
        assert_eq!(
            fatal.borrow().as_deref(),
            Some("group 4: No space left on device")
        );
        assert_eq!(faults.all().len(), 3);
        assert!(faults.forget(3));
        assert!(!faults.forget(3));
        assert_eq!(faults.reason(4).as_deref(), Some("No space left on device"));
    }
}
