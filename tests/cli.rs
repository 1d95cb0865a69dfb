//! End-to-end tests of the `sspa-pipe` binary on a copy of the project's files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sspa-pipe"));
    command.env_remove("SSPA_LLM_URL").env_remove("RUST_LOG");
    command
}

/// A temp project with the repository's pipeline, domains, templates and manifests.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["pipeline", "domains", "templates", "data_manifest"] {
        copy_tree(&source.join(sub), &dir.path().join(sub));
    }
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

fn run(dir: &Path, args: &[&str]) -> Output {
    bin().current_dir(dir).args(args).output().expect("spawn sspa-pipe")
}

fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn every_shipped_domain_config_is_valid() {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for domain in ["demo", "natural", "pedestrian", "remote_sensing"] {
        let path = source.join("domains").join(format!("{domain}.toml"));
        if let Err(e) = sspa_config::load(&path) {
            panic!("{domain}: {e}");
        }
    }
}

#[test]
fn config_errors_are_all_reported_with_position_and_exit_2() {
    let dir = project();
    let config = dir.path().join("domains/demo.toml");
    let text_in = std::fs::read_to_string(&config).expect("read");
    let broken = text_in.replace("epochs = 8", "epochs = 8\nlearning_rate = 0.1").replace("lr = 1e-3", "lr = \"fast\"");
    std::fs::write(&config, broken).expect("write");
    let out = run(dir.path(), &["plan", "domains/demo.toml"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("2 errors in `domains/demo.toml`"), "{stderr}");
    let line_of = |needle: &str| text_in.lines().position(|l| l.starts_with(needle)).expect("line") + 1;
    assert!(
        stderr.contains(&format!("domains/demo.toml:{}:1: unknown key `train.learning_rate`", line_of("epochs") + 1)),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("domains/demo.toml:{}:6: `train.lr`: invalid type", line_of("lr") + 1)),
        "{stderr}"
    );
}

#[test]
fn locked_workspace_exits_3_naming_the_holder() {
    let dir = project();
    let workspace = dir.path().join("work/demo");
    let _held = sspa_dag::WorkspaceLock::acquire(&workspace, "test").expect("lock");
    let out = run(dir.path(), &["run", "domains/demo.toml"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("locked by PID {}", std::process::id())), "{stderr}");
}

