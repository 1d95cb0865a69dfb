//! Execution: stages start in plan order as their needs finish (up to `jobs` at once), each as one
//! [`Attempt`] (computed here, pulled from the remote cache, or a cluster job) with one progress
//! set-up; a finished attempt is settled (outputs checked, published, recorded); Ctrl-C interrupts
//! every running attempt.

use super::attempt::{self, Attempt, AttemptError, Produced};
use super::plan::{Plan, PlannedStage};
use super::progress::{Bars, Shown};
use super::{Outcome, Project, RunOptions};
use crate::error::DagError;
use crate::executor::{ExecutorHandle, JobEnd, JobHandle, JobRequest};
use crate::record::{JobRecord, RunRecord, StageStatus};
use crate::remote::{Existing, RemoteHandle, Transfer, TransferError, human_bytes};
use crate::stage::{Progress, Registry, StageContext};
use crate::store::ResultInfo;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// How one attempt ended.
struct Completion {
    index: usize,
    seconds: f64,
    outcome: Result<Produced, AttemptError>,
}

/// A push that finished: stage index, what moved or why not, seconds.
type Pushed = (usize, Result<Transfer, TransferError>, f64);

/// Whether a pending stage can start.
enum Readiness {
    Ready,
    Waiting,
    /// A stage it needs did not finish: it never will run.
    Blocked(String),
}

/// A running attempt.
struct Running {
    /// Where it writes the stage's files (an attempt made here), removed unless published.
    staging: Option<PathBuf>,
    shown: Shown,
}

/// The remote cache's side of a run.
struct RemoteSide {
    handle: RemoteHandle,
    /// Stages whose pull failed: they are computed instead.
    pull_failed: HashSet<usize>,
    /// Stages whose remote entry a pull found damaged: their push replaces it.
    damaged: HashSet<usize>,
}

/// The cluster scheduler's side of a run.
struct Cluster {
    executor: ExecutorHandle,
    /// Stage index → its job, while the job is in flight.
    in_flight: HashMap<usize, JobHandle>,
    /// Environment every job gets (the lock token, this run's id).
    env: Vec<(String, String)>,
}

struct Execution<'a> {
    project: &'a Project,
    registry: &'a Registry,
    plan: &'a Plan,
    record: &'a mut RunRecord,
    /// Where the record is saved.
    runs_dir: PathBuf,
    jobs: usize,
    cancel: Arc<AtomicBool>,
    bars: Bars,
    index_of: HashMap<&'a str, usize>,
    join: tokio::task::JoinSet<Completion>,
    /// Stage index of each task, for a task that ends without handing back its [`Completion`].
    tasks: HashMap<tokio::task::Id, usize>,
    running: HashMap<usize, Running>,
    remote: Option<RemoteSide>,
    /// Pushes of computed results, running alongside the next stages.
    pushes: tokio::task::JoinSet<Pushed>,
    cluster: Option<Cluster>,
}

/// Runs the plan's pending stages, updating `record` as they finish. On an error of the runner
/// itself every running stage is marked interrupted and every pending one not run before the
/// error is returned (the caller then closes the record).
pub(super) async fn execute(
    project: &Project,
    registry: &Registry,
    options: &RunOptions,
    plan: &Plan,
    record: &mut RunRecord,
    runs_dir: &std::path::Path,
    job_env: Vec<(String, String)>,
) -> Result<Outcome, DagError> {
    let mut execution = Execution {
        project,
        registry,
        plan,
        record,
        runs_dir: runs_dir.to_path_buf(),
        jobs: options.jobs.max(1),
        cancel: Arc::new(AtomicBool::new(false)),
        bars: Bars::new(options.progress),
        index_of: plan.stages.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect(),
        join: tokio::task::JoinSet::new(),
        tasks: HashMap::new(),
        running: HashMap::new(),
        remote: options.remote.clone().map(|handle| RemoteSide {
            handle,
            pull_failed: HashSet::new(),
            damaged: HashSet::new(),
        }),
        pushes: tokio::task::JoinSet::new(),
        cluster: options.executor.clone().map(|executor| Cluster { executor, in_flight: HashMap::new(), env: job_env }),
    };
    let result = execution.drive().await;
    if let Err(error) = &result {
        execution.abort(error);
    }
    result
}

