//! Planning (which stages run, and why: [`plan()`]) and execution (topological, independent
//! stages in parallel, each result published atomically: [`run`]). Every way a run can end —
//! success, a stage's failure or panic, Ctrl-C, an error of the runner itself — leaves its record
//! closed (never `running`).

mod attempt;
mod execute;
mod plan;
mod progress;

pub use plan::error_chain;
pub use plan::{Decision, Plan, PlannedStage, plan, stage_params};

use crate::error::DagError;
use crate::executor::{ExecutorHandle, LOCK_TOKEN_ENV, PARENT_RUN_ENV};
use crate::key::canonical_json;
use crate::lock::WorkspaceLock;
use crate::record::{RunRecord, RunStatus, StageRecord, StageStatus, git_commit, new_run_id};
use crate::remote::RemoteHandle;
use crate::spec::PipelineSpec;
use crate::stage::Registry;
use crate::store::Workspace;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Instant;

/// A pipeline bound to one config and workspace.
#[derive(Debug, Clone)]
pub struct Project {
    /// Relative paths (deps, config values) start here.
    pub root: PathBuf,
    pub config_path: PathBuf,
    /// The whole validated config as JSON; stages see only the parts they declare.
    pub config: Value,
    pub workspace: Workspace,
    pub spec: PipelineSpec,
    /// Written into run records.
    pub tool_version: String,
}

impl Project {
    pub fn config_hash(&self) -> String {
        blake3::hash(canonical_json(&self.config).as_bytes()).to_hex().to_string()
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Stages running at once.
    pub jobs: usize,
    /// Stages to run even when cached.
    pub force: Vec<String>,
    /// Run these stages and what they need, nothing after them (empty: every stage).
    pub until: Vec<String>,
    /// Run this stage alone; what it needs must already be cached.
    pub only: Option<String>,
    /// Draw progress bars (stderr is a terminal and not `--quiet`).
    pub progress: bool,
    /// A shared cache to pull missing results from and push computed ones to.
    pub remote: Option<RemoteHandle>,
    /// Where stages that compute run: `None` in this process; else as jobs of a cluster
    /// scheduler (pulls from the remote cache stay here).
    pub executor: Option<ExecutorHandle>,
    /// Other runs of this process run beside this one under the same lock (an experiment's
    /// variants at once): the caller has already recovered the workspace ([`recover`]), and
    /// their partial outputs are not leftovers of a crash.
    pub beside_others: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            jobs: 1,
            force: Vec::new(),
            until: Vec::new(),
            only: None,
            progress: false,
            remote: None,
            executor: None,
            beside_others: false,
        }
    }
}

/// [`plan()`], then, with a remote cache, every stage that would run only because its result is
/// not cached here (not forced) is looked up there: found, it is pulled instead
/// ([`Decision::Pull`], reason `result on the remote`). A remote that cannot be reached is
/// warned about once and the stages are computed.
///
/// # Errors
/// Those of [`plan()`].
pub async fn plan_with_remote(project: &Project, registry: &Registry, options: &RunOptions) -> Result<Plan, DagError> {
    let mut plan = plan(project, registry, options)?;
    let Some(remote) = &options.remote else { return Ok(plan) };
    for stage in plan.stages.iter_mut().filter(|s| s.decision == Decision::Run && !s.forced) {
        match remote.contains(&stage.name, &stage.key).await {
            Ok(true) => {
                stage.decision = Decision::Pull;
                stage.reasons.push(format!("result on the remote {}", remote.location()));
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!("remote cache {}: {}; computing instead", remote.location(), error_chain(&error));
                break;
            }
        }
    }
    Ok(plan)
}

/// How a run ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    StageFailed,
    Interrupted,
}

/// Plans and executes under the workspace lock; returns the saved run record.
///
/// Nothing is written before the plan holds (inputs present, params agreeing, `--only`'s
/// upstream results cached). From then on the record is closed whatever happens: a stage that
/// fails or panics is recorded `failed` ([`Outcome::StageFailed`]); an error of the runner
/// itself (e.g. publishing fails) closes the record `failed` with the error in
/// [`RunRecord::error`], and is then returned.
pub async fn run(
    project: &Project,
    registry: &Registry,
    options: &RunOptions,
) -> Result<(RunRecord, Outcome), DagError> {
    let lock = WorkspaceLock::acquire(&project.workspace.root, "run")?;
    let result = run_locked(project, registry, options, &lock).await;
    drop(lock);
    result
}

