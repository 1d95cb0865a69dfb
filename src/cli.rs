//! Command-line interface: parse, dispatch, print `{:#}` errors, exit with a meaningful code.

use crate::commands;
use crate::exit;
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "sspa-pipe",
    version,
    about = "Train and serve SSPA multi-label image classifiers through a cached pipeline"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Hide progress bars and informational logs.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More logs (-v debug, -vv trace); `RUST_LOG` also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// Options shared by commands that read a domain config.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Domain config, e.g. `domains/demo.toml`.
    pub config: PathBuf,
    /// Pipeline definition to use instead of `<project>/pipeline/pipeline.toml`.
    #[arg(long, value_name = "FILE")]
    pub pipeline: Option<PathBuf>,
    /// Override a config value, `-S train.lr=2e-3` (a TOML value; a bare word is a string),
    /// validated like the file (repeatable).
    #[arg(short = 'S', long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<sspa_config::Override>,
}

/// Stage selection shared by `run` and `plan`.
#[derive(Debug, Args, Clone, Default)]
pub struct SelectArgs {
    /// Run this stage even when its result is cached (repeatable).
    #[arg(long, value_name = "STAGE")]
    pub force: Vec<String>,
    /// Stop after this stage: run it and what it needs (repeatable).
    #[arg(long, value_name = "STAGE", conflicts_with = "only")]
    pub until: Vec<String>,
    /// Run only this stage; what it needs must already be cached.
    #[arg(long, value_name = "STAGE")]
    pub only: Option<String>,
}

/// `graph --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Dot,
    Argo,
}

/// Where `run` computes stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ExecutorKind {
    /// In this process.
    #[default]
    Local,
    /// Each stage one Slurm job (`sbatch` of `sspa-pipe run CONFIG --only STAGE`) over this
    /// workspace, which the compute nodes must share; resources from `[executor.slurm.<stage>]`.
    Slurm,
}

/// `run --executor` and its options.
#[derive(Debug, Args, Clone, Default)]
pub struct ExecutorArgs {
    #[arg(long, value_enum, default_value_t = ExecutorKind::Local)]
    pub executor: ExecutorKind,
    /// Partition of every job (instead of `[executor.slurm] partition`).
    #[arg(long, value_name = "P")]
    pub slurm_partition: Option<String>,
    /// One more `sbatch` argument for every job, e.g. `--slurm-arg=--account=ml` (repeatable).
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub slurm_arg: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the pipeline for a domain: skip what is cached, run what changed.
    Run {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        select: SelectArgs,
        /// Stages run at once when they do not depend on each other (default 1; with
        /// `--executor slurm`, jobs in the queue at once, default every stage).
        #[arg(short, long, value_parser = clap::value_parser!(u16).range(1..))]
        jobs: Option<u16>,
        #[command(flatten)]
        executor: ExecutorArgs,
        /// Print the run record as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Experiments: grids of overrides over the pipeline.
    Exp {
        #[command(subcommand)]
        command: crate::commands::ExpCommand,
    },
    /// The paper's ablation study (Tables VI–IX, Figs. 5–6) as one batch of variants × seeds;
    /// writes `ablation.md` and `ablation.html` laid out like the paper's tables.
    Ablate(crate::commands::AblateArgs),
    /// The scheduled job: run what changed, then promote the candidate to the registry's
    /// `current` only if it beats it on the same test split (exit 4 when the gate refuses).
    Retrain(crate::commands::RetrainArgs),
    /// The model registry: list, show, promote, rollback.
    Models {
        #[command(subcommand)]
        command: crate::commands::ModelsCommand,
    },
    /// Dry run: each stage, whether it would run, and why.
    Plan {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        select: SelectArgs,
        #[arg(long)]
        json: bool,
    },
    /// The remote cache (`[cache] remote`): status, push, pull.
    Cache {
        #[command(subcommand)]
        command: crate::commands::CacheCommand,
    },
    /// The stage graph on stdout: Graphviz DOT, or an Argo Workflows manifest (`--format argo`).
    Graph(crate::commands::GraphArgs),
    /// Recent runs and the state of each stage.
    Status {
        #[command(flatten)]
        config: ConfigArgs,
        /// How many recent runs to list.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long)]
        json: bool,
    },
    /// Describe a (new) label set with the domain's LLM; only answers not cached are requested.
    Describe {
        #[command(flatten)]
        config: ConfigArgs,
        /// One label per line; default: the config's labels.
        #[arg(long, value_name = "FILE")]
        labels: Option<PathBuf>,
        /// Parquet file for the descriptions of these labels.
        #[arg(long, value_name = "FILE", default_value = "descriptions.parquet")]
        output: PathBuf,
        /// Print the counts (cached, new, failed, duplicates) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Metrics of a score table against a target table (Parquet, rows matched by `image`).
    Eval {
        /// Parquet: utf8 `image` + one float column per label, probabilities in [0, 1].
        #[arg(long, value_name = "FILE")]
        scores: PathBuf,
        /// Parquet: utf8 `image` + one integer column per label: 1, 0, or -1 (ignored).
        #[arg(long, value_name = "FILE")]
        targets: PathBuf,
        /// `natural` (mAP, CF1/OF1, top-k) or `pedestrian` (adds mA and instance metrics).
        #[arg(long, default_value = "natural")]
        kind: sspa_metrics::MetricKind,
        /// A label counts as predicted when its probability is at least this.
        #[arg(long, default_value_t = 0.5)]
        threshold: f32,
        /// Labels per image for the top-k metrics.
        #[arg(long, default_value_t = 3)]
        top_k: usize,
        /// Print the metrics as JSON (values in percent).
        #[arg(long)]
        json: bool,
    },
    /// Labels and probabilities of new images from a trained run or a registry model.
    Predict(crate::commands::PredictArgs),
    /// Encode texts or images with a pretrained encoder into a Parquet table.
    Encode {
        #[command(subcommand)]
        command: crate::commands::EncodeCommand,
    },
    /// Check or pin the BLAKE3 checksums of dataset manifests' annotation files.
    Manifest {
        #[command(subcommand)]
        command: crate::commands::ManifestCommand,
    },
    /// Delete old run records and cached results no kept run refers to.
    Clean {
        #[command(flatten)]
        config: ConfigArgs,
        /// Keep this many most recent runs (and everything they used).
        #[arg(long, default_value_t = 3, value_name = "N")]
        keep_last: usize,
    },
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::OK });
        }
    };
    init_logging(cli.quiet, cli.verbose);
    let progress = !cli.quiet && std::io::stderr().is_terminal();
    let code = match commands::dispatch(cli.command, progress) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            exit::code_for(&error)
        }
    };
    ExitCode::from(code)
}

fn init_logging(quiet: bool, verbose: u8) {
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .try_init();
}