impl Execution<'_> {
    async fn drive(&mut self) -> Result<Outcome, DagError> {
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        // The handler is installed when the future is first polled: before anything starts, so
        // that Ctrl-C during the first submissions interrupts the run instead of killing it.
        tokio::select! {
            biased;
            _ = &mut ctrl_c => {
                self.interrupt();
                return Ok(Outcome::Interrupted);
            }
            () = std::future::ready(()) => {}
        }
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.start_ready()?;
            if self.running.is_empty() {
                break;
            }
            tokio::select! {
                joined = self.join.join_next_with_id() => match joined {
                    Some(Ok((id, completion))) => {
                        self.tasks.remove(&id);
                        self.settle(completion)?;
                    }
                    Some(Err(error)) => self.lost(error)?,
                    None => break,
                },
                _ = ticker.tick() => {
                    let now = Instant::now();
                    for running in self.running.values_mut() {
                        running.shown.tick(now);
                    }
                }
                _ = &mut ctrl_c => {
                    self.interrupt();
                    return Ok(Outcome::Interrupted);
                }
            }
        }
        // Pushes still under way finish before the run does (an interrupted push leaves no
        // visible result on the remote: its manifest is written last).
        loop {
            tokio::select! {
                pushed = self.pushes.join_next() => match pushed {
                    Some(Ok(pushed)) => self.pushed(pushed)?,
                    Some(Err(error)) => tracing::warn!("a push to the remote cache ended abnormally: {error}"),
                    None => break,
                },
                _ = &mut ctrl_c => {
                    self.pushes.abort_all();
                    tracing::warn!("interrupted: pushes to the remote cache abandoned (nothing partial is visible there)");
                    return Ok(Outcome::Interrupted);
                }
            }
        }
        Ok(if self.record.failed() { Outcome::StageFailed } else { Outcome::Succeeded })
    }

    /// Marks stages whose needs failed as not run and starts every ready stage while slots are free.
    fn start_ready(&mut self) -> Result<(), DagError> {
        for i in 0..self.plan.stages.len() {
            if self.record.stages[i].status != StageStatus::Pending || self.running.contains_key(&i) {
                continue;
            }
            match self.readiness(i)? {
                Readiness::Blocked(need) => {
                    self.record.stages[i].status = StageStatus::NotRun;
                    self.record.stages[i].reasons.push(format!("upstream {need} did not finish"));
                }
                Readiness::Ready if self.running.len() < self.jobs => self.start(i)?,
                Readiness::Ready | Readiness::Waiting => {}
            }
        }
        Ok(())
    }

    fn readiness(&self, i: usize) -> Result<Readiness, DagError> {
        let mut readiness = Readiness::Ready;
        for need in &self.definition(&self.plan.stages[i])?.spec.needs {
            let Some(&j) = self.index_of.get(need.as_str()) else { continue };
            match self.record.stages[j].status {
                StageStatus::Ran | StageStatus::Skipped | StageStatus::Pulled => {}
                // A job waits for the jobs it needs in the scheduler's queue (chained).
                StageStatus::Pending if self.job_of(j).is_some() => {}
                StageStatus::Failed | StageStatus::NotRun | StageStatus::Interrupted => {
                    return Ok(Readiness::Blocked(need.clone()));
                }
                StageStatus::Pending => readiness = Readiness::Waiting,
            }
        }
        Ok(readiness)
    }

    fn definition(&self, planned: &PlannedStage) -> Result<&crate::spec::StageDef, DagError> {
        self.project.spec.stage(&planned.name).ok_or_else(|| DagError::UnknownStage {
            name: planned.name.clone(),
            known: self.project.spec.names().join(", "),
        })
    }

    fn job_of(&self, i: usize) -> Option<&JobHandle> {
        self.cluster.as_ref().and_then(|cluster| cluster.in_flight.get(&i))
    }

    /// Starts the stage's attempt: a pull when the plan says so and no pull of it failed yet,
    /// else a job when there is an executor, else a computation here.
    fn start(&mut self, i: usize) -> Result<(), DagError> {
        let plan = self.plan;
        let planned = &plan.stages[i];
        if planned.decision == super::Decision::Pull
            && let Some(remote) = self.remote.as_ref().filter(|r| !r.pull_failed.contains(&i))
        {
            let into = self.fresh_staging(planned)?;
            tracing::info!(stage = %planned.name, "pulling from the remote cache");
            let pull = attempt::Pull {
                remote: remote.handle.clone(),
                stage: planned.name.clone(),
                key: planned.key.clone(),
                into: into.clone(),
            };
            self.launch(i, Box::new(pull), Some(into));
            return Ok(());
        }
        if self.cluster.is_some() {
            return self.submit(i);
        }
        let compute = self.compute(i)?;
        tracing::info!(stage = %planned.name, reasons = %planned.reasons.join("; "), "running");
        let staging = compute.ctx.out_dir.clone();
        self.launch(i, Box::new(compute), Some(staging));
        Ok(())
    }

    /// The one way an attempt runs: its bar (or progress lines), its task, its record of what is
    /// running.
    fn launch(&mut self, i: usize, attempt: Box<dyn Attempt>, staging: Option<PathBuf>) {
        let shown = self.bars.add(&self.plan.stages[i].name, attempt.label());
        let run = attempt.run(shown.progress());
        let task = self.join.spawn(
            async move {
                let started = Instant::now();
                let outcome = run.await;
                Completion { index: i, seconds: started.elapsed().as_secs_f64(), outcome }
            }
            .instrument(tracing::Span::current()),
        );
        self.tasks.insert(task.id(), i);
        self.running.insert(i, Running { staging, shown });
    }

    /// An empty staging directory for the stage's files.
    fn fresh_staging(&self, planned: &PlannedStage) -> Result<PathBuf, DagError> {
        let temp = self.project.workspace.temp_dir(&planned.name, &planned.key);
        let _ = std::fs::remove_dir_all(&temp);
        std::fs::create_dir_all(&temp).map_err(DagError::io(&temp))?;
        Ok(temp)
    }

    /// The stage's computation here: its implementation, directories and inputs.
    fn compute(&self, i: usize) -> Result<attempt::Compute, DagError> {
        let (project, plan) = (self.project, self.plan);
        let planned = &plan.stages[i];
        let stage = self.registry.get(&planned.kind).ok_or_else(|| DagError::UnknownKind {
            stage: planned.name.clone(),
            kind: planned.kind.clone(),
            known: self.registry.kinds().join(", "),
        })?;
        let out_dir = self.fresh_staging(planned)?;
        let state_dir = project.workspace.state_dir(&planned.name);
        std::fs::create_dir_all(&state_dir).map_err(DagError::io(&state_dir))?;
        let inputs = self
            .definition(planned)?
            .spec
            .needs
            .iter()
            .map(|n| {
                let key = plan.get(n).map(|p| p.key.clone()).unwrap_or_default();
                (n.clone(), project.workspace.result_dir(n, &key))
            })
            .collect();
        let ctx = StageContext {
            name: planned.name.clone(),
            params: planned.params.clone(),
            project_root: project.root.clone(),
            deps: planned.deps.clone(),
            inputs,
            out_dir,
            state_dir,
            runtime: tokio::runtime::Handle::current(),
            progress: Progress::hidden(),
            forced: planned.forced,
            cancel: self.cancel.clone(),
        };
        Ok(attempt::Compute { stage, ctx })
    }

    /// Submits the stage as a job of the executor, chained after the jobs of the stages it needs
    /// that are still in flight, and waits for it.
    fn submit(&mut self, i: usize) -> Result<(), DagError> {
        let plan = self.plan;
        let planned = &plan.stages[i];
        let after = self
            .definition(planned)?
            .spec
            .needs
            .iter()
            .filter_map(|n| self.index_of.get(n.as_str()))
            .filter_map(|&j| self.job_of(j))
            .map(|job| job.id.clone())
            .collect();
        let Some(cluster) = &self.cluster else { return Ok(()) };
        let executor = cluster.executor.clone();
        let request = JobRequest {
            stage: planned.name.clone(),
            key: planned.key.clone(),
            after,
            log_dir: self.runs_dir.join(&self.record.run_id).join("logs"),
            env: cluster.env.clone(),
        };
        std::fs::create_dir_all(&request.log_dir).map_err(DagError::io(&request.log_dir))?;
        let job = match executor.submit(&request) {
            Ok(job) => job,
            Err(error) => {
                self.fail(i, super::error_chain(&error));
                return self.record.save(&self.runs_dir);
            }
        };
        let after =
            if request.after.is_empty() { String::new() } else { format!(" after job {}", request.after.join(", ")) };
        tracing::info!(stage = %planned.name, "submitted as {} job {}{after}; log: {}", executor.name(), job.id, job.log.display());
        self.record.stages[i].job = Some(JobRecord {
            executor: executor.name().to_string(),
            id: job.id.clone(),
            log: job.log.clone(),
            state: "PENDING".into(),
        });
        if let Some(cluster) = &mut self.cluster {
            cluster.in_flight.insert(i, job.clone());
        }
        let wait = attempt::Job { executor, job, cancel: self.cancel.clone() };
        self.launch(i, Box::new(wait), None);
        self.record.save(&self.runs_dir)
    }

    /// Records how an attempt ended: a staged result is checked against the stage's declared
    /// outputs and published, a job's result is checked where the job published it, a failed
    /// pull falls back to computing the stage.
    fn settle(&mut self, completion: Completion) -> Result<(), DagError> {
        let Completion { index: i, seconds, outcome } = completion;
        let staging = self.running.remove(&i).and_then(|running| {
            running.shown.finish();
            running.staging
        });
        self.record.stages[i].duration_s = seconds;
        let settled = match outcome {
            Ok(Produced::Computed) => self.publish_computed(i, staging, seconds),
            Ok(Produced::Pulled(transfer)) => self.publish_pulled(i, staging, transfer, seconds),
            Ok(Produced::Job(end)) => {
                self.job_done(i, &end, seconds);
                Ok(())
            }
            Err(AttemptError::Pull(error)) => self.pull_failed(i, staging, error),
            Err(AttemptError::Job(end)) => {
                self.job_failed(i, end)?;
                Ok(())
            }
            Err(error @ (AttemptError::Stage(_) | AttemptError::Lost(_))) => {
                remove_staging(staging);
                self.fail(i, error.to_string());
                Ok(())
            }
        };
        settled?;
        self.record.save(&self.runs_dir)
    }

    /// Checks a computed result's declared outputs and publishes it, then pushes it when the
    /// remote takes this stage.
    fn publish_computed(&mut self, i: usize, staging: Option<PathBuf>, seconds: f64) -> Result<(), DagError> {
        let (plan, project) = (self.plan, self.project);
        let planned = &plan.stages[i];
        let temp = staging.unwrap_or_default();
        let outs = self.definition(planned)?.spec.outs.clone();
        let missing = crate::store::missing_in(&temp, &outs);
        if !missing.is_empty() {
            let _ = std::fs::remove_dir_all(&temp);
            self.fail(i, format!("finished without writing declared output(s): {}", missing.join(", ")));
            return Ok(());
        }
        let info = ResultInfo {
            key: planned.key.clone(),
            parts: planned.parts.clone(),
            outs,
            finished_at: sspa_fsio::timestamp(),
            duration_s: seconds,
        };
        let workspace = &project.workspace;
        let published =
            workspace.publish(&planned.name, &temp, &info).and_then(|_| workspace.set_last(&planned.name, &info));
        if let Err(error) = published {
            let _ = std::fs::remove_dir_all(&temp);
            self.fail(i, format!("cannot publish its result: {error}"));
            return Err(error);
        }
        self.record.stages[i].status = StageStatus::Ran;
        tracing::info!(stage = %planned.name, seconds = format!("{seconds:.2}"), "done");
        if let Some(remote) = self.remote.as_ref().filter(|r| r.handle.pushes(&planned.name)) {
            let existing = if remote.damaged.contains(&i) { Existing::Replace } else { Existing::KeepIfIntact };
            let handle = remote.handle.clone();
            let (stage, key) = (planned.name.clone(), planned.key.clone());
            let dir = workspace.result_dir(&stage, &key);
            self.pushes.spawn(async move {
                let started = Instant::now();
                let pushed = handle.push(&stage, &key, &dir, existing, Progress::hidden()).await;
                (i, pushed, started.elapsed().as_secs_f64())
            });
        }
        Ok(())
    }

    /// Publishes a pulled result once it is checked against the stage's declared outputs.
    fn publish_pulled(
        &mut self,
        i: usize,
        staging: Option<PathBuf>,
        transfer: Transfer,
        seconds: f64,
    ) -> Result<(), DagError> {
        let plan = self.plan;
        let planned = &plan.stages[i];
        let temp = staging.unwrap_or_default();
        let outs = &self.definition(planned)?.spec.outs;
        if let Err(error) = crate::remote::publish_pulled(&self.project.workspace, planned, outs, &temp) {
            return self.pull_failed(i, Some(temp), error);
        }
        let note = format!("pulled {} files, {} in {seconds:.1} s", transfer.files, human_bytes(transfer.bytes));
        tracing::info!(stage = %planned.name, "{note}");
        let stage = &mut self.record.stages[i];
        stage.status = StageStatus::Pulled;
        stage.remote = Some(note);
        Ok(())
    }

    /// A pull that failed (unreachable, a damaged entry, not a result of the stage) is warned
    /// about and the stage is computed instead; a damaged entry is replaced by its push.
    fn pull_failed(&mut self, i: usize, staging: Option<PathBuf>, error: TransferError) -> Result<(), DagError> {
        remove_staging(staging);
        let plan = self.plan;
        let name = &plan.stages[i].name;
        let error_text = super::error_chain(&error);
        tracing::warn!(stage = %name, "pulling from the remote cache failed ({error_text}); computing it instead");
        self.record.stages[i].remote = Some(format!("pull failed: {error_text}"));
        if let Some(remote) = &mut self.remote {
            remote.pull_failed.insert(i);
            if error.is_damage() {
                remote.damaged.insert(i);
            }
        }
        self.start(i)
    }

    /// A job that succeeded: its result must now be published in the workspace (the job
    /// published it).
    fn job_done(&mut self, i: usize, end: &JobEnd, seconds: f64) {
        let id = self.job_ended(i, end);
        let plan = self.plan;
        let planned = &plan.stages[i];
        match self.project.workspace.missing_outputs(&planned.name, &planned.key) {
            Some(missing) if missing.is_empty() => {
                self.record.stages[i].status = StageStatus::Ran;
                // The stage's own time, as the job recorded it (not its time in the queue).
                if let Some(ran) = self.job_stage_seconds(&planned.name, &planned.key) {
                    self.record.stages[i].duration_s = ran;
                }
                tracing::info!(stage = %planned.name, seconds = format!("{seconds:.2}"), "job {id} done");
            }
            Some(missing) => {
                let message = format!("job {id} ended {} but its result lacks {}", end.state, missing.join(", "));
                self.fail(i, message);
            }
            None => {
                let message = format!(
                    "job {id} ended {} but published no result for key {} (does the job see this workspace and run this binary?)",
                    end.state, planned.key
                );
                self.fail(i, message);
            }
        }
    }

    /// A job that did not succeed: a job the scheduler dropped because a job it needed failed is
    /// `not run`; any other fails its stage, and the jobs chained after it are cancelled.
    fn job_failed(&mut self, i: usize, end: JobEnd) -> Result<(), DagError> {
        let id = self.job_ended(i, &end);
        let unfinished_need = self
            .definition(&self.plan.stages[i])?
            .spec
            .needs
            .iter()
            .find(|n| self.index_of.get(n.as_str()).is_some_and(|&j| !self.record.stages[j].status.has_result()))
            .cloned();
        if let Some(need) = unfinished_need {
            let stage = &mut self.record.stages[i];
            stage.status = StageStatus::NotRun;
            stage.reasons.push(format!("upstream {need} did not finish (job {id} {})", end.state));
        } else {
            let message = end.message.unwrap_or_else(|| format!("job {id} ended {}", end.state));
            self.fail(i, message);
            // Jobs chained after this one can never start: drop them now.
            self.cancel_dependants(i);
        }
        Ok(())
    }

    /// Forgets a job that ended and records its final state; returns its id.
    fn job_ended(&mut self, i: usize, end: &JobEnd) -> String {
        if let Some(cluster) = &mut self.cluster {
            cluster.in_flight.remove(&i);
        }
        let job = self.record.stages[i].job.as_mut();
        job.map(|job| {
            job.state = end.state.clone();
            job.id.clone()
        })
        .unwrap_or_default()
    }

    /// How long `stage` ran inside its job, from the job's own run record (`<run>/jobs/`).
    fn job_stage_seconds(&self, stage: &str, key: &str) -> Option<f64> {
        let jobs = self.runs_dir.join(&self.record.run_id).join("jobs");
        RunRecord::list(&jobs)
            .iter()
            .flat_map(|record| &record.stages)
            .find(|s| s.name == stage && s.key == key && s.status == StageStatus::Ran)
            .map(|s| s.duration_s)
    }

    /// Cancels the in-flight jobs of every stage downstream of stage `i`.
    fn cancel_dependants(&mut self, i: usize) {
        let Some(cluster) = &self.cluster else { return };
        let mut down = HashSet::from([self.plan.stages[i].name.clone()]);
        for planned in &self.plan.stages {
            if let Some(def) = self.project.spec.stage(&planned.name)
                && def.spec.needs.iter().any(|n| down.contains(n))
            {
                down.insert(planned.name.clone());
            }
        }
        let jobs: Vec<JobHandle> = cluster
            .in_flight
            .iter()
            .filter(|(j, _)| down.contains(&self.plan.stages[**j].name))
            .map(|(_, job)| job.clone())
            .collect();
        if !jobs.is_empty()
            && let Err(error) = cluster.executor.cancel(&jobs)
        {
            tracing::warn!("cancelling the jobs after a failed one: {}", super::error_chain(&error));
        }
    }

    /// Records what a push did.
    fn pushed(&mut self, (i, result, seconds): Pushed) -> Result<(), DagError> {
        let plan = self.plan;
        let name = &plan.stages[i].name;
        let note = match result {
            Ok(transfer) if transfer.already_there => "already on the remote (another writer published it)".to_owned(),
            Ok(transfer) => format!(
                "{}pushed {} files, {} in {seconds:.1} s",
                if transfer.replaced { "replaced a damaged entry: " } else { "" },
                transfer.files,
                human_bytes(transfer.bytes)
            ),
            Err(error) => {
                let error = super::error_chain(&error);
                tracing::warn!(stage = %name, "push to the remote cache failed: {error}");
                format!("push failed: {error}")
            }
        };
        tracing::info!(stage = %name, "{note}");
        // A failed pull before the computation stays in the note.
        let stage = &mut self.record.stages[i];
        stage.remote = Some(match stage.remote.take() {
            Some(earlier) => format!("{earlier}; {note}"),
            None => note,
        });
        self.record.save(&self.runs_dir)
    }

    /// A task that ended without handing back its completion (attempts catch their stage's
    /// panic, so this is only a task the runtime cancelled).
    fn lost(&mut self, error: tokio::task::JoinError) -> Result<(), DagError> {
        let Some(i) = self.tasks.remove(&error.id()) else { return Ok(()) };
        if let Some(running) = self.running.remove(&i) {
            running.shown.finish();
            remove_staging(running.staging);
        }
        self.fail(i, AttemptError::Lost(error.to_string()).to_string());
        self.record.save(&self.runs_dir)
    }

    fn fail(&mut self, i: usize, message: String) {
        tracing::error!(stage = %self.plan.stages[i].name, "failed: {message}");
        let stage = &mut self.record.stages[i];
        stage.status = StageStatus::Failed;
        stage.error = Some(message);
    }

    /// Ctrl-C: asks running stages to stop and discards their partial outputs.
    fn interrupt(&mut self) {
        self.stop("run interrupted");
        tracing::warn!("interrupted: discarded the partial outputs of the running stage(s)");
    }

    /// An error of the runner itself: the same as an interruption, with the error as the reason.
    fn abort(&mut self, error: &DagError) {
        self.stop(&format!("run stopped: {error}"));
    }

    fn stop(&mut self, reason: &str) {
        self.cancel.store(true, Ordering::Relaxed);
        if let Some(cluster) = &mut self.cluster
            && !cluster.in_flight.is_empty()
        {
            let jobs: Vec<JobHandle> = cluster.in_flight.drain().map(|(_, job)| job).collect();
            let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
            tracing::warn!("cancelling {} job(s) {}", cluster.executor.name(), ids.join(", "));
            match cluster.executor.cancel(&jobs) {
                Ok(()) => {
                    for stage in &mut self.record.stages {
                        if let Some(job) = stage.job.as_mut().filter(|j| ids.contains(&j.id.as_str())) {
                            job.state = "CANCELLED".into();
                        }
                    }
                }
                Err(error) => tracing::error!("could not cancel every job: {}", super::error_chain(&error)),
            }
        }
        for (i, running) in self.running.drain() {
            running.shown.finish();
            remove_staging(running.staging);
            self.record.stages[i].status = StageStatus::Interrupted;
            self.record.stages[i].reasons.push(reason.to_string());
        }
        for stage in self.record.stages.iter_mut().filter(|s| s.status == StageStatus::Pending) {
            stage.status = StageStatus::NotRun;
            stage.reasons.push(reason.to_string());
        }
    }
}

fn remove_staging(staging: Option<PathBuf>) {
    if let Some(temp) = staging {
        let _ = std::fs::remove_dir_all(&temp);
    }
}
