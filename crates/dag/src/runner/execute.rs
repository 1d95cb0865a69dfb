//! Execution: stages start in plan order as their needs finish (up to `jobs` at once), each in a
//! blocking task whose panic is caught and recorded as the stage's failure; a finished stage is
//! settled (outputs checked, published, recorded); Ctrl-C interrupts every running stage.

use super::error_chain;
use super::plan::{Plan, PlannedStage};
use super::{Outcome, Project, RunOptions};
use crate::error::DagError;
use crate::executor::{JobEnd, JobHandle, JobRequest};
use crate::record::JobRecord;
use crate::record::{RunRecord, StageStatus};
use crate::stage::{Progress, Registry, StageContext};
use crate::store::ResultInfo;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

struct Finished {
    index: usize,
    result: Result<(), String>,
    duration_s: f64,
    /// A pull from the remote cache (what moved), not a computation.
    pulled: Option<Result<crate::remote::Transfer, String>>,
    /// A job of the executor: how it ended.
    job: Option<crate::executor::JobEnd>,
}

/// A push that finished: stage index, what moved or why not, seconds.
type Pushed = (usize, Result<crate::remote::Transfer, String>, f64);

/// Whether a pending stage can start.
enum Readiness {
    Ready,
    Waiting,
    /// A stage it needs did not finish: it never will run.
    Blocked(String),
}

