//! The experiment engine: a batch of variants (a grid of `-S` overrides × seeds, or the ablation
//! study's rows), each a normal pipeline run that reuses every upstream result whose key the
//! variant does not change, all under one workspace lock.
//!
//! `experiments/<name>.json` in the workspace ([`Experiment`]) records each variant's overrides,
//! config hash, stage keys, run id and status as it finishes, so a batch stopped by Ctrl-C or
//! `kill -9` is resumed by the same command: a variant that succeeded is not run again as long
//! as planning it now gives its run's stage keys (same config, data, pipeline file and upstream
//! results). A record that cannot be read is never replaced ([`ExpError::Record`]).
//!
//! The caller loads and validates the variants' configs ([`LoadedVariant`]); variants with the
//! same resolved config run once.

use crate::{ExpError, RunStatus};
use serde::{Deserialize, Serialize};
use sspa_config::Override;
use sspa_dag::{Outcome, Project, RemoteHandle, RunOptions, WorkspaceLock};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// `experiments/<name>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Experiment {
    pub name: String,
    pub config: PathBuf,
    /// The `-S` arguments (or the ablation tables) as given.
    pub grid: Vec<String>,
    pub seeds: Vec<u64>,
    pub variants: Vec<Variant>,
}

/// One distinct config of a batch and how its run ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Variant {
    /// `key=value` overrides, in grid order (the seed last).
    pub overrides: Vec<String>,
    pub config_hash: String,
    pub status: RunStatus,
    pub run_id: Option<String>,
    pub error: Option<String>,
    /// The run index's metrics of the variant's run (`evaluate.raw.mAP`, ...).
    #[serde(default)]
    pub metrics: BTreeMap<String, serde_json::Value>,
    /// Each stage's key in the variant's run: a resumed batch counts the variant as done only if
    /// planning it now gives the same keys.
    #[serde(default)]
    pub stage_keys: BTreeMap<String, String>,
}

/// `-S KEY=V1,V2`: one override per value, split at the commas that are not inside brackets,
/// braces or quotes.
pub fn axis(argument: &str) -> Result<Vec<Override>, String> {
    let (key, values) = argument
        .split_once('=')
        .ok_or_else(|| format!("`-S {argument}` is not KEY=V1,V2 (e.g. `train.lr=1e-3,2e-3`)"))?;
    split_top_level(values)
        .into_iter()
        .map(|value| format!("{key}={}", value.trim()).parse::<Override>().map_err(|e| format!("`-S {argument}`: {e}")))
        .collect()
}

