//! The fused op against the decomposed reference: forward values, Q/K/V gradients, masking.
//!
//! Every test runs on flex, and on libtorch too with `--features tch` (its CPU device, or
//! `SSPA_TEST_TORCH_DEVICE=cuda:N`).

mod common;

use burn::prelude::*;
use common::{assert_close, padding_mask, seeded, values};
use sspa_attention::{
    AttentionMask, attention, attention_decomposed, attention_probabilities, default_scale, is_fused,
};

/// The devices under test (without autodiff): flex, and with `--features tch` libtorch's CPU
/// device, or the GPU named by `SSPA_TEST_TORCH_DEVICE=cuda:N` (`scripts/gpu-checks`).
#[allow(deprecated)] // burn-tch is deprecated upstream; it is this project's libtorch path.
fn devices() -> Vec<Device> {
    #[allow(unused_mut)]
    let mut devices = vec![Device::flex()];
    #[cfg(feature = "tch")]
    devices.push(match std::env::var("SSPA_TEST_TORCH_DEVICE").as_deref() {
        Ok(cuda) if cuda.starts_with("cuda:") => Device::libtorch_cuda(cuda[5..].parse::<usize>().expect("cuda:N")),
        Ok("libtorch") | Err(_) => Device::libtorch(),
        Ok(other) => panic!("SSPA_TEST_TORCH_DEVICE=`{other}`: expected `libtorch` or `cuda:N`"),
    });
    devices
}

/// One problem: `[B, H, L_q, d]` queries against `[B, H, L_k, d]` keys, optionally masked.
#[derive(Debug, Clone, Copy)]
struct Case {
    batch: usize,
    heads: usize,
    length_q: usize,
    length_k: usize,
    width: usize,
    value_width: usize,
    masked: bool,
}

impl Case {
    const fn new(batch: usize, heads: usize, length_q: usize, length_k: usize, width: usize, masked: bool) -> Self {
        Self { batch, heads, length_q, length_k, width, value_width: width, masked }
    }
}

const CASES: [Case; 5] = [
    Case::new(2, 3, 5, 7, 8, false),
    Case::new(2, 3, 5, 7, 8, true),
    Case::new(3, 4, 9, 4, 16, true),
    Case::new(1, 1, 10, 16, 12, false),
    Case { batch: 2, heads: 2, length_q: 6, length_k: 11, width: 8, value_width: 5, masked: true },
];

/// Seeded `(Q, K, V, mask, dO)` for a case on `device`.
fn inputs(case: Case, device: &Device) -> (Tensor<4>, Tensor<4>, Tensor<4>, Option<Tensor<4>>, Tensor<4>) {
    let Case { batch, heads, length_q, length_k, width, value_width, masked } = case;
    let query = seeded([batch, heads, length_q, width], 1, 2.0, device);
    let key = seeded([batch, heads, length_k, width], 2, 2.0, device);
    let value = seeded([batch, heads, length_k, value_width], 3, 1.0, device);
    // Batch b pads its last b keys (batch 0 none), as a BERT padding mask.
    let padded: Vec<usize> = (0..batch).map(|b| b.min(length_k - 1)).collect();
    let mask = masked.then(|| padding_mask(&padded, length_k, device));
    let upstream = seeded([batch, heads, length_q, value_width], 4, 1.0, device);
    (query, key, value, mask, upstream)
}

#[test]
fn the_fused_path_is_taken_on_the_compiled_backends() {
    for device in devices() {
        assert!(is_fused(&device), "{device:?}");
        assert!(is_fused(&device.clone().autodiff()), "{device:?} with autodiff");
    }
}

