//! Offline inspection of a stopped node's data directory:
//! `cargo run -p checkraft-node --example inspect -- DATA_DIR GROUP [INDEX...]`
//! prints the group's vote, committed and purged log ids, its snapshot meta
//! and log range, and the entries at the given indices.
//!
//! Strictly read-only: sled cannot open a database without writing to it,
//! so this opens a temporary copy of DATA_DIR and never the dir itself
//! (see `checkraft_node::storage::OfflineCopy`), in `$TMPDIR` (default
//! /tmp), which needs room for it; the copy is deleted on exit. It refuses
//! a data dir that a running node holds.

use checkraft_node::storage::OfflineCopy;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 3, "usage: inspect DATA_DIR GROUP [INDEX...]");
    let group: u64 = args[2].parse()?;
    let indices = args[3..]
        .iter()
        .map(|i| i.parse::<u64>())
        .collect::<Result<Vec<_>, _>>()?;
    let copy = OfflineCopy::open(std::path::Path::new(&args[1]))?;
    print!("{}", copy.describe_group(group, &indices)?);
    Ok(())
}
