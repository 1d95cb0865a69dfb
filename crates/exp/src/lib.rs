//! exp: experiments. The engine ([`batch`]) runs a batch of variants (a grid of overrides ×
//! seeds, or the ablation study) through the pipeline under one lock, records each variant in
//! `experiments/<name>.json` and resumes a stopped batch; the rest of the crate is the
//! comparison table of an experiment (`sspa-pipe exp show`).
//!
//! Input: one [`RunRecord`] per run of the experiment (a variant × a seed): the variant's label,
//! its parameters, status, metrics and training time. [`build`] puts them in a table of
//! runs × params × metrics ([`Table`], typed columns), groups the runs of a variant over its seeds (mean, sample standard
//! deviation, count of the seeds that succeeded), adds each metric's Δ against the baseline
//! variant and sorts. The resulting [`Table`] is written as CSV, Parquet, JSON, Markdown, HTML
//! or an aligned text table ([`render`]).
//!
//! Runs that did not succeed keep their row (status and first error), their metrics are left out
//! of the means. A variant whose seeds partly failed is `partial`.

pub mod ablation;
pub mod batch;
mod columns;
mod render;

pub use columns::{Column, Values};
pub use render::Format;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Errors of the experiment table, each naming the item or file concerned.
#[derive(Debug, thiserror::Error)]
pub enum ExpError {
    #[error("the experiment has no runs")]
    NoRuns,
    #[error("baseline `{baseline}` is not a variant of the experiment; variants: {}", .variants.join("; "))]
    UnknownBaseline { baseline: String, variants: Vec<String> },
    #[error("cannot sort by `{name}`: {reason}; columns: {}", .columns.join(", "))]
    UnknownSortColumn { name: String, reason: &'static str, columns: Vec<String> },
    #[error("writing `{path}`")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Writing the table's Parquet file.
    #[error(transparent)]
    Table(#[from] sspa_table::TableError),
    #[error("experiment name `{0}`: use only a-z, A-Z, 0-9, - and _")]
    Name(String),
    #[error("the batch has no variants")]
    NoVariants,
    /// An experiment record that cannot be read is left as it is (it says which variants ran).
    #[error(
        "the experiment record `{}` cannot be read ({reason}); it is left as it is: move it away to start the batch afresh, or give another `--name`",
        .path.display()
    )]
    Record { path: PathBuf, reason: String },
    #[error("starting the batch's runtime: {source}")]
    Runtime { source: std::io::Error },
    /// The runner's error (a held lock, a pipeline problem, I/O).
    #[error(transparent)]
    Dag(#[from] sspa_dag::DagError),
}

/// How one run of a variant ended (the one status of a variant: the engine's record and the
/// table's rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    Failed,
    /// Not run yet (the batch was stopped before it).
    Queued,
    Interrupted,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Queued => "queued",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// One run of an experiment: a variant with one seed.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRecord {
    /// The variant's overrides without the seed, e.g. `train.lr=0.001` (the rows' name).
    pub variant: String,
    /// Parameter → value as text (the seed excluded: it is what the rows aggregate over).
    pub params: BTreeMap<String, String>,
    pub seed: Option<i64>,
    pub status: RunStatus,
    pub error: Option<String>,
    /// Metric → value; only runs that succeeded contribute to the means.
    pub metrics: BTreeMap<String, f64>,
    /// Seconds the variant's training took (of the run that computed it, when cached).
    pub train_s: Option<f64>,
}

/// Which parameter columns the table shows.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamColumns {
    /// These keys, in this order (e.g. the grid's override keys).
    Keys(Vec<String>),
    /// Only the parameters whose value differs between variants ([`changed_params`]).
    Changed,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TableOptions {
    pub params: ParamColumns,
    /// Metric columns, in order (see [`headline_metrics`]).
    pub metrics: Vec<String>,
    /// The variant that Δ is measured against; default the first.
    pub baseline: Option<String>,
    /// A column to sort by: metrics and Δs descending (best first), the rest ascending.
    pub sort_by: Option<String>,
}

/// The aggregated table: one row per variant.
#[derive(Debug, Clone)]
pub struct Table {
    /// In order: `variant`, the params, `status`, `n`, `runs`, each metric's mean, `_std` and
    /// `_delta`, `train_s`, `error`.
    pub columns: Vec<Column>,
    pub params: Vec<String>,
    pub metrics: Vec<String>,
    pub baseline: String,
}

/// Column names of a metric's aggregates.
pub fn std_column(metric: &str) -> String {
    format!("{metric}_std")
}
pub fn delta_column(metric: &str) -> String {
    format!("{metric}_delta")
}

