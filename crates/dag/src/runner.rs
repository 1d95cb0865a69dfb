//! Planning (which stages run, and why) and execution (topological, independent stages in
//! parallel, each result published atomically).

use crate::error::DagError;
use crate::graph::{ancestors_and_self, topological_order};
use crate::hash::HashState;
use crate::key::{KEY_FORMAT, KeyParts, canonical_json};
use crate::lock::WorkspaceLock;
use crate::record::{RunRecord, RunStatus, StageRecord, StageStatus, git_commit, new_run_id};
use crate::spec::{PipelineSpec, StageDef, expand_dep, lookup};
use crate::stage::{Progress, Registry, StageContext};
use crate::store::{ResultInfo, Workspace};
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
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
}

impl Default for RunOptions {
    fn default() -> Self {
        Self { jobs: 1, force: Vec::new(), until: Vec::new(), only: None, progress: false }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Run,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlannedStage {
    pub name: String,
    pub kind: String,
    pub key: String,
    pub decision: Decision,
    pub reasons: Vec<String>,
    #[serde(skip)]
    pub parts: KeyParts,
    #[serde(skip)]
    pub deps: Vec<PathBuf>,
    #[serde(skip)]
    pub params: Value,
}

/// Every selected stage in execution order, with its key and whether it will run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub stages: Vec<PlannedStage>,
    /// Stages whose keys were computed only because a selected stage needs them.
    #[serde(skip)]
    pub context: Vec<PlannedStage>,
}

impl Plan {
    pub fn get(&self, name: &str) -> Option<&PlannedStage> {
        self.stages.iter().chain(self.context.iter()).find(|s| s.name == name)
    }
}

fn check_stage_name(spec: &PipelineSpec, name: &str) -> Result<(), DagError> {
    match spec.stage(name) {
        Some(_) => Ok(()),
        None => Err(DagError::UnknownStage { name: name.to_string(), known: spec.names().join(", ") }),
    }
}

/// Works out each stage's key and whether it must run, touching nothing but the hash memo.
pub fn plan(project: &Project, registry: &Registry, options: &RunOptions) -> Result<Plan, DagError> {
    let spec = &project.spec;
    for name in options.force.iter().chain(options.until.iter()).chain(options.only.iter()) {
        check_stage_name(spec, name)?;
    }
    let order = topological_order(spec)?;
    let selected: BTreeSet<String> = match &options.only {
        Some(only) => BTreeSet::from([only.clone()]),
        None if !options.until.is_empty() => options.until.iter().flat_map(|u| ancestors_and_self(spec, u)).collect(),
        None => order.iter().cloned().collect(),
    };
    let needed: BTreeSet<String> = selected.iter().flat_map(|s| ancestors_and_self(spec, s)).collect();

    let mut hashes = HashState::load(&project.workspace.hash_state());
    let mut keys: HashMap<String, String> = HashMap::new();
    let mut forced: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut stages = Vec::new();
    let mut context = Vec::new();
    for name in order.iter().filter(|n| needed.contains(*n)) {
        let def = spec
            .stage(name)
            .ok_or_else(|| DagError::UnknownStage { name: name.clone(), known: spec.names().join(", ") })?;
        let implementation = registry.get(&def.kind).ok_or_else(|| DagError::UnknownKind {
            stage: def.name.clone(),
            kind: def.kind.clone(),
            known: registry.kinds().join(", "),
        })?;
        let (params, nested) = stage_params(&project.config, def)?;
        implementation.check_params(&nested).map_err(|message| DagError::Input {
            stage: def.name.clone(),
            message: format!("`{}` and the stage disagree: {message}", project.spec.path.display()),
        })?;
        let (mut deps, mut dep_hashes) = hash_deps(project, def, &mut hashes)?;
        let extra = implementation.inputs(&nested, &project.root).map_err(|e| DagError::Input {
            stage: def.name.clone(),
            message: format!("cannot list its inputs: {}", error_chain(e.as_ref())),
        })?;
        for path in extra {
            let hash = hashes.hash_path(&path)?.ok_or_else(|| DagError::Input {
                stage: def.name.clone(),
                message: format!("input `{}` does not exist", path.display()),
            })?;
            let shown = path.strip_prefix(&project.root).unwrap_or(&path).display().to_string();
            dep_hashes.insert(shown, hash);
            deps.push(path);
        }
        let upstream: BTreeMap<String, String> =
            def.spec.needs.iter().map(|n| (n.clone(), keys.get(n).cloned().unwrap_or_default())).collect();
        let parts = KeyParts {
            key_format: KEY_FORMAT,
            kind: def.kind.clone(),
            kind_version: implementation.version(),
            params,
            deps: dep_hashes,
            upstream,
        };
        let key = parts.key();
        keys.insert(name.clone(), key.clone());
        let (mut decision, mut reasons) = decide(project, def, &key, &parts, options);
        // A forced stage rewrites its output under the same key, so what reads it re-runs too.
        let forced_upstream: Vec<&String> = def.spec.needs.iter().filter(|n| forced.contains(*n)).collect();
        if decision == Decision::Skip && !forced_upstream.is_empty() {
            decision = Decision::Run;
            reasons = forced_upstream.iter().map(|n| format!("upstream {n} was forced")).collect();
        }
        if decision == Decision::Run
            && (options.force.contains(name) || !forced_upstream.is_empty())
            && selected.contains(name)
        {
            forced.insert(name.clone());
        }
        let planned = PlannedStage {
            name: name.clone(),
            kind: def.kind.clone(),
            key,
            decision,
            reasons,
            parts,
            deps,
            params: nested,
        };
        if selected.contains(name) { stages.push(planned) } else { context.push(planned) }
    }
    hashes.save()?;
    Ok(Plan { stages, context })
}

/// The declared params of `def` in `config`: flat `path → value` for the key, nested for the stage.
pub fn stage_params(config: &Value, def: &StageDef) -> Result<(BTreeMap<String, Value>, Value), DagError> {
    let mut flat = BTreeMap::new();
    let mut nested = Value::Object(serde_json::Map::new());
    for path in &def.spec.params {
        let value = lookup(config, path).cloned().ok_or_else(|| DagError::Input {
            stage: def.name.clone(),
            message: format!("reads param `{path}`, which the config does not have"),
        })?;
        let mut at = &mut nested;
        let segments: Vec<&str> = path.split('.').collect();
        for (i, segment) in segments.iter().enumerate() {
            let Value::Object(map) = at else { break };
            if i + 1 == segments.len() {
                map.insert(segment.to_string(), value.clone());
                break;
            }
            at = map.entry(segment.to_string()).or_insert_with(|| Value::Object(serde_json::Map::new()));
        }
        flat.insert(path.clone(), value);
    }
    Ok((flat, nested))
}

fn hash_deps(
    project: &Project,
    def: &StageDef,
    hashes: &mut HashState,
) -> Result<(Vec<PathBuf>, BTreeMap<String, String>), DagError> {
    let mut paths = Vec::new();
    let mut map = BTreeMap::new();
    for pattern in &def.spec.deps {
        let expanded = expand_dep(pattern, &project.config)
            .map_err(|message| DagError::Input { stage: def.name.clone(), message })?;
        for dep in expanded {
            let full = project.root.join(&dep);
            let hash = hashes.hash_path(&full)?.ok_or_else(|| DagError::Input {
                stage: def.name.clone(),
                message: format!("input `{dep}` does not exist (looked at `{}`)", full.display()),
            })?;
            map.insert(dep, hash);
            paths.push(full);
        }
    }
    Ok((paths, map))
}

fn decide(
    project: &Project,
    def: &StageDef,
    key: &str,
    parts: &KeyParts,
    options: &RunOptions,
) -> (Decision, Vec<String>) {
    if options.force.contains(&def.name) {
        return (Decision::Run, vec!["forced".into()]);
    }
    let last = project.workspace.last(&def.name);
    match project.workspace.missing_outputs(&def.name, key) {
        Some(missing) if missing.is_empty() => {
            let reasons = match &last {
                Some(last) if last.key != key => {
                    let mut r = vec!["result for these inputs is cached".to_string()];
                    r.extend(parts.diff(&last.parts).into_iter().map(|d| format!("since last result: {d}")));
                    r
                }
                _ => vec!["unchanged".into()],
            };
            (Decision::Skip, reasons)
        }
        Some(missing) => (Decision::Run, missing.into_iter().map(|o| format!("output {o} missing")).collect()),
        None => match last {
            Some(last) if last.key == key => (Decision::Run, vec!["output missing".into()]),
            Some(last) => {
                let diff = parts.diff(&last.parts);
                (Decision::Run, if diff.is_empty() { vec!["cache key changed".into()] } else { diff })
            }
            None => (Decision::Run, vec!["never ran".into()]),
        },
    }
}

/// How a run ended, for the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    StageFailed,
    Interrupted,
}

