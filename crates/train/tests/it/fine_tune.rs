//! Training the image encoder with the head (`model.freeze_image_encoder = false`): a tiny CLIP
//! ViT learns synthetic multi-label images end to end, its weights move (the pretrained copy does
//! not), the outputs hold it, a resumed run ends on the same weights, and the predictor rebuilds
//! it from `config.json`.

use burn::prelude::*;
use sspa_clip::VisionTransformerConfig;
use sspa_config::{AblationSection, ModelSection, TrainSection};
use sspa_train::{
    Backbone, BackboneSpec, Batches, FineTune, ImageBatch, ImageSource, MeanPromptEncoder, Predictor, Sections,
    TextInputs, TrainData, TrainError, TrainOptions, Weights, epoch_permutation, files, train,
};
use sspa_train::{ModelConfig, WarmStart, model_config, save_weights};

const CLASSES: usize = 3;
const SIZE: usize = 16;
const TEXT_WIDTH: usize = 8;
const PROMPT_WIDTH: usize = 6;

/// Images of `SIZE²` pixels: class `c` present ⇔ quadrant `c` holds a bright square; noise
/// elsewhere. Deterministic from the image index.
struct Quadrants {
    train: usize,
    validation: usize,
    batch: usize,
    seed: u64,
}

fn noise(state: &mut u64) -> f32 {
    *state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
    ((*state >> 40) as f32 / (1u64 << 24) as f32) * 0.4 - 0.2
}

fn image(index: usize) -> (Vec<f32>, Vec<i8>) {
    let mut state = index as u64 * 7919 + 3;
    let targets: Vec<i8> = (0..CLASSES).map(|c| i8::from((index >> c) & 1 == 1 || index % 7 == c)).collect();
    let half = SIZE / 2;
    let mut pixels = vec![0f32; 3 * SIZE * SIZE];
    for channel in 0..3 {
        for y in 0..SIZE {
            for x in 0..SIZE {
                let quadrant = (y / half) * 2 + x / half;
                let bright = quadrant < CLASSES && targets[quadrant] == 1;
                pixels[(channel * SIZE + y) * SIZE + x] = if bright { 1.5 } else { 0.0 } + noise(&mut state);
            }
        }
    }
    (pixels, targets)
}

fn batch(indices: &[usize]) -> ImageBatch {
    let mut out = ImageBatch { images: Vec::new(), shape: [indices.len(), 3, SIZE, SIZE], targets: Vec::new() };
    for &index in indices {
        let (pixels, targets) = image(index);
        out.images.extend(pixels);
        out.targets.extend(targets);
    }
    out
}

impl ImageSource for Quadrants {
    fn classes(&self) -> usize {
        CLASSES
    }
    fn image_size(&self) -> usize {
        SIZE
    }
    fn train_len(&self) -> usize {
        self.train
    }
    fn train_batches(&self) -> usize {
        self.train / self.batch
    }
    fn validation_len(&self) -> usize {
        self.validation
    }
    fn fingerprint(&self) -> String {
        format!("quadrants/{}/{}/{}/{}", self.train, self.validation, self.batch, self.seed)
    }
    fn train_epoch(&self, epoch: u32) -> Result<Batches<'_>, TrainError> {
        let order = epoch_permutation(self.seed, epoch, self.train);
        let batches: Vec<Vec<usize>> =
            order.chunks_exact(self.batch).map(<[usize]>::to_vec).take(self.train_batches()).collect();
        Ok(Box::new(batches.into_iter().map(|rows| Ok(batch(&rows)))))
    }
    fn validation(&self) -> Result<Batches<'_>, TrainError> {
        let rows: Vec<usize> = (self.train..self.train + self.validation).collect();
        let batches: Vec<Vec<usize>> = rows.chunks(16).map(<[usize]>::to_vec).collect();
        Ok(Box::new(batches.into_iter().map(|rows| Ok(batch(&rows)))))
    }
}

fn tiny_vit() -> BackboneSpec {
    // 16 px, patch 8: a 2×2 grid, so each patch token is one quadrant.
    BackboneSpec::ClipVit { config: VisionTransformerConfig::new(SIZE, 8, 16, 2, 1, 32, 12) }
}

fn text_inputs() -> TextInputs {
    let mut state = 42u64;
    TextInputs {
        labels: (0..CLASSES).map(|c| format!("class-{c}")).collect(),
        knowledge: (0..CLASSES * TEXT_WIDTH).map(|_| noise(&mut state) * 5.0).collect(),
        width: TEXT_WIDTH,
    }
}

