//! Warm starts ([`sspa_train::WarmStart`]) on the CPU `flex` backend with synthetic features:
//! label changes, the learned classifier's class rows, architecture mismatches, resume.

use std::path::Path;

use burn::prelude::*;
use sspa_config::{Alignment, Classifier, HeadKind};
use sspa_metrics::mean_average_precision;
use sspa_train::{
    CachedFeatures, FeatureSet, FixedTextEncoder, MeanPromptEncoder, ModelConfig, Predictor, PromptTextEncoder,
    SspaModel, TextInputs, TrainData, TrainError, TrainOptions, TrainOutcome, WarmStart, Weights, files, model_config,
    parameter_snapshot, train,
};

use crate::training::{
    PROMPT_WIDTH, Setup, TEXT_WIDTH, assert_same_weights, final_weights, never, quiet, setup, synthetic_classes,
    text_inputs_classes,
};

/// Labels `class-0 … class-5`; old models know the first four.
const ALL: usize = 6;
const OLD: [usize; 4] = [0, 1, 2, 3];

/// One frozen text encoder for every run, knowing all labels: `T_l` of a label is the same in
/// the old and the new run.
fn encoder() -> MeanPromptEncoder {
    let labels = text_inputs_classes(ALL).labels;
    MeanPromptEncoder::new(labels, PROMPT_WIDTH, TEXT_WIDTH, 11, &Device::flex().autodiff())
}

/// The labels `columns` of `text`, in that order.
fn text_columns(text: &TextInputs, columns: &[usize]) -> TextInputs {
    TextInputs {
        labels: columns.iter().map(|&c| text.labels[c].clone()).collect(),
        knowledge: columns
            .iter()
            .flat_map(|&c| text.knowledge[c * text.width..(c + 1) * text.width].to_vec())
            .collect(),
        width: text.width,
    }
}

/// `set` with the target columns `columns` only (the features are unchanged).
fn feature_columns(set: &FeatureSet, columns: &[usize]) -> FeatureSet {
    let targets = set.targets.chunks(set.classes).flat_map(|row| columns.iter().map(|&c| row[c])).collect();
    FeatureSet { targets, classes: columns.len(), ..set.clone() }
}

/// Columns `columns` of row-major `[n, classes]` scores.
fn score_columns(scores: &[f32], classes: usize, columns: &[usize]) -> Vec<f32> {
    scores.chunks(classes).flat_map(|row| columns.iter().map(|&c| row[c])).collect()
}

/// A labelled data set: text inputs and train / validation features.
struct Task {
    text: TextInputs,
    train: FeatureSet,
    validation: FeatureSet,
}

impl Task {
    /// Classes `columns` of the `ALL`-class synthetic images drawn with `seed`.
    fn new(columns: &[usize], images: usize, seed: u64) -> Self {
        let (train, validation) = (synthetic_classes(ALL, images, seed), synthetic_classes(ALL, images / 2, seed + 1));
        Self {
            text: text_columns(&text_inputs_classes(ALL), columns),
            train: feature_columns(&train, columns),
            validation: feature_columns(&validation, columns),
        }
    }

    /// The task's features as the loop's source.
    fn features(&self) -> CachedFeatures<'_> {
        CachedFeatures { train: &self.train, validation: &self.validation }
    }

    fn data<'a>(&'a self, encoder: &'a dyn PromptTextEncoder, source: &'a CachedFeatures<'a>) -> TrainData<'a> {
        TrainData { text: &self.text, encoder, source }
    }
}

/// Options writing under `dir/name`.
fn options(dir: &Path, name: &str, warm_start: Option<WarmStart>) -> TrainOptions {
    TrainOptions { warm_start, ..TrainOptions::new(dir.join(name).join("ckpt"), dir.join(name).join("out")) }
}

/// Trains `task` to the end.
fn trained(setup: &Setup, task: &Task, encoder: &dyn PromptTextEncoder, options: &TrainOptions) -> TrainOutcome {
    let outcome =
        train(setup.sections(), task.data(encoder, &task.features()), options, &quiet, &never).expect("train");
    assert!(outcome.finished);
    outcome
}