/// Plans and executes under the workspace lock; returns the saved run record.
pub async fn run(
    project: &Project,
    registry: &Registry,
    options: &RunOptions,
) -> Result<(RunRecord, Outcome), DagError> {
    let lock = WorkspaceLock::acquire(&project.workspace.root, "run")?;
    let swept = project.workspace.sweep_temp();
    if swept > 0 {
        tracing::info!(
            "removed {swept} partial output director{} left by an interrupted run",
            if swept == 1 { "y" } else { "ies" }
        );
    }
    // Holding the lock, any record still marked running belongs to a process that died.
    for mut stale in
        RunRecord::list(&project.workspace.runs_dir()).into_iter().filter(|r| r.status == RunStatus::Running)
    {
        tracing::warn!("run {} ended without finishing (killed); marking it interrupted", stale.run_id);
        stale.status = RunStatus::Interrupted;
        stale.save(&project.workspace.runs_dir())?;
    }
    let plan = plan(project, registry, options)?;
    let started = Instant::now();
    let mut record = RunRecord {
        run_id: new_run_id(),
        status: RunStatus::Running,
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        finished_at: None,
        duration_s: 0.0,
        config: project.config_path.clone(),
        config_hash: project.config_hash(),
        tool_version: project.tool_version.clone(),
        git_commit: git_commit(&project.root),
        jobs: options.jobs.max(1),
        stages: plan
            .stages
            .iter()
            .map(|s| StageRecord {
                name: s.name.clone(),
                kind: s.kind.clone(),
                key: s.key.clone(),
                status: match s.decision {
                    Decision::Run => StageStatus::Pending,
                    Decision::Skip => StageStatus::Skipped,
                },
                reasons: s.reasons.clone(),
                duration_s: 0.0,
                output_dir: project.workspace.result_dir(&s.name, &s.key),
                outputs: project.spec.stage(&s.name).map(|d| d.spec.outs.clone()).unwrap_or_default(),
                error: None,
            })
            .collect(),
    };
    let runs_dir = project.workspace.runs_dir();
    record.save(&runs_dir)?;

    if let Some(only) = &options.only
        && let Some(def) = project.spec.stage(only)
    {
        for need in &def.spec.needs {
            let key = plan.get(need).map(|p| p.key.clone()).unwrap_or_default();
            if project.workspace.missing_outputs(need, &key).is_none_or(|m| !m.is_empty()) {
                return Err(DagError::MissingUpstream { stage: only.clone(), upstream: need.clone() });
            }
        }
    }

    let outcome = execute(project, registry, options, &plan, &mut record).await?;
    record.status = match outcome {
        Outcome::Succeeded => RunStatus::Succeeded,
        Outcome::StageFailed => RunStatus::Failed,
        Outcome::Interrupted => RunStatus::Interrupted,
    };
    record.finished_at = Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    record.duration_s = started.elapsed().as_secs_f64();
    record.save(&runs_dir)?;
    drop(lock);
    Ok((record, outcome))
}

