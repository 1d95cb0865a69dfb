//! Inference on new images with a trained run (`sspa-pipe predict`).
//!
//! An image goes through exactly what a test image went through: decoded, resized and centre-cropped
//! with the preset's evaluation geometry (the shard stage's policy), normalised with the preset's
//! mean/std, encoded by the frozen image encoder the run was trained with (checked against the
//! weights hash recorded in the run's `features.json`), then scored by the trained head with the
//! stored text features. Each image succeeds or fails on its own.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use fast_image_resize::Resizer;
use sspa_data::loader::eval_values;
use sspa_data::preprocess::{decode, fit};
use sspa_data::{Geometry, LoaderConfig};
use sspa_train::{Backbone, FeatureSet, Predictor, Weights};

use crate::encoders::{EncoderChoice, image_encoder, image_location, weight_files, weights_hash};
use crate::features::{FEATURES_FILE, FeatureManifest};

/// Images per encoder forward pass.
const BATCH: usize = 16;

/// What can stop prediction as a whole (a single unreadable image cannot).
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    /// `RUN_DIR` is neither a run record nor a train stage's output.
    #[error(
        "`{path}` is neither a run directory (`runs/<id>` with `run.json`) nor a train stage output \
         (`config.json` + `model.safetensors`)"
    )]
    NotARun { path: PathBuf },
    /// A run record without a finished train stage.
    #[error("run `{path}` has no finished train stage (status of `train`: {status})")]
    NoTrainStage { path: PathBuf, status: String },
    /// Reading or parsing a file of the run.
    #[error("reading `{path}`: {message}")]
    Read { path: PathBuf, message: String },
    /// The image encoder found is not the one the run was trained with.
    #[error(
        "image-encoder weights `{path}` have BLAKE3 {found}, but the run was trained with {expected}: \
         point `SSPA_EFFICIENTNET_DIR` (or the config's `model.image_weights`) at the original file"
    )]
    WeightsChanged { path: PathBuf, found: String, expected: String },
    /// Locating or loading the image encoder.
    #[error("image encoder: {0}")]
    Encoder(String),
    /// Loading the head or encoder.
    #[error(transparent)]
    Train(#[from] sspa_train::TrainError),
    #[error(transparent)]
    Data(#[from] sspa_data::DataError),
}

/// Finds the train stage's output directory: `path` itself, or the `train` stage of the run
/// record `path/run.json`.
///
/// # Errors
/// [`PredictError::NotARun`], [`PredictError::NoTrainStage`] or [`PredictError::Read`].
pub fn train_dir(path: &Path) -> Result<PathBuf, PredictError> {
    if path.join(sspa_train::files::CONFIG).is_file() && path.join(sspa_train::files::MODEL).is_file() {
        return Ok(path.to_owned());
    }
    let record = path.join("run.json");
    if !record.is_file() {
        return Err(PredictError::NotARun { path: path.to_owned() });
    }
    let read = |message: String| PredictError::Read { path: record.clone(), message };
    let text = std::fs::read_to_string(&record).map_err(|e| read(e.to_string()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| read(e.to_string()))?;
    let stages = json.get("stages").and_then(serde_json::Value::as_array).ok_or_else(|| read("no `stages`".into()))?;
    let train = stages.iter().find(|stage| stage.get("kind").and_then(serde_json::Value::as_str) == Some("train"));
    let Some(train) = train else {
        return Err(PredictError::NoTrainStage { path: path.to_owned(), status: "absent".into() });
    };
    let status = train.get("status").and_then(serde_json::Value::as_str).unwrap_or("unknown");
    let dir = train.get("output_dir").and_then(serde_json::Value::as_str).map(PathBuf::from);
    match dir {
        Some(dir) if matches!(status, "ran" | "skipped") && dir.join(sspa_train::files::MODEL).is_file() => Ok(dir),
        _ => Err(PredictError::NoTrainStage { path: path.to_owned(), status: status.to_owned() }),
    }
}

/// One image's result: probabilities in label order, or why it could not be scored.
pub type ImageResult = Result<Vec<f32>, String>;

/// A trained run loaded for prediction.
#[derive(Debug)]
pub struct ImagePredictor {
    predictor: Predictor,
    /// The frozen encoder the run's features came from; `None` when the run trained its own
    /// (it is then in the predictor's weights).
    encoder: Option<Backbone>,
    geometry: Geometry,
    /// The evaluation loader's settings (size, mean/std).
    loader: LoaderConfig,
    device: Device,
}

impl ImagePredictor {
    /// Loads the head (`weights`: raw or EMA) of the train stage output `train_dir` and the image
    /// encoder it was trained with; relative `model.image_weights` resolve against `project_root`.
    ///
    /// # Errors
    /// [`PredictError`] for missing or mismatched files.
    pub fn load(
        train_dir: &Path,
        weights: Weights,
        project_root: &Path,
        device: &Device,
    ) -> Result<Self, PredictError> {
        let device = device.clone();
        let predictor = Predictor::load(train_dir, weights, &device)?;
        let features = FeatureManifest::read(train_dir)
            .map_err(|e| PredictError::Read { path: train_dir.join(FEATURES_FILE), message: e.to_string() })?;
        let model = &predictor.config().model;
        let encoder = match (features.fine_tuned, predictor.backbone().is_some()) {
            (true, true) => None,
            (false, false) => Some(frozen_encoder(&EncoderChoice::of(model), &features, project_root, &device)?),
            (fine_tuned, has_backbone) => {
                return Err(PredictError::Encoder(format!(
                    "features.json says the image encoder was {}, but the run's weights {} one",
                    if fine_tuned { "trained" } else { "frozen" },
                    if has_backbone { "hold" } else { "hold no" }
                )));
            }
        };
        let geometry = Geometry::for_model(model)?;
        let info = model.preset.info();
        let (mean, std) = (info.mean, info.std);
        let loader = LoaderConfig::eval(BATCH, geometry.image_size, mean, std);
        Ok(Self { predictor, encoder, geometry, loader, device })
    }

    /// Label names in the order of each result's probabilities.
    pub fn labels(&self) -> &[String] {
        self.predictor.labels()
    }

    /// Normalised CHW pixels of one image, as the evaluate stage sees a test image: the shard
    /// stage's evaluation fit, then the evaluation loader's sampling (JPEG shards round the fitted
    /// pixels once more; this does not).
    fn prepare(&self, resizer: &mut Resizer, path: &Path) -> Result<Vec<f32>, String> {
        let pixels = decode(path).map_err(|reason| reason.to_string())?;
        let fitted = fit(resizer, pixels, &self.geometry, false).map_err(|reason| reason.to_string())?;
        Ok(eval_values(&fitted, &self.loader))
    }

    /// Scores every image of `paths`; `done` is called after each batch with the images done.
    pub fn predict(&self, paths: &[PathBuf], mut done: impl FnMut(usize)) -> Vec<ImageResult> {
        let mut results: Vec<ImageResult> = Vec::with_capacity(paths.len());
        let mut resizer = Resizer::new();
        let size = self.geometry.image_size as usize;
        for chunk in paths.chunks(BATCH) {
            let mut pixels = Vec::new();
            let mut slots = Vec::new();
            let first = results.len();
            for path in chunk {
                match self.prepare(&mut resizer, path) {
                    Ok(chw) => {
                        slots.push(results.len());
                        pixels.extend(chw);
                        results.push(Ok(Vec::new()));
                    }
                    Err(reason) => results.push(Err(reason)),
                }
            }
            if !slots.is_empty() {
                match self.score(pixels, slots.len(), size) {
                    Ok(scores) => {
                        let classes = self.labels().len();
                        for (slot, row) in slots.iter().zip(scores.chunks(classes)) {
                            results[*slot] = Ok(row.to_vec());
                        }
                    }
                    Err(reason) => {
                        for slot in slots {
                            results[slot] = Err(reason.clone());
                        }
                    }
                }
            }
            done(results.len() - first);
        }
        results
    }

    /// Encoder + head over one batch of prepared images.
    fn score(&self, pixels: Vec<f32>, count: usize, size: usize) -> Result<Vec<f32>, String> {
        let images = Tensor::<4>::from_data(TensorData::new(pixels, [count, 3, size, size]), &self.device);
        let encoder = self.encoder.as_ref().or(self.predictor.backbone()).ok_or("the run has no image encoder")?;
        let features = encoder.forward(images);
        let [_, n, c] = features.patches.dims();
        let read = |tensor: Tensor<2>| tensor.into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"));
        let global = read(features.global)?;
        let patches = read(features.patches.reshape([count * n, c]))?;
        let classes = self.labels().len();
        let set = FeatureSet {
            ids: (0..count).map(|i| i.to_string()).collect(),
            global,
            patches,
            targets: vec![-1; count * classes],
            patches_per_image: n,
            width: c,
            classes,
        };
        self.predictor.predict(&set).map_err(|e| e.to_string())
    }
}

/// The frozen encoder a run's features came from, checked against `features.json`: the same
/// weights (BLAKE3) and the same encoder kind.
fn frozen_encoder(
    model: &EncoderChoice,
    features: &FeatureManifest,
    project_root: &Path,
    device: &Device,
) -> Result<Backbone, PredictError> {
    let encoder_error = |e: &dyn std::fmt::Display| PredictError::Encoder(e.to_string());
    let location = image_location(model, project_root).map_err(|e| encoder_error(&e))?;
    let files = weight_files(&location, false).map_err(|e| encoder_error(&e))?;
    let found = weights_hash(&files).map_err(|e| encoder_error(&e))?;
    if found != features.weights_hash {
        return Err(PredictError::WeightsChanged { path: location, found, expected: features.weights_hash.clone() });
    }
    let name = model.preset.info().image_encoder;
    if name != features.encoder {
        return Err(PredictError::Encoder(format!(
            "the run was trained on `{}` features, the config's preset gives `{name}`",
            features.encoder
        )));
    }
    let (encoder, _) = image_encoder(model.preset, &location, device).map_err(|e| encoder_error(&e))?;
    Ok(encoder)
}

/// Indices of the labels to report for one image: probabilities `≥ threshold`, highest first, at
/// most `top_k` of them (`None` = all).
pub fn select(probabilities: &[f32], threshold: f32, top_k: Option<usize>) -> Vec<usize> {
    let mut chosen: Vec<usize> = (0..probabilities.len()).filter(|&i| probabilities[i] >= threshold).collect();
    chosen.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]).then(a.cmp(&b)));
    if let Some(k) = top_k {
        chosen.truncate(k);
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_is_thresholded_sorted_and_capped() {
        let p = [0.2, 0.9, 0.55, 0.9, 0.7];
        assert_eq!(select(&p, 0.5, None), vec![1, 3, 4, 2], "ties keep label order");
        assert_eq!(select(&p, 0.5, Some(2)), vec![1, 3]);
        assert_eq!(select(&p, 0.0, Some(3)), vec![1, 3, 4]);
        assert!(select(&p, 0.95, None).is_empty());
    }

    #[test]
    fn train_dir_accepts_an_output_dir_or_a_run_record() {
        let root = tempfile::tempdir().expect("tempdir");
        let out = root.path().join("cache/train/abc");
        std::fs::create_dir_all(&out).expect("mkdir");
        assert!(matches!(train_dir(&out), Err(PredictError::NotARun { .. })));
        std::fs::write(out.join("config.json"), "{}").expect("write");
        std::fs::write(out.join("model.safetensors"), "x").expect("write");
        assert_eq!(train_dir(&out).expect("output dir"), out);

        let run = root.path().join("runs/1");
        std::fs::create_dir_all(&run).expect("mkdir");
        let record = |status: &str| {
            serde_json::json!({"stages": [
                {"name": "shard", "kind": "shard", "status": "ran", "output_dir": "/nowhere"},
                {"name": "train", "kind": "train", "status": status, "output_dir": out},
            ]})
            .to_string()
        };
        std::fs::write(run.join("run.json"), record("skipped")).expect("write");
        assert_eq!(train_dir(&run).expect("run record"), out);
        std::fs::write(run.join("run.json"), record("failed")).expect("write");
        let error = train_dir(&run).expect_err("failed train");
        assert!(error.to_string().contains("status of `train`: failed"), "{error}");
    }
}