/// [`run`] under a lock the caller already holds on `project`'s workspace, so that a batch of runs
/// (an experiment grid) keeps the workspace for itself from the first run to the last.
pub async fn run_locked(
    project: &Project,
    registry: &Registry,
    options: &RunOptions,
    lock: &WorkspaceLock,
) -> Result<(RunRecord, Outcome), DagError> {
    if !lock.guards(&project.workspace.root) {
        return Err(DagError::Pipeline {
            path: project.workspace.root.clone(),
            message: "the lock held is not this workspace's".into(),
        });
    }
    let plan = plan_with_remote(project, registry, options).await?;
    // A job of another run works beside that run's other jobs: their partial outputs and the
    // parent's running record are not leftovers of a crash.
    let parent_run = if lock.delegated() { std::env::var(PARENT_RUN_ENV).ok().filter(|p| !p.is_empty()) } else { None };
    if !lock.delegated() && !options.beside_others {
        recover(&project.workspace)?;
    }
    let started = Instant::now();
    let mut record = new_record(project, options, &plan);
    record.parent_run = parent_run;
    let runs_dir = records_dir(project, &record);
    record.save(&runs_dir)?;
    let job_env = vec![
        (LOCK_TOKEN_ENV.to_string(), lock.token().to_string()),
        (PARENT_RUN_ENV.to_string(), record.run_id.clone()),
    ];

    let executed = execute::execute(project, registry, options, &plan, &mut record, &runs_dir, job_env).await;
    record.status = match &executed {
        Ok(Outcome::Succeeded) => RunStatus::Succeeded,
        Ok(Outcome::StageFailed) | Err(_) => RunStatus::Failed,
        Ok(Outcome::Interrupted) => RunStatus::Interrupted,
    };
    record.error = executed.as_ref().err().map(|e| error_chain(e));
    record.finished_at = Some(sspa_fsio::timestamp());
    record.duration_s = started.elapsed().as_secs_f64();
    let saved = record.save(&runs_dir);
    let outcome = match executed {
        Ok(outcome) => outcome,
        Err(error) => {
            if let Err(save_error) = saved {
                tracing::error!("cannot close run record {}: {save_error}", record.run_id);
            }
            return Err(error);
        }
    };
    saved?;
    Ok((record, outcome))
}

/// What a run that died left behind, cleared by the next holder of the workspace lock: partial
/// output directories are removed and records still marked running become interrupted.
///
/// # Errors
/// A record that cannot be rewritten.
pub fn recover(workspace: &crate::store::Workspace) -> Result<(), DagError> {
    let swept = workspace.sweep_temp();
    if swept > 0 {
        tracing::info!(
            "removed {swept} partial output director{} left by an interrupted run",
            if swept == 1 { "y" } else { "ies" }
        );
    }
    // Holding the lock, any record still marked running belongs to a process that died.
    for mut stale in RunRecord::list(&workspace.runs_dir()).into_iter().filter(|r| r.status == RunStatus::Running) {
        tracing::warn!("run {} ended without finishing (killed); marking it interrupted", stale.run_id);
        stale.status = RunStatus::Interrupted;
        stale.save(&workspace.runs_dir())?;
    }
    Ok(())
}

/// The directory a run's record is saved under (`runs/`, or `runs/<parent>/jobs/` for a job of
/// another run).
pub fn records_dir(project: &Project, record: &RunRecord) -> PathBuf {
    match &record.parent_run {
        Some(parent) => project.workspace.runs_dir().join(parent).join("jobs"),
        None => project.workspace.runs_dir(),
    }
}

/// The record of a run about to start: every stage pending or skipped, as planned.
fn new_record(project: &Project, options: &RunOptions, plan: &Plan) -> RunRecord {
    RunRecord {
        run_id: new_run_id(),
        status: RunStatus::Running,
        started_at: sspa_fsio::timestamp(),
        finished_at: None,
        duration_s: 0.0,
        config: project.config_path.clone(),
        config_hash: project.config_hash(),
        tool_version: project.tool_version.clone(),
        git_commit: git_commit(&project.root),
        jobs: options.jobs.max(1),
        params: project.config.clone(),
        stages: plan
            .stages
            .iter()
            .map(|s| StageRecord {
                name: s.name.clone(),
                kind: s.kind.clone(),
                key: s.key.clone(),
                status: match s.decision {
                    Decision::Run | Decision::Pull => StageStatus::Pending,
                    Decision::Skip => StageStatus::Skipped,
                },
                reasons: s.reasons.clone(),
                duration_s: 0.0,
                output_dir: project.workspace.result_dir(&s.name, &s.key),
                outputs: project.spec.stage(&s.name).map(|d| d.spec.outs.clone()).unwrap_or_default(),
                error: None,
                remote: None,
                job: None,
            })
            .collect(),
        error: None,
        parent_run: None,
    }
}
