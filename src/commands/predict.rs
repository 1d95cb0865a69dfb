//! `sspa-pipe predict`: labels of new images from a trained run or a registry model
//! (`--model CONFIG[@alias|@vN]`), as JSON or CSV on stdout.
//! Unreadable images are reported one per line on stderr; the others are still predicted, and
//! the exit code is 1 when any image failed.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use sspa_infer::predict::{ImagePredictor, select, train_dir};
use sspa_train::Weights;

use crate::exit::{self, UsageError};

/// `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PredictFormat {
    /// `[{"image", "labels": [{"label", "probability"}]}]`.
    Json,
    /// `image,label,probability`, one row per reported label.
    Csv,
}

/// `predict`'s flags.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["run", "model"])))]
pub struct PredictArgs {
    /// A run record (`<workspace>/runs/<id>`) or a train stage's output directory.
    #[arg(long = "run", value_name = "RUN_DIR")]
    pub run: Option<PathBuf>,
    /// A registry model: `CONFIG` (its `current` model), `CONFIG@ALIAS` or `CONFIG@vN`.
    #[arg(long = "model", value_name = "CONFIG[@ALIAS|@vN]")]
    pub model: Option<String>,
    /// Use the exponential moving average of the weights (default with `--run`: the raw ones;
    /// with `--model`: the weights the version was promoted with).
    #[arg(long, conflicts_with = "raw")]
    pub ema: bool,
    /// Use the raw weights.
    #[arg(long)]
    pub raw: bool,
    /// Report at most K labels per image (highest first).
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    /// Report labels whose probability is at least T (default 0.5, or 0 with `--top-k`).
    #[arg(long, value_name = "T")]
    pub threshold: Option<f32>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value = "json")]
    pub format: PredictFormat,
    /// Image files (JPEG or PNG).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<PathBuf>,
    /// `cpu`, `libtorch` or `cuda:N` (libtorch needs a `--features tch` build).
    #[arg(long, value_name = "DEVICE", default_value = "cpu")]
    pub device: sspa_config::ComputeDevice,
}

/// The train output directory and default weights of `--run` or `--model`.
fn source(args: &PredictArgs) -> anyhow::Result<(PathBuf, Weights)> {
    if let Some(run) = &args.run {
        return Ok((train_dir(run).map_err(|e| UsageError(e.to_string()))?, Weights::Raw));
    }
    let text = args.model.as_deref().unwrap_or_default();
    let (config, reference) = match text.rsplit_once('@') {
        Some((config, reference)) => (config, reference),
        None => (text, sspa_registry::CURRENT),
    };
    let reference = sspa_registry::Reference::parse(reference)?;
    let config_args = crate::cli::ConfigArgs { config: PathBuf::from(config), pipeline: None, set: Vec::new() };
    let (_, project) = crate::project::load(&config_args)?;
    let registry = sspa_registry::Registry::of_workspace(&project.workspace.root);
    let version = registry.resolve(&reference).with_context(|| format!("--model {text}"))?;
    tracing::info!("predict: model v{} of `{}` ({reference})", version.info.version, registry.dir().display());
    let weights = if version.info.origin.weights == "raw" { Weights::Raw } else { Weights::Ema };
    Ok((version.dir, weights))
}

pub fn predict(args: &PredictArgs, progress: bool) -> anyhow::Result<u8> {
    let PredictArgs { top_k, threshold, format, images, device, .. } = args;
    let (top_k, threshold, format, images, device) = (*top_k, *threshold, *format, images.as_slice(), *device);
    let threshold = threshold.unwrap_or(if top_k.is_some() { 0.0 } else { 0.5 });
    if !(0.0..=1.0).contains(&threshold) {
        return Err(UsageError(format!("--threshold {threshold} is outside [0, 1]")).into());
    }
    if top_k == Some(0) {
        return Err(UsageError("--top-k must be at least 1".into()).into());
    }
    let (dir, default_weights) = source(args)?;
    let weights = match (args.ema, args.raw) {
        (true, _) => Weights::Ema,
        (_, true) => Weights::Raw,
        _ => default_weights,
    };
    let project_root = std::env::current_dir().context("reading the current directory")?;
    let device = crate::commands::encode::device(device)?;
    let predictor = ImagePredictor::load(&dir, weights, &project_root, &device)
        .with_context(|| format!("loading the trained run in `{}`", dir.display()))?;

    let bar =
        if progress { indicatif::ProgressBar::new(images.len() as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("predict [{bar:30}] {pos}/{len} images {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let results = predictor.predict(images, |n| bar.inc(n as u64));
    bar.finish_and_clear();

    let labels = predictor.labels();
    let mut failed = 0usize;
    let mut rows = Vec::new();
    for (path, result) in images.iter().zip(&results) {
        match result {
            Ok(probabilities) => {
                let chosen = select(probabilities, threshold, top_k);
                rows.push((
                    path,
                    chosen.into_iter().map(|i| (labels[i].as_str(), probabilities[i])).collect::<Vec<_>>(),
                ));
            }
            Err(reason) => {
                failed += 1;
                eprintln!("error: `{}`: {reason}", path.display());
            }
        }
    }

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match format {
        PredictFormat::Json => {
            let json: Vec<_> = rows
                .iter()
                .map(|(path, chosen)| {
                    serde_json::json!({
                        "image": path.display().to_string(),
                        "labels": chosen.iter().map(|(label, p)| serde_json::json!({"label": label, "probability": p})).collect::<Vec<_>>(),
                    })
                })
                .collect();
            writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
        }
        PredictFormat::Csv => {
            writeln!(out, "image,label,probability")?;
            for (path, chosen) in &rows {
                for (label, p) in chosen {
                    writeln!(out, "{},{},{p:.6}", csv_field(&path.display().to_string()), csv_field(label))?;
                }
            }
        }
    }
    if failed > 0 {
        eprintln!("error: {failed} of {} images could not be predicted", images.len());
        return Ok(exit::STAGE_FAILED);
    }
    Ok(exit::OK)
}

/// RFC 4180 quoting when needed.
fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}
