//! The fuzz targets: one file per target, each a `pub fn run(data: &[u8])`
//! plus the valid seed inputs it starts from (built with the project's
//! real encoders) and a dictionary of tokens for the mutator.

pub mod backup;
pub mod frames;
pub mod http;
pub mod raft;
pub mod snapshot;
pub mod ws;

/// One fuzz target.
pub struct Target {
    /// Name used on the command line (`--target NAME`).
    pub name: &'static str,
    /// What it feeds, one line.
    pub about: &'static str,
    /// The target: must return normally for every input (any panic is a
    /// finding), quickly, within bounded memory.
    pub run: fn(&[u8]),
    /// Valid inputs made by the real encoders.
    pub seeds: fn() -> Vec<Vec<u8>>,
    /// Tokens the mutator inserts.
    pub dict: &'static [&'static [u8]],
    /// Largest input the runner produces.
    pub max_len: usize,
}

/// Every target, in the order `--target all` runs them.
pub const TARGETS: &[Target] = &[
    ws::TARGET,
    http::TARGET,
    raft::TARGET,
    backup::TARGET,
    snapshot::TARGET,
    frames::TARGET,
];

/// The target called `name`.
pub fn by_name(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}
