//! One writer per workspace: an advisory `flock` on `<workspace>/lock`, with the holder's PID and
//! start time written inside so a second run can say who holds it. The kernel drops the lock when
//! its process dies (even by `kill -9`); the stale holder text left behind is reported as a warning.

use crate::error::DagError;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub started: String,
    pub command: String,
}

/// Held for as long as the value lives.
#[derive(Debug)]
pub struct WorkspaceLock {
    file: File,
    path: PathBuf,
    /// The holder that had died without releasing, when this lock took over its file.
    pub took_over: Option<Holder>,
}

impl WorkspaceLock {
    /// Whether this is the lock of `workspace`.
    pub fn guards(&self, workspace: &Path) -> bool {
        self.path == workspace.join("lock")
    }

    /// Takes the lock at once or fails with [`DagError::Locked`].
    pub fn acquire(workspace: &Path, command: &str) -> Result<Self, DagError> {
        std::fs::create_dir_all(workspace).map_err(DagError::io(workspace))?;
        let path = workspace.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(DagError::io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                return Err(DagError::Locked {
                    workspace: workspace.to_path_buf(),
                    pid: holder.as_ref().map_or(0, |h| h.pid),
                    started: holder.map_or_else(|| "at an unknown time".into(), |h| h.started),
                });
            }
            Err(TryLockError::Error(e)) => return Err(DagError::io(&path)(e)),
        }
        let took_over = read_holder(&mut file).filter(|h| h.pid != std::process::id());
        if let Some(h) = &took_over {
            tracing::warn!(
                "taking over the workspace lock left by PID {} (started {}), which is no longer running",
                h.pid,
                h.started
            );
        }
        let me = Holder {
            pid: std::process::id(),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            command: command.to_string(),
        };
        let text =
            serde_json::to_string(&me).map_err(|source| DagError::Json { what: "lock holder".into(), source })?;
        (|| {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })()
        .map_err(DagError::io(&path))?;
        Ok(Self { file, path, took_over })
    }

    /// [`WorkspaceLock::acquire`], waiting up to `wait` for another holder to let go (`None`:
    /// no waiting, the error at once).
    pub fn acquire_within(
        workspace: &Path,
        command: &str,
        wait: Option<std::time::Duration>,
    ) -> Result<Self, DagError> {
        let deadline = wait.map(|wait| std::time::Instant::now() + wait);
        let mut announced = false;
        loop {
            match Self::acquire(workspace, command) {
                Err(DagError::Locked { pid, started, .. })
                    if deadline.is_some_and(|deadline| std::time::Instant::now() < deadline) =>
                {
                    if !announced {
                        tracing::info!("waiting for PID {pid} (started {started}) to release the workspace");
                        announced = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                result => return result,
            }
        }
    }

    /// Who holds the lock now, if anyone (for `status`).
    pub fn holder(workspace: &Path) -> Option<Holder> {
        let path = workspace.join("lock");
        let mut file = OpenOptions::new().read(true).write(true).open(path).ok()?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.unlock();
                None
            }
            Err(_) => read_holder(&mut file),
        }
    }
}

impl Drop for WorkspaceLock {
    fn drop(&mut self) {
        // Empty the holder text before unlocking: a lock file with text but no lock means a crash.
        if self.file.set_len(0).is_err() {
            tracing::debug!("could not clear `{}`", self.path.display());
        }
        let _ = self.file.unlock();
    }
}

fn read_holder(file: &mut File) -> Option<Holder> {
    let mut text = String::new();
    file.seek(SeekFrom::Start(0)).ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = WorkspaceLock::acquire(dir.path(), "run").expect("free");
        let err = WorkspaceLock::acquire(dir.path(), "run").expect_err("held");
        let text = err.to_string();
        assert!(text.contains(&format!("locked by PID {}", std::process::id())), "{text}");
        assert_eq!(WorkspaceLock::holder(dir.path()).map(|h| h.pid), Some(std::process::id()));
        drop(first);
        assert!(WorkspaceLock::holder(dir.path()).is_none());
        let again = WorkspaceLock::acquire(dir.path(), "run").expect("released");
        assert!(again.took_over.is_none());
    }

    #[test]
    fn dead_holder_is_taken_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale = Holder { pid: 999_999_999, started: "2026-01-01T00:00:00Z".into(), command: "run".into() };
        std::fs::write(dir.path().join("lock"), serde_json::to_string(&stale).expect("json")).expect("write");
        let lock = WorkspaceLock::acquire(dir.path(), "run").expect("stale lock is free");
        assert_eq!(lock.took_over.as_ref().map(|h| h.pid), Some(999_999_999));
    }
}
