//! The `[checksums]` table of a manifest: checking every pinned file against it and pinning the
//! annotation files present (`sspa-pipe manifest check` / `manifest pin`).
//!
//! Pinnable files are the ones the importers verify: the label file (`labels.file`) and every
//! split's annotation file. Keys are paths relative to the data root, `/`-separated. Pinning
//! edits the TOML in place with `toml_edit`, so comments, order and layout stay as they were; the
//! file is replaced atomically.

use crate::error::{DataError, position_of};
use crate::manifest::{Manifest, hash_file};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The `[checksums]` key of `file` (a path under `data_root`).
pub fn checksum_key(data_root: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(data_root).unwrap_or(file);
    relative.to_string_lossy().replace('\\', "/")
}

/// What [`check`] found for one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ChecksumStatus {
    /// The file's BLAKE3 is the pinned one.
    Ok,
    Mismatch {
        expected: String,
        actual: String,
    },
    /// Pinned, but the file is not there.
    Missing,
    /// An annotation file with no `[checksums]` entry (not an error).
    Unpinned,
}

/// One file of a manifest's checksum check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChecksumReport {
    /// The `[checksums]` key (relative to the data root).
    pub file: String,
    pub path: PathBuf,
    /// Line of the entry in the manifest (1-based), when it has one.
    pub line: Option<usize>,
    #[serde(flatten)]
    pub status: ChecksumStatus,
}

impl ChecksumReport {
    /// Whether this file fails the check (a mismatch or a missing pinned file).
    pub fn is_failure(&self) -> bool {
        matches!(self.status, ChecksumStatus::Mismatch { .. } | ChecksumStatus::Missing)
    }
}

/// The files [`pin`] hashes: the label file and every split's annotation file, in manifest order.
pub fn pinnable_files(manifest: &Manifest, data_root: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = manifest.labels.file.iter().map(|file| data_root.join(file)).collect();
    for split in manifest.splits.values() {
        let path = data_root.join(&split.annotations);
        if !files.contains(&path) {
            files.push(path);
        }
    }
    files
}

/// Checks every `[checksums]` entry of the manifest at `path`, and lists the pinnable files that
/// have none as [`ChecksumStatus::Unpinned`].
pub fn check(path: &Path, data_root: &Path) -> Result<Vec<ChecksumReport>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::read(path, e))?;
    let manifest = Manifest::parse(&text, path)?;
    let lines = entry_lines(&text, path)?;
    let mut reports = Vec::new();
    for (file, expected) in &manifest.checksums {
        let full = data_root.join(file);
        let line = lines.iter().find(|(key, _)| key == file).map(|(_, line)| *line);
        let status = if !full.is_file() {
            ChecksumStatus::Missing
        } else {
            let actual = hash_file(&full)?;
            if actual.eq_ignore_ascii_case(expected) {
                ChecksumStatus::Ok
            } else {
                ChecksumStatus::Mismatch { expected: expected.clone(), actual }
            }
        };
        reports.push(ChecksumReport { file: file.clone(), path: full, line, status });
    }
    for full in pinnable_files(&manifest, data_root) {
        let file = checksum_key(data_root, &full);
        if !manifest.checksums.contains_key(&file) {
            reports.push(ChecksumReport { file, path: full, line: None, status: ChecksumStatus::Unpinned });
        }
    }
    Ok(reports)
}

/// The line of each `[checksums]` entry's key.
fn entry_lines(text: &str, path: &Path) -> Result<Vec<(String, usize)>, DataError> {
    let document = toml_edit::Document::parse(text)
        .map_err(|e| DataError::ManifestToml { path: path.to_path_buf(), message: e.message().to_string() })?;
    let Some(table) = document.get("checksums").and_then(toml_edit::Item::as_table_like) else {
        return Ok(Vec::new());
    };
    Ok(table
        .iter()
        .filter_map(|(key, _)| {
            let (key, _) = table.get_key_value(key)?;
            let span = key.span()?;
            Some((key.get().to_string(), position_of(text, span.start).line))
        })
        .collect())
}

/// What [`pin`] did with one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PinStatus {
    /// Newly pinned.
    Added { blake3: String },
    /// The entry held another hash; replaced.
    Changed { previous: String, blake3: String },
    /// Already pinned to this hash.
    Unchanged { blake3: String },
    /// The file is not under the data root: nothing pinned.
    Missing,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PinReport {
    pub file: String,
    pub path: PathBuf,
    #[serde(flatten)]
    pub status: PinStatus,
}

