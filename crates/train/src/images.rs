//! Images instead of cached features: what the loop reads when the image encoder is trained
//! ([`crate::Backbone`]). The caller (the train stage) implements [`ImageSource`] over its shards
//! and loader; the loop only sees normalised pixel batches.

use burn::prelude::*;

use crate::error::TrainError;

/// One mini-batch of normalised images.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageBatch {
    /// `[B, 3, S, S]` row-major, normalised with the encoder's mean/std.
    pub images: Vec<f32>,
    /// `[B, 3, S, S]`.
    pub shape: [usize; 4],
    /// `[B, C]`: 1 positive, 0 negative, −1 ignored.
    pub targets: Vec<i8>,
}

impl ImageBatch {
    /// Images in the batch.
    pub fn len(&self) -> usize {
        self.shape[0]
    }

    /// Whether the batch holds no image.
    pub fn is_empty(&self) -> bool {
        self.shape[0] == 0
    }

    /// Checks the buffers against `shape` and `classes`.
    ///
    /// # Errors
    /// [`TrainError::FeatureShape`] naming the buffer.
    pub fn validate(&self, classes: usize) -> Result<(), TrainError> {
        let [b, channels, height, width] = self.shape;
        let check = crate::features::check_buffer;
        check("images", self.images.len(), b * channels * height * width, format!("{:?}", self.shape))?;
        check("targets", self.targets.len(), b * classes, format!("[{b}, {classes}]"))
    }

    /// Images `[B, 3, S, S]` and targets `[B, C]` (floats in `{1, 0, −1}`) on `device`; the
    /// pixel buffer moves to the device without a copy on the host.
    pub fn into_tensors(self, device: &Device) -> (Tensor<4>, Tensor<2>) {
        let (batch, classes) = (self.len(), self.targets.len() / self.len().max(1));
        let targets: Vec<f32> = self.targets.iter().map(|&t| f32::from(t)).collect();
        (
            Tensor::from_data(TensorData::new(self.images, self.shape), device),
            Tensor::from_data(TensorData::new(targets, [batch, classes]), device),
        )
    }
}

/// Batches of one pass over a split.
pub type Batches<'a> = Box<dyn Iterator<Item = Result<ImageBatch, TrainError>> + 'a>;

/// Training and validation images for fine-tuning.
pub trait ImageSource: Sync {
    /// Classes `C`.
    fn classes(&self) -> usize;
    /// Square input side `S`.
    fn image_size(&self) -> usize;
    /// Training images.
    fn train_len(&self) -> usize;
    /// Batches in one training epoch (the schedule's steps per epoch).
    fn train_batches(&self) -> usize;
    /// Validation images (0: no validation mAP).
    fn validation_len(&self) -> usize;
    /// Identifies the images, their order and augmentation (part of the run's fingerprint, so a
    /// checkpoint is only resumed over the same data).
    fn fingerprint(&self) -> String;
    /// Epoch `epoch`'s training batches: shuffled and augmented, deterministically from
    /// `(seed, epoch)`, so a resumed run sees the same batches.
    ///
    /// # Errors
    /// [`TrainError::Data`] when the loader cannot start.
    fn train_epoch(&self, epoch: u32) -> Result<Batches<'_>, TrainError>;
    /// The validation images, in a fixed order, without augmentation.
    ///
    /// # Errors
    /// [`TrainError::Data`] when the loader cannot start.
    fn validation(&self) -> Result<Batches<'_>, TrainError>;
}
