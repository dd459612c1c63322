//! The command tree. Its doc comments are the reference shown by
//! `raftctl --help` and `raftctl <command> --help`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Operate a checkraft cluster: bootstrap it, inspect it, change its
/// membership, snapshot, back up and restore it, or run one locally.
#[derive(Parser, Debug)]
#[command(name = "raftctl", version)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Any node of the cluster, HOST:PORT. Used as the entry point; the
    /// rest of the cluster is found through the shard map.
    #[arg(
        long,
        global = true,
        env = "CHECKRAFT_CLUSTER",
        default_value = "127.0.0.1:7001"
    )]
    pub cluster: String,
    /// Print machine-readable JSON instead of tables and prose.
    #[arg(long, global = true)]
    pub json: bool,
    /// Bearer token for admin endpoints. Defaults to $CHECKRAFT_TOKEN, then
    /// to the token file written by `raftctl up` (./data/token).
    #[arg(long, global = true, env = "CHECKRAFT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// The commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Bootstrap a new cluster: create the metadata group and the shards,
    /// spreading shard leaders evenly over the nodes. Refuses to run on an
    /// initialized cluster.
    Init(InitArgs),
    /// Show nodes, and shards with range, epoch, leader, replicas, applied
    /// index and lag, and the registered gateways with their connections,
    /// load and last report.
    Status,
    /// Add or remove nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Change one shard's replicas by hand, or split or merge shards.
    #[command(subcommand)]
    Shard(ShardCommand),
    /// Change the number of shards online: plan the splits and merges that
    /// leave N shards of roughly equal size and run them one at a time.
    /// Interrupted and rerun, it continues from what the map records.
    Reshard {
        /// The number of shards to end with.
        #[arg(long)]
        shards: usize,
    },
    /// Leader placement.
    #[command(subcommand)]
    Leader(LeaderCommand),
    /// Inspect or abort the multi-step operation recorded in the map.
    #[command(subcommand)]
    Operation(OperationCommand),
    /// Trigger raft snapshots and print their ids.
    Snapshot {
        /// A shard id, or `all`.
        target: String,
    },
    /// Write one file holding a snapshot of every shard plus the shard map,
    /// with checksums and a format version (`--out FILE`); or list the
    /// scheduled backups the nodes keep in their `backup_dir` (`list`).
    #[command(args_conflicts_with_subcommands = true)]
    Backup {
        /// Where to write the backup.
        #[arg(long)]
        out: Option<PathBuf>,
        /// `list`: the scheduled backups, merged over every node.
        #[command(subcommand)]
        action: Option<BackupCommand>,
    },
    /// Set every shard's state from a backup, online, through raft. Works
    /// into a cluster with a different shard layout by mapping ranges.
    Restore {
        /// The backup file, or the name of a scheduled backup
        /// (`grid-YYYYMMDDTHHMMSSZ.ckb`, see `backup list`), downloaded from
        /// a node that holds it when no such file exists here.
        #[arg(long)]
        from: PathBuf,
    },
    /// Check a backup file's integrity without touching any cluster.
    Verify {
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
    },
    /// Run a local cluster (three nodes, gateways, and Caddy serving the
    /// page when installed) in the foreground until Ctrl-C, restarting any
    /// process that dies (with backoff).
    Up(UpArgs),
    /// Benchmark a fresh local cluster over the real websocket protocol:
    /// `throughput` (with redis), `day`, `connections`, `failover` or
    /// `reshard`. See docs/benchmarks.md.
    Bench(crate::bench::BenchArgs),
    /// One load-generator process of `bench` (internal).
    #[command(hide = true)]
    BenchWorker(crate::bench::WorkerArgs),
}

/// `raftctl backup list`.
#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// List the scheduled backups (name, start time, size, shards, grid
    /// size, the nodes holding it) and each node's schedule.
    List,
}

/// `raftctl init`.
#[derive(Args, Debug, Clone)]
pub struct InitArgs {
    /// The founding nodes as ID=HOST:PORT, comma-separated, e.g.
    /// `1=127.0.0.1:7001,2=127.0.0.1:7002,3=127.0.0.1:7003`. Each node must
    /// be running with that --id.
    #[arg(long, value_delimiter = ',', required = true)]
    pub nodes: Vec<String>,
    /// Total number of boxes in the grid.
    #[arg(long, default_value_t = 1_000_000)]
    pub boxes: u64,
    /// Number of shards to split the grid into.
    #[arg(long, default_value_t = 16)]
    pub shards: u64,
    /// Replicas per shard (at most the number of nodes).
    #[arg(long, default_value_t = 3)]
    pub replicas: usize,
    /// Boxes per chunk, the unit clients subscribe to and fetch.
    #[arg(long, default_value_t = 4096)]
    pub chunk_size: u32,
}

