//! The one table of model presets: what each `model.preset` means for every crate that needs it
//! (image preprocessing, encoder widths and patch grids, weights), and the compute device and
//! precision of `[train]`.
//!
//! | preset | text encoder | image encoder | `c` | patch stride | eval crop | resample | mean / std |
//! |---|---|---|---|---|---|---|---|
//! | `minilm-efficientnet-lite0` | MiniLM-L6 | EfficientNet-Lite0 | 1280 | 32 | 0.875 | bilinear | 127/255, 128/255 |
//! | `clip-rn50` | CLIP text tower | ModifiedResNet-50 | 1024 | 32 | 1.0 | bicubic | OpenAI CLIP |
//! | `clip-rn101` | CLIP text tower | ModifiedResNet-101 | 512 | 32 | 1.0 | bicubic | OpenAI CLIP |
//! | `clip-vit-b32` | CLIP text tower | ViT-B/32 | 512 | 32 | 1.0 | bicubic | OpenAI CLIP |
//! | `clip-vit-b16` | CLIP text tower | ViT-B/16 | 512 | 16 | 1.0 | bicubic | OpenAI CLIP |
//!
//! `c` is the width of the features the image encoder hands the head (CLIP: its joint width), at
//! the preset's published size; user-provided CLIP weights of another width are read from the
//! file itself. The patch count at input size `S` is `(S / stride)²`, rounded up for EfficientNet's
//! `SAME` padding.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// `model.preset`: which pretrained encoders the pipeline uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Preset {
    /// MiniLM-L6 text encoder + EfficientNet-Lite0 image encoder (installed by `scripts/install-encoders`).
    #[serde(rename = "minilm-efficientnet-lite0")]
    MinilmEfficientnetLite0,
    /// OpenAI CLIP RN50 (user-provided weights).
    #[serde(rename = "clip-rn50")]
    ClipRn50,
    /// OpenAI CLIP RN101.
    #[serde(rename = "clip-rn101")]
    ClipRn101,
    /// OpenAI CLIP ViT-B/32.
    #[serde(rename = "clip-vit-b32")]
    ClipVitB32,
    /// OpenAI CLIP ViT-B/16.
    #[serde(rename = "clip-vit-b16")]
    ClipVitB16,
}

/// Resampling filter a preset's reference preprocessing uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resampling {
    /// Catmull–Rom (`a = −0.5`), PIL's `BICUBIC`.
    Bicubic,
    /// Triangle, PIL's `BILINEAR`.
    Bilinear,
}

/// One row of the preset table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PresetInfo {
    /// The preset this row describes.
    pub preset: Preset,
    /// The config spelling, e.g. `clip-vit-b16`.
    pub name: &'static str,
    /// Both encoders come from one CLIP checkpoint (user-provided).
    pub clip: bool,
    /// Record name of the frozen text encoder (`minilm-l6`, `clip-text`).
    pub text_encoder: &'static str,
    /// Record name of the image encoder (`efficientnet-lite0`, `clip-image`).
    pub image_encoder: &'static str,
    /// Width `c` of the image features at the published architecture.
    pub image_width: usize,
    /// Input pixels per patch side: `N = (image_size / patch_stride)²`.
    pub patch_stride: u32,
    /// The division rounds up (TensorFlow `SAME` padding) rather than down (CLIP).
    pub patch_round_up: bool,
    /// Fraction of the resized shorter side kept by the evaluation centre crop.
    pub crop_fraction: f64,
    /// Filter of the reference preprocessing's resize.
    pub resampling: Resampling,
    /// Per-channel normalisation on `[0, 1]` pixels.
    pub mean: [f32; 3],
    /// Per-channel divisor after `mean` is subtracted: `(x − mean) / std`.
    pub std: [f32; 3],
}

/// OpenAI CLIP's normalisation, rounded to f32.
const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
const CLIP_STD: [f32; 3] = [0.268_629_5, 0.261_302_6, 0.275_777_1];

const fn clip(preset: Preset, name: &'static str, image_width: usize, patch_stride: u32) -> PresetInfo {
    PresetInfo {
        preset,
        name,
        clip: true,
        text_encoder: "clip-text",
        image_encoder: "clip-image",
        image_width,
        patch_stride,
        patch_round_up: false,
        crop_fraction: 1.0,
        resampling: Resampling::Bicubic,
        mean: CLIP_MEAN,
        std: CLIP_STD,
    }
}

