//! The remote cache (`[cache] remote`) end to end: two workspaces share one bucket (the S3 server
//! `scripts/test` starts, `SSPA_TEST_S3_ENDPOINT`; a `file://` remote without it), a tampered
//! remote object is detected and the stage recomputed, a push killed half-way leaves nothing
//! visible, and missing credentials are named.

use crate::cli::{bin, project, test_llm, text, tiny_training_project};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// The S3 test server's endpoint, when `scripts/test` started one.
fn s3_endpoint() -> Option<String> {
    std::env::var("SSPA_TEST_S3_ENDPOINT").ok().filter(|s| !s.is_empty())
}

/// A remote URL of its own for one test: on the S3 server's bucket when there is one.
fn remote_url(scratch: &Path, name: &str) -> String {
    let unique = format!(
        "{name}-{}-{}",
        std::process::id(),
        scratch.file_name().map_or("x".into(), |n| n.to_string_lossy().into_owned())
    );
    match s3_endpoint() {
        Some(_) => format!("s3://sspa-test/{unique}"),
        None => format!("file://{}", scratch.join(unique).display()),
    }
}

/// `sspa-pipe` with the S3 server's settings (dummy keys: the server accepts any).
fn pipe(dir: &Path) -> Command {
    let mut command = bin();
    command.current_dir(dir);
    if let Some(endpoint) = s3_endpoint() {
        command
            .env("AWS_ACCESS_KEY_ID", "sspa-test")
            .env("AWS_SECRET_ACCESS_KEY", "sspa-test")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_ALLOW_HTTP", "true")
            .env("AWS_REGION", "us-east-1");
    }
    command
}

/// A tiny demo project whose config pushes to `remote`.
fn project_with_remote(remote: &str) -> tempfile::TempDir {
    tiny_training_project(&format!("[cache]\nremote = \"{remote}\"\n"))
}

fn run_json(dir: &Path, llm: &str, extra: &[&str]) -> Value {
    let out = pipe(dir)
        .env("SSPA_LLM_URL", llm)
        .args(["run", "domains/demo.toml", "--json"])
        .args(extra)
        .output()
        .expect("spawn");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    serde_json::from_str(&stdout).expect("run record")
}

fn statuses(record: &Value) -> Vec<(String, String)> {
    record["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| (s["name"].as_str().unwrap_or("").to_owned(), s["status"].as_str().unwrap_or("").to_owned()))
        .collect()
}

/// The named stage of a run record.
pub(crate) fn stage<'a>(record: &'a Value, name: &str) -> &'a Value {
    record["stages"].as_array().and_then(|s| s.iter().find(|x| x["name"] == name)).expect("stage")
}

fn metrics(record: &Value) -> Value {
    let dir = stage(record, "evaluate")["output_dir"].as_str().expect("dir").to_owned();
    serde_json::from_slice(&std::fs::read(Path::new(&dir).join("metrics.json")).expect("metrics")).expect("json")
}

#[test]
fn a_second_workspace_computes_nothing_the_first_pushed() {
    let llm = test_llm();
    let scratch = tempfile::tempdir().expect("tmp");
    let remote = remote_url(scratch.path(), "share");
    let first = project_with_remote(&remote);
    let record = run_json(first.path(), &llm, &[]);
    assert!(statuses(&record).iter().all(|(_, s)| s == "ran"), "{:?}", statuses(&record));
    for (name, _) in statuses(&record) {
        let note = stage(&record, &name)["remote"].as_str().unwrap_or("").to_owned();
        assert!(note.starts_with("pushed "), "{name}: {note}");
    }

    // Another project directory, another workspace, the same remote.
    let second = project_with_remote(&remote);
    let out = pipe(second.path()).args(["plan", "domains/demo.toml"]).output().expect("spawn");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stdout.lines().filter(|l| l.contains("skip (remote)")).count(), 7, "{stdout}");
    let pulled = run_json(second.path(), &llm, &[]);
    assert!(statuses(&pulled).iter().all(|(_, s)| s == "pulled"), "{:?}", statuses(&pulled));
    assert_eq!(metrics(&pulled), metrics(&record), "the same results");
    // A pulled result works in its new workspace: predict with the pulled train result.
    let train_dir = stage(&pulled, "train")["output_dir"].as_str().expect("dir").to_owned();
    let image = first.path().join("data/fashion-mosaic/test/000000.png");
    {
        let out = pipe(second.path())
            .args(["predict", "--run", &train_dir, "--top-k", "1"])
            .arg(&image)
            .output()
            .expect("spawn");
        assert!(out.status.success(), "{}", text(&out).1);
    }
    let out = pipe(second.path()).args(["cache", "status", "domains/demo.toml", "--json"]).output().expect("spawn");
    let status: Value = serde_json::from_str(&text(&out).0).expect("status JSON");
    assert!(
        status["stages"].as_array().expect("stages").iter().all(|s| s["local"] == true && s["remote"] == true),
        "{status}"
    );
}

/// A `file://` remote in a scratch directory, and a first workspace that computed and pushed
/// every result to it.
struct Shared {
    _scratch: tempfile::TempDir,
    bucket: std::path::PathBuf,
    remote: String,
    first: tempfile::TempDir,
    record: Value,
}

