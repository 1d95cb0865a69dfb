//! remote: the shared cache of stage results on object storage, through Apache Arrow's
//! `object_store` (one API over S3-compatible stores, Google Cloud Storage, Azure Blob Storage
//! and the local file system). It implements [`sspa_dag::RemoteCache`].
//!
//! ```text
//! <prefix>/<stage>/<key>/<upload>/<file>     the files of one push (every file of the result)
//! <prefix>/<stage>/<key>/manifest.json       size + BLAKE3 of every file and the upload holding
//!                                            them; written last, create-only
//! ```
//!
//! A result is visible only through its manifest, which is put after every data object with a
//! create-only put: a push interrupted at any point (`kill -9`) leaves data objects that no
//! manifest names, and of two writers of the same key the first manifest wins and the second
//! removes its own upload, so neither can corrupt the other. A pull checks every file's size and
//! BLAKE3 against the manifest while it streams it to disk and names the first file that differs.
//! Credentials come from the environment only, as each provider's SDK reads them, and are never
//! written or logged.
//!
//! **Damaged entries are replaced, never kept.** Objects can disappear under a manifest (a bucket
//! lifecycle rule, a partial sync, a writer that deleted its own upload after a create-only put
//! that was stored but answered 5xx). Before a push gives up on a key that is already published it
//! checks that every file the manifest lists is stored with its size (one HEAD each; a pull that
//! found the entry damaged asks for a replacement outright, [`Existing::Replace`]). A damaged entry
//! is replaced in this order, so that a manifest never names an incomplete upload:
//! 1. the new files are uploaded under a fresh upload directory;
//! 2. the manifest is swapped: a conditional put on the damaged manifest's ETag/version
//!    (`PutMode::Update`: S3's `If-Match`, GCS generations, Azure ETags) — if another writer
//!    swapped it first, theirs stands and this upload is removed; where the store cannot put
//!    conditionally (the local file system) a plain put replaces it (atomic on every store: a
//!    temp file renamed over on local disks) — two writers repairing at once then leave the last
//!    manifest, both uploads complete, the other's unreferenced;
//! 3. the damaged upload's remaining objects are removed.
//!
//! [`ObjectRemote::verify`] (`sspa-pipe cache verify`) downloads and hashes every file of an entry;
//! [`ObjectRemote::remove`] takes a damaged entry off the remote (its manifest first).

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion, WriteMultipart};
use serde::{Deserialize, Serialize};
use sspa_dag::Progress;
use sspa_dag::remote::{BoxFuture, Existing, RemoteCache, Transfer, TransferError};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Files at least this large are uploaded in parts of this size (bounded memory).
const PART: usize = 16 << 20;
/// `manifest.json` format.
const FORMAT: u32 = 1;
const MANIFEST: &str = "manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("cache.remote = `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("cache.remote = `{url}` needs credentials in the environment: set {}", .variables.join(" and "))]
    Credentials { url: String, variables: Vec<&'static str> },
    #[error("cache.remote = `{url}`: {source}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
}

/// Which stages push after computing (`[cache] push`, `[cache.stages.<name>] push`).
#[derive(Debug, Clone, Default)]
pub struct PushPolicy {
    pub default: bool,
    pub stages: BTreeMap<String, bool>,
}

/// One file of a pushed result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub size: u64,
    pub blake3: String,
}

/// `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub stage: String,
    pub key: String,
    /// The directory (under `<stage>/<key>/`) holding this push's files.
    pub upload: String,
    pub files: BTreeMap<String, FileEntry>,
}

impl Manifest {
    pub fn bytes(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }
}

/// A remote cache on an object store.
#[derive(Debug, Clone)]
pub struct ObjectRemote {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    url: String,
    policy: PushPolicy,
}

/// Variables S3 needs when no other credential source is configured.
const S3_KEYS: [&str; 2] = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];