fn sections() -> (ModelSection, AblationSection, TrainSection) {
    let model = ModelSection {
        embed_dim: 8,
        prompt_tokens: 2,
        freeze_image_encoder: false,
        image_size: SIZE as u32,
        ..ModelSection::default()
    };
    let train = TrainSection {
        epochs: 6,
        batch_size: 16,
        lr: 3e-3,
        warmup_epochs: 0.5,
        ema_decay: 0.9,
        grad_clip: 5.0,
        seed: 9,
        ..TrainSection::default()
    };
    (model, AblationSection::default(), train)
}

fn quiet(_: u64, _: u64, _: &str) {}
fn never() -> bool {
    false
}

/// Every parameter's bits, by id.
fn bits<M: burn::module::Module>(module: &M) -> Vec<(u64, Vec<u32>)> {
    let mut values: Vec<_> = sspa_train::parameter_snapshot(module)
        .into_iter()
        .map(|(id, tensor)| (id.val(), tensor.into_data().iter::<f32>().map(f32::to_bits).collect()))
        .collect();
    values.sort();
    values
}

/// Every tensor's bits, by parameter path (ids aside).
fn named_bits<M: burn::module::Module>(module: &M) -> Vec<(String, Vec<u32>)> {
    use burn::store::ModuleSnapshot;
    let to_bits = |tensor: &burn::store::burn_pack::Tensor| -> Vec<u32> {
        let data = burn::store::bridge::to_data(tensor).expect("tensor data");
        data.iter::<f32>().map(f32::to_bits).collect()
    };
    module.collect(None, None, false).iter().map(|tensor| (tensor.name.clone(), to_bits(tensor))).collect()
}

fn run(dir: &std::path::Path, pretrained: &Backbone, max_epochs: Option<u32>) -> sspa_train::TrainOutcome {
    run_with(dir, pretrained, max_epochs, |_| {})
}

/// [`run`] with `adjust` applied to `[train]`.
fn run_with(
    dir: &std::path::Path,
    pretrained: &Backbone,
    max_epochs: Option<u32>,
    adjust: impl FnOnce(&mut TrainSection),
) -> sspa_train::TrainOutcome {
    let (model, ablation, mut train_section) = sections();
    adjust(&mut train_section);
    let text = text_inputs();
    let device = Device::flex().autodiff();
    let encoder = MeanPromptEncoder::new(text.labels.clone(), PROMPT_WIDTH, TEXT_WIDTH, 11, &device);
    let source = Quadrants { train: 128, validation: 48, batch: 16, seed: 4 };
    let spec = tiny_vit();
    let data = TrainData {
        text: &text,
        encoder: &encoder,
        source: &FineTune { source: &source, backbone: pretrained, spec: &spec, weights_hash: "tiny-random" },
    };
    let mut options = TrainOptions::new(dir.join("checkpoints"), dir.join("out"));
    options.max_epochs_this_call = max_epochs;
    let sections = Sections { model: &model, ablation: &ablation, train: &train_section };
    train(sections, data, &options, &quiet, &never).expect("train")
}

fn pretrained() -> Backbone {
    let device = Device::flex().autodiff();
    sspa_train::seeded(&device, 17, || tiny_vit().init(&device).expect("init"))
}

