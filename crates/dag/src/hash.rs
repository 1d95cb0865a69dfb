//! Content hashes of input files and directories, with a size + mtime + inode memo (as DVC keeps)
//! so that unchanged files are never read twice.

use crate::error::DagError;
use crate::fsutil::write_atomic;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What identifies an unchanged file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    inode: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            size: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            inode: meta.ino(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    stamp: Stamp,
    hash: String,
}

/// Memo of file hashes, saved in the workspace between runs.
#[derive(Debug, Default)]
pub struct HashState {
    path: PathBuf,
    entries: HashMap<PathBuf, Entry>,
    dirty: bool,
    /// Files actually read (hashed) since load; for tests and benchmarks.
    pub files_read: u64,
}

impl HashState {
    /// Loads the memo; a missing or unreadable memo starts empty (it is only a cache).
    pub fn load(path: &Path) -> Self {
        let entries = std::fs::read(path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<HashMap<PathBuf, Entry>>(&bytes).ok())
            .unwrap_or_default();
        Self { path: path.to_path_buf(), entries, dirty: false, files_read: 0 }
    }

    pub fn save(&mut self) -> Result<(), DagError> {
        if !self.dirty {
            return Ok(());
        }
        let bytes =
            serde_json::to_vec(&self.entries).map_err(|source| DagError::Json { what: "hash state".into(), source })?;
        write_atomic(&self.path, &bytes)?;
        self.dirty = false;
        Ok(())
    }

    /// BLAKE3 of a file, or of a directory tree (sorted relative paths and their file hashes).
    /// `None` when the path does not exist.
    pub fn hash_path(&mut self, path: &Path) -> Result<Option<String>, DagError> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(DagError::io(path)(e)),
        };
        if meta.is_dir() {
            let mut files = Vec::new();
            collect_files(path, path, &mut files)?;
            files.sort();
            let mut tree = blake3::Hasher::new();
            for relative in files {
                let full = path.join(&relative);
                let meta = std::fs::metadata(&full).map_err(DagError::io(&full))?;
                let hash = self.hash_file(&full, &meta)?;
                tree.update(relative.to_string_lossy().as_bytes());
                tree.update(b"\0");
                tree.update(hash.as_bytes());
                tree.update(b"\n");
            }
            Ok(Some(format!("tree:{}", tree.finalize().to_hex())))
        } else {
            self.hash_file(path, &meta).map(Some)
        }
    }

    fn hash_file(&mut self, path: &Path, meta: &std::fs::Metadata) -> Result<String, DagError> {
        let stamp = Stamp::of(meta);
        let key = std::path::absolute(path).map_err(DagError::io(path))?;
        if let Some(entry) = self.entries.get(&key)
            && entry.stamp == stamp
        {
            return Ok(entry.hash.clone());
        }
        let hash = sspa_fsio::blake3_file(path).map_err(DagError::io(path))?.blake3;
        self.files_read += 1;
        self.entries.insert(key, Entry { stamp, hash: hash.clone() });
        self.dirty = true;
        Ok(hash)
    }
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DagError> {
    for entry in std::fs::read_dir(dir).map_err(DagError::io(dir))? {
        let entry = entry.map_err(DagError::io(dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(DagError::io(&path))?;
        if kind.is_dir() {
            collect_files(root, &path, out)?;
        } else if kind.is_file() || kind.is_symlink() {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_files_are_not_read_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).expect("mkdir");
        std::fs::write(tree.join("a.txt"), "a").expect("write");
        std::fs::write(tree.join("sub/b.txt"), "b").expect("write");
        let memo = dir.path().join("hashes.json");

        let mut state = HashState::load(&memo);
        let first = state.hash_path(&tree).expect("hash").expect("exists");
        assert_eq!(state.files_read, 2);
        state.save().expect("save");

        let mut state = HashState::load(&memo);
        assert_eq!(state.hash_path(&tree).expect("hash").expect("exists"), first);
        assert_eq!(state.files_read, 0, "memo must avoid reading unchanged files");

        std::fs::write(tree.join("sub/b.txt"), "changed").expect("write");
        let changed = state.hash_path(&tree).expect("hash").expect("exists");
        assert_ne!(changed, first);
        assert_eq!(state.files_read, 1);
        assert!(state.hash_path(&dir.path().join("absent")).expect("ok").is_none());
    }
}
