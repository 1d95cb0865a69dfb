//! `clean`: drop old run records and every cached result that no kept run (and no stage's latest
//! result) refers to.

use crate::error::DagError;
use crate::record::RunRecord;
use crate::store::Workspace;
use serde::Serialize;
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct CleanSummary {
    pub runs_removed: usize,
    pub runs_kept: usize,
    pub results_removed: usize,
    pub bytes_freed: u64,
    pub partial_removed: usize,
}

/// Keeps the `keep_last` most recent runs and what they used. Call while holding the lock.
pub fn clean(workspace: &Workspace, stages: &[&str], keep_last: usize) -> Result<CleanSummary, DagError> {
    let mut summary = CleanSummary { partial_removed: workspace.sweep_temp(), ..CleanSummary::default() };
    let runs = RunRecord::list(&workspace.runs_dir());
    let (old, kept) = runs.split_at(runs.len().saturating_sub(keep_last));
    for run in old {
        let dir = workspace.runs_dir().join(&run.run_id);
        std::fs::remove_dir_all(&dir).map_err(DagError::io(&dir))?;
        summary.runs_removed += 1;
    }
    summary.runs_kept = kept.len();

    let mut keep: HashSet<(String, String)> = kept
        .iter()
        .flat_map(|r| r.stages.iter())
        .filter(|s| s.status.has_result())
        .map(|s| (s.name.clone(), s.key.clone()))
        .collect();
    for stage in stages {
        if let Some(last) = workspace.last(stage) {
            keep.insert((stage.to_string(), last.key));
        }
    }
    for (stage, key, dir) in workspace.cached_results() {
        if !keep.contains(&(stage, key)) {
            summary.bytes_freed += dir_size(&dir);
            std::fs::remove_dir_all(&dir).map_err(DagError::io(&dir))?;
            summary.results_removed += 1;
        }
    }
    Ok(summary)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
