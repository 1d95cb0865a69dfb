//! The peer heads (`model.head = "linear" | "mlp" | "query-decoder"`) through the same loop, loss,
//! checkpoints, predictor and warm starts as SSPA's.

use burn::prelude::*;
use sspa_config::HeadKind;
use sspa_metrics::mean_average_precision;
use sspa_train::{
    CachedFeatures, FeatureSet, MeanPromptEncoder, ModelConfig, Predictor, TextInputs, TrainData, TrainError,
    TrainOptions, WarmStart, Weights, files, latest_checkpoint, train,
};

use crate::training::{
    CLASSES, PROMPT_WIDTH, TEXT_WIDTH, assert_same_weights, final_weights, never, quiet, setup, synthetic_classes,
    text_inputs_classes,
};

const PEERS: [HeadKind; 3] = [HeadKind::Linear, HeadKind::Mlp, HeadKind::QueryDecoder];

/// A labelled task of `classes` classes: text inputs, a prompt encoder, train and validation
/// features of `images` and `images / 2` synthetic images.
struct Task {
    text: TextInputs,
    encoder: MeanPromptEncoder,
    train: FeatureSet,
    validation: FeatureSet,
}

impl Task {
    fn new(classes: usize, images: usize) -> Self {
        let text = text_inputs_classes(classes);
        let encoder =
            MeanPromptEncoder::new(text.labels.clone(), PROMPT_WIDTH, TEXT_WIDTH, 11, &Device::flex().autodiff());
        let (train, validation) = (synthetic_classes(classes, images, 1), synthetic_classes(classes, images / 2, 2));
        Self { text, encoder, train, validation }
    }

    fn source(&self) -> CachedFeatures<'_> {
        CachedFeatures { train: &self.train, validation: &self.validation }
    }

    fn data<'a>(&'a self, source: &'a CachedFeatures<'a>) -> TrainData<'a> {
        TrainData { text: &self.text, encoder: &self.encoder, source }
    }
}

#[test]
fn every_peer_learns_predicts_and_resumes_exactly() {
    let task = Task::new(CLASSES, 192);
    let (source, validation) = (task.source(), &task.validation);
    let data = task.data(&source);
    let untrained =
        mean_average_precision(&vec![0.5; validation.targets.len()], &validation.targets, CLASSES).expect("positives");
    for kind in PEERS {
        let mut run = setup(8, 32);
        run.model.head = kind;
        let dir = tempfile::tempdir().expect("temp dir");
        let options = TrainOptions::new(dir.path().join("ckpt"), dir.path().join("out"));
        let outcome = train(run.sections(), data, &options, &quiet, &never).expect("train");
        assert!(outcome.finished, "{kind}");
        let config = ModelConfig::load(&options.output_dir.join(files::CONFIG)).expect("config.json");
        assert_eq!((config.head.kind(), config.prompt_tokens), (kind, 0), "a peer has no prompt tokens");
        let stored: serde_json::Value =
            serde_json::from_slice(&std::fs::read(options.output_dir.join(files::CONFIG)).expect("read"))
                .expect("json");
        assert_eq!(stored["head"]["kind"], kind.name(), "a peer's head config is tagged");
        assert_eq!(stored["model"]["head"], kind.name());

        let last = outcome.history.last().expect("epochs");
        let raw = last.val_map.expect("validation mAP");
        assert!(raw > untrained + 20.0, "{kind}: mAP {raw} vs constant {untrained}");
        let predictor = Predictor::load(&options.output_dir, Weights::Raw, &Device::flex()).expect("predictor");
        let scores = predictor.predict(validation).expect("scores");
        let map = mean_average_precision(&scores, &validation.targets, CLASSES).expect("positives");
        assert!((map - raw).abs() < 1e-3, "{kind}: predicted {map} vs logged {raw}");

        // Interrupted after 3 epochs and resumed: the same weights, bit for bit.
        let split = tempfile::tempdir().expect("temp dir");
        let first = TrainOptions {
            max_epochs_this_call: Some(3),
            ..TrainOptions::new(split.path().join("ckpt"), split.path().join("out"))
        };
        let partial = train(run.sections(), data, &first, &quiet, &never).expect("3 epochs");
        assert_eq!((partial.epochs_done, partial.finished), (3, false));
        assert!(latest_checkpoint(&first.checkpoint_dir).expect("checkpoints").is_some());
        let rest = TrainOptions { max_epochs_this_call: None, ..first };
        let resumed = train(run.sections(), data, &rest, &quiet, &never).expect("resumed");
        assert_eq!(resumed.resumed_from, Some(3));
        assert_same_weights(
            &final_weights(&rest.output_dir),
            &final_weights(&options.output_dir),
            &format!("{kind}, resumed"),
        );
    }
}

#[test]
fn peer_warm_starts_remap_their_labels_and_refuse_another_head() {
    let task = Task::new(CLASSES, 96);
    let source = task.source();
    let data = task.data(&source);
    let mut run = setup(2, 32);
    run.model.head = HeadKind::Mlp;
    let dir = tempfile::tempdir().expect("temp dir");
    let old = TrainOptions::new(dir.path().join("old-ckpt"), dir.path().join("old"));
    train(run.sections(), data, &old, &quiet, &never).expect("old run");

    // Same labels: every tensor is copied.
    let warm = TrainOptions {
        warm_start: Some(WarmStart::new(&old.output_dir, Weights::Ema)),
        ..TrainOptions::new(dir.path().join("warm-ckpt"), dir.path().join("warm"))
    };
    let outcome = train(run.sections(), data, &warm, &quiet, &never).expect("warm start, same labels");
    let report = outcome.warm_started.expect("a warm start report");
    assert!(report.tensors_copied > 0 && report.kept_init.is_empty(), "{report:?}");

    // One label more: the old labels' slices are remapped by name, the new one keeps its init.
    let more = Task::new(CLASSES + 1, 96);
    let source_more = more.source();
    let data_more = more.data(&source_more);
    let grown = TrainOptions {
        warm_start: Some(WarmStart::new(&old.output_dir, Weights::Ema)),
        ..TrainOptions::new(dir.path().join("more-ckpt"), dir.path().join("more"))
    };
    let outcome = train(run.sections(), data_more, &grown, &quiet, &never).expect("warm start, one label more");
    let report = outcome.warm_started.expect("a warm start report");
    assert_eq!((report.tensors_remapped, report.rows_remapped, report.labels_added.len()), (2, 2 * CLASSES, 1));

    // An SSPA run cannot start from a peer's weights: the architecture differs, tensors named.
    let sspa = setup(2, 32);
    let cross = TrainOptions {
        warm_start: Some(WarmStart::new(&old.output_dir, Weights::Ema)),
        ..TrainOptions::new(dir.path().join("sspa-ckpt"), dir.path().join("sspa"))
    };
    let error = train(sspa.sections(), data, &cross, &quiet, &never).expect_err("another head");
    assert!(matches!(error, TrainError::WarmStartArchitecture { .. }), "{error}");
}
