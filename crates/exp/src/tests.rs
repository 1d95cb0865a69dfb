use super::*;

fn run(variant: &str, lr: &str, seed: i64, status: RunStatus, map: Option<f64>) -> RunRecord {
    let mut metrics = BTreeMap::new();
    if let Some(map) = map {
        metrics.insert("raw.mAP".to_owned(), map);
        metrics.insert("ema.mAP".to_owned(), map + 1.0);
    }
    RunRecord {
        variant: variant.to_owned(),
        params: [("train.lr", lr), ("train.epochs", "8")].into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
        seed: Some(seed),
        status,
        error: (status == RunStatus::Failed).then(|| format!("stage `train`: diverged at seed {seed}")),
        metrics,
        train_s: map.map(|_| 10.0 + seed as f64),
    }
}

/// lr=1: seeds 70, 72, 74; lr=2: seeds 80, 81 and a failed one; lr=3: failed; lr=4: queued.
fn runs() -> Vec<RunRecord> {
    use RunStatus::*;
    vec![
        run("train.lr=1", "1", 0, Succeeded, Some(70.0)),
        run("train.lr=1", "1", 1, Succeeded, Some(72.0)),
        run("train.lr=1", "1", 2, Succeeded, Some(74.0)),
        run("train.lr=2", "2", 0, Succeeded, Some(80.0)),
        run("train.lr=2", "2", 1, Succeeded, Some(81.0)),
        run("train.lr=2", "2", 2, Failed, Some(99.0)),
        run("train.lr=3", "3", 0, Failed, None),
        run("train.lr=4", "4", 0, Queued, None),
    ]
}

fn options() -> TableOptions {
    TableOptions {
        params: ParamColumns::Keys(vec!["train.lr".into()]),
        metrics: vec!["raw.mAP".into(), "ema.mAP".into()],
        baseline: None,
        sort_by: None,
    }
}

fn floats(table: &Table, column: &str) -> Vec<Option<f64>> {
    match &table.column(column).expect("column").values {
        Values::Number(values) => values.clone(),
        other => panic!("`{column}` is not a number column: {other:?}"),
    }
}

fn texts(table: &Table, column: &str) -> Vec<Option<String>> {
    match &table.column(column).expect("column").values {
        Values::Text(values) => values.clone(),
        other => panic!("`{column}` is not a text column: {other:?}"),
    }
}

fn close(found: Option<f64>, expected: f64) -> bool {
    found.is_some_and(|f| (f - expected).abs() < 1e-9)
}

#[test]
fn seeds_aggregate_to_mean_sample_std_and_n_without_failed_runs() {
    let table = build(&runs(), &options()).expect("table");
    assert_eq!(
        texts(&table, "variant"),
        ["train.lr=1", "train.lr=2", "train.lr=3", "train.lr=4"].map(|s| Some(s.to_owned()))
    );
    let mean = floats(&table, "raw.mAP");
    let std = floats(&table, "raw.mAP_std");
    assert!(close(mean[0], 72.0) && close(std[0], 2.0), "{mean:?} {std:?}");
    // The failed seed's 99 is not averaged in.
    assert!(close(mean[1], 80.5) && close(std[1], 0.5_f64.sqrt()), "{mean:?} {std:?}");
    assert_eq!((mean[2], std[2], mean[3]), (None, None, None));
    assert!(close(floats(&table, "ema.mAP")[0], 73.0));
    let counts = |column: &str| match &table.column(column).expect("column").values {
        Values::Count(values) => values.clone(),
        other => panic!("`{column}` is not a count column: {other:?}"),
    };
    assert_eq!(counts("n"), [3, 2, 0, 0]);
    assert_eq!(counts("runs"), [3, 3, 1, 1]);
    assert!(close(floats(&table, "train_s")[0], 11.0));
}

#[test]
fn one_seed_has_no_standard_deviation() {
    let single = vec![run("a", "1", 0, RunStatus::Succeeded, Some(50.0))];
    let table = build(&single, &options()).expect("table");
    assert_eq!(floats(&table, "raw.mAP_std"), [None]);
    assert!(close(floats(&table, "raw.mAP")[0], 50.0));
}

