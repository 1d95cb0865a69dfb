//! The op against burn's own GELU on flex: values and gradients, with and without autodiff.

use burn::prelude::*;
use burn::tensor::Distribution;

/// `max |a − b| / (1 + |b|)`.
fn max_abs_difference<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    ((a - b.clone()).abs() / (b.abs() + 1.0)).max().into_scalar()
}

/// Values spread over GELU's interesting range and a few far out, `[2, 71]`, on `device`.
fn inputs(device: &Device) -> Tensor<2> {
    let spread = Tensor::<2>::random([2, 64], Distribution::Normal(0.0, 3.0), device);
    let far = Tensor::<2>::from_floats([[-40.0, -6.0, -4.0, 0.0, 4.0, 6.0, 40.0]], device).repeat_dim(0, 2);
    Tensor::cat(vec![spread, far], 1)
}

#[test]
fn forward_matches_burns_gelu() {
    let device = Device::flex();
    assert!(sspa_gelu::is_fast(&device));
    let x = Tensor::<2>::random([257, 129], Distribution::Normal(0.0, 3.0), &device);
    let ours = sspa_gelu::gelu(x.clone());
    let theirs = burn::tensor::activation::gelu(x);
    assert_eq!(ours.dims(), [257, 129]);
    let difference = max_abs_difference(ours, theirs);
    assert!(difference < 2e-6, "forward off by {difference}");
}

#[test]
fn gradients_match_burns_gelu_under_autodiff() {
    let device = Device::flex().autodiff();
    assert!(sspa_gelu::is_fast(&device), "autodiff over flex takes the fast op");
    let x = inputs(&Device::flex());
    let weights = Tensor::<2>::random(x.dims(), Distribution::Normal(0.0, 1.0), &Device::flex());
    let gradient = |f: fn(Tensor<2>) -> Tensor<2>| {
        let x = Tensor::<2>::from_data(x.to_data(), &device).require_grad();
        let w = Tensor::<2>::from_data(weights.to_data(), &device);
        let y = f(x.clone());
        let value = y.clone().detach().without_autodiff();
        let grads = (y * w).sum().backward();
        (value, x.grad(&grads).expect("gradient of x"))
    };
    let (ours, our_grad) = gradient(sspa_gelu::gelu);
    let (theirs, their_grad) = gradient(burn::tensor::activation::gelu);
    assert!(max_abs_difference(ours, theirs) < 2e-6);
    let difference = max_abs_difference(our_grad, their_grad);
    assert!(difference < 1e-5, "gradient off by {difference}");
}

#[test]
fn gradient_flows_through_a_chain_and_only_to_what_requires_it() {
    let device = Device::flex().autodiff();
    let x = Tensor::<2>::from_floats([[-1.0, 0.0, 0.5, 2.0]], &device).require_grad();
    let y = sspa_gelu::gelu(x.clone().mul_scalar(2.0)).sum();
    let grads = y.backward();
    let grad = x.grad(&grads).expect("gradient").into_data().try_to_vec::<f32>().expect("f32");
    // d/dx GELU(2x) = 2 GELU'(2x).
    for (g, x) in grad.iter().zip([-1.0f32, 0.0, 0.5, 2.0]) {
        let expected = 2.0 * sspa_gelu::kernel::gelu_grad(2.0 * x, 1.0);
        assert!((g - expected).abs() < 1e-6, "{g} vs {expected}");
    }
    let constant = Tensor::<2>::from_floats([[1.0, 2.0]], &device);
    let out = sspa_gelu::gelu(constant);
    assert!(out.into_data().try_to_vec::<f32>().expect("f32")[0] > 0.84);
}

#[test]
fn relu6_matches_burns_relu6_with_and_without_autodiff() {
    for device in [Device::flex(), Device::flex().autodiff()] {
        // Values on both sides of 0 and 6, a few exactly on them, and more than one parallel chunk.
        let spread = Tensor::<2>::random([40, 1000], Distribution::Normal(3.0, 5.0), &device);
        let edges = Tensor::<2>::from_floats([[-1.0, 0.0, 0.5, 5.5, 6.0, 7.0]], &device);
        let x = Tensor::cat(vec![spread.flatten::<1>(0, 1), edges.flatten::<1>(0, 1)], 0);
        let x = if device.is_autodiff() { x.require_grad() } else { x };
        let ours = sspa_gelu::relu6(x.clone());
        let theirs = burn::tensor::activation::relu6(x.clone());
        assert_eq!(ours.clone().into_data(), theirs.into_data(), "forward differs");
        if device.is_autodiff() {
            let upstream = Tensor::<1>::random(x.dims(), Distribution::Normal(0.0, 1.0), &device);
            let grads = (ours * upstream.clone()).sum().backward();
            let grad = x.grad(&grads).expect("input gradient");
            let inside = x.clone().detach().greater_elem(0.0).float() * x.clone().detach().lower_elem(6.0).float();
            let expected = upstream * inside;
            // Exact up to the sign of zero (`-g · 0` is `-0`).
            let difference = (grad.without_autodiff() - expected.without_autodiff()).abs().max().into_scalar::<f32>();
            assert_eq!(difference, 0.0, "gradient differs");
        }
    }
}
