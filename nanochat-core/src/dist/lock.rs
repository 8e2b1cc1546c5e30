//! One writer per checkpoint folder: an advisory lock (`flock`) on `<folder>/.lock`, held by
//! the writing process for the whole run and released by the kernel when the process ends
//! however it ends (so a killed run leaves no stale lock). A second run of any kind, an
//! independent copy started as one of several ranks included, is refused before it writes.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::{CoreError, Result};

/// The lock file's name inside the folder it guards.
pub const LOCK_FILE: &str = ".lock";

/// A held lock on a folder; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct FolderLock {
    file: File,
    path: PathBuf,
}

impl FolderLock {
    /// Creates `dir` if needed and takes its lock, recording `pid <pid> on <host>` in it.
    ///
    /// Errors: [`CoreError::Busy`] naming the holder when another process holds it;
    /// [`CoreError::Io`] when the folder or the file cannot be created.
    pub fn acquire(dir: &Path) -> Result<FolderLock> {
        let path = dir.join(LOCK_FILE);
        // The lock must be on the file the path names once it is taken: a fresh run may have
        // moved the folder, lock file included, aside between our open and our lock
        // ([`FolderLock::acquire_fresh`]), and that older file no longer guards `dir`.
        let mut tries = 0;
        let mut file = loop {
            std::fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))?;
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| CoreError::io(&path, e))?;
            if !try_lock(&file).map_err(|e| CoreError::io(&path, e))? {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(CoreError::Busy {
                    lock: path,
                    holder: if holder.is_empty() {
                        "unknown".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            if same_file(&file, &path) {
                break file;
            }
            // Dropping the file releases the lock on the moved one; try the new folder.
            tries += 1;
            if tries == 100 {
                return Err(CoreError::io(
                    &path,
                    std::io::Error::other("the folder kept being moved while its lock was taken"),
                ));
            }
        };
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "this host".into());
        let me = format!("pid {} on {host}\n", std::process::id());
        let written = file
            .set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(me.as_bytes()));
        written.map_err(|e| CoreError::io(&path, e))?;
        Ok(FolderLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What [`FolderLock::acquire_fresh`] found: the lock on the (now empty) folder, and where an
/// earlier run's files were moved, if the folder held one.
#[derive(Debug)]
pub struct FreshFolder {
    /// The held lock on the folder the fresh run writes.
    pub lock: FolderLock,
    /// `<folder>.earlier-<UTC time>`: the earlier run's folder, moved whole; `None` when the
    /// folder was new or empty.
    pub earlier: Option<PathBuf>,
}

impl FolderLock {
    /// Takes the lock for a fresh run (step 0) into `dir`. A folder already holding files of
    /// an earlier run (checkpoints, `metrics.jsonl`) is first renamed, whole and atomically,
    /// to the sibling `<name>.earlier-<YYYYMMDDTHHMMSSZ>` (a `-N` suffix when that exists), so
    /// that a fresh run never mixes its steps with another run's nor truncates its metrics
    /// (nanochat overwrites such a folder in place). A run that continues (`--resume-from-step`)
    /// takes [`FolderLock::acquire`] instead.
    ///
    /// Errors: those of [`FolderLock::acquire`] (another process holds the folder: nothing is
    /// moved), and [`CoreError::Io`] naming the folder when it cannot be read or renamed.
    pub fn acquire_fresh(dir: &Path) -> Result<FreshFolder> {
        let lock = FolderLock::acquire(dir)?;
        let entries = std::fs::read_dir(dir).map_err(|e| CoreError::io(dir, e))?;
        let mut earlier_files = false;
        for entry in entries {
            let entry = entry.map_err(|e| CoreError::io(dir, e))?;
            if entry.file_name() != LOCK_FILE {
                earlier_files = true;
                break;
            }
        }
        if !earlier_files {
            return Ok(FreshFolder {
                lock,
                earlier: None,
            });
        }
        let stamp =
            crate::report::rfc3339_utc(std::time::SystemTime::now()).replace(['-', ':'], "");
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "run".into());
        let base = dir.with_file_name(format!("{name}.earlier-{stamp}"));
        let mut to = base.clone();
        let mut n = 2;
        while to.exists() {
            to = PathBuf::from(format!("{}-{n}", base.display()));
            n += 1;
        }
        // The lock is held across the rename: no other writer can be inside the folder.
        std::fs::rename(dir, &to).map_err(|e| {
            CoreError::io(
                dir,
                std::io::Error::new(
                    e.kind(),
                    format!(
                        "moving this earlier run's folder aside to {} failed (nothing was moved or lost): {e}",
                        to.display()
                    ),
                ),
            )
        })?;
        drop(lock);
        Ok(FreshFolder {
            lock: FolderLock::acquire(dir)?,
            earlier: Some(to),
        })
    }
}

/// [`FolderLock::acquire_fresh`], with a warning on stderr naming where an earlier run's files
/// went: what every fresh training run (base, mid, SFT, RL) calls.
pub fn acquire_fresh_noting(dir: &Path) -> Result<FreshFolder> {
    let fresh = FolderLock::acquire_fresh(dir)?;
    if let Some(to) = &fresh.earlier {
        eprintln!(
            "warning: {} already held files (of an earlier run); a fresh run writes into an empty folder, so they were moved, whole, to {}",
            dir.display(),
            to.display()
        );
    }
    Ok(fresh)
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        // The holder's record goes; the file stays (removing it would race a new holder).
        let _ = self.file.set_len(0);
    }
}

/// Whether `file` (open) is the file `path` names now (same device and inode); false when the
/// path names another file or none.
#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_file: &File, _path: &Path) -> bool {
    true
}

#[cfg(unix)]
fn try_lock(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file descriptor this `File` owns and keeps open.
    let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> std::io::Result<bool> {
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock file opened before its folder was moved aside no longer names the folder's lock:
    /// `acquire` retries on the new folder instead of holding the moved file.
    #[test]
    fn a_lock_file_moved_with_its_folder_is_not_the_folders_lock() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("t");
        let held = FolderLock::acquire(&sub).unwrap();
        let path = sub.join(LOCK_FILE);
        let stale = File::open(&path).unwrap();
        assert!(same_file(&stale, &path));
        drop(held);
        std::fs::rename(&sub, dir.path().join("t.earlier")).unwrap();
        assert!(!same_file(&stale, &path));
        // The moved folder's lock file is still lockable, but `acquire` takes the new one.
        assert!(try_lock(&stale).unwrap());
        let fresh = FolderLock::acquire(&sub).unwrap();
        assert!(same_file(&fresh.file, &path));
        assert!(matches!(
            FolderLock::acquire(&sub).unwrap_err(),
            CoreError::Busy { .. }
        ));
    }
}
