//! A shared remote cache of stage results (as DVC remotes, Bazel/turborepo remote caches): the
//! runner pulls a result whose key is missing locally but published remotely, and pushes what it
//! computed. The storage is behind [`RemoteCache`] (the binary plugs in object storage); this
//! module holds what the runner and the `cache` command do with it: a pull lands in a temp
//! directory that is published like a computed result, so a failed or interrupted pull leaves
//! nothing visible.

use crate::error::DagError;
use crate::stage::Progress;
use crate::store::{DONE_MARKER, ResultInfo, Workspace};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future (the trait is object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a push or a pull moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Transfer {
    pub files: usize,
    pub bytes: u64,
    /// Push: the remote already held a result for the key (another writer published first);
    /// nothing of this push stays.
    pub already_there: bool,
}

/// Results stored somewhere shared, by stage name and key. Every file of a published result
/// directory travels (its `.sspa-done.json` included); a result becomes visible to
/// [`RemoteCache::contains`] only once all its files are stored, and a pull checks every file
/// against what was pushed.
pub trait RemoteCache: Send + Sync {
    /// Where it is, for messages (no credentials).
    fn location(&self) -> String;
    /// Whether the runner pushes results of `stage` after computing them.
    fn pushes(&self, stage: &str) -> bool;
    /// Whether a complete result for `(stage, key)` is published.
    fn contains<'a>(&'a self, stage: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool, String>>;
    /// Downloads the result into the empty directory `into`, checking every file; an error names
    /// the file.
    fn pull<'a>(
        &'a self,
        stage: &'a str,
        key: &'a str,
        into: &'a Path,
        progress: Progress,
    ) -> BoxFuture<'a, Result<Transfer, String>>;
    /// Uploads the published result directory `dir`.
    fn push<'a>(
        &'a self,
        stage: &'a str,
        key: &'a str,
        dir: &'a Path,
        progress: Progress,
    ) -> BoxFuture<'a, Result<Transfer, String>>;
}

/// A shared handle on a remote (for [`crate::RunOptions`]).
#[derive(Clone)]
pub struct RemoteHandle(pub Arc<dyn RemoteCache>);

impl std::fmt::Debug for RemoteHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteHandle({})", self.0.location())
    }
}

impl std::ops::Deref for RemoteHandle {
    type Target = dyn RemoteCache;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}

/// `12.3 MB` style sizes.
pub fn human_bytes(bytes: u64) -> String {
    let value = bytes as f64;
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", value / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", value / 1e6),
        _ => format!("{:.2} GB", value / 1e9),
    }
}

/// Pulls `(stage, key)` into a temp directory of `workspace` and publishes it there (the caller
/// holds the workspace lock). The pulled `.sspa-done.json` must be the result of that key.
///
/// # Errors
/// The remote's error (naming the file), a result of another key, or I/O.
pub async fn pull_result(
    workspace: &Workspace,
    remote: &dyn RemoteCache,
    stage: &str,
    key: &str,
    progress: Progress,
) -> Result<(PathBuf, Transfer), String> {
    let temp = workspace.temp_dir(stage, key);
    let _ = std::fs::remove_dir_all(&temp);
    std::fs::create_dir_all(&temp).map_err(|e| format!("`{}`: {e}", temp.display()))?;
    let published = async {
        let transfer = remote.pull(stage, key, &temp, progress).await?;
        let dir = publish_pulled(workspace, stage, key, &temp)?;
        Ok((dir, transfer))
    }
    .await;
    if published.is_err() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    published
}

/// Publishes a result pulled into `temp`, whose `.sspa-done.json` must name `key`.
pub(crate) fn publish_pulled(workspace: &Workspace, stage: &str, key: &str, temp: &Path) -> Result<PathBuf, String> {
    let marker = temp.join(DONE_MARKER);
    let info: ResultInfo = std::fs::read(&marker)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
        .map_err(|e| format!("the pulled result has no readable {DONE_MARKER}: {e}"))?;
    if info.key != key {
        return Err(format!("the remote result of `{stage}` {key} says it is of key {}", info.key));
    }
    let dir = workspace.publish(stage, temp, &info).map_err(|e: DagError| e.to_string())?;
    workspace.set_last(stage, &info).map_err(|e| e.to_string())?;
    Ok(dir)
}