#[test]
fn forward_equals_the_decomposed_attention() {
    for device in devices() {
        for autodiff in [false, true] {
            let device = if autodiff { device.clone().autodiff() } else { device.clone() };
            for case in CASES {
                let (query, key, value, mask, _) = inputs(case, &device);
                let scale = default_scale(case.width);
                let mask = mask.map(AttentionMask::additive);
                let fused = attention(query.clone(), key.clone(), value.clone(), mask.clone(), scale);
                let reference = attention_decomposed(query, key, value, mask, scale);
                assert_eq!(fused.dims(), [case.batch, case.heads, case.length_q, case.value_width]);
                assert_close(fused, reference, 1e-5, &format!("{device:?} {case:?} forward"));
            }
        }
    }
}

/// `(dQ, dK, dV)` of `sum(attention(Q, K, V) ∘ dO)`, fused or decomposed, on `device` + autodiff.
fn gradients(case: Case, device: &Device, fused: bool) -> [Tensor<4>; 3] {
    let autodiff = device.clone().autodiff();
    let (query, key, value, mask, upstream) = inputs(case, &autodiff);
    let (query, key, value) = (query.require_grad(), key.require_grad(), value.require_grad());
    let scale = default_scale(case.width);
    let mask = mask.map(AttentionMask::additive);
    let output = if fused {
        attention(query.clone(), key.clone(), value.clone(), mask, scale)
    } else {
        attention_decomposed(query.clone(), key.clone(), value.clone(), mask, scale)
    };
    let grads = (output * upstream).sum().backward();
    [&query, &key, &value].map(|tensor| tensor.grad(&grads).expect("a gradient for each input"))
}

#[test]
fn gradients_equal_the_decomposed_autodiff_gradients() {
    for device in devices() {
        for case in CASES {
            let fused = gradients(case, &device, true);
            let reference = gradients(case, &device, false);
            for ((name, fused), reference) in ["dQ", "dK", "dV"].into_iter().zip(fused).zip(reference) {
                assert_close(fused, reference, 1e-5, &format!("{device:?} {case:?} {name}"));
            }
        }
    }
}

#[test]
fn only_the_tracked_inputs_get_gradients() {
    for device in devices() {
        let case = CASES[1];
        let autodiff = device.clone().autodiff();
        let (query, key, value, mask, upstream) = inputs(case, &autodiff);
        let value = value.require_grad();
        let output = attention(query, key, value.clone(), mask.clone().map(AttentionMask::additive), 0.3);
        let grads = (output * upstream.clone()).sum().backward();
        let fused = value.grad(&grads).expect("dV");

        let (query, key, value, _, _) = inputs(case, &autodiff);
        let value = value.require_grad();
        let output = attention_decomposed(query, key, value.clone(), mask.map(AttentionMask::additive), 0.3);
        let reference = value.grad(&(output * upstream).sum().backward()).expect("dV");
        assert_close(fused, reference, 1e-5, &format!("{device:?} dV alone"));
    }
}

#[test]
fn a_masked_key_gets_zero_probability_and_no_gradient() {
    for device in devices() {
        let case = Case::new(3, 2, 4, 6, 8, true);
        let autodiff = device.clone().autodiff();
        let (query, key, value, mask, upstream) = inputs(case, &autodiff);
        let mask = mask.map(AttentionMask::additive);
        // Batch 2 pads keys 4 and 5: their probabilities are 0 ...
        let probabilities = attention_probabilities(query.clone(), key.clone(), mask.clone(), 0.35);
        let padded = values(probabilities.slice([2..3, 0..2, 0..4, 4..6]));
        assert!(padded.iter().all(|&p| p == 0.0), "{padded:?}");

        // ... so changing their values does not change the fused output ...
        let (key, value) = (key.require_grad(), value.require_grad());
        let output = attention(query.clone(), key.clone(), value.clone(), mask.clone(), 0.35);
        let noise = seeded([1, 2, 2, 8], 9, 100.0, &autodiff);
        let changed = value.clone().detach().slice_assign([2..3, 0..2, 4..6, 0..8], noise);
        let output_changed = attention(query, key.clone().detach(), changed, mask, 0.35);
        let difference = values((output.clone() - output_changed).abs().max());
        assert!(difference[0] == 0.0, "{device:?}: masked values leak: {difference:?}");

        // ... and they get no gradient.
        let grads = (output * upstream).sum().backward();
        for (name, tensor) in [("dK", &key), ("dV", &value)] {
            let grad = tensor.grad(&grads).expect("gradient");
            let padded = values(grad.slice([2..3, 0..2, 4..6, 0..8]));
            assert!(padded.iter().all(|&g| g == 0.0), "{device:?} {name} of masked keys: {padded:?}");
        }
    }
}