/// `raftctl node ...`.
#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Register a running node (started without --id) and give it an id
    /// allocated by the metadata group. Prints the id.
    Add {
        /// The new node's HOST:PORT.
        addr: String,
    },
    /// Move every replica off a node onto other nodes, then remove it from
    /// the cluster. Its id is never reused.
    Remove {
        /// The node's id.
        id: u64,
    },
    /// Hand every group node ID leads to a caught-up voter of that group
    /// (before maintenance); the node keeps serving as a follower. A node
    /// also does this by itself when it stops on SIGTERM. (Unlike
    /// `remove`, which drains the node of its replicas, this moves only
    /// leadership.)
    Handover {
        /// The node's id.
        id: u64,
    },
    /// Stop node ID of a running `raftctl up` (SIGTERM; `up` keeps it
    /// down), then print what the cluster does meanwhile: nodes going
    /// down and coming back, leader changes, and probe writes (an empty
    /// write to every shard leader: committed through raft, changing no
    /// box) failing and recovering.
    Stop(LocalNodeArgs),
    /// Start node ID of a running `raftctl up` again (after `node stop`),
    /// printing what the cluster does as for `stop`.
    Start(LocalNodeArgs),
}

/// `raftctl node stop|start`. They act on a local `raftctl up`, so they
/// find the nodes and the admin token in its data dir; `--cluster`,
/// `--token` and `--json` do not apply.
#[derive(Args, Debug, Clone)]
pub struct LocalNodeArgs {
    /// The node's id.
    pub id: u64,
    /// The data dir of the running `raftctl up` (it holds `cluster.json`,
    /// the control socket `up.sock` and the token).
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Watch the cluster for at most this many seconds (it stops earlier
    /// once the node is in the asked state and every shard has a leader
    /// and accepts writes); 0 only sends the request.
    #[arg(long, default_value_t = 15)]
    pub watch: u64,
}

/// `raftctl shard ...`.
#[derive(Subcommand, Debug)]
pub enum ShardCommand {
    /// Host a replica of SHARD on NODE as a non-voting learner, and wait
    /// until it has caught up.
    AddLearner {
        /// The shard id.
        shard: u64,
        /// The node id.
        node: u64,
    },
    /// Make NODE, already a learner of SHARD, a voter.
    Promote {
        /// The shard id.
        shard: u64,
        /// The node id.
        node: u64,
    },
    /// Remove NODE's replica of SHARD (voter or learner) and delete its
    /// data there.
    Remove {
        /// The shard id.
        shard: u64,
        /// The node id.
        node: u64,
    },
    /// Split SHARD in two, online: the new shard takes the boxes from
    /// --at on, with the same replicas and leader. Waits until the map
    /// records it (docs/resharding.md).
    Split {
        /// The shard id.
        shard: u64,
        /// First box of the new shard: a chunk boundary strictly inside the
        /// shard's range (default: the one nearest its middle).
        #[arg(long)]
        at: Option<u64>,
    },
    /// Merge RIGHT into its left neighbour LEFT, online; RIGHT's id is
    /// retired. Rolled back (RIGHT thawed) if it cannot complete before
    /// its commit point.
    Merge {
        /// The shard that stays.
        left: u64,
        /// The shard absorbed (it must start where LEFT ends).
        right: u64,
    },
}

/// `raftctl leader ...`.
#[derive(Subcommand, Debug)]
pub enum LeaderCommand {
    /// Spread shard leaders evenly over the nodes.
    Balance,
}

/// `raftctl operation ...`.
#[derive(Subcommand, Debug)]
pub enum OperationCommand {
    /// Show the operation in progress, if any.
    Show,
    /// Clear the recorded operation with this id, so that others can run.
    /// Steps it already completed stay done (each step is a complete
    /// membership change or restore); rerun the original command to finish
    /// the rest instead, where that is what you want.
    Abort {
        /// The operation's id, as `status` or `operation show` print it.
        id: u64,
    },
}

/// `raftctl up`.
#[derive(Args, Debug, Clone)]
pub struct UpArgs {
    /// Where the nodes keep their data. Running `up` again on the same
    /// directory keeps the data.
    #[arg(long, default_value = "data")]
    pub data_dir: PathBuf,
    /// Keep data in a temporary directory, deleted on exit.
    #[arg(long, conflicts_with = "data_dir")]
    pub ephemeral: bool,
    /// Nodes to run (ids 1..=N). Shards get min(N, 3) replicas. A data
    /// dir keeps the number it was created with.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub nodes: u16,
    /// First node port; nodes listen on PORT, PORT+1, ... PORT+N-1.
    #[arg(long, default_value_t = 7001)]
    pub port: u16,
    /// Port of the first gateway (the grid's HTTP API and websockets);
    /// further gateways take the following ports.
    #[arg(long, default_value_t = 8081)]
    pub gateway_port: u16,
    /// Gateways to run (stateless; the page picks among them).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub gateways: u16,
    /// Port of the page: Caddy serves `assets/` and proxies to the
    /// gateways. Without Caddy installed (or with `--no-caddy`), the first
    /// gateway serves the page on its own port instead.
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// Don't start Caddy even if it is installed.
    #[arg(long)]
    pub no_caddy: bool,
    /// The page's static files (default: `assets/` beside the current
    /// directory or the source tree raftctl was built from).
    #[arg(long)]
    pub assets: Option<PathBuf>,
    /// Boxes in the grid, on first start.
    #[arg(long, default_value_t = 1_000_000)]
    pub boxes: u64,
    /// Shards, on first start.
    #[arg(long, default_value_t = 16)]
    pub shards: u64,
}
