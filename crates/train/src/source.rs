//! What the loop trains on, behind one trait: [`TrainingSource`] checks the data against the
//! label set, fingerprints it, yields each epoch's and the validation split's mini-batches, and
//! builds the model it starts from. Two sources implement it:
//! - [`FeatureSource`]: global and patch features of a frozen image encoder, computed once
//!   upstream, held in memory ([`CachedFeatures`]) or read through a memory map
//!   ([`crate::MappedSource`]); epoch `e` visits the rows in [`epoch_permutation`]`(seed, e)`;
//! - [`FineTune`]: images from an [`ImageSource`], encoded every step by the image encoder
//!   trained with the head.
//!
//! A batch's image side is [`Inputs`]: features as they are, or images that
//! [`Inputs::encode`] passes through the model's image encoder. The loop, validation and the
//! final outputs have one path for both sources.

use burn::prelude::*;
use burn::tensor::FloatDType;

use crate::backbone::{Backbone, BackboneSpec};
use crate::error::TrainError;
use crate::features::{Batch, FeatureSet};
use crate::images::ImageSource;
use crate::model::{ModelConfig, SspaModel};
use crate::precision::to_compute;
use crate::predict::expect;

/// The image side of one mini-batch (one at a time: the size difference of the variants does not
/// matter).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum Inputs {
    /// Features of a frozen image encoder: `f_g` `[B, d]` and `F_p` `[B, N, d]`.
    Features {
        /// `[B, d]`.
        global: Tensor<2>,
        /// `[B, N, d]`.
        patches: Tensor<3>,
    },
    /// Normalised images `[B, 3, S, S]` for the trained image encoder.
    Images(Tensor<4>),
}

impl Inputs {
    /// Every tensor cast to `dtype` (a no-op for the tensors that have it).
    #[must_use]
    pub fn to_compute(self, dtype: FloatDType) -> Self {
        match self {
            Self::Features { global, patches } => {
                Self::Features { global: to_compute(global, dtype), patches: to_compute(patches, dtype) }
            }
            Self::Images(images) => Self::Images(to_compute(images, dtype)),
        }
    }

    /// `(f_g, F_p)` for the head: the features as they are, or the images through `model`'s
    /// image encoder.
    ///
    /// # Errors
    /// [`TrainError::Option`] for images and a model without an image encoder.
    pub fn encode(self, model: &SspaModel) -> Result<(Tensor<2>, Tensor<3>), TrainError> {
        match self {
            Self::Features { global, patches } => Ok((global, patches)),
            Self::Images(images) => {
                let backbone = model.backbone.as_ref().ok_or(TrainError::Option {
                    key: "model.freeze_image_encoder",
                    value: "true".into(),
                    reason: "training on images needs the image encoder in the model",
                })?;
                let features = backbone.forward(images);
                Ok((features.global, features.patches))
            }
        }
    }
}

/// One mini-batch of a [`TrainingSource`].
#[derive(Debug, Clone)]
pub struct SourceBatch {
    /// Features or images.
    pub inputs: Inputs,
    /// `[B, C]` as floats in `{1, 0, −1}` (−1: ignored).
    pub targets: Tensor<2>,
}

/// The batches of one pass over a split, in order.
pub type SourceBatches<'a> = Box<dyn Iterator<Item = Result<SourceBatch, TrainError>> + 'a>;

/// The image side's sizes, as the model config records them.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceShape {
    /// Image feature width `d` (the head's input).
    pub image_width: usize,
    /// Patches per image `N`.
    pub patches_per_image: usize,
    /// The trained image encoder's architecture; `None` for cached features.
    pub backbone: Option<BackboneSpec>,
}

/// Training and validation data of a run, whatever its image side.
pub trait TrainingSource: Sync {
    /// Checks the data (buffers, targets, at least one batch to train on) against `classes`,
    /// the label count of the text inputs, and returns its sizes.
    ///
    /// # Errors
    /// [`TrainError`] naming the inconsistent size or buffer.
    fn check(&self, classes: usize) -> Result<SourceShape, TrainError>;

