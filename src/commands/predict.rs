//! `sspa-pipe predict`: labels of new images from a trained run, as JSON or CSV on stdout.
//! Unreadable images are reported one per line on stderr; the others are still predicted, and
//! the exit code is 1 when any image failed.

use std::io::Write;
use std::path::{Path, PathBuf};

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

pub fn predict(
    run: &Path,
    ema: bool,
    top_k: Option<usize>,
    threshold: Option<f32>,
    format: PredictFormat,
    images: &[PathBuf],
    device: sspa_config::ComputeDevice,
    progress: bool,
) -> anyhow::Result<u8> {
    let threshold = threshold.unwrap_or(if top_k.is_some() { 0.0 } else { 0.5 });
    if !(0.0..=1.0).contains(&threshold) {
        return Err(UsageError(format!("--threshold {threshold} is outside [0, 1]")).into());
    }
    if top_k == Some(0) {
        return Err(UsageError("--top-k must be at least 1".into()).into());
    }
    let dir = train_dir(run).map_err(|e| UsageError(e.to_string()))?;
    let weights = if ema { Weights::Ema } else { Weights::Raw };
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
