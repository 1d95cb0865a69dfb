//! Validation mAP for the per-epoch log (ASL convention, SSPA.md "Metrics"). The full metric set
//! lives in the metrics crate; this is the one number the training loop needs.

/// Average precision of one class: rank by score (descending; ties keep input order), ignored
/// targets (−1) removed, `AP = (1/P) Σ_{k: y_k = 1} precision@k`. `None` when the class has no
/// positive.
pub fn average_precision(scores: &[f32], targets: &[i8]) -> Option<f64> {
    let mut ranked: Vec<(f32, bool)> = scores
        .iter()
        .zip(targets)
        .filter(|(_, target)| **target != -1)
        .map(|(&score, &target)| (score, target == 1))
        .collect();
    let positives = ranked.iter().filter(|(_, positive)| *positive).count();
    if positives == 0 {
        return None;
    }
    // Stable sort: NaN scores rank last.
    ranked.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or_else(|| a.0.is_nan().cmp(&b.0.is_nan())));
    let mut hits = 0usize;
    let mut sum = 0.0;
    for (rank, (_, positive)) in ranked.iter().enumerate() {
        if *positive {
            hits += 1;
            sum += hits as f64 / (rank + 1) as f64;
        }
    }
    Some(sum / positives as f64)
}

/// Mean AP in percent over the classes that have a positive, for row-major `[n, C]` scores and
/// targets; `None` when no class has one.
///
/// # Panics
/// If `scores` and `targets` differ in length or are not a multiple of `classes`.
pub fn mean_average_precision(scores: &[f32], targets: &[i8], classes: usize) -> Option<f64> {
    assert_eq!(scores.len(), targets.len(), "scores and targets differ in length");
    assert!(classes > 0 && scores.len().is_multiple_of(classes), "not an [n, C] matrix");
    let n = scores.len() / classes;
    let aps: Vec<f64> = (0..classes)
        .filter_map(|class| {
            let column = |values: &[f32]| (0..n).map(|i| values[i * classes + class]).collect::<Vec<_>>();
            let class_targets: Vec<i8> = (0..n).map(|i| targets[i * classes + class]).collect();
            average_precision(&column(scores), &class_targets)
        })
        .collect();
    (!aps.is_empty()).then(|| 100.0 * aps.iter().sum::<f64>() / aps.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ap_of_known_rankings() {
        // Ranked: +, −, +  →  (1/1 + 2/3) / 2.
        let ap = average_precision(&[0.9, 0.8, 0.7], &[1, 0, 1]).expect("positives");
        assert!((ap - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        // The ignored negative at the top is removed first: perfect ranking.
        assert_eq!(average_precision(&[0.99, 0.9, 0.1], &[-1, 1, 0]), Some(1.0));
        assert_eq!(average_precision(&[0.3, 0.2], &[0, -1]), None);
    }

    #[test]
    fn map_skips_classes_without_positives() {
        // Class 0 perfect (AP 1), class 1 inverted (AP 1/2), class 2 has no positive.
        let scores = [0.9, 0.1, 0.5, 0.2, 0.8, 0.5];
        let targets = [1, 1, 0, 0, 0, -1];
        let map = mean_average_precision(&scores, &targets, 3).expect("positives");
        assert!((map - 75.0).abs() < 1e-9, "{map}");
        assert_eq!(mean_average_precision(&[0.1, 0.2], &[0, 0], 1), None);
    }
}
