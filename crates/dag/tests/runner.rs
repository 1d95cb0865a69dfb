//! The runner against fake stages that record how often, when and with what they ran.

use serde_json::{Value, json};
use sspa_dag::{
    Decision, Outcome, PipelineSpec, Project, Registry, RunOptions, Stage, StageContext, StageError, StageStatus,
    Workspace,
};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Log of (stage name, start, end) for every run of a fake stage.
type RunLog = Arc<Mutex<Vec<(String, Instant, Instant)>>>;

/// Writes `out.txt` = its params plus the text of every upstream `out.txt`, after an optional sleep.
struct Fake {
    kind: &'static str,
    log: RunLog,
    sleep: Duration,
}

impl Stage for Fake {
    fn kind(&self) -> &str {
        self.kind
    }
    fn version(&self) -> u32 {
        1
    }
    /// `data.weights`, when given, names a file outside the declared deps.
    fn inputs(&self, params: &Value, project_root: &Path) -> Result<Vec<PathBuf>, StageError> {
        Ok(params.pointer("/data/weights").and_then(Value::as_str).map(|w| project_root.join(w)).into_iter().collect())
    }
    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let start = Instant::now();
        let mut text = ctx.params.to_string();
        for (name, dir) in &ctx.inputs {
            text.push_str(&format!("\n{name}: {}", std::fs::read_to_string(dir.join("out.txt"))?));
        }
        for dep in &ctx.deps {
            text.push_str(&format!("\ndep: {}", std::fs::read_to_string(dep)?.len()));
        }
        // Write part of the output first: an interruption here must never be visible.
        std::fs::write(ctx.out_dir.join("partial.txt"), "half")?;
        std::thread::sleep(self.sleep);
        if ctx.params.pointer("/llm/fail").and_then(Value::as_bool) == Some(true) {
            return Err("asked to fail".into());
        }
        std::fs::write(ctx.out_dir.join("out.txt"), text)?;
        self.log.lock().map_err(|_| "poisoned")?.push((ctx.name.clone(), start, Instant::now()));
        Ok(())
    }
}

const PIPELINE: &str = r#"
version = 1
[stages.describe]
kind = "fake"
params = ["llm"]
deps = ["${prompt.template}"]
outs = ["out.txt"]
[stages.shard]
kind = "fake"
params = ["data"]
outs = ["out.txt"]
[stages.embed]
kind = "fake"
needs = ["describe"]
params = ["model.preset"]
outs = ["out.txt"]
[stages.train]
kind = "fake"
needs = ["embed", "shard"]
params = ["train"]
outs = ["out.txt"]
[stages.evaluate]
kind = "fake"
needs = ["train", "shard"]
params = ["evaluate"]
outs = ["out.txt"]
[stages.report]
kind = "fake"
needs = ["evaluate"]
outs = ["out.txt"]
"#;

struct Fixture {
    dir: tempfile::TempDir,
    config: Value,
    log: RunLog,
    registry: Registry,
}

impl Fixture {
    fn new(sleep: Duration) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("templates")).expect("mkdir");
        std::fs::write(dir.path().join("templates/kap.j2"), "Describe {{ label }}").expect("write");
        let log: RunLog = Arc::default();
        let mut registry = Registry::new();
        registry.register(Fake { kind: "fake", log: log.clone(), sleep });
        let config = json!({
            "llm": {"model": "m", "temperature": 0.0},
            "prompt": {"template": "templates/kap.j2"},
            "data": {"shard_size": 10},
            "model": {"preset": "p", "image_size": 224},
            "train": {"lr": 0.001, "epochs": 2},
            "evaluate": {"threshold": 0.5},
        });
        Self { dir, config, log, registry }
    }

    fn project(&self) -> Project {
        Project {
            root: self.dir.path().to_path_buf(),
            config_path: PathBuf::from("domains/test.toml"),
            config: self.config.clone(),
            workspace: Workspace::new(self.dir.path().join("work")),
            spec: PipelineSpec::parse(Path::new("pipeline.toml"), PIPELINE).expect("valid pipeline"),
            tool_version: "test".into(),
        }
    }

    fn run(&self, options: &RunOptions) -> (sspa_dag::RunRecord, Outcome) {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(sspa_dag::run(&self.project(), &self.registry, options)).expect("run")
    }

    /// Stage names that ran since the last call, sorted.
    fn take_ran(&self) -> Vec<String> {
        let mut log = self.log.lock().expect("log");
        let mut names: Vec<String> = log.drain(..).map(|(n, _, _)| n).collect();
        names.sort();
        names
    }

    fn reasons(record: &sspa_dag::RunRecord, stage: &str) -> Vec<String> {
        record.stages.iter().find(|s| s.name == stage).map(|s| s.reasons.clone()).unwrap_or_default()
    }
}

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
    let span = |n: &str| log.iter().find(|(name, _, _)| name == n).map(|(_, s, e)| (*s, *e)).expect("ran");
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
    let mut spans: Vec<(Instant, Instant)> = log.iter().map(|(_, s, e)| (*s, *e)).collect();
    spans.sort();
    assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "--jobs 1 must run one stage at a time");
}

/// The child half of `kill_9_mid_stage_leaves_no_partial_output`: runs a slow pipeline.
#[test]
fn slow_child_run() {
    let Ok(root) = std::env::var("SSPA_DAG_CHILD_ROOT") else { return };
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
        .args(["--exact", "slow_child_run", "--nocapture", "--test-threads", "1"])
        .env("SSPA_DAG_CHILD_ROOT", root)
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

/// The child half of `ctrl_c_discards_partial_output`.
#[test]
fn slow_child_for_sigint() {
    let Ok(root) = std::env::var("SSPA_DAG_SIGINT_ROOT") else { return };
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
        .args(["--exact", "slow_child_for_sigint", "--nocapture", "--test-threads", "1"])
        .env("SSPA_DAG_SIGINT_ROOT", root)
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
