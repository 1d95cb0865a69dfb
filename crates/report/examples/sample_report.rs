//! Writes a report of synthetic data, for looking at (or screenshotting) the layout:
//! `cargo run -p sspa-report --example sample_report -- OUT_DIR`.

use std::path::PathBuf;

use sspa_metrics::{EvalData, EvalOptions, best_and_worst_curves, evaluate_data};
use sspa_report::{DescriptionTokens, EpochRecord, Lineage, ModelMetrics, PreviousRun, ReportData, render};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let directory = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| ".".into()));
    let labels: Vec<String> = (0..20).map(|index| format!("class {index}")).collect();
    let n = 400;
    let images: Vec<String> = (0..n).map(|index| format!("img{index}")).collect();
    let mut state = 12345u64;
    let mut unit = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 40) as f32 / (1u64 << 24) as f32
    };
    let mut scores = Vec::new();
    let mut targets = Vec::new();
    for _ in 0..n {
        for label in 0..labels.len() {
            let positive = unit() < 0.2;
            let skill = label as f32 / labels.len() as f32;
            let noise = unit();
            scores.push(if positive { skill * 0.6 + 0.4 * noise } else { 0.6 * noise * (1.0 - skill) + 0.2 * unit() });
            targets.push(i8::from(positive));
        }
    }
    let data = EvalData::from_row_major(images, labels, &scores, &targets)?;
    let report = evaluate_data(&data, &EvalOptions::default())?;
    let raw = ModelMetrics::from_report("raw", &report);
    let mut ema = raw.clone();
    ema.name = "EMA".into();
    ema.metrics.iter_mut().for_each(|(_, value)| *value = (*value + 0.8).min(100.0));
    let mut previous = raw.clone();
    previous.metrics.iter_mut().for_each(|(_, value)| *value -= 1.5);
    let report_data = ReportData {
        domain: "sample".into(),
        run_id: "sample-run".into(),
        models: vec![raw, ema],
        per_class_ap: report.per_class_ap.clone(),
        chart_model: "raw".into(),
        classes_without_positives: report.classes_without_positives.clone(),
        pr_curves: best_and_worst_curves(&data, &report, 2, 100),
        training: (1..=30)
            .map(|epoch| {
                let progress = f64::from(epoch) / 30.0;
                EpochRecord {
                    epoch,
                    train_loss: 40.0 * (-3.0 * progress).exp() + 2.0,
                    learning_rate: 1e-4 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
                    val_map_raw: Some(report.mean_average_precision * (1.0 - (-4.0 * progress).exp())),
                    val_map_ema: Some((report.mean_average_precision + 0.8) * (1.0 - (-3.0 * progress).exp())),
                }
            })
            .collect(),
        previous: Some(PreviousRun { run_id: "previous-run".into(), models: vec![previous] }),
        lineage: Lineage {
            config_hash: Some("blake3:1f2e3d".into()),
            manifest_hash: Some("blake3:4c5b6a".into()),
            description_cache_hash: Some("blake3:789abc".into()),
            description_tokens: Some(DescriptionTokens {
                prompt_tokens: 5120,
                completion_tokens: 1830,
                answers: 40,
                answers_without_usage: 0,
            }),
            model_preset: Some("clip-rn50".into()),
            weights_hash: Some("sha256:def012".into()),
            git_commit: None,
            files: Vec::new(),
        },
        images: Vec::new(),
    };
    let (markdown, html) = render(&report_data);
    std::fs::write(directory.join("report.md"), markdown)?;
    std::fs::write(directory.join("report.html"), html)?;
    println!("wrote {}", directory.join("report.html").display());
    Ok(())
}