/// Validation mAP of a trained run's `weights` on the labels `columns` of its label set.
fn map_on(out: &Path, weights: Weights, validation: &FeatureSet, columns: &[usize]) -> f64 {
    let predictor = Predictor::load(out, weights, &Device::flex()).expect("predictor");
    let scores = predictor.predict(validation).expect("scores");
    let scores = score_columns(&scores, validation.classes, columns);
    let targets = feature_columns(validation, columns).targets;
    mean_average_precision(&scores, &targets, columns.len()).expect("positives")
}

/// Parameter values by id, as bit patterns.
fn bits(model: &SspaModel) -> Vec<(u64, Vec<u32>)> {
    let mut values: Vec<_> = parameter_snapshot(model)
        .into_iter()
        .map(|(id, tensor)| (id.val(), tensor.into_data().iter::<f32>().map(f32::to_bits).collect()))
        .collect();
    values.sort();
    values
}

/// The old model of the run written to `out`, as a model of its own config.
fn load_old(out: &Path, weights: &str) -> SspaModel {
    let config = ModelConfig::load(&out.join(files::CONFIG)).expect("old config");
    config.load_model(&out.join(weights), &Device::flex()).expect("old weights")
}

fn labels(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}

/// mAP on the old labels (and on the added ones) after one warm-started epoch on new images with
/// two added labels, against the old model on the same images and a one-epoch run from scratch.
struct AddedLabels {
    /// The old model (the weights the run started from), on the old labels.
    before: f64,
    /// The warm-started run after one epoch, raw and EMA weights, on the old labels.
    warm: [f64; 2],
    /// The run from scratch after one epoch, raw and EMA weights, on the old labels.
    scratch: [f64; 2],
    /// The warm-started run's raw weights on the added labels, and constant scores' mAP there
    /// (printed only).
    added: (f64, f64),
}

/// Trains an old model on four labels for `old_epochs`, then one epoch on six labels warm-started
/// from its EMA weights, and one epoch on six labels from scratch.
fn added_labels(old_epochs: u32) -> AddedLabels {
    let dir = tempfile::tempdir().expect("temp dir");
    let encoder = encoder();
    let old_task = Task::new(&OLD, 256, 1);
    let old = options(dir.path(), "old", None);
    trained(&setup(old_epochs, 32), &old_task, &encoder, &old);

    // The retraining data: the same four labels and two more, on new images.
    let all: Vec<usize> = (0..ALL).collect();
    let new_task = Task::new(&all, 256, 11);
    let one_epoch = setup(1, 32);
    let warm = options(dir.path(), "warm", Some(WarmStart::new(&old.output_dir, Weights::Ema)));
    let warm_outcome = trained(&one_epoch, &new_task, &encoder, &warm);
    let scratch = options(dir.path(), "scratch", None);
    trained(&one_epoch, &new_task, &encoder, &scratch);

    let report = warm_outcome.warm_started.expect("warm-started");
    assert_eq!(report.weights, old.output_dir.join(files::MODEL_EMA));
    assert_eq!((report.labels_added, report.labels_removed), (labels(&["class-4", "class-5"]), vec![]));
    let old_tensors = parameter_snapshot(&load_old(&old.output_dir, files::MODEL_EMA)).len();
    assert_eq!((report.tensors_copied, report.tensors_remapped, report.kept_init.len()), (old_tensors, 0, 0));

    // The old model scores the new validation images with its own four labels.
    let validation = &new_task.validation;
    let before = map_on(&old.output_dir, Weights::Ema, &feature_columns(validation, &OLD), &OLD);
    let both = |out: &Path| [Weights::Raw, Weights::Ema].map(|weights| map_on(out, weights, validation, &OLD));
    let added = [4, 5];
    let constant = vec![0.5; validation.len() * added.len()];
    let constant = mean_average_precision(&constant, &feature_columns(validation, &added).targets, added.len());
    AddedLabels {
        before,
        warm: both(&warm.output_dir),
        scratch: both(&scratch.output_dir),
        added: (map_on(&warm.output_dir, Weights::Raw, validation, &added), constant.expect("positives")),
    }
}

