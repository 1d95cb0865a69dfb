//! Ranking metrics of one class: average precision and the precision-recall curve.
//!
//! Each non-ignored `(score, target)` pair is packed into one `u32` — the score's bits (a
//! non-negative `f32` orders like its bit pattern, and a probability's bits fit in 30) above a
//! positive flag — so a class sorts as plain integers with a three-pass radix sort, without
//! comparisons through floats or per-element allocation.

use serde::Serialize;

/// One point of a precision-recall curve: everything scoring `≥ threshold` is predicted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PrPoint {
    pub threshold: f32,
    /// Fractions in `[0, 1]`.
    pub recall: f64,
    pub precision: f64,
}

/// Precision-recall curve of one class, one point per distinct score (highest first).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrCurve {
    pub label: String,
    /// Percent, as in the report.
    pub average_precision: f64,
    pub points: Vec<PrPoint>,
}

impl PrCurve {
    /// At most about `max_points` points, evenly spaced in recall; the first and last are kept,
    /// so the curve's extent is unchanged.
    pub fn thinned(&self, max_points: usize) -> Self {
        let points = if self.points.len() <= max_points.max(2) {
            self.points.clone()
        } else {
            let step = 1.0 / max_points.max(1) as f64;
            let mut kept: Vec<PrPoint> = Vec::with_capacity(max_points + 1);
            let last = self.points.len() - 1;
            for (index, point) in self.points.iter().enumerate() {
                let far_enough = kept.last().is_none_or(|previous| point.recall - previous.recall >= step);
                if index == 0 || index == last || far_enough {
                    kept.push(*point);
                }
            }
            kept
        };
        Self { label: self.label.clone(), average_precision: self.average_precision, points }
    }
}

/// Sorts the non-ignored entries of one class into `keys` (ascending; read it backwards) and
/// returns the number of positives. Scores must be probabilities (as [`crate::EvalData`]
/// guarantees); anything else is clamped into `[0, 1]`.
pub(crate) fn rank(scores: &[f32], targets: &[i8], keys: &mut Vec<u32>, scratch: &mut Vec<u32>) -> usize {
    keys.clear();
    let mut positives = 0;
    for (&score, &target) in scores.iter().zip(targets) {
        if target < 0 {
            continue;
        }
        let positive = u32::from(target == 1);
        positives += positive as usize;
        // `clamp` also turns −0.0 into +0.0 (whose bit pattern orders correctly) and NaN into 0.
        let score = if score > 0.0 { score.min(1.0) } else { 0.0 };
        keys.push((score.to_bits() << 1) | positive);
    }
    radix_sort(keys, scratch);
    positives
}

/// Least-significant-digit radix sort of 33 bits in three 11-bit passes; a pass whose digit is
/// the same for every key is skipped.
fn radix_sort(keys: &mut Vec<u32>, scratch: &mut Vec<u32>) {
    const BITS: u32 = 11;
    const BUCKETS: usize = 1 << BITS;
    const MASK: u32 = (1 << BITS) - 1;
    if keys.len() < 256 {
        keys.sort_unstable();
        return;
    }
    let mut counts = vec![[0u32; BUCKETS]; 3];
    for &key in keys.iter() {
        for (pass, histogram) in counts.iter_mut().enumerate() {
            histogram[((key >> (BITS * pass as u32)) & MASK) as usize] += 1;
        }
    }
    scratch.clear();
    scratch.resize(keys.len(), 0);
    for (pass, histogram) in counts.iter().enumerate() {
        if histogram.iter().any(|&count| count as usize == keys.len()) {
            continue;
        }
        let mut offsets = [0u32; BUCKETS];
        let mut total = 0;
        for (offset, &count) in offsets.iter_mut().zip(histogram) {
            *offset = total;
            total += count;
        }
        let shift = BITS * pass as u32;
        for &key in keys.iter() {
            let digit = ((key >> shift) & MASK) as usize;
            scratch[offsets[digit] as usize] = key;
            offsets[digit] += 1;
        }
        std::mem::swap(keys, scratch);
    }
}

/// Walks the ranking from the highest score down, one call per group of equal scores with
/// `(score bits, true positives so far, entries so far, positives in this group)`.
fn walk_groups(keys: &[u32], mut visit: impl FnMut(u32, usize, usize, usize)) {
    let mut true_positives = 0;
    let mut seen = 0;
    let mut index = keys.len();
    while index > 0 {
        let score = keys[index - 1] >> 1;
        let mut group_positives = 0;
        while index > 0 && keys[index - 1] >> 1 == score {
            group_positives += (keys[index - 1] & 1) as usize;
            seen += 1;
            index -= 1;
        }
        true_positives += group_positives;
        visit(score, true_positives, seen, group_positives);
    }
}

