//! Decoding and the resize/crop policy of each model preset.
//!
//! Evaluation images are stored exactly as the encoder sees them, following the preset's
//! reference preprocessing: resize of the shorter side to `image_size / crop_fraction`, then a
//! centre crop of `image_size²`. CLIP: bicubic (Catmull–Rom, PIL's `BICUBIC`, antialiased when
//! shrinking), `crop_fraction = 1` (shorter side to `image_size`, centre crop). EfficientNet-Lite0:
//! bilinear (PIL's `BILINEAR`), 0.875 (256 → 224), as `sspa-encoders`' preprocessing does. Training images keep their whole frame with the
//! shorter side shrunk to `⌈image_size · 8/7⌉` at most (never enlarged), so the loader's random
//! resized crops still have detail to take from.

use crate::error::DataError;
use fast_image_resize::{self as fir, PixelType, ResizeAlg, ResizeOptions, Resizer};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Resampling filter of the stored-image resize (antialiased when shrinking, as PIL's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resample {
    /// Catmull–Rom (`a = −0.5`), PIL's `BICUBIC`.
    Bicubic,
    /// Triangle, PIL's `BILINEAR`.
    Bilinear,
}

/// Geometry of the stored images, fixed per preset and image size (recorded in `shards.json`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Geometry {
    /// Square side the encoder takes.
    pub image_size: u32,
    /// Fraction of the resized shorter side kept by the evaluation centre crop.
    pub crop_fraction: f64,
    /// Largest shorter side stored for training splits.
    pub train_shorter_side: u32,
    pub resample: Resample,
}

impl Geometry {
    /// The geometry of a `[model]` section.
    pub fn for_model(model: &sspa_config::ModelSection) -> Result<Self, DataError> {
        Self::for_preset(model.preset.name(), model.image_size)
    }

    /// The geometry of a preset (by its config name, see [`sspa_config::PRESETS`]) at a size.
    pub fn for_preset(preset: &str, image_size: u32) -> Result<Self, DataError> {
        let info = preset_info(preset)?;
        let crop_fraction = info.crop_fraction;
        let resample = match info.resampling {
            sspa_config::Resampling::Bicubic => Resample::Bicubic,
            sspa_config::Resampling::Bilinear => Resample::Bilinear,
        };
        if image_size == 0 {
            return Err(DataError::Loader { key: "model.image_size".into(), message: "must be positive".into() });
        }
        Ok(Self { image_size, crop_fraction, train_shorter_side: image_size.saturating_mul(8).div_ceil(7), resample })
    }
}

/// A preset's row of the one preset table.
fn preset_info(preset: &str) -> Result<&'static sspa_config::PresetInfo, DataError> {
    let parsed: sspa_config::Preset = preset.parse().map_err(|_| DataError::UnknownPreset {
        preset: preset.into(),
        known: sspa_config::PRESETS.iter().map(|p| format!("`{}`", p.name)).collect::<Vec<_>>().join(", "),
    })?;
    Ok(parsed.info())
}

/// Normalisation constants of a preset's encoder (for the loader), from the preset table.
pub fn mean_std(preset: &str) -> Result<([f32; 3], [f32; 3]), DataError> {
    let info = preset_info(preset)?;
    Ok((info.mean, info.std))
}

/// Why an image could not be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum BadImageReason {
    Missing,
    ZeroByte,
    Unreadable(String),
    Truncated(String),
    Corrupt(String),
    Unsupported(String),
}

impl std::fmt::Display for BadImageReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Missing => f.write_str("missing"),
            Self::ZeroByte => f.write_str("zero bytes"),
            Self::Unreadable(m) => write!(f, "unreadable: {m}"),
            Self::Truncated(m) => write!(f, "truncated: {m}"),
            Self::Corrupt(m) => write!(f, "corrupt: {m}"),
            Self::Unsupported(m) => write!(f, "unsupported: {m}"),
        }
    }
}

/// An RGB image, row-major, 3 bytes a pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbPixels {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// Whether a JPEG's last KiB holds its end-of-image marker. `zune-jpeg` decodes a cut-off file
/// into a grey-padded picture without an error, so truncation is caught here (as PIL does).
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(1024)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Reads and decodes an image file to RGB.
pub fn decode(path: &Path) -> Result<RgbPixels, BadImageReason> {
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BadImageReason::Missing,
        _ => BadImageReason::Unreadable(e.to_string()),
    })?;
    if bytes.is_empty() {
        return Err(BadImageReason::ZeroByte);
    }
    if bytes.starts_with(&[0xFF, 0xD8]) && !jpeg_is_complete(&bytes) {
        return Err(BadImageReason::Truncated("no JPEG end-of-image marker".into()));
    }
    let image = image::load_from_memory(&bytes).map_err(classify)?;
    let rgb = image.into_rgb8();
    let (width, height) = rgb.dimensions();
    if width == 0 || height == 0 {
        return Err(BadImageReason::Corrupt("zero width or height".into()));
    }
    Ok(RgbPixels { width, height, pixels: rgb.into_raw() })
}

