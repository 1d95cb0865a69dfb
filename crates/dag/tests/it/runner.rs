//! The runner against fake stages: caching, reasons, selection, parallelism, kill -9 and Ctrl-C.

use crate::Fixture;
use serde_json::json;
use sspa_dag::{Decision, Outcome, Project, RunOptions, StageStatus, Workspace};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Set by the parents of the child-process tests; the children refuse to run without it.
const CHILD_ROOT: &str = "SSPA_DAG_CHILD_ROOT";
const SIGINT_ROOT: &str = "SSPA_DAG_SIGINT_ROOT";

#[test]
fn unchanged_rerun_skips_everything() {
    let f = Fixture::new(Duration::ZERO);
    let (first, outcome) = f.run(&RunOptions::default());
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(f.take_ran().len(), 6);
    assert!(first.stages.iter().all(|s| s.reasons == ["never ran"]));
    assert!(first.stages.iter().all(|s| s.output_dir.join("out.txt").is_file()));

    let (second, _) = f.run(&RunOptions::default());
    assert!(f.take_ran().is_empty());
    assert!(second.stages.iter().all(|s| s.status == StageStatus::Skipped && s.reasons == ["unchanged"]));
    assert_eq!(sspa_dag::RunRecord::list(&f.project().workspace.runs_dir()).len(), 2);
}

#[test]
fn read_param_change_reruns_stage_and_downstream_only() {
    let mut f = Fixture::new(Duration::ZERO);
    f.run(&RunOptions::default());
    f.take_ran();

    // `train.lr` is read by train: train, evaluate and report rerun; describe, shard, embed do not.
    f.config["train"]["lr"] = json!(0.01);
    let (record, _) = f.run(&RunOptions::default());
    assert_eq!(f.take_ran(), vec!["evaluate", "report", "train"]);
    assert_eq!(Fixture::reasons(&record, "train"), vec!["param train.lr changed"]);
    assert_eq!(Fixture::reasons(&record, "evaluate"), vec!["upstream train reran"]);

    // `model.image_size` is in the config but no stage declares it: nothing reruns.
    f.config["model"]["image_size"] = json!(448);
    f.run(&RunOptions::default());
    assert!(f.take_ran().is_empty());

    // `model.preset` is read by embed only.
    f.config["model"]["preset"] = json!("q");
    let (record, _) = f.run(&RunOptions::default());
    assert_eq!(f.take_ran(), vec!["embed", "evaluate", "report", "train"]);
    assert_eq!(Fixture::reasons(&record, "embed"), vec!["param model.preset changed"]);

    // Going back to an earlier value finds the earlier results in the content-addressed cache.
    f.config["model"]["preset"] = json!("p");
    f.config["train"]["lr"] = json!(0.001);
    let (record, _) = f.run(&RunOptions::default());
    assert!(f.take_ran().is_empty());
    assert_eq!(Fixture::reasons(&record, "embed")[0], "result for these inputs is cached");
}

#[test]
fn input_file_change_and_missing_output_are_explained() {
    let f = Fixture::new(Duration::ZERO);
    f.run(&RunOptions::default());
    f.take_ran();
    std::fs::write(f.dir.path().join("templates/kap.j2"), "Describe the {{ label }}").expect("write");
    let plan = sspa_dag::plan(&f.project(), &f.registry, &RunOptions::default()).expect("plan");
    let describe = plan.get("describe").expect("describe");
    assert_eq!(describe.decision, Decision::Run);
    assert_eq!(describe.reasons, vec!["input templates/kap.j2 changed"]);
    f.run(&RunOptions::default());
    assert_eq!(f.take_ran(), vec!["describe", "embed", "evaluate", "report", "train"]);

    let key = plan.get("shard").expect("shard").key.clone();
    std::fs::remove_file(f.project().workspace.result_dir("shard", &key).join("out.txt")).expect("rm");
    let (record, _) = f.run(&RunOptions::default());
    assert_eq!(Fixture::reasons(&record, "shard"), vec!["output out.txt missing"]);
    assert_eq!(f.take_ran(), vec!["shard"], "same key: downstream stays cached");
}

#[test]
fn stage_declared_inputs_join_the_key() {
    let mut f = Fixture::new(Duration::ZERO);
    std::fs::write(f.dir.path().join("weights.bin"), "v1").expect("write");
    f.config["data"]["weights"] = json!("weights.bin");
    f.run(&RunOptions::default());
    f.take_ran();
    f.run(&RunOptions::default());
    assert!(f.take_ran().is_empty());
    std::fs::write(f.dir.path().join("weights.bin"), "v2").expect("write");
    let (record, _) = f.run(&RunOptions::default());
    assert_eq!(Fixture::reasons(&record, "shard"), vec!["input weights.bin changed"]);
    assert_eq!(f.take_ran(), vec!["evaluate", "report", "shard", "train"]);
    std::fs::remove_file(f.dir.path().join("weights.bin")).expect("rm");
    let err = sspa_dag::plan(&f.project(), &f.registry, &RunOptions::default()).expect_err("missing input");
    assert!(err.to_string().contains("weights.bin` does not exist"), "{err}");
}

