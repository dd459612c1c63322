//! The mutation runner shared by the `fuzz` binary and the CI short run.
//!
//! Loop: pick a corpus input (seeds first, then inputs that produced a new
//! [`crate::feedback`] feature), apply a stack of [`crate::mutate`]
//! operations, run the target under `catch_unwind`, time it, and account
//! memory. Everything is determined by `seed`, so a run is reproducible.
//!
//! Findings:
//! - **panic**: the target panicked. The first input per panic location is
//!   saved (and a minimized copy), with the message and a backtrace.
//! - **hang**: one input took longer than `time_limit` of CPU time. Wall
//!   time is measured for every input; one whose wall time exceeds a tenth
//!   of the limit (at most 50 ms) is run again and timed with this
//!   thread's CPU clock, so that being descheduled on a busy machine is
//!   not mistaken for a hang, and that CPU time is what is held to the
//!   limit. A watchdog thread
//!   notices inputs that never finish: past `hard_time_limit` it saves the
//!   input and ends the process with exit code 3.
//! - **memory**: the process's peak RSS (the larger of the sampled
//!   `/proc/self/statm` and the kernel's `VmHWM`) exceeded `max_rss`, or
//!   one input's peak heap (through [`crate::mem::Counting`], when it is
//!   the global allocator) exceeded `max_input_heap`.
//! - **abort**: a fatal signal (SIGABRT from a Rust abort or stack
//!   overflow, SIGSEGV/SIGBUS/SIGILL/SIGFPE from native code) is caught
//!   just long enough to write the current input to `crash-signal-*`.

use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use crate::mem;
use crate::mutate::Mutator;
use crate::rng::Rng;
use crate::targets::Target;
use crate::{feedback, signals};

/// How to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Mutated inputs to run (seeds are run once more, before them).
    pub iterations: u64,
    /// PRNG seed.
    pub seed: u64,
    /// One input taking longer than this is a hang.
    pub time_limit: Duration,
    /// One input still running after this ends the process (exit 3).
    pub hard_time_limit: Duration,
    /// Peak RSS above this is a failure.
    pub max_rss: u64,
    /// Peak heap growth during one input above this is a failure.
    pub max_input_heap: u64,
    /// Where crashing and hanging inputs go; `None` keeps them in memory
    /// only (the report still has them).
    pub artifacts: Option<PathBuf>,
    /// Print a progress line this often; `None` is quiet.
    pub progress: Option<Duration>,
    /// Largest corpus (seeds included).
    pub max_corpus: usize,
    /// Capture a backtrace for each new panic location.
    pub backtraces: bool,
    /// More starting inputs besides the target's seeds (for example an
    /// AFL queue); each is cut to the target's `max_len`.
    pub extra_seeds: Vec<Vec<u8>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            iterations: 10_000,
            seed: 1,
            time_limit: Duration::from_secs(1),
            hard_time_limit: Duration::from_secs(30),
            max_rss: 1 << 30,
            max_input_heap: 256 << 20,
            artifacts: None,
            progress: None,
            max_corpus: 4096,
            backtraces: true,
            extra_seeds: Vec::new(),
        }
    }
}

/// One panic location, or one hanging input.
#[derive(Debug, Clone)]
pub struct Finding {
    /// `file:line:col` of the panic, or `hang`.
    pub location: String,
    /// The panic message, or how long the input took.
    pub message: String,
    /// Inputs that hit this location.
    pub count: u64,
    /// The first such input.
    pub input: Vec<u8>,
    /// A smaller input with the same panic location, when one was found.
    pub minimized: Option<Vec<u8>>,
    /// The backtrace of the first hit.
    pub backtrace: String,
    raw_backtrace: Option<Arc<std::backtrace::Backtrace>>,
    /// Where the input was saved.
    pub saved: Option<PathBuf>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target's name.
    pub target: &'static str,
    /// Inputs run (seeds and mutated).
    pub inputs: u64,
    /// Wall time of the fuzz loop.
    pub duration: Duration,
    /// Panics, by location.
    pub panics: Vec<Finding>,
    /// Inputs over the time limit.
    pub hangs: Vec<Finding>,
    /// Longest single input, wall time (includes time descheduled).
    pub slowest: Duration,
    /// Longest single input, this thread's CPU time when re-run: the
    /// slowest of the inputs whose wall time passed the re-run threshold
    /// and of the one slowest by wall time.
    pub slowest_cpu: Duration,
    /// Peak RSS of the process (bytes).
    pub peak_rss: u64,
    /// RSS after the first tenth of the run, to spot growth.
    pub rss_early: u64,
    /// RSS at the end.
    pub rss_end: u64,
    /// Largest heap growth during one input (0 without the counting
    /// allocator).
    pub peak_input_heap: u64,
    /// The input that grew the heap the most.
    pub peak_heap_input: Vec<u8>,
    /// Whether the counting allocator was active.
    pub heap_counted: bool,
    /// Corpus size at the end.
    pub corpus: usize,
    /// Distinct outcome features seen.
    pub features: usize,
    /// CPU time (user + system) of the process during the fuzz loop.
    pub cpu: Duration,
    /// The limits this run was held to.
    pub max_rss: u64,
    /// See [`Config::max_input_heap`].
    pub max_input_heap: u64,
}