#[test]
fn deltas_are_against_the_first_variant_or_the_named_baseline() {
    let table = build(&runs(), &options()).expect("table");
    assert_eq!(table.baseline, "train.lr=1");
    let delta = floats(&table, "raw.mAP_delta");
    assert!(close(delta[0], 0.0) && close(delta[1], 8.5) && delta[2].is_none(), "{delta:?}");

    let table = build(&runs(), &TableOptions { baseline: Some("train.lr=2".to_owned()), ..options() }).expect("table");
    let delta = floats(&table, "raw.mAP_delta");
    assert!(close(delta[0], -8.5) && close(delta[1], 0.0), "{delta:?}");

    let error =
        build(&runs(), &TableOptions { baseline: Some("train.lr=9".to_owned()), ..options() }).expect_err("unknown");
    let message = error.to_string();
    assert!(message.contains("baseline `train.lr=9` is not a variant") && message.contains("train.lr=3"), "{message}");

    // A failed baseline has no means: every Δ is unknown, not 0.
    let table = build(&runs(), &TableOptions { baseline: Some("train.lr=3".to_owned()), ..options() }).expect("table");
    assert!(floats(&table, "raw.mAP_delta").iter().all(Option::is_none));
}

#[test]
fn failed_variants_keep_a_row_with_their_status_and_error() {
    let table = build(&runs(), &options()).expect("table");
    let status = texts(&table, "status");
    assert_eq!(status, ["succeeded", "partial", "failed", "queued"].map(|s| Some(s.to_owned())));
    let errors = texts(&table, "error");
    assert_eq!(errors[0], None);
    assert_eq!(errors[1].as_deref(), Some("stage `train`: diverged at seed 2"));
    assert_eq!(errors[2].as_deref(), Some("stage `train`: diverged at seed 0"));
    let text = table.render(Format::Table).expect("text");
    let failed = text.lines().find(|l| l.starts_with("train.lr=3")).expect("failed row");
    assert!(failed.contains("failed") && failed.contains("diverged at seed 0"), "{text}");
}

#[test]
fn only_changed_keeps_the_parameters_that_differ_between_variants() {
    let mut runs = runs();
    runs[0].params.insert("model.embed_dim".into(), "192".into());
    runs[3].params.insert("model.embed_dim".into(), "256".into());
    // Seeds are not a parameter difference, and a key a variant lacks does not count.
    runs[6].params.clear();
    assert_eq!(changed_params(&runs), ["model.embed_dim", "train.lr"]);
    let table = build(&runs, &TableOptions { params: ParamColumns::Changed, ..options() }).expect("table");
    assert_eq!(table.params, ["model.embed_dim", "train.lr"]);
    assert_eq!(texts(&table, "model.embed_dim")[..2], [Some("192".to_owned()), Some("256".to_owned())]);
    assert!(table.column("train.epochs").is_none(), "unchanged parameter left out");
}

#[test]
fn sorting_puts_the_best_metric_first_and_unknown_columns_are_named() {
    let options = TableOptions { sort_by: Some("ema.mAP".to_owned()), ..options() };
    let table = build(&runs(), &options).expect("table");
    assert_eq!(texts(&table, "variant")[..2], [Some("train.lr=2".to_owned()), Some("train.lr=1".to_owned())]);
    assert_eq!(texts(&table, "variant")[2..].iter().filter(|v| v.is_some()).count(), 2, "nulls last");
    let ambiguous = build(&runs(), &TableOptions { sort_by: Some("mAP".to_owned()), ..options.clone() });
    assert!(ambiguous.expect_err("ambiguous").to_string().contains("ambiguous"));
    let unknown = build(&runs(), &TableOptions { sort_by: Some("accuracy".to_owned()), ..options.clone() });
    assert!(unknown.expect_err("unknown").to_string().contains("cannot sort by `accuracy`: no such column"));
    let by_lr = build(&runs(), &TableOptions { sort_by: Some("train.lr".to_owned()), ..options }).expect("lr");
    assert_eq!(texts(&by_lr, "variant")[0].as_deref(), Some("train.lr=1"), "parameters ascend");
}

#[test]
fn headline_metrics_follow_the_domain_kind() {
    let natural = ["raw.mAP", "raw.CP", "raw.CF1", "raw.OF1", "raw.top3.CF1", "raw.top3.OF1", "raw.top3.CP"];
    let mut available: Vec<&str> = natural.to_vec();
    available.extend(["ema.mAP", "ema.CF1", "raw.per_class_ap.cat"]);
    assert_eq!(
        headline_metrics(available.iter().copied()),
        ["raw.mAP", "raw.CF1", "raw.OF1", "raw.top3.CF1", "raw.top3.OF1", "ema.mAP", "ema.CF1"]
    );
    let pedestrian = headline_metrics(["ema.mA", "ema.F1", "ema.mAP", "raw.mA"]);
    assert_eq!(pedestrian, ["raw.mA", "ema.mAP", "ema.mA", "ema.F1"]);
}

