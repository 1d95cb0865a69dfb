//! One module per subcommand; each returns the process exit code.

mod cache;
mod clean;
mod describe;
mod encode;
mod eval;
mod exp;
mod graph;
mod manifest;
mod models;
mod plan;
mod predict;
mod retrain;
mod run;
mod status;

pub use cache::CacheCommand;
pub use encode::EncodeCommand;
pub use exp::{AblateArgs, ExpRunArgs, ExpShowArgs};
pub use graph::GraphArgs;
pub use manifest::ManifestCommand;
pub use models::ModelsCommand;
pub use predict::{PredictArgs, PredictFormat};
pub use retrain::RetrainArgs;

use crate::cli::{Command, SelectArgs};

/// `sspa-pipe exp ...`.
#[derive(Debug, clap::Subcommand)]
pub enum ExpCommand {
    /// Run every variant of a grid of `-S` overrides (× `--seeds`) through the pipeline; results
    /// that a variant does not change are computed once and shared.
    Run(ExpRunArgs),
    /// The comparison table of an experiment: one row per variant, seeds aggregated (mean ± std,
    /// n), the parameters that differ, every metric with its Δ against a baseline, training time;
    /// also written as `<workspace>/experiments/<name>.parquet`.
    Show(ExpShowArgs),
}
use sspa_dag::RunOptions;

pub fn dispatch(command: Command, progress: bool) -> anyhow::Result<u8> {
    match command {
        Command::Run { config, select, jobs, executor, json } => {
            run::run(&config, &select, jobs.map(usize::from), &executor, json, progress)
        }
        Command::Exp { command: ExpCommand::Run(args) } => exp::run(&args, progress),
        Command::Exp { command: ExpCommand::Show(args) } => exp::show(&args),
        Command::Ablate(args) => exp::ablate(&args, progress),
        Command::Retrain(args) => retrain::retrain(&args, progress),
        Command::Models { command } => models::models(&command),
        Command::Plan { config, select, json } => plan::plan(&config, &select, json),
        Command::Graph(args) => graph::graph(&args),
        Command::Cache { command } => cache::cache(&command, progress),
        Command::Status { config, runs, json } => status::status(&config, runs, json),
        Command::Clean { config, keep_last } => clean::clean(&config, keep_last),
        Command::Describe { config, labels, output, json } => {
            describe::describe(&config, labels.as_deref(), &output, json, progress)
        }
        Command::Predict(args) => predict::predict(&args, progress),
        Command::Encode { command } => encode::encode(&command),
        Command::Manifest { command } => manifest::manifest(&command),
        Command::Eval { scores, targets, kind, threshold, top_k, json } => {
            eval::eval(&scores, &targets, kind, threshold, top_k, json)
        }
    }
}

fn run_options(select: &SelectArgs, jobs: usize, progress: bool, remote: Option<sspa_dag::RemoteHandle>) -> RunOptions {
    RunOptions {
        jobs,
        force: select.force.clone(),
        until: select.until.clone(),
        only: select.only.clone(),
        progress,
        remote,
        executor: None,
        beside_others: false,
    }
}

/// Writes a JSON document to stdout.
fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
