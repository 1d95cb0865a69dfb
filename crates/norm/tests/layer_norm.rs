//! `sspa_norm::LayerNorm` against burn's `LayerNorm` (decomposed under autodiff): same forward,
//! same gradients for the input, `γ` and `β`, on flex with and without autodiff.
#![allow(clippy::unwrap_used)]

use burn::module::Param;
use burn::prelude::*;
use burn::tensor::{Distribution, Tolerance};
use sspa_norm::{LayerNorm, LayerNormConfig};

fn pair(width: usize, epsilon: f64, device: &Device) -> (LayerNorm, burn::nn::LayerNorm) {
    let gamma = Tensor::<1>::random([width], Distribution::Normal(1.0, 0.3), device);
    let beta = Tensor::<1>::random([width], Distribution::Normal(0.0, 0.3), device);
    let mut ours = LayerNormConfig::new(width).with_epsilon(epsilon).init(device);
    ours.gamma = Param::from_tensor(gamma.clone());
    ours.beta = Some(Param::from_tensor(beta.clone()));
    let mut theirs = burn::nn::LayerNormConfig::new(width).with_epsilon(epsilon).init(device);
    theirs.gamma = Param::from_tensor(gamma);
    theirs.beta = Some(Param::from_tensor(beta));
    (ours, theirs)
}

fn close(a: Tensor<1>, b: Tensor<1>) {
    a.to_data().assert_approx_eq::<f32>(&b.to_data(), Tolerance::rel_abs(1e-5, 1e-5));
}

#[test]
fn forward_matches_burn() {
    let device = Device::flex();
    for (shape, epsilon) in [([3, 7, 16], 1e-5), ([2, 130, 48], 1e-12)] {
        let (ours, theirs) = pair(shape[2], epsilon, &device);
        // An offset mean and a large spread: the statistics are not trivially centred.
        let x = Tensor::<3>::random(shape, Distribution::Normal(3.0, 5.0), &device);
        close(ours.forward(x.clone()).flatten(0, 2), theirs.forward(x).flatten(0, 2));
    }
}

#[test]
fn gradients_match_burns_decomposed_backward() {
    let device = Device::flex().autodiff();
    // 150 rows: more than one parallel block of 64 rows, with a partial last block.
    for (shape, epsilon) in [([3, 50, 24], 1e-5), ([1, 5, 384], 1e-12)] {
        let (ours, theirs) = pair(shape[2], epsilon, &device);
        let ours = LayerNorm {
            gamma: ours.gamma.set_require_grad(true),
            beta: ours.beta.map(|b| b.set_require_grad(true)),
            ..ours
        };
        let x = Tensor::<3>::random(shape, Distribution::Normal(-2.0, 3.0), &device).require_grad();
        let upstream = Tensor::<3>::random(shape, Distribution::Normal(0.0, 1.0), &device);

        let grads_ours = (ours.forward(x.clone()) * upstream.clone()).sum().backward();
        let grads_theirs = (theirs.forward(x.clone()) * upstream).sum().backward();
        close(x.grad(&grads_ours).unwrap().flatten(0, 2), x.grad(&grads_theirs).unwrap().flatten(0, 2));
        close(ours.gamma.val().grad(&grads_ours).unwrap(), theirs.gamma.val().grad(&grads_theirs).unwrap());
        let beta = |norm: &Option<Param<Tensor<1>>>| norm.as_ref().unwrap().val();
        close(beta(&ours.beta).grad(&grads_ours).unwrap(), beta(&theirs.beta).grad(&grads_theirs).unwrap());
    }
}

#[test]
fn frozen_parameters_get_no_gradient_and_the_input_still_does() {
    let device = Device::flex().autodiff();
    let norm = LayerNormConfig::new(8).init(&device).no_grad();
    let x = Tensor::<2>::random([4, 8], Distribution::Normal(0.0, 1.0), &device).require_grad();
    let grads =
        (norm.forward(x.clone()) * Tensor::<2>::random([4, 8], Distribution::Default, &device)).sum().backward();
    assert!(x.grad(&grads).is_some());
    assert!(norm.gamma.val().grad(&grads).is_none());
}