#[test]
fn graph_prints_dot_on_stdout() {
    let dir = project();
    let out = run(dir.path(), &["graph", "domains/demo.toml"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("digraph pipeline {"), "{stdout}");
    for edge in
        ["\"describe\" -> \"embed\"", "\"embed\" -> \"train\"", "\"shard\" -> \"train\"", "\"evaluate\" -> \"report\""]
    {
        assert!(stdout.contains(edge), "missing {edge} in {stdout}");
    }
}

#[test]
fn pipeline_cycle_is_a_usage_error_naming_the_chain() {
    let dir = project();
    let pipeline = dir.path().join("pipeline/pipeline.toml");
    let text_in = std::fs::read_to_string(&pipeline).expect("read");
    let cyclic = text_in.replace("[stages.describe]\n", "[stages.describe]\nneeds = [\"report\"]\n");
    std::fs::write(&pipeline, cyclic).expect("write");
    let out = run(dir.path(), &["graph", "domains/demo.toml"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("dependency cycle: describe -> report -> evaluate -> train -> embed -> describe"),
        "{stderr}"
    );
}

#[test]
fn unknown_stage_name_is_a_usage_error() {
    let dir = project();
    let out = run(dir.path(), &["plan", "domains/demo.toml", "--until", "trian"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown stage `trian`"), "{stderr}");
}

#[test]
fn missing_config_file_is_named() {
    let dir = project();
    let out = run(dir.path(), &["run", "domains/nope.toml"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("domains/nope.toml"), "{stderr}");
}

#[test]
fn eval_prints_the_documented_json_and_rejects_bad_scores() {
    use sspa_metrics::{Scores, Targets};
    let dir = tempfile::tempdir().expect("tempdir");
    let images: Vec<String> = (0..4).map(|i| format!("img{i}.png")).collect();
    let labels = vec!["cat".to_string(), "dog".to_string()];
    let scores = Scores::from_row_major(images.clone(), labels.clone(), &[0.9, 0.1, 0.8, 0.7, 0.2, 0.6, 0.4, 0.3])
        .expect("scores");
    // Rows in another order: matched by image name.
    let mut reversed = images.clone();
    reversed.reverse();
    let targets = Targets::from_row_major(reversed, labels.clone(), &[0, 0, 0, 1, 1, 1, 1, -1]).expect("targets");
    let scores_path = dir.path().join("scores.parquet");
    let targets_path = dir.path().join("targets.parquet");
    sspa_metrics::write_scores(&scores_path, &scores).expect("write");
    sspa_metrics::write_targets(&targets_path, &targets).expect("write");
    let out = bin()
        .args(["eval", "--json", "--scores"])
        .arg(&scores_path)
        .arg("--targets")
        .arg(&targets_path)
        .output()
        .expect("spawn");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let keys: Vec<&str> = json.as_object().expect("object").keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        ["mAP", "CP", "CR", "CF1", "OP", "OR", "OF1", "top3", "per_class_ap", "classes_without_positives"]
    );
    // cat: positives img0 (0.9) and img1 (0.8), ranked 1 and 2: AP 100. dog: img1 (0.7) positive,
    // img3 ignored, img0 (0.1) and img2 (0.6) negative: ranked 1st, AP 100.
    assert_eq!(json["per_class_ap"]["cat"], 100.0);
    assert_eq!(json["mAP"], 100.0);

    let bad = Scores::from_row_major(images, labels, &[0.9, 1.5, 0.8, 0.7, 0.2, 0.6, 0.4, 0.3]).expect("scores");
    sspa_metrics::write_scores(&scores_path, &bad).expect("write");
    let out =
        bin().args(["eval", "--scores"]).arg(&scores_path).arg("--targets").arg(&targets_path).output().expect("spawn");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("dog") && stderr.contains("1.5"), "{stderr}");
}

/// The demo domain shrunk to 48 mosaics, so the real `shard` stage runs in a second.
fn tiny_demo(dir: &Path) {
    let manifest = dir.join("data_manifest/demo.toml");
    let text_in = std::fs::read_to_string(&manifest).expect("read");
    let tiny =
        text_in.replace("train_images = 8000", "train_images = 32").replace("test_images = 2000", "test_images = 16");
    std::fs::write(&manifest, tiny).expect("write");
}

fn stage_line<'a>(stdout: &'a str, stage: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(stage))
        .unwrap_or_else(|| panic!("no {stage} in {stdout}"))
}

#[test]
fn real_shard_stage_reruns_only_when_what_it_reads_changes() {
    let dir = project();
    tiny_demo(dir.path());
    let out = run(dir.path(), &["run", "domains/demo.toml", "--until", "shard"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stage_line(&stdout, "shard").contains("ran"), "{stdout}");

    let out = run(dir.path(), &["run", "domains/demo.toml", "--until", "shard"]);
    let (stdout, _) = text(&out);
    assert!(stage_line(&stdout, "shard").contains("skipped") && stdout.contains("unchanged"), "{stdout}");

    // A value shard does not read: still cached.
    let config = dir.path().join("domains/demo.toml");
    let original = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, original.replace("epochs = 8", "epochs = 9")).expect("write");
    let out = run(dir.path(), &["plan", "domains/demo.toml", "--until", "shard"]);
    let (stdout, _) = text(&out);
    assert!(stage_line(&stdout, "shard").contains("skip"), "{stdout}");

    // A value it reads: planned to run, with the reason.
    std::fs::write(&config, original.replace("shard_size = 1000", "shard_size = 10")).expect("write");
    let out = run(dir.path(), &["plan", "domains/demo.toml", "--until", "shard"]);
    let (stdout, _) = text(&out);
    assert!(
        stage_line(&stdout, "shard").contains("run") && stdout.contains("param data.shard_size changed"),
        "{stdout}"
    );

    let out = run(dir.path(), &["run", "domains/demo.toml", "--until", "shard", "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let record: serde_json::Value = serde_json::from_str(&stdout).expect("run record JSON on stdout");
    assert_eq!(record["stages"][0]["name"], "shard");
    assert_eq!(record["stages"][0]["status"], "ran");
    assert!(record["git_commit"].is_null() || record["git_commit"].is_string());

    let out = run(dir.path(), &["status", "domains/demo.toml", "--json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).expect("status JSON");
    assert_eq!(status["runs"].as_array().map(Vec::len), Some(3));
    let shard = status["stages"].as_array().and_then(|s| s.iter().find(|x| x["name"] == "shard")).expect("shard");
    assert_eq!(shard["state"], "up to date");

    let out = run(dir.path(), &["clean", "domains/demo.toml", "--keep-last", "1"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("removed 2 run record(s), 1 cached result(s)"), "{stdout}");
}

/// The whole demo pipeline, shrunk (48 + 24 mosaics at 32 px, d = 16, one epoch), against the local
/// LLM server that `scripts/test` starts (`SSPA_TEST_LLM_URL`).
#[test]
fn whole_pipeline_runs_then_reruns_only_what_a_param_change_touches() {
    let Ok(llm) = std::env::var("SSPA_TEST_LLM_URL") else {
        assert!(std::env::var_os("CI").is_none(), "CI must export SSPA_TEST_LLM_URL (scripts/test does)");
        eprintln!("skipped: SSPA_TEST_LLM_URL is not set (run scripts/test, or scripts/llm-server start)");
        return;
    };
    let dir = project();
    tiny_demo(dir.path());
    let config = dir.path().join("domains/demo.toml");
    let small = std::fs::read_to_string(&config)
        .expect("read")
        .replace("image_size = 112", "image_size = 32")
        .replace("embed_dim = 192", "embed_dim = 16")
        .replace("epochs = 8", "epochs = 1")
        .replace("batch_size = 64", "batch_size = 16");
    std::fs::write(&config, &small).expect("write");
    let run_json = |args: &[&str]| -> serde_json::Value {
        let out = bin().current_dir(dir.path()).env("SSPA_LLM_URL", &llm).args(args).output().expect("spawn");
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        serde_json::from_str(&stdout).expect("run record")
    };
    let statuses = |record: &serde_json::Value| -> Vec<(String, String)> {
        record["stages"]
            .as_array()
            .expect("stages")
            .iter()
            .map(|s| (s["name"].as_str().unwrap_or("").to_string(), s["status"].as_str().unwrap_or("").to_string()))
            .collect()
    };

    let first = run_json(&["run", "domains/demo.toml", "--jobs", "2", "--json"]);
    assert!(statuses(&first).iter().all(|(_, s)| s == "ran"), "{:?}", statuses(&first));
    assert_eq!(statuses(&first).len(), 6);
    let output = |stage: &str| -> PathBuf {
        let s = first["stages"].as_array().and_then(|s| s.iter().find(|x| x["name"] == stage)).expect("stage");
        PathBuf::from(s["output_dir"].as_str().expect("dir"))
    };
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(output("evaluate").join("metrics.json")).expect("metrics"))
            .expect("json");
    for model in ["raw", "ema"] {
        let map = metrics[model]["mAP"].as_f64().expect("mAP");
        assert!((0.0..=100.0).contains(&map), "{model} mAP {map}");
    }
    let html = std::fs::read_to_string(output("report").join("report.html")).expect("report");
    assert!(html.contains("<svg") && !html.contains("http://") && !html.contains("https://"));

    let second = run_json(&["run", "domains/demo.toml", "--json"]);
    assert!(statuses(&second).iter().all(|(_, s)| s == "skipped"), "{:?}", statuses(&second));

    std::fs::write(&config, small.replace("lr = 1e-3", "lr = 2e-3")).expect("write");
    let third = run_json(&["run", "domains/demo.toml", "--json"]);
    let ran: Vec<String> = statuses(&third).into_iter().filter(|(_, s)| s == "ran").map(|(n, _)| n).collect();
    assert_eq!(ran, ["train", "evaluate", "report"]);
}
