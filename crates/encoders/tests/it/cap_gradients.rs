//! The CAP prompt hook on a small random BERT: gradients reach the prompt tokens and no encoder
//! weight, and the prompts change the output.
#![allow(clippy::unwrap_used)]

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use sspa_encoders::BertConfig;
use sspa_encoders::bert::mean_pool_normalise;

#[test]
fn gradients_reach_prompts_and_not_frozen_weights() {
    let device = Device::flex().autodiff();
    let bert = BertConfig::new(50, 16, 2, 4, 32, 24, 2).init(&device).set_require_grad(false);
    let prompts = Tensor::<2>::random([3, 16], Distribution::Normal(0.0, 0.02), &device).require_grad();
    // Two labels of different lengths: [CLS] w… [SEP] [PAD]…
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1_i64, 7, 8, 9, 2, 1, 5, 2, 0, 0], [2, 5]), &device);
    let mask =
        Tensor::<2>::from_data(TensorData::new(vec![1.0_f32, 1., 1., 1., 1., 1., 1., 1., 0., 0.], [2, 5]), &device);

    let (hidden, extended) = bert.forward_with_prompts(prompts.clone(), ids.clone(), mask.clone());
    assert_eq!(hidden.dims(), [2, 8, 16]);
    assert_eq!(
        extended.clone().into_data().try_to_vec::<f32>().unwrap(),
        vec![1.0, 1., 1., 1., 1., 1., 1., 1., 1.0, 1., 1., 1., 1., 1., 0., 0.]
    );
    let pooled = mean_pool_normalise(hidden, extended);
    let target = Tensor::<2>::random([2, 16], Distribution::Normal(0.0, 1.0), &device);
    let loss = (pooled.clone() * target).sum();
    let gradients = loss.backward();

    let prompt_gradient = prompts.grad(&gradients).expect("prompts receive a gradient");
    let magnitude = prompt_gradient.abs().sum().into_scalar::<f32>();
    assert!(magnitude > 0.0, "prompt gradient is zero");
    assert!(bert.embeddings.word.weight.val().grad(&gradients).is_none(), "word embeddings got a gradient");
    assert!(bert.layers[0].attention.qkv.weight.val().grad(&gradients).is_none(), "query weight got a gradient");
    assert!(bert.layers[1].output.weight.val().grad(&gradients).is_none(), "output weight got a gradient");

    // Different prompts give a different output; without prompts the output is the plain forward.
    let (other, other_mask) = bert.forward_with_prompts(prompts.clone() * 50.0, ids.clone(), mask.clone());
    let other = mean_pool_normalise(other, other_mask);
    let change = (other - pooled).abs().max().into_scalar::<f32>();
    assert!(change > 1e-4, "prompts do not influence the output");
}

/// The frozen layers' own backward (stored `Wᵀ`, `FrozenLinear`) gives the prompts the gradient
/// that burn's linear backward gives when the same weights are trainable.
#[test]
fn frozen_backward_matches_burns_linear_backward() {
    let device = Device::flex().autodiff();
    let frozen = BertConfig::new(50, 16, 2, 4, 32, 24, 2).init(&device).set_require_grad(false);
    let trainable = frozen.clone().set_require_grad(true);
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1_i64, 7, 8, 9, 2, 1, 5, 2, 0, 0], [2, 5]), &device);
    let mask =
        Tensor::<2>::from_data(TensorData::new(vec![1.0_f32, 1., 1., 1., 1., 1., 1., 1., 0., 0.], [2, 5]), &device);
    let target = Tensor::<2>::random([2, 16], Distribution::Normal(0.0, 1.0), &device);
    let prompt_gradient = |bert: &sspa_encoders::Bert| {
        let prompts = Tensor::<2>::from_data(
            TensorData::new((0..48).map(|i| ((i * 7 % 11) as f32 - 5.0) * 0.01).collect::<Vec<_>>(), [3, 16]),
            &device,
        )
        .require_grad();
        let (hidden, extended) = bert.forward_with_prompts(prompts.clone(), ids.clone(), mask.clone());
        let gradients = (mean_pool_normalise(hidden, extended) * target.clone()).sum().backward();
        prompts.grad(&gradients).expect("prompts receive a gradient")
    };
    let ours = prompt_gradient(&frozen);
    let reference = prompt_gradient(&trainable);
    let scale = reference.clone().abs().max().into_scalar::<f32>();
    let error = (ours - reference).abs().max().into_scalar::<f32>();
    assert!(scale > 0.0 && error <= 1e-5 * scale, "prompt gradients differ: max error {error}, scale {scale}");
}