/// Every preset, in documentation order.
pub const PRESETS: [PresetInfo; 5] = [
    PresetInfo {
        preset: Preset::MinilmEfficientnetLite0,
        name: "minilm-efficientnet-lite0",
        clip: false,
        text_encoder: "minilm-l6",
        image_encoder: "efficientnet-lite0",
        image_width: 1280,
        patch_stride: 32,
        patch_round_up: true,
        crop_fraction: 0.875,
        resampling: Resampling::Bilinear,
        // TensorFlow EfficientNet-Lite's 127 / 128 on [0, 255] pixels.
        mean: [127.0 / 255.0; 3],
        std: [128.0 / 255.0; 3],
    },
    clip(Preset::ClipRn50, "clip-rn50", 1024, 32),
    clip(Preset::ClipRn101, "clip-rn101", 512, 32),
    clip(Preset::ClipVitB32, "clip-vit-b32", 512, 32),
    clip(Preset::ClipVitB16, "clip-vit-b16", 512, 16),
];

impl Preset {
    /// This preset's row of [`PRESETS`].
    pub fn info(self) -> &'static PresetInfo {
        PRESETS.iter().find(|row| row.preset == self).unwrap_or(&PRESETS[0])
    }

    /// The config spelling, e.g. `clip-vit-b16`.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Whether both encoders come from one (user-provided) CLIP checkpoint.
    pub fn is_clip(self) -> bool {
        self.info().clip
    }

    /// Patch tokens per image at input size `image_size`.
    pub fn patches_per_image(self, image_size: u32) -> usize {
        let info = self.info();
        let side =
            if info.patch_round_up { image_size.div_ceil(info.patch_stride) } else { image_size / info.patch_stride }
                as usize;
        side * side
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        PRESETS.iter().find(|row| row.name == text).map(|row| row.preset).ok_or_else(|| {
            let names: Vec<String> = PRESETS.iter().map(|row| format!("`{}`", row.name)).collect();
            format!("unknown preset `{text}`; expected one of {}", names.join(", "))
        })
    }
}

/// `train.device`: where every stage that computes runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ComputeDevice {
    /// burn's pure-Rust `flex` backend.
    #[default]
    Cpu,
    /// libtorch on the CPU (a `--features tch` build).
    Libtorch,
    /// libtorch on CUDA GPU `N` (a `--features tch` build).
    Cuda(usize),
}

impl ComputeDevice {
    /// Whether the device is a libtorch one (needs the `tch` feature).
    pub fn is_libtorch(self) -> bool {
        !matches!(self, Self::Cpu)
    }
}

impl fmt::Display for ComputeDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Libtorch => f.write_str("libtorch"),
            Self::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

impl FromStr for ComputeDevice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "cpu" => Ok(Self::Cpu),
            "libtorch" => Ok(Self::Libtorch),
            other => other
                .strip_prefix("cuda:")
                .filter(|n| !n.is_empty() && n.chars().all(|ch| ch.is_ascii_digit()))
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("`{other}` must be `cpu`, `libtorch` or `cuda:N`")),
        }
    }
}

impl Serialize for ComputeDevice {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ComputeDevice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// `train.precision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// f32 everywhere.
    #[default]
    F32,
    /// f32 master weights, AdamW state and EMA; forward and backward on a bf16 copy of the model,
    /// the loss in f32.
    Mixed,
    /// bf16 weights, AdamW state, activations and gradients, the loss in f32: faster, but an
    /// update below bf16's resolution (`lr · update ≪ 2⁻⁸ · |w|`) rounds away.
    Bf16,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Mixed => "mixed",
            Self::Bf16 => "bf16",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_round_trips_through_its_name() {
        for row in PRESETS {
            assert_eq!(row.name.parse::<Preset>(), Ok(row.preset));
            assert_eq!(row.preset.info().name, row.name);
            let json = serde_json::to_value(row.preset).expect("serialises");
            assert_eq!(json, serde_json::Value::String(row.name.into()));
        }
        assert!("clip-vit-l14".parse::<Preset>().expect_err("unknown").contains("clip-vit-b16"));
    }

    #[test]
    fn patch_grids() {
        assert_eq!(Preset::MinilmEfficientnetLite0.patches_per_image(112), 16);
        assert_eq!(Preset::MinilmEfficientnetLite0.patches_per_image(224), 49);
        assert_eq!(Preset::ClipVitB16.patches_per_image(448), 784);
    }

    #[test]
    fn devices_parse_and_print() {
        for (text, device) in
            [("cpu", ComputeDevice::Cpu), ("libtorch", ComputeDevice::Libtorch), ("cuda:1", ComputeDevice::Cuda(1))]
        {
            assert_eq!(text.parse::<ComputeDevice>(), Ok(device));
            assert_eq!(device.to_string(), text);
        }
        for bad in ["cuda:", "gpu", "cuda:x", "cuda:-1"] {
            assert!(bad.parse::<ComputeDevice>().is_err(), "{bad}");
        }
    }
}
