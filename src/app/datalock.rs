//! The data-directory lock: one `gateway run` per data directory while an embedded backend
//! (the SQLite queue or the SQLite store) lives there.
//!
//! # Invariants
//!
//! 1. **One holder.** `<data_dir>/gateway.lock` is held with an exclusive OS file lock
//!    (`flock` on Unix, `LockFileEx` on Windows, through `std::fs::File::try_lock`) for as long
//!    as the [`DataDirLock`] lives; the running gateway keeps it until it has stopped. A second
//!    process (or a second start in the same process) on the same directory gets
//!    [`LockError::Held`], naming the directory and the holder, and starts nothing.
//! 2. **No stale locks.** The OS releases the lock when the holder's file is closed, including
//!    when the process is killed: a leftover `gateway.lock` file never blocks a start. The file
//!    is not deleted on release (deleting would race a new holder that opened it).
//! 3. **The holder is named.** The holder writes `pid=<pid> instance=<name> since=<unix s>` into
//!    the file after taking the lock; a refused start reads it back for its error. The content
//!    is informational only: the lock, not the text, decides.
//!
//! Why: two processes on one embedded queue would both lease its messages and break per-key
//! order; SQLite itself would let them, so nothing else stops an operator who starts a second
//! instance (or a second systemd unit) by mistake.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the data directory.
pub const LOCK_FILE: &str = "gateway.lock";

/// Every way taking the lock fails.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "the data directory {dir} is in use by another gateway ({holder}); \
         an embedded queue or SQLite store can serve one process only: stop that one, \
         or give this instance its own gateway.data_dir, or use RabbitMQ and PostgreSQL \
         for several instances"
    )]
    Held { dir: String, holder: String },
    #[error("cannot open the lock file {path}: {detail}")]
    Open { path: String, detail: String },
    #[error("cannot lock {path}: {detail}")]
    Lock { path: String, detail: String },
    #[error("cannot write the holder into {path}: {detail}")]
    Write { path: String, detail: String },
}

/// The held lock; released when dropped (or when the process ends, however it ends).
#[derive(Debug)]
pub struct DataDirLock {
    /// Held open for the lock's lifetime: closing it releases the lock.
    file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Take the lock of `dir` (which must exist) for `instance`, without waiting.
    pub fn acquire(dir: &Path, instance: &str) -> Result<Self, LockError> {
        let path = dir.join(LOCK_FILE);
        let shown = path.display().to_string();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| LockError::Open {
                path: shown.clone(),
                detail: e.to_string(),
            })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = text.trim();
                return Err(LockError::Held {
                    dir: dir.display().to_string(),
                    holder: if holder.is_empty() {
                        "holder unknown".into()
                    } else {
                        holder.chars().take(200).collect()
                    },
                });
            }
            Err(TryLockError::Error(e)) => {
                return Err(LockError::Lock {
                    path: shown,
                    detail: e.to_string(),
                })
            }
        }
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let line = format!(
            "pid={} instance={} since={since}\n",
            std::process::id(),
            instance
        );
        let write = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(line.as_bytes())?;
            file.sync_data()
        };
        write(&mut file).map_err(|e| LockError::Write {
            path: shown,
            detail: e.to_string(),
        })?;
        Ok(Self { file, path })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DataDirLock {
    fn drop(&mut self) {
        // Closing the file would release it too; unlocking first makes the release explicit.
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_the_first_named_then_admitted_after_release() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path(), "gw-a").unwrap();
        let err = DataDirLock::acquire(dir.path(), "gw-b").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, LockError::Held { .. }), "{err:?}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");
        assert!(text.contains("instance=gw-a"), "{text}");
        assert!(
            text.contains(&format!("pid={}", std::process::id())),
            "{text}"
        );
        drop(first);
        let again = DataDirLock::acquire(dir.path(), "gw-b").unwrap();
        let content = std::fs::read_to_string(again.path()).unwrap();
        assert!(content.starts_with(&format!("pid={} instance=gw-b", std::process::id())));
    }
}
