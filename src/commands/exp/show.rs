//! `sspa-pipe exp show`: an experiment's comparison table. The experiment record names each
//! variant's overrides, status and run; the run index adds the run's resolved parameters, its
//! metrics and the training time. The table itself (seeds aggregated, Δ, sorting, formats) is
//! `sspa_exp`'s.

use crate::exit::UsageError;
use anyhow::Context;
use serde_json::Value;
use sspa_config::Override;
use sspa_dag::{RunEntry, StageStatus};
use sspa_exp::batch::{Experiment, read_record, record_path, split_top_level};
use sspa_exp::{ParamColumns, RunRecord, TableOptions};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The seed axis: rows aggregate over it.
const SEED_KEY: &str = "train.seed";

/// `exp show` arguments.
#[derive(Debug, clap::Args)]
pub struct ExpShowArgs {
    /// Domain config, e.g. `domains/demo.toml`.
    pub config: PathBuf,
    /// Pipeline definition to use instead of `<project>/pipeline/pipeline.toml`.
    #[arg(long, value_name = "FILE")]
    pub pipeline: Option<PathBuf>,
    /// Experiment name (default: the most recent experiment of CONFIG).
    #[arg(long)]
    pub name: Option<String>,
    /// Sort by this column, e.g. `ema.mAP` or `raw.top3.CF1` (metrics best first).
    #[arg(long, value_name = "METRIC")]
    pub sort_by: Option<String>,
    /// Show only the parameters whose resolved value differs between variants (default: the
    /// grid's override keys).
    #[arg(long)]
    pub only_changed: bool,
    /// The variant Δ is measured against, by its overrides, e.g. `train.lr=1e-3` (default: the
    /// first variant of the grid).
    #[arg(long, value_name = "VARIANT")]
    pub baseline: Option<String>,
    /// Output on stdout: table, md, csv, json or html.
    #[arg(long, default_value = "table")]
    pub format: sspa_exp::Format,
}

/// `key=value` with the value in one canonical spelling (`1e-3` → `0.001`).
fn canonical(argument: &str) -> Result<(String, String), String> {
    let parsed: Override = argument.trim().parse()?;
    let value = serde_json::to_value(&parsed.value).map_err(|e| format!("`{argument}`: {e}"))?;
    Ok((parsed.key, text(&value)))
}

/// A parameter value as a table cell: strings bare, the rest as JSON.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A variant's name: its overrides without the seed (`base` when only seeds vary).
fn label(overrides: &[(String, String)]) -> String {
    let parts: Vec<String> =
        overrides.iter().filter(|(key, _)| key != SEED_KEY).map(|(key, value)| format!("{key}={value}")).collect();
    if parts.is_empty() { "base".to_owned() } else { parts.join(", ") }
}

/// The experiment named, or the most recently written one of `config`.
fn find_experiment(workspace: &Path, name: Option<&str>, config: &Path) -> anyhow::Result<(Experiment, PathBuf)> {
    let read = |path: &Path| -> anyhow::Result<Experiment> {
        read_record(path)?.with_context(|| format!("experiment `{}` is gone", path.display()))
    };
    if let Some(name) = name {
        let path = record_path(workspace, name);
        if !path.exists() {
            return Err(UsageError(format!("no experiment `{name}`: `{}` does not exist", path.display())).into());
        }
        return Ok((read(&path)?, path));
    }
    let same = |other: &Path| {
        other == config || matches!((other.canonicalize(), config.canonicalize()), (Ok(a), Ok(b)) if a == b)
    };
    let dir = workspace.join("experiments");
    let mut found: Vec<(std::time::SystemTime, Experiment, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        match read(&path) {
            Ok(experiment) if same(&experiment.config) => {
                let modified = entry.metadata().and_then(|m| m.modified()).unwrap_or(std::time::UNIX_EPOCH);
                found.push((modified, experiment, path));
            }
            Ok(_) => {}
            Err(error) => tracing::warn!("{error:#}"),
        }
    }
    found.sort_by_key(|(modified, _, _)| *modified);
    let (_, experiment, path) = found.pop().ok_or_else(|| {
        UsageError(format!(
            "no experiment of `{}` in `{}`: run `sspa-pipe exp run` first",
            config.display(),
            dir.display()
        ))
    })?;
    Ok((experiment, path))
}

/// What the table is built from.
struct Runs {
    /// One per variant of the experiment record (a grid point with one seed).
    records: Vec<RunRecord>,
    /// The grid's override keys (the seed excluded), in grid order.
    grid_keys: Vec<String>,
    /// Each row's overrides (the seed excluded), for `--baseline`.
    overrides: Vec<(String, BTreeMap<String, String>)>,
}

