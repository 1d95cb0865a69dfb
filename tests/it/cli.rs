//! End-to-end tests of the `sspa-pipe` binary on a copy of the project's files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sspa-pipe"));
    command.env_remove("SSPA_LLM_URL").env_remove("RUST_LOG");
    command
}

/// A temp project with the repository's pipeline, domains, templates and manifests.
pub(crate) fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["pipeline", "domains", "templates", "data_manifest"] {
        copy_tree(&source.join(sub), &dir.path().join(sub));
    }
    dir
}

pub(crate) fn copy_tree(from: &Path, to: &Path) {
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

pub(crate) fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn every_shipped_domain_config_is_valid() {
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // The production domains train on CUDA: check them as a `--features tch` build would.
    let checks = sspa_config::Checks { libtorch: true, ..sspa_stages::config_checks() };
    for domain in ["demo", "natural", "pedestrian", "remote_sensing"] {
        let path = source.join("domains").join(format!("{domain}.toml"));
        if let Err(e) = sspa_config::load(&path, &checks) {
            panic!("{domain}: {e}");
        }
    }
}

#[test]
fn plan_reports_every_missing_input_of_every_stage_at_once() {
    let dir = project();
    let config = dir.path().join("domains/remote_sensing.toml");
    let text_in = std::fs::read_to_string(&config).expect("read");
    let on_cpu = text_in.replace("device = \"cuda:0\"", "device = \"cpu\"").replace("precision = \"mixed\"", "");
    std::fs::write(&config, on_cpu).expect("write");
    let empty = dir.path().join("no-data");
    std::fs::create_dir_all(&empty).expect("mkdir");
    let out = bin()
        .current_dir(dir.path())
        .env("SSPA_DATA_ROOT", &empty)
        .args(["plan", "domains/remote_sensing.toml"])
        .output()
        .expect("spawn");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // The CLIP weights (embed, features, train) and the annotation files (shard), in one report.
    for needle in ["weights/clip", "multiscene/train.csv", "embed", "shard"] {
        assert!(stderr.contains(needle), "`{needle}` missing from: {stderr}");
    }
}

#[test]
fn a_gpu_domain_in_a_cpu_build_fails_at_load_naming_the_feature() {
    let dir = project();
    let out = run(dir.path(), &["plan", "domains/natural.toml"]);
    let (_, stderr) = text(&out);
    if sspa_infer::device::LIBTORCH {
        return;
    }
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`train.device`: `cuda:0` needs the libtorch backend"), "{stderr}");
    assert!(stderr.contains("--features tch"), "{stderr}");
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
    // A batch while another holds the workspace: exit 3 naming the holder, nothing recorded.
    for batch in [
        &["exp", "run", "domains/demo.toml", "-S", "train.lr=1e-3,2e-3"][..],
        &["ablate", "domains/demo.toml", "--tables", "VII"],
    ] {
        let out = run(dir.path(), batch);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(3), "{batch:?}: {stderr}");
        assert!(stderr.contains(&format!("locked by PID {}", std::process::id())), "{stderr}");
    }
    assert!(!workspace.join("experiments").exists(), "no experiment record while locked");
}

