//! The metric report: computed from [`EvalData`], serialised to the JSON the CLI prints.

use sspa_config::metric_names;
use std::fmt;

use rayon::prelude::*;
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use crate::counts::{ClassCounts, ImageTotals, class_counts, image_totals};
use crate::data::EvalData;
use crate::error::MetricsError;
use crate::ranking::{PrCurve, ap_of_ranking, precision_recall_curve, rank};
use crate::{EvalOptions, MetricKind};

/// Per-class and overall precision, recall and F1, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PrecisionRecall {
    #[serde(rename = "CP")]
    pub class_precision: f64,
    #[serde(rename = "CR")]
    pub class_recall: f64,
    #[serde(rename = "CF1")]
    pub class_f1: f64,
    #[serde(rename = "OP")]
    pub overall_precision: f64,
    #[serde(rename = "OR")]
    pub overall_recall: f64,
    #[serde(rename = "OF1")]
    pub overall_f1: f64,
}

impl PrecisionRecall {
    /// `correct` and `predicted` per class; `positives` per class (`Ng`).
    fn from_counts(correct: &[u64], predicted: &[u64], positives: &[u64]) -> Self {
        let labels = correct.len();
        let class_precision = correct
            .iter()
            .zip(predicted)
            .map(|(&nc, &np)| if np == 0 { 0.0 } else { nc as f64 / np as f64 })
            .sum::<f64>()
            / labels as f64;
        let with_positives: Vec<f64> =
            correct.iter().zip(positives).filter(|&(_, &ng)| ng > 0).map(|(&nc, &ng)| nc as f64 / ng as f64).collect();
        let class_recall = with_positives.iter().sum::<f64>() / with_positives.len() as f64;
        let total_correct: u64 = correct.iter().sum();
        let total_predicted: u64 = predicted.iter().sum();
        let total_positives: u64 = positives.iter().sum();
        let overall_precision = if total_predicted == 0 { 0.0 } else { total_correct as f64 / total_predicted as f64 };
        let overall_recall = total_correct as f64 / total_positives as f64;
        Self {
            class_precision: 100.0 * class_precision,
            class_recall: 100.0 * class_recall,
            class_f1: 100.0 * harmonic_mean(class_precision, class_recall),
            overall_precision: 100.0 * overall_precision,
            overall_recall: 100.0 * overall_recall,
            overall_f1: 100.0 * harmonic_mean(overall_precision, overall_recall),
        }
    }

    fn entries(&self) -> [(&'static str, f64); 6] {
        [
            ("CP", self.class_precision),
            ("CR", self.class_recall),
            ("CF1", self.class_f1),
            ("OP", self.overall_precision),
            ("OR", self.overall_recall),
            ("OF1", self.overall_f1),
        ]
    }
}

/// Pedestrian-attribute metrics, in percent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PedestrianMetrics {
    #[serde(rename = "mA")]
    pub mean_accuracy: f64,
    #[serde(rename = "Acc")]
    pub accuracy: f64,
    #[serde(rename = "Prec")]
    pub precision: f64,
    #[serde(rename = "Rec")]
    pub recall: f64,
    #[serde(rename = "F1")]
    pub f1: f64,
    /// Classes left out of mA because they lack positives or negatives.
    #[serde(skip)]
    pub classes_outside_mean_accuracy: Vec<String>,
}

/// Everything `eval` reports. Values are percentages. Serialises to the CLI's JSON:
/// `{"mAP", "CP", "CR", "CF1", "OP", "OR", "OF1", "top{k}": {...}, "per_class_ap": {label: ap},
/// "classes_without_positives": [...]}` and, for pedestrian, `"mA", "Acc", "Prec", "Rec", "F1"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub kind: MetricKind,
    pub threshold: f32,
    pub top_k: usize,
    pub n_images: usize,
    pub n_labels: usize,
    /// Mean over classes with positives.
    pub mean_average_precision: f64,
    /// Predictions `p ≥ threshold`.
    pub at_threshold: PrecisionRecall,
    /// Predictions among each image's `top_k` highest scores, `p ≥ threshold`.
    pub top: PrecisionRecall,
    /// AP of every class with positives, in label order.
    pub per_class_ap: Vec<(String, f64)>,
    /// Classes with no positive target (after removing ignored ones): not in mAP nor CR.
    pub classes_without_positives: Vec<String>,
    pub pedestrian: Option<PedestrianMetrics>,
}

