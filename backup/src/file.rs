//! Backup files on disk: [`save`] writes `FILE.tmp`, fsyncs it, reads it
//! back through every check, then renames it to `FILE` and fsyncs the
//! directory, so `FILE` is either absent, the previous file, or a complete
//! verified backup. [`load`] reads and checks a file.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use crate::contents::Backup;
use crate::error::{invalid, Context, Error, Result};
use crate::format;

/// Reads and checks the backup at `path`; also returns its size in bytes.
pub fn load(path: &Path) -> Result<(Backup, u64)> {
    let f =
        File::open(path).map_err(|e| Error::io(format!("opening backup {}", path.display()), e))?;
    let bytes = f
        .metadata()
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
        .len();
    let backup = format::read(BufReader::new(f))
        .with_context(|| format!("{} is not a valid backup", path.display()))?;
    Ok((backup, bytes))
}

/// Writes `backup` to `path` atomically, naming `tool` as its writer;
/// returns its size in bytes.
pub fn save(path: &Path, backup: &Backup, tool: &str) -> Result<u64> {
    let tmp = tmp_path(path);
    let saved = write_verified(&tmp, backup, tool).and_then(|bytes| {
        fs::rename(&tmp, path).map_err(|e| {
            Error::io(
                format!("renaming {} to {}", tmp.display(), path.display()),
                e,
            )
        })?;
        Ok(bytes)
    });
    if saved.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    let bytes = saved?;
    sync_dir(path)?;
    Ok(bytes)
}

/// Writes and fsyncs `tmp`, then checks that it reads back as `backup`.
fn write_verified(tmp: &Path, backup: &Backup, tool: &str) -> Result<u64> {
    let f = File::create(tmp).map_err(|e| Error::io(format!("creating {}", tmp.display()), e))?;
    let mut w = BufWriter::new(f);
    let bytes = format::write(&mut w, backup, tool)
        .with_context(|| format!("writing {}", tmp.display()))?;
    let f = w
        .into_inner()
        .map_err(|e| Error::io(format!("writing {}", tmp.display()), e.into_error()))?;
    f.sync_all()
        .map_err(|e| Error::io(format!("syncing {}", tmp.display()), e))?;
    let (read_back, _) = load(tmp).context("reading the new backup back")?;
    if read_back != *backup {
        invalid!("{} does not read back as what was written", tmp.display());
    }
    Ok(bytes)
}

/// `FILE.tmp`, next to `FILE`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(OsString::from).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Makes a rename or removal in `path`'s directory durable.
pub fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing directory {}", dir.display()), e))
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;
    use crate::contents::samples;

    #[test]
    fn save_then_load_and_no_tmp_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.ckb");
        let mut rng = StdRng::seed_from_u64(1);
        let layout = samples::layout(&mut rng, 3000, 3);
        let backup = samples::backup(&mut rng, 3000, &layout);
        let bytes = save(&path, &backup, "test").unwrap();
        assert_eq!(load(&path).unwrap(), (backup, bytes));
        assert!(!tmp_path(&path).exists());
        assert_eq!(tmp_path(&path).file_name().unwrap(), "b.ckb.tmp");
    }

    #[test]
    fn a_failed_save_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.ckb");
        let mut rng = StdRng::seed_from_u64(2);
        let layout = samples::layout(&mut rng, 3000, 3);
        let mut backup = samples::backup(&mut rng, 3000, &layout);
        backup.shards.swap(0, 1);
        let e = format!("{:#}", save(&path, &backup, "test").unwrap_err());
        assert!(e.contains("not sorted"), "{e}");
        assert!(!path.exists() && !tmp_path(&path).exists());
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk");
        fs::write(&path, b"junk").unwrap();
        let e = format!("{:#}", load(&path).unwrap_err());
        assert!(
            e.contains("junk is not a valid backup") && e.contains("not a checkraft backup"),
            "{e}"
        );
        assert!(load(&dir.path().join("missing")).is_err());
    }
}
