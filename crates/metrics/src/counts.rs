//! Counting metrics: per-class counts at a threshold (one pass a column) and the per-image
//! quantities — top-k selections and instance metrics — (one pass over blocks of images, reading
//! each column's block contiguously).

use rayon::prelude::*;

use crate::data::EvalData;

/// Counts of one class over its non-ignored targets.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct ClassCounts {
    /// `Nc`: predicted and positive.
    pub correct: u64,
    /// `Np`.
    pub predicted: u64,
    /// `Ng`.
    pub positives: u64,
    pub negatives: u64,
    /// Not predicted and negative.
    pub true_negatives: u64,
}

pub(crate) fn class_counts(scores: &[f32], targets: &[i8], threshold: f32) -> ClassCounts {
    let mut counts = ClassCounts::default();
    for (&score, &target) in scores.iter().zip(targets) {
        let predicted = u64::from(score >= threshold);
        match target {
            1 => {
                counts.positives += 1;
                counts.correct += predicted;
                counts.predicted += predicted;
            }
            0 => {
                counts.negatives += 1;
                counts.predicted += predicted;
                counts.true_negatives += 1 - predicted;
            }
            _ => {}
        }
    }
    counts
}

/// What the pass over images yields.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ImageTotals {
    /// Per class `Nc` of the top-k predictions.
    pub top_correct: Vec<u64>,
    /// Per class `Np` of the top-k predictions.
    pub top_predicted: Vec<u64>,
    /// Sums over images of the instance Accuracy, Precision and Recall (fractions).
    pub accuracy: f64,
    pub precision: f64,
    pub recall: f64,
}

impl ImageTotals {
    fn zero(labels: usize) -> Self {
        Self {
            top_correct: vec![0; labels],
            top_predicted: vec![0; labels],
            accuracy: 0.0,
            precision: 0.0,
            recall: 0.0,
        }
    }

    fn add(mut self, other: Self) -> Self {
        for (sum, value) in self.top_correct.iter_mut().zip(other.top_correct) {
            *sum += value;
        }
        for (sum, value) in self.top_predicted.iter_mut().zip(other.top_predicted) {
            *sum += value;
        }
        self.accuracy += other.accuracy;
        self.precision += other.precision;
        self.recall += other.recall;
        self
    }
}

/// Images a block: small enough that a block's top-k slots and counters stay in cache.
const BLOCK: usize = 256;

