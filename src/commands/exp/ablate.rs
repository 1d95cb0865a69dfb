//! `sspa-pipe ablate`: the paper's ablation study ([`sspa_exp::ablation::study`]) as one batch of
//! variants × seeds through the same machinery as `exp run` (one lock, shared upstream results,
//! resume), then `ablation.md` and `ablation.html` laid out like the paper's tables.

use super::{BatchRequest, exit_code, run_batch};
use crate::exit::UsageError;
use sspa_exp::ablation;

/// `ablate` arguments.
#[derive(Debug, clap::Args)]
pub struct AblateArgs {
    #[command(flatten)]
    pub batch: super::BatchArgs,
    /// Tables to run: the paper's VI, VII, VIII, IX, fig5, fig6, and `peers` (the peer heads beside
    /// full SSPA) (default: all).
    #[arg(long, value_delimiter = ',', value_name = "T1,T2")]
    pub tables: Vec<String>,
    /// The metric of the tables (an evaluate `metrics.json` leaf).
    #[arg(long, default_value = "ema.mAP")]
    pub metric: String,
}

/// `ablate`.
pub fn ablate(args: &AblateArgs, progress: bool) -> anyhow::Result<u8> {
    let tables = ablation::select(&args.tables).map_err(|e| UsageError(format!("--tables: {e}")))?;
    let planned = ablation::variants(&tables, &args.batch.seeds).map_err(UsageError)?;
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

    let results = ablation::results(&planned, &outcome, &args.metric)?;
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