impl Serialize for Report {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct ClassAps<'a>(&'a [(String, f64)]);
        impl Serialize for ClassAps<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_map(self.0.iter().map(|(label, ap)| (label, ap)))
            }
        }
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("mAP", &self.mean_average_precision)?;
        for (key, value) in self.at_threshold.entries() {
            map.serialize_entry(key, &value)?;
        }
        map.serialize_entry(&format!("top{}", self.top_k), &self.top)?;
        map.serialize_entry("per_class_ap", &ClassAps(&self.per_class_ap))?;
        map.serialize_entry("classes_without_positives", &self.classes_without_positives)?;
        if let Some(pedestrian) = &self.pedestrian {
            map.serialize_entry("mA", &pedestrian.mean_accuracy)?;
            map.serialize_entry("Acc", &pedestrian.accuracy)?;
            map.serialize_entry("Prec", &pedestrian.precision)?;
            map.serialize_entry("Rec", &pedestrian.recall)?;
            map.serialize_entry("F1", &pedestrian.f1)?;
        }
        map.end()
    }
}

impl Report {
    /// The JSON the CLI prints with `--json`.
    pub fn to_json(&self) -> serde_json::Value {
        // A map of strings and finite numbers always serialises.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// `(name, percent)` of the headline metrics, top-k ones as `top3 CP`: the rows of the
    /// report's metric table and of the delta against a previous run.
    pub fn headline(&self) -> Vec<(String, f64)> {
        flatten_metrics_json(&self.to_json())
    }

    /// Human-readable table of the headline metrics and the classes left out.
    pub fn to_table(&self) -> String {
        self.to_string()
    }

    /// One line a class with positives: label and AP, in label order.
    pub fn per_class_table(&self) -> String {
        let width = self.per_class_ap.iter().map(|(label, _)| label.chars().count()).max().unwrap_or(5).max(5);
        let mut text = format!("{:<width$}  {:>6}\n", "label", "AP");
        for (label, ap) in &self.per_class_ap {
            text.push_str(&format!("{label:<width$}  {ap:>6.2}\n"));
        }
        text
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} images, {} labels, kind {}, threshold {}, top-{}",
            self.n_images, self.n_labels, self.kind, self.threshold, self.top_k
        )?;
        for (name, value) in self.headline() {
            writeln!(f, "{name:<10} {value:>7.2}")?;
        }
        if !self.classes_without_positives.is_empty() {
            let names: Vec<String> = self.classes_without_positives.iter().map(|label| format!("`{label}`")).collect();
            writeln!(f, "{} classes without positives (not in mAP, CR): {}", names.len(), names.join(", "))?;
        }
        if let Some(pedestrian) = &self.pedestrian
            && !pedestrian.classes_outside_mean_accuracy.is_empty()
        {
            let names: Vec<String> =
                pedestrian.classes_outside_mean_accuracy.iter().map(|label| format!("`{label}`")).collect();
            writeln!(f, "{} classes not in mA (no positives or no negatives): {}", names.len(), names.join(", "))?;
        }
        Ok(())
    }
}

/// `(name, value)` of every number in a metrics JSON object: top-level numbers as they are,
/// numbers of nested `top{k}` objects as `top{k} CP`; `per_class_ap` is left out. Reads a
/// previous run's `metrics.json` for the report's delta.
pub fn flatten_metrics_json(json: &serde_json::Value) -> Vec<(String, f64)> {
    let mut flat = Vec::new();
    let Some(object) = json.as_object() else { return flat };
    for (key, value) in object {
        match value {
            serde_json::Value::Number(number) => {
                if let Some(number) = number.as_f64() {
                    flat.push((key.clone(), number));
                }
            }
            serde_json::Value::Object(inner) if key.starts_with("top") => {
                for (inner_key, inner_value) in inner {
                    if let Some(number) = inner_value.as_f64() {
                        flat.push((metric_names::display(&format!("{key}.{inner_key}")), number));
                    }
                }
            }
            _ => {}
        }
    }
    flat
}

