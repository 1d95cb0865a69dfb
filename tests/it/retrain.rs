//! `sspa-pipe retrain`, `models` and `predict --model` on the demo at test size: a scheduled week
//! (promote, nothing changed, more data, corrupted labels, a new label) and the faults a
//! scheduled job meets (overlap, a damaged or deleted registry, kill -9 while promoting).

use crate::cli::{bin, project, test_llm, text};
use serde_json::Value;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

/// The demo at test size with a warm start from the registry and a notify command that appends
/// each decision to `notified.jsonl`. `train` images per day are set with [`set_train_images`].
fn scheduled_project() -> tempfile::TempDir {
    let dir = project();
    let manifest = dir.path().join("data_manifest/demo.toml");
    let text_in = std::fs::read_to_string(&manifest).expect("read");
    let nine =
        r#"names = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag"]"#;
    let changed = text_in
        .replace("train_images = 8000", "train_images = 120")
        .replace("test_images = 2000", "test_images = 300")
        .lines()
        .map(|line| if line.starts_with("names = ") { nine.to_owned() } else { line.to_owned() })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&manifest, changed).expect("write manifest");
    let config = dir.path().join("domains/demo.toml");
    let text_in = std::fs::read_to_string(&config).expect("read");
    let changed = text_in
        .replace("image_size = 112", "image_size = 64")
        .replace("embed_dim = 192", "embed_dim = 32")
        .replace("epochs = 8", "epochs = 4")
        .replace("batch_size = 64", "batch_size = 16")
        .replace("ema_decay = 0.997", "ema_decay = 0.9")
        .replace("device = \"cpu\"", "device = \"cpu\"\ninit = \"current\"");
    let notify = "\n[promote]\nmetric = \"mAP\"\nguard = []\nmax_drop = 3.0\n\n[notify]\ncommand = [\"sh\", \"-c\", \"cat >> notified.jsonl\"]\n";
    std::fs::write(&config, changed + notify).expect("write config");
    dir
}

fn edit_manifest(dir: &Path, from: &str, to: &str) {
    let path = dir.join("data_manifest/demo.toml");
    let text_in = std::fs::read_to_string(&path).expect("read");
    assert!(text_in.contains(from), "`{from}` in the manifest");
    std::fs::write(&path, text_in.replace(from, to)).expect("write");
}

fn retrain(dir: &Path, llm: &str, extra: &[&str]) -> (Output, Value) {
    let out = bin()
        .current_dir(dir)
        .env("SSPA_LLM_URL", llm)
        .args(["retrain", "domains/demo.toml", "--json"])
        .args(extra)
        .output()
        .expect("spawn");
    let (stdout, stderr) = text(&out);
    let summary =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("summary JSON ({e}): {stdout}\n{stderr}"));
    (out, summary)
}

/// `predict --model MODEL` on one test image.
fn predict(dir: &Path, model: &str, extra: &[&str]) -> Output {
    bin().current_dir(dir).args(["predict", "--model", model]).args(extra).arg(test_image(dir)).output().expect("spawn")
}

fn models(dir: &Path, args: &[&str]) -> Output {
    bin().current_dir(dir).arg("models").args(args).output().expect("spawn")
}

fn current_version(dir: &Path) -> u64 {
    let path = dir.join("work/demo/models/aliases/current.json");
    let alias: Value = serde_json::from_slice(&std::fs::read(path).expect("alias")).expect("alias JSON");
    alias["version"].as_u64().expect("version")
}

fn stages_ran(summary: &Value) -> Vec<String> {
    summary["stages_ran"].as_array().expect("stages_ran").iter().filter_map(Value::as_str).map(String::from).collect()
}

/// One test image of the demo set.
fn test_image(dir: &Path) -> std::path::PathBuf {
    dir.join("data/fashion-mosaic/test/000000.png")
}