impl AddedLabels {
    fn print(&self, old_epochs: u32) {
        eprintln!(
            "old model ({old_epochs} epochs, EMA) {:.2} on the old labels; after 1 epoch with 2 added labels: \
             warm raw {:.2} / EMA {:.2}, scratch raw {:.2} / EMA {:.2}; added labels {:.2} (constant {:.2})",
            self.before, self.warm[0], self.warm[1], self.scratch[0], self.scratch[1], self.added.0, self.added.1
        );
    }
}

/// The old model is trained short of convergence, as a model that retraining still improves: one
/// warm-started epoch then scores the old labels at least as well as the weights it started from
/// (raw and EMA), and better than a run from scratch. (The added labels' mAP is printed: eight
/// steps move them only a few points off chance, as they would from scratch.)
#[test]
fn one_warm_epoch_with_added_labels_keeps_the_old_labels_map() {
    let result = added_labels(2);
    result.print(2);
    for (which, warm, scratch) in
        [("raw", result.warm[0], result.scratch[0]), ("EMA", result.warm[1], result.scratch[1])]
    {
        assert!(warm >= result.before, "{which}: warm start {warm} fell below the old model's {}", result.before);
        assert!(warm >= scratch, "{which}: warm start {warm} below scratch {scratch}");
    }
}

/// From a converged old model (≈ 99.9 mAP), one epoch at the restarted peak learning rate costs
/// the raw weights up to ~1.6 points on the old labels (measured); the EMA stays within a point.
#[test]
fn a_converged_model_keeps_its_old_labels_through_a_warm_epoch() {
    let result = added_labels(8);
    result.print(8);
    assert!(result.before > 99.0, "the old model did not converge: {}", result.before);
    assert!(result.warm[1] >= result.before - 1.0, "EMA {} vs the old model's {}", result.warm[1], result.before);
    assert!(result.warm[0] > result.scratch[0] + 20.0 && result.warm[1] > result.scratch[1] + 20.0);
}

#[test]
fn removed_labels_leave_the_kept_labels_scores_exact() {
    let dir = tempfile::tempdir().expect("temp dir");
    let encoder = encoder();
    // Per-class scores that depend on that class's text features only: without the
    // semantic-to-visual direction no class reads another's.
    let mut run = setup(2, 16);
    run.ablation.alignment = Alignment::VisualToSemantic;
    let all: Vec<usize> = (0..ALL).collect();
    let old_task = Task::new(&all, 64, 21);
    let old = options(dir.path(), "old", None);
    trained(&run, &old_task, &encoder, &old);

    let kept = [4, 0, 2, 5];
    let new_task = Task::new(&kept, 64, 21);
    let config = model_config(run.sections(), &new_task.data(&encoder, &new_task.features())).expect("config");
    let device = Device::flex();
    let fresh = config.init(run.train.seed, &device).expect("init");
    let (model, report) = WarmStart::new(&old.output_dir, Weights::Raw).apply(fresh, &config).expect("warm start");

    let old_model = load_old(&old.output_dir, files::MODEL);
    assert_eq!(report.labels_removed, labels(&["class-1", "class-3"]));
    assert!(report.labels_added.is_empty() && report.kept_init.is_empty());
    assert_eq!((report.tensors_copied, report.tensors_remapped), (parameter_snapshot(&old_model).len(), 0));
    assert_eq!(bits(&model), bits(&old_model), "every tensor copied bit for bit, ids included");

    let validation = &old_task.validation;
    let old_scores =
        Predictor::load(&old.output_dir, Weights::Raw, &device).expect("old").predict(validation).expect("old scores");
    let prompts = model.prompts.as_ref().expect("CAP prompts").val();
    let context = encoder.forward(prompts, &new_task.text.labels).detach();
    let rows: Vec<usize> = (0..validation.len()).collect();
    let batch = validation.batch(&rows, &device);
    let output = model.head.forward(
        new_task.text.knowledge_tensor(&device),
        context.without_autodiff(),
        batch.global,
        batch.patches,
    );
    let new_scores: Vec<f32> = output.scores.into_data().iter::<f32>().collect();
    let expected = score_columns(&old_scores, ALL, &kept);
    let largest = new_scores.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    eprintln!("kept labels: largest score difference {largest:e} over {} scores", expected.len());
    assert_eq!(new_scores.len(), expected.len());
    assert!(largest <= 1e-6, "kept labels score differently after the warm start: up to {largest}");
}

