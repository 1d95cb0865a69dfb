//! `run --executor slurm` against a real single-node Slurm cluster (`scripts/slurm-cluster`,
//! started by `scripts/test`, which exports `SLURM_CONF` and `SSPA_TEST_SLURM=1`; without them
//! these tests say so and pass without running anything): the tiny demo's stages as jobs give the
//! local executor's metrics, a failing job marks its stage failed and its dependants not run,
//! Ctrl-C cancels every submitted job.

use crate::cli::{bin, copy_tree, test_llm, text, tiny_training_project};
use crate::remote::stage;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn cluster() -> bool {
    let up = std::env::var("SSPA_TEST_SLURM").is_ok_and(|v| v == "1");
    if !up {
        eprintln!("no Slurm test cluster (scripts/test starts one and sets SSPA_TEST_SLURM=1): skipped");
    }
    up
}

/// The tiny demo, polling the scheduler every 0.2 s.
fn slurm_project() -> tempfile::TempDir {
    tiny_training_project("[executor.slurm]\npoll_s = 0.2\n")
}

fn run_json(dir: &Path, llm: &str, extra: &[&str]) -> (Option<i32>, Value, String) {
    let out = bin()
        .current_dir(dir)
        .env("SSPA_LLM_URL", llm)
        .args(["run", "domains/demo.toml", "--json"])
        .args(extra)
        .output()
        .expect("spawn");
    let (stdout, stderr) = text(&out);
    let record = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("no run record ({e}): {stderr}"));
    (out.status.code(), record, stderr)
}

fn metrics(record: &Value) -> Vec<u8> {
    let dir = stage(record, "evaluate")["output_dir"].as_str().expect("dir").to_owned();
    std::fs::read(Path::new(&dir).join("metrics.json")).expect("metrics")
}

/// Job ids `squeue` still lists as pending or running, among `ids`.
fn live_jobs(ids: &[String]) -> Vec<String> {
    let out = Command::new("squeue").args(["-h", "-o", "%i %T"]).output().expect("squeue");
    assert!(out.status.success(), "squeue: {}", text(&out).1);
    text(&out)
        .0
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(id, state)| ids.iter().any(|i| i == id) && matches!(*state, "PENDING" | "RUNNING" | "COMPLETING"))
        .map(|(id, _)| id.to_string())
        .collect()
}

