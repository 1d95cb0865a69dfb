//! The peer heads against their PyTorch references (`scripts/reference/make_peer_fixtures.py`):
//! logits and the gradients of `sum(logits · upstream)` with respect to the inputs and every
//! parameter, within 1e-5 (relative above 1); then every parameter learns and each head overfits a
//! tiny batch. CPU `flex` backend, f32.
//!
//! `cargo test -p sspa-model --test peers -- --nocapture` prints the largest differences.

mod common;

use burn::module::Param;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Gradients;
use common::{
    assert_every_parameter_learns, assert_matches, fixture, mean_average_precision, scalar, set_layer_norm, set_linear,
    tensor, tiny_batch, values,
};
use serde_json::Value;
use sspa_model::{HeadConfig, HeadKind, LinearHeadConfig, MlpHeadConfig, QueryDecoder, QueryDecoderConfig, SspaLoss};

const TOLERANCE: f32 = 1e-5;

/// Largest differences of one head: forward, input gradients, parameter gradients.
#[derive(Default)]
struct Errors {
    forward: f32,
    inputs: f32,
    parameters: f32,
}

impl Errors {
    fn print(&self, name: &str) {
        println!(
            "parity {name}: logits max |Δ| {:.2e}, input gradients {:.2e}, parameter gradients {:.2e}",
            self.forward, self.inputs, self.parameters
        );
    }
}

/// `sum(logits · upstream)` backwards.
fn backward(logits: Tensor<2>, data: &Value, device: &Device) -> Gradients {
    (logits * tensor::<2>(&data["upstream"], device)).sum().backward()
}

/// Compares a parameter's gradient with the reference's.
#[track_caller]
fn check_grad<const D: usize>(param: &Param<Tensor<D>>, grads: &Gradients, expected: &Value) -> f32 {
    assert_matches(param.val().grad(grads).expect("a parameter gradient"), expected, TOLERANCE)
}

#[track_caller]
fn check_linear_grads(linear: &burn::nn::Linear, grads: &Gradients, expected: &Value) -> f32 {
    let bias = linear.bias.as_ref().expect("a bias");
    check_grad(&linear.weight, grads, &expected["weight"]).max(check_grad(bias, grads, &expected["bias"]))
}

#[test]
fn linear_head_matches_pytorch() {
    let device = Device::flex().autodiff();
    let data = fixture("linear_head.json");
    let config = LinearHeadConfig::new(scalar(&data["image_width"]) as usize, scalar(&data["classes"]) as usize);
    let mut head = config.init(&device);
    set_linear(&mut head.classifier, &data["classifier"], &device);
    let global = tensor::<2>(&data["inputs"]["global"], &device).require_grad();

    let logits = head.forward(global.clone());
    let mut errors =
        Errors { forward: assert_matches(logits.clone(), &data["logits"], TOLERANCE), ..Errors::default() };
    let grads = backward(logits, &data, &device);
    errors.inputs = assert_matches(global.grad(&grads).expect("∂global"), &data["grad_inputs"]["global"], TOLERANCE);
    errors.parameters = check_linear_grads(&head.classifier, &grads, &data["grad_classifier"]);
    errors.print("linear");
}

#[test]
fn mlp_head_matches_pytorch() {
    let device = Device::flex().autodiff();
    let data = fixture("mlp_head.json");
    let config = MlpHeadConfig::new(
        scalar(&data["image_width"]) as usize,
        scalar(&data["hidden_width"]) as usize,
        scalar(&data["classes"]) as usize,
    );
    let mut head = config.init(&device);
    set_linear(&mut head.hidden, &data["hidden"], &device);
    set_linear(&mut head.classifier, &data["classifier"], &device);
    let global = tensor::<2>(&data["inputs"]["global"], &device).require_grad();
    let patches = tensor::<3>(&data["inputs"]["patches"], &device).require_grad();

    let logits = head.forward(global.clone(), patches.clone());
    let mut errors =
        Errors { forward: assert_matches(logits.clone(), &data["logits"], TOLERANCE), ..Errors::default() };
    let grads = backward(logits, &data, &device);
    errors.inputs = assert_matches(global.grad(&grads).expect("∂global"), &data["grad_inputs"]["global"], TOLERANCE)
        .max(assert_matches(patches.grad(&grads).expect("∂patches"), &data["grad_inputs"]["patches"], TOLERANCE));
    errors.parameters = check_linear_grads(&head.hidden, &grads, &data["grad_hidden"]).max(check_linear_grads(
        &head.classifier,
        &grads,
        &data["grad_classifier"],
    ));
    errors.print("mlp");
}

fn query_decoder_from(case: &Value, device: &Device) -> QueryDecoder {
    let size = |key: &str| scalar(&case[key]) as usize;
    let config = QueryDecoderConfig::new(size("image_width"), size("classes"), size("d_model"))
        .with_heads(size("heads"))
        .with_feedforward_width(Some(size("feedforward_width")))
        .with_max_queries(size("max_queries"));
    let mut head = config.init(device);
    let weights = &case["weights"];
    set_linear(&mut head.embed, &weights["embed"], device);
    set_linear(&mut head.attention.query, &weights["query"], device);
    set_linear(&mut head.attention.key, &weights["key"], device);
    set_linear(&mut head.attention.value, &weights["value"], device);
    set_linear(&mut head.attention.output, &weights["output"], device);
    set_linear(&mut head.feedforward_expand, &weights["feedforward_expand"], device);
    set_linear(&mut head.feedforward_contract, &weights["feedforward_contract"], device);
    for (norm, key) in [
        (&mut head.norm_query, "norm_query"),
        (&mut head.norm_attention, "norm_attention"),
        (&mut head.norm_feedforward, "norm_feedforward"),
    ] {
        set_layer_norm(norm, &weights[key]["gamma"], &weights[key]["beta"], device);
    }
    head.queries = Param::from_tensor(tensor(&weights["queries"], device));
    head.output.weight = Param::from_tensor(tensor(&weights["group_weight"], device));
    head.output.bias = Param::from_tensor(tensor(&weights["group_bias"], device));
    head
}

