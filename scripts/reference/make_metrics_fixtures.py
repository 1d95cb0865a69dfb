#!/usr/bin/env python3
"""Reference values for sspa-metrics, written to crates/metrics/tests/fixtures/*.json.

Run once after changing the metric conventions (CI only reads the committed fixtures):

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy scikit-learn
    /tmp/venv/bin/python scripts/reference/make_metrics_fixtures.py

Conventions (the "Metrics" section of the SSPA design page), and how each reference is made:

* AP per class, ASL convention: rank by score, AP = (1/P) sum over positives of precision@k,
  ignored targets (-1) removed first. Ties (equal float32 scores) share the rank at the end of
  their group: each tied positive gets the precision at the group's end. scikit-learn's
  `average_precision_score` groups ties the same way (one threshold per distinct score), so for
  every fixture the reference is scikit-learn's value on the non-ignored entries, and the
  script checks it against an explicit implementation of the formula above (`explicit_ap`).
  ASL's own code ranks ties in an arbitrary argsort order; without ties all three agree.
* Classes without positives are listed by name and left out of mAP and CR.
* CP, CR, OP, OR, OF1 at `p >= threshold`: counts leave ignored targets out, which equals
  setting both truth and prediction to 0 there, then scikit-learn's precision/recall/F1 with
  `average="macro"` (CP, over all classes, zero_division=0), `average="macro"` restricted to
  classes with positives (CR) and `average="micro"` (OP, OR, OF1). CF1 = 2 CP CR / (CP + CR),
  the harmonic mean of the averages (not scikit-learn's macro F1).
* Top-k: per image, the k highest-scoring labels (a stable sort: equal scores go to the label
  that comes first) are predicted when p >= threshold.
* Pedestrian: mA = mean over classes with both positives and negatives of
  `balanced_accuracy_score` (= (TPR + TNR) / 2); instance Accuracy/Precision/Recall are
  scikit-learn's `jaccard_score`/`precision_score`/`recall_score` with `average="samples"` and
  zero_division=0 on the masked matrices; F1 = harmonic mean of mean Precision and Recall.

All expected values are in percent. Scores are stored as float32 values printed exactly.
"""

import json
import pathlib

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    jaccard_score,
    precision_score,
    recall_score,
)

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates" / "metrics" / "tests" / "fixtures"


def explicit_ap(scores, targets):
    """The AP definition written out: ties share the rank at the end of their group."""
    keep = targets >= 0
    s, t = scores[keep], targets[keep]
    positives = int((t == 1).sum())
    if positives == 0:
        return None
    total = 0.0
    for score in np.unique(s)[::-1]:
        group = s == score
        at_or_above = s >= score
        precision = (t[at_or_above] == 1).sum() / at_or_above.sum()
        total += (t[group] == 1).sum() * precision
    return total / positives


def sklearn_ap(scores, targets):
    keep = targets >= 0
    if not (targets[keep] == 1).any():
        return None
    return float(average_precision_score(targets[keep] == 1, scores[keep].astype(np.float64)))


def top_k_predictions(scores, threshold, k):
    predicted = np.zeros(scores.shape, dtype=bool)
    for row in range(scores.shape[0]):
        order = np.argsort(-scores[row], kind="stable")[:k]
        predicted[row, order] = scores[row, order] >= threshold
    return predicted


def counting_metrics(truth, predicted, with_positives):
    cp = precision_score(truth, predicted, average="macro", zero_division=0)
    cr = recall_score(truth, predicted, average="macro", labels=with_positives, zero_division=0)
    flat_truth, flat_predicted = truth.ravel(), predicted.ravel()
    op = precision_score(flat_truth, flat_predicted, zero_division=0)
    orr = recall_score(flat_truth, flat_predicted, zero_division=0)
    of1 = f1_score(flat_truth, flat_predicted, zero_division=0)
    cf1 = 0.0 if cp + cr == 0 else 2 * cp * cr / (cp + cr)
    return {"CP": 100 * cp, "CR": 100 * cr, "CF1": 100 * cf1, "OP": 100 * op, "OR": 100 * orr, "OF1": 100 * of1}


