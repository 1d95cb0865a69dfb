//! `sspa-pipe encode`: texts or image files through a pretrained encoder named by a preset or a
//! path ([`crate::encoders::resolve_model`]), into the rows `sspa-table` writes.
//!
//! Features are returned as the encoders give them: MiniLM embeddings are L2-normalised, CLIP
//! features are not (normalise before taking cosines); EfficientNet-Lite0's `global` is the mean
//! of its patches. Patches are row-major over the last feature map or patch grid.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::TensorData;
use sspa_clip::{Clip, ClipPreprocess};
use sspa_encoders::weights::Checkpoint;
use sspa_encoders::{EfficientNetLite0, EfficientNetLite0Config, ImageFeatures, ImagePreprocess, MiniLm};
use sspa_table::{ImageEncoding, TextEncoding};

use crate::encoders::{EncoderError, ModelKind, resolve_model};

/// Why an encode call failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The model argument is wrong for this kind of input (a usage error).
    #[error("{0}")]
    Usage(String),
    #[error("{context}: {source}")]
    Model {
        context: String,
        #[source]
        source: EncoderError,
    },
    #[error("reading the encoder's output: {0}")]
    Output(String),
}

impl From<EncoderError> for EncodeError {
    fn from(error: EncoderError) -> Self {
        match error {
            EncoderError::Usage(message) => Self::Usage(message),
            other => Self::Model { context: "loading the model".into(), source: other },
        }
    }
}

fn loading(path: &Path) -> impl FnOnce(EncoderError) -> EncodeError + '_ {
    move |source| EncodeError::Model { context: format!("loading `{}`", path.display()), source }
}

/// One embedding row per text, in order, with the text encoder `spec` names.
///
/// # Errors
/// [`EncodeError::Usage`] when `spec` names an image model or nothing usable.
pub fn encode_texts(spec: &str, texts: Vec<String>, device: &Device) -> Result<Vec<TextEncoding>, EncodeError> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let embeddings = match resolve_model(spec)? {
        ModelKind::MiniLm(dir) => {
            let encoder = MiniLm::load(&dir, device).map_err(|e| loading(&dir)(e.into()))?;
            encoder.encode(&refs).map_err(|e| loading(&dir)(e.into()))?
        }
        ModelKind::Clip(path) => {
            let clip = Clip::load(&path, device).map_err(|e| loading(&path)(e.into()))?;
            clip.encode_text(&refs).map_err(|e| loading(&path)(e.into()))?
        }
        ModelKind::EfficientNet(file) => {
            return Err(EncodeError::Usage(format!(
                "`{}` is EfficientNet-Lite0, an image model: use `encode image`",
                file.display()
            )));
        }
    };
    let [_, width] = embeddings.dims();
    let values = embeddings
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| EncodeError::Output(format!("{e:?}")))?;
    Ok(texts
        .into_iter()
        .zip(values.chunks_exact(width))
        .enumerate()
        .map(|(index, (text, embedding))| TextEncoding { index: index as u32, text, embedding: embedding.to_vec() })
        .collect())
}

/// An image encoder with the preprocessing of its reference implementation.
pub enum ImageModel {
    EfficientNet(Box<EfficientNetLite0>, ImagePreprocess),
    Clip(Box<Clip>, ClipPreprocess),
}