fn records(experiment: &Experiment, index: &[RunEntry]) -> anyhow::Result<Runs> {
    let by_id: HashMap<&str, &RunEntry> = index.iter().map(|entry| (entry.run_id.as_str(), entry)).collect();
    // A cached training's time is that of the run that computed it.
    let mut trained: HashMap<&str, f64> = HashMap::new();
    for stage in index.iter().flat_map(|entry| &entry.stages) {
        if stage.name == "train" && stage.status == StageStatus::Ran {
            trained.insert(&stage.key, stage.duration_s);
        }
    }
    let mut grid_keys: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut labels = Vec::new();
    for variant in &experiment.variants {
        let overrides: Vec<(String, String)> = variant
            .overrides
            .iter()
            .map(|o| canonical(o))
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("experiment `{}`: {e}", experiment.name))?;
        for (key, _) in &overrides {
            if key != SEED_KEY && !grid_keys.contains(key) {
                grid_keys.push(key.clone());
            }
        }
        let entry = variant.run_id.as_deref().and_then(|id| by_id.get(id));
        let mut params: BTreeMap<String, String> = entry
            .map(|e| e.params.iter().filter(|(k, _)| *k != SEED_KEY).map(|(k, v)| (k.clone(), text(v))).collect())
            .unwrap_or_default();
        for (key, value) in overrides.iter().filter(|(key, _)| key != SEED_KEY) {
            params.entry(key.clone()).or_insert_with(|| value.clone());
        }
        let seed = overrides.iter().find(|(key, _)| key == SEED_KEY).and_then(|(_, v)| v.parse().ok());
        let metrics = entry.map_or(&variant.metrics, |e| &e.metrics);
        let metrics = metrics
            .iter()
            .filter_map(|(name, value)| Some((name.strip_prefix("evaluate.")?.to_owned(), value.as_f64()?)))
            .collect();
        let train_s = entry.and_then(|e| {
            let stage = e.stages.iter().find(|s| s.name == "train")?;
            trained.get(stage.key.as_str()).copied().or(Some(stage.duration_s))
        });
        let variant_label = label(&overrides);
        labels.push((
            variant_label.clone(),
            overrides.iter().filter(|(key, _)| key != SEED_KEY).cloned().collect::<BTreeMap<_, _>>(),
        ));
        out.push(RunRecord {
            variant: variant_label,
            params,
            seed,
            status: variant.status,
            error: variant.error.clone(),
            metrics,
            train_s,
        });
    }
    Ok(Runs { records: out, grid_keys, overrides: labels })
}

/// `exp show`.
pub fn show(args: &ExpShowArgs) -> anyhow::Result<u8> {
    let config = crate::cli::ConfigArgs { config: args.config.clone(), pipeline: args.pipeline.clone(), set: vec![] };
    let (_, project) = crate::project::load(&config)?;
    let (experiment, path) = find_experiment(&project.workspace.root, args.name.as_deref(), &args.config)?;
    let index = sspa_dag::run_index(&project.workspace, &project.spec);
    let Runs { records: runs, grid_keys, overrides } = records(&experiment, &index)?;
    let baseline = match &args.baseline {
        Some(baseline) => {
            let pairs: Vec<(String, String)> = split_top_level(baseline)
                .into_iter()
                .map(canonical)
                .collect::<Result<_, _>>()
                .map_err(|e| UsageError(format!("--baseline `{baseline}`: {e}")))?;
            // The same overrides in any order name the same variant.
            let wanted: BTreeMap<_, _> = pairs.iter().cloned().collect();
            let found = overrides.iter().find(|(name, have)| *have == wanted || name == baseline.trim());
            Some(found.map_or_else(|| label(&pairs), |(name, _)| name.clone()))
        }
        None => None,
    };
    let metrics = sspa_exp::headline_metrics(runs.iter().flat_map(|r| r.metrics.keys().map(String::as_str)));
    let options = TableOptions {
        params: if args.only_changed { ParamColumns::Changed } else { ParamColumns::Keys(grid_keys) },
        metrics,
        baseline,
        sort_by: args.sort_by.clone(),
    };
    let table = sspa_exp::build(&runs, &options).map_err(|e| match e {
        sspa_exp::ExpError::UnknownBaseline { .. } | sspa_exp::ExpError::UnknownSortColumn { .. } => {
            anyhow::Error::new(UsageError(format!("experiment `{}`: {e}", experiment.name)))
        }
        other => anyhow::Error::new(other).context(format!("experiment `{}`", experiment.name)),
    })?;
    let parquet = path.with_extension("parquet");
    table.write_parquet(&parquet)?;
    tracing::info!("experiment {}: {} variants; table in {}", experiment.name, table.height(), parquet.display());
    print!("{}", table.render(args.format)?);
    Ok(crate::exit::OK)
}