/// `text` split at the commas that are not inside brackets, braces or quotes.
pub fn split_top_level(values: &str) -> Vec<&str> {
    let (mut depth, mut quote, mut start) = (0_i32, None, 0);
    let mut pieces = Vec::new();
    for (index, character) in values.char_indices() {
        match (quote, character) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(character),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                pieces.push(&values[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    pieces.push(&values[start..]);
    pieces
}

/// The cartesian product of the axes, then × seeds (`train.seed`, last).
pub fn grid(axes: &[Vec<Override>], seeds: &[u64]) -> Result<Vec<Vec<Override>>, String> {
    if axes.is_empty() && seeds.is_empty() {
        return Err("the grid is empty: give `-S KEY=V1,V2` and/or `--seeds S1,S2`".into());
    }
    let mut variants: Vec<Vec<Override>> = vec![Vec::new()];
    for values in axes {
        variants = variants
            .iter()
            .flat_map(|prefix| {
                values.iter().map(move |value| {
                    let mut next = prefix.clone();
                    next.push(value.clone());
                    next
                })
            })
            .collect();
    }
    if !seeds.is_empty() {
        let mut seeded = Vec::new();
        for variant in &variants {
            for seed in seeds {
                let mut next = variant.clone();
                next.push(format!("train.seed={seed}").parse()?);
                seeded.push(next);
            }
        }
        variants = seeded;
    }
    Ok(variants)
}

/// `<workspace>/experiments/<name>.json`.
pub fn record_path(workspace: &Path, name: &str) -> PathBuf {
    workspace.join("experiments").join(format!("{name}.json"))
}

/// The experiment record at `path`; `None` when there is none.
///
/// # Errors
/// [`ExpError::Record`] naming the file when it cannot be read or parsed.
pub fn read_record(path: &Path) -> Result<Option<Experiment>, ExpError> {
    let record = |reason: String| ExpError::Record { path: path.to_owned(), reason };
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(record(error.to_string())),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|error| record(error.to_string()))
}

/// A variant whose config the caller loaded and validated.
pub struct LoadedVariant {
    /// Its overrides (the seed last).
    pub overrides: Vec<Override>,
    pub project: Project,
}

/// A batch of variants run under one workspace lock (`exp run`, `ablate`).
pub struct Batch<'a> {
    pub name: String,
    /// The domain config the variants override.
    pub config: PathBuf,
    /// What the record says the batch was made of (`-S` arguments, or the ablation tables).
    pub grid: Vec<String>,
    pub seeds: Vec<u64>,
    pub variants: Vec<LoadedVariant>,
    pub stages: &'a sspa_dag::Registry,
    pub remote: Option<RemoteHandle>,
    /// Variants run at once.
    pub jobs: u16,
    pub progress: bool,
    /// The command that holds the lock, for a second one's error.
    pub command: &'static str,
}

/// What a batch left.
pub struct BatchOutcome {
    pub experiment: Experiment,
    pub path: PathBuf,
    /// The config hash of every variant of [`Batch::variants`], in order (duplicates share one).
    pub hashes: Vec<String>,
    pub interrupted: bool,
}

impl BatchOutcome {
    /// Whether every variant succeeded.
    pub fn succeeded(&self) -> bool {
        self.experiment.variants.iter().all(|v| v.status == RunStatus::Succeeded)
    }
}

/// Whether `name` can name an experiment (a file name: a-z, A-Z, 0-9, `-`, `_`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Runs each distinct config of `batch` once through the runner under one lock, records each
/// variant as it finishes and resumes a stopped batch (see the module docs).
///
/// # Errors
/// [`ExpError::Name`], [`ExpError::Dag`] (the lock is held: [`sspa_dag::DagError::Locked`]),
/// [`ExpError::Record`].
pub fn run_batch(batch: Batch<'_>) -> Result<BatchOutcome, ExpError> {
    let name = &batch.name;
    if !valid_name(name) {
        return Err(ExpError::Name(name.clone()));
    }
    let hashes: Vec<String> = batch.variants.iter().map(|v| v.project.config_hash()).collect();
    let unique = distinct(batch.variants, &hashes);
    let workspace = unique.first().map(|d| d.project.workspace.clone()).ok_or(ExpError::NoVariants)?;
    let lock = WorkspaceLock::acquire(&workspace.root, batch.command)?;
    let path = record_path(&workspace.root, name);
    let previous = read_record(&path)?;
    let stages = batch.stages;
    // Variants run `jobs` at once, each its stages one at a time, beside each other under the one
    // lock: the workspace is recovered once, here, not by each run.
    let jobs = usize::from(batch.jobs).max(1);
    let options = RunOptions {
        jobs: 1,
        progress: batch.progress,
        remote: batch.remote,
        beside_others: true,
        ..RunOptions::default()
    };
    sspa_dag::recover(&workspace)?;
    let mut experiment = Experiment {
        name: name.clone(),
        config: batch.config,
        grid: batch.grid,
        seeds: batch.seeds,
        variants: opening_variants(&unique, previous.as_ref(), stages, &options),
    };
    let save = |experiment: &Experiment| {
        sspa_fsio::write_json_atomic(&path, experiment).map_err(|source| ExpError::Write { path: path.clone(), source })
    };
    save(&experiment)?;

    let interrupted = schedule(&unique, &mut experiment, stages, &options, &lock, jobs, &save)?;
    drop(lock);
    Ok(BatchOutcome { experiment, path, hashes, interrupted })
}

/// Runs the queued variants of `experiment`, `jobs` at a time, under `lock`; a variant whose
/// results another running variant is computing waits for them. Saves the record after each
/// variant and returns whether a run was interrupted.
fn schedule(
    unique: &[Distinct],
    experiment: &mut Experiment,
    stages: &sspa_dag::Registry,
    options: &RunOptions,
    lock: &WorkspaceLock,
    jobs: usize,
    save: &dyn Fn(&Experiment) -> Result<(), ExpError>,
) -> Result<bool, ExpError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
        .map_err(|source| ExpError::Runtime { source })?;
    let total = unique.len();
    let mut interrupted = false;
    let queued = experiment.variants.iter().filter(|v| v.status != RunStatus::Succeeded).count();
    tracing::info!(
        "{}: {total} variant(s), {} done earlier, {queued} queued, {jobs} at a time",
        experiment.name,
        total - queued
    );
    let label = |index: usize| format!("variant {}/{total} [{}]", index + 1, unique[index].labels.join(", "));
    let mut pending = Vec::new();
    for (index, variant) in experiment.variants.iter().enumerate() {
        if variant.status == RunStatus::Succeeded {
            tracing::info!("{}: done earlier (run {})", label(index), variant.run_id.as_deref().unwrap_or("?"));
        } else {
            tracing::info!("{}: queued", label(index));
            pending.push(index);
        }
    }
    runtime.block_on(async {
        use futures::StreamExt;
        use tracing::Instrument;
        let mut running = futures::stream::FuturesUnordered::new();
        // The (stage, key) results each running variant computes: a variant that would compute
        // one of them too waits until it is published, then reuses it.
        let mut busy: HashMap<usize, Vec<(String, String)>> = HashMap::new();
        loop {
            let mut started = Vec::new();
            for &index in &pending {
                if running.len() >= jobs || interrupted {
                    break;
                }
                let project = &unique[index].project;
                // One variant at a time never overlaps another: no extra plan (the run makes its own).
                let computes = if jobs == 1 { Vec::new() } else { computes(project, stages, options).await };
                if busy.values().flatten().any(|taken| computes.contains(taken)) {
                    continue;
                }
                tracing::info!("{}: running", label(index));
                busy.insert(index, computes);
                started.push(index);
                let span = tracing::info_span!("variant", n = index + 1);
                running.push(
                    async move { (index, sspa_dag::run_locked(project, stages, options, lock).await) }.instrument(span),
                );
            }
            pending.retain(|index| !started.contains(index));
            let Some((index, result)) = running.next().await else { break };
            busy.remove(&index);
            let project = &unique[index].project;
            let variant = &mut experiment.variants[index];
            interrupted |= settle(variant, project, result);
            match variant.status {
                RunStatus::Succeeded => tracing::info!("{}: done{}", label(index), headline(&variant.metrics)),
                status => {
                    tracing::error!("{}: {}: {}", label(index), status.as_str(), variant.error.as_deref().unwrap_or(""))
                }
            }
            save(experiment)?;
        }
        Ok::<(), ExpError>(())
    })?;
    runtime.shutdown_background();
    Ok(interrupted)
}