#[test]
fn query_decoder_matches_pytorch_with_one_query_per_class_and_with_groups() {
    let device = Device::flex().autodiff();
    let data = fixture("query_decoder.json");
    let cases = data["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 2);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let head = query_decoder_from(case, &device);
        let patches = tensor::<3>(&case["inputs"]["patches"], &device).require_grad();

        let logits = head.forward(patches.clone());
        let forward = assert_matches(logits.clone(), &case["logits"], TOLERANCE);
        let grads = backward(logits, case, &device);
        let inputs =
            assert_matches(patches.grad(&grads).expect("∂patches"), &case["grad_inputs"]["patches"], TOLERANCE);

        let expected = &case["grad_weights"];
        let linears = [
            (&head.embed, "embed"),
            (&head.attention.query, "query"),
            (&head.attention.key, "key"),
            (&head.attention.value, "value"),
            (&head.attention.output, "output"),
            (&head.feedforward_expand, "feedforward_expand"),
            (&head.feedforward_contract, "feedforward_contract"),
        ];
        let mut parameters = 0.0_f32;
        for (linear, key) in linears {
            parameters = parameters.max(check_linear_grads(linear, &grads, &expected[key]));
        }
        for (norm, key) in [
            (&head.norm_query, "norm_query"),
            (&head.norm_attention, "norm_attention"),
            (&head.norm_feedforward, "norm_feedforward"),
        ] {
            let beta = norm.beta.as_ref().expect("β");
            parameters = parameters.max(check_grad(&norm.gamma, &grads, &expected[key]["gamma"])).max(check_grad(
                beta,
                &grads,
                &expected[key]["beta"],
            ));
        }
        parameters = parameters
            .max(check_grad(&head.queries, &grads, &expected["queries"]))
            .max(check_grad(&head.output.weight, &grads, &expected["group_weight"]))
            .max(check_grad(&head.output.bias, &grads, &expected["group_bias"]));
        Errors { forward, inputs, parameters }.print(&format!("query-decoder ({name})"));
    }
}

// ---------------------------------------------------------------------------------- training

fn peer_configs(classes: usize) -> Vec<HeadConfig> {
    let model = sspa_config::ModelSection { embed_dim: 16, ..sspa_config::ModelSection::default() };
    let ablation = sspa_config::AblationSection::default();
    [HeadKind::Linear, HeadKind::Mlp, HeadKind::QueryDecoder]
        .into_iter()
        .map(|kind| HeadConfig::from_sections(kind, &model, &ablation, None, 16, classes).expect("valid"))
        .collect()
}

#[test]
fn every_peer_parameter_gets_a_gradient() {
    let device = Device::flex().autodiff();
    device.seed(3);
    let (batch, _) = tiny_batch(&device);
    let loss_fn = SspaLoss::from_section(&sspa_config::TrainSection::default());
    for (config, at_least) in peer_configs(4).into_iter().zip([1, 3, 20]) {
        let head = config.init(&device);
        let output =
            head.forward(batch.knowledge.clone(), batch.context.clone(), batch.global.clone(), batch.patches.clone());
        let grads = GradientsParams::from_grads(loss_fn.forward(&output, batch.targets.clone()).backward(), &head);
        assert_every_parameter_learns(&head, &grads, at_least);
    }
}

#[test]
fn every_peer_overfits_a_tiny_batch() {
    let device = Device::flex().autodiff();
    device.seed(11);
    let (batch, targets) = tiny_batch(&device);
    let loss_fn = SspaLoss::from_section(&sspa_config::TrainSection::default());
    for config in peer_configs(4) {
        let kind = config.kind();
        let mut head = config.init(&device);
        let mut optimizer = AdamWConfig::new().with_weight_decay(0.0).init();
        let forward = |head: &sspa_model::Head| {
            head.forward(batch.knowledge.clone(), batch.context.clone(), batch.global.clone(), batch.patches.clone())
        };
        let initial_loss = values(loss_fn.forward(&forward(&head), batch.targets.clone()))[0];
        let mut final_loss = initial_loss;
        for _ in 0..300 {
            let loss = loss_fn.forward(&forward(&head), batch.targets.clone());
            final_loss = values(loss.clone())[0];
            let grads = GradientsParams::from_grads(loss.backward(), &head);
            head = optimizer.step(1e-2, head, grads);
        }
        let map = mean_average_precision(&values(forward(&head).scores), &targets, 4);
        assert_eq!(map, 1.0, "{kind}: mAP {map}; loss {initial_loss} → {final_loss}");
        assert!(final_loss < 0.25 * initial_loss, "{kind}: loss {initial_loss} → {final_loss}");
    }
}
