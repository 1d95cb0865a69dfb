use super::print_json;
use crate::cli::ConfigArgs;
use crate::exit;
use serde::Serialize;
use sspa_dag::{Decision, RunEntry, RunOptions, StageStatus, WorkspaceLock};

#[derive(Serialize)]
struct StageState {
    name: String,
    kind: String,
    state: String,
    reasons: Vec<String>,
    last_finished: Option<String>,
}

#[derive(Serialize)]
struct Status {
    workspace: String,
    running: Option<sspa_dag::lock::Holder>,
    runs: Vec<RunSummary>,
    stages: Vec<StageState>,
}

#[derive(Serialize)]
struct RunSummary {
    run_id: String,
    status: String,
    duration_s: f64,
    ran: usize,
    skipped: usize,
    failed: usize,
    /// The run index's metrics (`evaluate.raw.mAP`, ...).
    metrics: std::collections::BTreeMap<String, serde_json::Value>,
}

pub fn status(config: &ConfigArgs, runs: usize, json: bool) -> anyhow::Result<u8> {
    let (_, project) = crate::project::load(config)?;
    let registry = sspa_stages::registry();
    let holder = WorkspaceLock::holder(&project.workspace.root);
    let index = sspa_dag::run_index(&project.workspace, &project.spec);
    let count = |r: &RunEntry, s: StageStatus| r.stages.iter().filter(|x| x.status == s).count();
    let summaries: Vec<RunSummary> = index
        .iter()
        .rev()
        .take(runs)
        .map(|r| RunSummary {
            run_id: r.run_id.clone(),
            status: if r.status == sspa_dag::RunStatus::Running && holder.is_none() {
                "killed (record left running)".into()
            } else {
                format!("{:?}", r.status).to_lowercase()
            },
            duration_s: r.duration_s,
            ran: count(r, StageStatus::Ran),
            skipped: count(r, StageStatus::Skipped),
            failed: count(r, StageStatus::Failed),
            metrics: r.metrics.clone(),
        })
        .collect();
    let stages = stage_states(&project, &registry);
    let status =
        Status { workspace: project.workspace.root.display().to_string(), running: holder, runs: summaries, stages };
    if json {
        print_json(&status)?;
        return Ok(exit::OK);
    }
    print_text(&status);
    Ok(exit::OK)
}

/// Each stage of the pipeline: whether it is up to date or would run, and why.
fn stage_states(project: &sspa_dag::Project, registry: &sspa_dag::Registry) -> Vec<StageState> {
    let mut stages = Vec::new();
    for def in &project.spec.stages {
        let last = project.workspace.last(&def.name).map(|l| l.finished_at);
        let (state, reasons) = if registry.get(&def.kind).is_none() {
            ("not provided by this build".to_string(), Vec::new())
        } else {
            let options = RunOptions { until: vec![def.name.clone()], ..RunOptions::default() };
            match sspa_dag::plan(project, registry, &options) {
                Ok(plan) => match plan.get(&def.name) {
                    Some(p) if p.decision == Decision::Skip => ("up to date".to_string(), p.reasons.clone()),
                    Some(p) => ("would run".to_string(), p.reasons.clone()),
                    None => ("unknown".to_string(), Vec::new()),
                },
                Err(e) => ("cannot plan".to_string(), vec![e.to_string()]),
            }
        };
        stages.push(StageState { name: def.name.clone(), kind: def.kind.clone(), state, reasons, last_finished: last });
    }
    stages
}

/// The human-readable status: workspace, lock holder, recent runs with their mAP, stages.
fn print_text(status: &Status) {
    println!("workspace {}", status.workspace);
    if let Some(h) = &status.running {
        println!("running: PID {} since {}", h.pid, h.started);
    }
    println!("\nrecent runs:");
    if status.runs.is_empty() {
        println!("  (none)");
    }
    for r in &status.runs {
        // The headline metric of each scored model, e.g. `mAP raw 81.85 ema 82.54`.
        let maps: Vec<String> = r
            .metrics
            .iter()
            .filter_map(|(name, value)| {
                let model = name.strip_prefix("evaluate.")?.strip_suffix(".mAP")?;
                Some(format!("{model} {:.2}", value.as_f64()?))
            })
            .collect();
        let maps = if maps.is_empty() { String::new() } else { format!("  mAP {}", maps.join(" ")) };
        println!(
            "  {}  {:<10} {:>8.2}s  ran {} skipped {} failed {}{maps}",
            r.run_id, r.status, r.duration_s, r.ran, r.skipped, r.failed
        );
    }
    println!("\nstages:");
    for s in &status.stages {
        println!(
            "  {:<10} {:<26} last result {:<26} {}",
            s.name,
            s.state,
            s.last_finished.as_deref().unwrap_or("-"),
            s.reasons.join("; ")
        );
    }
}
