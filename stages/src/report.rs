//! `report`: `report.md` and a self-contained `report.html` (sspa-report) from the evaluate
//! stage's scores and metrics and the train stage's history.
//!
//! The delta is taken against the previous run: the metrics of the last report are kept in
//! this stage's `state_dir` (`last.json`) and replaced after rendering.

use serde::{Deserialize, Serialize};
use sspa_config::{DomainSection, EvaluateSection};
use sspa_dag::{Stage, StageContext, StageError};
use sspa_report::{EpochRecord, Lineage, ModelMetrics, PreviousRun, ReportData};
use std::path::Path;

pub struct Report;

/// `state_dir/last.json`: the metrics of the last rendered run and of the one before it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LastRun {
    run_id: String,
    metrics: serde_json::Value,
    #[serde(default)]
    previous: Option<Box<LastRun>>,
}

fn dir_name(dir: &Path) -> Option<String> {
    dir.file_name().map(|name| name.to_string_lossy().into_owned())
}

fn previous_models(last: &LastRun) -> PreviousRun {
    let mut models = Vec::new();
    for (key, name) in [("raw", "raw"), ("ema", "EMA")] {
        if let Some(json) = last.metrics.get(key) {
            models.push(ModelMetrics::from_json(name, json));
        }
    }
    PreviousRun { run_id: last.run_id.clone(), models }
}

impl Stage for Report {
    fn kind(&self) -> &str {
        "report"
    }

    fn version(&self) -> u32 {
        1
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let domain: DomainSection = ctx.section("domain")?;
        let section: EvaluateSection = ctx.section("evaluate")?;
        let options = crate::evaluate::eval_options(&section)?;
        let evaluate_dir = ctx.input("evaluate")?;
        let train_dir = ctx.input("train")?;
        let run_id = dir_name(evaluate_dir).map(|key| key.chars().take(16).collect::<String>()).unwrap_or_default();

        let metrics_path = evaluate_dir.join(crate::evaluate::METRICS_FILE);
        let metrics_json: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&metrics_path)
                .map_err(|e| format!("reading `{}`: {e}", metrics_path.display()))?,
        )?;

        // Current metrics (and the chart data) from the scores themselves.
        let targets = evaluate_dir.join("targets.parquet");
        let raw_data = sspa_metrics::read_eval_data(&evaluate_dir.join("scores.parquet"), &targets)?;
        let raw = sspa_metrics::evaluate_data(&raw_data, &options)?;
        let mut models = vec![ModelMetrics::from_report("raw", &raw)];
        let ema_scores = evaluate_dir.join("scores_ema.parquet");
        if ema_scores.is_file() {
            let ema_data = sspa_metrics::read_eval_data(&ema_scores, &targets)?;
            models.push(ModelMetrics::from_report("EMA", &sspa_metrics::evaluate_data(&ema_data, &options)?));
        }
        let pr_curves = sspa_metrics::best_and_worst_curves(&raw_data, &raw, 3, 200);

        let history = sspa_train::read_history(&train_dir.join(sspa_train::files::HISTORY))?;
        let training = history
            .iter()
            .map(|log| EpochRecord {
                epoch: log.epoch,
                train_loss: log.train_loss,
                learning_rate: log.lr,
                val_map_raw: log.val_map,
                val_map_ema: log.val_map_ema,
            })
            .collect();

        let config = sspa_train::ModelConfig::load(&train_dir.join(sspa_train::files::CONFIG))?;
        let weights_hash = crate::features::FeatureManifest::read(train_dir).ok().map(|features| {
            format!("efficientnet-lite0@{}", &features.weights_hash[..16.min(features.weights_hash.len())])
        });
        let lineage = Lineage {
            // The config hash is not visible to stages: the train stage's key covers its config.
            config_hash: dir_name(train_dir).map(|key| format!("train stage key {key}")),
            manifest_hash: ctx
                .input("shard")
                .ok()
                .and_then(|dir| dir_name(dir))
                .map(|key| format!("shard stage key {key}")),
            description_cache_hash: dir_name(ctx.input("describe")?).map(|key| format!("describe stage key {key}")),
            model_preset: Some(config.model.preset.clone()),
            weights_hash,
            git_commit: sspa_dag::record::git_commit(&ctx.project_root),
        };

        let last_path = ctx.state_dir.join("last.json");
        let last: Option<LastRun> =
            std::fs::read_to_string(&last_path).ok().and_then(|text| serde_json::from_str(&text).ok());
        // A rerun of the same evaluation compares with the run before it.
        let before = match last {
            Some(last) if last.run_id == run_id => last.previous.map(|boxed| *boxed),
            other => other,
        };
        let previous = before.as_ref().map(previous_models);

        let data = ReportData {
            domain: domain.name.clone(),
            run_id: run_id.clone(),
            models,
            per_class_ap: raw.per_class_ap.clone(),
            chart_model: "raw".into(),
            classes_without_positives: raw.classes_without_positives.clone(),
            pr_curves,
            training,
            previous,
            lineage,
            images: Vec::new(),
        };
        let (markdown, html) = sspa_report::render(&data);
        std::fs::write(ctx.out_dir.join("report.md"), markdown)?;
        std::fs::write(ctx.out_dir.join("report.html"), html)?;

        let record = LastRun {
            run_id,
            metrics: metrics_json,
            previous: before.map(|mut b| {
                b.previous = None;
                Box::new(b)
            }),
        };
        std::fs::create_dir_all(&ctx.state_dir)?;
        sspa_dag::write_json_atomic(&last_path, &record)?;
        Ok(())
    }
}
