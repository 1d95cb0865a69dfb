//! `runs/<run-id>/run.json`: what a run did to each stage and why.

use crate::error::DagError;
use crate::fsutil::write_json_atomic;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageStatus {
    /// Waiting or running (a record left in this state means the run was killed).
    Pending,
    Ran,
    Skipped,
    /// Not computed here: its result was pulled from the remote cache.
    Pulled,
    Failed,
    /// Not run because a stage it needs failed or the run was interrupted.
    NotRun,
    Interrupted,
}

impl StageStatus {
    /// Whether the stage's result is in the cache after the run (computed, reused or pulled).
    pub fn has_result(self) -> bool {
        matches!(self, Self::Ran | Self::Skipped | Self::Pulled)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageRecord {
    pub name: String,
    pub kind: String,
    pub key: String,
    pub status: StageStatus,
    /// Why it ran or was skipped.
    pub reasons: Vec<String>,
    pub duration_s: f64,
    /// Published output directory and the declared output files in it.
    pub output_dir: PathBuf,
    pub outputs: Vec<String>,
    pub error: Option<String>,
    /// What the remote cache did for it (`pulled 12.3 MB in 0.8 s`, `pushed ...`, `push failed: ...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// The scheduler job that computed it (`--executor slurm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<JobRecord>,
}

/// A stage's job on a cluster scheduler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    /// `slurm`.
    pub executor: String,
    pub id: String,
    pub log: PathBuf,
    /// The scheduler's last known state (`PENDING`, `RUNNING`, `COMPLETED`, `FAILED`, …).
    pub state: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Interrupted,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub run_id: String,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_s: f64,
    pub config: PathBuf,
    pub config_hash: String,
    pub tool_version: String,
    pub git_commit: Option<String>,
    pub jobs: usize,
    /// The whole resolved config of the run (defaults filled in), for the run index.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub params: serde_json::Value,
    pub stages: Vec<StageRecord>,
    /// Why the runner itself stopped (e.g. publishing a result failed); a stage's own failure is
    /// in its [`StageRecord::error`] instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a stage run as a job of another run (`--executor slurm`): that run's id. Such records
    /// are filed under the parent's directory (`runs/<parent>/jobs/`), not listed as runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_run: Option<String>,
}

impl RunRecord {
    pub fn save(&self, runs_dir: &Path) -> Result<(), DagError> {
        write_json_atomic(&runs_dir.join(&self.run_id).join("run.json"), self)
    }

    /// Run records, oldest first (run ids sort by start time).
    pub fn list(runs_dir: &Path) -> Vec<RunRecord> {
        let Ok(entries) = std::fs::read_dir(runs_dir) else { return Vec::new() };
        let mut runs: Vec<RunRecord> = entries
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("run.json")).ok())
            .filter_map(|bytes| serde_json::from_slice(&bytes).ok())
            .collect();
        runs.sort_by(|a, b| a.run_id.cmp(&b.run_id));
        runs
    }

    pub fn failed(&self) -> bool {
        self.stages.iter().any(|s| s.status == StageStatus::Failed)
    }
}

/// Sortable and unique in a workspace (which one process writes at a time): the start time to the
/// millisecond and the PID; runs this process starts in the same millisecond (an experiment's
/// variants at once) get the next free millisecond.
pub fn new_run_id() -> String {
    static LAST: std::sync::Mutex<Option<chrono::DateTime<chrono::Utc>>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut now = chrono::Utc::now();
    if let Some(previous) = *last
        && now.timestamp_millis() <= previous.timestamp_millis()
    {
        now = previous + chrono::Duration::milliseconds(1);
    }
    *last = Some(now);
    format!("{}-{}", now.format("%Y%m%dT%H%M%S%.3fZ"), std::process::id())
}

/// `git rev-parse HEAD` in the project, when it is a git checkout.
pub fn git_commit(root: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let commit = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!commit.is_empty()).then_some(commit)
}