fn shared_file_remote(llm: &str) -> Shared {
    let scratch = tempfile::tempdir().expect("tmp");
    let bucket = scratch.path().join("bucket");
    let remote = format!("file://{}", bucket.display());
    let first = project_with_remote(&remote);
    let record = run_json(first.path(), llm, &[]);
    Shared { _scratch: scratch, bucket, remote, first, record }
}

#[test]
fn a_tampered_remote_object_is_detected_and_the_stage_recomputed() {
    let llm = test_llm();
    let Shared { bucket, remote, record, .. } = &shared_file_remote(&llm);
    let key = stage(record, "evaluate")["key"].as_str().expect("key").to_owned();
    let manifest: Value = serde_json::from_slice(
        &std::fs::read(bucket.join("evaluate").join(&key).join("manifest.json")).expect("manifest"),
    )
    .expect("json");
    let object =
        bucket.join("evaluate").join(&key).join(manifest["upload"].as_str().expect("upload")).join("metrics.json");
    std::fs::write(&object, b"{\"raw\": {\"mAP\": 100.0}}").expect("tamper");

    let second = project_with_remote(remote);
    let pulled = run_json(second.path(), &llm, &[]);
    let evaluate = stage(&pulled, "evaluate");
    assert_eq!(evaluate["status"], "ran", "recomputed: {evaluate}");
    let note = evaluate["remote"].as_str().unwrap_or("");
    assert!(note.contains("pull failed") && note.contains("metrics.json") && note.contains("does not match"), "{note}");
    assert_eq!(stage(&pulled, "train")["status"], "pulled");
    assert_eq!(
        metrics(&pulled)["raw"]["mAP"],
        metrics(record)["raw"]["mAP"],
        "the recomputed metrics, not the tampered ones"
    );
}

#[test]
fn a_push_killed_half_way_leaves_no_visible_result() {
    let llm = test_llm();
    let scratch = tempfile::tempdir().expect("tmp");
    let dir = project_with_remote("file:///nonexistent-unused");
    // Compute once without the remote (a local workspace), then push it to fresh remotes and
    // kill each push at another moment.
    let config = dir.path().join("domains/demo.toml");
    let text_in = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, text_in.split("\n[cache]").next().expect("config")).expect("write");
    run_json(dir.path(), &llm, &[]);
    for round in 0..8u64 {
        let remote = remote_url(scratch.path(), &format!("kill{round}"));
        let with = |args: &[&str]| -> Vec<String> {
            let mut all = vec!["-S".to_owned(), format!("cache.remote=\"{remote}\"")];
            all.extend(args.iter().map(|a| (*a).to_owned()));
            all
        };
        let mut child = pipe(dir.path())
            .args(["cache", "push", "domains/demo.toml"])
            .args(with(&[]))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(std::time::Duration::from_millis(5 + round * 12));
        let _ = child.kill();
        let _ = child.wait();
        // Whatever the remote shows as published pulls back intact into a fresh workspace.
        let workspace = format!("workspace.dir=\"pulled{round}\"");
        let out: Output = pipe(dir.path())
            .args(["cache", "pull", "domains/demo.toml", "--json", "-S", &workspace])
            .args(with(&[]))
            .output()
            .expect("spawn");
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "round {round}: {stderr}\n{stdout}");
        let pulled: Value = serde_json::from_str(&stdout).expect("pull JSON");
        for row in pulled["stages"].as_array().expect("stages") {
            assert_eq!(row["local"], row["remote"], "round {round}: published ⇒ pulled intact: {row}");
        }
    }
}

#[test]
fn missing_credentials_are_named_before_anything_runs() {
    let dir = project_with_remote("s3://some-bucket/prefix");
    let out = bin()
        .current_dir(dir.path())
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args(["run", "domains/demo.toml"])
        .output()
        .expect("spawn");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"), "{stderr}");
    assert!(!dir.path().join("work/demo/runs").exists(), "nothing ran");
}