fn job_ids(record: &Value) -> Vec<String> {
    record["stages"]
        .as_array()
        .expect("stages")
        .iter()
        .filter_map(|s| s["job"]["id"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn stages_as_slurm_jobs_give_the_local_executors_metrics() {
    if !cluster() {
        return;
    }
    let llm = test_llm();
    let local = slurm_project();
    let (code, expected, stderr) = run_json(local.path(), &llm, &[]);
    assert_eq!(code, Some(0), "{stderr}");

    // The same project with the upstream results the local run computed (the LLM's answers are
    // sampled, so a second describe would differ); train, evaluate and report become jobs.
    let cluster_side = slurm_project();
    copy_tree(&local.path().join("work"), &cluster_side.path().join("work"));
    let workspace = cluster_side.path().join("work/demo");
    for name in ["train", "evaluate", "report"] {
        std::fs::remove_dir_all(workspace.join("cache").join(name)).expect("rm result");
    }
    std::fs::remove_dir_all(workspace.join("runs")).expect("rm runs");
    let (code, record, stderr) = run_json(cluster_side.path(), &llm, &["--executor", "slurm"]);
    assert_eq!(code, Some(0), "{stderr}");
    for name in ["train", "evaluate", "report"] {
        let s = stage(&record, name);
        assert_eq!(s["status"], "ran", "{name}: {s}");
        assert_eq!(s["job"]["executor"], "slurm", "{name}: {s}");
        assert_eq!(s["job"]["state"], "COMPLETED", "{name}: {s}");
        let log = s["job"]["log"].as_str().expect("log");
        assert!(Path::new(log).is_file(), "{name}: no log {log}");
        assert!(
            stderr.contains(&format!("submitted as slurm job {}", s["job"]["id"].as_str().expect("id"))),
            "{stderr}"
        );
    }
    for name in ["describe", "embed", "shard", "features"] {
        assert_eq!(stage(&record, name)["status"], "skipped", "{name}");
        assert!(stage(&record, name)["job"].is_null(), "{name}");
    }
    // evaluate was chained on train (submitted before train finished), not submitted after it.
    let script = std::fs::read_to_string(
        workspace.join("runs").join(record["run_id"].as_str().expect("id")).join("logs/evaluate.sbatch"),
    )
    .expect("batch script");
    assert!(script.contains("--only evaluate"), "{script}");
    assert_eq!(metrics(&record), metrics(&expected), "the same metrics as the local executor");
    assert_eq!(stage(&record, "evaluate")["key"], stage(&expected, "evaluate")["key"]);

    // The jobs' own records live under the run's, not as runs: `status` lists one run.
    let runs: Vec<_> = std::fs::read_dir(workspace.join("runs")).expect("runs").flatten().collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let jobs = std::fs::read_dir(runs[0].path().join("jobs")).expect("job records").count();
    assert_eq!(jobs, 3);
}

#[test]
fn a_failing_job_fails_its_stage_and_its_dependants_do_not_run() {
    if !cluster() {
        return;
    }
    let dir = slurm_project();
    // No LLM answers on port 9: describe fails at once.
    let (code, record, stderr) =
        run_json(dir.path(), "http://127.0.0.1:9/v1", &["--executor", "slurm", "-S", "llm.max_retries=0"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(record["status"], "failed");
    let describe = stage(&record, "describe");
    assert_eq!(describe["status"], "failed", "{describe}");
    let error = describe["error"].as_str().expect("error");
    let id = describe["job"]["id"].as_str().expect("job id");
    assert!(error.starts_with(&format!("slurm job {id} FAILED (exit code 1:0")), "{error}");
    assert!(error.contains("describe"), "the log's end names the stage: {error}");
    for name in ["embed", "train", "evaluate", "report"] {
        let s = stage(&record, name);
        assert_eq!(s["status"], "not_run", "{name}: {s}");
        assert!(s["reasons"].to_string().contains("did not finish"), "{name}: {s}");
    }
    // Independent stages still ran.
    for name in ["shard", "features"] {
        assert_eq!(stage(&record, name)["status"], "ran", "{name}");
    }
    assert!(live_jobs(&job_ids(&record)).is_empty(), "jobs left in the queue");
}

#[test]
fn ctrl_c_cancels_every_submitted_job() {
    if !cluster() {
        return;
    }
    let llm = test_llm();
    let dir = slurm_project();
    let child = bin()
        .current_dir(dir.path())
        .env("SSPA_LLM_URL", &llm)
        .args(["run", "domains/demo.toml", "--executor", "slurm"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    // Wait for the run record to show a job the scheduler runs.
    let runs = dir.path().join("work/demo/runs");
    let deadline = Instant::now() + Duration::from_secs(120);
    let record_path = loop {
        assert!(Instant::now() < deadline, "no job started running");
        let running = std::fs::read_dir(&runs).ok().and_then(|mut entries| entries.next()).and_then(|entry| {
            let path = entry.ok()?.path().join("run.json");
            let record: Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
            let ids = job_ids(&record);
            let out = Command::new("squeue").args(["-h", "-t", "RUNNING", "-o", "%i"]).output().ok()?;
            text(&out).0.lines().any(|l| ids.iter().any(|i| i == l.trim())).then_some(path)
        });
        if let Some(path) = running {
            break path;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let status = Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("wait");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("cancelling") && stderr.contains("slurm job(s)"), "{stderr}");
    let record: Value = serde_json::from_slice(&std::fs::read(&record_path).expect("record")).expect("json");
    assert_eq!(record["status"], "interrupted");
    let ids = job_ids(&record);
    assert!(!ids.is_empty());
    assert!(live_jobs(&ids).is_empty(), "jobs still queued or running after Ctrl-C: {:?}", live_jobs(&ids));
    let cancelled = record["stages"].as_array().expect("stages").iter().filter(|s| s["job"]["state"] == "CANCELLED");
    assert!(cancelled.count() >= 1, "{record}");
}

/// Issue 26: a job pending forever (here: `--begin` an hour ahead, Slurm's reason `BeginTime`)
/// held the workspace lock with no deadline, so every later cron run exited 3. Past
/// `max_pending_s` it is cancelled and its stage fails naming the reason; the lock is free again.
#[test]
fn a_job_pending_past_max_pending_is_cancelled_naming_the_reason() {
    if !cluster() {
        return;
    }
    let dir = tiny_training_project("[executor.slurm]\npoll_s = 0.2\nmax_pending_s = 2\n");
    let args = ["--executor", "slurm", "--until", "describe", "--slurm-arg=--begin=now+1hour"];
    let started = Instant::now();
    let (code, record, stderr) = run_json(dir.path(), "http://127.0.0.1:9/v1", &args);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60), "bounded: {:?}", started.elapsed());
    let describe = stage(&record, "describe");
    assert_eq!(describe["status"], "failed", "{describe}");
    let error = describe["error"].as_str().expect("error");
    let id = describe["job"]["id"].as_str().expect("job id");
    assert!(error.starts_with(&format!("slurm job {id} still pending after ")), "{error}");
    assert!(error.contains("(reason: BeginTime)") && error.contains("max_pending_s = 2"), "{error}");
    assert!(error.contains(&format!("cancelled it (`scancel {id}`)")), "{error}");
    assert_eq!(describe["job"]["state"], "CANCELLED");
    assert!(live_jobs(&job_ids(&record)).is_empty(), "the pending job is gone from the queue");
    // Nobody holds the workspace any more.
    let out = bin().current_dir(dir.path()).args(["status", "domains/demo.toml", "--json"]).output().expect("spawn");
    let status: Value = serde_json::from_str(&text(&out).0).expect("status JSON");
    assert!(status["running"].is_null(), "{status}");
}
