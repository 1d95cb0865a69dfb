//! The run index: every run of a workspace with its parameters, metrics, lineage and timings, read
//! from the run records and the published results they name — the one table that experiment
//! comparisons and scheduled retraining read.
//!
//! - parameters: the resolved config each run was planned with, as dotted leaves (`train.lr`);
//! - metrics: the JSON files a stage declares as `metrics` in the pipeline file, as
//!   `<stage>.<leaf>` (`evaluate.raw.mAP`), for every stage the run ran or reused;
//! - lineage: each stage's cache key (equal keys = the same computation, shared between runs);
//! - timings: the run's and each stage's seconds.
//!
//! Runs are listed oldest first. A metrics file that is missing or not JSON leaves its values out
//! and is named in [`RunEntry::problems`]; the rest of the entry stays usable.

use crate::key::leaves;
use crate::record::{RunRecord, RunStatus, StageStatus};
use crate::spec::PipelineSpec;
use crate::store::Workspace;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// One stage of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageEntry {
    pub name: String,
    pub key: String,
    pub status: StageStatus,
    pub duration_s: f64,
}

/// One run, with what it read and what it measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunEntry {
    pub run_id: String,
    pub status: RunStatus,
    pub started_at: String,
    pub duration_s: f64,
    pub config_hash: String,
    pub git_commit: Option<String>,
    /// Config leaf → value (empty for records written before the index existed).
    pub params: BTreeMap<String, Value>,
    /// `<stage>.<leaf>` → value of the stage's declared metrics files.
    pub metrics: BTreeMap<String, Value>,
    pub stages: Vec<StageEntry>,
    /// Metrics that could not be read, each naming its file.
    pub problems: Vec<String>,
}

impl RunEntry {
    /// The stage's key in this run, if it was part of it.
    pub fn key(&self, stage: &str) -> Option<&str> {
        self.stages.iter().find(|s| s.name == stage).map(|s| s.key.as_str())
    }
}

/// Every run of `workspace`, oldest first.
pub fn run_index(workspace: &Workspace, spec: &PipelineSpec) -> Vec<RunEntry> {
    RunRecord::list(&workspace.runs_dir()).iter().map(|record| entry(workspace, spec, record)).collect()
}

fn entry(workspace: &Workspace, spec: &PipelineSpec, record: &RunRecord) -> RunEntry {
    let mut metrics = BTreeMap::new();
    let mut problems = Vec::new();
    for stage in &record.stages {
        let Some(def) = spec.stage(&stage.name) else { continue };
        if def.spec.metrics.is_empty() || !stage.status.has_result() {
            continue;
        }
        let dir = workspace.result_dir(&stage.name, &stage.key);
        let several = def.spec.metrics.len() > 1;
        for file in &def.spec.metrics {
            let path = dir.join(file);
            let value = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).map_err(|e| e.to_string()));
            let value = match value {
                Ok(value) => value,
                Err(reason) => {
                    problems.push(format!("metrics `{}`: {reason}", path.display()));
                    continue;
                }
            };
            let stem = file.rsplit_once('.').map_or(file.as_str(), |(stem, _)| stem);
            let prefix = if several { format!("{}.{stem}", stage.name) } else { stage.name.clone() };
            for (leaf, value) in leaves(&value) {
                metrics.insert(format!("{prefix}.{leaf}"), value);
            }
        }
    }
    RunEntry {
        run_id: record.run_id.clone(),
        status: record.status,
        started_at: record.started_at.clone(),
        duration_s: record.duration_s,
        config_hash: record.config_hash.clone(),
        git_commit: record.git_commit.clone(),
        params: if record.params.is_null() { BTreeMap::new() } else { leaves(&record.params) },
        metrics,
        stages: record
            .stages
            .iter()
            .map(|s| StageEntry {
                name: s.name.clone(),
                key: s.key.clone(),
                status: s.status,
                duration_s: s.duration_s,
            })
            .collect(),
        problems,
    }
}
