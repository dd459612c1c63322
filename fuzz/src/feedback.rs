//! Cheap outcome feedback for the mutation runner.
//!
//! The stable toolchain gives no coverage instrumentation without extra
//! tooling (that is what the AFL entry point is for), so targets report
//! *how far* an input got instead: each decoder's outcome (`ok:TAG`, or
//! its error message with quoted text and words containing digits
//! removed) becomes a feature. The runner keeps an input in its corpus
//! when it shows a feature no earlier input showed, so inputs that pass a
//! checksum, reach a later check or decode into a new variant become
//! parents of further mutations. Features are per decoder, so their
//! number is bounded by decoders × outcome classes.
//!
//! Targets call [`note`] / [`note_error`] / [`note_result`]; outside the
//! runner the features are simply never read.

use std::cell::RefCell;
use std::fmt::Display;

thread_local! {
    static FEATURES: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// Clears this thread's features (the runner calls it before each input).
pub fn reset() {
    FEATURES.with(|f| f.borrow_mut().clear());
}

/// Calls `f` with the features noted since the last [`reset`].
pub fn with_features<R>(f: impl FnOnce(&[u64]) -> R) -> R {
    FEATURES.with(|v| f(&v.borrow()))
}

fn add(h: u64) {
    FEATURES.with(|f| {
        let mut f = f.borrow_mut();
        if f.len() < 256 {
            f.push(h);
        }
    });
}

/// FNV-1a over bytes.
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Records a fixed outcome tag.
pub fn note(tag: &str) {
    add(fnv(tag.as_bytes()));
}

/// Records an error, normalized so that offsets, lengths and echoed input
/// do not make every input look new.
pub fn note_error(tag: &str, error: &dyn Display) {
    add(fnv(tag.as_bytes()).rotate_left(17) ^ fnv(normalize(&error.to_string()).as_bytes()));
}

/// Records `ok:TAG`, or the normalized error.
pub fn note_result<T, E: Display>(tag: &str, result: &Result<T, E>) {
    match result {
        Ok(_) => add(fnv(tag.as_bytes()).rotate_left(17) ^ fnv(b"ok")),
        Err(e) => note_error(tag, e),
    }
}

/// The input-independent part of an error message: its words up to the
/// first quoted one (serde and bincode quote the offending input there,
/// and input can contain quotes itself), without words that contain
/// digits or look like hex numbers (offsets, lengths, checksums) or hold
/// non-ASCII, at most about 96 characters.
pub fn normalize(message: &str) -> String {
    let mut out = String::with_capacity(96);
    for word in message.split_whitespace().take(64) {
        if word.contains(['"', '`', '\'']) {
            break;
        }
        if word
            .bytes()
            .any(|b| b.is_ascii_digit() || !b.is_ascii_graphic())
        {
            continue;
        }
        let bare = word.trim_matches(|c: char| !c.is_ascii_alphanumeric());
        if bare.len() >= 4 && bare.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        out.push_str(word);
        out.push(' ');
        if out.len() > 96 {
            break;
        }
    }
    out
}
