//! `train.precision`: f32 master weights under `mixed` keep updates that bf16 weights lose, a few
//! mixed-precision steps track f32, and mixed-precision checkpoints hold f32 weights and resume
//! exactly. Runs on the CPU `flex` backend, which computes bf16 with autodiff; the devices stay
//! f32 (the master type of `mixed`), so these tests share the process with every other test.

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::{DType, FloatDType};
use sspa_config::Precision;
use sspa_train::precision::{cast_parameters, compute_dtype, master_dtype, working_copy};
use sspa_train::{
    AdamWGroupsConfig, CachedFeatures, MeanPromptEncoder, TextInputs, TrainData, TrainOptions, files,
    latest_checkpoint, train,
};

use crate::training::{
    CLASSES, PROMPT_WIDTH, TEXT_WIDTH, assert_same_weights, final_weights, never, quiet, setup, synthetic_classes,
    text_inputs_classes,
};

/// One trained scalar.
#[derive(Module, Debug)]
struct Scalar {
    w: Param<Tensor<1>>,
}

/// `w = 1.0` after `steps` AdamW steps of learning rate `lr` on the loss `Σ w` (gradient 1: every
/// Adam update is `lr`), taken as the trainer takes them under `precision`: the master weight in
/// [`master_dtype`], the passes on a [`working_copy`] in [`compute_dtype`], the loss in f32.
fn constant_pull(device: &Device, precision: Precision, lr: f64, steps: usize) -> (f32, DType) {
    let device = device.clone().autodiff();
    let start = Scalar { w: Param::from_tensor(Tensor::<1>::ones([1], &device)) };
    let mut master = cast_parameters(start, master_dtype(precision));
    let mut optimizer = AdamWGroupsConfig::new().with_weight_decay(0.0).init(&master);
    for _ in 0..steps {
        let working = working_copy(&master, compute_dtype(precision));
        let loss = working.w.val().cast(FloatDType::F32).sum();
        let grads = GradientsParams::from_grads(loss.backward(), &master);
        master = optimizer.step(lr, master, grads);
    }
    let value = master.w.val();
    let dtype = value.dtype();
    (value.into_data().convert::<f32>().try_to_vec::<f32>().expect("value")[0], dtype)
}

#[test]
fn updates_below_bf16_resolution_accumulate_in_f32_master_weights_only() {
    small_updates_on(&Device::flex());
}

fn small_updates_on(device: &Device) {
    // bf16 has 8 significant bits: next to 1.0 its spacing is 2⁻⁸ below and 2⁻⁷ above, so
    // `1 − 1e-4` rounds back to 1. 100 steps of 1e-4 move the weight by 0.01.
    let (lr, steps) = (1e-4, 100);
    let expected = 1.0 - lr as f32 * steps as f32;

    let (mixed, dtype) = constant_pull(device, Precision::Mixed, lr, steps);
    assert_eq!(dtype, DType::F32, "mixed keeps f32 master weights");
    assert!((mixed - expected).abs() < 1e-5, "mixed: w = {mixed}, expected {expected}");

    let (full, _) = constant_pull(device, Precision::F32, lr, steps);
    assert!((full - mixed).abs() < 1e-6, "f32 {full} vs mixed {mixed}");

    let (bf16, dtype) = constant_pull(device, Precision::Bf16, lr, steps);
    assert_eq!(dtype, DType::BF16, "bf16 keeps bf16 weights");
    assert_eq!(bf16, 1.0, "bf16 weights lose every update below their resolution");
}

fn prompt_encoder(text: &TextInputs, device: &Device) -> MeanPromptEncoder {
    MeanPromptEncoder::new(text.labels.clone(), PROMPT_WIDTH, TEXT_WIDTH, 11, &device.clone().autodiff())
}

#[test]
fn mixed_precision_training_tracks_f32() {
    training_tracks_f32_on(&Device::flex());
}

