//! Atomic writes: a temp file in the same directory, fsync, rename.

use crate::error::DagError;
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` so that readers see either the old or the whole new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DagError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(DagError::io(dir))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(DagError::io(path))
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), DagError> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|source| DagError::Json { what: path.display().to_string(), source })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}