struct Execution<'a> {
    project: &'a Project,
    registry: &'a Registry,
    plan: &'a Plan,
    record: &'a mut RunRecord,
    jobs: usize,
    cancel: Arc<AtomicBool>,
    bars: indicatif::MultiProgress,
    style: indicatif::ProgressStyle,
    index_of: HashMap<&'a str, usize>,
    join: tokio::task::JoinSet<Finished>,
    /// Stage index of each task, for a task that ends without handing back its [`Finished`].
    tasks: HashMap<tokio::task::Id, usize>,
    /// Running stage index → its temporary output directory.
    running: HashMap<usize, PathBuf>,
    remote: Option<crate::remote::RemoteHandle>,
    /// Stages whose pull failed: they are computed instead.
    pull_failed: std::collections::HashSet<usize>,
    /// Pushes of computed results, running alongside the next stages.
    pushes: tokio::task::JoinSet<Pushed>,
    executor: Option<crate::executor::ExecutorHandle>,
    /// Stage index → its job, while the job is in flight.
    jobs_in_flight: HashMap<usize, JobHandle>,
    /// Environment every job gets (the lock token, this run's id).
    job_env: Vec<(String, String)>,
    /// Where the record is saved.
    runs_dir: PathBuf,
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
    let bars = if options.progress {
        indicatif::MultiProgress::new()
    } else {
        indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
    };
    let style = indicatif::ProgressStyle::with_template(
        "{prefix:>10.bold} {spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    let mut execution = Execution {
        project,
        registry,
        plan,
        record,
        jobs: options.jobs.max(1),
        cancel: Arc::new(AtomicBool::new(false)),
        bars,
        style,
        index_of: plan.stages.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect(),
        join: tokio::task::JoinSet::new(),
        tasks: HashMap::new(),
        running: HashMap::new(),
        remote: options.remote.clone(),
        pull_failed: Default::default(),
        pushes: tokio::task::JoinSet::new(),
        executor: options.executor.clone(),
        jobs_in_flight: HashMap::new(),
        job_env,
        runs_dir: runs_dir.to_path_buf(),
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
        loop {
            self.start_ready()?;
            if self.running.is_empty() {
                break;
            }
            tokio::select! {
                joined = self.join.join_next_with_id() => match joined {
                    Some(Ok((id, finished))) => {
                        self.tasks.remove(&id);
                        self.settle(finished)?;
                    }
                    Some(Err(error)) => self.lost(error)?,
                    None => break,
                },
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

    /// Records what a push did.
    fn pushed(&mut self, (i, result, seconds): Pushed) -> Result<(), DagError> {
        let name = &self.plan.stages[i].name;
        let note = match result {
            Ok(transfer) if transfer.already_there => "already on the remote (another writer published it)".to_owned(),
            Ok(transfer) => format!(
                "pushed {} files, {} in {seconds:.1} s",
                transfer.files,
                crate::remote::human_bytes(transfer.bytes)
            ),
            Err(error) => {
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
                StageStatus::Pending if self.jobs_in_flight.contains_key(&j) => {}
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

    /// Pulls the stage's result from the remote cache into its temp directory.
    fn start_pull(&mut self, i: usize, remote: crate::remote::RemoteHandle) -> Result<(), DagError> {
        let planned = &self.plan.stages[i];
        let temp = self.project.workspace.temp_dir(&planned.name, &planned.key);
        let _ = std::fs::remove_dir_all(&temp);
        std::fs::create_dir_all(&temp).map_err(DagError::io(&temp))?;
        let bar = self
            .bars
            .add(indicatif::ProgressBar::new(0).with_style(self.style.clone()).with_prefix(planned.name.clone()));
        bar.set_message(format!("pulling from {}", remote.location()));
        let progress = Progress::new(bar);
        tracing::info!(stage = %planned.name, "pulling from the remote cache");
        self.running.insert(i, temp.clone());
        let (stage, key) = (planned.name.clone(), planned.key.clone());
        let task = self.join.spawn(async move {
            let started = Instant::now();
            let pulled = remote.pull(&stage, &key, &temp, progress.clone()).await;
            progress.bar().finish_and_clear();
            Finished {
                index: i,
                result: Ok(()),
                duration_s: started.elapsed().as_secs_f64(),
                pulled: Some(pulled),
                job: None,
            }
        });
        self.tasks.insert(task.id(), i);
        Ok(())
    }

    /// Prepares the stage's directories and context and runs it in a blocking task (or pulls
    /// its result, when the plan says so and no pull of it failed yet).
    fn start(&mut self, i: usize) -> Result<(), DagError> {
        let (project, plan) = (self.project, self.plan);
        let planned = &plan.stages[i];
        if planned.decision == super::Decision::Pull
            && !self.pull_failed.contains(&i)
            && let Some(remote) = self.remote.clone()
        {
            return self.start_pull(i, remote);
        }
        if let Some(executor) = self.executor.clone() {
            return self.start_job(i, executor);
        }
        let stage = self.registry.get(&planned.kind).ok_or_else(|| DagError::UnknownKind {
            stage: planned.name.clone(),
            kind: planned.kind.clone(),
            known: self.registry.kinds().join(", "),
        })?;
        let temp = project.workspace.temp_dir(&planned.name, &planned.key);
        let _ = std::fs::remove_dir_all(&temp);
        std::fs::create_dir_all(&temp).map_err(DagError::io(&temp))?;
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
        let bar = self
            .bars
            .add(indicatif::ProgressBar::new(0).with_style(self.style.clone()).with_prefix(planned.name.clone()));
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        let ctx = StageContext {
            name: planned.name.clone(),
            params: planned.params.clone(),
            project_root: project.root.clone(),
            deps: planned.deps.clone(),
            inputs,
            out_dir: temp.clone(),
            state_dir,
            runtime: tokio::runtime::Handle::current(),
            progress: Progress::new(bar),
            forced: planned.forced,
            cancel: self.cancel.clone(),
        };
        tracing::info!(stage = %planned.name, reasons = %planned.reasons.join("; "), "running");
        self.running.insert(i, temp);
        // The stage's logs carry the caller's span (e.g. which experiment variant runs).
        let span = tracing::Span::current();
        let task = self.join.spawn_blocking(move || {
            let _span = span.enter();
            let started = Instant::now();
            let result = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stage.run(&ctx))) {
                Ok(result) => result.map_err(|e| error_chain(e.as_ref())),
                Err(payload) => Err(format!("panicked: {}", panic_message(payload.as_ref()))),
            };
            ctx.progress.bar().finish_and_clear();
            Finished { index: i, result, duration_s: started.elapsed().as_secs_f64(), pulled: None, job: None }
        });
        self.tasks.insert(task.id(), i);
        Ok(())
    }

    /// Submits the stage as a job of the executor, chained after the jobs of the stages it needs
    /// that are still in flight, and waits for it in a blocking task.
    fn start_job(&mut self, i: usize, executor: crate::executor::ExecutorHandle) -> Result<(), DagError> {
        let planned = &self.plan.stages[i];
        let after = self
            .definition(planned)?
            .spec
            .needs
            .iter()
            .filter_map(|n| self.index_of.get(n.as_str()))
            .filter_map(|j| self.jobs_in_flight.get(j))
            .map(|job| job.id.clone())
            .collect();
        let request = JobRequest {
            stage: planned.name.clone(),
            key: planned.key.clone(),
            after,
            log_dir: self.runs_dir.join(&self.record.run_id).join("logs"),
            env: self.job_env.clone(),
        };
        std::fs::create_dir_all(&request.log_dir).map_err(DagError::io(&request.log_dir))?;
        let job = match executor.submit(&request) {
            Ok(job) => job,
            Err(error) => {
                self.fail(i, error_chain(&error));
                return self.record.save(&self.runs_dir);
            }
        };
        let after =
            if request.after.is_empty() { String::new() } else { format!(" after job {}", request.after.join(", ")) };
        tracing::info!(stage = %planned.name, "submitted as {} job {}{after}; log: {}", executor.name(), job.id, job.log.display());
        let bar = self
            .bars
            .add(indicatif::ProgressBar::new(0).with_style(self.style.clone()).with_prefix(planned.name.clone()));
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar.set_message(format!("{} job {} ({})", executor.name(), job.id, job.log.display()));
        self.record.stages[i].job = Some(JobRecord {
            executor: executor.name().to_string(),
            id: job.id.clone(),
            log: job.log.clone(),
            state: "PENDING".into(),
        });
        self.jobs_in_flight.insert(i, job.clone());
        self.running.insert(i, PathBuf::new());
        let cancel = self.cancel.clone();
        let task = self.join.spawn_blocking(move || {
            let started = Instant::now();
            let end = executor.wait(&job, &cancel);
            bar.finish_and_clear();
            Finished {
                index: i,
                result: Ok(()),
                duration_s: started.elapsed().as_secs_f64(),
                pulled: None,
                job: Some(end),
            }
        });
        self.tasks.insert(task.id(), i);
        self.record.save(&self.runs_dir)
    }

    /// Records how a job ended: its result must now be published in the workspace (the job
    /// published it); a job the scheduler dropped because a job it needed failed is `not run`.
    fn settle_job(&mut self, i: usize, end: JobEnd, seconds: f64) -> Result<(), DagError> {
        self.jobs_in_flight.remove(&i);
        let planned = &self.plan.stages[i];
        let name = planned.name.clone();
        self.record.stages[i].duration_s = seconds;
        if let Some(job) = &mut self.record.stages[i].job {
            job.state = end.state.clone();
        }
        let id = self.record.stages[i].job.as_ref().map(|j| j.id.clone()).unwrap_or_default();
        let unfinished_need = self
            .definition(planned)?
            .spec
            .needs
            .iter()
            .find(|n| self.index_of.get(n.as_str()).is_some_and(|&j| !self.record.stages[j].status.has_result()))
            .cloned();
        if end.succeeded {
            match self.project.workspace.missing_outputs(&name, &planned.key) {
                Some(missing) if missing.is_empty() => {
                    self.record.stages[i].status = StageStatus::Ran;
                    // The stage's own time, as the job recorded it (not its time in the queue).
                    if let Some(ran) = self.job_stage_seconds(&name, &planned.key) {
                        self.record.stages[i].duration_s = ran;
                    }
                    tracing::info!(stage = %name, seconds = format!("{seconds:.2}"), "job {id} done");
                }
                Some(missing) => self.fail(i, format!("job {id} ended {} but its result lacks {}", end.state, missing.join(", "))),
                None => self.fail(
                    i,
                    format!(
                        "job {id} ended {} but published no result for key {} (does the job see this workspace and run this binary?)",
                        end.state, planned.key
                    ),
                ),
            }
        } else if let Some(need) = unfinished_need {
            let stage = &mut self.record.stages[i];
            stage.status = StageStatus::NotRun;
            stage.reasons.push(format!("upstream {need} did not finish (job {id} {})", end.state));
        } else {
            let message = end.message.unwrap_or_else(|| format!("job {id} ended {}", end.state));
            self.fail(i, message);
            // Jobs chained after this one can never start: drop them now.
            self.cancel_dependants(i);
        }
        self.record.save(&self.runs_dir)
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
        let Some(executor) = self.executor.clone() else { return };
        let mut down = std::collections::HashSet::from([self.plan.stages[i].name.clone()]);
        for planned in &self.plan.stages {
            if let Some(def) = self.project.spec.stage(&planned.name)
                && def.spec.needs.iter().any(|n| down.contains(n))
            {
                down.insert(planned.name.clone());
            }
        }
        let jobs: Vec<JobHandle> = self
            .jobs_in_flight
            .iter()
            .filter(|(j, _)| down.contains(&self.plan.stages[**j].name))
            .map(|(_, job)| job.clone())
            .collect();
        if !jobs.is_empty()
            && let Err(error) = executor.cancel(&jobs)
        {
            tracing::warn!("cancelling the jobs after a failed one: {}", error_chain(&error));
        }
    }

    /// Publishes a pulled result; a pull that failed (unreachable, tampered file) is warned
    /// about and the stage is computed instead.
    fn settle_pull(
        &mut self,
        i: usize,
        temp: PathBuf,
        pulled: Result<crate::remote::Transfer, String>,
        seconds: f64,
    ) -> Result<(), DagError> {
        let name = self.plan.stages[i].name.clone();
        let key = self.plan.stages[i].key.clone();
        let published = pulled.and_then(|transfer| {
            crate::remote::publish_pulled(&self.project.workspace, &name, &key, &temp).map(|_| transfer)
        });
        match published {
            Ok(transfer) => {
                let note = format!(
                    "pulled {} files, {} in {seconds:.1} s",
                    transfer.files,
                    crate::remote::human_bytes(transfer.bytes)
                );
                tracing::info!(stage = %name, "{note}");
                let stage = &mut self.record.stages[i];
                stage.status = StageStatus::Pulled;
                stage.duration_s = seconds;
                stage.remote = Some(note);
                self.record.save(&self.runs_dir)
            }
            Err(error) => {
                let _ = std::fs::remove_dir_all(&temp);
                tracing::warn!(stage = %name, "pulling from the remote cache failed ({error}); computing it instead");
                self.record.stages[i].remote = Some(format!("pull failed: {error}"));
                self.pull_failed.insert(i);
                self.start(i)
            }
        }
    }

    /// Checks a finished stage's declared outputs and publishes them, or records its failure.
    fn settle(&mut self, finished: Finished) -> Result<(), DagError> {
        let i = finished.index;
        let temp = self.running.remove(&i).unwrap_or_default();
        if let Some(pulled) = finished.pulled {
            return self.settle_pull(i, temp, pulled, finished.duration_s);
        }
        if let Some(end) = finished.job {
            return self.settle_job(i, end, finished.duration_s);
        }
        let plan = self.plan;
        let planned = &plan.stages[i];
        self.record.stages[i].duration_s = finished.duration_s;
        let outs = self.definition(planned)?.spec.outs.clone();
        let result = finished.result.and_then(|()| {
            let missing: Vec<&str> = outs.iter().filter(|o| !temp.join(o).exists()).map(String::as_str).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("finished without writing declared output(s): {}", missing.join(", ")))
            }
        });
        match result {
            Ok(()) => {
                let info = ResultInfo {
                    key: planned.key.clone(),
                    parts: planned.parts.clone(),
                    outs,
                    finished_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    duration_s: finished.duration_s,
                };
                let published = self
                    .project
                    .workspace
                    .publish(&planned.name, &temp, &info)
                    .and_then(|_| self.project.workspace.set_last(&planned.name, &info));
                if let Err(error) = published {
                    let _ = std::fs::remove_dir_all(&temp);
                    self.fail(i, format!("cannot publish its result: {error}"));
                    return Err(error);
                }
                self.record.stages[i].status = StageStatus::Ran;
                tracing::info!(stage = %planned.name, seconds = format!("{:.2}", finished.duration_s), "done");
                if let Some(remote) = self.remote.clone().filter(|remote| remote.pushes(&planned.name)) {
                    let (stage, key) = (planned.name.clone(), planned.key.clone());
                    let dir = self.project.workspace.result_dir(&stage, &key);
                    self.pushes.spawn(async move {
                        let started = Instant::now();
                        let pushed = remote.push(&stage, &key, &dir, Progress::hidden()).await;
                        (i, pushed, started.elapsed().as_secs_f64())
                    });
                }
            }
            Err(message) => {
                let _ = std::fs::remove_dir_all(&temp);
                self.fail(i, message);
            }
        }
        self.record.save(&self.runs_dir)
    }

    /// A task that ended without handing back its result (its stage's panic is caught inside
    /// the task, so this is only a task the runtime cancelled).
    fn lost(&mut self, error: tokio::task::JoinError) -> Result<(), DagError> {
        let Some(i) = self.tasks.remove(&error.id()) else { return Ok(()) };
        if let Some(temp) = self.running.remove(&i) {
            let _ = std::fs::remove_dir_all(&temp);
        }
        self.fail(i, format!("stage task ended abnormally: {error}"));
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
        if let Some(executor) = self.executor.clone()
            && !self.jobs_in_flight.is_empty()
        {
            let jobs: Vec<JobHandle> = self.jobs_in_flight.drain().map(|(_, job)| job).collect();
            let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
            tracing::warn!("cancelling {} job(s) {}", executor.name(), ids.join(", "));
            match executor.cancel(&jobs) {
                Ok(()) => {
                    for stage in &mut self.record.stages {
                        if let Some(job) = stage.job.as_mut().filter(|j| ids.contains(&j.id.as_str())) {
                            job.state = "CANCELLED".into();
                        }
                    }
                }
                Err(error) => tracing::error!("could not cancel every job: {}", error_chain(&error)),
            }
        }
        for (i, temp) in self.running.drain() {
            let _ = std::fs::remove_dir_all(&temp);
            self.record.stages[i].status = StageStatus::Interrupted;
            self.record.stages[i].reasons.push(reason.to_string());
        }
        for stage in self.record.stages.iter_mut().filter(|s| s.status == StageStatus::Pending) {
            stage.status = StageStatus::NotRun;
            stage.reasons.push(reason.to_string());
        }
    }
}

/// The message of a panic payload (`panic!("...")` gives a `&str`, `panic!("{x}")` a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(text), _) => (*text).to_string(),
        (None, Some(text)) => text.clone(),
        (None, None) => "a panic payload that is not a string".to_string(),
    }
}