impl ObjectRemote {
    /// Opens `url` (`s3://bucket/prefix`, `gs://…`, `az://…`, `file:///dir`), with credentials and
    /// endpoint settings from the environment (`AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, `AWS_REGION`
    /// for S3-compatible servers).
    ///
    /// # Errors
    /// [`RemoteError::Credentials`] naming the missing variables, a bad URL, or the store's
    /// configuration error.
    pub fn open(url: &str, policy: PushPolicy) -> Result<Self, RemoteError> {
        let parsed = url::Url::parse(url).map_err(|e| RemoteError::Url { url: url.into(), reason: e.to_string() })?;
        // The cloud stores' HTTP clients use rustls with `ring` (the build leaves out aws-lc-rs):
        // it must be the process's provider before one is made; one installed earlier stays.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let store_error = |source| RemoteError::Store { url: url.into(), source };
        let (store, prefix): (Arc<dyn ObjectStore>, ObjectPath) = match parsed.scheme() {
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|()| RemoteError::Url { url: url.into(), reason: "not a local path".into() })?;
                std::fs::create_dir_all(&dir)
                    .map_err(|e| RemoteError::Url { url: url.into(), reason: format!("{}: {e}", dir.display()) })?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(&dir).map_err(store_error)?;
                (Arc::new(store), ObjectPath::default())
            }
            "s3" => {
                let missing: Vec<&'static str> = S3_KEYS
                    .into_iter()
                    .filter(|name| std::env::var(name).map_or(true, |value| value.is_empty()))
                    .collect();
                if !missing.is_empty() {
                    return Err(RemoteError::Credentials { url: url.into(), variables: missing });
                }
                let store =
                    object_store::aws::AmazonS3Builder::from_env().with_url(url).build().map_err(store_error)?;
                (Arc::new(store), object_prefix(&parsed))
            }
            "gs" => {
                let store = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(store_error)?;
                (Arc::new(store), object_prefix(&parsed))
            }
            "az" | "abfs" => {
                let store = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(store_error)?;
                (Arc::new(store), object_prefix(&parsed))
            }
            other => {
                return Err(RemoteError::Url { url: url.into(), reason: format!("unsupported scheme `{other}`") });
            }
        };
        Ok(Self { store, prefix, url: url.trim_end_matches('/').to_owned(), policy })
    }

    fn path(&self, parts: &[&str]) -> ObjectPath {
        let mut path = self.prefix.clone();
        for part in parts {
            for segment in part.split('/').filter(|s| !s.is_empty()) {
                path = path.join(segment);
            }
        }
        path
    }

    /// The manifest of `(stage, key)`, if published.
    ///
    /// # Errors
    /// [`TransferError::Store`] when the store does not answer, [`TransferError::Manifest`] when
    /// what is stored is not a manifest of this key.
    pub async fn manifest(&self, stage: &str, key: &str) -> Result<Option<Manifest>, TransferError> {
        match self.published(stage, key).await? {
            Some(found) => found.manifest.map(Some),
            None => Ok(None),
        }
    }

    /// The manifest of `(stage, key)`; [`TransferError::NotFound`] when none is published.
    async fn required_manifest(&self, stage: &str, key: &str) -> Result<Manifest, TransferError> {
        self.manifest(stage, key).await?.ok_or_else(|| TransferError::NotFound {
            stage: stage.into(),
            key: key.into(),
            remote: self.url.clone(),
        })
    }

    /// The stored manifest object of `(stage, key)` and its version, parsed or not.
    async fn published(&self, stage: &str, key: &str) -> Result<Option<Published>, TransferError> {
        let location = self.path(&[stage, key, MANIFEST]);
        let got = match self.store.get(&location).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.store_error(&location, e)),
        };
        let version = UpdateVersion { e_tag: got.meta.e_tag.clone(), version: got.meta.version.clone() };
        let bytes = got.bytes().await.map_err(|e| self.store_error(&location, e))?;
        let problem = |problem: String| TransferError::Manifest { location: self.shown(&location), problem };
        let manifest = serde_json::from_slice::<Manifest>(&bytes)
            .map_err(|e| problem(format!("not a result manifest: {e}")))
            .and_then(|manifest| {
                if manifest.format != FORMAT || manifest.key != key {
                    Err(problem(format!("manifest of format {} for key {}", manifest.format, manifest.key)))
                } else {
                    Ok(manifest)
                }
            });
        Ok(Some(Published { manifest, version }))
    }

    fn shown(&self, location: &ObjectPath) -> String {
        let relative = location.as_ref().strip_prefix(self.prefix.as_ref()).unwrap_or(location.as_ref());
        format!("{}/{}", self.url, relative.trim_start_matches('/'))
    }

    /// The store's error on `location`; a missing object is [`TransferError::Missing`].
    fn store_error(&self, location: &ObjectPath, error: object_store::Error) -> TransferError {
        match error {
            object_store::Error::NotFound { .. } => TransferError::Missing { location: self.shown(location) },
            source => TransferError::Store { location: self.shown(location), source: Box::new(source) },
        }
    }

    async fn pull_into(
        &self,
        stage: &str,
        key: &str,
        into: &Path,
        progress: &Progress,
    ) -> Result<Transfer, TransferError> {
        let manifest = self.required_manifest(stage, key).await?;
        progress.set_length(manifest.bytes());
        progress.set_message(format!("pulling {} from {}", sspa_dag::remote::human_bytes(manifest.bytes()), self.url));
        for (name, expected) in &manifest.files {
            let target = safe_join(into, name).ok_or_else(|| TransferError::Manifest {
                location: self.shown(&self.path(&[stage, key, MANIFEST])),
                problem: format!("manifest names a path outside the result: `{name}`"),
            })?;
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(TransferError::local(parent))?;
            }
            let location = self.path(&[stage, key, &manifest.upload, name]);
            let mut file = std::fs::File::create(&target).map_err(TransferError::local(&target))?;
            self.stream_checked(&location, expected, progress, |chunk| {
                file.write_all(chunk).map_err(TransferError::local(&target))
            })
            .await?;
            file.sync_all().map_err(TransferError::local(&target))?;
        }
        Ok(Transfer { files: manifest.files.len(), bytes: manifest.bytes(), ..Transfer::default() })
    }

    /// Streams one object through `sink`, hashing it, and checks it against its manifest entry.
    async fn stream_checked(
        &self,
        location: &ObjectPath,
        expected: &FileEntry,
        progress: &Progress,
        mut sink: impl FnMut(&[u8]) -> Result<(), TransferError>,
    ) -> Result<(), TransferError> {
        let got = self.store.get(location).await.map_err(|e| self.store_error(location, e))?;
        let mut stream = got.into_stream();
        let (mut hasher, mut size) = (blake3::Hasher::new(), 0u64);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.store_error(location, e))?;
            hasher.update(&chunk);
            size += chunk.len() as u64;
            sink(&chunk)?;
            progress.inc(chunk.len() as u64);
        }
        let found = hasher.finalize().to_hex().to_string();
        if size != expected.size || found != expected.blake3 {
            return Err(TransferError::Mismatch {
                location: self.shown(location),
                size,
                found,
                expected_size: expected.size,
                expected: expected.blake3.clone(),
            });
        }
        Ok(())
    }

    /// Checks that every file `manifest` lists is stored with its size (one HEAD each).
    async fn check_sizes(&self, stage: &str, key: &str, manifest: &Manifest) -> Result<(), TransferError> {
        for (name, expected) in &manifest.files {
            let location = self.path(&[stage, key, &manifest.upload, name]);
            let meta = self.store.head(&location).await.map_err(|e| self.store_error(&location, e))?;
            if meta.size != expected.size {
                return Err(TransferError::WrongSize {
                    location: self.shown(&location),
                    size: meta.size,
                    expected_size: expected.size,
                });
            }
        }
        Ok(())
    }

    /// Downloads and hashes every file of the published entry of `(stage, key)` (nothing is
    /// written locally).
    ///
    /// # Errors
    /// [`TransferError::NotFound`] when nothing is published; the first damage found
    /// ([`TransferError::is_damage`]); the store's error.
    pub async fn verify(&self, stage: &str, key: &str, progress: &Progress) -> Result<Transfer, TransferError> {
        let manifest = self.required_manifest(stage, key).await?;
        progress.set_length(manifest.bytes());
        for (name, expected) in &manifest.files {
            let location = self.path(&[stage, key, &manifest.upload, name]);
            self.stream_checked(&location, expected, progress, |_| Ok(())).await?;
        }
        Ok(Transfer { files: manifest.files.len(), bytes: manifest.bytes(), ..Transfer::default() })
    }

    /// Takes the entry of `(stage, key)` off the remote: its manifest first (the key is then
    /// unpublished), then the objects of the upload it names.
    pub async fn remove(&self, stage: &str, key: &str) -> Result<(), TransferError> {
        let Some(found) = self.published(stage, key).await? else { return Ok(()) };
        let location = self.path(&[stage, key, MANIFEST]);
        match self.store.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.store_error(&location, e)),
        }
        if let Ok(manifest) = found.manifest {
            self.delete_upload(stage, key, &manifest.upload, manifest.files.keys()).await;
        }
        Ok(())
    }

    /// The keys of `stage` that have a manifest on the remote, sorted.
    pub async fn keys(&self, stage: &str) -> Result<Vec<String>, TransferError> {
        let prefix = self.path(&[stage]);
        let listed = self.store.list_with_delimiter(Some(&prefix)).await.map_err(|e| self.store_error(&prefix, e))?;
        let mut keys = Vec::new();
        for key in listed.common_prefixes.iter().filter_map(|p| p.filename()) {
            let location = self.path(&[stage, key, MANIFEST]);
            match self.store.head(&location).await {
                Ok(_) => keys.push(key.to_owned()),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.store_error(&location, e)),
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Removes the objects of one upload (best effort: what stays is unreferenced).
    async fn delete_upload(&self, stage: &str, key: &str, upload: &str, names: impl Iterator<Item = &String>) {
        for name in names {
            let _ = self.store.delete(&self.path(&[stage, key, upload, name])).await;
        }
    }

    async fn push_from(
        &self,
        stage: &str,
        key: &str,
        dir: &Path,
        existing: Existing,
        progress: &Progress,
    ) -> Result<Transfer, TransferError> {
        let published = self.published(stage, key).await?;
        if let Some(found) = &published {
            let damage = match (&found.manifest, existing) {
                (Err(damage), _) => Some(damage.to_string()),
                (Ok(_), Existing::Replace) => Some("a pull found it damaged".to_owned()),
                (Ok(manifest), Existing::KeepIfIntact) => match self.check_sizes(stage, key, manifest).await {
                    Ok(()) => return Ok(Transfer { already_there: true, ..Transfer::default() }),
                    Err(damage) if damage.is_damage() => Some(damage.to_string()),
                    Err(unreachable) => return Err(unreachable),
                },
            };
            tracing::warn!(
                "{}: the published entry of `{stage}` {key} is damaged ({}); replacing it",
                self.url,
                damage.unwrap_or_default()
            );
        }
        let files = walk(dir).map_err(TransferError::local(dir))?;
        let total: u64 = files.iter().map(|(_, size)| size).sum();
        progress.set_length(total);
        progress.set_message(format!("pushing {} to {}", sspa_dag::remote::human_bytes(total), self.url));
        let upload = upload_id();
        let mut entries = BTreeMap::new();
        for (name, _) in &files {
            let location = self.path(&[stage, key, &upload, name]);
            let entry = self.put_file(&dir.join(name), &location, progress).await?;
            entries.insert(name.clone(), entry);
        }
        let manifest =
            Manifest { format: FORMAT, stage: stage.into(), key: key.into(), upload: upload.clone(), files: entries };
        let pushed = Transfer { files: files.len(), bytes: total, ..Transfer::default() };
        let names = || files.iter().map(|(name, _)| name);
        let swapped = match published {
            None => self.put_manifest(stage, key, &manifest, PutMode::Create).await?,
            Some(damaged) => {
                let swapped = self.swap_manifest(stage, key, &manifest, damaged.version).await?;
                if swapped && let Ok(old) = &damaged.manifest {
                    self.delete_upload(stage, key, &old.upload, old.files.keys()).await;
                }
                if swapped {
                    return Ok(Transfer { replaced: true, ..pushed });
                }
                false
            }
        };
        if swapped {
            Ok(pushed)
        } else {
            // Another writer published (or repaired) this key first: its result stands, this
            // upload goes.
            self.delete_upload(stage, key, &upload, names()).await;
            Ok(Transfer { already_there: true, ..Transfer::default() })
        }
    }

    /// Puts the manifest with `mode`; `false` when another writer's manifest is there first.
    async fn put_manifest(
        &self,
        stage: &str,
        key: &str,
        manifest: &Manifest,
        mode: PutMode,
    ) -> Result<bool, TransferError> {
        let location = self.path(&[stage, key, MANIFEST]);
        let body = serde_json::to_vec_pretty(manifest)
            .map_err(|e| TransferError::Manifest { location: self.shown(&location), problem: e.to_string() })?;
        let options = PutOptions { mode, ..PutOptions::default() };
        match self.store.put_opts(&location, PutPayload::from(body), options).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(TransferError::Store { location: self.shown(&location), source: Box::new(e) }),
        }
    }

    /// Replaces a damaged manifest (see the crate docs): conditionally on its version where the
    /// store can, else outright. `false` when another writer replaced it first.
    async fn swap_manifest(
        &self,
        stage: &str,
        key: &str,
        manifest: &Manifest,
        damaged: UpdateVersion,
    ) -> Result<bool, TransferError> {
        let conditional = damaged.e_tag.is_some() || damaged.version.is_some();
        if conditional {
            match self.put_manifest(stage, key, manifest, PutMode::Update(damaged)).await {
                Err(TransferError::Store { source, .. })
                    if matches!(
                        source.downcast_ref::<object_store::Error>(),
                        Some(object_store::Error::NotImplemented { .. })
                    ) => {}
                answered => return answered,
            }
        }
        self.put_manifest(stage, key, manifest, PutMode::Overwrite).await
    }

    /// Uploads one file (in parts when large), hashing it on the way.
    async fn put_file(
        &self,
        path: &Path,
        location: &ObjectPath,
        progress: &Progress,
    ) -> Result<FileEntry, TransferError> {
        let mut file = std::fs::File::open(path).map_err(TransferError::local(path))?;
        let size = file.metadata().map_err(TransferError::local(path))?.len();
        let mut hasher = blake3::Hasher::new();
        let store_error = |e| TransferError::Store { location: self.shown(location), source: Box::new(e) };
        if size < PART as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes).map_err(TransferError::local(path))?;
            hasher.update(&bytes);
            let length = bytes.len() as u64;
            self.store.put(location, PutPayload::from(bytes)).await.map_err(store_error)?;
            progress.inc(length);
            return Ok(FileEntry { size: length, blake3: hasher.finalize().to_hex().to_string() });
        }
        let upload = self.store.put_multipart(location).await.map_err(store_error)?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut buffer = vec![0u8; PART];
        let mut written = 0u64;
        loop {
            let n = file.read(&mut buffer).map_err(TransferError::local(path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            writer.wait_for_capacity(4).await.map_err(store_error)?;
            writer.write(&buffer[..n]);
            written += n as u64;
            progress.inc(n as u64);
        }
        writer.finish().await.map_err(store_error)?;
        Ok(FileEntry { size: written, blake3: hasher.finalize().to_hex().to_string() })
    }
}