/// Names of the headline metrics of a kind, in table order, as text tables print them
/// (`top3 CF1`; [`metric_names::headline`]).
pub fn headline_names(kind: MetricKind, top_k: usize) -> Vec<String> {
    metric_names::headline(kind, top_k as u32).iter().map(|name| metric_names::display(name)).collect()
}

fn harmonic_mean(a: f64, b: f64) -> f64 {
    if a + b == 0.0 { 0.0 } else { 2.0 * a * b / (a + b) }
}

/// mA over the classes with both positives and negatives (the others are named), and the
/// instance-based accuracy, precision, recall and F1 averaged over images.
fn pedestrian_metrics(
    data: &EvalData,
    per_class: &[(Option<f64>, ClassCounts)],
    totals: &ImageTotals,
) -> Result<PedestrianMetrics, MetricsError> {
    let mut balanced = Vec::new();
    let mut outside = Vec::new();
    for (label, (_, counts)) in data.labels().iter().zip(per_class) {
        if counts.positives > 0 && counts.negatives > 0 {
            let true_positive_rate = counts.correct as f64 / counts.positives as f64;
            let true_negative_rate = counts.true_negatives as f64 / counts.negatives as f64;
            balanced.push((true_positive_rate + true_negative_rate) / 2.0);
        } else {
            outside.push(label.clone());
        }
    }
    if balanced.is_empty() {
        return Err(MetricsError::NoMeanAccuracy);
    }
    let images = data.n_images() as f64;
    let precision = totals.precision / images;
    let recall = totals.recall / images;
    Ok(PedestrianMetrics {
        mean_accuracy: 100.0 * balanced.iter().sum::<f64>() / balanced.len() as f64,
        accuracy: 100.0 * totals.accuracy / images,
        precision: 100.0 * precision,
        recall: 100.0 * recall,
        f1: 100.0 * harmonic_mean(precision, recall),
        classes_outside_mean_accuracy: outside,
    })
}

pub(crate) fn evaluate(data: &EvalData, options: &EvalOptions) -> Result<Report, MetricsError> {
    let EvalOptions { kind, threshold, top_k } = *options;
    if !(0.0..=1.0).contains(&threshold) {
        return Err(MetricsError::InvalidThreshold(threshold));
    }
    if top_k == 0 {
        return Err(MetricsError::InvalidTopK(top_k));
    }
    let started = std::time::Instant::now();
    let labels = data.labels();
    let per_class: Vec<(Option<f64>, ClassCounts)> = (0..data.n_labels())
        .into_par_iter()
        .map_init(
            || (Vec::with_capacity(data.n_images()), Vec::with_capacity(data.n_images())),
            |(keys, scratch), label| {
                let scores = data.scores().column(label);
                let targets = data.targets().column(label);
                let positives = rank(scores, targets, keys, scratch);
                (ap_of_ranking(keys, positives), class_counts(scores, targets, threshold))
            },
        )
        .collect();

    let mut per_class_ap = Vec::new();
    let mut classes_without_positives = Vec::new();
    for (label, (ap, _)) in labels.iter().zip(&per_class) {
        match ap {
            Some(ap) => per_class_ap.push((label.clone(), 100.0 * ap)),
            None => classes_without_positives.push(label.clone()),
        }
    }
    if per_class_ap.is_empty() {
        return Err(MetricsError::NoPositives { images: data.n_images() });
    }
    let mean_average_precision = per_class_ap.iter().map(|(_, ap)| ap).sum::<f64>() / per_class_ap.len() as f64;

    let correct: Vec<u64> = per_class.iter().map(|(_, counts)| counts.correct).collect();
    let predicted: Vec<u64> = per_class.iter().map(|(_, counts)| counts.predicted).collect();
    let positives: Vec<u64> = per_class.iter().map(|(_, counts)| counts.positives).collect();
    let at_threshold = PrecisionRecall::from_counts(&correct, &predicted, &positives);

    tracing::debug!(seconds = started.elapsed().as_secs_f64(), "ranked and counted every class");
    let pedestrian_kind = kind == MetricKind::Pedestrian;
    let totals = image_totals(data, threshold, top_k, pedestrian_kind);
    tracing::debug!(seconds = started.elapsed().as_secs_f64(), "counted top-k and instance metrics");
    let top = PrecisionRecall::from_counts(&totals.top_correct, &totals.top_predicted, &positives);

    let pedestrian = if pedestrian_kind { Some(pedestrian_metrics(data, &per_class, &totals)?) } else { None };

    Ok(Report {
        kind,
        threshold,
        top_k,
        n_images: data.n_images(),
        n_labels: data.n_labels(),
        mean_average_precision,
        at_threshold,
        top,
        per_class_ap,
        classes_without_positives,
        pedestrian,
    })
}