struct Finished {
    index: usize,
    result: Result<(), String>,
    duration_s: f64,
}

async fn execute(
    project: &Project,
    registry: &Registry,
    options: &RunOptions,
    plan: &Plan,
    record: &mut RunRecord,
) -> Result<Outcome, DagError> {
    let jobs = options.jobs.max(1);
    let cancel = Arc::new(AtomicBool::new(false));
    let bars = if options.progress {
        indicatif::MultiProgress::new()
    } else {
        indicatif::MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
    };
    let style = indicatif::ProgressStyle::with_template(
        "{prefix:>10.bold} {spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    let index_of: HashMap<&str, usize> = plan.stages.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    let mut join = tokio::task::JoinSet::new();
    let mut running: HashMap<usize, PathBuf> = HashMap::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    loop {
        // Settle stages whose needs failed; start every ready stage while slots are free.
        for i in 0..plan.stages.len() {
            if record.stages[i].status != StageStatus::Pending || running.contains_key(&i) {
                continue;
            }
            let def = project.spec.stage(&plan.stages[i].name).ok_or_else(|| DagError::UnknownStage {
                name: plan.stages[i].name.clone(),
                known: project.spec.names().join(", "),
            })?;
            let mut ready = true;
            for need in &def.spec.needs {
                let Some(&j) = index_of.get(need.as_str()) else { continue };
                match record.stages[j].status {
                    StageStatus::Ran | StageStatus::Skipped => {}
                    StageStatus::Failed | StageStatus::NotRun | StageStatus::Interrupted => {
                        record.stages[i].status = StageStatus::NotRun;
                        record.stages[i].reasons.push(format!("upstream {need} did not finish"));
                        ready = false;
                        break;
                    }
                    StageStatus::Pending => ready = false,
                }
            }
            if !ready || running.len() >= jobs {
                continue;
            }
            let planned = &plan.stages[i];
            let stage = registry.get(&planned.kind).ok_or_else(|| DagError::UnknownKind {
                stage: planned.name.clone(),
                kind: planned.kind.clone(),
                known: registry.kinds().join(", "),
            })?;
            let temp = project.workspace.temp_dir(&planned.name, &planned.key);
            let _ = std::fs::remove_dir_all(&temp);
            std::fs::create_dir_all(&temp).map_err(DagError::io(&temp))?;
            let state_dir = project.workspace.state_dir(&planned.name);
            std::fs::create_dir_all(&state_dir).map_err(DagError::io(&state_dir))?;
            let inputs = def
                .spec
                .needs
                .iter()
                .map(|n| {
                    let key = plan.get(n).map(|p| p.key.clone()).unwrap_or_default();
                    (n.clone(), project.workspace.result_dir(n, &key))
                })
                .collect();
            let bar =
                bars.add(indicatif::ProgressBar::new(0).with_style(style.clone()).with_prefix(planned.name.clone()));
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
                forced: planned
                    .reasons
                    .iter()
                    .any(|r| r == "forced" || r.starts_with("upstream ") && r.ends_with(" was forced")),
                cancel: cancel.clone(),
            };
            tracing::info!(stage = %planned.name, reasons = %planned.reasons.join("; "), "running");
            running.insert(i, temp);
            join.spawn_blocking(move || {
                let started = Instant::now();
                let result = stage.run(&ctx).map_err(|e| error_chain(e.as_ref()));
                ctx.progress.bar().finish_and_clear();
                Finished { index: i, result, duration_s: started.elapsed().as_secs_f64() }
            });
        }
        if running.is_empty() {
            break;
        }
        let finished = tokio::select! {
            joined = join.join_next() => match joined {
                Some(Ok(f)) => f,
                Some(Err(e)) => return Err(DagError::Input { stage: "?".into(), message: format!("stage task panicked: {e}") }),
                None => break,
            },
            _ = &mut ctrl_c => {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!("interrupted: discarding partial outputs of {} running stage(s)", running.len());
                for (i, temp) in running.drain() {
                    let _ = std::fs::remove_dir_all(&temp);
                    record.stages[i].status = StageStatus::Interrupted;
                }
                for s in record.stages.iter_mut().filter(|s| s.status == StageStatus::Pending) {
                    s.status = StageStatus::NotRun;
                    s.reasons.push("run interrupted".into());
                }
                return Ok(Outcome::Interrupted);
            }
        };
        let i = finished.index;
        let temp = running.remove(&i).unwrap_or_default();
        let planned = &plan.stages[i];
        let stage_record = &mut record.stages[i];
        stage_record.duration_s = finished.duration_s;
        let outs = project.spec.stage(&planned.name).map(|d| d.spec.outs.clone()).unwrap_or_default();
        let result = finished.result.and_then(|()| {
            let missing: Vec<&String> = outs.iter().filter(|o| !temp.join(o).exists()).collect();
            if missing.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "finished without writing declared output(s): {}",
                    missing.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
                ))
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
                project.workspace.publish(&planned.name, &temp, &info)?;
                project.workspace.set_last(&planned.name, &info)?;
                stage_record.status = StageStatus::Ran;
                tracing::info!(stage = %planned.name, seconds = format!("{:.2}", finished.duration_s), "done");
            }
            Err(message) => {
                let _ = std::fs::remove_dir_all(&temp);
                tracing::error!(stage = %planned.name, "failed: {message}");
                stage_record.status = StageStatus::Failed;
                stage_record.error = Some(message);
            }
        }
        record.save(&project.workspace.runs_dir())?;
    }
    Ok(if record.failed() { Outcome::StageFailed } else { Outcome::Succeeded })
}

/// `outer: inner: innermost`, like anyhow's `{:#}`.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