/// A manifest object as stored: parsed (or why not) and the version a conditional put replaces.
struct Published {
    manifest: Result<Manifest, TransferError>,
    version: UpdateVersion,
}

impl RemoteCache for ObjectRemote {
    fn location(&self) -> String {
        self.url.clone()
    }

    fn pushes(&self, stage: &str) -> bool {
        self.policy.stages.get(stage).copied().unwrap_or(self.policy.default)
    }

    fn contains<'a>(&'a self, stage: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool, TransferError>> {
        Box::pin(async move {
            let location = self.path(&[stage, key, MANIFEST]);
            match self.store.head(&location).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(self.store_error(&location, e)),
            }
        })
    }

    fn pull<'a>(
        &'a self,
        stage: &'a str,
        key: &'a str,
        into: &'a Path,
        progress: Progress,
    ) -> BoxFuture<'a, Result<Transfer, TransferError>> {
        Box::pin(async move { self.pull_into(stage, key, into, &progress).await })
    }

    fn push<'a>(
        &'a self,
        stage: &'a str,
        key: &'a str,
        dir: &'a Path,
        existing: Existing,
        progress: Progress,
    ) -> BoxFuture<'a, Result<Transfer, TransferError>> {
        Box::pin(async move { self.push_from(stage, key, dir, existing, &progress).await })
    }

    fn verify<'a>(
        &'a self,
        stage: &'a str,
        key: &'a str,
        progress: Progress,
    ) -> BoxFuture<'a, Result<Transfer, TransferError>> {
        Box::pin(async move { ObjectRemote::verify(self, stage, key, &progress).await })
    }

    fn remove<'a>(&'a self, stage: &'a str, key: &'a str) -> BoxFuture<'a, Result<(), TransferError>> {
        Box::pin(async move { ObjectRemote::remove(self, stage, key).await })
    }

    fn keys<'a>(&'a self, stage: &'a str) -> BoxFuture<'a, Result<Vec<String>, TransferError>> {
        Box::pin(async move { ObjectRemote::keys(self, stage).await })
    }
}

/// The key prefix of a bucket URL (`s3://bucket/a/b` → `a/b`).
fn object_prefix(url: &url::Url) -> ObjectPath {
    ObjectPath::from(url.path().trim_matches('/'))
}

/// Every file under `dir` as (relative path with `/`, size), sorted.
fn walk(dir: &Path) -> std::io::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        for entry in std::fs::read_dir(dir.join(&relative))? {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() {
                let name = path.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
                out.push((name, entry.metadata()?.len()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `dir/name` when `name` is a plain relative path (no `..`, not absolute).
fn safe_join(dir: &Path, name: &str) -> Option<PathBuf> {
    let relative = Path::new(name);
    relative.components().all(|c| matches!(c, std::path::Component::Normal(_))).then(|| dir.join(relative))
}

/// Unique per push: process, time and a counter.
fn upload_id() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let count = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("up-{nanos:x}-{:x}-{count}", std::process::id())
}

#[cfg(test)]
mod tests;