/// Precision-recall curves of the `count` best and `count` worst classes by AP (best first,
/// each class once), thinned to about `max_points` points each: the report's PR figure.
pub fn best_and_worst_curves(data: &EvalData, report: &Report, count: usize, max_points: usize) -> Vec<PrCurve> {
    let mut ranked: Vec<&(String, f64)> = report.per_class_ap.iter().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut chosen: Vec<&str> = ranked.iter().take(count).map(|(label, _)| label.as_str()).collect();
    for (label, _) in ranked.iter().rev().take(count).rev() {
        if !chosen.contains(&label.as_str()) {
            chosen.push(label);
        }
    }
    chosen
        .into_iter()
        .filter_map(|label| {
            let index = data.label_index(label)?;
            let curve = precision_recall_curve(label, data.scores().column(index), data.targets().column(index))?;
            Some(curve.thinned(max_points))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(scores: &[f32], targets: &[i8], n: usize, labels: &[&str]) -> EvalData {
        let images = (0..n).map(|index| format!("i{index}")).collect();
        let labels = labels.iter().map(|label| label.to_string()).collect();
        EvalData::from_row_major(images, labels, scores, targets).expect("valid")
    }

    #[test]
    fn json_keys_come_in_the_documented_order() {
        let data = data(&[0.9, 0.2, 0.3, 0.6, 0.8, 0.1], &[1, 0, 0, 0, 1, -1], 3, &["cat", "dog"]);
        let options = EvalOptions { kind: MetricKind::Pedestrian, ..EvalOptions::default() };
        let json = evaluate(&data, &options).expect("report").to_json();
        let keys: Vec<&str> = json.as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "mAP",
                "CP",
                "CR",
                "CF1",
                "OP",
                "OR",
                "OF1",
                "top3",
                "per_class_ap",
                "classes_without_positives",
                "mA",
                "Acc",
                "Prec",
                "Rec",
                "F1"
            ]
        );
        let top: Vec<&str> = json["top3"].as_object().expect("object").keys().map(String::as_str).collect();
        assert_eq!(top, ["CP", "CR", "CF1", "OP", "OR", "OF1"]);
        assert_eq!(json["classes_without_positives"], serde_json::json!(["dog"]));
        assert_eq!(json["per_class_ap"]["cat"], serde_json::json!(100.0));
        assert!(json["per_class_ap"].get("dog").is_none());
    }

    #[test]
    fn natural_json_has_no_pedestrian_keys_and_names_top_k() {
        let data = data(&[0.9, 0.2, 0.3, 0.6], &[1, 0, 0, 1], 2, &["a", "b"]);
        let options = EvalOptions { top_k: 1, ..EvalOptions::default() };
        let report = evaluate(&data, &options).expect("report");
        let json = report.to_json();
        assert!(json.get("mA").is_none());
        assert!(json.get("top1").is_some());
        let names: Vec<String> = report.headline().into_iter().map(|(name, _)| name).collect();
        assert_eq!(names, headline_names(MetricKind::Natural, 1));
    }

    #[test]
    fn counting_metrics_by_hand() {
        // 2 images × 3 labels; label c never positive, label b never predicted.
        // scores: i0 [0.9 0.4 0.6], i1 [0.7 0.3 0.2]; targets: i0 [1 1 0], i1 [0 1 0]
        let data = data(&[0.9, 0.4, 0.6, 0.7, 0.3, 0.2], &[1, 1, 0, 0, 1, 0], 2, &["a", "b", "c"]);
        let report = evaluate(&data, &EvalOptions::default()).expect("report");
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        // Nc = [1,0,0], Np = [2,0,1], Ng = [1,2,0]
        assert!(close(report.at_threshold.class_precision, 100.0 * (0.5 + 0.0 + 0.0) / 3.0));
        assert!(close(report.at_threshold.class_recall, 100.0 * (1.0 + 0.0) / 2.0));
        assert!(close(report.at_threshold.overall_precision, 100.0 / 3.0));
        assert!(close(report.at_threshold.overall_recall, 100.0 / 3.0));
        assert!(close(report.at_threshold.overall_f1, 100.0 / 3.0));
        assert_eq!(report.classes_without_positives, vec!["c".to_owned()]);
        // AP a: 0.9(+) 0.7(-) → 1; AP b: 0.4(+) 0.3(+) → 1
        assert!(close(report.mean_average_precision, 100.0));
        assert!(report.to_table().contains("classes without positives (not in mAP, CR): `c`"));
    }

    #[test]
    fn row_major_map_equals_the_reports_bit_for_bit() {
        // 40 images × 3 labels with many tied scores and some ignored targets.
        let (n, labels) = (40, 3);
        let scores: Vec<f32> = (0..n * labels).map(|index| ((index * 7919) % 11) as f32 / 10.0).collect();
        let targets: Vec<i8> = (0..n * labels).map(|index| ((index * 104_729) % 3) as i8 - 1).collect();
        let report = evaluate(&data(&scores, &targets, n, &["a", "b", "c"]), &EvalOptions::default()).expect("report");
        let map = crate::mean_average_precision(&scores, &targets, labels).expect("positives");
        assert_eq!(
            map.to_bits(),
            report.mean_average_precision.to_bits(),
            "{map} vs {}",
            report.mean_average_precision
        );
    }

    #[test]
    fn degenerate_inputs_are_errors() {
        let all_negative = data(&[0.9, 0.2], &[0, -1], 2, &["a"]);
        assert!(matches!(
            evaluate(&all_negative, &EvalOptions::default()),
            Err(MetricsError::NoPositives { images: 2 })
        ));
        let fine = data(&[0.9, 0.2], &[1, 0], 2, &["a"]);
        assert!(matches!(
            evaluate(&fine, &EvalOptions { threshold: 1.5, ..EvalOptions::default() }),
            Err(MetricsError::InvalidThreshold(_))
        ));
        assert!(matches!(
            evaluate(&fine, &EvalOptions { top_k: 0, ..EvalOptions::default() }),
            Err(MetricsError::InvalidTopK(0))
        ));
        let only_positives = data(&[0.9, 0.2], &[1, 1], 2, &["a"]);
        let pedestrian = EvalOptions { kind: MetricKind::Pedestrian, ..EvalOptions::default() };
        assert!(matches!(evaluate(&only_positives, &pedestrian), Err(MetricsError::NoMeanAccuracy)));
    }

    #[test]
    fn metric_kind_parses() {
        assert_eq!("pedestrian".parse::<MetricKind>(), Ok(MetricKind::Pedestrian));
        assert!("remote".parse::<MetricKind>().is_err());
        assert_eq!(MetricKind::Natural.to_string(), "natural");
    }

    #[test]
    fn best_and_worst_curves_pick_by_ap() {
        // a: AP 1, b: AP 1/3, c: AP 5/6
        let data =
            data(&[0.9, 0.1, 0.5, 0.1, 0.2, 0.3, 0.8, 0.9, 0.4], &[1, 1, 1, 0, 0, 1, 0, 0, 0], 3, &["a", "b", "c"]);
        let report = evaluate(&data, &EvalOptions::default()).expect("report");
        let curves = best_and_worst_curves(&data, &report, 1, 10);
        let labels: Vec<&str> = curves.iter().map(|curve| curve.label.as_str()).collect();
        assert_eq!(labels, ["a", "b"]);
        let worst = report.per_class_ap.iter().min_by(|a, b| a.1.total_cmp(&b.1)).expect("classes");
        assert!((worst.1 - 100.0 / 3.0).abs() < 1e-9);
    }
}