#[test]
fn a_scheduled_week_promotes_keeps_refuses_and_adds_a_label() {
    let llm = test_llm();
    let dir = scheduled_project();
    let root = dir.path();

    // Day 1: nothing in the registry: train from scratch (with a warning) and promote v1.
    let (out, day1) = retrain(root, &llm, &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("has no such model yet; training from scratch"), "{stderr}");
    assert!(stderr.contains("train: epoch 1/4"), "per-epoch log lines for a cron log: {stderr}");
    assert_eq!((day1["decision"].as_str(), day1["version"].as_u64()), (Some("promoted"), Some(1)), "{day1}");
    assert_eq!(stages_ran(&day1).len(), 7);

    // Day 2: nothing changed: no stage runs, exit 0, the same model serves.
    let (out, day2) = retrain(root, &llm, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert_eq!(day2["decision"], "unchanged", "{day2}");
    assert!(stages_ran(&day2).is_empty(), "{day2}");
    assert_eq!(current_version(root), 1);

    // Day 3: more training images: shard, features, train (warm from v1), evaluate re-run and v2
    // is promoted with the gain.
    edit_manifest(root, "train_images = 120", "train_images = 600");
    let (out, day3) = retrain(root, &llm, &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{day3}");
    for stage in ["shard", "features", "train", "evaluate"] {
        assert!(stages_ran(&day3).iter().any(|s| s == stage), "{stage} re-ran: {day3}");
    }
    assert!(stderr.contains("train: warm start (current)"), "{stderr}");
    assert_eq!((day3["decision"].as_str(), day3["version"].as_u64()), (Some("promoted"), Some(2)), "{day3}");
    let (gain_new, gain_old) =
        (day3["candidate"].as_f64().expect("candidate"), day3["current"].as_f64().expect("current"));
    assert!(gain_new > gain_old, "{day3}");

    // Day 4: the train labels are corrupted: the candidate trains, the gate refuses it (exit 4),
    // v2 keeps serving and the refusal is recorded with both metric sets.
    edit_manifest(root, "blank_probability = 0.35", "blank_probability = 0.35\nshuffled_train_labels = true");
    let (out, day4) = retrain(root, &llm, &[]);
    assert_eq!(out.status.code(), Some(4), "{}\n{day4}", text(&out).1);
    assert_eq!(day4["decision"], "refused", "{day4}");
    assert!(day4["candidate"].as_f64() < day4["current"].as_f64(), "{day4}");
    assert_eq!(current_version(root), 2);
    let predicted = predict(root, "domains/demo.toml", &["--top-k", "2"]);
    assert!(predicted.status.success(), "{}", text(&predicted).1);
    assert!(text(&predicted).1.contains("model v2"), "the champion serves: {}", text(&predicted).1);

    // Day 5: the labels are fixed and a label is added: only it is described; the candidate
    // (warm from v2) holds the shared labels and knows one more: v3.
    edit_manifest(root, "shuffled_train_labels = true", "shuffled_train_labels = false");
    edit_manifest(root, "\"Bag\"]", "\"Bag\", \"Ankle boot\"]");
    let (out, day5) = retrain(root, &llm, &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}\n{day5}");
    assert!(stderr.contains("describe: 9 cached, 1 new"), "{stderr}");
    assert_eq!((day5["decision"].as_str(), day5["version"].as_u64()), (Some("promoted"), Some(3)), "{day5}");
    assert!(day5["reasons"].to_string().contains("new: Ankle boot"), "{day5}");

    // The registry: three versions, v3 current with ten labels, every decision logged and
    // notified in order.
    let out = models(root, &["list", "domains/demo.toml", "--json"]);
    assert!(out.status.success(), "{}", text(&out).1);
    let list: Value = serde_json::from_str(&text(&out).0).expect("list JSON");
    let versions = list["versions"].as_array().expect("versions");
    assert_eq!(versions.len(), 3);
    assert!(versions.iter().all(|v| v["status"] == "ok"), "{list}");
    assert_eq!(versions[2]["labels"], 10);
    assert_eq!(versions[2]["aliases"][0], "current");
    let decisions = |file: &str| -> Vec<String> {
        std::fs::read_to_string(root.join(file))
            .expect("decisions")
            .lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).expect("decision line")["decision"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned()
            })
            .collect()
    };
    let expected = ["promoted", "unchanged", "promoted", "refused", "promoted"];
    assert_eq!(decisions("work/demo/models/decisions.jsonl"), expected);
    assert_eq!(decisions("notified.jsonl"), expected, "the notify command got every decision");
    let show = models(root, &["show", "domains/demo.toml", "--model", "v2", "--json"]);
    let shown: Value = serde_json::from_str(&text(&show).0).expect("show JSON");
    for key in ["config_hash", "manifest_hash", "description_cache_hash", "weights_hash"] {
        assert!(shown["info"]["lineage"][key].is_string(), "lineage.{key}: {shown}");
    }

    // Rollback and a logged manual promotion.
    let out = models(root, &["rollback", "domains/demo.toml", "--reason", "new label looks off"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(current_version(root), 2);
    let out = models(root, &["promote", "domains/demo.toml", "--version", "v3", "--reason", "checked by hand"]);
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(current_version(root), 3);
    let predicted = predict(root, "domains/demo.toml@v1", &["--top-k", "1", "--format", "csv"]);
    assert!(predicted.status.success() && text(&predicted).1.contains("model v1"), "{}", text(&predicted).1);
}

/// A project with v1 promoted, for the fault tests.
fn promoted_once(llm: &str) -> tempfile::TempDir {
    let dir = scheduled_project();
    edit_manifest(dir.path(), "test_images = 300", "test_images = 60");
    let (out, summary) = retrain(dir.path(), llm, &[]);
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out).1);
    dir
}

