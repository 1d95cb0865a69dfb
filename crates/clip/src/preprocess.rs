//! CLIP image preprocessing, as OpenAI's `clip.load(…)[1]` and PyPI `onnx-clip`'s
//! `Preprocessor`: RGB → resize so the shorter side is 224 (the longer side
//! `int(224 · long / short)`) with PIL's `BICUBIC` filter → centre crop 224 × 224 →
//! `[0, 1]` → `(x − mean) / std` with CLIP's mean/std, channels first.
//!
//! The resize reimplements Pillow's `ImagingResample` for 8-bit images exactly: separable
//! cubic convolution (`a = −0.5`) whose support is widened by the scale when shrinking
//! (antialiasing), coefficients in 22-bit fixed point, horizontal pass first, each pass rounded
//! and clamped to `u8`. Remaining differences come from JPEG decoding (the `image` crate vs
//! libjpeg-turbo), not from the resize.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::TensorData;
use image::{DynamicImage, RgbImage};

use crate::error::ClipError;

/// CLIP's channel means (OpenAI `clip.py`).
pub const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
/// CLIP's channel standard deviations.
pub const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

const PRECISION_BITS: u32 = 32 - 8 - 2;

fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc`: for each output sample, the first
/// input index and the fixed-point weights of the inputs it reads.
fn coefficients(input: usize, output: usize) -> Vec<(usize, Vec<i32>)> {
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = 2.0 * filter_scale;
    (0..output)
        .map(|index| {
            let center = (index as f64 + 0.5) * scale;
            // C's `(int)` truncates toward zero.
            let first = ((center - support + 0.5) as i64).max(0) as usize;
            let last = ((center + support + 0.5) as i64).min(input as i64) as usize;
            let weights: Vec<f64> = (first..last).map(|x| bicubic((x as f64 - center + 0.5) / filter_scale)).collect();
            let total: f64 = weights.iter().sum();
            let fixed = weights
                .iter()
                .map(|&weight| {
                    let weight = if total != 0.0 { weight / total } else { weight };
                    let scaled = weight * f64::from(1_u32 << PRECISION_BITS);
                    (if weight < 0.0 { scaled - 0.5 } else { scaled + 0.5 }) as i32
                })
                .collect();
            (first, fixed)
        })
        .collect()
}

fn clip8(value: i64) -> u8 {
    (value >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `Image.resize(size, Image.BICUBIC)` for RGB images.
pub fn resize_bicubic(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (in_width, in_height) = (image.width() as usize, image.height() as usize);
    let (width, height) = (width as usize, height as usize);
    let source = image.as_raw();
    let rounding = 1_i64 << (PRECISION_BITS - 1);
    // Horizontal pass (skipped when the width does not change, as Pillow).
    let horizontal = if width == in_width {
        source.clone()
    } else {
        let columns = coefficients(in_width, width);
        let mut out = vec![0_u8; width * in_height * 3];
        for y in 0..in_height {
            for (x, (first, weights)) in columns.iter().enumerate() {
                for channel in 0..3 {
                    let sum = weights.iter().enumerate().fold(rounding, |sum, (offset, &weight)| {
                        sum + i64::from(source[(y * in_width + first + offset) * 3 + channel]) * i64::from(weight)
                    });
                    out[(y * width + x) * 3 + channel] = clip8(sum);
                }
            }
        }
        out
    };
    let vertical = if height == in_height {
        horizontal
    } else {
        let rows = coefficients(in_height, height);
        let mut out = vec![0_u8; width * height * 3];
        for (y, (first, weights)) in rows.iter().enumerate() {
            for x in 0..width {
                for channel in 0..3 {
                    let sum = weights.iter().enumerate().fold(rounding, |sum, (offset, &weight)| {
                        sum + i64::from(horizontal[((first + offset) * width + x) * 3 + channel]) * i64::from(weight)
                    });
                    out[(y * width + x) * 3 + channel] = clip8(sum);
                }
            }
        }
        out
    };
    RgbImage::from_raw(width as u32, height as u32, vertical)
        .unwrap_or_else(|| RgbImage::new(width as u32, height as u32))
}

/// Resize, crop and normalisation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipPreprocess {
    /// Side of the output (224): the shorter side is resized to it, then centre-cropped.
    pub size: u32,
    /// Channel means on `[0, 1]` pixels.
    pub mean: [f64; 3],
    /// Channel standard deviations on `[0, 1]` pixels.
    pub std: [f64; 3],
}

impl Default for ClipPreprocess {
    fn default() -> Self {
        Self { size: 224, mean: CLIP_MEAN, std: CLIP_STD }
    }
}

impl ClipPreprocess {
    /// Settings for another input side (e.g. 336), CLIP mean/std.
    pub fn with_size(size: u32) -> Self {
        Self { size, ..Self::default() }
    }

    /// Decodes an image file.
    pub fn open(path: &Path) -> Result<DynamicImage, ClipError> {
        image::open(path).map_err(|source| ClipError::Image { path: path.to_path_buf(), source })
    }

    /// Resizes the shorter side to `size` (bicubic, as PIL) and centre-crops `size × size`.
    pub fn resize_crop(&self, image: &DynamicImage) -> Result<RgbImage, ClipError> {
        let rgb = image.to_rgb8();
        let (width, height) = (u64::from(rgb.width()), u64::from(rgb.height()));
        if width == 0 || height == 0 {
            return Err(ClipError::Input("empty image".into()));
        }
        let size = u64::from(self.size);
        // onnx-clip: `int(size * long / short)`, in floating point.
        let (new_width, new_height) = if height < width {
            (((size * width) as f64 / height as f64) as u32, self.size)
        } else {
            (self.size, ((size * height) as f64 / width as f64) as u32)
        };
        let resized = resize_bicubic(&rgb, new_width, new_height);
        let left = (new_width - self.size) / 2;
        let top = (new_height - self.size) / 2;
        Ok(image::imageops::crop_imm(&resized, left, top, self.size, self.size).to_image())
    }

    /// Normalised channels-first values, `[3, H, W]` row-major (`f32(x / 255)`, then the
    /// mean/std step in `f64`, as onnx-clip's NumPy code).
    pub fn normalise(&self, image: &RgbImage) -> Vec<f32> {
        let (width, height) = (image.width() as usize, image.height() as usize);
        let mut values = vec![0.0_f32; 3 * width * height];
        for (x, y, pixel) in image.enumerate_pixels() {
            for channel in 0..3 {
                let unit = f64::from(f32::from(pixel[channel]) / 255.0);
                values[channel * width * height + y as usize * width + x as usize] =
                    ((unit - self.mean[channel]) / self.std[channel]) as f32;
            }
        }
        values
    }

    /// One image, ready for the towers.
    ///
    /// # Shapes
    /// - output: `[3, size, size]` values, row-major
    pub fn pixels(&self, image: &DynamicImage) -> Result<Vec<f32>, ClipError> {
        Ok(self.normalise(&self.resize_crop(image)?))
    }

    /// A batch of images.
    ///
    /// # Shapes
    /// - output: `[images.len(), 3, size, size]`
    pub fn batch(&self, images: &[DynamicImage], device: &Device) -> Result<Tensor<4>, ClipError> {
        if images.is_empty() {
            return Err(ClipError::Input("no images to preprocess".into()));
        }
        let mut values = Vec::with_capacity(images.len() * 3 * (self.size as usize).pow(2));
        for image in images {
            values.extend(self.pixels(image)?);
        }
        let side = self.size as usize;
        Ok(Tensor::from_data(TensorData::new(values, [images.len(), 3, side, side]), device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficients_sum_to_one_in_fixed_point() {
        for (input, output) in [(450, 224), (224, 326), (10, 10), (7, 3)] {
            for (_, weights) in coefficients(input, output) {
                let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
                assert!((total - (1 << PRECISION_BITS)).abs() <= weights.len() as i64, "{input}→{output}: {total}");
            }
        }
    }

    #[test]
    fn a_flat_image_stays_flat_and_sizes_follow_onnx_clip() {
        let image = DynamicImage::ImageRgb8(RgbImage::from_pixel(300, 200, image::Rgb([10, 128, 250])));
        let preprocess = ClipPreprocess::default();
        let cropped = preprocess.resize_crop(&image).expect("a non-empty image");
        assert_eq!(cropped.dimensions(), (224, 224));
        assert!(cropped.pixels().all(|pixel| pixel.0 == [10, 128, 250]));
        let values = preprocess.normalise(&cropped);
        let expected = ((f64::from(10_f32 / 255.0) - CLIP_MEAN[0]) / CLIP_STD[0]) as f32;
        assert_eq!(values[0], expected);
        assert!(preprocess.resize_crop(&DynamicImage::new_rgb8(0, 5)).is_err());
    }
}
