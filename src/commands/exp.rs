//! `sspa-pipe exp run`: a grid of `-S` overrides (× seeds), each variant a normal pipeline run
//! that reuses every upstream result whose key the variant does not change.
//!
//! Every variant is loaded and validated before anything runs (all problems at once, each named
//! by its argument); variants with the same resolved config run once. The batch holds the
//! workspace lock from the first variant to the last. `experiments/<name>.json` in the workspace
//! records each variant's overrides, config hash, run id and status as it finishes, so a batch
//! stopped by Ctrl-C or `kill -9` is resumed by the same command: finished variants are not run
//! again. The summary table's numbers come from the run index (`sspa_dag::run_index`).

use super::print_json;
use crate::exit::{self, UsageError};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use sspa_config::Override;
use sspa_dag::{Outcome, RunOptions, WorkspaceLock};
use std::path::{Path, PathBuf};

mod ablate;
mod show;
pub use ablate::{AblateArgs, ablate};
pub use show::{ExpShowArgs, show};

/// `exp run` arguments.
/// What `exp run` and `ablate` share.
#[derive(Debug, clap::Args)]
pub struct BatchArgs {
    /// Domain config, e.g. `domains/demo.toml`.
    pub config: PathBuf,
    /// Pipeline definition to use instead of `<project>/pipeline/pipeline.toml`.
    #[arg(long, value_name = "FILE")]
    pub pipeline: Option<PathBuf>,
    /// Seeds (`train.seed`) to run every variant with, e.g. `--seeds 0,1,2` (default: the
    /// config's seed).
    #[arg(long, value_delimiter = ',', value_name = "S1,S2")]
    pub seeds: Vec<u64>,
    /// Variants run at once (each runs its stages one at a time; a variant that would compute a
    /// result another running variant computes waits for it and reuses it).
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Experiment name (default: derived from what is run — the grid, or the tables — and the
    /// seeds, so the same batch resumes).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct ExpRunArgs {
    #[command(flatten)]
    pub batch: BatchArgs,
    /// A grid axis, `-S train.lr=1e-3,2e-3`: comma-separated TOML values (commas inside `[...]`,
    /// `{...}` or quotes belong to the value). Repeatable; the grid is their product.
    #[arg(short = 'S', long = "set", value_name = "KEY=V1,V2")]
    pub set: Vec<String>,
    /// Print the experiment record as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `experiments/<name>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Experiment {
    pub name: String,
    pub config: PathBuf,
    /// The `-S` arguments and seeds as given.
    pub grid: Vec<String>,
    pub seeds: Vec<u64>,
    pub variants: Vec<Variant>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VariantStatus {
    Queued,
    Succeeded,
    Failed,
    Interrupted,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Variant {
    /// `key=value` overrides, in grid order (the seed last).
    pub overrides: Vec<String>,
    pub config_hash: String,
    pub status: VariantStatus,
    pub run_id: Option<String>,
    pub error: Option<String>,
    /// The run index's metrics of the variant's run (`evaluate.raw.mAP`, ...).
    #[serde(default)]
    pub metrics: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Splits `KEY=V1,V2` at the commas that are not inside brackets, braces or quotes.
fn axis(argument: &str) -> Result<Vec<Override>, String> {
    let (key, values) = argument
        .split_once('=')
        .ok_or_else(|| format!("`-S {argument}` is not KEY=V1,V2 (e.g. `train.lr=1e-3,2e-3`)"))?;
    split_top_level(values)
        .into_iter()
        .map(|value| format!("{key}={}", value.trim()).parse::<Override>().map_err(|e| format!("`-S {argument}`: {e}")))
        .collect()
}

/// `text` split at the commas that are not inside brackets, braces or quotes.
fn split_top_level(values: &str) -> Vec<&str> {
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

/// The cartesian product of the axes, then × seeds.
fn grid(axes: &[Vec<Override>], seeds: &[u64]) -> Result<Vec<Vec<Override>>, String> {
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
    if axes.is_empty() && seeds.is_empty() {
        return Err("the grid is empty: give `-S KEY=V1,V2` and/or `--seeds S1,S2`".into());
    }
    Ok(variants)
}

fn default_name(args: &ExpRunArgs) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(args.batch.config.as_os_str().as_encoded_bytes());
    for set in &args.set {
        hasher.update(set.as_bytes());
        hasher.update(b"\0");
    }
    for seed in &args.batch.seeds {
        hasher.update(&seed.to_le_bytes());
    }
    format!("exp-{}", &hasher.finalize().to_hex()[..10])
}

fn record_path(workspace: &Path, name: &str) -> PathBuf {
    workspace.join("experiments").join(format!("{name}.json"))
}

/// `exp run`.
pub fn run(args: &ExpRunArgs, progress: bool) -> anyhow::Result<u8> {
    let axes: Vec<Vec<Override>> = args.set.iter().map(|a| axis(a)).collect::<Result<_, _>>().map_err(UsageError)?;
    let variants = grid(&axes, &args.batch.seeds).map_err(UsageError)?;
    let name = args.batch.name.clone().unwrap_or_else(|| default_name(args));
    let batch = Batch {
        config: args.batch.config.clone(),
        pipeline: args.batch.pipeline.clone(),
        name,
        grid: args.set.clone(),
        seeds: args.batch.seeds.clone(),
        variants,
        jobs: args.batch.jobs,
        progress,
        command: "exp run",
    };
    let outcome = run_batch(&batch)?;
    if args.json {
        print_json(&outcome.experiment)?;
    } else {
        println!("experiment {}: {}", outcome.experiment.name, outcome.path.display());
        for variant in &outcome.experiment.variants {
            println!(
                "  {:<12} {}{}",
                format!("{:?}", variant.status).to_lowercase(),
                variant.overrides.join(", "),
                headline(&variant.metrics)
            );
        }
    }
    Ok(outcome.exit_code())
}

/// A batch of variants run under one workspace lock (`exp run`, `ablate`).
pub(crate) struct Batch {
    pub config: PathBuf,
    pub pipeline: Option<PathBuf>,
    pub name: String,
    /// What the record says the batch was made of (`-S` arguments, or the ablation tables).
    pub grid: Vec<String>,
    pub seeds: Vec<u64>,
    /// Each variant's overrides (the seed included).
    pub variants: Vec<Vec<Override>>,
    pub jobs: u16,
    pub progress: bool,
    /// The command that holds the lock, for a second one's error.
    pub command: &'static str,
}

pub(crate) struct BatchOutcome {
    pub experiment: Experiment,
    pub path: PathBuf,
    /// The config hash of every variant of [`Batch::variants`], in order (duplicates share one).
    pub hashes: Vec<String>,
    pub interrupted: bool,
}

impl BatchOutcome {
    pub fn exit_code(&self) -> u8 {
        if self.interrupted {
            exit::INTERRUPTED
        } else if self.experiment.variants.iter().any(|v| v.status != VariantStatus::Succeeded) {
            exit::STAGE_FAILED
        } else {
            exit::OK
        }
    }
}

/// Loads and validates every variant (all problems at once), runs each distinct config once
/// through the runner under one lock, records each as it finishes and resumes a stopped batch.
pub(crate) fn run_batch(batch: &Batch) -> anyhow::Result<BatchOutcome> {
    let name = &batch.name;
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(UsageError(format!("--name `{name}` must use only a-z, A-Z, 0-9, - and _")).into());
    }

    // Load every variant first: problems of all of them at once, nothing run yet.
    let mut projects = Vec::new();
    let mut problems = Vec::new();
    let mut remote = None;
    for overrides in &batch.variants {
        let config = crate::cli::ConfigArgs {
            config: batch.config.clone(),
            pipeline: batch.pipeline.clone(),
            set: overrides.clone(),
        };
        match crate::project::load(&config) {
            Ok((loaded, project)) => {
                if remote.is_none() {
                    remote = crate::project::remote(&loaded, &project.spec)?;
                }
                projects.push((overrides, project));
            }
            Err(error) => problems.push(format!("{error:#}")),
        }
    }
    if !problems.is_empty() {
        problems.dedup();
        return Err(UsageError(format!(
            "{} of {} variants are invalid:\n{}",
            problems.len(),
            batch.variants.len(),
            problems.join("\n")
        ))
        .into());
    }
    let hashes: Vec<String> = projects.iter().map(|(_, project)| project.config_hash()).collect();
    let mut unique: Vec<(Vec<String>, sspa_dag::Project)> = Vec::new();
    for (overrides, project) in projects {
        let labels: Vec<String> = overrides.iter().map(|o| o.argument.clone()).collect();
        match unique.iter().find(|(_, other)| other.config_hash() == project.config_hash()) {
            Some((first, _)) => {
                tracing::info!("variant [{}] is the same config as [{}]: run once", labels.join(", "), first.join(", "))
            }
            None => unique.push((labels, project)),
        }
    }
    let workspace = unique.first().map(|(_, p)| p.workspace.clone()).context("no variant")?;
    let lock = WorkspaceLock::acquire(&workspace.root, batch.command)?;
    let path = record_path(&workspace.root, name);
    let previous: Option<Experiment> = std::fs::read(&path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let mut experiment = Experiment {
        name: name.clone(),
        config: batch.config.clone(),
        grid: batch.grid.clone(),
        seeds: batch.seeds.clone(),
        variants: unique
            .iter()
            .map(|(overrides, project)| {
                let hash = project.config_hash();
                let done = previous.as_ref().and_then(|p| {
                    p.variants.iter().find(|v| v.config_hash == hash && v.status == VariantStatus::Succeeded).cloned()
                });
                done.unwrap_or(Variant {
                    overrides: overrides.clone(),
                    config_hash: hash,
                    status: VariantStatus::Queued,
                    run_id: None,
                    error: None,
                    metrics: Default::default(),
                })
            })
            .collect(),
    };
    sspa_dag::write_json_atomic(&path, &experiment)?;

    let registry = sspa_stages::registry();
    // Variants run `jobs` at once, each its stages one at a time, beside each other under the one
    // lock: the workspace is recovered once, here, not by each run.
    let jobs = usize::from(batch.jobs).max(1);
    let options =
        RunOptions { jobs: 1, progress: batch.progress, remote, beside_others: true, ..RunOptions::default() };
    sspa_dag::recover(&workspace)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build()?;
    let total = unique.len();
    let mut interrupted = false;
    let queued = experiment.variants.iter().filter(|v| v.status != VariantStatus::Succeeded).count();
    tracing::info!("{name}: {total} variant(s), {} done earlier, {queued} queued, {jobs} at a time", total - queued);
    let label = |index: usize| format!("variant {}/{total} [{}]", index + 1, unique[index].0.join(", "));
    let mut pending = Vec::new();
    for index in 0..total {
        if experiment.variants[index].status == VariantStatus::Succeeded {
            tracing::info!(
                "{}: done earlier (run {})",
                label(index),
                experiment.variants[index].run_id.as_deref().unwrap_or("?")
            );
        } else {
            tracing::info!("{}: queued", label(index));
            pending.push(index);
        }
    }
    let (registry, options, lock_ref) = (&registry, &options, &lock);
    runtime.block_on(async {
        use futures::StreamExt;
        use tracing::Instrument;
        let mut running = futures::stream::FuturesUnordered::new();
        // The (stage, key) results each running variant computes: a variant that would compute
        // one of them too waits until it is published, then reuses it.
        let mut busy: std::collections::HashMap<usize, Vec<(String, String)>> = Default::default();
        loop {
            let mut started = Vec::new();
            for &index in &pending {
                if running.len() >= jobs || interrupted {
                    break;
                }
                let project = &unique[index].1;
                // One variant at a time never overlaps another: no extra plan (the run makes its own).
                let computes: Vec<(String, String)> = if jobs == 1 {
                    Vec::new()
                } else {
                    match sspa_dag::plan_with_remote(project, registry, options).await {
                        Ok(plan) => plan
                            .stages
                            .iter()
                            .filter(|s| s.decision != sspa_dag::Decision::Skip)
                            .map(|s| (s.name.clone(), s.key.clone()))
                            .collect(),
                        // The run reports it.
                        Err(_) => Vec::new(),
                    }
                };
                if busy.values().flatten().any(|taken| computes.contains(taken)) {
                    continue;
                }
                tracing::info!("{}: running", label(index));
                busy.insert(index, computes);
                started.push(index);
                let span = tracing::info_span!("variant", n = index + 1);
                running.push(
                    async move { (index, sspa_dag::run_locked(project, registry, options, lock_ref).await) }
                        .instrument(span),
                );
            }
            pending.retain(|index| !started.contains(index));
            let Some((index, result)) = running.next().await else { break };
            busy.remove(&index);
            let project = &unique[index].1;
            let variant = &mut experiment.variants[index];
            match result {
                Ok((record, outcome)) => {
                    variant.run_id = Some(record.run_id.clone());
                    let failed = record.stages.iter().find(|s| s.error.is_some());
                    variant.error =
                        failed.map(|s| format!("stage `{}`: {}", s.name, s.error.clone().unwrap_or_default()));
                    variant.status = match outcome {
                        Outcome::Succeeded => VariantStatus::Succeeded,
                        Outcome::StageFailed => VariantStatus::Failed,
                        Outcome::Interrupted => VariantStatus::Interrupted,
                    };
                    variant.metrics = sspa_dag::run_index(&project.workspace, &project.spec)
                        .into_iter()
                        .find(|entry| entry.run_id == record.run_id)
                        .map(|entry| entry.metrics)
                        .unwrap_or_default();
                    interrupted |= outcome == Outcome::Interrupted;
                }
                Err(error) => {
                    variant.status = VariantStatus::Failed;
                    variant.error = Some(format!("{error:#}"));
                }
            }
            match variant.status {
                VariantStatus::Succeeded => tracing::info!("{}: done{}", label(index), headline(&variant.metrics)),
                _ => tracing::error!(
                    "{}: {:?}: {}",
                    label(index),
                    variant.status,
                    variant.error.as_deref().unwrap_or("")
                ),
            }
            sspa_dag::write_json_atomic(&path, &experiment)?;
        }
        anyhow::Ok(())
    })?;
    runtime.shutdown_background();
    drop(lock);
    Ok(BatchOutcome { experiment, path, hashes, interrupted })
}

/// `  mAP raw 81.85 ema 82.54` from the run index's metrics, or nothing.
fn headline(metrics: &std::collections::BTreeMap<String, serde_json::Value>) -> String {
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
}
