//! File damage for fault tests: flip bytes of a stopped node's files, as
//! a bad disk or a stray write would.

use std::path::Path;

/// XORs `len` bytes of `file` from offset `at` with 0xff. Panics, naming
/// the file, when it is shorter than `at + len`.
pub fn flip(file: &Path, at: usize, len: usize) {
    let mut bytes = std::fs::read(file).expect("read file");
    assert!(bytes.len() >= at + len, "{} is too short", file.display());
    for b in &mut bytes[at..at + len] {
        *b ^= 0xff;
    }
    std::fs::write(file, bytes).expect("write file");
}