    /// Feeds what identifies the data (and the pretrained weights a run starts from) to the
    /// run's fingerprint, so a checkpoint is only resumed over the same data.
    fn fingerprint(&self, hasher: &mut blake3::Hasher);

    /// Optimiser steps in one epoch of mini-batches of `batch_size`.
    fn steps_per_epoch(&self, batch_size: usize) -> usize;

    /// Epoch `epoch`'s training batches on `device`: shuffled (and augmented) deterministically
    /// from `(seed, epoch)`, so a resumed run sees the same batches.
    ///
    /// # Errors
    /// [`TrainError::Data`] when the loader cannot start.
    fn epoch(&self, seed: u64, epoch: u32, batch_size: usize, device: &Device)
    -> Result<SourceBatches<'_>, TrainError>;

    /// The validation split on `device` in a fixed order, in batches of at most `batch_size`;
    /// `None` when it is empty (no validation mAP is then reported).
    ///
    /// # Errors
    /// [`TrainError::Data`] when the loader cannot start.
    fn validation(&self, batch_size: usize, device: &Device) -> Result<Option<SourceBatches<'_>>, TrainError>;

    /// The model a fresh run starts from: `config`'s seeded initialisation, with the pretrained
    /// image encoder when the source trains one.
    ///
    /// # Errors
    /// [`TrainError::Option`] when `config` does not match the source.
    fn init(&self, config: &ModelConfig, seed: u64, device: &Device) -> Result<SspaModel, TrainError>;
}

/// Rows of frozen-encoder features that a [`FeatureSource`] trains on: a [`FeatureSet`] in
/// memory, or [`crate::MappedRows`] of a memory-mapped features file.
pub trait FeatureRows: Sync {
    /// Rows `n`.
    fn len(&self) -> usize;
    /// Whether there is no row.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Patches per image `N`, feature width `d` and classes `C`.
    fn sizes(&self) -> (usize, usize, usize);
    /// Checks the buffers and targets (what is not checked when the rows are made).
    ///
    /// # Errors
    /// As [`FeatureSet::validate`].
    fn validate(&self) -> Result<(), TrainError>;
    /// [`FeatureSet::content_hash`] of these rows.
    fn content_hash(&self) -> String;
    /// The rows at `positions` as tensors on `device`.
    fn batch(&self, positions: &[usize], device: &Device) -> Batch;
}

impl FeatureRows for FeatureSet {
    fn len(&self) -> usize {
        FeatureSet::len(self)
    }

    fn sizes(&self) -> (usize, usize, usize) {
        (self.patches_per_image, self.width, self.classes)
    }

    fn validate(&self) -> Result<(), TrainError> {
        FeatureSet::validate(self)
    }

    fn content_hash(&self) -> String {
        FeatureSet::content_hash(self)
    }

    fn batch(&self, positions: &[usize], device: &Device) -> Batch {
        FeatureSet::batch(self, positions, device)
    }
}

/// Training and validation rows of a frozen image encoder's features.
#[derive(Debug)]
pub struct FeatureSource<'a, R> {
    /// Training rows.
    pub train: &'a R,
    /// Validation rows (may be empty: mAP is then not reported).
    pub validation: &'a R,
}

impl<R> Clone for FeatureSource<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for FeatureSource<'_, R> {}

/// Cached features held in memory.
pub type CachedFeatures<'a> = FeatureSource<'a, FeatureSet>;

/// `rows` in `order`, in chunks of `batch_size`, built lazily on `device`.
fn row_batches<'a, R: FeatureRows>(
    rows: &'a R,
    order: Vec<usize>,
    batch_size: usize,
    device: &Device,
) -> SourceBatches<'a> {
    let device = device.clone();
    let chunks: Vec<Vec<usize>> = order.chunks(batch_size.max(1)).map(<[usize]>::to_vec).collect();
    Box::new(chunks.into_iter().map(move |positions| {
        let batch = rows.batch(&positions, &device);
        Ok(SourceBatch {
            inputs: Inputs::Features { global: batch.global, patches: batch.patches },
            targets: batch.targets,
        })
    }))
}

