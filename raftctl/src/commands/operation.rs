//! `raftctl operation show|abort`: the multi-step operation recorded in
//! the map. A `node remove` or `restore` that was killed part-way leaves
//! its record behind, which blocks every other operation until it is
//! resumed (rerun the command) or aborted here.

use anyhow::{bail, Result};
use checkraft_proto::MetaCommand;

use super::cluster::{describe_operation, initialized_map, out, print_json};
use crate::client::ClusterClient;

/// Prints the recorded operation, or that there is none.
pub async fn show(client: &ClusterClient, json: bool) -> Result<()> {
    let map = initialized_map(client).await?;
    if json {
        return print_json(&map.operation);
    }
    match &map.operation {
        Some(op) => out(format!(
            "operation {}: {} (step: {})",
            op.id,
            describe_operation(&op.kind),
            op.step
        )),
        None => out("no operation in progress"),
    }
    Ok(())
}

/// Clears the recorded operation `id`.
pub async fn abort(client: &ClusterClient, id: u64, json: bool) -> Result<()> {
    let map = initialized_map(client).await?;
    match &map.operation {
        Some(op)
            if op.id == id
                && matches!(
                    op.kind,
                    checkraft_proto::OperationKind::Split { .. }
                        | checkraft_proto::OperationKind::Merge { .. }
                ) =>
        {
            bail!(
                "operation {id} ({}) is run by the metadata leader, which finishes it or rolls it \
                 back by itself (at step {:?}); clearing its record could leave a shard frozen",
                describe_operation(&op.kind),
                op.step
            )
        }
        Some(op) if op.id == id => {}
        Some(op) => bail!("operation {id} is not in progress; operation {} is", op.id),
        None => bail!("no operation is in progress"),
    }
    let outcome = client
        .propose_meta(&MetaCommand::EndOperation { id })
        .await?;
    if json {
        print_json(&serde_json::json!({ "aborted": id, "version": outcome.version }))
    } else {
        out(format!(
            "aborted operation {id} (map version {})",
            outcome.version
        ));
        Ok(())
    }
}
