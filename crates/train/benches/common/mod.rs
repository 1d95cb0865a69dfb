//! Helpers shared by the training benches.

use std::sync::Mutex;
use std::time::Instant;

use burn::prelude::*;
use sspa_config::Precision;
use sspa_train::FeatureSet;

/// `count` values in `[-1, 1)` from a 64-bit LCG seeded by `seed`.
pub fn pseudo_random(count: usize, seed: u64) -> Vec<f32> {
    let mut state = seed;
    (0..count)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// `flex`; with `--features tch` also `libtorch` (CPU) and `cuda:N`.
#[allow(deprecated)] // burn-tch is deprecated upstream; it is the libtorch path.
pub fn device(name: &str) -> Device {
    match name {
        "flex" => Device::flex(),
        #[cfg(feature = "tch")]
        "libtorch" => Device::libtorch(),
        #[cfg(feature = "tch")]
        cuda if cuda.starts_with("cuda:") => Device::libtorch_cuda(cuda[5..].parse::<usize>().expect("cuda:N")),
        other => panic!("unknown bench device `{other}` (flex; with --features tch: libtorch, cuda:N)"),
    }
}

/// `train.precision` by its config name (`SSPA_BENCH_PRECISION`).
#[allow(dead_code)] // demo_step runs f32 only
pub fn precision(name: &str) -> Precision {
    match name.trim() {
        "f32" => Precision::F32,
        "mixed" => Precision::Mixed,
        "bf16" => Precision::Bf16,
        other => panic!("SSPA_BENCH_PRECISION: unknown precision `{other}` (f32, mixed, bf16)"),
    }
}

/// Pseudo-random frozen features of `images` images (`patches` patch rows and a global row of
/// `width` each) and targets over `classes` labels, a label present where its value is above
/// `threshold` (in `[-1, 1)`); and an empty set of the same sizes (no validation).
#[allow(dead_code)] // fine_tune_step trains on images
pub fn pseudo_features(
    images: usize,
    patches: usize,
    width: usize,
    classes: usize,
    threshold: f32,
) -> (FeatureSet, FeatureSet) {
    let features = FeatureSet {
        ids: (0..images).map(|i| format!("img-{i}")).collect(),
        global: pseudo_random(images * width, 1),
        patches: pseudo_random(images * patches * width, 2),
        targets: pseudo_random(images * classes, 3).into_iter().map(|v| i8::from(v > threshold)).collect(),
        patches_per_image: patches,
        width,
        classes,
    };
    let empty = FeatureSet {
        ids: Vec::new(),
        global: Vec::new(),
        patches: Vec::new(),
        targets: Vec::new(),
        ..features.clone()
    };
    (features, empty)
}

/// When each training step finished, from `train`'s progress callback (`clock.mark(done)`).
#[derive(Default)]
pub struct StepClock(Mutex<Vec<(u64, Instant)>>);

impl StepClock {
    /// Records that `done` steps are finished now.
    pub fn mark(&self, done: u64) {
        if let Ok(mut marks) = self.0.lock() {
            marks.push((done, Instant::now()));
        }
    }

    /// Seconds from the end of step `from` to the end of step `to`, each at its first mark (the
    /// trainer reports the epoch's last step again after validation and the checkpoint, which
    /// are not training steps).
    ///
    /// # Panics
    /// When a step was not reported.
    pub fn seconds(&self, from: usize, to: usize) -> f64 {
        let marks = self.0.lock().expect("progress marks");
        let at = |step: usize| marks.iter().find(|(done, _)| *done == step as u64).map(|(_, time)| *time);
        let (Some(first), Some(last)) = (at(from), at(to)) else {
            panic!("no progress marks for steps {from} and {to}");
        };
        last.duration_since(first).as_secs_f64()
    }
}
