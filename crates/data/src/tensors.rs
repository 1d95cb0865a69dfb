//! Loader batches as burn tensors on a chosen device.
//!
//! # Shapes
//! - `images`: `[N, 3, S, S]` float, normalised with the encoder's mean and std (NCHW, RGB);
//! - `targets`: `[N, C]` int, 1 = present, 0 = absent, −1 = ignored, in label order;
//! - `mask`: `[N, C]` float, 1 where the target counts (≠ −1), 0 where it is ignored;
//! - `positives`: `[N, C]` float, 1 where the target is 1, else 0 (what a BCE/ASL loss takes).

use crate::error::DataError;
use crate::loader::{Batch, Loader};
use burn::prelude::*;

/// A [`Batch`] on a device (see the module docs for shapes).
#[derive(Debug, Clone)]
pub struct TensorBatch {
    pub images: Tensor<4>,
    pub targets: Tensor<2, Int>,
    pub mask: Tensor<2>,
    pub positives: Tensor<2>,
    /// Index rows of the images, in batch order.
    pub rows: Vec<usize>,
}

impl Batch {
    /// Copies the batch onto `device`.
    pub fn to_tensors(&self, device: &Device) -> TensorBatch {
        self.clone().into_tensors(device)
    }

    /// Moves the batch onto `device` without copying the image buffer first.
    pub fn into_tensors(self, device: &Device) -> TensorBatch {
        let shape = [self.shape[0], self.label_count];
        let targets: Vec<i64> = self.targets.iter().map(|&t| i64::from(t)).collect();
        let mask: Vec<f32> = self.targets.iter().map(|&t| if t == -1 { 0.0 } else { 1.0 }).collect();
        let positives: Vec<f32> = self.targets.iter().map(|&t| if t == 1 { 1.0 } else { 0.0 }).collect();
        TensorBatch {
            images: Tensor::<4>::from_data(TensorData::new(self.images, self.shape), device),
            targets: Tensor::<2, Int>::from_data(TensorData::new(targets, shape), device),
            mask: Tensor::<2>::from_data(TensorData::new(mask, shape), device),
            positives: Tensor::<2>::from_data(TensorData::new(positives, shape), device),
            rows: self.rows,
        }
    }
}

impl Loader {
    /// The epoch's batches as tensors on `device` (built ahead by the loader's workers; the copy
    /// onto the device happens on the consumer's thread).
    pub fn tensors(self, device: &Device) -> impl Iterator<Item = Result<TensorBatch, DataError>> {
        let device = device.clone();
        self.map(move |batch| batch.map(|batch| batch.into_tensors(&device)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_values_and_masks_follow_the_batch() {
        let images: Vec<f32> = (0..2 * 3 * 2 * 2).map(|i| i as f32 * 0.5 - 3.0).collect();
        let batch = Batch {
            images: images.clone(),
            shape: [2, 3, 2, 2],
            targets: vec![1, 0, -1, 0, -1, 1],
            label_count: 3,
            rows: vec![7, 3],
        };
        let device = Device::default();
        let tensors = batch.to_tensors(&device);
        assert_eq!(tensors.images.dims(), [2, 3, 2, 2]);
        assert_eq!(tensors.targets.dims(), [2, 3]);
        assert_eq!(tensors.images.to_data().try_to_vec::<f32>().expect("f32"), images);
        // Element [1, 2, 0, 1] of a row-major NCHW buffer.
        let picked = tensors.images.clone().slice([1..2, 2..3, 0..1, 1..2]).into_scalar::<f32>();
        assert_eq!(picked, images[((3 + 2) * 2) * 2 + 1]);
        let targets: Vec<i64> = tensors.targets.to_data().convert::<i64>().try_to_vec().expect("int");
        assert_eq!(targets, [1, 0, -1, 0, -1, 1]);
        assert_eq!(tensors.mask.to_data().try_to_vec::<f32>().expect("f32"), [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
        assert_eq!(tensors.positives.to_data().try_to_vec::<f32>().expect("f32"), [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(tensors.rows, [7, 3]);
    }
}
