//! One writer per workspace, guarded twice.
//!
//! 1. An advisory `flock` on `<workspace>/lock`, with the holder's PID, host, start time and
//!    token written inside so a second run can say who holds it. The kernel drops the lock when
//!    its process dies (even by `kill -9`); the stale holder text left behind is reported as a
//!    warning.
//! 2. A lease, for file systems where `flock` is local to each node (NFS mounted `nolock`, Lustre
//!    `localflock`, BeeGFS by default): a process on another node — a Slurm job — would take the
//!    "held" `flock` there. The holder also creates `<workspace>/lock.lease.<n>` exclusively
//!    (`O_EXCL`, atomic on those file systems) with the same holder text, and touches it every
//!    [`HEARTBEAT`]. A newer holder needs the `flock` *and* no live lease: a lease is live while its
//!    heartbeat is younger than [`STALE_AFTER`] and it was not left on this host (a holder on this
//!    host keeps its `flock`, so a lease of this host whose `flock` is free was left by a dead
//!    process, and is taken over at once). A stale lease is taken over by creating generation
//!    `n + 1` (of two processes taking over at once, one creates it, the other is refused) and
//!    removing the older ones; a holder whose lease was taken over (it hung past [`STALE_AFTER`])
//!    logs it as an error at its next heartbeat. Hosts' clocks must agree to well within
//!    [`STALE_AFTER`] (NTP).
//!
//! The holder text also carries a random token. A job the holder submitted to a cluster scheduler
//! (see [`crate::executor`]) gets it through [`crate::executor::LOCK_TOKEN_ENV`] and works under the
//! holder's lock (a *delegated* lock: it neither takes nor releases the `flock` or the lease, and it
//! does not treat the other jobs' partial outputs as left by a crash) — whether it finds the holder
//! through the `flock`'s text (the same node, or a cluster-wide `flock`) or through the lease.

use crate::error::DagError;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// Between two touches of the holder's lease.
pub const HEARTBEAT: Duration = Duration::from_secs(10);
/// A lease not touched for this long is stale (its holder died or hangs on another node).
pub const STALE_AFTER: Duration = Duration::from_secs(120);
/// Lease files are `lock.lease.<generation>`.
const LEASE_PREFIX: &str = "lock.lease.";
/// A lease being written: `lock.lease-draft.<pid>-<generation>`, linked to its name when whole.
const DRAFT_PREFIX: &str = "lock.lease-draft.";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub started: String,
    pub command: String,
    /// Shared with the jobs this holder submits (absent in lock files of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The host the holder runs on (absent in lock files of older versions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// Held for as long as the value lives.
#[derive(Debug)]
pub struct WorkspaceLock {
    file: File,
    path: PathBuf,
    /// The holder that had died without releasing, when this lock took over its file or lease.
    pub took_over: Option<Holder>,
    /// This lock's token (the holder's, for a delegated lock).
    token: String,
    /// Held by the process that submitted this one as a job, not by this process.
    delegated: bool,
    /// This holder's lease (none for a delegated lock).
    lease: Option<Lease>,
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