impl Report {
    /// Inputs per second.
    pub fn rate(&self) -> f64 {
        self.inputs as f64 / self.duration.as_secs_f64().max(1e-9)
    }

    /// True when nothing went wrong.
    pub fn ok(&self) -> bool {
        self.panics.is_empty()
            && self.hangs.is_empty()
            && self.peak_rss <= self.max_rss
            && self.peak_input_heap <= self.max_input_heap
    }

    /// A multi-line human summary.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "target {}: {} inputs in {:.1} s = {:.0} inputs/s ({:.1} s CPU = {:.0} inputs per CPU-second); \
             panics {} ({} inputs), hangs {}; \
             slowest input {:.2} ms wall, {:.2} ms CPU; peak RSS {} (after 10%: {}, at end: {}, limit {}); \
             peak heap per input {}; corpus {}, features {}; {}",
            self.target,
            self.inputs,
            self.duration.as_secs_f64(),
            self.rate(),
            self.cpu.as_secs_f64(),
            self.inputs as f64 / self.cpu.as_secs_f64().max(1e-9),
            self.panics.len(),
            self.panics.iter().map(|p| p.count).sum::<u64>(),
            self.hangs.len(),
            self.slowest.as_secs_f64() * 1e3,
            self.slowest_cpu.as_secs_f64() * 1e3,
            mem::mib(self.peak_rss),
            mem::mib(self.rss_early),
            mem::mib(self.rss_end),
            mem::mib(self.max_rss),
            if self.heap_counted {
                format!(
                    "{} (limit {})",
                    mem::mib(self.peak_input_heap),
                    mem::mib(self.max_input_heap)
                )
            } else {
                "not counted".into()
            },
            self.corpus,
            self.features,
            if self.ok() { "OK" } else { "FAILED" },
        );
        if self.heap_counted && self.peak_input_heap > 1 << 20 {
            s.push_str(&format!(
                "\n  largest heap growth ({}) from a {}-byte input: {}",
                mem::mib(self.peak_input_heap),
                self.peak_heap_input.len(),
                hex(&self.peak_heap_input, 96)
            ));
        }
        for f in self.panics.iter().chain(&self.hangs) {
            s.push_str(&format!(
                "\n  {} at {} ({} inputs): {}\n    input ({} bytes): {}",
                if f.location == "hang" {
                    "HANG"
                } else {
                    "PANIC"
                },
                f.location,
                f.count,
                f.message,
                f.input.len(),
                hex(&f.input, 256),
            ));
            if let Some(m) = &f.minimized {
                s.push_str(&format!(
                    "\n    minimized ({} bytes): {}",
                    m.len(),
                    hex(m, 256)
                ));
            }
            if let Some(p) = &f.saved {
                s.push_str(&format!("\n    saved: {}", p.display()));
            }
        }
        s
    }
}

/// CPU time of the calling thread.
pub fn thread_cpu_time() -> Duration {
    // SAFETY: clock_gettime only writes the struct it is given.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// User + system CPU time of this process.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Lowercase hex of at most `max` bytes (`…` when cut).
pub fn hex(bytes: &[u8], max: usize) -> String {
    let mut s: String = bytes.iter().take(max).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > max {
        s.push('…');
    }
    s
}

struct CaughtPanic {
    location: String,
    message: String,
    /// Captured in the hook, symbolized only after the run, so resolving
    /// debug info counts neither against the input's time nor its memory.
    backtrace: Option<std::backtrace::Backtrace>,
}

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<CaughtPanic>> = const { std::cell::RefCell::new(None) };
    static CAPTURE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static BACKTRACES: std::cell::Cell<bool> = const { std::cell::Cell::new(true) };
}

