//! The candidate and the current model measured on the same thing: the current run's evaluation
//! split, the labels both models know. The candidate's scores are the evaluate stage's; the
//! current model is re-scored on the current split (its own earlier metrics were measured on
//! the data of its day).

use anyhow::Context;
use serde_json::Value;
use sspa_config::{DomainConfig, ServedWeights};
use sspa_metrics::{EvalData, EvalOptions, LabelMatrix, Scores, Targets};
use sspa_registry::Version;
use std::path::Path;

/// Both models' reports on the shared labels.
pub struct Comparison {
    pub candidate: Value,
    pub current: Value,
    /// Labels both models score (the gate compares on these).
    pub labels: Vec<String>,
    /// Labels only the candidate knows (new ones) and only the current model knows (removed).
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub images: usize,
}

/// `evaluate/` output files of the served weights.
fn scores_file(weights: ServedWeights) -> &'static str {
    match weights {
        ServedWeights::Raw => "scores.parquet",
        ServedWeights::Ema => "scores_ema.parquet",
    }
}

/// The same matrix restricted to `labels` (which it must have), in that order.
fn restrict<T: Copy + Default + Send + Sync>(
    matrix: &LabelMatrix<T>,
    labels: &[String],
) -> anyhow::Result<LabelMatrix<T>> {
    let mut values = Vec::with_capacity(labels.len() * matrix.n_images());
    for label in labels {
        let index = matrix.labels().iter().position(|l| l == label).context("label present")?;
        values.extend_from_slice(matrix.column(index));
    }
    Ok(LabelMatrix::from_columns(matrix.images().to_vec(), labels.to_vec(), values)?)
}

/// A report's JSON as the gate and the decision log keep it: every headline metric, no
/// per-class lists.
fn headline(mut report: Value) -> Value {
    if let Value::Object(map) = &mut report {
        map.remove("per_class_ap");
        map.remove("classes_without_positives");
    }
    report
}

/// Scores the current model on the split the candidate was evaluated on and reports both on the
/// labels they share.
pub fn compare(
    config: &DomainConfig,
    champion: &Version,
    evaluate_dir: &Path,
    features_dir: &Path,
    shard_dir: &Path,
    cancelled: &dyn Fn() -> bool,
) -> anyhow::Result<Comparison> {
    let weights = config.promote.weights;
    let targets_path = evaluate_dir.join("targets.parquet");
    let targets: Targets = sspa_metrics::read_targets(&targets_path)?;
    let candidate: Scores = sspa_metrics::read_scores(&evaluate_dir.join(scores_file(weights)))?;
    let device = sspa_infer::device::select(sspa_infer::DeviceSettings::of(&config.train))?;
    let split = &config.evaluate.split;
    let scored =
        sspa_infer::score::score_split(&champion.dir, weights, features_dir, shard_dir, split, &device, cancelled)?;
    let current = Scores::from_row_major(scored.images, scored.labels.clone(), &scored.scores)?;

    let labels: Vec<String> = targets.labels().iter().filter(|l| scored.labels.contains(l)).cloned().collect();
    let added = targets.labels().iter().filter(|l| !scored.labels.contains(l)).cloned().collect();
    let removed = scored.labels.iter().filter(|l| !targets.labels().contains(l)).cloned().collect();
    if labels.is_empty() {
        anyhow::bail!(
            "the current model v{} and the candidate share no label (current: {}; candidate: {})",
            champion.info.version,
            scored.labels.join(", "),
            targets.labels().join(", ")
        );
    }
    let options = EvalOptions {
        kind: config.evaluate.kind,
        threshold: config.evaluate.threshold as f32,
        top_k: config.evaluate.top_k as usize,
    };
    let targets = restrict(&targets, &labels)?;
    let report = |scores: &Scores, who: &str| -> anyhow::Result<Value> {
        let data = EvalData::new(restrict(scores, &labels)?, targets.clone())
            .with_context(|| format!("matching the {who}'s scores to `{}`", targets_path.display()))?;
        Ok(headline(sspa_metrics::evaluate_data(&data, &options)?.to_json()))
    };
    Ok(Comparison {
        candidate: report(&candidate, "candidate")?,
        current: report(&current, "current model")?,
        images: targets.n_images(),
        labels,
        added,
        removed,
    })
}

/// The candidate's own report (all its labels) from its evaluate stage, for the registry.
pub fn candidate_metrics(evaluate_dir: &Path) -> anyhow::Result<Value> {
    let path = evaluate_dir.join("metrics.json");
    let bytes = std::fs::read(&path).with_context(|| format!("reading `{}`", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing `{}`", path.display()))
}

/// `metrics[weights]` without the per-class lists.
pub fn served_headline(metrics: &Value, weights: ServedWeights) -> Value {
    headline(metrics.get(weights.name()).cloned().unwrap_or(Value::Null))
}
