//! Numbered versions: registering a trained model (copy, hash, one rename) and reading one back
//! with every file checked.

use crate::Registry;
use crate::error::RegistryError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `version.json`.
const INFO_FILE: &str = "version.json";

/// A registered file's size and BLAKE3.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub size: u64,
    pub blake3: String,
}

/// Where a promoted model came from and what it measured (given by the caller of
/// [`Registry::register`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    /// The run that trained (or reused) the model.
    pub run_id: String,
    /// The train stage's cache key (equal keys: the same computation).
    pub train_key: String,
    /// The weights the gate compared and `predict --model` serves: `ema` or `raw`.
    pub weights: String,
    /// Label names in class order.
    pub labels: Vec<String>,
    /// The evaluate stage's `{"raw": report, "ema": report}` for the run that promoted it.
    pub metrics: Value,
    /// Config hash, manifest and annotation hashes, description-cache hash, weights hash, git
    /// commit: what the report's lineage shows, plus the stage keys of the run.
    pub lineage: Value,
}

/// What `version.json` records about one promoted model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionInfo {
    pub version: u32,
    pub created_at: String,
    #[serde(flatten)]
    pub origin: Origin,
    /// Every file of the version but `version.json`, by name.
    pub files: BTreeMap<String, FileEntry>,
}

/// A checked version: its directory holds exactly what `version.json` says.
#[derive(Debug, Clone)]
pub struct Version {
    pub dir: PathBuf,
    pub info: VersionInfo,
}

impl Version {
    /// The served weights file (`model_ema.safetensors` or `model.safetensors`).
    pub fn weights_file(&self) -> PathBuf {
        self.dir.join(if self.info.origin.weights == "raw" { "model.safetensors" } else { "model_ema.safetensors" })
    }
}

/// What [`Registry::register`] copies in: a trained model's directory and its origin.
pub struct NewVersion<'a> {
    pub source: &'a Path,
    /// Files of `source` to copy (all must exist).
    pub files: &'a [&'a str],
    pub origin: Origin,
}

pub(crate) fn hash_file(path: &Path) -> Result<FileEntry, RegistryError> {
    let digest = sspa_fsio::blake3_file(path).map_err(RegistryError::io(path))?;
    Ok(FileEntry { size: digest.size, blake3: digest.blake3 })
}

impl Registry {
    fn version_dir(&self, version: u32) -> PathBuf {
        self.dir.join(format!("v{version}"))
    }

    /// Numbers of the version directories present, ascending (damaged ones included).
    pub fn version_numbers(&self) -> Result<Vec<u32>, RegistryError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RegistryError::io(&self.dir)(e)),
        };
        let mut numbers: Vec<u32> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| crate::Reference::version_number(&e.file_name().to_string_lossy()))
            .collect();
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// `version.json` of `version`, without checking its files.
    pub fn info(&self, version: u32) -> Result<VersionInfo, RegistryError> {
        let dir = self.version_dir(version);
        if !dir.is_dir() {
            return Err(RegistryError::NoVersion {
                dir: self.dir.clone(),
                version,
                known: self.version_numbers().unwrap_or_default(),
            });
        }
        let path = dir.join(INFO_FILE);
        let bytes = std::fs::read(&path).map_err(|_| RegistryError::Corrupt {
            version,
            path: path.clone(),
            reason: "is missing".into(),
        })?;
        serde_json::from_slice(&bytes).map_err(RegistryError::json(&path))
    }

    /// Version `version` with every file's size and BLAKE3 checked against `version.json`.
    ///
    /// # Errors
    /// [`RegistryError::NoVersion`], or [`RegistryError::Corrupt`] naming the first bad file.
    pub fn version(&self, version: u32) -> Result<Version, RegistryError> {
        let info = self.info(version)?;
        let dir = self.version_dir(version);
        for (name, expected) in &info.files {
            let path = dir.join(name);
            let corrupt = |reason: String| RegistryError::Corrupt { version, path: path.clone(), reason };
            let size = match std::fs::metadata(&path) {
                Ok(meta) => meta.len(),
                Err(_) => return Err(corrupt("is missing".into())),
            };
            if size != expected.size {
                return Err(corrupt(format!(
                    "has {size} bytes, {} were registered (truncated or replaced)",
                    expected.size
                )));
            }
            let found = hash_file(&path)?;
            if found.blake3 != expected.blake3 {
                return Err(corrupt(format!(
                    "has BLAKE3 {}, {} was registered (altered)",
                    &found.blake3[..16],
                    &expected.blake3[..16]
                )));
            }
        }
        Ok(Version { dir, info })
    }

    /// Copies a trained model in as the next version: files into `.tmp-v<N>-<pid>`, each synced
    /// and hashed, `version.json` last, then one rename to `v<N>`. Leftovers of promotions that
    /// died half-way are removed first.
    ///
    /// # Errors
    /// A missing source file, or I/O.
    pub fn register(&self, new: NewVersion<'_>) -> Result<Version, RegistryError> {
        std::fs::create_dir_all(&self.dir).map_err(RegistryError::io(&self.dir))?;
        self.sweep()?;
        for name in new.files {
            if !new.source.join(name).is_file() {
                return Err(RegistryError::MissingSource { path: new.source.to_owned(), file: (*name).to_owned() });
            }
        }
        let version = self.version_numbers()?.last().copied().unwrap_or(0) + 1;
        let temp = self.dir.join(format!(".tmp-v{version}-{}", std::process::id()));
        std::fs::create_dir_all(&temp).map_err(RegistryError::io(&temp))?;
        let mut files = BTreeMap::new();
        for name in new.files {
            let (from, to) = (new.source.join(name), temp.join(name));
            std::fs::copy(&from, &to).map_err(RegistryError::io(&from))?;
            std::fs::File::open(&to).and_then(|f| f.sync_all()).map_err(RegistryError::io(&to))?;
            files.insert((*name).to_owned(), hash_file(&to)?);
        }
        let info = VersionInfo { version, created_at: sspa_fsio::timestamp(), origin: new.origin, files };
        let info_path = temp.join(INFO_FILE);
        let json = serde_json::to_vec_pretty(&info).map_err(RegistryError::json(&info_path))?;
        sspa_fsio::write_atomic(&info_path, &json).map_err(RegistryError::io(&info_path))?;
        let dir = self.version_dir(version);
        std::fs::rename(&temp, &dir).map_err(RegistryError::io(&dir))?;
        if let Ok(parent) = std::fs::File::open(&self.dir) {
            let _ = parent.sync_all();
        }
        Ok(Version { dir, info })
    }

    /// Removes `.tmp-*` directories of promotions that did not finish; returns how many.
    pub fn sweep(&self) -> Result<usize, RegistryError> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Ok(0) };
        let mut removed = 0;
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let path = entry.path();
                std::fs::remove_dir_all(&path).map_err(RegistryError::io(&path))?;
                tracing::warn!("registry: removed `{}`, left by a promotion that did not finish", path.display());
                removed += 1;
            }
        }
        Ok(removed)
    }
}