/// The headline metrics among `available` (`raw.mAP`, `ema.top3.CF1`, ...: evaluate's
/// `metrics.json` leaves), in table order: each model (raw, then EMA, then others) with mAP, CF1,
/// OF1, top-k CF1 and OF1, and, when present (pedestrian kind), mA and F1. Precision, recall and
/// per-class APs are left to the run's own report.
pub fn headline_metrics<'a>(available: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let available: BTreeSet<&str> = available.into_iter().collect();
    let mut models: Vec<&str> = available.iter().filter_map(|name| name.split_once('.').map(|(m, _)| m)).collect();
    models.dedup();
    models.sort_by_key(|model| match *model {
        "raw" => 0,
        "ema" => 1,
        _ => 2,
    });
    let mut out = Vec::new();
    for model in models {
        let mut push = |leaf: &str| {
            let name = format!("{model}.{leaf}");
            if available.contains(name.as_str()) {
                out.push(name);
            }
        };
        push("mAP");
        push("CF1");
        push("OF1");
        let prefix = format!("{model}.top");
        let tops: BTreeSet<&str> = available
            .iter()
            .filter_map(|name| name.strip_prefix(prefix.as_str()))
            .filter_map(|rest| rest.split_once('.').map(|(k, _)| k))
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_digit()))
            .collect();
        for k in tops {
            push(&format!("top{k}.CF1"));
            push(&format!("top{k}.OF1"));
        }
        push("mA");
        push("F1");
    }
    out
}

/// Parameters whose value differs between variants (each variant's first run that has the key),
/// sorted. A variant without the key (e.g. one that failed before its config was recorded) does
/// not make a key differ.
pub fn changed_params(runs: &[RunRecord]) -> Vec<String> {
    let mut values: BTreeMap<&str, BTreeMap<&str, &str>> = BTreeMap::new();
    for run in runs {
        for (key, value) in &run.params {
            values.entry(key).or_default().entry(&run.variant).or_insert(value);
        }
    }
    values
        .into_iter()
        .filter(|(_, per_variant)| per_variant.values().collect::<BTreeSet<_>>().len() > 1)
        .map(|(key, _)| key.to_owned())
        .collect()
}

/// The variants in first-appearance order.
pub fn variants(runs: &[RunRecord]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for run in runs {
        if !out.contains(&run.variant) {
            out.push(run.variant.clone());
        }
    }
    out
}

/// A variant's status: `succeeded` when every run did, the common status when none did
/// (`failed` if any failed), else `partial`; and its first error.
fn variant_status(runs: &[&RunRecord]) -> (String, Option<String>) {
    let error = runs.iter().find_map(|r| r.error.clone());
    let succeeded = runs.iter().filter(|r| r.status == RunStatus::Succeeded).count();
    let status = if succeeded == runs.len() {
        RunStatus::Succeeded.as_str()
    } else if succeeded > 0 {
        "partial"
    } else if runs.iter().any(|r| r.status == RunStatus::Failed) {
        RunStatus::Failed.as_str()
    } else {
        runs.first().map_or(RunStatus::Queued, |r| r.status).as_str()
    };
    (status.to_owned(), error)
}