/// Two epochs of f32, mixed and bf16 training on `device` (f32 its default float type).
fn training_tracks_f32_on(device: &Device) {
    let text = text_inputs_classes(CLASSES);
    let (train_set, validation) = (synthetic_classes(CLASSES, 64, 21), synthetic_classes(CLASSES, 32, 22));
    let encoder = prompt_encoder(&text, device);
    let data = TrainData {
        text: &text,
        encoder: &encoder,
        source: &CachedFeatures { train: &train_set, validation: &validation },
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let run = |precision: Precision| {
        let mut run = setup(2, 16);
        run.train.precision = precision;
        let name = precision.to_string();
        let mut options = TrainOptions::new(dir.path().join(format!("{name}-ckpt")), dir.path().join(&name));
        options.device = device.clone();
        train(run.sections(), data, &options, &quiet, &never).expect("train")
    };
    let (full, mixed, bf16) = (run(Precision::F32), run(Precision::Mixed), run(Precision::Bf16));
    for (a, b, c) in itertools(&full.history, &mixed.history, &bf16.history) {
        eprintln!(
            "epoch {}: loss f32 {:.5} mixed {:.5} bf16 {:.5}; val mAP f32 {:?} mixed {:?} bf16 {:?}",
            a.epoch, a.train_loss, b.train_loss, c.train_loss, a.val_map, b.val_map, c.val_map
        );
        let relative = (a.train_loss - b.train_loss).abs() / a.train_loss;
        assert!(relative < 0.02, "epoch {}: mixed loss {} vs f32 {}", a.epoch, b.train_loss, a.train_loss);
        assert!(c.train_loss.is_finite(), "bf16 trains");
        let (map, map_mixed) = (a.val_map.expect("f32 mAP"), b.val_map.expect("mixed mAP"));
        assert!((map - map_mixed).abs() < 5.0, "epoch {}: val mAP mixed {map_mixed} vs f32 {map}", a.epoch);
    }
    assert_ne!(
        full.history.last().map(|log| log.train_loss),
        mixed.history.last().map(|log| log.train_loss),
        "mixed computes in bf16, not in f32"
    );
}

/// The history rows of three runs side by side.
fn itertools<'a, T>(a: &'a [T], b: &'a [T], c: &'a [T]) -> impl Iterator<Item = (&'a T, &'a T, &'a T)> {
    assert!(a.len() == b.len() && b.len() == c.len(), "same epochs");
    a.iter().zip(b).zip(c).map(|((a, b), c)| (a, b, c))
}

/// The dtype of every tensor of a safetensors file.
fn stored_dtypes(path: &std::path::Path) -> Vec<safetensors::Dtype> {
    let bytes = std::fs::read(path).expect("weights file");
    let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    tensors.tensors().into_iter().map(|(_, view)| view.dtype()).collect()
}

#[test]
fn mixed_precision_checkpoints_hold_f32_master_weights_and_resume_exactly() {
    let text = text_inputs_classes(CLASSES);
    let (train_set, validation) = (synthetic_classes(CLASSES, 48, 23), synthetic_classes(CLASSES, 16, 24));
    let encoder = prompt_encoder(&text, &Device::flex());
    let data = TrainData {
        text: &text,
        encoder: &encoder,
        source: &CachedFeatures { train: &train_set, validation: &validation },
    };
    let mut run = setup(2, 16);
    run.train.precision = Precision::Mixed;
    let dir = tempfile::tempdir().expect("temp dir");

    let straight = TrainOptions::new(dir.path().join("a-ckpt"), dir.path().join("a-out"));
    let reference = train(run.sections(), data, &straight, &quiet, &never).expect("uninterrupted");
    assert!(reference.finished);

    let limited = TrainOptions {
        max_epochs_this_call: Some(1),
        ..TrainOptions::new(dir.path().join("b-ckpt"), dir.path().join("b-out"))
    };
    let first = train(run.sections(), data, &limited, &quiet, &never).expect("first epoch");
    assert_eq!((first.epochs_done, first.finished), (1, false));
    let checkpoint = latest_checkpoint(&limited.checkpoint_dir).expect("latest").expect("a checkpoint");
    for file in ["model.safetensors", "model_ema.safetensors"] {
        let dtypes = stored_dtypes(&checkpoint.join(file));
        assert!(!dtypes.is_empty() && dtypes.iter().all(|d| *d == safetensors::Dtype::F32), "{file}: {dtypes:?}");
    }
    let rest = TrainOptions { max_epochs_this_call: None, ..limited.clone() };
    let resumed = train(run.sections(), data, &rest, &quiet, &never).expect("resumed");
    assert_eq!((resumed.resumed_from, resumed.finished), (Some(1), true));
    for file in [files::MODEL, files::MODEL_EMA] {
        let dtypes = stored_dtypes(&rest.output_dir.join(file));
        assert!(dtypes.iter().all(|d| *d == safetensors::Dtype::F32), "{file}: {dtypes:?}");
    }
    assert_same_weights(&final_weights(&rest.output_dir), &final_weights(&straight.output_dir), "resumed mixed run");

    // A checkpoint of the mixed run does not resume an f32 run (the precision is part of the
    // run's configuration).
    let mut other = setup(2, 16);
    other.train.precision = Precision::F32;
    let error = train(other.sections(), data, &limited, &quiet, &never).expect_err("other precision");
    assert!(matches!(error, sspa_train::TrainError::Checkpoint { .. }), "{error}");
}