#[test]
fn force_until_and_only_select_stages() {
    let f = Fixture::new(Duration::ZERO);
    let (record, _) = f.run(&RunOptions { until: vec!["embed".into()], ..RunOptions::default() });
    assert_eq!(f.take_ran(), vec!["describe", "embed"]);
    assert_eq!(record.stages.len(), 2);

    let err = tokio::runtime::Runtime::new()
        .expect("rt")
        .block_on(sspa_dag::run(
            &f.project(),
            &f.registry,
            &RunOptions { only: Some("train".into()), ..RunOptions::default() },
        ))
        .expect_err("shard is not cached");
    assert!(err.to_string().contains("`--only train` needs the output of `shard`"), "{err}");

    f.run(&RunOptions::default());
    f.take_ran();
    let (record, _) = f.run(&RunOptions { force: vec!["shard".into()], ..RunOptions::default() });
    assert_eq!(f.take_ran(), vec!["evaluate", "report", "shard", "train"], "what reads a forced output re-runs");
    assert_eq!(Fixture::reasons(&record, "shard"), vec!["forced"]);
    assert_eq!(Fixture::reasons(&record, "train"), vec!["upstream shard was forced"]);
    f.run(&RunOptions { until: vec!["train".into()], force: vec!["train".into()], ..RunOptions::default() });
    assert_eq!(f.take_ran(), vec!["train"], "--until keeps downstream out");
    f.run(&RunOptions { only: Some("report".into()), force: vec!["report".into()], ..RunOptions::default() });
    assert_eq!(f.take_ran(), vec!["report"]);

    let bad =
        sspa_dag::plan(&f.project(), &f.registry, &RunOptions { force: vec!["nope".into()], ..RunOptions::default() });
    assert!(bad.expect_err("unknown").to_string().contains("unknown stage `nope`"));
}

#[test]
fn failure_stops_downstream_but_not_independent_stages() {
    let mut f = Fixture::new(Duration::ZERO);
    f.config["llm"]["fail"] = json!(true);
    // `llm.fail` is inside the declared `llm` section, so describe sees it.
    let (record, outcome) = f.run(&RunOptions { jobs: 2, ..RunOptions::default() });
    assert_eq!(outcome, Outcome::StageFailed);
    let status = |n: &str| record.stages.iter().find(|s| s.name == n).map(|s| s.status);
    assert_eq!(status("describe"), Some(StageStatus::Failed));
    assert_eq!(status("shard"), Some(StageStatus::Ran));
    assert_eq!(status("embed"), Some(StageStatus::NotRun));
    assert_eq!(record.stages[0].error.as_deref(), Some("asked to fail"));
    // No partial output of the failed stage is visible.
    let cache = f.project().workspace.stage_cache("describe");
    assert_eq!(std::fs::read_dir(&cache).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn independent_stages_overlap_with_jobs() {
    let f2 = Fixture::new(Duration::from_millis(400));
    f2.run(&RunOptions { jobs: 2, ..RunOptions::default() });
    let log = f2.log.lock().expect("log");
    let span = |n: &str| log.iter().find(|r| r.name == n).map(|r| (r.start, r.end)).expect("ran");
    let (describe_start, describe_end) = span("describe");
    let (shard_start, shard_end) = span("shard");
    assert!(
        describe_start < shard_end && shard_start < describe_end,
        "describe and shard do not depend on each other and must run at the same time with --jobs 2"
    );
    // And with one job they must not.
    let f3 = Fixture::new(Duration::from_millis(100));
    f3.run(&RunOptions { jobs: 1, ..RunOptions::default() });
    let log = f3.log.lock().expect("log");
    let mut spans: Vec<(Instant, Instant)> = log.iter().map(|r| (r.start, r.end)).collect();
    spans.sort();
    assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "--jobs 1 must run one stage at a time");
}

/// The child half of `kill_9_mid_stage_leaves_no_partial_output`: runs a slow pipeline. Ignored
/// (the parent starts it with `--ignored`); it fails when started any other way.
#[test]
#[ignore = "child half of kill_9_mid_stage_leaves_no_partial_output, which starts it"]
fn slow_child_run() {
    let root = std::env::var(CHILD_ROOT).expect("started by kill_9_mid_stage_leaves_no_partial_output");
    let f = Fixture::new(Duration::from_secs(30));
    let project =
        Project { root: PathBuf::from(&root), workspace: Workspace::new(Path::new(&root).join("work")), ..f.project() };
    std::fs::create_dir_all(Path::new(&root).join("templates")).expect("mkdir");
    std::fs::write(Path::new(&root).join("templates/kap.j2"), "Describe {{ label }}").expect("write");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _ = runtime.block_on(sspa_dag::run(&project, &f.registry, &RunOptions { jobs: 2, ..RunOptions::default() }));
}

#[test]
fn kill_9_mid_stage_leaves_no_partial_output() {
    let f = Fixture::new(Duration::ZERO);
    let root = f.dir.path();
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "runner::slow_child_run", "--ignored", "--nocapture", "--test-threads", "1"])
        .env(CHILD_ROOT, root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn child");
    // Wait until the child's stages have written partial files into their temp dirs.
    let cache = root.join("work/cache");
    let deadline = Instant::now() + Duration::from_secs(60);
    let partial_written = || {
        ["describe", "shard"].iter().all(|s| {
            std::fs::read_dir(cache.join(s))
                .map(|d| d.flatten().any(|e| e.path().join("partial.txt").exists()))
                .unwrap_or(false)
        })
    };
    while !partial_written() {
        assert!(Instant::now() < deadline, "child never started its stages");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");

    let project = f.project();
    // Nothing published: only hidden temp dirs exist.
    assert!(project.workspace.cached_results().is_empty());
    let (record, outcome) = f.run(&RunOptions::default());
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(f.take_ran().len(), 6, "every interrupted stage and its downstream reran");
    assert!(record.stages.iter().all(|s| s.reasons == ["never ran"]));
    // The resumed run took over the dead process's lock, swept its temp dirs and closed its record.
    let runs = sspa_dag::RunRecord::list(&project.workspace.runs_dir());
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].status, sspa_dag::RunStatus::Interrupted);
    for stage in ["describe", "shard"] {
        let names: Vec<String> = std::fs::read_dir(cache.join(stage))
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(!names[0].starts_with('.'), "{names:?}");
    }
}

