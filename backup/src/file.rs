//! Backup files on disk: [`save`] writes `FILE.tmp`, fsyncs it, reads it
//! back through every check, then renames it to `FILE` and fsyncs the
//! directory, so `FILE` is either absent, the previous file, or a complete
//! verified backup. [`load`] reads and checks a file.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::contents::Backup;
use super::format;

/// Reads and checks the backup at `path`; also returns its size in bytes.
pub fn load(path: &Path) -> Result<(Backup, u64)> {
    let f = File::open(path).with_context(|| format!("opening backup {}", path.display()))?;
    let bytes = f
        .metadata()
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let backup = format::read(BufReader::new(f))
        .with_context(|| format!("{} is not a valid backup", path.display()))?;
    Ok((backup, bytes))
}

/// Writes `backup` to `path` atomically; returns its size in bytes.
pub fn save(path: &Path, backup: &Backup) -> Result<u64> {
    let tmp = tmp_path(path);
    let saved = write_verified(&tmp, backup).and_then(|bytes| {
        fs::rename(&tmp, path)
            .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
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
fn write_verified(tmp: &Path, backup: &Backup) -> Result<u64> {
    let f = File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = BufWriter::new(f);
    let bytes =
        format::write(&mut w, backup).with_context(|| format!("writing {}", tmp.display()))?;
    let f = w
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", tmp.display()))?;
    let (read_back, _) = load(tmp).context("reading the new backup back")?;
    if read_back != *backup {
        bail!("{} does not read back as what was written", tmp.display());
    }
    Ok(bytes)
}

/// `FILE.tmp`, next to `FILE`.
fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(OsString::from).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Makes the rename durable.
fn sync_dir(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::super::contents::samples;
    use super::*;

    #[test]
    fn save_then_load_and_no_tmp_left() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.ckb");
        let mut rng = StdRng::seed_from_u64(1);
        let layout = samples::layout(&mut rng, 3000, 3);
        let backup = samples::backup(&mut rng, 3000, &layout);
        let bytes = save(&path, &backup).unwrap();
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
        let e = format!("{:#}", save(&path, &backup).unwrap_err());
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