#[test]
fn graph_prints_dot_on_stdout() {
    let dir = project();
    let out = run(dir.path(), &["graph", "domains/demo.toml"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.starts_with("digraph pipeline {"), "{stdout}");
    for edge in [
        "\"describe\" -> \"embed\"",
        "\"embed\" -> \"train\"",
        "\"shard\" -> \"features\"",
        "\"features\" -> \"train\"",
        "\"evaluate\" -> \"report\"",
    ] {
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
pub(crate) fn tiny_demo(dir: &Path) {
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

/// The LLM endpoint of the whole-pipeline tests: the real local server when `SSPA_TEST_LLM_URL`
/// names one (`scripts/test` starts it), else the in-repo OpenAI-compatible fault server on
/// 127.0.0.1, answering every label (the tests never skip).
pub(crate) fn test_llm() -> String {
    use std::sync::OnceLock;
    if let Ok(url) = std::env::var("SSPA_TEST_LLM_URL") {
        return url;
    }
    static SERVER: OnceLock<(tokio::runtime::Runtime, sspa_llm::fault_server::FaultServer)> = OnceLock::new();
    let (_, server) = SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        let server = runtime.block_on(sspa_llm::fault_server::FaultServer::start()).expect("fault server");
        (runtime, server)
    });
    server.base_url()
}

/// A temp project with the tiny demo (32 + 16 mosaics), its config shrunk by [`small_training`] at
/// 64 px and followed by `extra` (more TOML sections).
pub(crate) fn tiny_training_project(extra: &str) -> tempfile::TempDir {
    let dir = project();
    tiny_demo(dir.path());
    let config = dir.path().join("domains/demo.toml");
    let text_in = small_training(&std::fs::read_to_string(&config).expect("read"), 64);
    std::fs::write(&config, format!("{text_in}\n{extra}")).expect("write");
    dir
}

/// The demo config shrunk for tests: `image_size` px, d = 16, one epoch of batches of 16.
pub(crate) fn small_training(config: &str, image_size: u32) -> String {
    config
        .replace("image_size = 112", &format!("image_size = {image_size}"))
        .replace("embed_dim = 192", "embed_dim = 16")
        .replace("epochs = 8", "epochs = 1")
        .replace("batch_size = 64", "batch_size = 16")
}

/// The whole demo pipeline, shrunk (32 + 16 mosaics at 64 px, d = 16, one epoch), against the local
/// LLM server that `scripts/test` starts (`SSPA_TEST_LLM_URL`).
#[test]
fn whole_pipeline_runs_then_reruns_only_what_a_param_change_touches() {
    let llm = test_llm();
    let dir = project();
    tiny_demo(dir.path());
    let config = dir.path().join("domains/demo.toml");
    let small = small_training(&std::fs::read_to_string(&config).expect("read"), 64);
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
    assert_eq!(statuses(&first).len(), 7);
    // Published results hold no absolute path (neither the project's nor the encoders'
    // installation): they can move to another workspace or machine.
    let root = dir.path().to_str().expect("utf-8").to_owned();
    let encoders = sspa_encoders::paths::encoders_root();
    let encoders = encoders.to_str().expect("utf-8").to_owned();
    for stage in first["stages"].as_array().expect("stages") {
        let out = PathBuf::from(stage["output_dir"].as_str().expect("dir"));
        for entry in std::fs::read_dir(&out).expect("output").flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".json") || name.ends_with(".md") {
                let text = std::fs::read_to_string(entry.path()).expect("read");
                assert!(!text.contains(&root), "{} names the workspace: {text}", entry.path().display());
                assert!(!text.contains(&encoders), "{} names the encoders' directory: {text}", entry.path().display());
            }
        }
    }
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
    // The run index carries the evaluate stage's metrics into the run's status.
    let out = bin().current_dir(dir.path()).args(["status", "domains/demo.toml", "--json"]).output().expect("spawn");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let status: serde_json::Value = serde_json::from_str(&stdout).expect("status JSON");
    assert_eq!(status["runs"][0]["metrics"]["evaluate.raw.mAP"], metrics["raw"]["mAP"], "{stdout}");
    assert_eq!(status["runs"][0]["metrics"]["evaluate.ema.CF1"], metrics["ema"]["CF1"], "{stdout}");
    let html = std::fs::read_to_string(output("report").join("report.html")).expect("report");
    assert!(html.contains("<svg") && !html.contains("http://") && !html.contains("https://"));
    // 64 px → a 2×2 patch grid: attention and gate maps are drawn as PNGs and inlined.
    let maps: Vec<PathBuf> = std::fs::read_dir(output("report").join("maps"))
        .expect("maps directory")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "png"))
        .collect();
    assert!(!maps.is_empty(), "no map PNGs");
    for map in &maps {
        let bytes = std::fs::read(map).expect("read png");
        assert!(bytes.starts_with(b"\x89PNG"), "{} is not a PNG", map.display());
    }
    assert!(html.contains("data:image/png;base64,"), "maps inlined in the HTML");

    // `predict` on test images reproduces the evaluate stage's scores for them (same geometry,
    // encoder and head); an unreadable file is reported and the others are still predicted.
    let run_dir = dir.path().join("work/demo/runs").join(first["run_id"].as_str().expect("run id"));
    let scores = sspa_metrics::read_scores(&output("evaluate").join("scores_ema.parquet")).expect("scores");
    let images = ["fashion-mosaic/test/000000.png", "fashion-mosaic/test/000003.png"];
    let not_an_image = dir.path().join("notes.txt");
    std::fs::write(&not_an_image, "not an image").expect("write");
    let mut args: Vec<String> = ["predict", "--run", run_dir.to_str().expect("utf-8"), "--ema", "--threshold", "0"]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
    args.extend(images.iter().map(|image| format!("data/{image}")));
    args.push(not_an_image.display().to_string());
    let out = bin().current_dir(dir.path()).args(&args).output().expect("spawn");
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "one unreadable image: {stderr}");
    assert!(stderr.contains("notes.txt"), "{stderr}");
    let predicted: serde_json::Value = serde_json::from_str(&stdout).expect("predict JSON");
    let predicted = predicted.as_array().expect("one entry per readable image");
    assert_eq!(predicted.len(), images.len());
    for (image, entry) in images.iter().zip(predicted) {
        let row = scores.images().iter().position(|name| name == image).expect("image scored by evaluate");
        let labels = entry["labels"].as_array().expect("labels");
        assert_eq!(labels.len(), scores.n_labels(), "threshold 0 reports every label");
        for label in labels {
            let name = label["label"].as_str().expect("label");
            let column = scores.labels().iter().position(|l| l == name).expect("known label");
            let expected = scores.column(column)[row];
            let actual = label["probability"].as_f64().expect("probability") as f32;
            assert!((actual - expected).abs() < 1e-4, "{image} {name}: predict {actual} vs evaluate {expected}");
        }
    }

    let second = run_json(&["run", "domains/demo.toml", "--json"]);
    assert!(statuses(&second).iter().all(|(_, s)| s == "skipped"), "{:?}", statuses(&second));

    // `-S` overrides a value for one invocation, validated like the file.
    let out = run(dir.path(), &["plan", "domains/demo.toml", "-S", "train.lr=5e-3"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stage_line(&stdout, "train").contains("param train.lr changed"), "{stdout}");
    assert!(stage_line(&stdout, "features").contains("skip"), "{stdout}");
    let out = run(dir.path(), &["plan", "domains/demo.toml", "-S", "train.lr=fast", "-S", "train.lr_typo=1"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("`-S train.lr=fast`: `train.lr`: invalid type"), "{stderr}");
    assert!(stderr.contains("`-S train.lr_typo=1`: unknown key `train.lr_typo`"), "{stderr}");

    // `--force train` trains again (the finished checkpoints of this configuration are discarded,
    // not republished), and what reads its output re-runs.
    let out = bin()
        .current_dir(dir.path())
        .env("SSPA_LLM_URL", &llm)
        .args(["run", "domains/demo.toml", "--force", "train", "--json"])
        .output()
        .expect("spawn");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let forced: serde_json::Value = serde_json::from_str(&stdout).expect("run record");
    let ran: Vec<String> = statuses(&forced).into_iter().filter(|(_, s)| s == "ran").map(|(n, _)| n).collect();
    assert_eq!(ran, ["train", "evaluate", "report"]);
    assert!(stderr.contains("checkpoints of this configuration are discarded"), "{stderr}");
    assert!(!stderr.contains("resumed from the checkpoint"), "{stderr}");
    assert!(stderr.contains("train: epoch 1/1 loss"), "trained an epoch: {stderr}");

    std::fs::write(&config, small.replace("lr = 1e-3", "lr = 2e-3")).expect("write");
    let third = run_json(&["run", "domains/demo.toml", "--json"]);
    let ran: Vec<String> = statuses(&third).into_iter().filter(|(_, s)| s == "ran").map(|(n, _)| n).collect();
    assert_eq!(ran, ["train", "evaluate", "report"]);
}

/// A tiny random-weight HF `CLIPModel` (the `sspa-clip` parity fixture: ViT, 32 px, patch 8,
/// joint width 16) with its token embedding widened to CLIP's full BPE vocabulary, so that real
/// label texts tokenise; the installed `bpe_simple_vocab_16e6.txt.gz` is its tokenizer.
fn tiny_clip_model(dir: &Path) {
    use safetensors::tensor::TensorView;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates/clip/tests/fixtures/clip_tiny_hf");
    std::fs::create_dir_all(dir).expect("mkdir");
    let config = std::fs::read_to_string(fixture.join("config.json")).expect("fixture config");
    let mut config: serde_json::Value = serde_json::from_str(&config).expect("json");
    let small_vocab = config["text_config"]["vocab_size"].as_u64().expect("vocab") as usize;
    config["text_config"]["vocab_size"] = 49408.into();
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&config).expect("json")).expect("write");
    let bytes = std::fs::read(fixture.join("model.safetensors")).expect("fixture weights");
    let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let key = "text_model.embeddings.token_embedding.weight";
    let embedding = tensors.tensor(key).expect("token embedding");
    let width = embedding.shape()[1];
    let row_bytes = width * 4;
    let mut widened = Vec::with_capacity(49408 * row_bytes);
    for token in 0..49408 {
        let row = token % small_vocab;
        widened.extend_from_slice(&embedding.data()[row * row_bytes..(row + 1) * row_bytes]);
    }
    let mut views: Vec<(String, TensorView<'_>)> = Vec::new();
    for (name, view) in tensors.tensors() {
        if name == key {
            views.push((name, TensorView::new(safetensors::Dtype::F32, vec![49408, width], &widened).expect("view")));
        } else {
            views.push((name, view));
        }
    }
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).expect("write weights");
}