/// AP as a fraction from a ranking made by [`rank`]; `None` without positives.
pub(crate) fn ap_of_ranking(keys: &[u32], positives: usize) -> Option<f64> {
    if positives == 0 {
        return None;
    }
    let mut sum = 0.0;
    walk_groups(keys, |_, true_positives, seen, group_positives| {
        if group_positives > 0 {
            sum += group_positives as f64 * true_positives as f64 / seen as f64;
        }
    });
    Some(sum / positives as f64)
}

/// Average precision of one class as a fraction in `[0, 1]` (ASL convention, ties share the
/// rank at the end of their group, targets −1 left out); `None` when the class has no positive.
/// Scores are probabilities; others are clamped into `[0, 1]`.
pub fn average_precision(scores: &[f32], targets: &[i8]) -> Option<f64> {
    let mut keys = Vec::with_capacity(scores.len());
    let positives = rank(scores, targets, &mut keys, &mut Vec::new());
    ap_of_ranking(&keys, positives)
}

/// Mean AP in percent over the classes that have a positive, for row-major `[n, classes]`
/// scores and targets as a model emits them; `None` when no class has a positive (or `classes`
/// is 0). The same per-class AP and the same average as [`crate::Report::mean_average_precision`]
/// (bit for bit), without the label names and validation of [`crate::evaluate`]: the training
/// loop's validation mAP.
///
/// # Panics
/// If `scores` and `targets` differ in length or are not a multiple of `classes`.
pub fn mean_average_precision(scores: &[f32], targets: &[i8], classes: usize) -> Option<f64> {
    assert_eq!(scores.len(), targets.len(), "scores and targets differ in length");
    if classes == 0 {
        return None;
    }
    assert!(scores.len().is_multiple_of(classes), "not an [n, {classes}] matrix");
    let n = scores.len() / classes;
    let (mut column_scores, mut column_targets) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut keys, mut scratch) = (Vec::with_capacity(n), Vec::new());
    let mut sum = 0.0;
    let mut with_positives = 0usize;
    for class in 0..classes {
        column_scores.clear();
        column_targets.clear();
        column_scores.extend(scores.iter().skip(class).step_by(classes));
        column_targets.extend(targets.iter().skip(class).step_by(classes));
        let positives = rank(&column_scores, &column_targets, &mut keys, &mut scratch);
        if let Some(ap) = ap_of_ranking(&keys, positives) {
            sum += 100.0 * ap;
            with_positives += 1;
        }
    }
    (with_positives > 0).then(|| sum / with_positives as f64)
}