#[test]
fn the_image_encoder_trains_with_the_head_and_resumes_exactly() {
    let start = pretrained();
    let start_bits = bits(&start);
    let dir = tempfile::tempdir().expect("temp dir");
    let outcome = run(dir.path(), &start, None);
    assert!(outcome.finished);
    let first = outcome.history.first().expect("history");
    let last = outcome.history.last().expect("history");
    assert!(last.train_loss < first.train_loss * 0.8, "loss {} → {}", first.train_loss, last.train_loss);
    let map = last.val_map.expect("validation mAP");
    eprintln!(
        "fine-tuned tiny ViT: loss {:.3} → {:.3}, validation mAP {:?} → {map:.2}",
        first.train_loss, last.train_loss, first.val_map
    );
    let first_map = first.val_map.expect("validation mAP");
    assert!(map > 85.0 && map > first_map + 10.0, "validation mAP {first_map} → {map} (history {:?})", outcome.history);
    assert_eq!(bits(&start), start_bits, "the pretrained encoder passed in is not modified");

    // The outputs hold the trained encoder; config.json rebuilds it.
    let out = dir.path().join("out");
    let config = sspa_train::ModelConfig::load(&out.join(files::CONFIG)).expect("config");
    assert_eq!(config.backbone, Some(tiny_vit()));
    assert_eq!(config.patches_per_image, 4);
    let trained = config.load_model(&out.join(files::MODEL), &Device::flex()).expect("weights");
    let trained_backbone = trained.backbone.as_ref().expect("backbone in the model");
    let moved = bits(trained_backbone).iter().zip(&start_bits).filter(|((_, a), (_, b))| a != b).count();
    assert!(moved > start_bits.len() / 2, "{moved} of {} encoder tensors changed", start_bits.len());

    // The predictor scores features of its own encoder: validation images are recognised.
    let predictor = Predictor::load(&out, Weights::Raw, &Device::flex()).expect("predictor");
    let backbone = predictor.backbone().expect("the predictor carries the encoder");
    let rows: Vec<usize> = (128..176).collect();
    let images = batch(&rows);
    let (pixels, _) = images.clone().into_tensors(&Device::flex());
    let features = backbone.forward(pixels);
    let [n, patches, width] = features.patches.dims();
    let set = sspa_train::FeatureSet {
        ids: rows.iter().map(ToString::to_string).collect(),
        global: features.global.into_data().iter::<f32>().collect(),
        patches: features.patches.into_data().iter::<f32>().collect(),
        targets: images.targets.clone(),
        patches_per_image: patches,
        width,
        classes: CLASSES,
    };
    assert_eq!(n, rows.len());
    let scores = predictor.predict(&set).expect("predict");
    let predicted = sspa_metrics::mean_average_precision(&scores, &images.targets, CLASSES).expect("mAP");
    assert!((predicted - map).abs() < 1e-3, "predictor mAP {predicted} vs the loop's {map}");

    // Three epochs, stop, then the rest: the same final weights, bit for bit.
    let resumed = tempfile::tempdir().expect("temp dir");
    let partial = run(resumed.path(), &start, Some(3));
    assert!(!partial.finished);
    let rest = run(resumed.path(), &start, None);
    assert_eq!(rest.resumed_from, Some(3));
    for name in [files::MODEL, files::MODEL_EMA] {
        let read = |dir: &std::path::Path| {
            bits(&config.load_model(&dir.join("out").join(name), &Device::flex()).expect("weights"))
        };
        assert!(read(dir.path()) == read(resumed.path()), "{name}: resumed run differs");
    }
}

/// A warm start into a fine-tuning run: from a frozen-encoder model the head and prompts are
/// copied and the image encoder keeps its pretrained weights (listed as kept); from a fine-tuned
/// model its fine-tuned encoder is copied too.
#[test]
fn a_warm_start_keeps_the_pretrained_encoder_unless_the_old_model_trained_one() {
    let pretrained = pretrained();
    let (model, ablation, train_section) = sections();
    let sections = Sections { model: &model, ablation: &ablation, train: &train_section };
    let text = text_inputs();
    let device = Device::flex().autodiff();
    let encoder = MeanPromptEncoder::new(text.labels.clone(), PROMPT_WIDTH, TEXT_WIDTH, 11, &device);
    let source = Quadrants { train: 128, validation: 48, batch: 16, seed: 4 };
    let spec = tiny_vit();
    let fine_tune = FineTune { source: &source, backbone: &pretrained, spec: &spec, weights_hash: "tiny-random" };
    let data = TrainData { text: &text, encoder: &encoder, source: &fine_tune };
    let config = model_config(sections, &data).expect("config");
    let fresh = || config.init_with_backbone(train_section.seed, &device, pretrained.clone()).expect("init");

    // An old model of the same head on frozen features: no encoder tensors in its file.
    let dir = tempfile::tempdir().expect("temp dir");
    let frozen_dir = dir.path().join("frozen");
    std::fs::create_dir_all(&frozen_dir).expect("dir");
    let frozen = ModelConfig { backbone: None, ..config.clone() };
    let head_only = frozen.init(1, &Device::flex()).expect("init");
    frozen.save(&frozen_dir.join(files::CONFIG)).expect("config");
    save_weights(&head_only, &frozen_dir.join(files::MODEL)).expect("weights");
    let (warm, report) = WarmStart::new(&frozen_dir, Weights::Raw).apply(fresh(), &config).expect("warm start");
    let encoder_tensors = warm.backbone.as_ref().expect("encoder").num_params();
    assert!(!report.kept_init.is_empty() && report.kept_init.iter().all(|name| name.starts_with("backbone.")));
    assert_eq!(report.tensors_copied, sspa_train::parameter_snapshot(&head_only).len());
    assert!(encoder_tensors > 0);
    assert!(
        named_bits(warm.backbone.as_ref().expect("encoder")) == named_bits(&pretrained),
        "the pretrained encoder is kept"
    );
    assert!(bits(&warm.head) == bits(&head_only.head), "the head is copied");

    // An old fine-tuned model: everything is copied, the fine-tuned encoder included.
    let outcome = run(&dir.path().join("tuned"), &pretrained, None);
    assert!(outcome.finished);
    let tuned_dir = dir.path().join("tuned").join("out");
    let (warm, report) = WarmStart::new(&tuned_dir, Weights::Raw).apply(fresh(), &config).expect("warm start");
    assert!(report.kept_init.is_empty(), "{:?}", report.kept_init);
    let tuned = config.load_model(&tuned_dir.join(files::MODEL), &Device::flex()).expect("tuned weights");
    assert!(bits(&warm) == bits(&tuned), "every tensor of the fine-tuned model is copied");
    assert!(named_bits(warm.backbone.as_ref().expect("encoder")) != named_bits(&pretrained));
}