/// One distinct config of a batch: the override arguments of its first variant, its project and
/// its config hash.
struct Distinct {
    labels: Vec<String>,
    project: Project,
    hash: String,
}

/// The variants with distinct configs (`hashes[i]` is the config hash of `variants[i]`); a variant
/// with the config of an earlier one runs once, as that one (logged).
fn distinct(variants: Vec<LoadedVariant>, hashes: &[String]) -> Vec<Distinct> {
    let mut unique: Vec<Distinct> = Vec::new();
    for (variant, hash) in variants.into_iter().zip(hashes) {
        let labels: Vec<String> = variant.overrides.iter().map(|o| o.argument.clone()).collect();
        match unique.iter().find(|other| other.hash == *hash) {
            Some(first) => {
                tracing::info!(
                    "variant [{}] is the same config as [{}]: run once",
                    labels.join(", "),
                    first.labels.join(", ")
                )
            }
            None => unique.push(Distinct { labels, project: variant.project, hash: hash.clone() }),
        }
    }
    unique
}

/// Each distinct config's variant as the batch starts: the earlier record's, when it succeeded
/// and is [`still_done`]; queued otherwise.
fn opening_variants(
    unique: &[Distinct],
    previous: Option<&Experiment>,
    stages: &sspa_dag::Registry,
    options: &RunOptions,
) -> Vec<Variant> {
    unique
        .iter()
        .map(|Distinct { labels, project, hash }| {
            let done = previous
                .and_then(|p| p.variants.iter().find(|v| v.config_hash == *hash && v.status == RunStatus::Succeeded))
                .filter(|earlier| still_done(earlier, project, stages, options))
                .cloned();
            done.unwrap_or(Variant {
                overrides: labels.clone(),
                config_hash: hash.clone(),
                status: RunStatus::Queued,
                run_id: None,
                error: None,
                metrics: BTreeMap::new(),
                stage_keys: BTreeMap::new(),
            })
        })
        .collect()
}