/// The same checks on libtorch's CPU device (`--features tch`): `f32` and `mixed` share its f32
/// default float type, so both run in one process; `bf16` runs with bf16 weights cast from it.
#[cfg(feature = "tch")]
#[allow(deprecated)] // burn-tch is deprecated upstream; it is this project's libtorch/CUDA path.
mod libtorch {
    use super::*;

    #[test]
    fn updates_below_bf16_resolution_accumulate_on_libtorch() {
        small_updates_on(&Device::libtorch());
    }

    #[test]
    fn mixed_precision_training_tracks_f32_on_libtorch() {
        training_tracks_f32_on(&Device::libtorch());
    }
}

/// Every head variant of the ablations computes on the bf16 copy. (`ablation.aggregator = "hard"`
/// is not listed: its indicator weights are made in the device's default float type, f32 under
/// `mixed`, and meet bf16 patch logits; it needs them made in the logits' type in sspa-model.)
#[test]
fn ablation_variants_train_under_mixed_precision() {
    use sspa_config::{AblationSection, Aggregator, Alignment, Branches};
    let text = text_inputs_classes(CLASSES);
    let (train_set, validation) = (synthetic_classes(CLASSES, 32, 25), synthetic_classes(CLASSES, 16, 26));
    let encoder = prompt_encoder(&text, &Device::flex());
    let data = TrainData {
        text: &text,
        encoder: &encoder,
        source: &CachedFeatures { train: &train_set, validation: &validation },
    };
    let variants = [
        ("mean", AblationSection { aggregator: Aggregator::Mean, ..AblationSection::default() }),
        ("hard", AblationSection { aggregator: Aggregator::Hard, ..AblationSection::default() }),
        ("global", AblationSection { branches: Branches::Global, ..AblationSection::default() }),
        (
            "visual-to-semantic",
            AblationSection { alignment: Alignment::VisualToSemantic, ..AblationSection::default() },
        ),
        ("no-cap", AblationSection { cap: false, ..AblationSection::default() }),
        ("no-dsf", AblationSection { dsf: false, ..AblationSection::default() }),
        ("no-gate", AblationSection { gate: false, ..AblationSection::default() }),
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, ablation) in variants {
        let mut run = setup(1, 16);
        run.train.precision = Precision::Mixed;
        run.ablation = ablation;
        let options = TrainOptions::new(dir.path().join(format!("{name}-ckpt")), dir.path().join(name));
        let outcome = train(run.sections(), data, &options, &quiet, &never).expect(name);
        let loss = outcome.history[0].train_loss;
        assert!(loss.is_finite() && loss > 0.0, "{name}: loss {loss}");
        assert!(outcome.history[0].val_map.is_some(), "{name}: validated");
    }
}