#[test]
fn a_learned_classifier_takes_its_class_rows_by_label_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let encoder = encoder();
    let mut run = setup(1, 16);
    run.ablation.classifier = Classifier::Learned;
    run.ablation.alignment = Alignment::SemanticToVisual;
    let old_task = Task::new(&OLD, 48, 31);
    let old = options(dir.path(), "old", None);
    trained(&run, &old_task, &encoder, &old);

    // class-2 and class-0 stay (swapped), class-1 and class-3 go, class-5 and class-4 are new.
    let new_columns = [2, 5, 0, 4];
    let new_task = Task::new(&new_columns, 48, 33);
    let config = model_config(run.sections(), &new_task.data(&encoder, &new_task.features())).expect("config");
    let fresh = config.init(run.train.seed, &Device::flex()).expect("init");
    let rows = |model: &SspaModel| -> Vec<Vec<u32>> {
        let weights = model.head.as_sspa().expect("an SSPA head").class_weights.as_ref().expect("learned W").val();
        let [classes, width] = weights.dims();
        let values: Vec<u32> = weights.into_data().iter::<f32>().map(f32::to_bits).collect();
        assert_eq!(values.len(), classes * width);
        values.chunks(width).map(<[u32]>::to_vec).collect()
    };
    let fresh_rows = rows(&fresh);
    let start = WarmStart::new(&old.output_dir, Weights::Raw);
    let (model, report) = start.apply(fresh, &config).expect("warm start");
    let old_rows = rows(&load_old(&old.output_dir, files::MODEL));
    let warm_rows = rows(&model);
    assert_eq!(warm_rows.len(), 4);
    assert_eq!(warm_rows[0], old_rows[2], "class-2 takes its old row");
    assert_eq!(warm_rows[2], old_rows[0], "class-0 takes its old row");
    assert_eq!(warm_rows[1], fresh_rows[1], "class-5 keeps its fresh row");
    assert_eq!(warm_rows[3], fresh_rows[3], "class-4 keeps its fresh row");
    assert_ne!(fresh_rows[0], old_rows[2], "the copy is visible");
    assert_eq!((report.tensors_remapped, report.rows_remapped), (1, 2));
    assert_eq!(report.labels_added, labels(&["class-5", "class-4"]));
    assert_eq!(report.labels_removed, labels(&["class-1", "class-3"]));

    // And through the loop.
    let warm = options(dir.path(), "warm", Some(start));
    let outcome = trained(&run, &new_task, &encoder, &warm);
    assert_eq!(outcome.warm_started, Some(report));
    assert!(outcome.history.iter().all(|log| log.train_loss.is_finite()));
}