/// The (stage, key) results a run of `project` would compute now (none when it cannot be planned:
/// the run reports that).
async fn computes(project: &Project, stages: &sspa_dag::Registry, options: &RunOptions) -> Vec<(String, String)> {
    match sspa_dag::plan_with_remote(project, stages, options).await {
        Ok(plan) => plan
            .stages
            .iter()
            .filter(|s| s.decision != sspa_dag::Decision::Skip)
            .map(|s| (s.name.clone(), s.key.clone()))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Records a finished run in its variant: run id, stage keys, status, the first error and the
/// run index's metrics. Returns whether the run was interrupted.
fn settle(
    variant: &mut Variant,
    project: &Project,
    result: Result<(sspa_dag::RunRecord, Outcome), sspa_dag::DagError>,
) -> bool {
    match result {
        Ok((record, outcome)) => {
            variant.run_id = Some(record.run_id.clone());
            variant.stage_keys = record.stages.iter().map(|s| (s.name.clone(), s.key.clone())).collect();
            let failed = record.stages.iter().find(|s| s.error.is_some());
            variant.error = failed.map(|s| format!("stage `{}`: {}", s.name, s.error.clone().unwrap_or_default()));
            variant.status = match outcome {
                Outcome::Succeeded => RunStatus::Succeeded,
                Outcome::StageFailed => RunStatus::Failed,
                Outcome::Interrupted => RunStatus::Interrupted,
            };
            variant.metrics = sspa_dag::run_index(&project.workspace, &project.spec)
                .into_iter()
                .find(|entry| entry.run_id == record.run_id)
                .map(|entry| entry.metrics)
                .unwrap_or_default();
        }
        Err(error) => {
            variant.status = RunStatus::Failed;
            variant.error = Some(sspa_dag::error_chain(&error));
        }
    }
    variant.status == RunStatus::Interrupted
}

/// Whether a variant that succeeded earlier is still done: planning it now gives the stage keys
/// of its run (a variant recorded without keys, by an older version, runs again; every result
/// it reuses is cached, so that costs little).
fn still_done(earlier: &Variant, project: &Project, stages: &sspa_dag::Registry, options: &RunOptions) -> bool {
    let run = earlier.run_id.as_deref().unwrap_or("?");
    let plan = match sspa_dag::plan(project, stages, options) {
        Ok(plan) => plan,
        Err(error) => {
            tracing::info!("[{}] (run {run}) cannot be planned now ({error}): run again", earlier.overrides.join(", "));
            return false;
        }
    };
    let now: BTreeMap<String, String> =
        plan.stages.iter().chain(&plan.context).map(|s| (s.name.clone(), s.key.clone())).collect();
    if now == earlier.stage_keys {
        return true;
    }
    let changed: Vec<&str> = now
        .iter()
        .filter(|(stage, key)| earlier.stage_keys.get(*stage) != Some(key))
        .map(|(stage, _)| stage.as_str())
        .collect();
    tracing::info!(
        "[{}] succeeded earlier (run {run}), but the keys of {} differ now (its data, pipeline or inputs changed): run again",
        earlier.overrides.join(", "),
        if earlier.stage_keys.is_empty() { "its stages (not recorded)".to_owned() } else { changed.join(", ") }
    );
    false
}

/// `  mAP raw 81.85 ema 82.54` from the run index's metrics, or nothing.
pub fn headline(metrics: &BTreeMap<String, serde_json::Value>) -> String {
    let maps: Vec<String> = metrics
        .iter()
        .filter_map(|(name, value)| {
            let model = name.strip_prefix("evaluate.")?.strip_suffix(".mAP")?;
            Some(format!("{model} {:.2}", value.as_f64()?))
        })
        .collect();
    if maps.is_empty() { String::new() } else { format!("  mAP {}", maps.join(" ")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_split_at_top_level_commas() {
        let values = |argument: &str| -> Vec<String> {
            axis(argument).expect("axis").into_iter().map(|o| o.value.to_string()).collect()
        };
        assert_eq!(values("train.lr=1e-3, 2e-3"), ["0.001", "0.002"]);
        assert_eq!(values("llm.stop=[\"a\", \"b\"],[\"c\"]"), ["[\"a\", \"b\"]", "[\"c\"]"]);
        assert_eq!(values("llm.model=\"a,b\",c"), ["\"a,b\"", "\"c\""]);
        assert!(axis("train.lr").expect_err("no =").contains("is not KEY=V1,V2"));
    }

    #[test]
    fn the_grid_is_the_product_times_the_seeds() {
        let axes = vec![axis("train.lr=1,2").expect("axis"), axis("ablation.gate=true,false").expect("axis")];
        let variants = grid(&axes, &[0, 1]).expect("grid");
        assert_eq!(variants.len(), 8);
        let names: Vec<String> = variants[1].iter().map(|o| o.argument.clone()).collect();
        assert_eq!(names, ["train.lr=1", "ablation.gate=true", "train.seed=1"]);
        assert!(grid(&[], &[]).expect_err("empty").contains("the grid is empty"));
        assert_eq!(grid(&[], &[3]).expect("seeds only").len(), 1);
    }

    #[test]
    fn a_record_that_cannot_be_read_is_an_error_naming_it_and_a_missing_one_is_none() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = record_path(dir.path(), "lr");
        assert!(read_record(&path).expect("missing").is_none());
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(&path, b"{\"name\": ").expect("write");
        let error = read_record(&path).expect_err("torn").to_string();
        assert!(error.contains("lr.json") && error.contains("cannot be read"), "{error}");
        let experiment = Experiment {
            name: "lr".into(),
            config: "domains/demo.toml".into(),
            grid: vec!["train.lr=1e-3".into()],
            seeds: vec![],
            variants: vec![Variant {
                overrides: vec!["train.lr=1e-3".into()],
                config_hash: "h".into(),
                status: RunStatus::Succeeded,
                run_id: Some("r".into()),
                error: None,
                metrics: BTreeMap::new(),
                stage_keys: BTreeMap::from([("train".into(), "k".into())]),
            }],
        };
        sspa_fsio::write_json_atomic(&path, &experiment).expect("write");
        let read = read_record(&path).expect("read").expect("some");
        assert_eq!(read.variants[0].status, RunStatus::Succeeded);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("\"status\": \"succeeded\""), "the record's spelling: {text}");
    }
}
