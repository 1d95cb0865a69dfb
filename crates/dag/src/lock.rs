//! One writer per workspace: an advisory `flock` on `<workspace>/lock`, with the holder's PID and
//! start time written inside so a second run can say who holds it. The kernel drops the lock when
//! its process dies (even by `kill -9`); the stale holder text left behind is reported as a warning.
//!
//! The holder text also carries a random token. A job the holder submitted to a cluster scheduler
//! (see [`crate::executor`]) gets it through [`crate::executor::LOCK_TOKEN_ENV`] and works under the
//! holder's lock (a *delegated* lock: it neither takes nor releases the file lock, and it does not
//! treat the other jobs' partial outputs as left by a crash).

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
    /// Shared with the jobs this holder submits (absent in lock files of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Held for as long as the value lives.
#[derive(Debug)]
pub struct WorkspaceLock {
    file: File,
    path: PathBuf,
    /// The holder that had died without releasing, when this lock took over its file.
    pub took_over: Option<Holder>,
    /// This lock's token (the holder's, for a delegated lock).
    token: String,
    /// Held by the process that submitted this one as a job, not by this process.
    delegated: bool,
}

impl WorkspaceLock {
    /// Whether this is the lock of `workspace`.
    pub fn guards(&self, workspace: &Path) -> bool {
        self.path == workspace.join("lock")
    }

    /// The token jobs submitted under this lock present ([`crate::executor::LOCK_TOKEN_ENV`]).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether this process works under a lock its submitter holds.
    pub fn delegated(&self) -> bool {
        self.delegated
    }

    /// Takes the lock at once or fails with [`DagError::Locked`]. With
    /// [`crate::executor::LOCK_TOKEN_ENV`] set to the current holder's token, returns a delegated
    /// lock instead (the holder submitted this process); a token that is not the holder's is
    /// ignored, and so is the token of a holder that died (the lock is then taken, or refused, as
    /// without one).
    pub fn acquire(workspace: &Path, command: &str) -> Result<Self, DagError> {
        Self::acquire_with(workspace, command, std::env::var(crate::executor::LOCK_TOKEN_ENV).ok().as_deref())
    }

    /// [`WorkspaceLock::acquire`] with the job's token given, not read from the environment.
    pub fn acquire_with(workspace: &Path, command: &str, token: Option<&str>) -> Result<Self, DagError> {
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
                if let (Some(token), Some(holder)) = (token.filter(|t| !t.is_empty()), &holder)
                    && holder.token.as_deref() == Some(token)
                {
                    tracing::debug!("working under the workspace lock of PID {} (a job it submitted)", holder.pid);
                    return Ok(Self { file, path, took_over: None, token: token.to_string(), delegated: true });
                }
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
        let token = new_token();
        let me = Holder {
            pid: std::process::id(),
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            command: command.to_string(),
            token: Some(token.clone()),
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
        Ok(Self { file, path, took_over, token, delegated: false })
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
        if self.delegated {
            return;
        }
        // Empty the holder text before unlocking: a lock file with text but no lock means a crash.
        if self.file.set_len(0).is_err() {
            tracing::debug!("could not clear `{}`", self.path.display());
        }
        let _ = self.file.unlock();
    }
}

/// 128 random bits as hex (from the OS; the clock and PID if it has none to give).
fn new_token() -> String {
    let mut bytes = [0u8; 16];
    let random = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    if random.is_err() {
        let seed = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
        bytes.copy_from_slice(&blake3::hash(seed.as_bytes()).as_bytes()[..16]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    fn a_job_with_the_holders_token_works_under_its_lock() {
        let dir = tempfile::tempdir().expect("tempdir");
        let holder = WorkspaceLock::acquire_with(dir.path(), "run", None).expect("free");
        assert_eq!(holder.token().len(), 32);
        let job = WorkspaceLock::acquire_with(dir.path(), "run", Some(holder.token())).expect("delegated");
        assert!(job.delegated() && !holder.delegated());
        // A second job too; the job ending leaves the holder's lock in place.
        let other = WorkspaceLock::acquire_with(dir.path(), "run", Some(holder.token())).expect("delegated");
        drop(job);
        drop(other);
        assert_eq!(WorkspaceLock::holder(dir.path()).map(|h| h.pid), Some(std::process::id()));
        let err = WorkspaceLock::acquire_with(dir.path(), "run", Some("not-the-token")).expect_err("held");
        assert!(err.to_string().contains("locked by PID"), "{err}");
        drop(holder);
        assert!(WorkspaceLock::holder(dir.path()).is_none());
        // A token of a holder that let go is no lock.
        let fresh = WorkspaceLock::acquire_with(dir.path(), "run", Some("stale")).expect("free");
        assert!(!fresh.delegated());
    }

    #[test]
    fn dead_holder_is_taken_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stale =
            Holder { pid: 999_999_999, started: "2026-01-01T00:00:00Z".into(), command: "run".into(), token: None };
        std::fs::write(dir.path().join("lock"), serde_json::to_string(&stale).expect("json")).expect("write");
        let lock = WorkspaceLock::acquire(dir.path(), "run").expect("stale lock is free");
        assert_eq!(lock.took_over.as_ref().map(|h| h.pid), Some(999_999_999));
    }
}