/// A linear probe, an MLP and a query decoder with one query per class score each class from
/// slices of their own (ML-Decoder's queries attend to the patches, not to each other): after a
/// warm start that drops, reorders and adds labels, the kept labels score exactly as before.
#[test]
fn peer_heads_take_their_class_slices_by_label_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let encoder = encoder();
    let device = Device::flex();
    let old_task = Task::new(&OLD, 48, 51);
    // class-2 and class-0 stay (swapped), class-1 and class-3 go, class-5 and class-4 are new.
    let new_columns = [2, 5, 0, 4];
    let new_task = Task::new(&new_columns, 48, 51);
    for (kind, class_tensors) in [(HeadKind::Linear, 2), (HeadKind::Mlp, 2), (HeadKind::QueryDecoder, 3)] {
        let mut run = setup(1, 16);
        run.model.head = kind;
        let old = options(dir.path(), &format!("old-{kind}"), None);
        trained(&run, &old_task, &encoder, &old);
        let config = model_config(run.sections(), &new_task.data(&encoder, &new_task.features())).expect("config");
        let fresh = config.init(run.train.seed, &device).expect("init");
        let start = WarmStart::new(&old.output_dir, Weights::Raw);
        let (model, report) = start.apply(fresh, &config).expect("warm start");
        assert_eq!((report.tensors_remapped, report.rows_remapped), (class_tensors, 2 * class_tensors), "{kind}");
        assert_eq!(report.labels_added, labels(&["class-5", "class-4"]), "{kind}");
        assert!(report.kept_init.is_empty(), "{kind}: {:?}", report.kept_init);

        let validation = &old_task.validation;
        let old_scores = Predictor::load(&old.output_dir, Weights::Raw, &device)
            .expect("old")
            .predict(validation)
            .expect("old scores");
        let rows: Vec<usize> = (0..validation.len()).collect();
        let batch = validation.batch(&rows, &device);
        // Peers read no text: the label features only fill the call's shape.
        let text = new_task.text.knowledge_tensor(&device);
        let output = model.head.forward(text.clone(), text, batch.global, batch.patches);
        let new_scores: Vec<f32> = output.scores.into_data().iter::<f32>().collect();
        // New columns 0 and 2 are class-2 and class-0: old columns 2 and 0.
        let kept_new = score_columns(&new_scores, new_columns.len(), &[0, 2]);
        let kept_old = score_columns(&old_scores, OLD.len(), &[2, 0]);
        let largest = kept_new.iter().zip(&kept_old).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(largest <= 1e-6, "{kind}: kept labels score differently after the warm start: up to {largest}");
        let added = score_columns(&new_scores, new_columns.len(), &[1, 3]);
        assert!(added.iter().all(|score| score.is_finite()), "{kind}");

        // And through the loop.
        let warm = options(dir.path(), &format!("warm-{kind}"), Some(start));
        let outcome = trained(&run, &new_task, &encoder, &warm);
        assert_eq!(outcome.warm_started, Some(report), "{kind}");
    }
}

#[test]
fn another_embedding_width_is_refused_naming_the_tensors_and_shapes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let encoder = encoder();
    let run = setup(1, 16);
    let task = Task::new(&OLD, 32, 41);
    let old = options(dir.path(), "old", None);
    trained(&run, &task, &encoder, &old);

    let mut wider = setup(1, 16);
    wider.model.embed_dim = 32;
    let warm = options(dir.path(), "warm", Some(WarmStart::new(&old.output_dir, Weights::Raw)));
    let error =
        train(wider.sections(), task.data(&encoder, &task.features()), &warm, &quiet, &never).expect_err("another d");
    let message = error.to_string();
    eprintln!("{message}");
    let TrainError::WarmStartArchitecture { path, mismatches } = error else { panic!("unexpected error: {message}") };
    assert_eq!(path, old.output_dir.join(files::MODEL));
    let projection = mismatches
        .iter()
        .find(|mismatch| mismatch.tensor.starts_with("head.image_projection") && mismatch.tensor.ends_with("weight"))
        .expect("the image projection is named");
    assert_eq!((projection.old.clone(), projection.new.clone()), (vec![16, 16], Some(vec![16, 32])));
    assert!(mismatches.iter().all(|mismatch| mismatch.new.as_ref() != Some(&mismatch.old)));
    // The message names the first tensors with both shapes and counts the rest.
    let first = &mismatches[0];
    let named = format!(
        "`{}` is {:?} in the old model but {:?} in this run",
        first.tensor,
        first.old,
        first.new.as_ref().expect("in both")
    );
    let more = format!("… and {} more", mismatches.len() - 6);
    for part in [named.as_str(), more.as_str(), "train.init = \"scratch\"", "old/out/model.safetensors"] {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }
    assert!(!warm.checkpoint_dir.join("latest.json").exists(), "no checkpoint of a refused start");
}