/// Precision-recall points of one class, one per distinct score from the highest down; `None`
/// when the class has no positive.
pub fn precision_recall_curve(label: &str, scores: &[f32], targets: &[i8]) -> Option<PrCurve> {
    let mut keys = Vec::with_capacity(scores.len());
    let positives = rank(scores, targets, &mut keys, &mut Vec::new());
    let average_precision = ap_of_ranking(&keys, positives)?;
    let mut points = Vec::new();
    walk_groups(&keys, |score, true_positives, seen, _| {
        points.push(PrPoint {
            threshold: f32::from_bits(score),
            recall: true_positives as f64 / positives as f64,
            precision: true_positives as f64 / seen as f64,
        });
    });
    Some(PrCurve { label: label.to_owned(), average_precision: 100.0 * average_precision, points })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn ap_without_ties_is_the_asl_formula() {
        // ranking: 0.9(+) 0.8(-) 0.7(+) 0.1(-) → (1/1 + 2/3) / 2
        let ap = average_precision(&[0.1, 0.9, 0.7, 0.8], &[0, 1, 1, 0]).expect("positives");
        assert!(close(ap, (1.0 + 2.0 / 3.0) / 2.0), "{ap}");
    }

    #[test]
    fn ignored_targets_are_removed_before_ranking() {
        // The ignored 0.95 would otherwise push the positive to rank 2.
        let ap = average_precision(&[0.95, 0.9, 0.2], &[-1, 1, 0]).expect("positives");
        assert!(close(ap, 1.0), "{ap}");
    }

    #[test]
    fn ties_share_the_rank_at_the_end_of_their_group() {
        // 0.5(+) and 0.5(-) tied at the top: the positive gets precision 1/2, whatever the order.
        for (scores, targets) in [([0.5, 0.5, 0.1], [1, 0, 0]), ([0.5, 0.5, 0.1], [0, 1, 0])] {
            let ap = average_precision(&scores, &targets).expect("positives");
            assert!(close(ap, 0.5), "{ap}");
        }
        // Two tied positives below a negative: both get 2/3.
        let ap = average_precision(&[0.9, 0.4, 0.4], &[0, 1, 1]).expect("positives");
        assert!(close(ap, 2.0 / 3.0), "{ap}");
    }

    #[test]
    fn negative_zero_ties_with_zero() {
        let ap = average_precision(&[-0.0, 0.0], &[1, 0]).expect("positives");
        assert!(close(ap, 0.5), "{ap}");
    }

    #[test]
    fn radix_sort_sorts_like_sort_unstable() {
        let mut state = 99u64;
        for length in [0, 1, 255, 256, 1000, 5000] {
            let mut keys: Vec<u32> = (0..length)
                .map(|_| {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    // Few distinct high digits and many ties, as probabilities give.
                    ((state >> 33) as u32 % 50_000) << 9 | (state >> 20) as u32 & 1
                })
                .collect();
            let mut expected = keys.clone();
            expected.sort_unstable();
            radix_sort(&mut keys, &mut Vec::new());
            assert_eq!(keys, expected, "length {length}");
        }
        let mut same = vec![7u32; 1000];
        radix_sort(&mut same, &mut Vec::new());
        assert_eq!(same, vec![7u32; 1000]);
    }

    #[test]
    fn ap_on_many_entries_matches_a_comparison_sort() {
        let mut state = 5u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 40) as u32
        };
        let scores: Vec<f32> = (0..3000).map(|_| (next() % 200) as f32 / 199.0).collect();
        let targets: Vec<i8> = (0..3000).map(|_| (next() % 3) as i8 - 1).collect();
        // Reference: sort pairs by score (a comparison sort), then the grouped formula.
        let mut pairs: Vec<(f32, i8)> =
            scores.iter().copied().zip(targets.iter().copied()).filter(|&(_, target)| target >= 0).collect();
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let positives = pairs.iter().filter(|pair| pair.1 == 1).count() as f64;
        let mut sum = 0.0;
        for pair in &pairs {
            if pair.1 == 1 {
                let end = pairs.iter().rposition(|other| other.0 == pair.0).expect("itself");
                let hits = pairs[..=end].iter().filter(|other| other.1 == 1).count() as f64;
                sum += hits / (end + 1) as f64;
            }
        }
        let ap = average_precision(&scores, &targets).expect("positives");
        assert!((ap - sum / positives).abs() < 1e-12, "{ap} vs {}", sum / positives);
    }

    #[test]
    fn row_major_map_averages_classes_with_positives() {
        // Class 0 perfect (AP 1); class 1: a positive tied with a negative at the top (AP 1/2);
        // class 2 has no positive.
        let scores = [0.9, 0.5, 0.5, 0.2, 0.5, 0.5];
        let targets = [1, 1, 0, 0, 0, -1];
        let map = mean_average_precision(&scores, &targets, 3).expect("positives");
        assert!(close(map, 75.0), "{map}");
        assert_eq!(mean_average_precision(&[0.1, 0.2], &[0, 0], 1), None);
        assert_eq!(mean_average_precision(&[], &[], 0), None);
    }

    #[test]
    fn no_positives_is_none() {
        assert_eq!(average_precision(&[0.3, 0.2], &[0, -1]), None);
        assert_eq!(average_precision(&[], &[]), None);
    }

    #[test]
    fn curve_has_one_point_per_distinct_score() {
        let curve = precision_recall_curve("cat", &[0.9, 0.5, 0.5, 0.1], &[1, 0, 1, 0]).expect("positives");
        let points: Vec<(f32, f64, f64)> =
            curve.points.iter().map(|point| (point.threshold, point.recall, point.precision)).collect();
        assert_eq!(points, vec![(0.9, 0.5, 1.0), (0.5, 1.0, 2.0 / 3.0), (0.1, 1.0, 0.5)]);
        assert!(close(curve.average_precision, 100.0 * (1.0 + 2.0 / 3.0) / 2.0));
    }

    #[test]
    fn thinning_keeps_the_ends() {
        let scores: Vec<f32> = (0..1000).map(|index| index as f32 / 1000.0).collect();
        let targets: Vec<i8> = (0..1000).map(|index| (index % 3 == 0) as i8).collect();
        let curve = precision_recall_curve("x", &scores, &targets).expect("positives");
        let thin = curve.thinned(50);
        assert!(thin.points.len() <= 52 && thin.points.len() >= 40, "{}", thin.points.len());
        assert_eq!(thin.points.first(), curve.points.first());
        assert_eq!(thin.points.last(), curve.points.last());
    }
}