/// Installs (once) a panic hook that records panics of threads running a
/// target silently and leaves every other panic to the previous hook.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !CAPTURE.with(|c| c.get()) {
                return previous(info);
            }
            let location = info
                .location()
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
                .unwrap_or_else(|| "unknown".into());
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            let backtrace = BACKTRACES
                .with(|b| b.get())
                .then(std::backtrace::Backtrace::force_capture);
            LAST_PANIC.with(|p| {
                *p.borrow_mut() = Some(CaughtPanic {
                    location,
                    message,
                    backtrace,
                })
            });
        }));
    });
}

/// Runs `data` through `run` once; `Err` carries the panic.
fn execute(run: fn(&[u8]), data: &[u8]) -> Result<(), CaughtPanic> {
    CAPTURE.with(|c| c.set(true));
    let result = panic::catch_unwind(AssertUnwindSafe(|| run(data)));
    CAPTURE.with(|c| c.set(false));
    result.map_err(|_| {
        LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or(CaughtPanic {
                location: "unknown".into(),
                message: "panic without hook data".into(),
                backtrace: None,
            })
    })
}

/// Runs one input outside the loop (for `--replay`): the panic, if any,
/// as `(location, message, backtrace)`.
pub fn replay(target: &Target, data: &[u8]) -> Option<(String, String, String)> {
    install_panic_hook();
    BACKTRACES.with(|b| b.set(true));
    execute(target.run, data).err().map(|p| {
        let bt = p.backtrace.map(|b| b.to_string()).unwrap_or_default();
        (p.location, p.message, bt)
    })
}

/// Shrinks `input` while it still panics at `location` (at most `budget`
/// runs).
fn minimize(run: fn(&[u8]), input: &[u8], location: &str, budget: usize) -> Vec<u8> {
    BACKTRACES.with(|b| b.set(false));
    let same = |d: &[u8]| matches!(execute(run, d), Err(p) if p.location == location);
    let mut best = input.to_vec();
    let mut runs = 0;
    let mut chunk = best.len().div_ceil(2).max(1);
    while chunk >= 1 && runs < budget {
        let mut at = 0;
        let mut shrunk = false;
        while at < best.len() && runs < budget {
            let end = (at + chunk).min(best.len());
            let mut candidate = best[..at].to_vec();
            candidate.extend_from_slice(&best[end..]);
            runs += 1;
            if same(&candidate) {
                best = candidate;
                shrunk = true;
            } else {
                at += chunk;
            }
        }
        if !shrunk {
            if chunk == 1 {
                break;
            }
            chunk /= 2;
        }
    }
    BACKTRACES.with(|b| b.set(true));
    best
}

/// The watchdog's view of the input in flight.
struct InFlight {
    /// Nanoseconds since `epoch` when the current input started; 0 = idle.
    started: AtomicU64,
    epoch: Instant,
    input: Mutex<Vec<u8>>,
    done: AtomicBool,
}

fn save(dir: &Option<PathBuf>, name: &str, data: &[u8], note: &str) -> Option<PathBuf> {
    let dir = dir.as_ref()?;
    std::fs::create_dir_all(dir).ok()?;
    let path = dir.join(name);
    std::fs::write(&path, data).ok()?;
    if !note.is_empty() {
        let mut f = std::fs::File::create(path.with_extension("txt")).ok()?;
        let _ = writeln!(f, "{note}");
    }
    Some(path)
}

fn watchdog(flight: Arc<InFlight>, cfg: Config, target: &'static str) {
    let mut warned_for = 0;
    while !flight.done.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
        let started = flight.started.load(Ordering::Relaxed);
        if started == 0 {
            continue;
        }
        let running = Duration::from_nanos(flight.epoch.elapsed().as_nanos() as u64 - started);
        if running > cfg.time_limit && warned_for != started {
            warned_for = started;
            eprintln!(
                "[{target}] an input has been running for over {:?} (limit {:?})",
                running, cfg.time_limit
            );
        }
        if running > cfg.hard_time_limit {
            let input = flight.input.lock().map(|i| i.clone()).unwrap_or_default();
            let name = format!("hang-{:016x}", feedback::fnv(&input));
            let saved = save(&cfg.artifacts, &name, &input, "input that never finished");
            eprintln!(
                "[{target}] HANG: one input ran for over {:?}; stopping. input ({} bytes): {}{}",
                cfg.hard_time_limit,
                input.len(),
                hex(&input, 512),
                saved
                    .map(|p| format!("\nsaved: {}", p.display()))
                    .unwrap_or_default()
            );
            std::process::exit(3);
        }
    }
}

