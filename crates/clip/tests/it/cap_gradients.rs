//! The CAP prompt hook on a small random text tower: gradients reach the prompt vectors and no
//! frozen weight, prompts change the output, and the layout is `[SOT][V…][label][EOT]`.
#![allow(clippy::unwrap_used)]

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use sspa_clip::{ClipTokens, TextTransformerConfig};

fn labels() -> ClipTokens {
    // `[SOT=48] words [EOT=49] 0…` with 3 and 1 words, context 8.
    let ids = vec![48_i64, 7, 8, 9, 49, 0, 0, 0, 48, 5, 49, 0, 0, 0, 0, 0];
    ClipTokens { ids, batch: 2, context_length: 8, eot_positions: vec![4, 2] }
}

#[test]
fn gradients_reach_prompts_and_not_frozen_weights() {
    let device = Device::flex().autodiff();
    let tower = TextTransformerConfig::new(50, 8, 16, 2, 2, 64, 12).init(&device).set_require_grad(false);
    let prompts = Tensor::<2>::random([3, 16], Distribution::Normal(0.0, 0.5), &device).require_grad();
    let output = tower.forward_with_prompts(prompts.clone(), &labels()).unwrap();
    assert_eq!(output.dims(), [2, 12]);
    let target = Tensor::<2>::random([2, 12], Distribution::Normal(0.0, 1.0), &device);
    let gradients = (output.clone() * target).sum().backward();

    let magnitude = prompts.grad(&gradients).expect("prompts receive a gradient").abs().sum().into_scalar::<f32>();
    assert!(magnitude > 0.0, "prompt gradient is zero");
    assert!(tower.token_embedding.weight.val().grad(&gradients).is_none(), "token embedding got a gradient");
    assert!(tower.positional_embedding.val().grad(&gradients).is_none(), "positions got a gradient");
    assert!(tower.text_projection.val().grad(&gradients).is_none(), "projection got a gradient");
    let block = &tower.transformer.blocks[1];
    assert!(block.attn.in_proj.weight.val().grad(&gradients).is_none(), "attention got a gradient");
    assert!(block.c_fc.weight.val().grad(&gradients).is_none(), "MLP got a gradient");

    let other = tower.forward_with_prompts(prompts * 5.0, &labels()).unwrap();
    let change = (other - output).abs().max().into_scalar::<f32>();
    assert!(change > 1e-4, "prompts do not influence the output");
}

#[test]
fn the_layout_is_coop_and_pooling_follows_the_shifted_eot() {
    let device = Device::flex();
    let tower = TextTransformerConfig::new(50, 8, 16, 2, 2, 64, 12).init(&device);
    // With prompts equal to the embeddings of words 20 and 21, the hook must equal a plain
    // forward of `[SOT] 20 21 words [EOT]`; the long row loses its last word to make room.
    let prompt_ids = Tensor::<1, Int>::from_data(TensorData::new(vec![20_i64, 21], [2]), &device);
    let prompts = tower.token_embedding.weight.val().select(0, prompt_ids);
    let hooked = tower.forward_with_prompts(prompts, &labels()).unwrap();
    let spelled = vec![48_i64, 20, 21, 7, 8, 9, 49, 0, 48, 20, 21, 5, 49, 0, 0, 0];
    let plain = tower.forward(Tensor::from_data(TensorData::new(spelled, [2, 8]), &device));
    let diff = (hooked - plain).abs().max().into_scalar::<f32>();
    assert!(diff < 1e-5, "hook differs from the spelled-out sequence by {diff}");

    let cut = vec![48_i64, 20, 21, 7, 8, 9, 10, 49];
    let long =
        ClipTokens { ids: vec![48, 7, 8, 9, 10, 11, 12, 49], batch: 1, context_length: 8, eot_positions: vec![7] };
    let prompts = tower
        .token_embedding
        .weight
        .val()
        .select(0, Tensor::from_data(TensorData::new(vec![20_i64, 21], [2]), &device));
    let hooked = tower.forward_with_prompts(prompts.clone(), &long).unwrap();
    let plain = tower.forward(Tensor::from_data(TensorData::new(cut, [1, 8]), &device));
    assert!((hooked - plain).abs().max().into_scalar::<f32>() < 1e-5);

    let too_many = Tensor::<2>::zeros([7, 16], &device);
    assert!(tower.forward_with_prompts(too_many, &labels()).is_err());
    let wrong_width = Tensor::<2>::zeros([2, 15], &device);
    assert!(tower.forward_with_prompts(wrong_width, &labels()).is_err());
}
