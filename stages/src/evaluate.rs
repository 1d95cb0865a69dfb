//! `evaluate`: scores the `evaluate.split` features (the features stage's, or, when the image
//! encoder was trained, computed here by the run's raw and EMA encoders on the `train.device`)
//! with the raw and the EMA head → `scores.parquet` (raw), `scores_ema.parquet`, `targets.parquet`,
//! `metrics.json = {"raw": Report, "ema": Report}` (sspa-metrics) and `maps.json`
//! ([`sspa_report::maps::MapsFile`]): the raw head's aggregator patch weights and S→V gate
//! magnitudes for a few test images, which the report stage draws (SSPA Figs. 7–8).

use crate::params::TypedStage;
use serde::{Deserialize, Serialize};
use sspa_config::EvaluateSection;
use sspa_dag::{StageContext, StageError};
use sspa_infer::DeviceSettings;
use sspa_infer::features::{FeatureError, FeatureManifest, encode_split_into, split_ids};
use sspa_metrics::{EvalData, EvalOptions};
use sspa_report::maps::{self, ImageMaps, LabelMap, MapsFile};
use sspa_train::{Predictor, Weights};
use std::path::Path;

use burn::prelude::*;

/// `metrics.json`.
pub const METRICS_FILE: &str = "metrics.json";
/// Images with attention and gate maps.
const MAP_IMAGES: usize = 4;
/// Labels with an attention map per image.
const MAP_LABELS: usize = 3;

pub struct Evaluate;

/// `evaluate`, `train.device`, `train.precision`.
#[derive(Debug, Serialize, Deserialize)]
pub struct EvaluateParams {
    pub evaluate: EvaluateSection,
    pub train: DeviceSettings,
}

/// `[evaluate]` as the metrics crate's options.
pub(crate) fn eval_options(section: &EvaluateSection) -> EvalOptions {
    EvalOptions { kind: section.kind, threshold: section.threshold as f32, top_k: section.top_k as usize }
}

impl TypedStage for Evaluate {
    type Params = EvaluateParams;
    const KIND: &'static str = "evaluate";
    /// 3: features come from the features stage.
    const VERSION: u32 = 3;

    fn run(&self, params: EvaluateParams, ctx: &StageContext) -> Result<(), StageError> {
        let section = params.evaluate;
        let options = eval_options(&section);
        let train_dir = ctx.input("train")?;
        let run_features = FeatureManifest::read(train_dir)?;
        ctx.progress.set_length(4);
        let source = if run_features.fine_tuned {
            // Features the run's own encoder computes here are written (batch by batch) and mapped
            // like the features stage's: never held whole. They live until the stage ends.
            let scratch = std::fs::create_dir_all(&ctx.state_dir)
                .and_then(|()| tempfile::Builder::new().prefix("encoded-").tempdir_in(&ctx.state_dir))
                .map_err(|e| format!("a scratch directory in `{}`: {e}", ctx.state_dir.display()))?;
            SplitSource::Encode(scratch)
        } else {
            ctx.progress.set_message(format!("loading `{}` features", section.split));
            let features_dir = ctx.input("features")?;
            SplitSource::Cached(ScoredSplit(FeatureManifest::read(features_dir)?.open(features_dir, &section.split)?))
        };
        ctx.progress.inc(1);
        let device = sspa_infer::device::select(params.train)?;
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
            let encoded = match &source {
                SplitSource::Cached(_) => None,
                SplitSource::Encode(scratch) => {
                    ctx.progress.set_message(format!("encoding `{}` with the {name} image encoder", section.split));
                    let file = scratch.path().join(format!("{name}.safetensors"));
                    Some(ScoredSplit(encode_with_run(
                        ctx,
                        &predictor,
                        &section.split,
                        run_features.image_size,
                        &device,
                        &file,
                    )?))
                }
            };
            let features = source.cached().or(encoded.as_ref()).ok_or("no features to score")?;
            ctx.progress.set_message(format!("scoring with the {name} weights"));
            let labels = predictor.labels().to_vec();
            let scores = features.score(&predictor)?;
            let data = EvalData::from_row_major(features.ids().to_vec(), labels, &scores, &features.targets())?;
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
        let features = source.cached().or(encoded.as_ref()).ok_or("the raw weights' features were not kept")?;
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

/// The evaluation split's features under the run's own trained image encoder (raw or EMA, as
/// `predictor` was loaded), through the evaluation loader at the trained input size, written to
/// `file` as they are encoded and mapped back.
fn encode_with_run(
    ctx: &StageContext,
    predictor: &Predictor,
    split: &str,
    image_size: u32,
    device: &Device,
    file: &Path,
) -> Result<sspa_train::MappedFeatures, StageError> {
    let backbone = predictor
        .backbone()
        .ok_or("features.json says the image encoder was trained, but the run's weights hold none")?;
    let shards = sspa_data::open_shards(ctx.input("shard")?)?;
    let info = predictor.config().model.preset.info();
    let mut done = 0;
    let cancelled = || ctx.cancelled();
    let mut progress = |images: u64| {
        done += images;
        ctx.progress.set_message(format!("encoded {done} images"));
    };
    let ids = split_ids(&shards, split)?;
    let classes = shards.split(split)?.label_count;
    let metadata = std::collections::BTreeMap::from([("split".to_string(), split.to_owned())]);
    let exact = sspa_config::FeatureDtype::F32;
    sspa_train::write_features_streamed::<FeatureError>(file, &ids, classes, &metadata, exact, |writer| {
        let mean_std = (info.mean, info.std);
        encode_split_into(backbone, &shards, split, image_size, mean_std, device, &cancelled, &mut progress, &mut |b| {
            Ok(writer.append(b.global, b.patches, b.targets, b.patches_per_image, b.width)?)
        })
    })?;
    Ok(sspa_train::MappedFeatures::open(file)?.0)
}

/// One label's weights over the patches of batch item `item`, from row-major `[b, N, C]` values
/// (patch `p` at `(item · N + p) · C + class`).
fn patch_column(weights: &[f32], item: usize, class: usize, patches: usize, classes: usize) -> Vec<f32> {
    (0..patches).map(|patch| weights[(item * patches + patch) * classes + class]).collect()
}

/// Batch item `item`'s row of row-major `[b, N]` gate magnitudes.
fn gate_row(gate: &[f32], item: usize, patches: usize) -> Vec<f32> {
    gate[item * patches..(item + 1) * patches].to_vec()
}

/// A tensor's values as `f32`, row-major.
fn values<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().iter::<f32>().collect()
}

/// The evaluation split's features through a memory map, scored batch by batch and never held
/// whole: the features stage's file, or the one the run's own trained encoder wrote here.
struct ScoredSplit(sspa_train::MappedFeatures);

/// Where the scored split's features come from: the features stage's result, or the run's own
/// (fine-tuned) encoder, once per weights, into a scratch directory that lives until the stage ends.
enum SplitSource {
    Cached(ScoredSplit),
    Encode(tempfile::TempDir),
}

impl SplitSource {
    /// The features stage's split, when it is the source.
    fn cached(&self) -> Option<&ScoredSplit> {
        match self {
            Self::Cached(features) => Some(features),
            Self::Encode(_) => None,
        }
    }
}

impl ScoredSplit {
    fn ids(&self) -> &[String] {
        &self.0.ids
    }

