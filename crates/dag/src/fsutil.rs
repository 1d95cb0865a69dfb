//! The runner's records written through `sspa-fsio` (atomic, umask modes), with its error type.

use crate::error::DagError;
use std::path::Path;

/// Writes `bytes` to `path` so that readers see either the old or the whole new content.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DagError> {
    sspa_fsio::write_atomic(path, bytes).map_err(DagError::io(path))
}

/// Serialises `value` as pretty JSON and writes it atomically.
pub fn write_json_atomic<T: serde::Serialize>(path: &Path, value: &T) -> Result<(), DagError> {
    sspa_fsio::write_json_atomic(path, value).map_err(DagError::io(path))
}
