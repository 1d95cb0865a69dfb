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

use futures::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use serde::{Deserialize, Serialize};
use sspa_dag::Progress;
use sspa_dag::remote::{BoxFuture, RemoteCache, Transfer};
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
    pub async fn manifest(&self, stage: &str, key: &str) -> Result<Option<Manifest>, String> {
        let location = self.path(&[stage, key, MANIFEST]);
        match self.store.get(&location).await {
            Ok(got) => {
                let bytes = got.bytes().await.map_err(|e| self.describe(&location, e))?;
                let manifest: Manifest = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("`{}`: not a result manifest: {e}", self.shown(&location)))?;
                if manifest.format != FORMAT || manifest.key != key {
                    return Err(format!(
                        "`{}`: manifest of format {} for key {}",
                        self.shown(&location),
                        manifest.format,
                        manifest.key
                    ));
                }
                Ok(Some(manifest))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.describe(&location, e)),
        }
    }

    fn shown(&self, location: &ObjectPath) -> String {
        let relative = location.as_ref().strip_prefix(self.prefix.as_ref()).unwrap_or(location.as_ref());
        format!("{}/{}", self.url, relative.trim_start_matches('/'))
    }

    fn describe(&self, location: &ObjectPath, error: object_store::Error) -> String {
        format!("`{}`: {error}", self.shown(location))
    }

    async fn pull_into(&self, stage: &str, key: &str, into: &Path, progress: &Progress) -> Result<Transfer, String> {
        let manifest =
            self.manifest(stage, key).await?.ok_or_else(|| format!("no result of `{stage}` {key} on {}", self.url))?;
        progress.set_length(manifest.bytes());
        progress.set_message(format!("pulling {} from {}", sspa_dag::remote::human_bytes(manifest.bytes()), self.url));
        for (name, expected) in &manifest.files {
            let target =
                safe_join(into, name).ok_or_else(|| format!("manifest names a path outside the result: `{name}`"))?;
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(|e| format!("`{}`: {e}", parent.display()))?;
            }
            let location = self.path(&[stage, key, &manifest.upload, name]);
            let got = self.store.get(&location).await.map_err(|e| self.describe(&location, e))?;
            let mut stream = got.into_stream();
            let mut file = std::fs::File::create(&target).map_err(|e| format!("`{}`: {e}", target.display()))?;
            let (mut hasher, mut size) = (blake3::Hasher::new(), 0u64);
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.describe(&location, e))?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).map_err(|e| format!("`{}`: {e}", target.display()))?;
                progress.inc(chunk.len() as u64);
            }
            file.sync_all().map_err(|e| format!("`{}`: {e}", target.display()))?;
            let found = hasher.finalize().to_hex().to_string();
            if size != expected.size || found != expected.blake3 {
                return Err(format!(
                    "`{}` does not match its manifest: {size} bytes, BLAKE3 {}…, expected {} bytes, {}… (altered on the remote)",
                    self.shown(&location),
                    &found[..12],
                    expected.size,
                    &expected.blake3[..12.min(expected.blake3.len())]
                ));
            }
        }
        Ok(Transfer { files: manifest.files.len(), bytes: manifest.bytes(), already_there: false })
    }

    async fn push_from(&self, stage: &str, key: &str, dir: &Path, progress: &Progress) -> Result<Transfer, String> {
        if self.manifest(stage, key).await?.is_some() {
            return Ok(Transfer { already_there: true, ..Transfer::default() });
        }
        let files = walk(dir).map_err(|e| format!("`{}`: {e}", dir.display()))?;
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
        let location = self.path(&[stage, key, MANIFEST]);
        let body = serde_json::to_vec_pretty(&manifest).map_err(|e| e.to_string())?;
        let create = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self.store.put_opts(&location, PutPayload::from(body), create).await {
            Ok(_) => Ok(Transfer { files: files.len(), bytes: total, already_there: false }),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
                // Another writer published this key first: its result stands, this upload goes.
                for (name, _) in &files {
                    let _ = self.store.delete(&self.path(&[stage, key, &upload, name])).await;
                }
                Ok(Transfer { already_there: true, ..Transfer::default() })
            }
            Err(e) => Err(self.describe(&location, e)),
        }
    }

    /// Uploads one file (in parts when large), hashing it on the way.
    async fn put_file(&self, path: &Path, location: &ObjectPath, progress: &Progress) -> Result<FileEntry, String> {
        let mut file = std::fs::File::open(path).map_err(|e| format!("`{}`: {e}", path.display()))?;
        let size = file.metadata().map_err(|e| format!("`{}`: {e}", path.display()))?.len();
        let mut hasher = blake3::Hasher::new();
        if size < PART as u64 {
            let mut bytes = Vec::with_capacity(size as usize);
            file.read_to_end(&mut bytes).map_err(|e| format!("`{}`: {e}", path.display()))?;
            hasher.update(&bytes);
            let length = bytes.len() as u64;
            self.store.put(location, PutPayload::from(bytes)).await.map_err(|e| self.describe(location, e))?;
            progress.inc(length);
            return Ok(FileEntry { size: length, blake3: hasher.finalize().to_hex().to_string() });
        }
        let upload = self.store.put_multipart(location).await.map_err(|e| self.describe(location, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART);
        let mut buffer = vec![0u8; PART];
        let mut written = 0u64;
        loop {
            let n = file.read(&mut buffer).map_err(|e| format!("`{}`: {e}", path.display()))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            writer.wait_for_capacity(4).await.map_err(|e| self.describe(location, e))?;
            writer.write(&buffer[..n]);
            written += n as u64;
            progress.inc(n as u64);
        }
        writer.finish().await.map_err(|e| self.describe(location, e))?;
        Ok(FileEntry { size: written, blake3: hasher.finalize().to_hex().to_string() })
    }
}

impl RemoteCache for ObjectRemote {
    fn location(&self) -> String {
        self.url.clone()
    }

    fn pushes(&self, stage: &str) -> bool {
        self.policy.stages.get(stage).copied().unwrap_or(self.policy.default)
    }

    fn contains<'a>(&'a self, stage: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            let location = self.path(&[stage, key, MANIFEST]);
            match self.store.head(&location).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(e) => Err(self.describe(&location, e)),
            }
        })
    }

    fn pull<'a>(
        &'a self,
        stage: &'a str,
        key: &'a str,
        into: &'a Path,
        progress: Progress,
    ) -> BoxFuture<'a, Result<Transfer, String>> {
        Box::pin(async move { self.pull_into(stage, key, into, &progress).await })
    }

    fn push<'a>(
        &'a self,
        stage: &'a str,
        key: &'a str,
        dir: &'a Path,
        progress: Progress,
    ) -> BoxFuture<'a, Result<Transfer, String>> {
        Box::pin(async move { self.push_from(stage, key, dir, &progress).await })
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
