//! Helpers shared by the training benches.

use burn::prelude::*;

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
