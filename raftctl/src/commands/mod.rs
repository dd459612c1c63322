//! One module per command family; [`run`] dispatches the parsed command.

mod cluster;
mod init;
mod intent;
mod leader;
mod local_node;
mod node;
mod operation;
mod placement;
mod reshape;
mod reshard_plan;
mod shard;
mod snapshot;
mod status;

pub use init::init_cluster;
pub use reshape::{run_reshard, ReshardReport};
pub use reshard_plan::{plan as plan_reshard, Step};

use anyhow::Result;

use crate::cli::{Cli, Command, LeaderCommand, NodeCommand, OperationCommand, ShardCommand};
use crate::client::ClusterClient;

/// Runs one command to completion.
pub async fn run(cli: Cli) -> Result<()> {
    let g = cli.global;
    if let Command::Up(args) = cli.command {
        return crate::up::run(args, g).await;
    }
    if let Command::Bench(args) = cli.command {
        return crate::bench::run(args, g.json).await;
    }
    if let Command::BenchWorker(args) = cli.command {
        return crate::bench::run_worker(args).await;
    }
    match &cli.command {
        Command::Node(NodeCommand::Stop(args)) => return local_node::run(args, false).await,
        Command::Node(NodeCommand::Start(args)) => return local_node::run(args, true).await,
        _ => {}
    }
    if let Command::Verify { from } = &cli.command {
        return crate::backup::verify(from, g.json);
    }
    let client = ClusterClient::new(&g.cluster, g.token.clone());
    match cli.command {
        Command::Init(args) => init::run(&client, &args, g.json).await,
        Command::Status => status::run(&client, g.json).await,
        Command::Node(NodeCommand::Add { addr }) => node::add(&client, &addr, g.json).await,
        Command::Node(NodeCommand::Remove { id }) => node::remove(&client, id, g.json).await,
        Command::Node(NodeCommand::Handover { id }) => node::handover(&client, id, g.json).await,
        Command::Node(NodeCommand::Stop(_) | NodeCommand::Start(_)) => {
            unreachable!("handled above")
        }
        Command::Shard(ShardCommand::AddLearner { shard, node }) => {
            shard::add_learner(&client, shard, node, g.json).await
        }
        Command::Shard(ShardCommand::Promote { shard, node }) => {
            shard::promote(&client, shard, node, g.json).await
        }
        Command::Shard(ShardCommand::Remove { shard, node }) => {
            shard::remove(&client, shard, node, g.json).await
        }
        Command::Shard(ShardCommand::Split { shard, at }) => {
            reshape::split(&client, shard, at, g.json).await
        }
        Command::Shard(ShardCommand::Merge { left, right }) => {
            reshape::merge(&client, left, right, g.json).await
        }
        Command::Reshard { shards } => reshape::reshard(&client, shards, g.json).await,
        Command::Leader(LeaderCommand::Balance) => leader::balance(&client, g.json).await,
        Command::Operation(OperationCommand::Show) => operation::show(&client, g.json).await,
        Command::Operation(OperationCommand::Abort { id }) => {
            operation::abort(&client, id, g.json).await
        }
        Command::Snapshot { target } => snapshot::run(&client, &target, g.json).await,
        Command::Backup { out, action } => {
            crate::backup::command(&client, out.as_deref(), action, g.json).await
        }
        Command::Restore { from } => crate::backup::restore(&client, &from, g.json).await,
        Command::Verify { .. } | Command::Up(_) | Command::Bench(_) | Command::BenchWorker(_) => {
            unreachable!("handled above")
        }
    }
}
