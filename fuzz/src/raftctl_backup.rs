//! `raftctl`'s backup-file parser, compiled from its own source files.
//!
//! `raftctl` is a binary-only crate, so nothing outside it can call
//! `backup::format::read`. Rather than copy the parser (a copy would drift)
//! or restructure `raftctl`, this module compiles the very files that make
//! up the parser (`format.rs`, `check.rs`, `contents.rs`) by `#[path]`:
//! they depend only on `checkraft-proto`, `croaring`, `crc32fast`, `serde`
//! and `anyhow`, and on each other through `super::`. If `raftctl` ever
//! gains a library target, depend on it instead and delete this module.

#![allow(dead_code)]

#[path = "../../raftctl/src/backup/check.rs"]
pub mod check;
#[path = "../../raftctl/src/backup/contents.rs"]
pub mod contents;
#[path = "../../raftctl/src/backup/format.rs"]
pub mod format;
