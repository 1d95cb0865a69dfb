//! sspa-report: `report.md` and a self-contained `report.html` of one training run.
//!
//! Input is plain data ([`ReportData`]) gathered by the report stage; output is two strings.
//! The HTML needs no network: plots are inline SVG drawn by [`svg`], images are base64 `data:`
//! URLs, styles are inline. Every label and string from the data is escaped. Attention and gate
//! maps are drawn as PNG by [`heatmap`] from the evaluate stage's [`maps`] file.

mod base64;
pub mod heatmap;
mod html;
pub mod maps;
mod markdown;
pub mod markup;
pub mod svg;

use serde::Serialize;
pub use sspa_metrics::{PrCurve, PrPoint};
use std::borrow::Cow;

/// The headline metrics of one model (e.g. `raw` or `EMA`), in percent, in table order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelMetrics {
    pub name: String,
    pub metrics: Vec<(String, f64)>,
}

impl ModelMetrics {
    pub fn from_report(name: &str, report: &sspa_metrics::Report) -> Self {
        Self { name: name.to_owned(), metrics: report.headline() }
    }

    /// From a `metrics.json` object as `eval --json` prints it (a previous run's, say).
    pub fn from_json(name: &str, json: &serde_json::Value) -> Self {
        Self { name: name.to_owned(), metrics: sspa_metrics::flatten_metrics_json(json) }
    }

    pub fn get(&self, metric: &str) -> Option<f64> {
        self.metrics.iter().find(|(name, _)| name == metric).map(|&(_, value)| value)
    }
}

/// One epoch of training; validation values are absent for epochs without validation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochRecord {
    pub epoch: u32,
    pub train_loss: f64,
    pub learning_rate: f64,
    /// Percent.
    pub val_map_raw: Option<f64>,
    /// Percent.
    pub val_map_ema: Option<f64>,
}

/// The run the delta is taken against (the previous run of the same domain).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreviousRun {
    pub run_id: String,
    /// Matched to the current models by name.
    pub models: Vec<ModelMetrics>,
}

/// Where the run's inputs came from; absent values are shown as "—". What each hash covers is
/// part of the report ([`Lineage::rows`]), so the producer must compute them as documented there.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Lineage {
    pub config_hash: Option<String>,
    pub manifest_hash: Option<String>,
    pub description_cache_hash: Option<String>,
    /// Token totals over the descriptions in that file.
    pub description_tokens: Option<DescriptionTokens>,
    pub model_preset: Option<String>,
    pub weights_hash: Option<String>,
    pub git_commit: Option<String>,
    /// Input files (path as the pipeline names it) and their BLAKE3, for the file table.
    pub files: Vec<(String, String)>,
}

/// Tokens the LLM server counted (its `usage`) for the descriptions a run used, summed over
/// every answer in `descriptions.parquet`, cached ones included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct DescriptionTokens {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Answers (rows) in the file.
    pub answers: usize,
    /// Answers whose server reported no usage: they count nothing in the sums.
    pub answers_without_usage: usize,
}

impl DescriptionTokens {
    /// `1200 prompt + 480 completion (40 answers)`, noting answers that were not counted.
    pub fn summary(&self) -> String {
        let mut text = format!(
            "{} prompt + {} completion ({} answer{})",
            self.prompt_tokens,
            self.completion_tokens,
            self.answers,
            if self.answers == 1 { "" } else { "s" }
        );
        if self.answers_without_usage > 0 {
            text.push_str(&format!("; {} without usage, not counted", self.answers_without_usage));
        }
        text
    }
}

impl Lineage {
    /// `(name, value, what the value is)` in table order.
    pub fn rows(&self) -> [(&'static str, Option<Cow<'_, str>>, &'static str); 7] {
        fn text(value: &Option<String>) -> Option<Cow<'_, str>> {
            value.as_deref().map(Cow::Borrowed)
        }
        [
            (
                "config hash",
                text(&self.config_hash),
                "BLAKE3 of the canonical JSON (keys sorted, no spaces) of the resolved config values the \
                 pipeline's stages read (every stage's declared params, merged)",
            ),
            (
                "manifest hash",
                text(&self.manifest_hash),
                "BLAKE3 of the canonical JSON map `path → BLAKE3` of the data manifest and the annotation \
                 files it names (files below)",
            ),
            (
                "description-cache hash",
                text(&self.description_cache_hash),
                "BLAKE3 of the describe stage's `descriptions.parquet` (the LLM descriptions used)",
            ),
            (
                "description tokens",
                self.description_tokens.map(|tokens| Cow::Owned(tokens.summary())),
                "prompt and completion tokens the LLM server counted (`usage`), summed over the answers in \
                 `descriptions.parquet`, cached ones included",
            ),
            ("model preset", text(&self.model_preset), "`model.preset` of the config"),
            (
                "weights hash",
                text(&self.weights_hash),
                "BLAKE3 of the canonical JSON map `path → BLAKE3` of the frozen encoders' weight files \
                 (files below)",
            ),
            ("git commit", text(&self.git_commit), "`git rev-parse HEAD` of the project when the report ran"),
        ]
    }
}

