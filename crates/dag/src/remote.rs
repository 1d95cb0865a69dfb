//! A shared remote cache of stage results (as DVC remotes, Bazel/turborepo remote caches): the
//! runner pulls a result whose key is missing locally but published remotely, and pushes what it
//! computed. The storage is behind [`RemoteCache`] (the binary plugs in object storage); this
//! module holds what the runner and the `cache` command do with it: a pull lands in a temp
//! directory that is checked against the stage's declared outputs and published like a computed
//! result ([`crate::store::Workspace::publish_staged`]), so a failed, interrupted or incomplete
//! pull leaves nothing visible.

use crate::runner::PlannedStage;
use crate::stage::Progress;
use crate::store::{ResultInfo, Workspace};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future (the trait is object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A backend's own error, kept as the source of a [`TransferError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a push or a pull moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Transfer {
    pub files: usize,
    pub bytes: u64,
    /// Push: the remote already held an intact result for the key (another writer published
    /// first); nothing of this push stays.
    pub already_there: bool,
    /// Push: the remote held an entry for the key whose files were missing or did not match;
    /// this push replaced it.
    pub replaced: bool,
}

/// What a push does when the key is already published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Existing {
    /// Keep the published entry when every file it lists is stored with its size; replace it
    /// otherwise.
    #[default]
    KeepIfIntact,
    /// Replace it: this run found it damaged (a pull failed its check).
    Replace,
}

/// Why a transfer, a lookup or a check failed. Each names the object or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The remote could not be reached or refused the request.
    #[error("`{location}`: {source}")]
    Store {
        location: String,
        #[source]
        source: BoxError,
    },
    /// Nothing is published for the key.
    #[error("no result of `{stage}` {key} on {remote}")]
    NotFound { stage: String, key: String, remote: String },
    /// A manifest that cannot be used (not JSON, another format or key, a path outside the
    /// result).
    #[error("`{location}`: {problem}")]
    Manifest { location: String, problem: String },
    /// A file the manifest lists is not stored.
    #[error("`{location}` is listed in its manifest but missing on the remote")]
    Missing { location: String },
    /// A stored file's size differs from its manifest's (found without downloading it).
    #[error("`{location}` is {size} bytes, its manifest says {expected_size} (altered on the remote)")]
    WrongSize { location: String, size: u64, expected_size: u64 },
    /// A stored file differs from its manifest.
    #[error(
        "`{location}` does not match its manifest: {size} bytes, BLAKE3 {}…, expected {expected_size} bytes, {}… (altered on the remote)",
        short(found),
        short(expected)
    )]
    Mismatch { location: String, size: u64, found: String, expected_size: u64, expected: String },
    /// A local file or directory.
    #[error("`{}`: {source}", path.display())]
    Local {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The pulled files are not a result of the stage: no readable marker, another key, or a
    /// declared output missing.
    #[error("the pulled result of `{stage}` {problem}")]
    Invalid { stage: String, problem: String },
    /// The pulled result could not be published in the workspace.
    #[error("cannot publish the pulled result")]
    Publish(#[source] Box<crate::DagError>),
}

impl TransferError {
    /// The remote answered, and what it holds for the key is damaged (rather than unreachable):
    /// the entry is replaced by the next push of the key.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            Self::Manifest { .. }
                | Self::Missing { .. }
                | Self::WrongSize { .. }
                | Self::Mismatch { .. }
                | Self::Invalid { .. }
        )
    }

    pub fn local(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Local { path, source }
    }
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
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
    /// Whether a result for `(stage, key)` is published (its files are checked only by a pull).
    fn contains<'a>(&'a self, stage: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool, TransferError>>;
    /// Downloads the result into the empty directory `into`, checking every file; an error names
    /// the file.
    fn pull<'a>(
        &'a self,
        stage: &'a str,
        key: &'a str,
        into: &'a Path,
        progress: Progress,
    ) -> BoxFuture<'a, Result<Transfer, TransferError>>;
    /// Uploads the published result directory `dir`. An entry already published for the key is
    /// kept or replaced as `existing` says.
    fn push<'a>(
        &'a self,
        stage: &'a str,
        key: &'a str,
        dir: &'a Path,
        existing: Existing,
        progress: Progress,
    ) -> BoxFuture<'a, Result<Transfer, TransferError>>;
    /// Downloads and checks every file of the published entry, writing nothing (`cache verify`).
    fn verify<'a>(
        &'a self,
        stage: &'a str,
        key: &'a str,
        progress: Progress,
    ) -> BoxFuture<'a, Result<Transfer, TransferError>>;
    /// Takes the entry off the remote (its manifest first, so the key is unpublished at once).
    fn remove<'a>(&'a self, stage: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), TransferError>>;
    /// The keys of `stage` published on the remote.
    fn keys<'a>(&'a self, stage: &'a str) -> BoxFuture<'a, Result<Vec<String>, TransferError>>;
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

/// Pulls the planned stage's result into a temp directory of `workspace` and publishes it there
/// (the caller holds the workspace lock), checked as the runner checks a pull: the pulled
/// `.sspa-done.json` must be the result of that key and every declared output (`outs`) must be
/// there.
///
/// # Errors
/// The remote's error (naming the file), a result of another key or lacking a declared output,
/// or I/O.
pub async fn pull_result(
    workspace: &Workspace,
    remote: &dyn RemoteCache,
    planned: &PlannedStage,
    outs: &[String],
    progress: Progress,
) -> Result<(PathBuf, Transfer), TransferError> {
    let temp = workspace.temp_dir(&planned.name, &planned.key);
    let _ = std::fs::remove_dir_all(&temp);
    std::fs::create_dir_all(&temp).map_err(TransferError::local(&temp))?;
    let published = async {
        let transfer = remote.pull(&planned.name, &planned.key, &temp, progress).await?;
        let dir = publish_pulled(workspace, planned, outs, &temp)?;
        Ok((dir, transfer))
    }
    .await;
    if published.is_err() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    published
}

/// Publishes a result pulled into `temp`: its `.sspa-done.json` must name the planned key, and
/// every declared output must be there (the pulled marker's own list of outputs is not trusted:
/// a marker listing none would make any pulled directory look complete). The published marker
/// lists the declared outputs and keeps the pulled one's time and duration.
pub(crate) fn publish_pulled(
    workspace: &Workspace,
    planned: &PlannedStage,
    outs: &[String],
    temp: &Path,
) -> Result<PathBuf, TransferError> {
    let invalid = |problem: String| TransferError::Invalid { stage: planned.name.clone(), problem };
    let marker = temp.join(crate::store::DONE_MARKER);
    let pulled: ResultInfo = std::fs::read(&marker)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
        .map_err(|e| invalid(format!("has no readable {}: {e}", crate::store::DONE_MARKER)))?;
    if pulled.key != planned.key {
        return Err(invalid(format!("{} says it is of key {}", planned.key, pulled.key)));
    }
    let missing = crate::store::missing_in(temp, outs);
    if !missing.is_empty() {
        return Err(invalid(format!("lacks declared output(s): {}", missing.join(", "))));
    }
    let info = ResultInfo {
        key: planned.key.clone(),
        parts: planned.parts.clone(),
        outs: outs.to_vec(),
        finished_at: pulled.finished_at,
        duration_s: pulled.duration_s,
    };
    let publish_error = |e: crate::DagError| TransferError::Publish(Box::new(e));
    let dir = workspace.publish(&planned.name, temp, &info).map_err(publish_error)?;
    workspace.set_last(&planned.name, &info).map_err(publish_error)?;
    Ok(dir)
}