/// Runs × params × metrics → one row per variant, seeds aggregated, Δ against the baseline.
pub fn build(runs: &[RunRecord], options: &TableOptions) -> Result<Table, ExpError> {
    if runs.is_empty() {
        return Err(ExpError::NoRuns);
    }
    let names = variants(runs);
    let baseline = match &options.baseline {
        Some(baseline) if names.contains(baseline) => baseline.clone(),
        Some(baseline) => return Err(ExpError::UnknownBaseline { baseline: baseline.clone(), variants: names }),
        None => names[0].clone(),
    };
    let params = match &options.params {
        ParamColumns::Keys(keys) => keys.clone(),
        ParamColumns::Changed => changed_params(runs),
    };
    let statuses: BTreeMap<&str, (String, Option<String>)> = names
        .iter()
        .map(|name| {
            let of: Vec<&RunRecord> = runs.iter().filter(|r| &r.variant == name).collect();
            (name.as_str(), variant_status(&of))
        })
        .collect();

    // One row per variant, its seeds aggregated in grid order: the first run's parameters, the
    // count of runs and of those that succeeded, and over the runs that succeeded each metric's
    // mean and sample standard deviation (null for fewer than two values) and the mean training
    // time.
    let groups: Vec<Vec<&RunRecord>> =
        names.iter().map(|name| runs.iter().filter(|r| &r.variant == name).collect()).collect();
    let ok = |r: &RunRecord| r.status == RunStatus::Succeeded;
    let values = |group: &[&RunRecord], value: &dyn Fn(&RunRecord) -> Option<f64>| -> Vec<f64> {
        group.iter().filter(|r| ok(r)).filter_map(|r| value(r)).filter(|v| !v.is_nan()).collect()
    };
    let mut columns = vec![Column::text("variant", names.iter().cloned().map(Some).collect())];
    for key in &params {
        columns.push(Column::text(
            key,
            groups.iter().map(|g| g.first().and_then(|r| r.params.get(key).cloned())).collect(),
        ));
    }
    columns.push(Column::text("status", names.iter().map(|n| Some(statuses[n.as_str()].0.clone())).collect()));
    columns.push(Column::count("n", groups.iter().map(|g| g.iter().filter(|r| ok(r)).count() as u32).collect()));
    columns.push(Column::count("runs", groups.iter().map(|g| g.len() as u32).collect()));
    let row = names.iter().position(|n| *n == baseline).unwrap_or(0);
    for metric in &options.metrics {
        let of = |r: &RunRecord| r.metrics.get(metric).copied();
        let means: Vec<Option<f64>> = groups.iter().map(|g| mean(&values(g, &of))).collect();
        let stds: Vec<Option<f64>> = groups.iter().map(|g| sample_std(&values(g, &of))).collect();
        let base = means[row];
        let deltas: Vec<Option<f64>> = means.iter().map(|m| Some((*m)? - base?)).collect();
        columns.push(Column::number(metric, means));
        columns.push(Column::number(&std_column(metric), stds));
        columns.push(Column::number(&delta_column(metric), deltas));
    }
    columns.push(Column::number("train_s", groups.iter().map(|g| mean(&values(g, &|r| r.train_s))).collect()));
    columns.push(Column::text("error", names.iter().map(|n| statuses[n.as_str()].1.clone()).collect()));
    let mut table = Table { columns, params, metrics: options.metrics.clone(), baseline };
    if let Some(name) = &options.sort_by {
        let (column, descending) = sort_column(name, &table.params, &options.metrics)?;
        table.sort_by(&column, descending);
    }
    Ok(table)
}

/// The mean of `values`; `None` when there are none.
fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// The sample standard deviation (n − 1) of `values`; `None` for fewer than two.
fn sample_std(values: &[f64]) -> Option<f64> {
    let mean = mean(values).filter(|_| values.len() > 1)?;
    let squares: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
    Some((squares / (values.len() - 1) as f64).sqrt())
}

/// The column `name` means, and whether it sorts descending. A metric may be named by its tail
/// (`top3.CF1`) or with the `evaluate.` prefix when that is unambiguous.
fn sort_column(name: &str, params: &[String], metrics: &[String]) -> Result<(String, bool), ExpError> {
    let mut columns: Vec<String> = vec!["variant".into(), "status".into(), "n".into(), "train_s".into()];
    columns.extend(params.iter().cloned());
    columns.extend(metrics.iter().flat_map(|m| [m.clone(), std_column(m), delta_column(m)]));
    let name = name.strip_prefix("evaluate.").unwrap_or(name);
    let is_metric = |column: &str| metrics.iter().any(|m| *m == column || delta_column(m) == column);
    if columns.iter().any(|c| c == name) {
        return Ok((name.to_owned(), is_metric(name)));
    }
    let matches: Vec<&String> = metrics.iter().filter(|m| m.ends_with(&format!(".{name}"))).collect();
    match matches.as_slice() {
        [one] => Ok(((*one).clone(), true)),
        [] => Err(ExpError::UnknownSortColumn { name: name.to_owned(), reason: "no such column", columns }),
        _ => Err(ExpError::UnknownSortColumn {
            name: name.to_owned(),
            reason: "ambiguous, name the model too",
            columns: matches.into_iter().cloned().collect(),
        }),
    }
}

impl Table {
    /// Writes the table as Parquet at `path`, atomically (temporary file + rename): text columns
    /// as nullable `Utf8`, `n` and `runs` as `UInt32`, the rest as nullable `Float64`.
    pub fn write_parquet(&self, path: &Path) -> Result<(), ExpError> {
        Ok(sspa_table::write_batch(path, &columns::record_batch(&self.columns))?)
    }

    /// The table as `{"baseline", "params", "metrics", "rows": [{column: value}]}` (what
    /// `Format::Json` prints).
    pub fn to_json(&self) -> Result<serde_json::Value, ExpError> {
        render::json(self)
    }

    /// The table in `format`.
    pub fn render(&self, format: Format) -> Result<String, ExpError> {
        render::render(self, format)
    }
}

#[cfg(test)]
mod tests;