    /// Whether another process took this holder's lease over (this one stopped heartbeating for
    /// longer than [`STALE_AFTER`]): the workspace is no longer this process's alone.
    pub fn lost(&self) -> bool {
        self.lease.as_ref().is_some_and(|lease| lease.lost.load(Ordering::Relaxed))
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
        let token = token.filter(|t| !t.is_empty());
        let delegated = |file: File, path: PathBuf, holder: &Holder, token: &str| {
            tracing::debug!("working under the workspace lock of PID {} (a job it submitted)", holder.pid);
            Self { file, path, took_over: None, token: token.to_string(), delegated: true, lease: None }
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                if let (Some(token), Some(holder)) = (token, &holder)
                    && holder.token.as_deref() == Some(token)
                {
                    return Ok(delegated(file, path, holder, token));
                }
                return Err(locked(workspace, holder));
            }
            Err(TryLockError::Error(e)) => return Err(DagError::io(&path)(e)),
        }
        // The flock is ours; a live lease means the holder runs on another node.
        let newest = newest_lease(workspace);
        if let Some(live) = newest.as_ref().filter(|lease| lease.live()) {
            let _ = file.unlock();
            if let Some(token) = token
                && live.holder.token.as_deref() == Some(token)
            {
                return Ok(delegated(file, path, &live.holder, token));
            }
            return Err(locked(workspace, Some(live.holder.clone())));
        }
        Self::hold(file, path, workspace, command, newest)
    }

    /// Holds the workspace with the flock `file` already taken and no live lease (`stale`: the
    /// newest lease, left by a holder that is gone): a lease of the next generation, then this
    /// holder's text in the lock file.
    fn hold(
        mut file: File,
        path: PathBuf,
        workspace: &Path,
        command: &str,
        stale: Option<FoundLease>,
    ) -> Result<Self, DagError> {
        let mut took_over = read_holder(&mut file).filter(|h| h.pid != std::process::id() || h.host != this_host());
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
            started: sspa_fsio::timestamp(),
            command: command.to_string(),
            token: Some(token.clone()),
            host: this_host(),
        };
        let text =
            serde_json::to_string(&me).map_err(|source| DagError::Json { what: "lock holder".into(), source })?;
        let generation = stale.as_ref().map_or(1, |stale| stale.generation + 1);
        let lease = match Lease::create(workspace, generation, &text) {
            Ok(lease) => lease,
            Err(error) => {
                let _ = file.unlock();
                return Err(match error.kind() {
                    // Another process took the lease over first.
                    std::io::ErrorKind::AlreadyExists => locked(workspace, newest_lease(workspace).map(|l| l.holder)),
                    _ => DagError::io(lease_path(workspace, generation))(error),
                });
            }
        };
        if let Some(stale) =
            stale.filter(|stale| stale.holder.pid != 0 && (stale.holder.pid != me.pid || stale.holder.host != me.host))
        {
            if stale.holder.host != me.host {
                tracing::warn!(
                    "taking over the workspace lease of PID {} on {} (started {}), not renewed for {} s",
                    stale.holder.pid,
                    stale.holder.host.as_deref().unwrap_or("an unknown host"),
                    stale.holder.started,
                    stale.age.as_secs()
                );
            }
            took_over.get_or_insert(stale.holder);
        }
        lease.remove_older(workspace);
        (|| {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })()
        .map_err(DagError::io(&path))?;
        Ok(Self { file, path, took_over, token, delegated: false, lease: Some(lease.beat()) })
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

    /// Who holds the lock now, if anyone (for `status`): the `flock`'s holder, or the holder of a
    /// live lease on another node.
    pub fn holder(workspace: &Path) -> Option<Holder> {
        let path = workspace.join("lock");
        let flock_holder =
            OpenOptions::new().read(true).write(true).open(path).ok().and_then(|mut file| match file.try_lock() {
                Ok(()) => {
                    let _ = file.unlock();
                    None
                }
                Err(_) => read_holder(&mut file),
            });
        flock_holder.or_else(|| newest_lease(workspace).filter(FoundLease::live).map(|lease| lease.holder))
    }
}

impl Drop for WorkspaceLock {
    fn drop(&mut self) {
        if self.delegated {
            return;
        }
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
        // Empty the holder text before unlocking: a lock file with text but no lock means a crash.
        if self.file.set_len(0).is_err() {
            tracing::debug!("could not clear `{}`", self.path.display());
        }
        let _ = self.file.unlock();
    }
}

fn locked(workspace: &Path, holder: Option<Holder>) -> DagError {
    DagError::Locked {
        workspace: workspace.to_path_buf(),
        pid: holder.as_ref().map_or(0, |h| h.pid),
        host: holder.as_ref().and_then(|h| h.host.clone()).filter(|host| Some(host) != this_host().as_ref()),
        started: holder.map_or_else(|| "at an unknown time".into(), |h| h.started),
    }
}

