//! `sspa-pipe ablate`: the paper's ablation study ([`sspa_exp::ablation::study`]) as one batch of
//! variants × seeds through the same machinery as `exp run` (one lock, shared upstream results,
//! resume), then `ablation.md` and `ablation.html` laid out like the paper's tables.

use super::{BatchRequest, exit_code, run_batch};
use crate::exit::UsageError;
use sspa_config::Override;
use sspa_exp::ablation::{self, Cell, Results, StudyTable, row_key};
use sspa_exp::{ParamColumns, RunRecord, RunStatus, TableOptions};
use std::collections::{BTreeMap, BTreeSet};

/// `ablate` arguments.
#[derive(Debug, clap::Args)]
pub struct AblateArgs {
    #[command(flatten)]
    pub batch: super::BatchArgs,
    /// Paper tables to run: VI, VII, VIII, IX, fig5, fig6 (default: all).
    #[arg(long, value_delimiter = ',', value_name = "T1,T2")]
    pub tables: Vec<String>,
    /// The metric of the tables (an evaluate `metrics.json` leaf).
    #[arg(long, default_value = "ema.mAP")]
    pub metric: String,
}

/// One planned run: the row's key, its seed, its overrides (the seed last).
type Planned = (String, Option<u64>, Vec<Override>);

/// The study's variants: every row of every table × seeds, each row's overrides first.
fn variants(tables: &[StudyTable], seeds: &[u64]) -> Result<Vec<Planned>, String> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for row in tables.iter().flat_map(|table| &table.rows) {
        let key = row_key(row);
        if !seen.insert(key.clone()) {
            continue;
        }
        let overrides: Vec<Override> = row.overrides.iter().map(|o| o.parse::<Override>()).collect::<Result<_, _>>()?;
        if seeds.is_empty() {
            out.push((key, None, overrides));
        } else {
            for &seed in seeds {
                let mut seeded = overrides.clone();
                seeded.push(format!("train.seed={seed}").parse()?);
                out.push((key.clone(), Some(seed), seeded));
            }
        }
    }
    Ok(out)
}

/// `ablate`.
pub fn ablate(args: &AblateArgs, progress: bool) -> anyhow::Result<u8> {
    let tables = ablation::select(&args.tables).map_err(|e| UsageError(format!("--tables: {e}")))?;
    let planned = variants(&tables, &args.batch.seeds).map_err(UsageError)?;
    let ids: Vec<&str> = tables.iter().map(|t| t.id).collect();
    let name = args.batch.name.clone().unwrap_or_else(|| {
        let seeds: Vec<String> = args.batch.seeds.iter().map(u64::to_string).collect();
        format!(
            "ablation-{}{}",
            ids.join("-"),
            if seeds.is_empty() { String::new() } else { format!("-s{}", seeds.join("-")) }
        )
    });
    let request = BatchRequest {
        config: args.batch.config.clone(),
        pipeline: args.batch.pipeline.clone(),
        name,
        grid: ids.iter().map(|id| format!("table {id}")).collect(),
        seeds: args.batch.seeds.clone(),
        variants: planned.iter().map(|(_, _, overrides)| overrides.clone()).collect(),
        jobs: args.batch.jobs,
        progress,
        command: "ablate",
    };
    let outcome = run_batch(request)?;

    // One run per (row, seed): the variant of its config hash (rows that resolve to the same
    // config share it).
    let by_hash: BTreeMap<&str, &sspa_exp::batch::Variant> =
        outcome.experiment.variants.iter().map(|v| (v.config_hash.as_str(), v)).collect();
    let metric_key = format!("evaluate.{}", args.metric);
    let mut runs = Vec::new();
    for ((key, seed, _), hash) in planned.iter().zip(&outcome.hashes) {
        let Some(variant) = by_hash.get(hash.as_str()) else { continue };
        let value = variant.metrics.get(&metric_key).and_then(serde_json::Value::as_f64);
        let status = match variant.status {
            RunStatus::Succeeded if value.is_none() => RunStatus::Failed,
            status => status,
        };
        let error = match (&variant.error, value, variant.status == RunStatus::Succeeded) {
            (Some(error), _, _) => Some(error.clone()),
            (None, None, true) => Some(format!("no `{}` in the run's metrics", args.metric)),
            _ => None,
        };
        runs.push(RunRecord {
            variant: key.clone(),
            params: BTreeMap::new(),
            seed: seed.map(|s| s as i64),
            status,
            error,
            metrics: value.map(|v| BTreeMap::from([(args.metric.clone(), v)])).unwrap_or_default(),
            train_s: None,
        });
    }
    // Aggregated over seeds by the experiment table (polars): mean, sample std, n.
    let options = TableOptions {
        params: ParamColumns::Keys(Vec::new()),
        metrics: vec![args.metric.clone()],
        baseline: None,
        sort_by: None,
    };
    let table = sspa_exp::build(&runs, &options)?;
    let parsed = table.to_json()?;
    let mut results = Results::new();
    for row in parsed["rows"].as_array().into_iter().flatten() {
        let number = |name: &str| row[name].as_f64();
        results.insert(
            row["variant"].as_str().unwrap_or_default().to_owned(),
            Cell {
                mean: number(&args.metric),
                std: number(&sspa_exp::std_column(&args.metric)),
                n: row["n"].as_u64().unwrap_or(0) as u32,
                runs: row["runs"].as_u64().unwrap_or(0) as u32,
                error: row["error"].as_str().map(str::to_owned),
            },
        );
    }
    let seeds = args.batch.seeds.len().max(1);
    let markdown = ablation::render_markdown(&tables, &results, &args.metric, seeds);
    let html = ablation::render_html(&tables, &results, &args.metric, seeds);
    let dir = outcome.path.with_extension("");
    for (file, text) in [("ablation.md", &markdown), ("ablation.html", &html)] {
        let path = dir.join(file);
        sspa_fsio::write_atomic(&path, text.as_bytes())
            .map_err(|e| anyhow::anyhow!("writing `{}`: {e}", path.display()))?;
    }
    tracing::info!(
        "ablation {}: {} variants; ablation.md and ablation.html in {}",
        outcome.experiment.name,
        outcome.experiment.variants.len(),
        dir.display()
    );
    print!("{markdown}");
    Ok(exit_code(&outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_rows_run_once_per_seed() {
        let tables = ablation::select(&["VII".into(), "VIII".into(), "fig6".into()]).expect("tables");
        let planned = variants(&tables, &[0, 1]).expect("variants");
        // VII: 3 + full; VIII: 3 (full shared); fig6: baseline (+ SSP is VIII's "neither").
        assert_eq!(planned.len(), (3 + 1 + 3 + 1) * 2);
        assert_eq!(planned.iter().filter(|(key, _, _)| key.is_empty()).count(), 2);
        let seeded = &planned[1].2;
        assert_eq!(seeded.last().map(|o| o.argument.as_str()), Some("train.seed=1"));
    }
}
