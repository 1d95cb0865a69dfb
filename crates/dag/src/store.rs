//! Workspace layout: content-addressed stage results, per-stage state, run records.
//!
//! ```text
//! <workspace>/cache/<stage>/<key>/          published outputs (+ .sspa-done.json, written last)
//! <workspace>/cache/<stage>/.tmp-<key>-<pid> outputs being written; never read
//! <workspace>/state/last/<stage>.json       key parts of the stage's latest result
//! <workspace>/state/stages/<stage>/         stage-owned state that survives interruptions
//! <workspace>/state/hashes.json             size + mtime + inode → content hash memo
//! <workspace>/runs/<run-id>/run.json        one record per run
//! <workspace>/lock                          held by the running process
//! ```

use crate::error::DagError;
use crate::fsutil::write_json_atomic;
use crate::key::KeyParts;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DONE_MARKER: &str = ".sspa-done.json";

/// The declared outputs `outs` that `dir` lacks.
pub fn missing_in(dir: &Path, outs: &[String]) -> Vec<String> {
    outs.iter().filter(|o| !dir.join(o).exists()).cloned().collect()
}

/// What the runner keeps about one finished result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultInfo {
    pub key: String,
    pub parts: KeyParts,
    pub outs: Vec<String>,
    pub finished_at: String,
    pub duration_s: f64,
}

#[derive(Debug, Clone)]
pub struct Workspace {
    pub root: PathBuf,
}

impl Workspace {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn stage_cache(&self, stage: &str) -> PathBuf {
        self.root.join("cache").join(stage)
    }

    pub fn result_dir(&self, stage: &str, key: &str) -> PathBuf {
        self.stage_cache(stage).join(key)
    }

    pub fn temp_dir(&self, stage: &str, key: &str) -> PathBuf {
        self.stage_cache(stage).join(format!(".tmp-{key}-{}", std::process::id()))
    }

    pub fn state_dir(&self, stage: &str) -> PathBuf {
        self.root.join("state").join("stages").join(stage)
    }

    pub fn hash_state(&self) -> PathBuf {
        self.root.join("state").join("hashes.json")
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.root.join("runs")
    }

    fn last_path(&self, stage: &str) -> PathBuf {
        self.root.join("state").join("last").join(format!("{stage}.json"))
    }

    /// The stage's latest published result, if any.
    pub fn last(&self, stage: &str) -> Option<ResultInfo> {
        let bytes = std::fs::read(self.last_path(stage)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn set_last(&self, stage: &str, info: &ResultInfo) -> Result<(), DagError> {
        write_json_atomic(&self.last_path(stage), info)
    }

    /// Outputs of `key` that are missing; `None` when no result for the key was ever published.
    pub fn missing_outputs(&self, stage: &str, key: &str) -> Option<Vec<String>> {
        let dir = self.result_dir(stage, key);
        let bytes = std::fs::read(dir.join(DONE_MARKER)).ok()?;
        let info: ResultInfo = serde_json::from_slice(&bytes).ok()?;
        Some(missing_in(&dir, &info.outs))
    }

    /// Moves a finished temp dir into place ([`sspa_fsio::publish_dir`]). A previous result under
    /// the same key is replaced (forced reruns); readers see either the old or the new directory,
    /// never a mix, and the old one is removed only once the new one is in place.
    pub fn publish(&self, stage: &str, temp: &Path, info: &ResultInfo) -> Result<PathBuf, DagError> {
        write_json_atomic(&temp.join(DONE_MARKER), info)?;
        let target = self.result_dir(stage, &info.key);
        sspa_fsio::publish_dir(temp, &target).map_err(DagError::io(&target))?;
        Ok(target)
    }

    /// Removes temp dirs left by interrupted runs. Call only while holding the workspace lock.
    pub fn sweep_temp(&self) -> usize {
        let mut removed = 0;
        let Ok(stages) = std::fs::read_dir(self.root.join("cache")) else { return 0 };
        for stage in stages.flatten() {
            let Ok(entries) = std::fs::read_dir(stage.path()) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if (name.starts_with(".tmp-") || name.starts_with(".old-"))
                    && std::fs::remove_dir_all(entry.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        removed
    }

    /// Published result keys per stage.
    pub fn cached_results(&self) -> Vec<(String, String, PathBuf)> {
        let mut out = Vec::new();
        let Ok(stages) = std::fs::read_dir(self.root.join("cache")) else { return out };
        for stage in stages.flatten() {
            let stage_name = stage.file_name().to_string_lossy().into_owned();
            let Ok(entries) = std::fs::read_dir(stage.path()) else { continue };
            for entry in entries.flatten() {
                let key = entry.file_name().to_string_lossy().into_owned();
                if !key.starts_with('.') {
                    out.push((stage_name.clone(), key, entry.path()));
                }
            }
        }
        out.sort();
        out
    }
}
