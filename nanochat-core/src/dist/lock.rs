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
        std::fs::create_dir_all(dir).map_err(|e| CoreError::io(dir, e))?;
        let path = dir.join(LOCK_FILE);
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
        std::fs::rename(dir, &to).map_err(|e| CoreError::io(dir, e))?;
        drop(lock);
        Ok(FreshFolder {
            lock: FolderLock::acquire(dir)?,
            earlier: Some(to),
        })
    }
}

/// [`FolderLock::acquire_fresh`], with a warning on stderr naming where an earlier run's files
/// went: what every fresh training run (base, mid, SFT, RL) calls.
pub fn acquire_fresh_noting(dir: &Path) -> Result<FolderLock> {
    let fresh = FolderLock::acquire_fresh(dir)?;
    if let Some(to) = &fresh.earlier {
        eprintln!(
            "warning: {} held an earlier run; this fresh run does not continue it (that is --resume-from-step), so its files were moved to {}",
            dir.display(),
            to.display()
        );
    }
    Ok(fresh.lock)
}

impl Drop for FolderLock {
    fn drop(&mut self) {
        // The holder's record goes; the file stays (removing it would race a new holder).
        let _ = self.file.set_len(0);
    }
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
