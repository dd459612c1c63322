//! The mutation fuzzer: `fuzz --target NAME|all --iterations N --seed S`.
//! See the `checkraft_fuzz` crate docs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use checkraft_fuzz::engine::{self, Config};
use checkraft_fuzz::{by_name, mem, TARGETS};
use clap::Parser;

#[global_allocator]
static ALLOC: mem::Counting = mem::Counting;

/// Mutation-based fuzzing of checkraft's decoders.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Target name, or `all`.
    #[arg(long, default_value = "all")]
    target: String,
    /// Mutated inputs per target.
    #[arg(long, default_value_t = 1_000_000)]
    iterations: u64,
    /// PRNG seed (a run is reproducible from it).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// An input taking more CPU time than this is a hang.
    #[arg(long, default_value_t = 1000)]
    time_limit_ms: u64,
    /// An input still running after this ends the run (exit code 3).
    #[arg(long, default_value_t = 30)]
    hard_time_limit_s: u64,
    /// Fail when the peak RSS exceeds this.
    #[arg(long, default_value_t = 1024)]
    max_rss_mib: u64,
    /// Fail when one input grows the heap by more than this.
    #[arg(long, default_value_t = 256)]
    max_input_heap_mib: u64,
    /// Where crashing and hanging inputs are saved (per target).
    #[arg(long, default_value = "fuzz/artifacts")]
    artifacts: PathBuf,
    /// Seconds between progress lines (0: none).
    #[arg(long, default_value_t = 10)]
    progress_s: u64,
    /// List the targets and exit.
    #[arg(long)]
    list: bool,
    /// Write the target's seed corpus into this directory and exit.
    #[arg(long)]
    write_seeds: Option<PathBuf>,
    /// Run one saved input through the target and exit.
    #[arg(long)]
    replay: Option<PathBuf>,
    /// Also start from every file in this directory (for example an AFL
    /// queue, `fuzz/afl-out/NAME/default/queue`); with `--target all`,
    /// from `DIR/NAME` for each target.
    #[arg(long)]
    corpus: Option<PathBuf>,
}

/// The regular files of `dir` (not recursive), in name order.
fn read_corpus(dir: &std::path::Path) -> std::io::Result<Vec<Vec<u8>>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths.iter().map(std::fs::read).collect()
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list {
        for t in TARGETS {
            println!("{:10} {}", t.name, t.about);
        }
        return ExitCode::SUCCESS;
    }
    let targets: Vec<_> = if args.target == "all" {
        TARGETS.iter().collect()
    } else {
        match by_name(&args.target) {
            Some(t) => vec![t],
            None => {
                eprintln!("no target {:?}; try --list", args.target);
                return ExitCode::from(2);
            }
        }
    };
    if let Some(dir) = &args.write_seeds {
        for t in &targets {
            let dir = if targets.len() > 1 {
                dir.join(t.name)
            } else {
                dir.clone()
            };
            match engine::write_seeds(t, &dir) {
                Ok(n) => println!("{}: {n} seeds in {}", t.name, dir.display()),
                Err(e) => {
                    eprintln!("writing seeds: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        return ExitCode::SUCCESS;
    }
    if let Some(path) = &args.replay {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) => {
                eprintln!("reading {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        };
        let mut failed = false;
        for t in &targets {
            let t0 = std::time::Instant::now();
            match engine::replay(t, &data) {
                None => println!("{}: no panic ({:?})", t.name, t0.elapsed()),
                Some((location, message, backtrace)) => {
                    failed = true;
                    println!("{}: PANIC at {location}: {message}\n{backtrace}", t.name);
                }
            }
        }
        return if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }

    let cfg = Config {
        iterations: args.iterations,
        seed: args.seed,
        time_limit: Duration::from_millis(args.time_limit_ms),
        hard_time_limit: Duration::from_secs(args.hard_time_limit_s),
        max_rss: args.max_rss_mib << 20,
        max_input_heap: args.max_input_heap_mib << 20,
        artifacts: Some(args.artifacts.clone()),
        progress: (args.progress_s > 0).then(|| Duration::from_secs(args.progress_s)),
        ..Config::default()
    };
    let mut all_ok = true;
    let mut summaries = Vec::new();
    let several = targets.len() > 1;
    for t in targets {
        let mut cfg = cfg.clone();
        if let Some(dir) = &args.corpus {
            let dir = if several {
                dir.join(t.name)
            } else {
                dir.clone()
            };
            match read_corpus(&dir) {
                Ok(inputs) => cfg.extra_seeds = inputs,
                Err(e) => {
                    eprintln!("reading corpus {}: {e}", dir.display());
                    return ExitCode::FAILURE;
                }
            }
        }
        eprintln!(
            "[{}] fuzzing: {} mutated inputs, seed {}, {} extra starting inputs",
            t.name,
            cfg.iterations,
            cfg.seed,
            cfg.extra_seeds.len()
        );
        let report = engine::run(t, &cfg);
        println!("{}", report.summary());
        all_ok &= report.ok();
        summaries.push(report);
    }
    if summaries.len() > 1 {
        println!("\n| target | inputs | duration | inputs/s | CPU | panics | hangs | slowest input (CPU) | peak RSS | peak heap/input |");
        println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for r in &summaries {
            println!(
                "| {} | {} | {:.1} s | {:.0} | {:.1} s | {} | {} | {:.3} ms | {} | {} |",
                r.target,
                r.inputs,
                r.duration.as_secs_f64(),
                r.rate(),
                r.cpu.as_secs_f64(),
                r.panics.len(),
                r.hangs.len(),
                r.slowest_cpu.as_secs_f64() * 1e3,
                mem::mib(r.peak_rss),
                mem::mib(r.peak_input_heap)
            );
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
