//! openraft's storage conformance suite against our sled log store and
//! state machine, each case on a fresh sled database in a temp dir.

use checkraft_node::state_machine::StateMachine;
use checkraft_node::storage::{LogStore, SnapshotStore, Storage};
use checkraft_proto::{ShardDescriptor, TypeConfig};
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let storage = Storage::open(dir.path(), 8).expect("open sled");
        let tree = storage.group_tree(1).expect("tree");
        let flusher = storage.flusher().clone();
        let log = LogStore::new(tree.clone(), flusher.clone());
        let descriptor = ShardDescriptor {
            shard: 1,
            start: 0,
            end: 1 << 20,
            epoch: 1,
        };
        let sm = StateMachine::open(
            descriptor,
            SnapshotStore::new(tree, flusher),
            128,
            std::sync::Arc::new(checkraft_node::birth::NoBirths),
        )
        .expect("state machine");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    Suite::test_all(SledBuilder)
        .await
        .expect("openraft storage suite");
}
