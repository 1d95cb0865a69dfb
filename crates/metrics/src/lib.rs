//! sspa-metrics: the evaluation conventions of sspa-pipe, stated once.
//!
//! Every metric follows the "Metrics" section of the SSPA design page (paper section IV-A):
//!
//! - **AP per class** (ASL convention): rank by score, `AP = (1/P) Σ_{k: y_k=1} precision@k`,
//!   ignored targets (−1) removed first. **Ties** (equal `f32` scores) share one rank, the last
//!   of their group: every positive of a tied group gets the precision at the group's end. This
//!   makes AP independent of row order and equal to scikit-learn's `average_precision_score`;
//!   without ties it is exactly the ASL formula. **mAP** averages only classes with positives;
//!   the others are named in [`Report::classes_without_positives`].
//! - **CP, CR, CF1, OP, OR, OF1** at a threshold (`p ≥ threshold`, default 0.5): `CP` averages
//!   `Nc/Np` over all classes (0 when `Np = 0`), `CR` averages `Nc/Ng` over classes with
//!   `Ng > 0`, `CF1 = 2·CP·CR/(CP+CR)`; `OP = ΣNc/ΣNp`, `OR = ΣNc/ΣNg`, `OF1` their harmonic
//!   mean. Ignored targets are left out of every count.
//! - **Top-k**: per image the `k` highest-scoring labels are predicted when `p ≥ threshold`;
//!   equal scores at the boundary go to the label that comes first in the label order. The
//!   choice is made among all labels (a model does not know which targets are ignored); ignored
//!   targets among the chosen are then left out of the counts.
//! - **Pedestrian**: `mA = mean_c (TPR_c + TNR_c)/2` over classes where both rates are defined;
//!   instance Accuracy/Precision/Recall averaged over images (an empty denominator counts 0),
//!   `F1` the harmonic mean of mean Precision and mean Recall.
//!
//! All reported values are percentages. Scores are `f32` probabilities in `[0, 1]`, targets
//! `i8` in `{1, 0, −1}`; both are stored column-major (one contiguous column a label) because
//! Parquet delivers columns and AP sorts each column.

mod counts;
mod data;
mod error;
pub mod io;
mod ranking;
mod report;

pub use data::{EvalData, LabelMatrix, Scores, Targets};
pub use error::{MetricsError, ValueProblem};
pub use io::{read_eval_data, read_scores, read_targets, write_scores, write_targets};
pub use ranking::{PrCurve, PrPoint, average_precision, mean_average_precision, precision_recall_curve};
pub use report::{
    PedestrianMetrics, PrecisionRecall, Report, best_and_worst_curves, flatten_metrics_json, headline_names,
};
/// The `[evaluate] kind` of the domain config: one definition, in the (serde-only) config crate.
pub use sspa_config::MetricKind;

use std::path::Path;

/// How to evaluate: the `[evaluate]` section of a domain config, minus the split.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalOptions {
    pub kind: MetricKind,
    /// A label is predicted when `p ≥ threshold`.
    pub threshold: f32,
    /// `k` of the top-k metrics (JSON key `top{k}`).
    pub top_k: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self { kind: MetricKind::Natural, threshold: 0.5, top_k: 3 }
    }
}

/// Reads a scores and a targets Parquet file, matches them and evaluates: the `eval` command.
pub fn evaluate_files(scores: &Path, targets: &Path, options: &EvalOptions) -> Result<Report, MetricsError> {
    let started = std::time::Instant::now();
    let data = read_eval_data(scores, targets)?;
    tracing::debug!(
        images = data.n_images(),
        labels = data.n_labels(),
        seconds = started.elapsed().as_secs_f64(),
        "read scores and targets"
    );
    evaluate_data(&data, options)
}

/// Evaluates row-major `n_images × labels.len()` scores and targets (as a model emits them).
/// Errors name images by row (`row 17`).
pub fn evaluate(
    scores: &[f32],
    targets: &[i8],
    n_images: usize,
    labels: &[String],
    options: &EvalOptions,
) -> Result<Report, MetricsError> {
    let images = (0..n_images).map(|row| format!("row {row}")).collect();
    let data = EvalData::from_row_major(images, labels.to_vec(), scores, targets)?;
    evaluate_data(&data, options)
}

/// Evaluates matched, validated data.
pub fn evaluate_data(data: &EvalData, options: &EvalOptions) -> Result<Report, MetricsError> {
    report::evaluate(data, options)
}
