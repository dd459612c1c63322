//! A directory of scheduled backups: their names, listing, and pruning.
//!
//! A scheduled backup is named `grid-YYYYMMDDTHHMMSSZ.ckb`, the UTC second
//! its backup started, so names sort by time. [`list`] and [`prune`]
//! consider only files named exactly so ([`parse_name`]); everything else
//! in the directory (an operator's own backups, `*.tmp` leftovers) is
//! never listed or deleted. [`parse_name`] is also the check that makes a
//! name safe to join to the directory: it admits no `/`, `..` or other
//! path syntax.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::file;

/// The first characters of every scheduled backup's name.
pub const PREFIX: &str = "grid-";
/// The extension of every backup file, scheduled or not.
pub const EXTENSION: &str = ".ckb";

/// One scheduled backup in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its file name, e.g. `grid-20261130T161500Z.ckb`.
    pub name: String,
    /// When its backup started, to the second, ms since the Unix epoch.
    pub created_ms: u64,
    /// Its size in bytes.
    pub bytes: u64,
}

/// A backup start time, `ms` since the Unix epoch, as a UTC date.
fn datetime(ms: u64) -> chrono::DateTime<chrono::Utc> {
    i64::try_from(ms)
        .ok()
        .and_then(chrono::DateTime::from_timestamp_millis)
        .unwrap_or_default()
}

/// The name of a backup started at `ms` (ms since the Unix epoch).
pub fn name_for(ms: u64) -> String {
    let stamp = datetime(ms).format("%Y%m%dT%H%M%SZ");
    format!("{PREFIX}{stamp}{EXTENSION}")
}

/// The start time (ms, to the second) a scheduled backup's `name` encodes,
/// or an [`Error::Invalid`] explaining the scheme when `name` does not
/// follow it exactly.
pub fn parse_name(name: &str) -> Result<u64> {
    let bad = || {
        Error::Invalid(format!(
            "{name:?} is not a scheduled backup's name \
             (expected {PREFIX}YYYYMMDDTHHMMSSZ{EXTENSION}, e.g. {})",
            name_for(1_796_055_300_000)
        ))
    };
    let stamp = name
        .strip_prefix(PREFIX)
        .and_then(|s| s.strip_suffix(EXTENSION))
        .ok_or_else(bad)?;
    if stamp.len() != 16 || !stamp.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return Err(bad());
    }
    let parsed = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .map_err(|_| bad())?
        .and_utc();
    let ms = u64::try_from(parsed.timestamp_millis()).map_err(|_| bad())?;
    // Exactly the name this time gets: no other spelling of it.
    if !(1970..=9999).contains(&chrono::Datelike::year(&parsed)) || name_for(ms) != name {
        return Err(bad());
    }
    Ok(ms)
}

/// The scheduled backups in `dir`, oldest first. A missing directory has
/// none.
pub fn list(dir: &Path) -> Result<Vec<Entry>> {
    let read = match fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let Some(name) = entry.file_name().to_str().map(String::from) else {
            continue;
        };
        let Ok(created_ms) = parse_name(&name) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_file() {
            out.push(Entry {
                name,
                created_ms,
                bytes: meta.len(),
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The path of the scheduled backup `name` in `dir`, once `name` passed
/// [`parse_name`] (so it cannot leave `dir`).
pub fn path_of(dir: &Path, name: &str) -> Result<PathBuf> {
    parse_name(name)?;
    Ok(dir.join(name))
}

/// Deletes the oldest scheduled backups in `dir` beyond the newest
/// `keep`, then fsyncs the directory; returns the names deleted.
pub fn prune(dir: &Path, keep: usize) -> Result<Vec<String>> {
    let entries = list(dir)?;
    let excess = entries.len().saturating_sub(keep);
    let mut deleted = Vec::new();
    for e in entries.into_iter().take(excess) {
        let path = dir.join(&e.name);
        fs::remove_file(&path)
            .map_err(|err| Error::io(format!("deleting {}", path.display()), err))?;
        deleted.push(e.name);
    }
    if !deleted.is_empty() {
        file::sync_dir(&dir.join(&deleted[0]))?;
    }
    Ok(deleted)
}

/// `2026-11-30T16:15:00.123Z`.
pub fn utc(ms: u64) -> String {
    datetime(ms).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_time() {
        let mut last = String::new();
        for ms in [0, 951_782_400_000, 1_796_055_300_000, 4_102_444_799_000] {
            let name = name_for(ms);
            assert_eq!(parse_name(&name).unwrap(), ms, "{name}");
            assert!(name > last);
            last = name;
        }
        assert_eq!(name_for(1_796_055_300_999), "grid-20261130T161500Z.ckb");
        assert_eq!(utc(1_796_055_300_123), "2026-11-30T16:15:00.123Z");
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(utc(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
        assert_eq!(utc(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn anything_else_is_refused() {
        for name in [
            "",
            "grid-.ckb",
            "../grid-20261130T161500Z.ckb",
            "grid-20261130T161500Z.ckb/..",
            "grid-20261130T161500Z.ckb.tmp",
            "grid-20261130T161500Z.CKB",
            "grid-20261130t161500Z.ckb",
            "grid-2026113OT161500Z.ckb",
            "grid-20261131T161500Z.ckb",
            "grid-20261130T246000Z.ckb",
            "grid-+2026130T161500Z.ckb",
            "other.ckb",
        ] {
            let e = parse_name(name).unwrap_err().to_string();
            assert!(e.contains("not a scheduled backup's name"), "{name}: {e}");
            assert!(path_of(Path::new("/b"), name).is_err());
        }
    }

    #[test]
    fn list_and_prune_touch_only_scheduled_names() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(&dir.path().join("missing")).unwrap().is_empty());
        let names: Vec<String> = (0..5).map(|i| name_for(i * 3_600_000)).collect();
        for n in names.iter().rev() {
            fs::write(dir.path().join(n), b"x").unwrap();
        }
        for other in ["mine.ckb", "grid-x.ckb", "grid-19700101T000000Z.ckb.tmp"] {
            fs::write(dir.path().join(other), b"y").unwrap();
        }
        let listed: Vec<String> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(listed, names);
        assert_eq!(prune(dir.path(), 2).unwrap(), names[..3]);
        let left: Vec<String> = list(dir.path())
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(left, names[3..]);
        assert!(dir.path().join("mine.ckb").exists());
        assert!(dir.path().join("grid-19700101T000000Z.ckb.tmp").exists());
        assert!(prune(dir.path(), 5).unwrap().is_empty());
    }
}