#[test]
fn clean_keeps_what_recent_runs_used() {
    let mut f = Fixture::new(Duration::ZERO);
    f.run(&RunOptions::default());
    f.config["train"]["lr"] = json!(0.5);
    f.run(&RunOptions::default());
    f.config["train"]["lr"] = json!(0.25);
    f.run(&RunOptions::default());
    let project = f.project();
    // train, evaluate and report have one result per lr: 3 each; the other stages one.
    assert_eq!(project.workspace.cached_results().len(), 3 + 3 * 3);

    let summary = sspa_dag::gc::clean(&project.workspace, &project.spec.names(), 1).expect("clean");
    assert_eq!(summary.runs_removed, 2);
    assert_eq!(summary.results_removed, 2 * 3);
    assert!(summary.bytes_freed > 0);
    assert_eq!(sspa_dag::RunRecord::list(&project.workspace.runs_dir()).len(), 1);
    // The kept run's results are all still there: nothing reruns.
    let (record, _) = f.run(&RunOptions::default());
    assert!(record.stages.iter().all(|s| s.status == StageStatus::Skipped));
}

/// The child half of `ctrl_c_discards_partial_output`; fails unless started by it (see above).
#[test]
#[ignore = "child half of ctrl_c_discards_partial_output, which starts it"]
fn slow_child_for_sigint() {
    let root = std::env::var(SIGINT_ROOT).expect("started by ctrl_c_discards_partial_output");
    let f = Fixture::new(Duration::from_secs(30));
    let project =
        Project { root: PathBuf::from(&root), workspace: Workspace::new(Path::new(&root).join("work")), ..f.project() };
    std::fs::create_dir_all(Path::new(&root).join("templates")).expect("mkdir");
    std::fs::write(Path::new(&root).join("templates/kap.j2"), "Describe {{ label }}").expect("write");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let result =
        runtime.block_on(sspa_dag::run(&project, &f.registry, &RunOptions { jobs: 2, ..RunOptions::default() }));
    runtime.shutdown_background();
    let code = match result {
        Ok((_, Outcome::Interrupted)) => 42,
        _ => 1,
    };
    std::process::exit(code);
}

#[test]
fn ctrl_c_discards_partial_output() {
    let f = Fixture::new(Duration::ZERO);
    let root = f.dir.path();
    let mut child = std::process::Command::new(std::env::current_exe().expect("exe"))
        .args(["--exact", "runner::slow_child_for_sigint", "--ignored", "--nocapture", "--test-threads", "1"])
        .env(SIGINT_ROOT, root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn child");
    let cache = root.join("work/cache");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_dir(cache.join("shard"))
        .map(|d| d.flatten().any(|e| e.path().join("partial.txt").exists()))
        .unwrap_or(false)
    {
        assert!(Instant::now() < deadline, "child never started its stages");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
    let started = Instant::now();
    let exit = child.wait().expect("reap");
    assert_eq!(exit.code(), Some(42), "the run must end as interrupted");
    assert!(started.elapsed() < Duration::from_secs(10), "Ctrl-C must not wait for the 30 s stages");
    let project = f.project();
    assert!(project.workspace.cached_results().is_empty(), "no partial result may be published");
    let runs = sspa_dag::RunRecord::list(&project.workspace.runs_dir());
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, sspa_dag::RunStatus::Interrupted);
    assert!(runs[0].stages.iter().any(|s| s.status == StageStatus::Interrupted));
}