impl ImageModel {
    /// The image encoder `spec` names.
    ///
    /// # Errors
    /// [`EncodeError::Usage`] when `spec` names a text model or nothing usable.
    pub fn load(spec: &str, device: &Device) -> Result<Self, EncodeError> {
        match resolve_model(spec)? {
            ModelKind::EfficientNet(file) => {
                let model = Checkpoint::open(&file, "EfficientNet-Lite0")
                    .and_then(|checkpoint| EfficientNetLite0Config::new().load_checkpoint(checkpoint, device))
                    .map_err(|e| loading(&file)(e.into()))?;
                Ok(Self::EfficientNet(Box::new(model), ImagePreprocess::default()))
            }
            ModelKind::Clip(path) => {
                let clip = Clip::load(&path, device).map_err(|e| loading(&path)(e.into()))?;
                let size = u32::try_from(clip.image_size()).map_err(|e| EncodeError::Output(e.to_string()))?;
                Ok(Self::Clip(Box::new(clip), ClipPreprocess::with_size(size)))
            }
            ModelKind::MiniLm(dir) => {
                Err(EncodeError::Usage(format!("`{}` is a text model (BERT): use `encode text`", dir.display())))
            }
        }
    }

    /// Side of the square inputs.
    pub fn side(&self) -> usize {
        match self {
            Self::EfficientNet(_, preprocess) => preprocess.crop as usize,
            Self::Clip(_, preprocess) => preprocess.size as usize,
        }
    }

    /// Decodes, resizes, crops and normalises one file: `[3, side, side]` values.
    ///
    /// # Errors
    /// The file cannot be read or decoded (the message names it).
    pub fn prepare(&self, path: &Path) -> Result<Vec<f32>, String> {
        let prepared = match self {
            Self::EfficientNet(_, preprocess) => ImagePreprocess::open(path)
                .and_then(|image| preprocess.resize_crop(&image))
                .map(|image| preprocess.normalise(&image))
                .map_err(|e| e.to_string()),
            Self::Clip(_, preprocess) => {
                ClipPreprocess::open(path).and_then(|image| preprocess.pixels(&image)).map_err(|e| e.to_string())
            }
        };
        prepared.map_err(|reason| format!("`{}`: {reason}", path.display()))
    }

    /// # Shapes
    /// - images: `[B, 3, side, side]`
    pub fn forward(&self, images: Tensor<4>) -> ImageFeatures {
        match self {
            Self::EfficientNet(model, _) => model.forward(images),
            Self::Clip(model, _) => model.encode_image(images),
        }
    }

    /// Encodes prepared images (`(path, [3, side, side] values)`) `batch_size` at a time.
    ///
    /// # Errors
    /// Reading the encoder's output.
    pub fn encode(
        &self,
        prepared: &[(String, Vec<f32>)],
        batch_size: usize,
        with_patches: bool,
        device: &Device,
    ) -> Result<Vec<ImageEncoding>, EncodeError> {
        let side = self.side();
        let mut rows = Vec::with_capacity(prepared.len());
        for chunk in prepared.chunks(batch_size.max(1)) {
            let values: Vec<f32> = chunk.iter().flat_map(|(_, values)| values.iter().copied()).collect();
            let batch = Tensor::from_data(TensorData::new(values, [chunk.len(), 3, side, side]), device);
            let features = self.forward(batch);
            rows.extend(split_features(features, chunk.iter().map(|(path, _)| path.clone()), with_patches)?);
        }
        Ok(rows)
    }
}

/// One row per image of a batch's features.
fn split_features(
    features: ImageFeatures,
    paths: impl Iterator<Item = String>,
    with_patches: bool,
) -> Result<Vec<ImageEncoding>, EncodeError> {
    let read = |tensor: Tensor<2>| {
        tensor.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| EncodeError::Output(format!("{e:?}")))
    };
    let [_, width] = features.global.dims();
    let [batch, count, _] = features.patches.dims();
    let global = read(features.global)?;
    let patches = if with_patches { Some(read(features.patches.reshape([batch * count, width]))?) } else { None };
    Ok(paths
        .enumerate()
        .map(|(row, path)| ImageEncoding {
            path,
            global: global[row * width..(row + 1) * width].to_vec(),
            patches: patches.as_ref().map(|values| {
                values[row * count * width..(row + 1) * count * width]
                    .chunks_exact(width)
                    .map(<[f32]>::to_vec)
                    .collect()
            }),
        })
        .collect())
}