#[test]
fn overlapping_retrains_exit_3_at_once_or_wait() {
    let llm = test_llm();
    let dir = promoted_once(&llm);
    let root = dir.path();
    let out =
        bin().args(["retrain", "domains/demo.toml", "--force-promote"]).current_dir(root).output().expect("spawn");
    assert_eq!(out.status.code(), Some(2), "--force-promote needs --reason");
    assert!(text(&out).1.contains("--reason"), "{}", text(&out).1);

    let lock = sspa_dag::WorkspaceLock::acquire(&root.join("work/demo"), "test").expect("lock");
    let started = Instant::now();
    let out = bin().args(["retrain", "domains/demo.toml"]).current_dir(root).output().expect("spawn");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out).1);
    assert!(started.elapsed() < Duration::from_secs(1), "exit 3 within 1 s: {:?}", started.elapsed());
    assert!(text(&out).1.contains(&std::process::id().to_string()), "names the holder: {}", text(&out).1);

    // --wait: the lock is released after 0.5 s and the second run goes on (nothing changed).
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        drop(lock);
    });
    let (out, summary) = retrain(root, &llm, &["--wait", "30"]);
    releaser.join().expect("release");
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out).1);
    assert_eq!(summary["decision"], "unchanged");
}

#[test]
fn a_damaged_or_deleted_registry_is_named_and_rebuilt() {
    let llm = test_llm();
    let dir = promoted_once(&llm);
    let root = dir.path();
    let weights = root.join("work/demo/models/v1/model_ema.safetensors");
    let bytes = std::fs::read(&weights).expect("weights");
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).expect("truncate");

    let out = predict(root, "domains/demo.toml", &[]);
    let (_, stderr) = text(&out);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("v1 is damaged") && stderr.contains("model_ema.safetensors") && stderr.contains("truncated"),
        "{stderr}"
    );
    let list = models(root, &["list", "domains/demo.toml"]);
    assert!(text(&list).0.contains("damaged"), "{}", text(&list).0);

    // Issue 26: the gate fails closed. The next retrain warns, trains from scratch, and refuses
    // the candidate: there is no intact champion to beat (before, it was promoted as "the first
    // version"). The decision says why; `current` is left alone.
    let (out, summary) = retrain(root, &llm, &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(4), "{stderr}\n{summary}");
    assert!(stderr.contains("damaged") && stderr.contains("training from scratch"), "{stderr}");
    assert_eq!((summary["decision"].as_str(), summary["previous"].as_u64()), (Some("refused"), None), "{summary}");
    let reasons = summary["reasons"].to_string();
    assert!(reasons.contains("no intact champion") && reasons.contains("v1"), "{summary}");
    assert_eq!(current_version(root), 1);
    // A user who checked it forces it in.
    let (out, summary) = retrain(root, &llm, &["--force-promote", "--reason", "v1 lost its weights"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out).1);
    assert_eq!((summary["decision"].as_str(), summary["version"].as_u64()), (Some("forced"), Some(2)), "{summary}");
    // v3 promoted by hand then damaged: v2, the newest intact version `current` pointed at
    // before, is the champion, and the decision says so.
    let (out, summary) = retrain(root, &llm, &["-S", "train.lr=2e-3", "--force-promote", "--reason", "test"]);
    assert_eq!((out.status.code(), summary["version"].as_u64()), (Some(0), Some(3)), "{summary}");
    let mut history =
        std::fs::OpenOptions::new().append(true).open(root.join("work/demo/models/v3/config.json")).expect("open");
    std::io::Write::write_all(&mut history, b" ").expect("one byte appended");
    let (out, summary) = retrain(root, &llm, &["-S", "train.lr=10"]);
    assert!([Some(0), Some(4)].contains(&out.status.code()), "{}\n{summary}", text(&out).1);
    assert_eq!(summary["previous"].as_u64(), Some(2), "judged against v2: {summary}");
    assert!(summary["reasons"].to_string().contains("the champion is v2"), "{summary}");

    // Registry deleted: predict says so; retrain rebuilds it from the cached result.
    std::fs::remove_dir_all(root.join("work/demo/models")).expect("delete registry");
    let out = predict(root, "domains/demo.toml", &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    assert!(text(&out).1.contains("no model was promoted yet"), "{}", text(&out).1);
    let (out, summary) = retrain(root, &llm, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert_eq!((summary["decision"].as_str(), summary["version"].as_u64()), (Some("promoted"), Some(1)), "{summary}");
}

/// Issue 26: `current` (v2) was warm-started from v1; v1 was deleted. Re-planning v2's own start
/// failed before any decision was logged, so every cron run after that exited without a record.
/// Now the run warm-starts from v2 as configured and the gate decides, in the log.
#[test]
fn a_deleted_warm_start_source_still_ends_in_a_logged_decision() {
    let llm = test_llm();
    let dir = promoted_once(&llm);
    let root = dir.path();
    let (out, summary) = retrain(root, &llm, &["-S", "train.lr=2e-3", "--force-promote", "--reason", "test"]);
    assert_eq!((out.status.code(), summary["version"].as_u64()), (Some(0), Some(2)), "{}\n{summary}", text(&out).1);
    std::fs::remove_dir_all(root.join("work/demo/models/v1")).expect("delete v1");
    let log = root.join("work/demo/models/decisions.jsonl");
    let lines = |path: &Path| std::fs::read_to_string(path).expect("log").lines().count();
    let before = lines(&log);
    let (out, summary) = retrain(root, &llm, &["-S", "train.lr=2e-3"]);
    let (_, stderr) = text(&out);
    assert!([Some(0), Some(4)].contains(&out.status.code()), "{stderr}\n{summary}");
    assert_eq!(summary["previous"].as_u64(), Some(2), "{summary}");
    assert!(stderr.contains("own start cannot be planned"), "{stderr}");
    assert_eq!(lines(&log), before + 1, "one decision line");
}

#[test]
fn kill_9_while_promoting_leaves_the_alias_on_an_intact_version() {
    let llm = test_llm();
    let dir = promoted_once(&llm);
    let root = dir.path();
    // A second version (another learning rate, promoted by force).
    let (out, summary) = retrain(root, &llm, &["-S", "train.lr=2e-3", "--force-promote", "--reason", "test"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out).1);
    assert_eq!(summary["version"], 2);
    let registry = sspa_registry::Registry::of_workspace(&root.join("work/demo"));
    for round in 0..40u64 {
        let target = if round % 2 == 0 { "v1" } else { "v2" };
        let mut child = bin()
            .current_dir(root)
            .args(["models", "promote", "domains/demo.toml", "--version", target, "--reason", "kill test"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(round % 20));
        let _ = child.kill();
        let _ = child.wait();
        let alias = registry.alias(sspa_registry::CURRENT).expect("the alias file always parses").expect("set");
        assert!([1, 2].contains(&alias.version), "round {round}: {alias:?}");
        registry.version(alias.version).expect("the alias points at an intact version");
    }
    // A copy interrupted half-way is not a version and is swept by the next promotion.
    let partial = registry.dir().join(".tmp-v3-12345");
    std::fs::create_dir_all(&partial).expect("mkdir");
    std::fs::write(partial.join("model.safetensors"), b"half").expect("write");
    assert_eq!(registry.version_numbers().expect("versions"), [1, 2]);
    let (out, summary) = retrain(root, &llm, &["-S", "train.lr=3e-3", "--force-promote", "--reason", "after a crash"]);
    assert_eq!(out.status.code(), Some(0), "{}\n{summary}", text(&out).1);
    assert_eq!(summary["version"], 3, "{summary}");
    assert!(["forced", "promoted"].contains(&summary["decision"].as_str().unwrap_or("")), "{summary}");
    assert!(!partial.exists());
}
