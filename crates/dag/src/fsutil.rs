//! Atomic writes for the runner's records (see `sspa-fsio`).

use crate::error::DagError;
use std::path::Path;

/// Writes `bytes` to `path` so that readers see either the old or the whole new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DagError> {
    sspa_fsio::write_atomic(path, bytes).map_err(DagError::io(path))
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), DagError> {
    let mut bytes = serde_json::to_vec_pretty(value)
        .map_err(|source| DagError::Json { what: path.display().to_string(), source })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}