/// This holder's lease file and its heartbeat thread.
#[derive(Debug)]
struct Lease {
    path: PathBuf,
    generation: u64,
    /// Set by the heartbeat when another process took the lease over.
    lost: Arc<AtomicBool>,
    heartbeat: Option<(std::sync::mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl Lease {
    /// Creates generation `generation` exclusively with `text` inside. The text is written and
    /// synced under a name of this process's own first, then hard-linked to the lease's name:
    /// `link` fails if that name exists (exclusive, also on NFS), and the lease appears with its
    /// whole text, so a holder killed at any point never leaves an empty lease that would read
    /// as "held by an unknown process".
    fn create(workspace: &Path, generation: u64, text: &str) -> std::io::Result<Self> {
        let path = lease_path(workspace, generation);
        let draft = workspace.join(format!("{DRAFT_PREFIX}{}-{generation}", std::process::id()));
        let written = (|| {
            let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&draft)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()
        })();
        let linked = written.and_then(|()| std::fs::hard_link(&draft, &path));
        let _ = std::fs::remove_file(&draft);
        linked?;
        Ok(Self { path, generation, lost: Arc::default(), heartbeat: None })
    }

    /// Removes the leases of older generations (taken over, or left by dead holders) and drafts
    /// of lease files that holders killed before they linked them left behind.
    fn remove_older(&self, workspace: &Path) {
        for (generation, path) in leases(workspace) {
            if generation < self.generation {
                let _ = std::fs::remove_file(path);
            }
        }
        let Ok(entries) = std::fs::read_dir(workspace) else { return };
        for entry in entries.flatten() {
            let stale = entry.metadata().and_then(|m| m.modified()).ok().and_then(|m| m.elapsed().ok());
            if entry.file_name().to_string_lossy().starts_with(DRAFT_PREFIX)
                && stale.is_some_and(|age| age > STALE_AFTER)
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Starts touching the lease every [`HEARTBEAT`].
    fn beat(mut self) -> Self {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let (path, lost) = (self.path.clone(), self.lost.clone());
        let thread = std::thread::Builder::new().name("sspa-lease".into()).spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(HEARTBEAT) {
                if let Err(error) = touch(&path) {
                    lost.store(true, Ordering::Relaxed);
                    tracing::error!(
                        "the workspace lease `{}` is gone ({error}): another process took the workspace over after this one stopped renewing it",
                        path.display()
                    );
                    return;
                }
            }
        });
        match thread {
            Ok(thread) => self.heartbeat = Some((stop, thread)),
            Err(error) => tracing::warn!("cannot start the workspace lease's heartbeat: {error}"),
        }
        self
    }

    /// Stops the heartbeat and removes the lease (unless another process took it over).
    fn release(mut self) {
        if let Some((stop, thread)) = self.heartbeat.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
        if !self.lost.load(Ordering::Relaxed) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Renews a lease: its modification time is its heartbeat.
fn touch(path: &Path) -> std::io::Result<()> {
    OpenOptions::new().write(true).open(path)?.set_modified(SystemTime::now())
}

/// A lease found in a workspace.
#[derive(Debug)]
struct FoundLease {
    generation: u64,
    holder: Holder,
    /// Since its last heartbeat.
    age: Duration,
}

impl FoundLease {
    /// Its holder may still run: renewed within [`STALE_AFTER`], on another host (a holder on
    /// this host keeps its `flock`; whoever sees the lease has checked that `flock` is free).
    fn live(&self) -> bool {
        self.age < STALE_AFTER && self.holder.host != this_host()
    }
}

fn lease_path(workspace: &Path, generation: u64) -> PathBuf {
    workspace.join(format!("{LEASE_PREFIX}{generation}"))
}

/// Lease files by generation.
fn leases(workspace: &Path) -> Vec<(u64, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(workspace) else { return Vec::new() };
    let mut found: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let generation = name.strip_prefix(LEASE_PREFIX)?.parse().ok()?;
            Some((generation, entry.path()))
        })
        .collect();
    found.sort();
    found
}

/// The newest lease. Leases appear whole (see [`Lease::create`]): one whose text does not parse
/// was damaged (or left half-written by an older version killed while writing it), is nobody's,
/// and is taken over like a stale one. One removed while it is read (its holder let go) is
/// passed over for the next newest.
fn newest_lease(workspace: &Path) -> Option<FoundLease> {
    for _ in 0..8 {
        let (generation, path) = leases(workspace).pop()?;
        let read = std::fs::metadata(&path).and_then(|m| m.modified()).and_then(|modified| {
            let text = std::fs::read_to_string(&path)?;
            Ok((modified, text))
        });
        let (modified, text) = match read {
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(_) => return None,
        };
        let age = SystemTime::now().duration_since(modified).unwrap_or_default();
        return Some(match serde_json::from_str::<Holder>(text.trim()) {
            Ok(holder) => FoundLease { generation, holder, age },
            Err(_) => {
                tracing::warn!("the workspace lease `{}` holds no holder's text; it is nobody's", path.display());
                let holder = Holder {
                    pid: 0,
                    started: "at an unknown time".into(),
                    command: String::new(),
                    token: None,
                    host: this_host(),
                };
                FoundLease { generation, holder, age: STALE_AFTER }
            }
        });
    }
    None
}

/// This machine's host name.
fn this_host() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
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
mod tests;