def reference(scores, targets, labels, kind, threshold, top_k):
    threshold = np.float32(threshold)
    per_class_ap = {}
    without = []
    for column, label in enumerate(labels):
        ap = sklearn_ap(scores[:, column], targets[:, column])
        explicit = explicit_ap(scores[:, column], targets[:, column])
        assert (ap is None) == (explicit is None)
        if ap is None:
            without.append(label)
            continue
        assert abs(ap - explicit) < 1e-12, (label, ap, explicit)
        per_class_ap[label] = 100 * ap
    kept = targets >= 0
    truth = ((targets == 1) & kept).astype(int)
    predicted = ((scores >= threshold) & kept).astype(int)
    top = (top_k_predictions(scores, threshold, top_k) & kept).astype(int)
    with_positives = [c for c, label in enumerate(labels) if label in per_class_ap]
    expected = {"mAP": float(np.mean(list(per_class_ap.values())))}
    expected.update(counting_metrics(truth, predicted, with_positives))
    expected[f"top{top_k}"] = counting_metrics(truth, top, with_positives)
    expected["per_class_ap"] = per_class_ap
    expected["classes_without_positives"] = without
    if kind == "pedestrian":
        balanced = []
        for column in range(len(labels)):
            keep = kept[:, column]
            t = targets[keep, column] == 1
            if t.all() or not t.any():
                continue
            balanced.append(balanced_accuracy_score(t, scores[keep, column] >= threshold))
        precision = precision_score(truth, predicted, average="samples", zero_division=0)
        recall = recall_score(truth, predicted, average="samples", zero_division=0)
        expected["mA"] = 100 * float(np.mean(balanced))
        expected["Acc"] = 100 * jaccard_score(truth, predicted, average="samples", zero_division=0)
        expected["Prec"] = 100 * precision
        expected["Rec"] = 100 * recall
        expected["F1"] = 100 * (0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))
    return json.loads(json.dumps(expected, default=float))


def write_case(name, scores, targets, kind="natural", threshold=0.5, top_k=3, note=""):
    scores = scores.astype(np.float32)
    targets = targets.astype(np.int8)
    labels = [f"label {c}" if c % 4 else f"l<{c}>&\"q\"" for c in range(scores.shape[1])]
    case = {
        "note": note,
        "kind": kind,
        "threshold": threshold,
        "top_k": top_k,
        "labels": labels,
        "scores": [[float(v) for v in row] for row in scores],
        "targets": targets.tolist(),
        "expected": reference(scores, targets, labels, kind, threshold, top_k),
    }
    path = OUT / f"{name}.json"
    path.write_text(json.dumps(case, separators=(",", ":")) + "\n")
    print(f"{path.name}: {scores.shape[0]} images x {scores.shape[1]} labels, {path.stat().st_size} bytes")


def random_targets(rng, images, labels, positive=0.3, ignored=0.05):
    draw = rng.random((images, labels))
    return np.where(draw < ignored, -1, np.where(draw < ignored + positive, 1, 0))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)

    # Random, no ties; one all-negative class (only 0 and -1), one class never predicted.
    images, labels = 120, 9
    scores = rng.random((images, labels)).astype(np.float32)
    targets = random_targets(rng, images, labels)
    scores[:, 2] = 0.6 * scores[:, 2] + 0.4 * (targets[:, 2] == 1)  # a good class
    targets[:, 5] = np.where(targets[:, 5] == 1, 0, targets[:, 5])  # all-negative class
    scores[:, 7] *= 0.49  # never predicted at 0.5
    assert all(len(np.unique(column)) == images for column in scores.T), "meant to be tie-free"
    write_case("random", scores, targets, note="random scores without ties; all-negative class 5; class 7 never predicted")
    write_case("random_threshold", scores, targets, threshold=0.3, top_k=2, note="same data, threshold 0.3, top-2")

    # Ties everywhere: scores on an 11-level grid, ties across positives and negatives, and
    # ties at the top-k boundary.
    images, labels = 80, 6
    scores = np.round(rng.integers(0, 11, (images, labels)) / 10, 1).astype(np.float32)
    targets = random_targets(rng, images, labels, positive=0.4, ignored=0.1)
    targets[:, 4] = np.where(targets[:, 4] == 1, -1, targets[:, 4])  # all-negative by ignoring
    write_case("ties", scores, targets, note="scores on a 0.1 grid: ties in AP and in top-k")

    # Pedestrian: one class always positive (outside mA), an image with nothing at all.
    images, labels = 100, 8
    scores = rng.random((images, labels)).astype(np.float32)
    targets = random_targets(rng, images, labels, positive=0.35, ignored=0.05)
    scores = np.clip(scores + 0.3 * (targets == 1), 0, 1).astype(np.float32)
    targets[:, 3] = 1
    targets[:, 6] = np.where(targets[:, 6] == 1, 0, targets[:, 6])
    targets[0, :] = 0
    scores[0, :] = 0.1
    write_case("pedestrian", scores, targets, kind="pedestrian", note="class 3 all positive, class 6 no positive, image 0 empty")

    # Tiny hand-checkable case with ignored entries placed above positives.
    scores = np.array([[0.95, 0.2], [0.9, 0.8], [0.3, 0.8], [0.1, 0.6]], dtype=np.float32)
    targets = np.array([[-1, 0], [1, 1], [0, 0], [1, -1]])
    write_case("ignored", scores, targets, top_k=1, note="ignored targets ranked above positives are removed first")


if __name__ == "__main__":
    main()
