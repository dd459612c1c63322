//! [`SmallDisk`]: a small tmpfs mounted over a directory, for full-disk
//! tests. Needs root (CI runs as root); [`SmallDisk::mount`] answers `None`
//! with a printed reason where mounting is not possible, so a test can
//! skip with a clear message. Dropping it unmounts (lazily, so a process
//! still holding files cannot keep the mount behind).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted tmpfs; unmounted on drop.
pub struct SmallDisk {
    dir: PathBuf,
}

impl SmallDisk {
    /// Mounts a `size_mb` tmpfs over `dir`, keeping `dir`'s current files
    /// (copied onto the new mount). `None`, with the reason printed, when
    /// not root or the mount fails.
    pub fn mount(dir: &Path, size_mb: u64) -> Option<Self> {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIPPED: mounting a small tmpfs needs root (CI runs as root)");
            return None;
        }
        let saved = tempfile::tempdir().expect("temp dir");
        let copy = |from: &Path, to: &Path| {
            let status = Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", from.display()))
                .arg(to)
                .status()
                .expect("run cp");
            assert!(status.success(), "cp {} {}", from.display(), to.display());
        };
        std::fs::create_dir_all(dir).expect("create the mount point");
        copy(dir, saved.path());
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(dir)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!(
                "SKIPPED: cannot mount a tmpfs on {}: {status:?}",
                dir.display()
            );
            return None;
        }
        let disk = SmallDisk {
            dir: dir.to_path_buf(),
        };
        copy(saved.path(), dir);
        Some(disk)
    }

    /// Fills the disk with a ballast file until only about `leave_mb` MiB
    /// are free; [`SmallDisk::free_ballast`] gives the space back.
    pub fn fill_leaving(&self, leave_mb: u64) {
        let stat = nix::sys::statvfs::statvfs(&self.dir).expect("statvfs");
        let free = stat.blocks_available() as u64 * stat.fragment_size() as u64;
        let ballast = free.saturating_sub(leave_mb << 20);
        std::fs::write(self.ballast(), vec![0u8; ballast as usize]).expect("write the ballast");
    }

    /// Deletes the ballast file.
    pub fn free_ballast(&self) {
        let _ = std::fs::remove_file(self.ballast());
    }

    fn ballast(&self) -> PathBuf {
        self.dir.join("ballast")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
