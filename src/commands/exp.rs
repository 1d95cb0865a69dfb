//! `sspa-pipe exp run`: a grid of `-S` overrides (× seeds), each variant a normal pipeline run
//! that reuses every upstream result whose key the variant does not change. The experiment
//! engine (scheduling, the record, resume) is `sspa_exp::batch`; this command loads and
//! validates every variant first (all problems at once, each named by its argument) and prints.
//! The summary table's numbers come from the run index (`sspa_dag::run_index`).

use super::print_json;
use crate::exit::{self, UsageError};
use sspa_config::Override;
use sspa_exp::batch::{Batch, BatchOutcome, LoadedVariant, axis, grid};
use std::path::PathBuf;

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

/// `exp run`.
pub fn run(args: &ExpRunArgs, progress: bool) -> anyhow::Result<u8> {
    let axes: Vec<Vec<Override>> = args.set.iter().map(|a| axis(a)).collect::<Result<_, _>>().map_err(UsageError)?;
    let variants = grid(&axes, &args.batch.seeds).map_err(UsageError)?;
    let name = args.batch.name.clone().unwrap_or_else(|| default_name(args));
    let request = BatchRequest {
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
    let outcome = run_batch(request)?;
    if args.json {
        print_json(&outcome.experiment)?;
    } else {
        println!("experiment {}: {}", outcome.experiment.name, outcome.path.display());
        for variant in &outcome.experiment.variants {
            println!(
                "  {:<12} {}{}",
                variant.status.as_str(),
                variant.overrides.join(", "),
                sspa_exp::batch::headline(&variant.metrics)
            );
        }
    }
    Ok(exit_code(&outcome))
}

/// What `exp run` and `ablate` ask the engine for, before the variants are loaded.
pub(crate) struct BatchRequest {
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

/// 0 when every variant succeeded, 130 when interrupted, else 1.
pub(crate) fn exit_code(outcome: &BatchOutcome) -> u8 {
    if outcome.interrupted {
        exit::INTERRUPTED
    } else if outcome.succeeded() {
        exit::OK
    } else {
        exit::STAGE_FAILED
    }
}

/// Loads and validates every variant (all problems at once, nothing run yet), then runs the
/// batch through the engine.
pub(crate) fn run_batch(request: BatchRequest) -> anyhow::Result<BatchOutcome> {
    if !sspa_exp::batch::valid_name(&request.name) {
        return Err(UsageError(format!("--name `{}` must use only a-z, A-Z, 0-9, - and _", request.name)).into());
    }
    let mut loaded = Vec::new();
    let mut problems = Vec::new();
    let mut remote = None;
    for overrides in &request.variants {
        let config = crate::cli::ConfigArgs {
            config: request.config.clone(),
            pipeline: request.pipeline.clone(),
            set: overrides.clone(),
        };
        match crate::project::load(&config) {
            Ok((config, project)) => {
                if remote.is_none() {
                    remote = crate::project::remote(&config, &project.spec)?;
                }
                loaded.push(LoadedVariant { overrides: overrides.clone(), project });
            }
            Err(error) => problems.push(format!("{error:#}")),
        }
    }
    if !problems.is_empty() {
        problems.dedup();
        return Err(UsageError(format!(
            "{} of {} variants are invalid:\n{}",
            problems.len(),
            request.variants.len(),
            problems.join("\n")
        ))
        .into());
    }
    let stages = sspa_stages::registry();
    let batch = Batch {
        name: request.name,
        config: request.config,
        grid: request.grid,
        seeds: request.seeds,
        variants: loaded,
        stages: &stages,
        remote,
        jobs: request.jobs,
        progress: request.progress,
        command: request.command,
    };
    Ok(sspa_exp::batch::run_batch(batch)?)
}
