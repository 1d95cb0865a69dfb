//! The one place the tensor backend is chosen: `train.device` and `train.precision` of the domain
//! config become a burn [`Device`] for every stage and command that computes (embed, image
//! features, train, evaluate, `predict`, `encode`).
//!
//! | `train.device` | backend | needs |
//! |---|---|---|
//! | `cpu` | burn `flex` (pure Rust) | nothing |
//! | `libtorch` | libtorch on the CPU (burn-tch) | a build with `--features tch` |
//! | `cuda:N` | libtorch on CUDA GPU `N` (burn-tch) | a build with `--features tch`, a CUDA GPU |
//!
//! `train.precision` sets the device's default float type to the type of the trained weights
//! (`sspa_train::precision`): f32 for `f32` and `mixed` (f32 master weights; the training loop
//! casts a bf16 working copy of the model and its inputs every step), bf16 for `bf16` (weights,
//! activations, gradients and AdamW state all bf16, the loss in f32: faster, but updates below
//! bf16's resolution round away). bf16 keeps f32's exponent range, so no loss scaling is needed.
//! Every device computes bf16 with autodiff, burn's flex CPU backend included (its bf16 kernels
//! convert through f32, so bf16 saves memory there but no time: it is for testing).

use burn::prelude::*;
use serde::{Deserialize, Serialize};
use sspa_config::{ComputeDevice, Precision};

/// Whether this build has the libtorch backend (the `tch` feature), for config validation.
pub const LIBTORCH: bool = cfg!(feature = "tch");

/// `train.device` and `train.precision`: what every computing stage and command reads to pick
/// its device (a stage that computes declares both in its params).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DeviceSettings {
    pub device: ComputeDevice,
    pub precision: Precision,
}

impl DeviceSettings {
    /// The settings of a `[train]` section.
    pub fn of(train: &sspa_config::TrainSection) -> Self {
        Self { device: train.device, precision: train.precision }
    }
}

/// What [`select`] refuses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error(
        "`train.device = \"{device}\"` needs the libtorch backend, which this build lacks: rebuild with \
         `cargo build --release --features tch` (LIBTORCH_USE_PYTORCH=1 with PyTorch 2.9.0 in the active venv; see README)"
    )]
    NoLibtorch { device: ComputeDevice },
    #[error("configuring the default float type of `{device}`: {message}")]
    Configure { device: ComputeDevice, message: String },
}

/// The device of `settings`. Config validation already refuses what this refuses; the check is
/// repeated for callers that build settings themselves (a trained run's `config.json`).
///
/// # Errors
/// [`DeviceError`] for a libtorch device in a build without `tch`, or a device already configured
/// for another float type in this process.
pub fn select(settings: DeviceSettings) -> Result<Device, DeviceError> {
    #[allow(unused_mut)]
    let mut device = build(settings.device)?;
    // A device's default dtype is set once per process; later stages find it already set. It is
    // the type of the trained weights.
    let wanted = sspa_train::precision::master_dtype(settings.precision);
    if device.settings().float_dtype != wanted {
        device.configure(wanted).map_err(|e| DeviceError::Configure {
            device: settings.device,
            message: format!(
                "{e:?} (one process cannot use one device with `bf16` and with `f32` or `mixed`, whose weights are f32)"
            ),
        })?;
    }
    Ok(device)
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn-tch is deprecated upstream; it is the libtorch CUDA path this project offers.
fn build(device: ComputeDevice) -> Result<Device, DeviceError> {
    Ok(match device {
        ComputeDevice::Cpu => Device::flex(),
        ComputeDevice::Libtorch => Device::libtorch(),
        ComputeDevice::Cuda(index) => Device::libtorch_cuda(index),
    })
}

#[cfg(not(feature = "tch"))]
fn build(device: ComputeDevice) -> Result<Device, DeviceError> {
    match device {
        ComputeDevice::Cpu => Ok(Device::flex()),
        ComputeDevice::Libtorch | ComputeDevice::Cuda(_) => Err(DeviceError::NoLibtorch { device }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(device: &str, precision: Precision) -> DeviceSettings {
        DeviceSettings { device: device.parse().expect("device"), precision }
    }

    #[test]
    fn cpu_is_flex_and_mixed_precision_keeps_f32_weights_there() {
        let device = select(settings("cpu", Precision::F32)).expect("flex");
        // A tensor fixes the device's settings (to f32) for the process.
        assert_eq!(Tensor::<1>::zeros([1], &device).dtype(), burn::tensor::DType::F32);
        // `mixed` keeps f32 master weights: the same device, usable next to `f32` in one process.
        let mixed = select(settings("cpu", Precision::Mixed)).expect("mixed on flex");
        assert_eq!(mixed.settings().float_dtype, burn::tensor::FloatDType::F32);
        // `bf16` would configure the flex device for the whole process (other tests use it in
        // f32): it is refused once the device computes in f32.
        let error = select(settings("cpu", Precision::Bf16)).expect_err("flex is already f32 here");
        assert!(matches!(error, DeviceError::Configure { .. }), "{error}");
        assert!(error.to_string().contains("one process cannot use one device"), "{error}");
    }

    #[cfg(not(feature = "tch"))]
    #[test]
    fn libtorch_devices_name_the_missing_feature() {
        let error = select(settings("cuda:0", Precision::F32)).expect_err("no tch");
        assert!(error.to_string().contains("--features tch"), "{error}");
        const { assert!(!LIBTORCH) };
    }

    #[cfg(feature = "tch")]
    #[test]
    fn bf16_precision_computes_in_bf16_close_to_f32() {
        let bf16 = select(settings("libtorch", Precision::Bf16)).expect("bf16 libtorch");
        // One process cannot use the libtorch CPU device in both dtypes: f32 runs on flex.
        let f32_device = select(settings("cpu", Precision::F32)).expect("flex");
        let values: Vec<f32> = (0..64).map(|i| (i as f32 * 0.173).sin()).collect();
        let run = |device: &Device| {
            let device = device.clone().autodiff();
            let w = Tensor::<2>::from_data(TensorData::new(values.clone(), [8, 8]), &device).require_grad();
            let loss = burn::tensor::activation::sigmoid(w.clone().matmul(w.clone().transpose())).sum();
            let grads = loss.backward();
            let grad = w.grad(&grads).expect("gradient");
            (grad.dtype(), loss.into_data().convert::<f32>().try_to_vec::<f32>().expect("loss")[0])
        };
        let (dtype, low) = run(&bf16);
        let (full_dtype, full) = run(&f32_device);
        assert_eq!(dtype, burn::tensor::DType::BF16, "bf16 precision computes in bf16");
        assert_eq!(full_dtype, burn::tensor::DType::F32);
        assert!(low.is_finite() && (low - full).abs() <= 0.02 * full.abs(), "bf16 {low} vs f32 {full}");
    }
}
