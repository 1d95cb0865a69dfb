//! The names of the evaluate stage's metrics, in one place. A metric is named by its dotted path
//! in the report (`mAP`, `CF1`, `top3.CF1`): what `[promote]` compares, `exp show --sort` takes and
//! experiment tables head their columns with (prefixed by the model, `ema.top3.CF1`). Text tables
//! print the path with a space (`top3 CF1`).

use crate::schema::MetricKind;

/// The thresholded metrics, reported for all predictions and again for the top-k ones.
pub const THRESHOLDED: [&str; 6] = ["CP", "CR", "CF1", "OP", "OR", "OF1"];

/// The pedestrian-attribute metrics (`evaluate.kind = "pedestrian"` only).
pub const PEDESTRIAN: [&str; 5] = ["mA", "Acc", "Prec", "Rec", "F1"];

/// `top{k}.{leaf}`: a metric of the top-`k` predictions.
pub fn top_k(k: u32, leaf: &str) -> String {
    format!("top{k}.{leaf}")
}

/// The headline metrics of a report of `kind` with top-`k` metrics, in table order: `mAP`, the
/// thresholded ones, their top-k versions, then the pedestrian ones when the kind has them.
pub fn headline(kind: MetricKind, k: u32) -> Vec<String> {
    let mut names = vec!["mAP".to_owned()];
    names.extend(THRESHOLDED.iter().map(|name| (*name).to_owned()));
    names.extend(THRESHOLDED.iter().map(|name| top_k(k, name)));
    if kind == MetricKind::Pedestrian {
        names.extend(PEDESTRIAN.iter().map(|name| (*name).to_owned()));
    }
    names
}

/// A metric of one served model's report: `ema.top3.CF1` (`raw` or `ema`, then the path).
pub fn of_model(model: &str, metric: &str) -> String {
    format!("{model}.{metric}")
}

/// The path inside the model's report of a name written by [`of_model`]: `top3.CF1` for
/// `ema.top3.CF1`; a name without a model is returned as it is.
pub fn without_model(name: &str) -> &str {
    name.split_once('.').map_or(name, |(_, metric)| metric)
}

/// The path as text tables print it: `top3 CF1`.
pub fn display(path: &str) -> String {
    path.replace('.', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_paths_models_and_tables() {
        let names = headline(MetricKind::Natural, 3);
        assert_eq!(names.len(), 13);
        assert_eq!((names[0].as_str(), names[3].as_str(), names[9].as_str()), ("mAP", "CF1", "top3.CF1"));
        assert_eq!(headline(MetricKind::Pedestrian, 3).last().map(String::as_str), Some("F1"));
        assert_eq!(of_model("ema", &top_k(3, "CF1")), "ema.top3.CF1");
        assert_eq!(without_model("ema.top3.CF1"), "top3.CF1");
        assert_eq!(without_model("mAP"), "mAP");
        assert_eq!(display("top3.CF1"), "top3 CF1");
    }
}