#[test]
fn clip_preset_runs_end_to_end_and_predicts() {
    let llm = test_llm();
    let dir = project();
    tiny_demo(dir.path());
    tiny_clip_model(&dir.path().join("weights/clip-tiny"));
    let config = dir.path().join("domains/demo.toml");
    let demo = std::fs::read_to_string(&config).expect("read");
    assert!(demo.contains("preset = \"minilm-efficientnet-lite0\""), "the demo's preset line");
    let clip = small_training(
        &demo.replace(
            "preset = \"minilm-efficientnet-lite0\"",
            "preset = \"clip-vit-b32\"\nimage_weights = \"weights/clip-tiny\"\nimage_projection = \"none\"",
        ),
        32,
    );
    std::fs::write(&config, &clip).expect("write");
    let run_demo = || -> (String, serde_json::Value) {
        let out = bin()
            .current_dir(dir.path())
            .env("SSPA_LLM_URL", &llm)
            .args(["run", "domains/demo.toml", "--json"])
            .output()
            .expect("spawn");
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{stderr}");
        let record = serde_json::from_str(&stdout).expect("run record");
        (stdout, record)
    };
    let (stdout, record) = run_demo();
    let stage = |name: &str| {
        record["stages"].as_array().and_then(|s| s.iter().find(|x| x["name"] == name)).expect("stage").clone()
    };
    assert!(record["stages"].as_array().expect("stages").iter().all(|s| s["status"] == "ran"), "{stdout}");
    let features: serde_json::Value = serde_json::from_slice(
        &std::fs::read(PathBuf::from(stage("train")["output_dir"].as_str().expect("dir")).join("features.json"))
            .expect("features"),
    )
    .expect("json");
    assert_eq!(features["encoder"], "clip-image");
    assert_eq!(
        (features["width"].as_u64(), features["patches_per_image"].as_u64()),
        (Some(16), Some(16)),
        "joint width 16, 4×4 patches"
    );

    let run_dir = dir.path().join("work/demo/runs").join(record["run_id"].as_str().expect("run id"));
    let out = bin()
        .current_dir(dir.path())
        .args([
            "predict",
            "--run",
            run_dir.to_str().expect("utf-8"),
            "--top-k",
            "2",
            "--format",
            "csv",
            "data/fashion-mosaic/test/000001.png",
        ])
        .output()
        .expect("spawn");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "header + top 2: {stdout}");
    assert_eq!(lines[0], "image,label,probability");
    assert!(lines[1].starts_with("data/fashion-mosaic/test/000001.png,"), "{stdout}");

    // The same run with the image encoder trained: train and what follows re-run; features come
    // from the run's own encoder, and predict uses it.
    assert!(clip.contains("freeze_image_encoder = true"), "the demo's freeze line");
    std::fs::write(&config, clip.replace("freeze_image_encoder = true", "freeze_image_encoder = false"))
        .expect("write");
    let (_, record) = run_demo();
    let stage = |name: &str| {
        record["stages"].as_array().and_then(|s| s.iter().find(|x| x["name"] == name)).expect("stage").clone()
    };
    let output_dir = |name: &str| PathBuf::from(stage(name)["output_dir"].as_str().expect("dir"));
    assert_eq!(
        (stage("shard")["status"].clone(), stage("train")["status"].clone(), stage("evaluate")["status"].clone()),
        ("skipped".into(), "ran".into(), "ran".into())
    );
    let train_dir = output_dir("train");
    let features: serde_json::Value =
        serde_json::from_slice(&std::fs::read(train_dir.join("features.json")).expect("features")).expect("json");
    assert_eq!((features["encoder"].as_str(), features["fine_tuned"].as_bool()), (Some("clip-vit"), Some(true)));
    assert_eq!(features["splits"], serde_json::json!({}), "no feature cache: {features}");
    let config_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(train_dir.join("config.json")).expect("config")).expect("json");
    assert_eq!(config_json["backbone"]["kind"], "clip-vit", "config.json records the trained encoder");
    let run_dir = dir.path().join("work/demo/runs").join(record["run_id"].as_str().expect("run id"));
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(output_dir("evaluate").join("metrics.json")).expect("metrics"))
            .expect("json");
    assert!(metrics["raw"]["mAP"].is_number() && metrics["ema"].is_object(), "{metrics}");
    let out = bin()
        .current_dir(dir.path())
        .args(["predict", "--run", run_dir.to_str().expect("utf-8"), "data/fashion-mosaic/test/000001.png"])
        .output()
        .expect("spawn");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("000001.png"), "{stdout}");

    // The promotion gate re-scores a trained encoder batch by batch, holding only the scores:
    // the same images and probabilities as evaluate's.
    let scored = sspa_infer::score::score_split(
        &train_dir,
        sspa_train::Weights::Raw,
        &output_dir("features"),
        &output_dir("shard"),
        "test",
        &sspa_infer::device::select(sspa_infer::DeviceSettings::of(&Default::default())).expect("device"),
        &|| false,
    )
    .expect("gate scoring");
    let evaluated = sspa_metrics::read_scores(&output_dir("evaluate").join("scores.parquet")).expect("scores");
    assert_eq!(scored.images, evaluated.images(), "same images, same order");
    let worst = scored.scores.iter().zip(evaluated.to_row_major()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(worst < 1e-5, "gate and evaluate scores differ by {worst}");
}
