//! The CI short run: every fuzz target for a bounded number of mutated
//! inputs from a fixed seed (a few seconds per target in a debug build),
//! held to the same rules as the long runs: no panic, no input over the
//! time limit, bounded memory. A failure prints the input in hex and where
//! it panicked; reproduce with
//! `cargo run --release -p checkraft-fuzz --bin fuzz -- --target NAME --iterations N --seed 20261130`.

use std::time::{Duration, Instant};

use checkraft_fuzz::engine::{self, Config};
use checkraft_fuzz::{by_name, mem};

#[global_allocator]
static ALLOC: mem::Counting = mem::Counting;

/// Mutated inputs per target: sized for a few seconds in debug.
fn iterations(target: &str) -> u64 {
    let base = match target {
        "backup" => 16_000,
        "http" | "raft" | "frames" => 40_000,
        "ws" => 200_000,
        _ => 60_000,
    };
    std::env::var("CHECKRAFT_FUZZ_SHORT_SCALE")
        .ok()
        .and_then(|s| s.parse::<f64>().ok())
        .map_or(base, |k| (base as f64 * k) as u64)
}

fn short(name: &str) {
    let target = by_name(name).expect("target exists");
    let cfg = Config {
        iterations: iterations(name),
        seed: 20261130,
        // Debug builds are ~10x slower than release; CI machines are shared.
        time_limit: Duration::from_secs(2),
        max_rss: 1 << 30,
        ..Config::default()
    };
    let t0 = Instant::now();
    let report = engine::run(target, &cfg);
    eprintln!(
        "{} (test took {:.1} s)",
        report.summary(),
        t0.elapsed().as_secs_f64()
    );
    if !report.ok() {
        for p in &report.panics {
            eprintln!("backtrace of the panic at {}:\n{}", p.location, p.backtrace);
        }
    }
    assert!(report.ok(), "{}", report.summary());
    assert!(report.inputs >= cfg.iterations);
}

#[test]
fn ws() {
    short("ws");
}

#[test]
fn http() {
    short("http");
}

#[test]
fn raft() {
    short("raft");
}

#[test]
fn backup() {
    short("backup");
}

#[test]
fn snapshot() {
    short("snapshot");
}

#[test]
fn frames() {
    short("frames");
}

/// The seeds are what the real encoders produce, so each must be accepted
/// by the decoder it was made for (a target whose seeds all fail would
/// fuzz nothing but the first error path).
#[test]
fn seeds_decode() {
    use checkraft_backup::format;
    for seed in (by_name("backup").unwrap().seeds)() {
        format::read(seed.as_slice()).expect("backup seeds are valid files");
    }
    for seed in checkraft_fuzz::samples::snapshots() {
        checkraft_node::state::ShardState::from_snapshot_bytes(&seed).expect("valid snapshot");
    }
    for seed in (by_name("frames").unwrap().seeds)().iter().take(6) {
        let mut r = checkraft_proto::codec::FrameReader::new();
        r.push(seed);
        let mut n = 0;
        while r
            .next_frame::<checkraft_proto::ChangeEvent>()
            .expect("valid frames")
            .is_some()
        {
            n += 1;
        }
        assert_eq!(n, 5);
    }
    let ws = (by_name("ws").unwrap().seeds)();
    assert!(ws.len() > 16);
}

/// The backup target's checksum fix-up turns a file with a mutated body
/// back into one whose checksums match, so mutations reach the decoders.
#[test]
fn backup_fixup_reaches_the_bodies() {
    use checkraft_backup::format;
    use checkraft_fuzz::targets::backup::fix_checksums;
    let seed = (by_name("backup").unwrap().seeds)()[1].clone();
    let mut bad = seed.clone();
    bad[30] ^= 0x01;
    let raw = format!("{:#}", format::read(bad.as_slice()).unwrap_err());
    assert!(raw.contains("checksum mismatch"), "{raw}");
    assert!(fix_checksums(&mut bad));
    match format::read(bad.as_slice()) {
        Ok(_) => {}
        Err(e) => assert!(!format!("{e:#}").contains("checksum"), "{e:#}"),
    }
}