fn classify(error: image::ImageError) -> BadImageReason {
    let message = error.to_string();
    let lower = message.to_lowercase();
    match error {
        image::ImageError::Unsupported(_) => BadImageReason::Unsupported(message),
        _ if lower.contains("eof") || lower.contains("end of") || lower.contains("truncat") => {
            BadImageReason::Truncated(message)
        }
        image::ImageError::IoError(_) => BadImageReason::Unreadable(message),
        _ => BadImageReason::Corrupt(message),
    }
}

fn resize(
    resizer: &mut Resizer,
    resample: Resample,
    source: &RgbPixels,
    crop: (f64, f64, f64, f64),
    width: u32,
    height: u32,
) -> Result<RgbPixels, BadImageReason> {
    let bad = |e: &dyn std::fmt::Display| BadImageReason::Corrupt(format!("resize: {e}"));
    let view = fir::images::ImageRef::new(source.width, source.height, &source.pixels, PixelType::U8x3)
        .map_err(|e| bad(&e))?;
    let mut target = fir::images::Image::new(width, height, PixelType::U8x3);
    let options = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(match resample {
            Resample::Bicubic => fir::FilterType::CatmullRom,
            Resample::Bilinear => fir::FilterType::Bilinear,
        }))
        .crop(crop.0, crop.1, crop.2, crop.3);
    resizer.resize(&view, &mut target, &options).map_err(|e| bad(&e))?;
    Ok(RgbPixels { width, height, pixels: target.into_vec() })
}

/// Applies the stored-image policy: evaluation → `image_size²` centre crop; training → whole
/// frame, shorter side at most `train_shorter_side`.
pub fn fit(
    resizer: &mut Resizer,
    source: RgbPixels,
    geometry: &Geometry,
    train: bool,
) -> Result<RgbPixels, BadImageReason> {
    let (w, h) = (f64::from(source.width), f64::from(source.height));
    let shorter = w.min(h);
    if train {
        let limit = f64::from(geometry.train_shorter_side);
        if shorter <= limit {
            return Ok(source);
        }
        let scale = limit / shorter;
        let (tw, th) = (((w * scale).round() as u32).max(1), ((h * scale).round() as u32).max(1));
        return resize(resizer, geometry.resample, &source, (0.0, 0.0, w, h), tw, th);
    }
    let size = geometry.image_size;
    // Source-pixel side of the centre crop: image_size at scale (image_size / crop_fraction) / shorter.
    let side = shorter * geometry.crop_fraction;
    if source.width == size && source.height == size && geometry.crop_fraction >= 1.0 {
        return Ok(source);
    }
    resize(resizer, geometry.resample, &source, ((w - side) / 2.0, (h - side) / 2.0, side, side), size, size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(width: u32, height: u32) -> RgbPixels {
        let mut pixels = Vec::new();
        for y in 0..height {
            for x in 0..width {
                pixels.extend_from_slice(&[(x * 255 / width) as u8, (y * 255 / height) as u8, 128]);
            }
        }
        RgbPixels { width, height, pixels }
    }

    #[test]
    fn eval_images_are_square_and_train_images_keep_their_frame() {
        let geometry = Geometry::for_preset("clip-vit-b32", 224).expect("preset");
        let mut resizer = Resizer::new();
        let eval = fit(&mut resizer, gradient(640, 480), &geometry, false).expect("resize");
        assert_eq!((eval.width, eval.height), (224, 224));
        let train = fit(&mut resizer, gradient(640, 480), &geometry, true).expect("resize");
        assert_eq!((train.width, train.height), (341, 256));
        let small = fit(&mut resizer, gradient(56, 56), &geometry, true).expect("resize");
        assert_eq!((small.width, small.height), (56, 56), "training images are never enlarged");
        // The centre crop drops the sides: the red channel (x gradient) is symmetric about 128.
        let first = eval.pixels[0];
        let last = eval.pixels[(224 - 1) * 3];
        assert!(first > 20 && last < 235 && (i32::from(first) + i32::from(last) - 255).abs() < 8, "{first} {last}");
    }

    #[test]
    fn efficientnet_geometry_is_resize_256_crop_224_bilinear() {
        let geometry = Geometry::for_preset("minilm-efficientnet-lite0", 224).expect("preset");
        assert_eq!(
            (geometry.crop_fraction, geometry.train_shorter_side, geometry.resample),
            (0.875, 256, Resample::Bilinear)
        );
        let mut resizer = Resizer::new();
        let eval = fit(&mut resizer, gradient(640, 480), &geometry, false).expect("resize");
        assert_eq!((eval.width, eval.height), (224, 224));
        // 480 · 0.875 = 420 source pixels kept of 640: the first kept column is x = 110.
        let expected: i32 = 110 * 255 / 640;
        assert!((i32::from(eval.pixels[0]) - expected).abs() <= 2, "{} vs {expected}", eval.pixels[0]);
    }

    #[test]
    fn unknown_preset_is_named() {
        let error = Geometry::for_preset("resnet9000", 224).expect_err("unknown");
        assert!(error.to_string().contains("`resnet9000`"));
    }
}