/// Fuzzes `target` as `cfg` says.
pub fn run(target: &'static Target, cfg: &Config) -> Report {
    install_panic_hook();
    BACKTRACES.with(|b| b.set(cfg.backtraces));
    let heap_counted = mem::counting_installed();
    let artifacts = cfg.artifacts.as_ref().map(|d| d.join(target.name));
    if let Some(dir) = &artifacts {
        signals::install(dir);
    }

    let flight = Arc::new(InFlight {
        started: AtomicU64::new(0),
        epoch: Instant::now(),
        input: Mutex::new(Vec::new()),
        done: AtomicBool::new(false),
    });
    let dog = {
        let (flight, cfg) = (flight.clone(), cfg.clone());
        let cfg = Config {
            artifacts: artifacts.clone(),
            ..cfg
        };
        std::thread::spawn(move || watchdog(flight, cfg, target.name))
    };

    let mutator = Mutator {
        dict: target.dict,
        max_len: target.max_len,
    };
    let mut rng = Rng::new(cfg.seed);
    let mut seeds = (target.seeds)();
    assert!(!seeds.is_empty(), "target {} has no seeds", target.name);
    seeds.extend(
        cfg.extra_seeds
            .iter()
            .map(|s| s[..s.len().min(target.max_len)].to_vec()),
    );
    let n_seeds = seeds.len();
    let mut corpus: Vec<Vec<u8>> = seeds;
    let mut seen: HashSet<u64> = HashSet::new();
    let mut panics: BTreeMap<String, Finding> = BTreeMap::new();
    let mut hangs: Vec<Finding> = Vec::new();
    let mut slowest = Duration::ZERO;
    let mut slowest_cpu = Duration::ZERO;
    let mut slowest_input: Vec<u8> = Vec::new();
    let mut peak_rss = mem::rss_bytes();
    let mut rss_early = 0;
    let mut peak_input_heap = 0u64;
    let mut peak_heap_input = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(target.max_len);
    let total = n_seeds as u64 + cfg.iterations;
    let start = Instant::now();
    let cpu_start = cpu_time();
    let mut last_progress = start;

    for i in 0..total {
        buf.clear();
        if (i as usize) < n_seeds {
            buf.extend_from_slice(&corpus[i as usize]);
        } else {
            let parent = rng.below(corpus.len());
            buf.extend_from_slice(&corpus[parent]);
            mutator.mutate(&mut rng, &mut buf, &corpus);
        }

        {
            let mut shared = flight.input.lock().expect("in-flight input lock");
            shared.clear();
            shared.extend_from_slice(&buf);
        }
        signals::set_current(&buf);
        feedback::reset();
        let heap_before = mem::reset_heap_peak();
        let t0 = Instant::now();
        flight.started.store(
            (t0 - flight.epoch).as_nanos().max(1) as u64,
            Ordering::Relaxed,
        );
        let outcome = execute(target.run, &buf);
        let elapsed = t0.elapsed();
        flight.started.store(0, Ordering::Relaxed);
        let heap_growth = mem::heap_peak().saturating_sub(heap_before) as u64;
        if heap_growth > peak_input_heap {
            peak_input_heap = heap_growth;
            peak_heap_input.clone_from(&buf);
        }
        if elapsed > slowest {
            slowest = elapsed;
            slowest_input.clone_from(&buf);
        }

        match outcome {
            Ok(()) => {
                let new = feedback::with_features(|fs| {
                    fs.iter().fold(false, |new, f| seen.insert(*f) | new)
                });
                if new && (i as usize) >= n_seeds {
                    if corpus.len() < cfg.max_corpus {
                        corpus.push(buf.clone());
                    } else {
                        let slot = n_seeds + rng.below(corpus.len() - n_seeds);
                        corpus[slot] = buf.clone();
                    }
                }
            }
            Err(p) => {
                let entry = panics.entry(p.location.clone()).or_insert_with(|| {
                    let name = format!("crash-{:016x}", feedback::fnv(&buf));
                    let saved = save(&artifacts, &name, &buf, "");
                    if cfg.progress.is_some() {
                        eprintln!(
                            "[{}] PANIC at {}: {} (input {} bytes: {}){}",
                            target.name,
                            p.location,
                            p.message,
                            buf.len(),
                            hex(&buf, 128),
                            saved
                                .as_ref()
                                .map(|s| format!(", saved {}", s.display()))
                                .unwrap_or_default()
                        );
                    }
                    Finding {
                        location: p.location.clone(),
                        message: p.message.clone(),
                        count: 0,
                        input: buf.clone(),
                        minimized: None,
                        backtrace: String::new(),
                        raw_backtrace: p.backtrace.map(Arc::new),
                        saved,
                    }
                });
                entry.count += 1;
            }
        }
        let recheck = (cfg.time_limit / 10).min(Duration::from_millis(50));
        let cpu = if elapsed > recheck {
            let c0 = thread_cpu_time();
            let _ = execute(target.run, &buf);
            let cpu = thread_cpu_time().saturating_sub(c0);
            slowest_cpu = slowest_cpu.max(cpu);
            cpu
        } else {
            Duration::ZERO
        };
        if cpu > cfg.time_limit {
            let name = format!("hang-{:016x}", feedback::fnv(&buf));
            let message = format!(
                "took {:.3} s wall, {:.3} s CPU when re-run",
                elapsed.as_secs_f64(),
                cpu.as_secs_f64()
            );
            let saved = save(&artifacts, &name, &buf, &message);
            hangs.push(Finding {
                location: "hang".into(),
                message,
                count: 1,
                input: buf.clone(),
                minimized: None,
                backtrace: String::new(),
                raw_backtrace: None,
                saved,
            });
        }

        if i % 1024 == 0 {
            peak_rss = peak_rss.max(mem::rss_bytes());
            if rss_early == 0 && i >= total / 10 {
                rss_early = mem::rss_bytes();
            }
            if let Some(every) = cfg.progress {
                let now = Instant::now();
                if now - last_progress >= every {
                    last_progress = now;
                    let secs = (now - start).as_secs_f64();
                    eprintln!(
                        "[{}] {} / {} inputs, {:.0}/s, corpus {}, features {}, panics {}, hangs {}, rss {}",
                        target.name,
                        i,
                        total,
                        i as f64 / secs,
                        corpus.len(),
                        seen.len(),
                        panics.values().map(|p| p.count).sum::<u64>(),
                        hangs.len(),
                        mem::mib(mem::rss_bytes())
                    );
                }
            }
        }
    }
    let duration = start.elapsed();
    flight.done.store(true, Ordering::Relaxed);
    let _ = dog.join();
    signals::clear_current();

    // The CPU time of the input that was slowest by wall time.
    let c0 = thread_cpu_time();
    let _ = execute(target.run, &slowest_input);
    slowest_cpu = slowest_cpu.max(thread_cpu_time().saturating_sub(c0));

    let rss_end = mem::rss_bytes();
    let peak_rss = peak_rss.max(rss_end).max(mem::rss_high_water_bytes());
    let mut panics: Vec<Finding> = panics.into_values().collect();
    for f in &mut panics {
        if let Some(bt) = f.raw_backtrace.take() {
            f.backtrace = bt.to_string();
        }
        if let Some(path) = &f.saved {
            let note = format!("panic at {}: {}\n{}", f.location, f.message, f.backtrace);
            let _ = std::fs::write(path.with_extension("txt"), note);
        }
        let small = minimize(target.run, &f.input, &f.location, 4000);
        if small.len() < f.input.len() {
            if let Some(saved) = &f.saved {
                let _ = std::fs::write(saved.with_extension("min"), &small);
            }
            f.minimized = Some(small);
        }
    }
    Report {
        target: target.name,
        inputs: total,
        duration,
        panics,
        hangs,
        slowest,
        slowest_cpu,
        peak_rss,
        rss_early: if rss_early == 0 { rss_end } else { rss_early },
        rss_end,
        peak_input_heap,
        peak_heap_input,
        heap_counted,
        corpus: corpus.len(),
        features: seen.len(),
        cpu: cpu_time().saturating_sub(cpu_start),
        max_rss: cfg.max_rss,
        max_input_heap: cfg.max_input_heap,
    }
}

/// Writes every seed of `target` into `dir` (for AFL's `-i`).
pub fn write_seeds(target: &Target, dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let seeds = (target.seeds)();
    for (i, s) in seeds.iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{i:03}")), s)?;
    }
    Ok(seeds.len())
}