impl<R: FeatureRows> TrainingSource for FeatureSource<'_, R> {
    fn check(&self, classes: usize) -> Result<SourceShape, TrainError> {
        let (train, validation) = (self.train, self.validation);
        train.validate()?;
        let (patches_per_image, width, train_classes) = train.sizes();
        expect("C (train)", train_classes, classes)?;
        if !validation.is_empty() {
            validation.validate()?;
            let (_, validation_width, validation_classes) = validation.sizes();
            expect("C (validation)", validation_classes, classes)?;
            expect("d (validation)", validation_width, width)?;
        }
        if train.is_empty() {
            return Err(TrainError::Option { key: "train", value: "0 images".into(), reason: "nothing to train on" });
        }
        Ok(SourceShape { image_width: width, patches_per_image, backbone: None })
    }

    fn fingerprint(&self, hasher: &mut blake3::Hasher) {
        hasher.update(self.train.content_hash().as_bytes());
        hasher.update(self.validation.content_hash().as_bytes());
    }

    fn steps_per_epoch(&self, batch_size: usize) -> usize {
        self.train.len().div_ceil(batch_size.max(1))
    }

    fn epoch(
        &self,
        seed: u64,
        epoch: u32,
        batch_size: usize,
        device: &Device,
    ) -> Result<SourceBatches<'_>, TrainError> {
        Ok(row_batches(self.train, epoch_permutation(seed, epoch, self.train.len()), batch_size, device))
    }

    fn validation(&self, batch_size: usize, device: &Device) -> Result<Option<SourceBatches<'_>>, TrainError> {
        let rows = self.validation;
        Ok((!rows.is_empty()).then(|| row_batches(rows, (0..rows.len()).collect(), batch_size, device)))
    }

    fn init(&self, config: &ModelConfig, seed: u64, device: &Device) -> Result<SspaModel, TrainError> {
        config.init(seed, device)
    }
}

/// Fine-tuning inputs: the images and the pretrained image encoder to start from.
#[derive(Clone, Copy)]
pub struct FineTune<'a> {
    /// Training and validation images.
    pub source: &'a dyn ImageSource,
    /// The pretrained encoder, on the training device with autodiff
    /// ([`crate::TrainOptions::device`]`.autodiff()`); the model starts from a copy.
    pub backbone: &'a Backbone,
    /// Its architecture (recorded in `config.json`).
    pub spec: &'a BackboneSpec,
    /// Identifies the pretrained weights (part of the run's fingerprint).
    pub weights_hash: &'a str,
}

/// An image source's batches as the loop's, each checked against `classes`.
fn image_batches<'a>(batches: crate::images::Batches<'a>, classes: usize, device: &Device) -> SourceBatches<'a> {
    let device = device.clone();
    Box::new(batches.map(move |batch| {
        let batch = batch?;
        batch.validate(classes)?;
        let (images, targets) = batch.into_tensors(&device);
        Ok(SourceBatch { inputs: Inputs::Images(images), targets })
    }))
}

impl TrainingSource for FineTune<'_> {
    fn check(&self, classes: usize) -> Result<SourceShape, TrainError> {
        let source = self.source;
        expect("C (images)", source.classes(), classes)?;
        if source.train_batches() == 0 {
            return Err(TrainError::Option {
                key: "train",
                value: format!("{} images", source.train_len()),
                reason: "not one full batch to train on",
            });
        }
        let spec = self.spec;
        Ok(SourceShape {
            image_width: spec.width(),
            patches_per_image: spec.patches_per_image(source.image_size()),
            backbone: Some(spec.clone()),
        })
    }

    fn fingerprint(&self, hasher: &mut blake3::Hasher) {
        hasher.update(self.source.fingerprint().as_bytes());
        hasher.update(self.weights_hash.as_bytes());
    }

    fn steps_per_epoch(&self, _batch_size: usize) -> usize {
        self.source.train_batches()
    }

    fn epoch(
        &self,
        _seed: u64,
        epoch: u32,
        _batch_size: usize,
        device: &Device,
    ) -> Result<SourceBatches<'_>, TrainError> {
        Ok(image_batches(self.source.train_epoch(epoch)?, self.source.classes(), device))
    }

    fn validation(&self, _batch_size: usize, device: &Device) -> Result<Option<SourceBatches<'_>>, TrainError> {
        if self.source.validation_len() == 0 {
            return Ok(None);
        }
        Ok(Some(image_batches(self.source.validation()?, self.source.classes(), device)))
    }

    fn init(&self, config: &ModelConfig, seed: u64, device: &Device) -> Result<SspaModel, TrainError> {
        config.init_with_backbone(seed, device, self.backbone.clone())
    }
}

