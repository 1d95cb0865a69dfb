//! `evaluate`: scores the `evaluate.split` features (cached by the train stage) with the raw and
//! the EMA head → `scores.parquet` (raw), `scores_ema.parquet`, `targets.parquet` and
//! `metrics.json = {"raw": Report, "ema": Report}` (sspa-metrics).

use crate::features::FeatureManifest;
use sspa_config::EvaluateSection;
use sspa_dag::{Stage, StageContext, StageError};
use sspa_metrics::{EvalData, EvalOptions, MetricKind};
use sspa_train::{Predictor, Weights};

use burn::prelude::*;

/// `metrics.json`.
pub const METRICS_FILE: &str = "metrics.json";

pub struct Evaluate;

/// `[evaluate]` as the metrics crate's options.
pub(crate) fn eval_options(section: &EvaluateSection) -> Result<EvalOptions, StageError> {
    let kind: MetricKind =
        serde_json::from_value(serde_json::to_value(section.kind)?).map_err(|e| format!("`evaluate.kind`: {e}"))?;
    Ok(EvalOptions { kind, threshold: section.threshold as f32, top_k: section.top_k as usize })
}

impl Stage for Evaluate {
    fn kind(&self) -> &str {
        "evaluate"
    }

    fn version(&self) -> u32 {
        1
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let section: EvaluateSection = ctx.section("evaluate")?;
        let options = eval_options(&section)?;
        let train_dir = ctx.input("train")?;
        let manifest = FeatureManifest::read(train_dir)?;
        let split = match section.split.as_str() {
            "test" => &manifest.test,
            "train" => &manifest.train,
            other => {
                return Err(format!("`evaluate.split = \"{other}\"`: the train stage cached `train` and `test`").into());
            }
        };
        ctx.progress.set_length(3);
        ctx.progress.set_message(format!("loading `{}` features", section.split));
        let features = FeatureManifest::load(split)?;
        ctx.progress.inc(1);
        let device = Device::flex();
        let mut reports = serde_json::Map::new();
        let mut targets_written = false;
        for (name, weights, file) in
            [("raw", Weights::Raw, "scores.parquet"), ("ema", Weights::Ema, "scores_ema.parquet")]
        {
            if ctx.cancelled() {
                return Err("cancelled".into());
            }
            ctx.progress.set_message(format!("scoring with the {name} weights"));
            let predictor = Predictor::load(train_dir, weights, &device)?;
            let labels = predictor.labels().to_vec();
            let scores = predictor.predict(&features)?;
            let data = EvalData::from_row_major(features.ids.clone(), labels, &scores, &features.targets)?;
            let report = sspa_metrics::evaluate_data(&data, &options)?;
            tracing::info!("evaluate ({name}): mAP {:.2} on {} images", report.mean_average_precision, data.n_images());
            sspa_metrics::write_scores(&ctx.out_dir.join(file), data.scores())?;
            if !targets_written {
                sspa_metrics::write_targets(&ctx.out_dir.join("targets.parquet"), data.targets())?;
                targets_written = true;
            }
            reports.insert(name.to_owned(), serde_json::to_value(&report)?);
            ctx.progress.inc(1);
        }
        sspa_dag::write_json_atomic(&ctx.out_dir.join(METRICS_FILE), &serde_json::Value::Object(reports))?;
        Ok(())
    }
}
