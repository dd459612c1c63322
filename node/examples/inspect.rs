//! Offline inspection of a stopped node's data directory:
//! `cargo run -p checkraft-node --example inspect -- DATA_DIR GROUP [INDEX...]`
//! prints the group's vote, committed and purged log ids, its snapshot meta
//! and log range, and the entries at the given indices.

use checkraft_proto::codec;
use checkraft_proto::raft::{Entry, LogId};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 3, "usage: inspect DATA_DIR GROUP [INDEX...]");
    let db = sled::Config::new().path(&args[1]).open()?;
    let tree = db.open_tree(format!("group/{}", args[2]))?;
    let get = |k: &[u8]| tree.get(k).ok().flatten();
    if let Some(v) = get(b"m:vote") {
        println!("vote: {:?}", codec::decode::<openraft::Vote<u64>>(&v)?);
    }
    if let Some(v) = get(b"m:committed") {
        println!("committed: {:?}", codec::decode::<Option<LogId>>(&v)?);
    }
    if let Some(v) = get(b"m:purged") {
        println!("purged: {:?}", codec::decode::<LogId>(&v)?);
    }
    if let Some(v) = get(b"m:snapshot") {
        let s: checkraft_node::storage::StoredSnapshot = codec::decode(&v)?;
        println!("snapshot: {:?} ({} bytes)", s.meta, s.data.len());
    }
    let logs: Vec<Entry> = tree
        .scan_prefix(b"l")
        .values()
        .map(|v| codec::decode::<Entry>(&v.expect("read")).expect("decode"))
        .collect();
    if let (Some(first), Some(last)) = (logs.first(), logs.last()) {
        println!(
            "log: {} entries, {} ..= {}",
            logs.len(),
            first.log_id,
            last.log_id
        );
    }
    for want in &args[3..] {
        let want: u64 = want.parse()?;
        match logs.iter().find(|e| e.log_id.index == want) {
            Some(e) => println!("entry {want}: {} {:?}", e.log_id, e.payload),
            None => println!("entry {want}: absent"),
        }
    }
    Ok(())
}
