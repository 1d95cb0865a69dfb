//! The run index over fake runs: params, metrics of reused results, keys and timings per run.

use crate::{Fake, Fixture};
use serde_json::json;
use sspa_dag::{RunOptions, StageStatus, run_index};
use std::time::Duration;

/// The fake pipeline with `out.txt` of `evaluate` declared as its metrics (the fake writes its
/// params as JSON text there).
fn with_metrics() -> Fixture {
    let mut fixture = Fixture::new(Duration::ZERO);
    fixture.pipeline = fixture.pipeline.replace(
        "params = [\"evaluate\"]\nouts = [\"out.txt\"]",
        "params = [\"evaluate\"]\nouts = [\"out.txt\", \"metrics.json\"]\nmetrics = [\"metrics.json\"]",
    );
    assert!(fixture.pipeline.contains("metrics = [\"metrics.json\"]"), "the evaluate stage of the fake pipeline");
    let log = fixture.log.clone();
    fixture.registry.register(Fake { kind: "fake", log, sleep: Duration::ZERO, metrics_file: Some("metrics.json") });
    fixture
}

#[test]
fn every_run_lists_its_params_metrics_keys_and_timings() {
    let mut fixture = with_metrics();
    let (first, _) = fixture.run(&RunOptions::default());
    fixture.config["train"]["lr"] = json!(0.002);
    let (second, _) = fixture.run(&RunOptions::default());
    let project = fixture.project();
    let index = run_index(&project.workspace, &project.spec);
    assert_eq!(index.iter().map(|e| e.run_id.as_str()).collect::<Vec<_>>(), [&first.run_id, &second.run_id]);
    let (a, b) = (&index[0], &index[1]);
    assert_eq!(a.params["train.lr"], json!(0.001));
    assert_eq!(b.params["train.lr"], json!(0.002));
    assert_eq!(a.params["model.preset"], json!("p"));
    // The fake evaluate stage writes its own params as its metrics.
    assert_eq!(a.metrics["evaluate.evaluate.threshold"], json!(0.5));
    assert!(a.problems.is_empty() && b.problems.is_empty(), "{:?} {:?}", a.problems, b.problems);
    // Shared upstream results have equal keys; the changed stage and what reads it do not.
    assert_eq!(a.key("shard"), b.key("shard"));
    assert_ne!(a.key("train"), b.key("train"));
    assert!(b.stages.iter().any(|s| s.name == "shard" && s.status == StageStatus::Skipped));
    assert!(a.duration_s > 0.0 && a.stages.iter().all(|s| s.duration_s >= 0.0));

    // A run that reuses every result still reports the metrics of the results it reused.
    let (third, _) = fixture.run(&RunOptions::default());
    let index = run_index(&project.workspace, &project.spec);
    let reused = index.iter().find(|e| e.run_id == third.run_id).expect("third run");
    assert!(reused.stages.iter().all(|s| s.status == StageStatus::Skipped));
    assert_eq!(reused.metrics, b.metrics);
}

#[test]
fn an_unreadable_metrics_file_is_named_and_the_rest_kept() {
    let fixture = with_metrics();
    let (record, _) = fixture.run(&RunOptions::default());
    let project = fixture.project();
    let evaluate = record.stages.iter().find(|s| s.name == "evaluate").expect("evaluate");
    let file = project.workspace.result_dir("evaluate", &evaluate.key).join("metrics.json");
    std::fs::write(&file, "{ not json").expect("corrupt");
    let index = run_index(&project.workspace, &project.spec);
    assert!(index[0].metrics.is_empty());
    assert_eq!(index[0].problems.len(), 1);
    assert!(index[0].problems[0].contains("metrics.json"), "{:?}", index[0].problems);
    assert_eq!(index[0].params["train.epochs"], json!(2), "params still listed");
}
