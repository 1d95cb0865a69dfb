//! `cargo bench -p sspa-metrics`: evaluation of 100,000 images × 1,000 labels (the `eval`
//! budget is 10 s), with the Parquet write and read timed separately.
//! `SSPA_BENCH_IMAGES` / `SSPA_BENCH_LABELS` change the size.

use std::time::Instant;

use sspa_metrics::{
    EvalData, EvalOptions, MetricKind, Scores, Targets, evaluate, evaluate_data, evaluate_files, read_eval_data,
    write_scores, write_targets,
};

/// Uniform in [0, 1) with 24 random bits: many equal scores, like a real model's output.
fn unit(random: &mut sspa_rng::SplitMix64) -> f32 {
    (random.next_u64() >> 40) as f32 / (1u64 << 24) as f32
}

fn size(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn main() {
    // The library's debug timings (ranking pass, top-k pass, file reading) go to stderr.
    tracing_subscriber::fmt().with_env_filter("sspa_metrics=debug").with_writer(std::io::stderr).init();
    let n = size("SSPA_BENCH_IMAGES", 100_000);
    let c = size("SSPA_BENCH_LABELS", 1_000);
    println!("{n} images × {c} labels, {} threads", rayon::current_num_threads());
    let mut random = sspa_rng::SplitMix64::new(7);
    let images: Vec<String> = (0..n).map(|index| format!("image_{index:07}.jpg")).collect();
    let labels: Vec<String> = (0..c).map(|index| format!("label_{index:04}")).collect();
    let mut scores = Vec::with_capacity(n * c);
    let mut targets = Vec::with_capacity(n * c);
    for _ in 0..n * c {
        // ~3% positives, 1% ignored; positives score higher on average.
        let draw = unit(&mut random);
        let target: i8 = if draw < 0.01 {
            -1
        } else if draw < 0.04 {
            1
        } else {
            0
        };
        let score = if target == 1 {
            0.5 * unit(&mut random) + 0.5 * unit(&mut random).sqrt()
        } else {
            unit(&mut random) * unit(&mut random)
        };
        scores.push(score);
        targets.push(target);
    }

    let options = EvalOptions::default();
    let pedestrian = EvalOptions { kind: MetricKind::Pedestrian, ..options };

    let start = Instant::now();
    let report = evaluate(&scores, &targets, n, &labels, &options).expect("evaluate");
    println!(
        "evaluate (row-major input, incl. transpose + validation): {:>7.3} s  mAP {:.3}",
        start.elapsed().as_secs_f64(),
        report.mean_average_precision
    );

    let start = Instant::now();
    let transposed = Scores::from_row_major(images.clone(), labels.clone(), &scores).expect("scores");
    println!("row-major scores to columns (transpose only):            {:>7.3} s", start.elapsed().as_secs_f64());
    drop(transposed);
    let start = Instant::now();
    let data = EvalData::from_row_major(images.clone(), labels.clone(), &scores, &targets).expect("data");
    println!("EvalData::from_row_major (transposes + validation):      {:>7.3} s", start.elapsed().as_secs_f64());
    let start = Instant::now();
    let natural = evaluate_data(&data, &options).expect("evaluate");
    println!(
        "evaluate_data natural (metrics only):                    {:>7.3} s  mAP {:.3}",
        start.elapsed().as_secs_f64(),
        natural.mean_average_precision
    );
    let start = Instant::now();
    evaluate_data(&data, &pedestrian).expect("evaluate");
    println!("evaluate_data pedestrian (metrics only):                 {:>7.3} s", start.elapsed().as_secs_f64());

    let directory = tempfile::tempdir().expect("tempdir");
    let scores_path = directory.path().join("scores.parquet");
    let targets_path = directory.path().join("targets.parquet");
    let score_matrix =
        Scores::from_columns(images.clone(), labels.clone(), data.scores().values().to_vec()).expect("scores");
    let target_matrix = Targets::from_columns(images, labels, data.targets().values().to_vec()).expect("targets");
    drop(data);
    drop(scores);
    drop(targets);
    let start = Instant::now();
    write_scores(&scores_path, &score_matrix).expect("write scores");
    write_targets(&targets_path, &target_matrix).expect("write targets");
    let megabytes = |path: &std::path::Path| std::fs::metadata(path).map(|meta| meta.len() as f64 / 1e6).unwrap_or(0.0);
    println!(
        "write scores + targets Parquet:                          {:>7.3} s  ({:.0} MB + {:.0} MB)",
        start.elapsed().as_secs_f64(),
        megabytes(&scores_path),
        megabytes(&targets_path)
    );
    drop(score_matrix);
    drop(target_matrix);

    let start = Instant::now();
    let data = read_eval_data(&scores_path, &targets_path).expect("read");
    println!("read + match + validate Parquet:                         {:>7.3} s", start.elapsed().as_secs_f64());
    drop(data);

    let start = Instant::now();
    let from_files = evaluate_files(&scores_path, &targets_path, &options).expect("evaluate files");
    println!(
        "evaluate_files (the `eval` command, end to end):         {:>7.3} s  mAP {:.3}",
        start.elapsed().as_secs_f64(),
        from_files.mean_average_precision
    );
    assert_eq!(from_files, natural);
}