#[test]
fn a_causal_mask_matches_the_decomposed_attention() {
    for device in devices() {
        let autodiff = device.clone().autodiff();
        let query = seeded([2, 3, 7, 8], 5, 1.0, &autodiff).require_grad();
        let key = seeded([2, 3, 7, 8], 6, 1.0, &autodiff).require_grad();
        let value = seeded([2, 3, 7, 8], 7, 1.0, &autodiff).require_grad();
        let mask = AttentionMask::causal(7, &autodiff);
        assert_eq!(mask.tensor().dims(), [1, 1, 7, 7]);
        let run = |fused: bool| {
            let (q, k, v) = (query.clone(), key.clone(), value.clone());
            let output = if fused {
                attention(q, k, v, Some(mask.clone()), 0.3)
            } else {
                attention_decomposed(q, k, v, Some(mask.clone()), 0.3)
            };
            let grads = output.clone().powi_scalar(2).sum().backward();
            let grad = |tensor: &Tensor<4>| tensor.grad(&grads).expect("gradient");
            (output.detach(), grad(&query), grad(&key), grad(&value))
        };
        let (fused, reference) = (run(true), run(false));
        assert_close(fused.0, reference.0, 1e-5, "causal forward");
        assert_close(fused.1, reference.1, 1e-5, "causal dQ");
        assert_close(fused.2, reference.2, 1e-5, "causal dK");
        assert_close(fused.3, reference.3, 1e-5, "causal dV");
        // The first query sees only the first key: its output is V[.., 0, ..].
        let first = attention(query.detach(), key.detach(), value.clone().detach(), Some(mask.clone()), 0.3);
        assert_close(
            first.slice([0..2, 0..3, 0..1, 0..8]),
            value.detach().slice([0..2, 0..3, 0..1, 0..8]),
            1e-6,
            "row 0",
        );
    }
}

#[test]
#[should_panic(expected = "does not broadcast")]
fn a_mask_of_the_wrong_shape_is_rejected() {
    let device = Device::flex();
    let query = seeded([2, 1, 3, 4], 1, 1.0, &device);
    let key = seeded([2, 1, 5, 4], 2, 1.0, &device);
    let mask = AttentionMask::additive(Tensor::zeros([2, 1, 1, 4], &device));
    let _ = attention(query, key.clone(), key, Some(mask), 0.5);
}

#[test]
fn a_mask_without_autodiff_is_a_constant_of_a_tracked_op() {
    for device in devices() {
        let case = CASES[2];
        let autodiff = device.clone().autodiff();
        let (query, key, value, _, upstream) = inputs(case, &autodiff);
        // The mask lives on the plain device, the operands on its autodiff twin.
        let (_, _, _, mask, _) = inputs(case, &device);
        let mask = mask.map(AttentionMask::additive);
        let query = query.require_grad();
        let output = attention(query.clone(), key.clone(), value.clone(), mask.clone(), 0.25);
        let fused = query.grad(&(output * upstream.clone()).sum().backward()).expect("dQ");

        let (_, _, _, mask, _) = inputs(case, &autodiff);
        let output = attention_decomposed(query.clone(), key, value, mask.map(AttentionMask::additive), 0.25);
        let reference = query.grad(&(output * upstream).sum().backward()).expect("dQ");
        assert_close(fused, reference, 1e-5, &format!("{device:?} plain mask"));
    }
}