    /// `[n, C]` targets (1, 0, −1).
    fn targets(&self) -> Vec<i8> {
        self.0.targets()
    }

    /// Classes `C` and patches per image `N`.
    fn sizes(&self) -> (usize, usize) {
        (self.0.classes, self.0.patches_per_image)
    }

    /// Probabilities `[n, C]` under `predictor`.
    fn score(&self, predictor: &Predictor) -> Result<Vec<f32>, sspa_train::TrainError> {
        predictor.predict_rows(&self.0.all_rows())
    }

    /// The head's whole output for the rows `rows`, in one forward pass.
    fn explain(&self, predictor: &Predictor, rows: &[usize]) -> Result<sspa_train::SspaOutput, StageError> {
        let picked = self.0.rows(rows.to_vec())?.to_feature_set();
        Ok(predictor.explain(&picked, &(0..rows.len()).collect::<Vec<_>>())?)
    }
}

/// The raw head's maps for the images [`maps::choose_images`] picks from `scores`; the row of
/// each image in the shard split is looked up by its id, so the report can read its pixels.
fn attention_maps(
    predictor: &Predictor,
    features: &ScoredSplit,
    scores: &[f32],
    split: &str,
    shard_dir: &std::path::Path,
) -> Result<MapsFile, StageError> {
    let (classes, patches) = features.sizes();
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
    let targets = features.targets();
    let chosen = maps::choose_images(scores, &targets, classes, MAP_IMAGES, MAP_LABELS);
    if chosen.is_empty() {
        file.note = Some("no true positive to show".into());
        return Ok(file);
    }
    let rows: Vec<usize> = chosen.iter().map(|choice| choice.image).collect();
    let output = features.explain(predictor, &rows)?;
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
        let image = &features.ids()[choice.image];
        let row = *row_of
            .get(image.as_str())
            .ok_or_else(|| format!("image `{image}` of the feature cache is not in shard split `{split}`"))?;
        let label_maps = choice
            .classes
            .iter()
            .map(|&class| LabelMap {
                label: labels[class].clone(),
                score: scores[choice.image * classes + class],
                target: targets[choice.image * classes + class],
                weights: weights.as_ref().map(|weights| patch_column(weights, index, class, patches, classes)),
            })
            .collect();
        let gate = gate.as_ref().map(|gate| gate_row(gate, index, patches));
        file.images.push(ImageMaps { image: image.clone(), row, labels: label_maps, gate });
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_rows_and_columns_follow_the_tensor_layout() {
        // [b = 2, N = 3, C = 2] with value = 100·b + 10·p + c.
        let weights: Vec<f32> =
            (0..2).flat_map(|b| (0..3).flat_map(move |p| (0..2).map(move |c| (100 * b + 10 * p + c) as f32))).collect();
        assert_eq!(patch_column(&weights, 1, 0, 3, 2), [100.0, 110.0, 120.0]);
        assert_eq!(patch_column(&weights, 0, 1, 3, 2), [1.0, 11.0, 21.0]);
        let gate: Vec<f32> = (0..6).map(|v| v as f32).collect();
        assert_eq!(gate_row(&gate, 1, 3), [3.0, 4.0, 5.0]);
    }
}
