//! The one place the tensor backend is chosen: `train.device` and `train.precision` of the domain
//! config become a burn [`Device`] for every stage that computes (image features, training,
//! evaluation).
//!
//! | `train.device` | backend | needs |
//! |---|---|---|
//! | `cpu` | burn `flex` (pure Rust) | nothing |
//! | `libtorch` | libtorch on the CPU (burn-tch) | a build with `--features tch` |
//! | `cuda:N` | libtorch on CUDA GPU `N` (burn-tch) | a build with `--features tch`, a CUDA GPU |
//!
//! `train.precision = "mixed"` makes bf16 the device's default float type (weights, activations
//! and gradients; bf16 keeps f32's exponent range, so no loss scaling is needed). It is offered on
//! the libtorch devices (CUDA, and the CPU for testing); burn's flex backend computes in f32.

use burn::prelude::*;

/// What [`select`] refuses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceError {
    #[error("`train.device = \"{device}\"` must be `cpu`, `libtorch` or `cuda:N`")]
    Unknown { device: String },
    #[error(
        "`train.device = \"{device}\"` needs the libtorch backend, which this build lacks: rebuild with \
         `cargo build --release --features tch` (LIBTORCH_USE_PYTORCH=1 with PyTorch 2.9.0 in the active venv; see README)"
    )]
    NoLibtorch { device: String },
    #[error("`train.precision = \"{precision}\"` must be `f32` or `mixed`")]
    UnknownPrecision { precision: String },
    #[error(
        "`train.precision = \"mixed\"` needs a libtorch device (`train.device = \"cuda:N\"` or `\"libtorch\"`); \
         `{device}` computes in f32"
    )]
    MixedOnFlex { device: String },
    #[error("configuring the default float type of `{device}`: {message}")]
    Configure { device: String, message: String },
}

/// Which backend a `train.device` value names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// burn `flex`.
    Flex,
    /// libtorch on the CPU.
    LibtorchCpu,
    /// libtorch on CUDA device `N`.
    LibtorchCuda(usize),
}

/// Parses `train.device` (without building the device).
///
/// # Errors
/// [`DeviceError::Unknown`].
pub fn parse(device: &str) -> Result<Backend, DeviceError> {
    match device {
        "cpu" => Ok(Backend::Flex),
        "libtorch" => Ok(Backend::LibtorchCpu),
        other => other
            .strip_prefix("cuda:")
            .and_then(|n| n.parse().ok())
            .map(Backend::LibtorchCuda)
            .ok_or_else(|| DeviceError::Unknown { device: other.to_owned() }),
    }
}

/// The device of a `[train]` section.
///
/// # Errors
/// [`DeviceError`] for unknown values, a libtorch device in a build without `tch`, or mixed
/// precision on a CPU.
pub fn select(train: &sspa_config::TrainSection) -> Result<Device, DeviceError> {
    let backend = parse(&train.device)?;
    let mixed = match train.precision.as_str() {
        "f32" => false,
        "mixed" => true,
        other => return Err(DeviceError::UnknownPrecision { precision: other.to_owned() }),
    };
    if mixed && backend == Backend::Flex {
        return Err(DeviceError::MixedOnFlex { device: train.device.clone() });
    }
    #[allow(unused_mut)]
    let mut device = build(backend, &train.device)?;
    // A device's default dtype is set once per process; later stages find it already set.
    let wanted = if mixed { burn::tensor::FloatDType::BF16 } else { burn::tensor::FloatDType::F32 };
    if device.settings().float_dtype != wanted {
        device.configure(wanted).map_err(|e| DeviceError::Configure {
            device: train.device.clone(),
            message: format!("{e:?} (one process cannot mix `f32` and `mixed` on one device)"),
        })?;
    }
    Ok(device)
}

#[cfg(feature = "tch")]
#[allow(deprecated)] // burn-tch is deprecated upstream; it is the libtorch CUDA path this project offers.
fn build(backend: Backend, _name: &str) -> Result<Device, DeviceError> {
    Ok(match backend {
        Backend::Flex => Device::flex(),
        Backend::LibtorchCpu => Device::libtorch(),
        Backend::LibtorchCuda(index) => Device::libtorch_cuda(index),
    })
}

#[cfg(not(feature = "tch"))]
fn build(backend: Backend, name: &str) -> Result<Device, DeviceError> {
    match backend {
        Backend::Flex => Ok(Device::flex()),
        Backend::LibtorchCpu | Backend::LibtorchCuda(_) => Err(DeviceError::NoLibtorch { device: name.to_owned() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(device: &str, precision: &str) -> sspa_config::TrainSection {
        sspa_config::TrainSection { device: device.into(), precision: precision.into(), ..Default::default() }
    }

    #[test]
    fn device_names_parse() {
        assert_eq!(parse("cpu"), Ok(Backend::Flex));
        assert_eq!(parse("libtorch"), Ok(Backend::LibtorchCpu));
        assert_eq!(parse("cuda:1"), Ok(Backend::LibtorchCuda(1)));
        assert!(matches!(parse("cuda:"), Err(DeviceError::Unknown { .. })));
        assert!(matches!(parse("gpu"), Err(DeviceError::Unknown { .. })));
    }

    #[test]
    fn cpu_is_flex_and_mixed_precision_needs_libtorch() {
        assert!(select(&section("cpu", "f32")).is_ok());
        assert_eq!(select(&section("cpu", "mixed")).err(), Some(DeviceError::MixedOnFlex { device: "cpu".into() }));
        assert!(matches!(select(&section("cpu", "fp8")), Err(DeviceError::UnknownPrecision { .. })));
    }

    #[cfg(not(feature = "tch"))]
    #[test]
    fn libtorch_devices_name_the_missing_feature() {
        let error = select(&section("cuda:0", "f32")).expect_err("no tch");
        assert!(error.to_string().contains("--features tch"), "{error}");
    }

    #[cfg(feature = "tch")]
    #[test]
    fn mixed_precision_computes_in_bf16_close_to_f32() {
        let bf16 = select(&section("libtorch", "mixed")).expect("bf16 libtorch");
        // One process cannot use the libtorch CPU device in both dtypes: f32 runs on flex.
        let f32_device = select(&section("cpu", "f32")).expect("flex");
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
        assert_eq!(dtype, burn::tensor::DType::BF16, "mixed precision computes in bf16");
        assert_eq!(full_dtype, burn::tensor::DType::F32);
        assert!(low.is_finite() && (low - full).abs() <= 0.02 * full.abs(), "bf16 {low} vs f32 {full}");
    }
}
