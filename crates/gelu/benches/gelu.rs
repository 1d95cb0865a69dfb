//! GELU forward + backward on flex: this crate's op against burn's own `gelu`, at the sizes of a
//! demo training step (the head's MLP hidden layers `[64, 16, 768]`, MiniLM's feed-forward
//! `[10, 11, 1536]`).
//!
//! `cargo bench -p sspa-gelu --bench gelu` (`--profile dev` for the build `scripts/demo` runs).

use std::time::Instant;

use burn::prelude::*;
use burn::tensor::Distribution;

const ROUNDS: usize = 20;

fn time(f: impl Fn() -> f32) -> f64 {
    f();
    let start = Instant::now();
    let mut sink = 0.0;
    for _ in 0..ROUNDS {
        sink += f();
    }
    assert!(sink.is_finite());
    start.elapsed().as_secs_f64() / ROUNDS as f64
}

fn main() {
    let device = Device::flex().autodiff();
    for shape in [[64, 16, 768], [64, 10, 768], [10, 11, 1536]] {
        let x = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device).require_grad();
        let step = |f: fn(Tensor<3>) -> Tensor<3>| {
            let x = x.clone();
            move || {
                let grads = f(x.clone()).sum().backward();
                x.grad(&grads).expect("grad").sum().into_scalar::<f32>()
            }
        };
        let ours = time(step(sspa_gelu::gelu));
        let burns = time(step(burn::tensor::activation::gelu));
        println!(
            "gelu fwd+bwd {shape:?}: sspa-gelu {:.3} ms, burn flex {:.3} ms, ratio {:.1}x",
            ours * 1e3,
            burns * 1e3,
            burns / ours
        );
    }
}