/// The order of epoch `epoch` (0-based): a Fisher–Yates shuffle seeded by `(seed, epoch)`, drawn
/// from the project's generator ([`sspa_rng::SplitMix64`]). Its draws are reduced modulo
/// `i + 1` (not by [`sspa_rng::SplitMix64::below`]): the orders, and so every trained model of a
/// seed, stay those of earlier versions.
pub fn epoch_permutation(seed: u64, epoch: u32, n: usize) -> Vec<usize> {
    let mut rng =
        sspa_rng::SplitMix64::new(seed ^ u64::from(epoch).wrapping_add(1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut order: Vec<usize> = (0..n).collect();
    rng.shuffle_modulo(&mut order);
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_permutations_are_seeded_permutations() {
        let order = epoch_permutation(7, 3, 100);
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        assert_eq!(order, epoch_permutation(7, 3, 100), "same seed and epoch, same order");
        assert_ne!(order, epoch_permutation(7, 4, 100), "epochs differ");
        assert_ne!(order, epoch_permutation(8, 3, 100), "seeds differ");
        assert_ne!(order, sorted, "shuffled");
        // The order earlier versions drew (their own SplitMix64 copy, modulo reduction): pinned,
        // so moving to the shared generator changed no trained model.
        assert_eq!(epoch_permutation(7, 3, 12), [0, 1, 7, 5, 3, 11, 8, 2, 9, 4, 6, 10]);
    }

    fn features(n: usize) -> FeatureSet {
        FeatureSet {
            ids: (0..n).map(|i| format!("img{i}")).collect(),
            global: (0..n * 2).map(|v| v as f32).collect(),
            patches: (0..n * 3 * 2).map(|v| v as f32).collect(),
            targets: (0..n * 2).map(|v| (v % 3) as i8 - 1).collect(),
            patches_per_image: 3,
            width: 2,
            classes: 2,
        }
    }

    #[test]
    fn cached_features_visit_every_row_once_per_epoch_in_its_permutation() {
        let (train, validation) = (features(5), features(0));
        let source = CachedFeatures { train: &train, validation: &validation };
        let device = Device::flex();
        let shape = source.check(2).expect("consistent features");
        assert_eq!(shape, SourceShape { image_width: 2, patches_per_image: 3, backbone: None });
        assert_eq!(source.steps_per_epoch(2), 3);
        let order = epoch_permutation(9, 1, 5);
        let mut seen = Vec::new();
        for batch in source.epoch(9, 1, 2, &device).expect("cached rows need no loader") {
            let Inputs::Features { global, .. } = batch.expect("cached rows").inputs else {
                panic!("features give features")
            };
            let values: Vec<f32> = global.into_data().iter::<f32>().collect();
            seen.extend(values.chunks(2).map(|row| row[0] as usize / 2));
        }
        assert_eq!(seen, order);
        assert!(
            source.validation(4, &device).expect("no loader").is_none(),
            "an empty validation split has no batches"
        );
        let err = source.check(3).expect_err("3 labels, 2 classes").to_string();
        assert!(err.contains("C (train)"), "{err}");
        let empty = features(0);
        let err = CachedFeatures { train: &empty, validation: &validation }.check(2).expect_err("no rows").to_string();
        assert!(err.contains("nothing to train on"), "{err}");
    }
}
