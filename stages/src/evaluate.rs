//! `evaluate`: scores the `evaluate.split` features (cached by the train stage, or, when the image
//! encoder was trained, computed here by the run's raw and EMA encoders) with the raw and the EMA
//! head → `scores.parquet` (raw), `scores_ema.parquet`, `targets.parquet`,
//! `metrics.json = {"raw": Report, "ema": Report}` (sspa-metrics) and `maps.json`
//! ([`sspa_report::maps::MapsFile`]): the raw head's aggregator patch weights and S→V gate
//! magnitudes for a few test images, which the report stage draws (SSPA Figs. 7–8).

use crate::features::FeatureManifest;
use sspa_config::EvaluateSection;
use sspa_dag::{Stage, StageContext, StageError};
use sspa_metrics::{EvalData, EvalOptions};
use sspa_report::maps::{self, ImageMaps, LabelMap, MapsFile};
use sspa_train::{FeatureSet, Predictor, Weights};

use burn::prelude::*;

/// `metrics.json`.
pub const METRICS_FILE: &str = "metrics.json";
/// Images with attention and gate maps.
const MAP_IMAGES: usize = 4;
/// Labels with an attention map per image.
const MAP_LABELS: usize = 3;

pub struct Evaluate;

/// `[evaluate]` as the metrics crate's options.
pub(crate) fn eval_options(section: &EvaluateSection) -> EvalOptions {
    EvalOptions { kind: section.kind, threshold: section.threshold as f32, top_k: section.top_k as usize }
}

impl Stage for Evaluate {
    fn kind(&self) -> &str {
        "evaluate"
    }

    fn version(&self) -> u32 {
        2
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let section: EvaluateSection = ctx.section("evaluate")?;
        let options = eval_options(&section);
        let train_dir = ctx.input("train")?;
        let manifest = FeatureManifest::read(train_dir)?;
        let split = match section.split.as_str() {
            "test" => &manifest.test,
            "train" => &manifest.train,
            other => {
                return Err(format!("`evaluate.split = \"{other}\"`: the train stage cached `train` and `test`").into());
            }
        };
        ctx.progress.set_length(4);
        let cached = if manifest.fine_tuned {
            None
        } else {
            ctx.progress.set_message(format!("loading `{}` features", section.split));
            let split = split.as_ref().ok_or("features.json names no feature cache (rerun the train stage)")?;
            Some(FeatureManifest::load(split)?)
        };
        ctx.progress.inc(1);
        // A trained encoder runs on the device it was trained on, where this build and machine
        // have it (the same settings as training, as one process may run both); cached features
        // are scored on the CPU.
        let device = if manifest.fine_tuned { training_device(train_dir) } else { Device::flex() };
        let mut reports = serde_json::Map::new();
        let mut targets_written = false;
        let mut raw = None;
        for (name, weights, file) in
            [("raw", Weights::Raw, "scores.parquet"), ("ema", Weights::Ema, "scores_ema.parquet")]
        {
            if ctx.cancelled() {
                return Err("cancelled".into());
            }
            let predictor = Predictor::load(train_dir, weights, &device)?;
            let encoded = if cached.is_some() {
                None
            } else {
                ctx.progress.set_message(format!("encoding `{}` with the {name} image encoder", section.split));
                Some(encode_with_run(ctx, &predictor, &section.split, manifest.image_size, &device)?)
            };
            let features = cached.as_ref().or(encoded.as_ref()).ok_or("no features to score")?;
            ctx.progress.set_message(format!("scoring with the {name} weights"));
            let labels = predictor.labels().to_vec();
            let scores = predictor.predict(features)?;
            let data = EvalData::from_row_major(features.ids.clone(), labels, &scores, &features.targets)?;
            let report = sspa_metrics::evaluate_data(&data, &options)?;
            tracing::info!("evaluate ({name}): mAP {:.2} on {} images", report.mean_average_precision, data.n_images());
            sspa_metrics::write_scores(&ctx.out_dir.join(file), data.scores())?;
            if !targets_written {
                sspa_metrics::write_targets(&ctx.out_dir.join("targets.parquet"), data.targets())?;
                targets_written = true;
            }
            reports.insert(name.to_owned(), serde_json::to_value(&report)?);
            if weights == Weights::Raw {
                // The raw encoder's features stay for the maps (moved, not copied: they can be GBs).
                raw = Some((predictor, scores, encoded));
            }
            ctx.progress.inc(1);
        }
        sspa_dag::write_json_atomic(&ctx.out_dir.join(METRICS_FILE), &serde_json::Value::Object(reports))?;

        ctx.progress.set_message("attention and gate maps");
        let (predictor, scores, encoded) = raw.ok_or("the raw weights were not scored")?;
        let features = cached.as_ref().or(encoded.as_ref()).ok_or("the raw weights' features were not kept")?;
        let maps = attention_maps(&predictor, features, &scores, &section.split, ctx.input("shard")?)?;
        tracing::info!(
            "evaluate: maps of {} images{}",
            maps.images.len(),
            maps.note.as_deref().map(|note| format!(" ({note})")).unwrap_or_default()
        );
        sspa_dag::write_json_atomic(&ctx.out_dir.join(maps::MAPS_FILE), &maps)?;
        ctx.progress.inc(1);
        Ok(())
    }
}