/// Top-k counts (`k ≥ 1`) and, when `instances`, the instance-metric sums.
pub(crate) fn image_totals(data: &EvalData, threshold: f32, k: usize, instances: bool) -> ImageTotals {
    let n = data.n_images();
    let labels = data.n_labels();
    (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .fold(
            || ImageTotals::zero(labels),
            |mut totals, block| {
                let start = block * BLOCK;
                let end = n.min(start + BLOCK);
                add_block(data, threshold, k, instances, start..end, &mut totals);
                totals
            },
        )
        .reduce(|| ImageTotals::zero(labels), ImageTotals::add)
}

fn add_block(
    data: &EvalData,
    threshold: f32,
    k: usize,
    instances: bool,
    rows: std::ops::Range<usize>,
    totals: &mut ImageTotals,
) {
    let len = rows.len();
    // Per image, the k best (score, label) so far, best first; label `u32::MAX` = empty slot.
    let mut best_scores = vec![f32::NEG_INFINITY; len * k];
    let mut best_labels = vec![u32::MAX; len * k];
    let mut intersection = vec![0u32; if instances { len } else { 0 }];
    let mut predicted = vec![0u32; intersection.len()];
    let mut positives = vec![0u32; intersection.len()];
    let scores = data.scores();
    let targets = data.targets();
    for label in 0..data.n_labels() {
        let column_scores = &scores.column(label)[rows.clone()];
        let column_targets = &targets.column(label)[rows.clone()];
        for (row, (&score, &target)) in column_scores.iter().zip(column_targets).enumerate() {
            if score >= threshold {
                let slot_scores = &mut best_scores[row * k..(row + 1) * k];
                // Strictly greater: on equal scores the label seen first (earlier) stays.
                if score > slot_scores[k - 1] {
                    let slot_labels = &mut best_labels[row * k..(row + 1) * k];
                    let mut position = k - 1;
                    while position > 0 && score > slot_scores[position - 1] {
                        slot_scores[position] = slot_scores[position - 1];
                        slot_labels[position] = slot_labels[position - 1];
                        position -= 1;
                    }
                    slot_scores[position] = score;
                    // Label counts fit u32: a matrix of 2^32 columns would not fit in memory.
                    slot_labels[position] = label as u32;
                }
                if instances && target >= 0 {
                    predicted[row] += 1;
                    intersection[row] += u32::from(target == 1);
                }
            }
            if instances && target == 1 {
                positives[row] += 1;
            }
        }
    }
    for (row, slot_labels) in best_labels.chunks_exact(k).enumerate() {
        for &label in slot_labels.iter().take_while(|&&label| label != u32::MAX) {
            let label = label as usize;
            let target = targets.column(label)[rows.start + row];
            if target >= 0 {
                totals.top_predicted[label] += 1;
                totals.top_correct[label] += u64::from(target == 1);
            }
        }
    }
    if instances {
        for row in 0..len {
            let both = f64::from(intersection[row]);
            let union = predicted[row] + positives[row] - intersection[row];
            totals.accuracy += ratio(both, union);
            totals.precision += ratio(both, predicted[row]);
            totals.recall += ratio(both, positives[row]);
        }
    }
}

/// `numerator / denominator`, 0 for an empty denominator.
fn ratio(numerator: f64, denominator: u32) -> f64 {
    if denominator == 0 { 0.0 } else { numerator / f64::from(denominator) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(scores: &[f32], targets: &[i8], n: usize, c: usize) -> EvalData {
        let images = (0..n).map(|index| format!("i{index}")).collect();
        let labels = (0..c).map(|index| format!("l{index}")).collect();
        EvalData::from_row_major(images, labels, scores, targets).expect("valid")
    }

    #[test]
    fn class_counts_leave_ignored_out() {
        let counts = class_counts(&[0.9, 0.6, 0.4, 0.7, 0.1], &[1, 0, 1, -1, 0], 0.5);
        assert_eq!(counts, ClassCounts { correct: 1, predicted: 2, positives: 2, negatives: 2, true_negatives: 1 });
    }

    #[test]
    fn top_k_needs_the_threshold_and_breaks_ties_by_label_order() {
        // One image, four labels: 0.9 0.7 0.7 0.3 with k = 2 → labels 0 and 1 (1 beats 2 on the tie).
        let totals = image_totals(&data(&[0.9, 0.7, 0.7, 0.3], &[1, 0, 1, 1], 1, 4), 0.5, 2, false);
        assert_eq!(totals.top_predicted, vec![1, 1, 0, 0]);
        assert_eq!(totals.top_correct, vec![1, 0, 0, 0]);
        // k = 4: the 0.3 stays unpredicted (below the threshold).
        let totals = image_totals(&data(&[0.9, 0.7, 0.7, 0.3], &[1, 0, 1, 1], 1, 4), 0.5, 4, false);
        assert_eq!(totals.top_predicted, vec![1, 1, 1, 0]);
    }

    #[test]
    fn top_k_skips_ignored_targets_in_counts() {
        let totals = image_totals(&data(&[0.9, 0.8], &[-1, 1], 1, 2), 0.5, 1, false);
        assert_eq!(totals.top_predicted, vec![0, 0]);
    }

    #[test]
    fn instance_sums_follow_the_definitions() {
        // image 0: predicted {0,1}, truth {1,2} → acc 1/3, prec 1/2, rec 1/2
        // image 1: nothing predicted, no truth → all 0
        // image 2: predicted {0} but target ignored, truth {2} → acc 0, prec 0 (empty), rec 0
        let scores = [0.9, 0.8, 0.1, 0.2, 0.2, 0.2, 0.7, 0.2, 0.3];
        let targets = [0, 1, 1, 0, 0, 0, -1, 0, 1];
        let totals = image_totals(&data(&scores, &targets, 3, 3), 0.5, 3, true);
        assert!((totals.accuracy - 1.0 / 3.0).abs() < 1e-12);
        assert!((totals.precision - 0.5).abs() < 1e-12);
        assert!((totals.recall - 0.5).abs() < 1e-12);
    }

    #[test]
    fn blocks_agree_with_a_naive_per_image_top_k() {
        // More images than a block, to cross block boundaries; many tied scores.
        let n = BLOCK * 2 + 7;
        let c = 5;
        let k = 2;
        let scores: Vec<f32> = (0..n * c).map(|index| ((index * 7919) % 11) as f32 / 10.0).collect();
        let targets: Vec<i8> = (0..n * c).map(|index| ((index * 31) % 3) as i8 - 1).collect();
        let totals = image_totals(&data(&scores, &targets, n, c), 0.5, k, false);
        let mut predicted = vec![0u64; c];
        let mut correct = vec![0u64; c];
        for row in 0..n {
            let mut order: Vec<usize> = (0..c).collect();
            // Stable sort: equal scores keep label order.
            order.sort_by(|&a, &b| scores[row * c + b].total_cmp(&scores[row * c + a]));
            for &label in order.iter().take(k) {
                let target = targets[row * c + label];
                if scores[row * c + label] >= 0.5 && target >= 0 {
                    predicted[label] += 1;
                    correct[label] += u64::from(target == 1);
                }
            }
        }
        assert_eq!(totals.top_predicted, predicted);
        assert_eq!(totals.top_correct, correct);
    }
}
