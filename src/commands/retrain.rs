//! `sspa-pipe retrain`: the scheduled job. Runs the pipeline (only what changed), then the
//! promotion gate: the candidate and the registry's `current` model are scored on the same
//! current evaluation split, and the candidate becomes the next version (and `current`) only if
//! `[promote] metric` improves by `min_delta` and no `guard` metric drops by more than
//! `max_drop`. Every decision is appended to `models/decisions.jsonl`; one summary line goes to
//! stdout; `[notify] command` gets the decision JSON on stdin.
//!
//! Exit codes: 0 promoted, forced or nothing changed; 4 trained but refused by the gate; 1
//! failed; 3 another run holds the workspace (`--wait` waits for it instead); 2 bad config;
//! 130 interrupted. The whole job holds the workspace lock, so a second retrain never trains
//! while the first promotes.

mod compare;
mod notify;

use crate::cli::ConfigArgs;
use crate::exit::{self, UsageError};
use anyhow::Context;
use serde_json::{Value, json};
use sspa_dag::{Outcome, RunOptions, RunRecord, StageStatus, WorkspaceLock};
use sspa_registry::{CURRENT, Champion, Decision, DecisionKind, Gate, NewVersion, Origin, Registry, Version};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// `retrain`'s flags.
#[derive(Debug, clap::Args)]
pub struct RetrainArgs {
    #[command(flatten)]
    pub config: ConfigArgs,
    /// Promote the candidate even if the gate refuses it (needs `--reason`; logged).
    #[arg(long, requires = "reason")]
    pub force_promote: bool,
    /// Why the gate is bypassed; recorded in `models/decisions.jsonl`.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// Wait up to SECONDS for another run to release the workspace instead of exiting 3.
    #[arg(long, value_name = "SECONDS")]
    pub wait: Option<f64>,
    /// Stages run at once when they do not depend on each other.
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

pub fn retrain(args: &RetrainArgs, progress: bool) -> anyhow::Result<u8> {
    if args.reason.as_deref().is_some_and(|r| r.trim().is_empty()) {
        return Err(UsageError("--reason must say why the gate is bypassed".into()).into());
    }
    if args.reason.is_some() && !args.force_promote {
        return Err(UsageError("--reason goes with --force-promote".into()).into());
    }
    let started = Instant::now();
    let (loaded, mut project) = crate::project::load(&args.config)?;
    let wait = args.wait.map(|seconds| Duration::from_secs_f64(seconds.max(0.0)));
    let lock = WorkspaceLock::acquire_within(&project.workspace.root, "sspa-pipe retrain", wait)?;
    let registry = Registry::of_workspace(&project.workspace.root);
    let champion = registry.champion(CURRENT);
    let (mut decision, metric_name) = opening_decision(&champion, &loaded.config.promote);

    // From here on every failure is a decision line too (the lock is held: the log has one writer).
    let stages = sspa_stages::registry();
    let ran = (|| -> anyhow::Result<_> {
        let remote = crate::project::remote(&loaded, &project.spec)?;
        let options = RunOptions { jobs: args.jobs.into(), progress, remote, ..RunOptions::default() };
        if let Some(current) = champion.version() {
            up_to_date(&loaded, &mut project, current, &stages, &options);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build()?;
        let result = runtime.block_on(sspa_dag::run_locked(&project, &stages, &options, &lock));
        runtime.shutdown_background();
        // The runner itself failed (its record is closed); the decision log says so too.
        Ok(result?)
    })();
    let (record, outcome) = match ran {
        Ok(done) => done,
        Err(e) => {
            decision.reasons.push(format!("{e:#}"));
            if let Err(log) = registry.record(&decision) {
                tracing::error!("the failure could not be recorded: {log}");
            }
            return Err(e);
        }
    };
    decision.run_id = Some(record.run_id.clone());

    let mut failure = None;
    let code = match outcome {
        Outcome::Succeeded => match judge(args, &loaded, &project, &registry, &champion, &record, &mut decision) {
            Ok(code) => code,
            Err(e) => {
                decision.decision = DecisionKind::Failed;
                decision.reasons.push(format!("{e:#}"));
                failure = Some(e);
                exit::STAGE_FAILED
            }
        },
        Outcome::StageFailed | Outcome::Interrupted => {
            let failed = record.stages.iter().find(|s| s.status == StageStatus::Failed);
            decision.reasons.push(match failed {
                Some(stage) => format!("stage `{}` failed: {}", stage.name, stage.error.clone().unwrap_or_default()),
                None => "the run was interrupted".into(),
            });
            if outcome == Outcome::Interrupted { exit::INTERRUPTED } else { exit::STAGE_FAILED }
        }
    };
    registry.record(&decision)?;
    drop(lock);

    let ran: Vec<&str> =
        record.stages.iter().filter(|s| s.status == StageStatus::Ran).map(|s| s.name.as_str()).collect();
    let summary = summary(&decision, &metric_name, &ran, started.elapsed().as_secs_f64());
    if args.json {
        println!("{summary}");
    } else {
        println!("{}", line(&decision, &metric_name, &ran, started.elapsed().as_secs_f64()));
    }
    notify::notify(&loaded.config.notify, &summary);
    match failure {
        Some(e) => Err(e),
        None => Ok(code),
    }
}

/// The decision as it stands before the run: `failed` until something else is known, the
/// champion as the previous version, the served metric's name, and a fallback champion's reason
/// (logged too, as is a registry with no intact champion).
fn opening_decision(champion: &Champion, promote: &sspa_config::PromoteSection) -> (Decision, String) {
    let mut decision = Decision::new(DecisionKind::Failed, CURRENT);
    decision.previous = champion.version().map(|c| c.info.version);
    decision.version = decision.previous;
    let metric_name = sspa_config::metric_names::of_model(promote.weights.name(), &promote.metric);
    decision.metric = Some(metric_name.clone());
    match champion {
        Champion::Fallback { version, why } => {
            tracing::warn!("{why}; the candidate is judged against v{}", version.info.version);
            decision.reasons.push(format!(
                "{why}; the champion is v{}, the newest intact version `{CURRENT}` pointed at before",
                version.info.version
            ));
        }
        Champion::Unusable { why } => tracing::warn!("{why}; a candidate will be refused unless forced"),
        Champion::First | Champion::Current(_) => {}
    }
    (decision, metric_name)
}

/// A warm start from `current` changes the train key (its weights are an input), so a model
/// promoted yesterday would be trained again today from itself although nothing else changed.
/// When the train stage, started the way `current` itself was started, has `current`'s own key,
/// the model is up to date: the run uses that start, finds every result cached and the gate
/// says `unchanged`.
///
/// When that start cannot be planned any more (the version `current` was warm-started from was
/// deleted, its config cannot be read), `current` is not up to date: the run warm-starts from it
/// as configured, and the gate decides.
fn up_to_date(
    loaded: &sspa_config::LoadedConfig,
    project: &mut sspa_dag::Project,
    current: &Version,
    stages: &sspa_dag::Registry,
    options: &RunOptions,
) {
    let Some(resolved) = &loaded.config.train.init_weights else { return };
    if !resolved.starts_with(current.dir.strip_prefix(&project.root).unwrap_or(&current.dir)) {
        return;
    }
    let alternative = (|| -> anyhow::Result<_> {
        let config = sspa_train::ModelConfig::load(&current.dir.join(sspa_train::files::CONFIG))?;
        let mut own_start = loaded.clone();
        own_start.resolve_init_weights(config.train.init_weights.clone());
        let alternative = sspa_dag::Project { config: own_start.json().clone(), ..project.clone() };
        let plan = sspa_dag::plan(&alternative, stages, options)?;
        Ok(plan.get("train").is_some_and(|stage| stage.key == current.info.origin.train_key).then_some(alternative))
    })();
    match alternative {
        Ok(Some(alternative)) => {
            tracing::info!(
                "train: v{} was trained on exactly these inputs; no warm start from itself",
                current.info.version
            );
            *project = alternative;
        }
        Ok(None) => {}
        Err(e) => tracing::info!(
            "train: v{}'s own start cannot be planned any more ({e:#}); it is warm-started from as configured",
            current.info.version
        ),
    }
}

/// The gate's decision after a successful run; promotes when it says so.
fn judge(
    args: &RetrainArgs,
    loaded: &sspa_config::LoadedConfig,
    project: &sspa_dag::Project,
    registry: &Registry,
    champion: &Champion,
    record: &RunRecord,
    decision: &mut Decision,
) -> anyhow::Result<u8> {
    let config = &loaded.config;
    let stage = |name: &str| -> anyhow::Result<(String, PathBuf)> {
        let stage =
            record.stages.iter().find(|s| s.name == name).with_context(|| format!("the run has no `{name}` stage"))?;
        Ok((stage.key.clone(), stage.output_dir.clone()))
    };
    let (train_key, train_dir) = stage("train")?;
    let (_, evaluate_dir) = stage("evaluate")?;
    let metrics = compare::candidate_metrics(&evaluate_dir)?;
    decision.candidate = compare::served_headline(&metrics, config.promote.weights);

    if let Some(current) = champion.version().filter(|c| c.info.origin.train_key == train_key) {
        decision.decision = DecisionKind::Unchanged;
        decision.candidate = compare::served_headline(&current.info.origin.metrics, config.promote.weights);
        decision.reasons.push(format!(
            "the trained model is v{} (train key {})",
            current.info.version,
            &train_key[..12]
        ));
        return Ok(exit::OK);
    }

    let promote = gate_verdict(config, champion, &stage, &evaluate_dir, decision)?;
    let forced = !promote && args.force_promote;
    if !promote && !forced {
        decision.decision = DecisionKind::Refused;
        return Ok(exit::GATE_REFUSED);
    }
    if let Some(reason) = args.reason.as_deref().filter(|_| forced) {
        decision.reasons.push(format!("forced: {reason}"));
    }
    let outs: Vec<&str> =
        project.spec.stage("train").map(|def| def.spec.outs.iter().map(String::as_str).collect()).unwrap_or_default();
    let lineage = lineage(project, record)?;
    let labels = sspa_train::ModelConfig::load(&train_dir.join(sspa_train::files::CONFIG))?.labels;
    let origin = Origin {
        run_id: record.run_id.clone(),
        train_key,
        weights: config.promote.weights.name().into(),
        labels,
        metrics,
        lineage,
    };
    let version = registry.register(NewVersion { source: &train_dir, files: &outs, origin })?;
    let why = if forced { "forced" } else { "promoted by the gate" };
    registry.set_alias(CURRENT, version.info.version, why)?;
    decision.decision = if forced { DecisionKind::Forced } else { DecisionKind::Promoted };
    decision.version = Some(version.info.version);
    Ok(exit::OK)
}

/// Whether the gate promotes the candidate over `champion`, with its reasons added to
/// `decision`; the candidate and current metrics are the re-scored ones when both were compared.
fn gate_verdict(
    config: &sspa_config::DomainConfig,
    champion: &Champion,
    stage: &dyn Fn(&str) -> anyhow::Result<(String, PathBuf)>,
    evaluate_dir: &Path,
    decision: &mut Decision,
) -> anyhow::Result<bool> {
    let gate = Gate {
        metric: config.promote.metric.clone(),
        min_delta: config.promote.min_delta,
        guard: config.promote.guard.clone(),
        max_drop: config.promote.max_drop,
    };
    let mut promote = true;
    match champion {
        Champion::First => {
            decision.reasons.push("no version was ever promoted: the candidate becomes the first version".into());
        }
        Champion::Unusable { why } => {
            promote = false;
            decision.reasons.push(format!(
                "no intact champion to compare with ({why}); refused (`--force-promote --reason` promotes anyway)"
            ));
        }
        Champion::Current(current) | Champion::Fallback { version: current, .. } => {
            let (_, features_dir) = stage("features")?;
            let (_, shard_dir) = stage("shard")?;
            match compare::compare(config, current, evaluate_dir, &features_dir, &shard_dir, &|| false) {
                Ok(comparison) => {
                    decision.reasons.push(format!(
                        "both scored on `{}` ({} images, {} shared labels{}{}); v{} re-scored",
                        config.evaluate.split,
                        comparison.images,
                        comparison.labels.len(),
                        if comparison.added.is_empty() {
                            String::new()
                        } else {
                            format!("; new: {}", comparison.added.join(", "))
                        },
                        if comparison.removed.is_empty() {
                            String::new()
                        } else {
                            format!("; removed: {}", comparison.removed.join(", "))
                        },
                        current.info.version
                    ));
                    let verdict = if comparison.added.is_empty() {
                        gate.judge(&comparison.candidate, &comparison.current)
                    } else {
                        gate.judge_new_labels(&comparison.candidate, &comparison.current)
                    };
                    promote = verdict.promote;
                    decision.reasons.extend(verdict.reasons);
                    decision.candidate = comparison.candidate;
                    decision.current = comparison.current;
                }
                Err(e) => {
                    promote = false;
                    decision.reasons.push(format!("the candidate cannot be compared: {e:#}"));
                }
            }
        }
    }
    Ok(promote)
}

/// What the report's lineage shows, plus the run's stage keys and git commit.
fn lineage(project: &sspa_dag::Project, record: &RunRecord) -> anyhow::Result<Value> {
    let inputs = record.stages.iter().map(|s| (s.name.clone(), s.output_dir.clone())).collect();
    let own = json!({"domain": project.config["domain"], "evaluate": project.config["evaluate"]});
    let mut lineage =
        serde_json::to_value(sspa_stages::report_lineage(&inputs, &own).map_err(|e| anyhow::anyhow!("lineage: {e}"))?)?;
    lineage["git_commit"] = json!(record.git_commit);
    lineage["run_config_hash"] = json!(record.config_hash);
    lineage["stage_keys"] = record.stages.iter().map(|s| (s.name.clone(), json!(s.key))).collect();
    Ok(lineage)
}

fn value_of(report: &Value, metric: &str) -> Option<f64> {
    sspa_registry::metric(report, sspa_config::metric_names::without_model(metric))
}

/// The scheduler's JSON line.
fn summary(decision: &Decision, metric: &str, ran: &[&str], seconds: f64) -> Value {
    json!({
        "decision": decision.decision.name(),
        "version": decision.version,
        "previous": decision.previous,
        "alias": decision.alias,
        "run_id": decision.run_id,
        "metric": metric,
        "candidate": value_of(&decision.candidate, metric),
        "current": value_of(&decision.current, metric),
        "reasons": decision.reasons,
        "stages_ran": ran,
        "seconds": (seconds * 100.0).round() / 100.0,
    })
}

/// `promoted v2 (ema.mAP 82.10 vs 81.70); ran shard, train, evaluate, report; 412.3 s`.
fn line(decision: &Decision, metric: &str, ran: &[&str], seconds: f64) -> String {
    let numbers = match (value_of(&decision.candidate, metric), value_of(&decision.current, metric)) {
        (Some(new), Some(old)) => format!(" ({metric} {new:.2} vs {old:.2})"),
        (Some(new), None) => format!(" ({metric} {new:.2})"),
        _ => String::new(),
    };
    let version = decision.version.map(|v| format!(" v{v}")).unwrap_or_default();
    let ran = if ran.is_empty() { "no stage ran".to_owned() } else { format!("ran {}", ran.join(", ")) };
    let why = decision.reasons.last().map(|r| format!("; {r}")).unwrap_or_default();
    format!("{}{version}{numbers}; {ran}; {seconds:.1} s{why}", decision.decision.name())
}