/// The device and precision `config.json` records for training, or the CPU where this build or
/// machine cannot use them.
fn training_device(train_dir: &std::path::Path) -> Device {
    let chosen = sspa_train::ModelConfig::load(&train_dir.join(sspa_train::files::CONFIG))
        .map_err(|e| e.to_string())
        .and_then(|config| crate::device::select(&config.train).map_err(|e| e.to_string()));
    chosen.unwrap_or_else(|reason| {
        tracing::warn!("evaluate: encoding on the CPU ({reason})");
        Device::flex()
    })
}

/// The evaluation split's features under the run's own trained image encoder (raw or EMA, as
/// `predictor` was loaded), through the evaluation loader at the trained input size.
fn encode_with_run(
    ctx: &StageContext,
    predictor: &Predictor,
    split: &str,
    image_size: u32,
    device: &Device,
) -> Result<FeatureSet, StageError> {
    let backbone = predictor
        .backbone()
        .ok_or("features.json says the image encoder was trained, but the run's weights hold none")?;
    let shards = sspa_data::open_shards(ctx.input("shard")?)?;
    let mean_std = sspa_data::mean_std(&predictor.config().model.preset)?;
    let mut done = 0;
    crate::features::encode_split(ctx, backbone, &shards, split, image_size, mean_std, device, &mut done)
}

/// A tensor's values as `f32`, row-major.
fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().iter::<f32>().collect()
}

/// The raw head's maps for the images [`maps::choose_images`] picks from `scores`; the row of
/// each image in the shard split is looked up by its id, so the report can read its pixels.
fn attention_maps(
    predictor: &Predictor,
    features: &FeatureSet,
    scores: &[f32],
    split: &str,
    shard_dir: &std::path::Path,
) -> Result<MapsFile, StageError> {
    let classes = features.classes;
    let patches = features.patches_per_image;
    let mut file = MapsFile {
        version: maps::MAPS_VERSION,
        model: "raw".into(),
        split: split.to_owned(),
        grid: [0, 0],
        selection: maps::SELECTION.into(),
        note: None,
        images: Vec::new(),
    };
    let Some(grid) = maps::square_grid(patches) else {
        file.note = Some(format!("N = {patches} patches is not a square grid"));
        return Ok(file);
    };
    file.grid = grid;
    let chosen = maps::choose_images(scores, &features.targets, classes, MAP_IMAGES, MAP_LABELS);
    if chosen.is_empty() {
        file.note = Some("no true positive to show".into());
        return Ok(file);
    }
    let rows: Vec<usize> = chosen.iter().map(|choice| choice.image).collect();
    let output = predictor.explain(features, &rows)?;
    let weights = output.aggregator_weights.map(values);
    // S→V gate magnitude: the mean over d of the gate values, `[b, N]`.
    let gate = output.patch_gate.map(|gate| {
        let [batch, n, _] = gate.dims();
        values(gate.mean_dim(2).reshape([batch, n]))
    });
    if weights.is_none() && gate.is_none() {
        file.note = Some("the head has neither an aggregator nor a semantic-to-visual gate".into());
        return Ok(file);
    }

    let shards = sspa_data::open_shards(shard_dir)?;
    let reader = shards.split(split)?;
    let mut row_of: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (row, record) in reader.records().iter().enumerate() {
        row_of.entry(record.path.as_str()).or_insert(row);
    }
    let labels = predictor.labels();
    for (index, choice) in chosen.iter().enumerate() {
        let image = &features.ids[choice.image];
        let row = *row_of
            .get(image.as_str())
            .ok_or_else(|| format!("image `{image}` of the feature cache is not in shard split `{split}`"))?;
        let label_maps = choice
            .classes
            .iter()
            .map(|&class| LabelMap {
                label: labels[class].clone(),
                score: scores[choice.image * classes + class],
                target: features.targets[choice.image * classes + class],
                weights: weights.as_ref().map(|weights| {
                    // `[b, N, C]`: patch `p` of batch item `index` at `(index · N + p) · C + class`.
                    (0..patches).map(|patch| weights[(index * patches + patch) * classes + class]).collect()
                }),
            })
            .collect();
        let gate = gate.as_ref().map(|gate| gate[index * patches..(index + 1) * patches].to_vec());
        file.images.push(ImageMaps { image: image.clone(), row, labels: label_maps, gate });
    }
    Ok(file)
}
