//! The promotion gate: a candidate's metrics against the current model's, both measured on the
//! same split and labels.

use serde_json::Value;

/// `[promote]` as rules (metric names are keys of the evaluate report, `top3.CF1` nested).
#[derive(Debug, Clone, PartialEq)]
pub struct Gate {
    pub metric: String,
    pub min_delta: f64,
    pub guard: Vec<String>,
    pub max_drop: f64,
}

/// What the gate concluded, with one line per rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub promote: bool,
    pub reasons: Vec<String>,
}

/// `report[name]` for a dotted name (`top3.CF1`), when it is a number.
pub fn metric(report: &Value, name: &str) -> Option<f64> {
    sspa_fsio::json_path(report, name)?.as_f64()
}

impl Gate {
    /// Promote when `metric` improves (strictly, and by at least `min_delta`) and no guarded
    /// metric drops by more than `max_drop`. A metric missing from either report refuses (it
    /// names which).
    pub fn judge(&self, candidate: &Value, current: &Value) -> Verdict {
        self.judge_with(candidate, current, false)
    }

    /// [`Gate::judge`] for a candidate that also knows labels the current model does not: it
    /// brings something new, so on the labels both know `metric` only has to hold (drop by at
    /// most `max_drop`) instead of improve.
    pub fn judge_new_labels(&self, candidate: &Value, current: &Value) -> Verdict {
        self.judge_with(candidate, current, true)
    }

    fn judge_with(&self, candidate: &Value, current: &Value, new_labels: bool) -> Verdict {
        let mut reasons = Vec::new();
        let mut promote = true;
        match (metric(candidate, &self.metric), metric(current, &self.metric)) {
            (Some(new), Some(old)) if new_labels => {
                let delta = new - old;
                promote = -delta <= self.max_drop;
                reasons.push(format!(
                    "new labels; on the shared ones {} {new:.2} vs {old:.2}: {delta:+.2} {} max_drop {:.2}",
                    self.metric,
                    if promote { "within" } else { "beyond" },
                    self.max_drop
                ));
            }
            (Some(new), Some(old)) => {
                let delta = new - old;
                if delta > 0.0 && delta >= self.min_delta {
                    reasons.push(format!(
                        "{} {new:.2} vs {old:.2}: {delta:+.2} ≥ min_delta {:.2}",
                        self.metric, self.min_delta
                    ));
                } else {
                    promote = false;
                    let rule = if delta <= 0.0 {
                        "no improvement".to_owned()
                    } else {
                        format!("< min_delta {:.2}", self.min_delta)
                    };
                    reasons.push(format!("{} {new:.2} vs {old:.2}: {delta:+.2}, {rule}", self.metric));
                }
            }
            (new, old) => {
                promote = false;
                reasons.push(format!("{} missing from the {} metrics", self.metric, missing_side(new, old)));
            }
        }
        for guard in &self.guard {
            match (metric(candidate, guard), metric(current, guard)) {
                (Some(new), Some(old)) if old - new > self.max_drop => {
                    promote = false;
                    reasons.push(format!(
                        "guard {guard} {new:.2} vs {old:.2}: drops {:.2} > max_drop {:.2}",
                        old - new,
                        self.max_drop
                    ));
                }
                (Some(_), Some(_)) => {}
                (new, old) => {
                    promote = false;
                    reasons.push(format!("guard {guard} missing from the {} metrics", missing_side(new, old)));
                }
            }
        }
        Verdict { promote, reasons }
    }
}

fn missing_side(new: Option<f64>, old: Option<f64>) -> &'static str {
    match (new, old) {
        (None, None) => "candidate's and the current model's",
        (None, _) => "candidate's",
        _ => "current model's",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gate() -> Gate {
        Gate { metric: "mAP".into(), min_delta: 0.5, guard: vec!["CF1".into(), "top3.OF1".into()], max_drop: 1.0 }
    }

    fn report(map: f64, cf1: f64, of1: f64) -> Value {
        json!({"mAP": map, "CF1": cf1, "top3": {"OF1": of1}})
    }

    #[test]
    fn the_metric_must_improve_by_min_delta() {
        let current = report(80.0, 70.0, 60.0);
        assert!(gate().judge(&report(80.6, 70.0, 60.0), &current).promote);
        let verdict = gate().judge(&report(80.4, 70.0, 60.0), &current);
        assert!(!verdict.promote);
        assert!(verdict.reasons[0].contains("+0.40, < min_delta 0.50"), "{:?}", verdict.reasons);
        let same = Gate { min_delta: 0.0, ..gate() }.judge(&current, &current);
        assert!(!same.promote && same.reasons[0].contains("no improvement"), "{:?}", same.reasons);
    }

    #[test]
    fn a_guarded_metric_may_not_drop_more_than_max_drop() {
        let current = report(80.0, 70.0, 60.0);
        assert!(gate().judge(&report(82.0, 69.1, 59.5), &current).promote, "drops within 1.0");
        let verdict = gate().judge(&report(82.0, 70.0, 58.0), &current);
        assert!(!verdict.promote);
        assert!(
            verdict.reasons.iter().any(|r| r.contains("top3.OF1") && r.contains("drops 2.00")),
            "{:?}",
            verdict.reasons
        );
    }

    #[test]
    fn new_labels_only_have_to_hold_the_shared_ones() {
        let current = report(80.0, 70.0, 60.0);
        assert!(gate().judge_new_labels(&report(79.5, 70.0, 60.0), &current).promote, "a drop of 0.5 ≤ 1.0");
        let verdict = gate().judge_new_labels(&report(78.0, 70.0, 60.0), &current);
        assert!(!verdict.promote && verdict.reasons[0].contains("beyond max_drop"), "{:?}", verdict.reasons);
        assert!(!gate().judge(&report(79.5, 70.0, 60.0), &current).promote, "without new labels it must improve");
    }

    #[test]
    fn a_missing_metric_refuses_and_says_whose() {
        let verdict = gate().judge(&json!({"mAP": 90.0}), &report(80.0, 70.0, 60.0));
        assert!(!verdict.promote);
        assert!(
            verdict.reasons.iter().any(|r| r.contains("guard CF1 missing from the candidate's")),
            "{:?}",
            verdict.reasons
        );
    }
}