/// Computes the BLAKE3 of every pinnable file present and writes them into the manifest's
/// `[checksums]` table (created at the end when absent), keeping the rest of the file as it is.
/// The file is rewritten (atomically) only when an entry changes.
pub fn pin(path: &Path, data_root: &Path) -> Result<Vec<PinReport>, DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::read(path, e))?;
    let manifest = Manifest::parse(&text, path)?;
    let mut document: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| DataError::ManifestToml { path: path.into(), message: e.to_string() })?;
    let invalid = |message: &str| DataError::ManifestInvalid {
        path: path.to_path_buf(),
        key: "checksums".into(),
        message: message.into(),
    };
    let mut reports = Vec::new();
    let mut edited = false;
    for full in pinnable_files(&manifest, data_root) {
        let file = checksum_key(data_root, &full);
        if !full.is_file() {
            reports.push(PinReport { file, path: full, status: PinStatus::Missing });
            continue;
        }
        let blake3 = hash_file(&full)?;
        let status = match manifest.checksums.get(&file) {
            Some(previous) if previous.eq_ignore_ascii_case(&blake3) => PinStatus::Unchanged { blake3 },
            previous => {
                let table = document
                    .entry("checksums")
                    .or_insert_with(toml_edit::table)
                    .as_table_like_mut()
                    .ok_or_else(|| invalid("is not a table"))?;
                match table.get_mut(&file).and_then(toml_edit::Item::as_value_mut) {
                    // Keep the entry's spacing and trailing comment.
                    Some(value) => {
                        let decor = value.decor().clone();
                        *value = toml_edit::Value::from(blake3.as_str());
                        *value.decor_mut() = decor;
                    }
                    None => {
                        table.insert(&file, toml_edit::value(blake3.as_str()));
                    }
                }
                edited = true;
                match previous {
                    Some(previous) => PinStatus::Changed { previous: previous.clone(), blake3 },
                    None => PinStatus::Added { blake3 },
                }
            }
        };
        reports.push(PinReport { file, path: full, status });
    }
    if edited {
        let updated = document.to_string();
        // What is written must still be a valid manifest with these checksums.
        let check = Manifest::parse(&updated, path)?;
        for report in &reports {
            if let PinStatus::Added { blake3 } | PinStatus::Changed { blake3, .. } = &report.status
                && check.checksums.get(&report.file) != Some(blake3)
            {
                return Err(invalid(&format!("`{}` could not be written", report.file)));
            }
        }
        crate::shard::write_atomic(path, updated.as_bytes())?;
    }
    Ok(reports)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = r#"# A comment that must survive.
name = "toy"
domain = "test"

[labels]
file = "toy/labels.txt"  # one a line

[source]
format = "json_list"

[splits.train]
annotations = "toy/train.json"

[splits.test]
annotations = "toy/test.json"
"#;

    #[test]
    fn pin_keeps_the_text_and_check_names_the_line() {
        let dir = tempfile::tempdir().expect("dir");
        let root = dir.path().join("data");
        std::fs::create_dir_all(root.join("toy")).expect("mkdir");
        std::fs::write(root.join("toy/labels.txt"), "a\nb\n").expect("write");
        std::fs::write(root.join("toy/train.json"), "{}").expect("write");
        let manifest = dir.path().join("toy.toml");
        std::fs::write(&manifest, MANIFEST).expect("write");

        let reports = pin(&manifest, &root).expect("pin");
        let statuses: Vec<(&str, bool)> =
            reports.iter().map(|r| (r.file.as_str(), matches!(r.status, PinStatus::Added { .. }))).collect();
        assert_eq!(statuses, [("toy/labels.txt", true), ("toy/test.json", false), ("toy/train.json", true)]);
        assert_eq!(reports[1].status, PinStatus::Missing);
        let text = std::fs::read_to_string(&manifest).expect("read");
        assert!(text.starts_with(MANIFEST), "{text}");
        let train_hash = blake3::hash(b"{}").to_hex().to_string();
        assert!(text.contains(&format!("\"toy/train.json\" = \"{train_hash}\"")), "{text}");

        let reports = check(&manifest, &root).expect("check");
        assert!(reports.iter().all(|r| !r.is_failure()), "{reports:?}");
        std::fs::write(root.join("toy/train.json"), "{ }").expect("write");
        let reports = check(&manifest, &root).expect("check");
        let failed: Vec<&ChecksumReport> = reports.iter().filter(|r| r.is_failure()).collect();
        assert_eq!(failed.len(), 1, "{reports:?}");
        assert_eq!(failed[0].file, "toy/train.json");
        let line = text.lines().position(|l| l.starts_with("\"toy/train.json\"")).expect("entry") + 1;
        assert_eq!(failed[0].line, Some(line));

        // Re-pinning replaces the value in place.
        let reports = pin(&manifest, &root).expect("pin again");
        assert!(matches!(reports[2].status, PinStatus::Changed { .. }), "{reports:?}");
        assert!(matches!(reports[0].status, PinStatus::Unchanged { .. }), "{reports:?}");
        assert!(check(&manifest, &root).expect("check").iter().all(|r| !r.is_failure()));
    }
}