/// `graph --format argo` writes exactly the committed example (`deploy/argo/demo-workflow.yaml`,
/// which `tests/deploy/check` validates against Argo's schema): one task per stage with the
/// pipeline's dependencies, each pod running `run --until STAGE` with the same overrides.
#[test]
fn graph_argo_writes_the_committed_workflow_and_needs_a_shared_remote() {
    let dir = project();
    let graph = |extra: &[&str]| {
        bin()
            .current_dir(dir.path())
            .args(["graph", "domains/demo.toml", "--format", "argo"])
            .args(extra)
            .output()
            .expect("spawn")
    };
    let out = graph(&["-S", "cache.remote=s3://sspa-cache/demo"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let committed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/argo/demo-workflow.yaml"))
            .expect("committed workflow");
    assert_eq!(stdout, committed, "regenerate deploy/argo/demo-workflow.yaml with the command in its header");
    for (stage, needs) in [("train", vec!["embed", "shard", "features"]), ("describe", vec![])] {
        let task = stdout.split("      - name: ").find(|t| t.starts_with(&format!("\"{stage}\""))).expect("task");
        for need in &needs {
            assert!(task.contains(&format!("        - \"{need}\"")), "{stage} needs {need}: {task}");
        }
        assert_eq!(task.contains("dependencies"), !needs.is_empty(), "{task}");
    }
    assert_eq!(stdout.matches("- \"--until\"").count(), 7);

    let out = graph(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--format argo needs [cache] remote"), "{}", text(&out).1);
    let out = graph(&["-S", "cache.remote=file:///tmp/cache"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("pods do not share"), "{}", text(&out).1);
}

/// `cache verify` as JSON: exit code and each entry's `(stage, status)`, with the entries.
fn verify(dir: &Path, extra: &[&str]) -> (Option<i32>, Vec<(String, String)>, Value) {
    let out = pipe(dir).args(["cache", "verify", "domains/demo.toml", "--json"]).args(extra).output().expect("spawn");
    let (stdout, stderr) = text(&out);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("verify JSON ({e}): {stderr}"));
    let entries = report["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| (e["stage"].as_str().unwrap_or("").to_owned(), e["status"].as_str().unwrap_or("").to_owned()))
        .collect();
    (out.status.code(), entries, report)
}

/// Deletes the data files of the published upload of `stage`'s result `key` in a `file://` bucket
/// (what a lifecycle rule or a partial sync leaves: the manifest without its files).
fn lose_upload(bucket: &Path, stage: &str, key: &str) {
    let entry = bucket.join(stage).join(key);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(entry.join("manifest.json")).expect("manifest")).expect("json");
    std::fs::remove_dir_all(entry.join(manifest["upload"].as_str().expect("upload"))).expect("rm upload");
}

/// Issue 26: workspace A pushed its results; the evaluate upload's data files were deleted on the
/// remote. Workspace B's pull failed and it recomputed — and its push was refused by the
/// create-only manifest ("already on the remote"), so every later workspace paid a failed pull and
/// a recompute for that key, forever. Now B's push replaces the entry, a third workspace pulls
/// everything, and `cache verify [--repair]` finds and fixes a damaged entry by hand.
#[test]
fn a_remote_entry_whose_files_are_gone_is_replaced_and_verify_repairs() {
    let llm = test_llm();
    let Shared { bucket, remote, first, record, .. } = &shared_file_remote(&llm);
    let key = |record: &Value, name: &str| stage(record, name)["key"].as_str().expect("key").to_owned();
    let (code, entries, _) = verify(first.path(), &[]);
    assert_eq!(code, Some(0));
    assert_eq!(entries.len(), 7, "{entries:?}");
    assert!(entries.iter().all(|(_, status)| status == "intact"), "{entries:?}");

    lose_upload(bucket, "evaluate", &key(record, "evaluate"));
    let (code, _, report) = verify(first.path(), &[]);
    assert_eq!(code, Some(1), "a damaged entry fails the check: {report}");
    let damaged: Vec<&Value> =
        report["entries"].as_array().expect("entries").iter().filter(|e| e["status"] == "damaged").collect();
    assert_eq!(damaged.len(), 1, "{report}");
    assert_eq!(damaged[0]["stage"], "evaluate");
    assert!(damaged[0]["problem"].as_str().unwrap_or("").contains("missing on the remote"), "{report}");

    let second = project_with_remote(remote);
    let pulled = run_json(second.path(), &llm, &[]);
    let evaluate = stage(&pulled, "evaluate");
    assert_eq!(evaluate["status"], "ran", "{evaluate}");
    let note = evaluate["remote"].as_str().unwrap_or("");
    assert!(note.starts_with("pull failed: ") && note.contains("missing on the remote"), "{note}");
    assert!(note.contains("; replaced a damaged entry: pushed "), "the push replaced it: {note}");
    assert!(!note.contains("already on the remote"), "{note}");

    let third = project_with_remote(remote);
    let again = run_json(third.path(), &llm, &[]);
    assert!(statuses(&again).iter().all(|(_, s)| s == "pulled"), "{:?}", statuses(&again));
    assert_eq!(metrics(&again), metrics(record));
    assert_eq!(verify(first.path(), &[]).0, Some(0));

    // By hand: a workspace holding the result pushes it again; one without takes the entry off.
    lose_upload(bucket, "evaluate", &key(record, "evaluate"));
    lose_upload(bucket, "report", &key(record, "report"));
    let fresh = project_with_remote(remote);
    std::fs::remove_dir_all(first.path().join("work/demo/cache/report")).expect("rm report here");
    let (code, _, report) = verify(first.path(), &["--repair"]);
    assert_eq!(code, Some(0), "{report}");
    let actions: Vec<(String, String)> = report["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["status"] == "damaged")
        .map(|e| (e["stage"].as_str().unwrap_or("").to_owned(), e["action"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert_eq!(
        actions,
        [
            ("evaluate".to_owned(), "repaired: pushed from here".to_owned()),
            ("report".to_owned(), "removed from the remote (not cached here)".to_owned())
        ]
    );
    let (code, entries, _) = verify(fresh.path(), &[]);
    assert_eq!(code, Some(0));
    assert_eq!(entries.len(), 6, "report is off the remote: {entries:?}");
}