#[test]
fn tensors_in_one_model_only_keep_their_init_or_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let prompted = encoder();
    let task = Task::new(&OLD, 32, 51);
    let fixed = FixedTextEncoder::knowledge(&task.text).expect("fixed T_l");
    let mut without_cap = setup(1, 16);
    without_cap.ablation.cap = false;
    let with_cap = setup(1, 16);

    // No CAP prompts in the old model: the new run's prompts keep their initialisation.
    let old = options(dir.path(), "old-fixed", None);
    trained(&without_cap, &task, &fixed, &old);
    let warm = options(dir.path(), "warm-cap", Some(WarmStart::new(&old.output_dir, Weights::Raw)));
    let outcome = trained(&with_cap, &task, &prompted, &warm);
    let report = outcome.warm_started.expect("warm-started");
    assert_eq!(report.kept_init, ["prompts"]);
    assert_eq!(report.tensors_copied, parameter_snapshot(&load_old(&old.output_dir, files::MODEL)).len());

    // CAP prompts in the old model only: refused.
    let old = options(dir.path(), "old-cap", None);
    trained(&with_cap, &task, &prompted, &old);
    let warm = options(dir.path(), "warm-fixed", Some(WarmStart::new(&old.output_dir, Weights::Raw)));
    let error = train(without_cap.sections(), task.data(&fixed, &task.features()), &warm, &quiet, &never)
        .expect_err("no prompts");
    let TrainError::WarmStartArchitecture { mismatches, .. } = &error else { panic!("unexpected error: {error}") };
    assert_eq!(mismatches.len(), 1, "{error}");
    assert_eq!((mismatches[0].tensor.as_str(), &mismatches[0].new), ("prompts", &None));
    assert!(error.to_string().contains("`prompts` ([2, 6]) of the old model is not in this run's model"), "{error}");
}

#[test]
fn a_warm_started_checkpoint_resumes_only_from_the_same_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let encoder = encoder();
    let old_task = Task::new(&OLD, 32, 61);
    let old = options(dir.path(), "old", None);
    trained(&setup(1, 16), &old_task, &encoder, &old);

    let all: Vec<usize> = (0..ALL).collect();
    let task = Task::new(&all, 48, 63);
    let run = setup(3, 16);
    let start = WarmStart::new(&old.output_dir, Weights::Raw);
    let straight = options(dir.path(), "straight", Some(start.clone()));
    let reference = trained(&run, &task, &encoder, &straight);

    let interrupted =
        TrainOptions { max_epochs_this_call: Some(1), ..options(dir.path(), "parts", Some(start.clone())) };
    let first = train(run.sections(), task.data(&encoder, &task.features()), &interrupted, &quiet, &never)
        .expect("first epoch");
    assert_eq!((first.epochs_done, first.finished), (1, false));
    assert_eq!(first.warm_started, reference.warm_started);

    // Another start, or none, does not resume this checkpoint.
    let refused = |warm_start: Option<WarmStart>| {
        let options = TrainOptions { warm_start, ..interrupted.clone() };
        let error = train(run.sections(), task.data(&encoder, &task.features()), &options, &quiet, &never)
            .expect_err("other start");
        assert!(matches!(error, TrainError::Checkpoint { .. }), "{error}");
        assert!(error.to_string().contains("another warm start"), "{error}");
    };
    refused(Some(WarmStart::new(&old.output_dir, Weights::Ema)));
    refused(None);
    let copy = dir.path().join("old-copy");
    std::fs::create_dir_all(&copy).expect("copy dir");
    for name in [files::CONFIG, files::MODEL, files::MODEL_EMA] {
        std::fs::copy(old.output_dir.join(name), copy.join(name)).expect("copy");
    }
    let mut changed = std::fs::read(copy.join(files::MODEL)).expect("weights");
    let last = changed.len() - 1;
    changed[last] ^= 1;
    std::fs::write(copy.join(files::MODEL), changed).expect("changed weights");
    refused(Some(WarmStart::new(&copy, Weights::Raw)));

    // The same start resumes, and the warm start is not applied a second time.
    let rest = TrainOptions { max_epochs_this_call: None, ..interrupted.clone() };
    let resumed = train(run.sections(), task.data(&encoder, &task.features()), &rest, &quiet, &never).expect("resumed");
    assert_eq!((resumed.resumed_from, resumed.finished), (Some(1), true));
    assert_eq!(resumed.warm_started, reference.warm_started, "the report survives the resume");
    assert_same_weights(&final_weights(&rest.output_dir), &final_weights(&straight.output_dir), "resumed warm run");
}