/// Every backbone kind trains: gradients reach its first layer, and its spec predicts the width
/// and patch count the forward pass produces.
#[test]
fn every_backbone_kind_passes_gradients_and_matches_its_spec() {
    use sspa_clip::resnet::ModifiedResNetConfig;
    let device = Device::flex().autodiff();
    let specs = [
        BackboneSpec::EfficientnetLite0,
        tiny_vit(),
        BackboneSpec::ClipResnet {
            config: ModifiedResNetConfig::new([1, 1, 1, 1])
                .with_width(4)
                .with_heads(2)
                .with_output_dim(8)
                .with_image_size(64),
        },
    ];
    for spec in specs {
        let size = 64;
        let backbone = sspa_train::seeded(&device, 3, || spec.init(&device)).expect("init");
        let pixels: Vec<f32> = (0..2 * 3 * size * size).map(|i| (i as f32 * 0.37).sin()).collect();
        let images = Tensor::<4>::from_data(TensorData::new(pixels, [2, 3, size, size]), &device);
        let features = backbone.forward(images);
        assert_eq!(features.global.dims(), [2, spec.width()], "{}", spec.name());
        assert_eq!(features.patches.dims(), [2, spec.patches_per_image(size), spec.width()], "{}", spec.name());
        let grads = (features.global.sum() + features.patches.powf_scalar(2.0).sum()).backward();
        let first = match &backbone {
            Backbone::EfficientNet(encoder) => encoder.stem.conv.weight.grad(&grads),
            Backbone::ClipVit(tower) => tower.conv1.weight.grad(&grads),
            Backbone::ClipResNet(tower) => tower.stem.conv1.conv.weight.grad(&grads),
        };
        let first = first.unwrap_or_else(|| panic!("{}: no gradient at the first layer", spec.name()));
        let norm: f32 = first.powf_scalar(2.0).sum().into_scalar();
        assert!(norm > 0.0 && norm.is_finite(), "{}: gradient norm² {norm}", spec.name());
    }
}

/// `train.precision = "mixed"` with the image encoder trained: the ViT and the head compute on a
/// bf16 copy (the images cast at the model's edge), the f32 master weights are what is saved, and
/// the loss tracks an f32 run.
#[test]
fn mixed_precision_fine_tuning_tracks_f32_and_saves_f32_weights() {
    let pretrained = pretrained();
    let dir = tempfile::tempdir().expect("temp dir");
    let epochs = |train: &mut TrainSection| train.epochs = 2;
    let full = run_with(&dir.path().join("f32"), &pretrained, None, epochs);
    let mixed = run_with(&dir.path().join("mixed"), &pretrained, None, |train| {
        epochs(train);
        train.precision = sspa_config::Precision::Mixed;
    });
    assert!(full.finished && mixed.finished);
    for (a, b) in full.history.iter().zip(&mixed.history) {
        eprintln!("epoch {}: loss f32 {:.5} mixed {:.5}", a.epoch, a.train_loss, b.train_loss);
        let relative = (a.train_loss - b.train_loss).abs() / a.train_loss;
        assert!(relative < 0.03, "epoch {}: mixed loss {} vs f32 {}", a.epoch, b.train_loss, a.train_loss);
    }
    let out = dir.path().join("mixed").join("out");
    let config = ModelConfig::load(&out.join(files::CONFIG)).expect("config");
    let model = config.load_model(&out.join(files::MODEL), &Device::flex()).expect("weights");
    let encoder = model.backbone.as_ref().expect("trained encoder");
    let Backbone::ClipVit(tower) = encoder else { panic!("a ViT") };
    assert_eq!(tower.conv1.weight.val().dtype(), burn::tensor::DType::F32);
    let bytes = std::fs::read(out.join(files::MODEL)).expect("weights file");
    let stored = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    assert!(stored.tensors().iter().all(|(_, view)| view.dtype() == safetensors::Dtype::F32));
    let Backbone::ClipVit(start) = &pretrained else { panic!("a ViT") };
    let moved: f32 = (tower.conv1.weight.val() - start.conv1.weight.val().without_autodiff()).abs().max().into_scalar();
    assert!(moved > 1e-4, "the encoder trained (moved by {moved})");
}