/// A PNG figure (attention or gate map) to inline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportImage {
    pub caption: String,
    /// Where the PNG is also written, relative to `report.md` (linked from it), if anywhere.
    pub file: Option<String>,
    #[serde(skip)]
    pub png: Vec<u8>,
}

/// Everything a report shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReportData {
    /// Domain name, for the title.
    pub domain: String,
    pub run_id: String,
    /// Models side by side in the metric table, e.g. `raw` then `EMA`.
    pub models: Vec<ModelMetrics>,
    /// Per-class AP (percent) of the model the charts show.
    pub per_class_ap: Vec<(String, f64)>,
    /// Which model `per_class_ap` and `pr_curves` belong to.
    pub chart_model: String,
    /// Classes without positives: no AP, listed by name.
    pub classes_without_positives: Vec<String>,
    /// Precision-recall curves (best and worst classes), see
    /// `sspa_metrics::best_and_worst_curves`.
    pub pr_curves: Vec<PrCurve>,
    pub training: Vec<EpochRecord>,
    pub previous: Option<PreviousRun>,
    pub lineage: Lineage,
    pub images: Vec<ReportImage>,
}

/// One row of the delta table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Delta {
    pub model: String,
    pub metric: String,
    pub previous: f64,
    pub current: f64,
}

impl ReportData {
    pub(crate) fn title(&self) -> String {
        format!("sspa-pipe report: {} (run {})", self.domain, self.run_id)
    }

    /// Metric names over all models, in first-seen order.
    pub(crate) fn metric_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for model in &self.models {
            for (name, _) in &model.metrics {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
        names
    }

    /// Metrics present in both runs, for models of the same name.
    pub(crate) fn deltas(&self) -> Vec<Delta> {
        let Some(previous) = &self.previous else { return Vec::new() };
        let mut rows = Vec::new();
        for model in &self.models {
            let Some(before) = previous.models.iter().find(|other| other.name == model.name) else { continue };
            for (metric, current) in &model.metrics {
                if let Some(previous) = before.get(metric) {
                    rows.push(Delta { model: model.name.clone(), metric: metric.clone(), previous, current: *current });
                }
            }
        }
        rows
    }

    /// Per-class AP, best first (ties by label).
    pub(crate) fn ranked_ap(&self) -> Vec<(String, f64)> {
        let mut ranked = self.per_class_ap.clone();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        ranked
    }
}

/// Renders `(report.md, report.html)`.
pub fn render(data: &ReportData) -> (String, String) {
    (markdown::render(data), html::render(data))
}

/// `+1.23` / `-0.50` / `+0.00`.
pub(crate) fn signed(value: f64) -> String {
    if value >= 0.0 { format!("+{value:.2}") } else { format!("{value:.2}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_tokens_follow_the_description_cache_hash() {
        let tokens = DescriptionTokens { prompt_tokens: 7, completion_tokens: 3, answers: 1, answers_without_usage: 0 };
        assert_eq!(tokens.summary(), "7 prompt + 3 completion (1 answer)");
        let lineage = Lineage { description_tokens: Some(tokens), ..Lineage::default() };
        let rows = lineage.rows();
        let names: Vec<&str> = rows.iter().map(|(name, _, _)| *name).collect();
        let at = names.iter().position(|name| *name == "description-cache hash").expect("hash row");
        assert_eq!(names[at + 1], "description tokens");
        assert_eq!(rows[at + 1].1.as_deref(), Some("7 prompt + 3 completion (1 answer)"));
        // Absent (no describe output read): shown as absent, like every other row.
        assert_eq!(Lineage::default().rows()[at + 1].1, None);
    }
}