#[test]
fn csv_json_markdown_html_and_parquet_carry_the_same_rows() {
    let table = build(&runs(), &options()).expect("table");
    let csv = table.render(Format::Csv).expect("csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    assert_eq!(header[..5], ["variant", "train.lr", "status", "n", "runs"]);
    assert!(header.contains(&"raw.mAP_delta") && header.contains(&"train_s"));
    assert_eq!(lines.count(), 4);

    let json = super::render::json(&table).expect("json");
    let rows = json["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[1]["raw.mAP"], 80.5);
    assert_eq!(rows[1]["n"], 2);
    assert!(rows[2]["raw.mAP"].is_null());
    assert_eq!(json["baseline"], "train.lr=1");

    let markdown = table.render(Format::Markdown).expect("md");
    assert!(markdown.contains("| train.lr=1 (baseline) | 1 | succeeded | 3/3 | 72.00 ± 2.00 |"), "{markdown}");
    assert!(markdown.contains("| train.lr=2 | 2 | partial | 2/3 | 80.50 ± 0.71 (+8.50) |"), "{markdown}");
    let html = table.render(Format::Html).expect("html");
    assert!(html.contains("<td>80.50 ± 0.71 (+8.50)</td>") && html.contains("class=\"failed\""), "{html}");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("experiments.parquet");
    table.write_parquet(&path).expect("parquet");
    let back = sspa_table::read_batches(&path).expect("read back");
    assert_eq!(back, [columns::record_batch(&table.columns)]);
    let n: &arrow_array::UInt32Array = sspa_table::column(&back[0], "n", &path).expect("n");
    assert_eq!(n.values().to_vec(), [3, 2, 0, 0]);
    let mean: &arrow_array::Float64Array = sspa_table::column(&back[0], "raw.mAP", &path).expect("mean");
    assert_eq!((mean.value(0), arrow_array::Array::is_null(mean, 2)), (72.0, true));
    let leftovers = std::fs::read_dir(dir.path()).expect("dir").count();
    assert_eq!(leftovers, 1, "no temporary file left");
}

/// The CSV spelling `exp show --format csv` has always printed (polars' writer, which this table
/// replaced): nulls empty, shortest round-trip floats (`72.0`, `1e-7`, `1e+20`, `-0.0`), text
/// quoted only when it must be, quotes doubled; sorting puts nulls last.
#[test]
fn csv_quotes_only_what_it_must_and_spells_floats_round_trip() {
    let mut records = runs();
    records.push(RunRecord {
        variant: "model.x=\"a,b\"\nq".into(),
        params: [("train.lr", "1e-7, \"x\""), ("train.epochs", "8")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        seed: Some(0),
        status: RunStatus::Succeeded,
        error: Some("say \"no\"".into()),
        metrics: [("raw.mAP".to_owned(), 1e-7), ("ema.mAP".to_owned(), 1.0e20)].into_iter().collect(),
        train_s: Some(0.1 + 0.2),
    });
    records.push(RunRecord {
        variant: "v5".into(),
        params: BTreeMap::new(),
        seed: Some(0),
        status: RunStatus::Succeeded,
        error: None,
        metrics: [("raw.mAP".to_owned(), 82.46145385096682), ("ema.mAP".to_owned(), -0.0)].into_iter().collect(),
        train_s: Some(123456789.0),
    });
    let table = build(&records, &TableOptions { sort_by: Some("train.lr".into()), ..options() }).expect("table");
    let csv = table.render(Format::Csv).expect("csv");
    let expected = "\
variant,train.lr,status,n,runs,raw.mAP,raw.mAP_std,raw.mAP_delta,ema.mAP,ema.mAP_std,ema.mAP_delta,train_s,error
train.lr=1,1,succeeded,3,3,72.0,2.0,0.0,73.0,2.0,0.0,11.0,
\"model.x=\"\"a,b\"\"
q\",\"1e-7, \"\"x\"\"\",succeeded,1,1,1e-7,,-71.9999999,1e+20,,1e+20,0.30000000000000004,\"say \"\"no\"\"\"
train.lr=2,2,partial,2,3,80.5,0.7071067811865476,8.5,81.5,0.7071067811865476,8.5,10.5,stage `train`: diverged at seed 2
train.lr=3,3,failed,0,1,,,,,,,,stage `train`: diverged at seed 0
train.lr=4,4,queued,0,1,,,,,,,,
v5,,succeeded,1,1,82.46145385096682,,10.46145385096682,-0.0,,-73.0,123456789.0,
";
    assert_eq!(csv, expected);
}
