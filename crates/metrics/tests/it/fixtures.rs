//! Parity with scikit-learn: fixtures made by `scripts/reference/make_metrics_fixtures.py`.

use std::path::PathBuf;

use serde_json::Value;
use sspa_metrics::{EvalOptions, MetricKind, evaluate};

fn fixture(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

fn matrix<T>(value: &Value, convert: impl Fn(&Value) -> T) -> (usize, Vec<T>) {
    let rows = value.as_array().expect("rows");
    let flat = rows.iter().flat_map(|row| row.as_array().expect("row").iter().map(&convert)).collect();
    (rows.len(), flat)
}

/// Compares two JSON values; numbers within 1e-6 relative (1e-9 absolute near zero).
fn assert_matches(path: &str, actual: &Value, expected: &Value) {
    match (actual, expected) {
        (Value::Number(a), Value::Number(e)) => {
            let (a, e) = (a.as_f64().expect("number"), e.as_f64().expect("number"));
            let tolerance = (1e-6 * e.abs()).max(1e-9);
            assert!((a - e).abs() <= tolerance, "{path}: got {a}, scikit-learn {e}");
        }
        (Value::Object(a), Value::Object(e)) => {
            let actual_keys: Vec<&String> = a.keys().collect();
            let expected_keys: Vec<&String> = e.keys().collect();
            assert_eq!(actual_keys, expected_keys, "{path}: keys");
            for (key, value) in e {
                assert_matches(&format!("{path}.{key}"), &a[key], value);
            }
        }
        _ => assert_eq!(actual, expected, "{path}"),
    }
}

fn check(name: &str) -> Value {
    let case = fixture(name);
    let labels: Vec<String> = case["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .map(|label| label.as_str().expect("label").to_owned())
        .collect();
    let (n, scores) = matrix(&case["scores"], |value| value.as_f64().expect("score") as f32);
    let (_, targets) = matrix(&case["targets"], |value| value.as_i64().expect("target") as i8);
    let options = EvalOptions {
        kind: case["kind"].as_str().expect("kind").parse::<MetricKind>().expect("kind"),
        threshold: case["threshold"].as_f64().expect("threshold") as f32,
        top_k: case["top_k"].as_u64().expect("top_k") as usize,
    };
    let report = evaluate(&scores, &targets, n, &labels, &options).expect("report");
    let json = report.to_json();
    assert_matches(name, &json, &case["expected"]);
    json
}

#[test]
fn random_scores_match_scikit_learn() {
    let json = check("random");
    // The all-negative class is named, not averaged.
    assert_eq!(json["classes_without_positives"], serde_json::json!(["label 5"]));
}

#[test]
fn another_threshold_and_top_2_match_scikit_learn() {
    let json = check("random_threshold");
    assert!(json.get("top2").is_some());
}

#[test]
fn tied_scores_match_the_grouped_rank_reference() {
    check("ties");
}

#[test]
fn pedestrian_metrics_match_scikit_learn() {
    let json = check("pedestrian");
    assert!(json.get("mA").is_some());
}

#[test]
fn ignored_targets_are_removed_before_ranking() {
    let json = check("ignored");
    // Label 0: 0.95 is ignored, so the positive at 0.9 ranks first → AP 100 (then 0.3(-), 0.1(+) → 2/3).
    let ap = json["per_class_ap"]["l<0>&\"q\""].as_f64().expect("ap");
    assert!((ap - 100.0 * (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-9, "{ap}");
}

#[test]
fn row_order_does_not_change_any_metric() {
    let case = fixture("ties");
    let labels: Vec<String> = case["labels"]
        .as_array()
        .expect("labels")
        .iter()
        .map(|label| label.as_str().expect("label").to_owned())
        .collect();
    let c = labels.len();
    let (n, scores) = matrix(&case["scores"], |value| value.as_f64().expect("score") as f32);
    let (_, targets) = matrix(&case["targets"], |value| value.as_i64().expect("target") as i8);
    let mut reversed_scores = Vec::with_capacity(scores.len());
    let mut reversed_targets = Vec::with_capacity(targets.len());
    for row in (0..n).rev() {
        reversed_scores.extend_from_slice(&scores[row * c..(row + 1) * c]);
        reversed_targets.extend_from_slice(&targets[row * c..(row + 1) * c]);
    }
    let options = EvalOptions { kind: MetricKind::Pedestrian, ..EvalOptions::default() };
    let forward = evaluate(&scores, &targets, n, &labels, &options).expect("report").to_json();
    let backward = evaluate(&reversed_scores, &reversed_targets, n, &labels, &options).expect("report").to_json();
    assert_matches("reversed", &backward, &forward);
}
