//! `sspa-pipe exp run` and `exp show` on the tiny demo: a grid shares every upstream result it does
//! not change, and its table reads back.

use crate::cli::{bin, project, small_training, test_llm, text, tiny_demo, tiny_training_project};
use std::path::Path;

fn exp(dir: &Path, llm: &str, args: &[&str]) -> std::process::Output {
    bin()
        .current_dir(dir)
        .env("SSPA_LLM_URL", llm)
        .args(["exp", "run", "domains/demo.toml"])
        .args(args)
        .output()
        .expect("spawn")
}

fn runs(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("work/demo/runs")).map(|entries| entries.count()).unwrap_or(0)
}

#[test]
fn a_learning_rate_grid_trains_four_times_and_computes_the_rest_once() {
    let llm = test_llm();
    let dir = project();
    tiny_demo(dir.path());
    let config = dir.path().join("domains/demo.toml");
    std::fs::write(&config, small_training(&std::fs::read_to_string(&config).expect("read"), 64)).expect("write");

    // Bad grids are refused before anything runs, naming the argument.
    let out = exp(dir.path(), &llm, &["-S", "train.lr=1e-3,fast", "-S", "train.lr_typo=1"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`-S train.lr=fast`: `train.lr`: invalid type"), "{stderr}");
    assert!(stderr.contains("`-S train.lr_typo=1`: unknown key `train.lr_typo`"), "{stderr}");
    let out = exp(dir.path(), &llm, &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("the grid is empty"), "{}", text(&out).1);
    assert_eq!(runs(dir.path()), 0, "nothing ran");

    // Four variants, one of them twice: run once each.
    let grid = ["-S", "train.lr=1e-3,2e-3,3e-3,4e-3,1e-3", "--json"];
    let out = exp(dir.path(), &llm, &grid);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("is the same config as"), "{stderr}");
    let experiment: serde_json::Value = serde_json::from_str(&stdout).expect("experiment JSON");
    let variants = experiment["variants"].as_array().expect("variants");
    assert_eq!(variants.len(), 4);
    assert!(variants.iter().all(|v| v["status"] == "succeeded"), "{stdout}");
    assert!(variants.iter().all(|v| v["metrics"]["evaluate.raw.mAP"].is_number()), "{stdout}");

    // The run index: the upstream stages ran in the first variant only and have one key.
    let out = bin()
        .current_dir(dir.path())
        .args(["status", "domains/demo.toml", "--json", "--runs", "10"])
        .output()
        .expect("spawn");
    assert!(out.status.success());
    let record = |run_id: &str| -> serde_json::Value {
        let path = dir.path().join("work/demo/runs").join(run_id).join("run.json");
        serde_json::from_slice(&std::fs::read(path).expect("run record")).expect("json")
    };
    let records: Vec<serde_json::Value> =
        variants.iter().map(|v| record(v["run_id"].as_str().expect("run id"))).collect();
    let stage = |record: &serde_json::Value, name: &str| -> (String, String) {
        let stage = record["stages"].as_array().and_then(|s| s.iter().find(|x| x["name"] == name)).expect("stage");
        (stage["key"].as_str().unwrap_or("").to_owned(), stage["status"].as_str().unwrap_or("").to_owned())
    };
    for name in ["describe", "embed", "shard", "features"] {
        let seen: Vec<(String, String)> = records.iter().map(|r| stage(r, name)).collect();
        assert!(seen.iter().all(|(key, _)| *key == seen[0].0), "{name}: one key for every variant: {seen:?}");
        let ran = seen.iter().filter(|(_, status)| status == "ran").count();
        assert_eq!(ran, 1, "{name} computed once: {seen:?}");
    }
    let train_keys: std::collections::BTreeSet<String> = records.iter().map(|r| stage(r, "train").0).collect();
    assert_eq!(train_keys.len(), 4, "four trainings");

    // The same grid again: every variant is done, nothing runs.
    let before = runs(dir.path());
    let out = exp(dir.path(), &llm, &grid[..2]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(runs(dir.path()), before, "no new run");
    assert_eq!(stdout.lines().filter(|l| l.trim_start().starts_with("succeeded")).count(), 4, "{stdout}");

    // `exp show`: the table of the most recent experiment of the config, parsed back.
    let show = |args: &[&str]| -> std::process::Output {
        bin().current_dir(dir.path()).args(["exp", "show", "domains/demo.toml"]).args(args).output().expect("spawn")
    };
    let out = show(&["--format", "csv"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let mut lines = stdout.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 4, "{stdout}");
    let column = |name: &str| header.iter().position(|h| *h == name).unwrap_or_else(|| panic!("{name}: {stdout}"));
    let numbers = |name: &str| -> Vec<f64> {
        rows.iter().map(|r| r[column(name)].parse().unwrap_or_else(|_| panic!("{name} numeric: {stdout}"))).collect()
    };
    assert_eq!(numbers("train.lr"), [1e-3, 2e-3, 3e-3, 4e-3], "grid order, one column per override key");
    for metric in ["raw.mAP", "ema.mAP", "raw.CF1", "raw.OF1", "raw.top3.CF1", "raw.top3.OF1", "train_s", "n"] {
        numbers(metric);
    }
    let maps = numbers("raw.mAP");
    let deltas = numbers("raw.mAP_delta");
    for (map, delta) in maps.iter().zip(&deltas) {
        assert!((delta - (map - maps[0])).abs() < 1e-9, "Δ against the first variant: {stdout}");
    }
    assert!(numbers("train_s").iter().all(|s| *s > 0.0), "{stdout}");
    assert!(rows.iter().all(|r| r[column("status")] == "succeeded"), "{stdout}");
    let name = experiment["name"].as_str().expect("name");
    assert!(dir.path().join(format!("work/demo/experiments/{name}.parquet")).is_file());

    let out = show(&["--format", "json", "--baseline", "train.lr=2e-3", "--sort-by", "raw.mAP", "--only-changed"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let table: serde_json::Value = serde_json::from_str(&stdout).expect("table JSON");
    assert_eq!(table["baseline"], "train.lr=0.002");
    assert_eq!(table["params"], serde_json::json!(["train.lr"]), "only the learning rate differs");
    let rows = table["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 4);
    let sorted: Vec<f64> = rows.iter().map(|r| r["raw.mAP"].as_f64().expect("mAP")).collect();
    assert!(sorted.windows(2).all(|w| w[0] >= w[1]), "best first: {sorted:?}");
    let baseline = rows.iter().find(|r| r["variant"] == "train.lr=0.002").expect("baseline row");
    assert_eq!(baseline["raw.mAP_delta"], 0.0);
    assert_eq!(baseline["n"], 1);
    let out = show(&["--baseline", "train.lr=9"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("baseline `train.lr=9` is not a variant"), "{}", text(&out).1);
    let out = show(&["--format", "md", "--name", name]);
    assert!(text(&out).0.contains("| train.lr=0.001 (baseline) | 0.001 | succeeded | 1/1 |"), "{}", text(&out).0);

    // Another process holding the workspace: exit 3 naming it.
    let _held = sspa_dag::WorkspaceLock::acquire(&dir.path().join("work/demo"), "test").expect("lock");
    let out = exp(dir.path(), &llm, &["-S", "train.lr=5e-3"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("locked by PID {}", std::process::id())), "{stderr}");
}

#[test]
fn ablate_runs_the_paper_tables_and_writes_them_like_the_paper() {
    let llm = test_llm();
    let dir = project();
    tiny_demo(dir.path());
    let config = dir.path().join("domains/demo.toml");
    std::fs::write(&config, small_training(&std::fs::read_to_string(&config).expect("read"), 64)).expect("write");
    let ablate = |args: &[&str]| {
        bin()
            .current_dir(dir.path())
            .env("SSPA_LLM_URL", &llm)
            .args(["ablate", "domains/demo.toml"])
            .args(args)
            .output()
            .expect("spawn")
    };
    let out = ablate(&["--tables", "VI,X"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("unknown table(s) `X`"), "{}", text(&out).1);

    // Table VI (KAP from the template, KAP off, no CAP, no DSF, full) and IX (Uni-D, no gate):
    // the new switches train and evaluate end to end.
    let out = ablate(&["--tables", "VI,IX", "--name", "study"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let experiment: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("work/demo/experiments/study.json")).expect("record"))
            .expect("json");
    let variants = experiment["variants"].as_array().expect("variants");
    assert_eq!(variants.len(), 7, "5 rows of VI and 2 of IX besides full SSPA");
    assert!(variants.iter().all(|v| v["status"] == "succeeded"), "{experiment}");
    let markdown = std::fs::read_to_string(dir.path().join("work/demo/experiments/study/ablation.md")).expect("md");
    assert_eq!(stdout, markdown);
    assert!(markdown.contains("## Table VI: split stage (KAP, CAP, DSF)"), "{markdown}");
    assert!(markdown.contains("## Table IX: category centres"), "{markdown}");
    for row in ["| KAP from the fixed template |", "| no KAP |", "| Uni-D (learned classifier) |"] {
        assert!(markdown.replace("**", "").contains(row), "{row}: {markdown}");
    }
    assert_eq!(markdown.matches("(n=1)").count(), 7 + 1, "every row has its number: {markdown}");
    assert!(markdown.contains("| **"), "the best row is bold: {markdown}");
    let html = std::fs::read_to_string(dir.path().join("work/demo/experiments/study/ablation.html")).expect("html");
    assert!(html.contains("<h2>Table IX: category centres</h2>") && html.contains("class=\"best\""), "{html}");

    // The study again: nothing is run.
    let before = runs(dir.path());
    let out = ablate(&["--tables", "VI,IX", "--name", "study"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(runs(dir.path()), before, "finished variants are not run again");
}

#[test]
fn a_failing_variant_is_marked_failed_and_the_others_finish() {
    let llm = test_llm();
    let dir = tiny_training_project("");
    // The first variant's LLM endpoint answers nothing (port 9): its describe fails, no retries.
    let out = bin()
        .current_dir(dir.path())
        .env("SSPA_LLM_URL", &llm)
        .env("SSPA_TEST_DEAD_LLM", "http://127.0.0.1:9/v1")
        .args(["exp", "run", "domains/demo.toml", "--json"])
        .args(["-S", "llm.base_url_env=SSPA_TEST_DEAD_LLM,SSPA_LLM_URL", "-S", "llm.max_retries=0"])
        .output()
        .expect("spawn");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let experiment: serde_json::Value = serde_json::from_str(&stdout).expect("experiment JSON");
    let variants = experiment["variants"].as_array().expect("variants");
    assert_eq!(variants.len(), 2);
    assert_eq!(variants[0]["status"], "failed", "{stdout}");
    assert_eq!(variants[1]["status"], "succeeded", "the next variant still runs: {stdout}");
    assert!(variants[1]["metrics"]["evaluate.raw.mAP"].is_number(), "{stdout}");
    let error = variants[0]["error"].as_str().expect("error");
    assert!(error.starts_with("stage `describe`:"), "{error}");

    // The table keeps the failed variant, with its status and error.
    let out = bin()
        .current_dir(dir.path())
        .args(["exp", "show", "domains/demo.toml", "--format", "json"])
        .output()
        .expect("spawn");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let table: serde_json::Value = serde_json::from_str(&stdout).expect("table JSON");
    let rows = table["rows"].as_array().expect("rows");
    let failed = rows.iter().find(|r| r["status"] == "failed").unwrap_or_else(|| panic!("no failed row: {stdout}"));
    assert!(failed.to_string().contains("describe"), "{failed}");
    assert!(rows.iter().any(|r| r["status"] == "succeeded" && r["raw.mAP"].is_number()), "{stdout}");
}

#[test]
fn a_batch_killed_mid_way_resumes_with_only_the_missing_variants() {
    let llm = test_llm();
    let dir = tiny_training_project("");
    let grid = ["-S", "train.lr=1e-3,2e-3,3e-3", "--name", "lr3"];
    let mut child = bin()
        .current_dir(dir.path())
        .env("SSPA_LLM_URL", &llm)
        .args(["exp", "run", "domains/demo.toml"])
        .args(grid)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let record = dir.path().join("work/demo/experiments/lr3.json");
    let succeeded = |experiment: &serde_json::Value| -> Vec<String> {
        experiment["variants"]
            .as_array()
            .map(|v| v.iter().filter(|v| v["status"] == "succeeded").map(|v| v["run_id"].to_string()).collect())
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let done_before = loop {
        assert!(std::time::Instant::now() < deadline, "no variant finished");
        let experiment: serde_json::Value = std::fs::read(&record)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or(serde_json::Value::Null);
        let done = succeeded(&experiment);
        if !done.is_empty() {
            child.kill().expect("kill -9");
            break done;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let _ = child.wait();
    let experiment: serde_json::Value = serde_json::from_slice(&std::fs::read(&record).expect("record")).expect("json");
    let done_at_kill = succeeded(&experiment);
    assert!(done_at_kill.len() >= done_before.len() && done_at_kill.len() < 3, "{experiment}");
    let runs_before = runs(dir.path());

    let out = exp(dir.path(), &llm, &[&grid[..], &["--json"]].concat());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let experiment: serde_json::Value = serde_json::from_str(&stdout).expect("experiment JSON");
    let done = succeeded(&experiment);
    assert_eq!(done.len(), 3, "{stdout}");
    for run_id in &done_at_kill {
        assert!(done.contains(run_id), "a variant finished before the kill keeps its run {run_id}: {stdout}");
    }
    assert_eq!(runs(dir.path()) - runs_before, 3 - done_at_kill.len(), "only the missing variants ran");
    assert_eq!(
        stderr.matches("]: done earlier").count(),
        done_at_kill.len(),
        "the resumed batch says which variants it skips: {stderr}"
    );
}

#[test]
fn jobs_2_runs_variants_side_by_side_and_still_computes_shared_results_once() {
    let llm = test_llm();
    let dir = tiny_training_project("");
    let out = exp(dir.path(), &llm, &["-S", "train.lr=1e-3,2e-3,3e-3", "--jobs", "2", "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let experiment: serde_json::Value = serde_json::from_str(&stdout).expect("experiment JSON");
    let records: Vec<serde_json::Value> = experiment["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| {
            assert_eq!(v["status"], "succeeded", "{stdout}");
            let path = dir.path().join("work/demo/runs").join(v["run_id"].as_str().expect("run id")).join("run.json");
            serde_json::from_slice(&std::fs::read(path).expect("run record")).expect("json")
        })
        .collect();
    // Every upstream result computed by one variant only; the variants share its key.
    for name in ["describe", "embed", "shard", "features"] {
        let ran = records
            .iter()
            .flat_map(|r| r["stages"].as_array().expect("stages"))
            .filter(|s| s["name"] == name && s["status"] == "ran")
            .count();
        assert_eq!(ran, 1, "{name} computed once");
    }
    // The two train-only variants ran at the same time (their runs overlap).
    let span = |r: &serde_json::Value| {
        (r["started_at"].as_str().unwrap_or("").to_owned(), r["finished_at"].as_str().unwrap_or("").to_owned())
    };
    let (a, b) = (span(&records[1]), span(&records[2]));
    assert!(a.0 < b.1 && b.0 < a.1, "variants 2 and 3 overlap: {a:?} {b:?}");
    assert!(
        stderr.contains("variant{n=2}: ") && stderr.contains("variant{n=3}: "),
        "log lines name their variant: {stderr}"
    );
}

/// Issue 26: a resumed batch counted a variant as done when its *config* matched, whatever its
/// data or pipeline were now. The data changes under the same config (the manifest's bytes, read
/// by describe and shard): both variants run again. An experiment record that cannot be read is
/// not silently replaced: the batch stops, naming it, and leaves it as it is.
#[test]
fn a_resumed_batch_reruns_variants_whose_stage_keys_changed_and_keeps_an_unreadable_record() {
    let llm = test_llm();
    let dir = tiny_training_project("");
    let grid = ["-S", "train.lr=1e-3,2e-3", "--name", "keys"];
    let out = exp(dir.path(), &llm, &grid);
    assert!(out.status.success(), "{}", text(&out).1);
    let before = runs(dir.path());
    let out = exp(dir.path(), &llm, &grid);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!((runs(dir.path()), stderr.matches("]: done earlier").count()), (before, 2), "{stderr}");

    let manifest = dir.path().join("data_manifest/demo.toml");
    let mut text_in = std::fs::read_to_string(&manifest).expect("manifest");
    text_in.push_str("\n# the same images, re-exported\n");
    std::fs::write(&manifest, text_in).expect("write");
    let out = exp(dir.path(), &llm, &[&grid[..], &["--json"]].concat());
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("]: done earlier").count(), 0, "{stderr}");
    assert!(stderr.contains("the keys of") && stderr.contains("shard"), "says which keys changed: {stderr}");
    assert_eq!(runs(dir.path()) - before, 2, "both variants ran again");
    let experiment: serde_json::Value = serde_json::from_str(&stdout).expect("experiment JSON");
    let keys = &experiment["variants"][0]["stage_keys"];
    assert!(keys["train"].is_string() && keys["shard"].is_string(), "{stdout}");

    let record = dir.path().join("work/demo/experiments/keys.json");
    std::fs::write(&record, b"{\"name\": \"keys\", \"variants\": [").expect("damage the record");
    let out = exp(dir.path(), &llm, &grid);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("keys.json") && stderr.contains("cannot be read"), "{stderr}");
    assert_eq!(std::fs::read(&record).expect("record"), b"{\"name\": \"keys\", \"variants\": [", "left as it is");
}
