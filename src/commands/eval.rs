use crate::exit;
use sspa_metrics::{EvalOptions, MetricKind};
use std::path::Path;

pub fn eval(
    scores: &Path,
    targets: &Path,
    kind: MetricKind,
    threshold: f32,
    top_k: usize,
    json: bool,
) -> anyhow::Result<u8> {
    let options = EvalOptions { kind, threshold, top_k };
    let report = sspa_metrics::evaluate_files(scores, targets, &options)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_table());
    }
    Ok(exit::OK)
}
