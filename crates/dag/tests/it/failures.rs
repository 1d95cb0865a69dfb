//! Every way a run can go wrong: panicking stages, `--only` without upstream, a runner error
//! while publishing, `--force` as the stages see it, and errors that `plan` reports all at once.

use crate::{Fixture, Ran};
use serde_json::{Value, json};
use sspa_dag::{DagError, Outcome, RunOptions, RunRecord, RunStatus, Stage, StageContext, StageError, StageStatus};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

fn assert_no_run_left_running(f: &Fixture) {
    let runs = RunRecord::list(&f.project().workspace.runs_dir());
    assert!(!runs.is_empty());
    for run in &runs {
        assert_ne!(run.status, RunStatus::Running, "run {} left running", run.run_id);
        assert!(run.finished_at.is_some(), "run {} never finished", run.run_id);
        assert!(run.stages.iter().all(|s| s.status != StageStatus::Pending), "{:?}", run.stages);
    }
}

#[test]
fn a_panicking_stage_is_recorded_failed_with_its_message() {
    let mut f = Fixture::new(Duration::ZERO);
    // A `&str` payload (`panic!("literal")`).
    f.config["llm"]["panic"] = json!(true);
    let (record, outcome) = f.run(&RunOptions { jobs: 2, ..RunOptions::default() });
    assert_eq!(outcome, Outcome::StageFailed);
    assert_eq!(record.status, RunStatus::Failed);
    let describe = Fixture::stage(&record, "describe");
    assert_eq!(describe.status, StageStatus::Failed);
    assert_eq!(describe.error.as_deref(), Some("panicked: index out of bounds in a fake stage"));
    assert_eq!(Fixture::stage(&record, "shard").status, StageStatus::Ran, "an independent stage still runs");
    for dependant in ["embed", "train", "evaluate", "report"] {
        assert_eq!(Fixture::stage(&record, dependant).status, StageStatus::NotRun, "{dependant}");
    }
    assert_eq!(Fixture::reasons(&record, "embed"), vec!["never ran", "upstream describe did not finish"]);
    assert_eq!(f.take_ran(), vec!["shard"]);
    let describe_cache = f.project().workspace.stage_cache("describe");
    assert_eq!(std::fs::read_dir(&describe_cache).map(|d| d.count()).unwrap_or(0), 0, "no partial output left");
    assert_no_run_left_running(&f);

    // A `String` payload (`panic!("{x}")`), in the other branch this time.
    f.config["llm"]["panic"] = json!(false);
    f.config["data"]["panic"] = json!("shape mismatch: [2, 3] vs [3, 2]");
    let (record, outcome) = f.run(&RunOptions { jobs: 2, ..RunOptions::default() });
    assert_eq!(outcome, Outcome::StageFailed);
    assert_eq!(Fixture::stage(&record, "shard").error.as_deref(), Some("panicked: shape mismatch: [2, 3] vs [3, 2]"));
    assert_eq!(f.take_ran(), vec!["describe", "embed"]);
    assert_eq!(Fixture::stage(&record, "train").status, StageStatus::NotRun);
    let runs = RunRecord::list(&f.project().workspace.runs_dir());
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.status == RunStatus::Failed), "the earlier run is not re-marked as killed");
    assert_no_run_left_running(&f);
}

/// Relative path → content of every file under `root` (the lock's holder text excepted).
fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir").flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(root).expect("under root").display().to_string();
            if path.is_dir() {
                files.insert(format!("{relative}/"), Vec::new());
                stack.push(path);
            } else {
                let content = if relative == "lock" { Vec::new() } else { std::fs::read(&path).expect("read") };
                files.insert(relative, content);
            }
        }
    }
    files
}

#[test]
fn only_without_its_upstream_is_refused_before_anything_is_written() {
    let f = Fixture::new(Duration::ZERO);
    let only = |stage: &str| RunOptions { only: Some(stage.into()), ..RunOptions::default() };
    // A fresh workspace: no record, no cache, no temporary directory.
    let error = f.try_run(&only("embed")).expect_err("describe is not cached");
    assert!(matches!(error, DagError::MissingUpstream { ref upstream, .. } if upstream == "describe"), "{error}");
    let workspace = f.project().workspace;
    assert!(!workspace.runs_dir().exists());
    assert!(!workspace.root.join("cache").exists());

    // With some results cached, `--only train` lacks shard's: the workspace stays as it was.
    f.run(&RunOptions { until: vec!["embed".into()], ..RunOptions::default() });
    f.take_ran();
    let before = snapshot(&workspace.root);
    let error = f.try_run(&only("train")).expect_err("shard is not cached");
    assert!(error.to_string().contains("`--only train` needs the output of `shard`"), "{error}");
    assert!(f.take_ran().is_empty());
    assert_eq!(snapshot(&workspace.root), before, "a refused `--only` writes nothing");
    assert_eq!(RunRecord::list(&workspace.runs_dir()).len(), 1);
    assert_no_run_left_running(&f);
}

#[test]
fn a_runner_error_while_publishing_closes_the_record() {
    let mut f = Fixture::new(Duration::ZERO);
    f.config["data"]["block_publish"] = json!(true);
    let error = f.try_run(&RunOptions::default()).expect_err("shard's result cannot be published");
    assert!(error.to_string().contains(sspa_dag::store::DONE_MARKER), "{error}");
    let runs = RunRecord::list(&f.project().workspace.runs_dir());
    assert_eq!(runs.len(), 1);
    let record = &runs[0];
    assert_eq!(record.status, RunStatus::Failed);
    let recorded = record.error.as_deref().expect("the runner's error is recorded");
    assert!(recorded.contains(sspa_dag::store::DONE_MARKER), "{recorded}");
    let shard = Fixture::stage(record, "shard");
    assert_eq!(shard.status, StageStatus::Failed);
    assert!(shard.error.as_deref().is_some_and(|e| e.starts_with("cannot publish its result")), "{shard:?}");
    assert_eq!(Fixture::stage(record, "describe").status, StageStatus::Ran);
    assert_no_run_left_running(&f);
    // Nothing half-published: the next run reruns shard from scratch.
    f.config["data"]["block_publish"] = json!(false);
    let (record, outcome) = f.run(&RunOptions::default());
    assert_eq!(outcome, Outcome::Succeeded);
    assert_eq!(Fixture::stage(&record, "describe").status, StageStatus::Skipped);
}

#[test]
fn force_tells_the_forced_stage_and_its_dependants() {
    let mut f = Fixture::new(Duration::ZERO);
    let forced_of = |f: &Fixture| -> BTreeMap<String, bool> {
        f.log.lock().expect("log").drain(..).map(|Ran { name, forced, .. }| (name, forced)).collect()
    };
    f.run(&RunOptions::default());
    assert!(forced_of(&f).values().all(|forced| !forced), "a first run is not forced");

    // embed reruns for a changed param (not forced), shard and what reads it because of --force.
    f.config["model"]["preset"] = json!("q");
    f.run(&RunOptions { force: vec!["shard".into()], ..RunOptions::default() });
    let expected: BTreeMap<String, bool> =
        [("embed", false), ("shard", true), ("train", true), ("evaluate", true), ("report", true)]
            .into_iter()
            .map(|(n, forced)| (n.to_string(), forced))
            .collect();
    assert_eq!(forced_of(&f), expected);

    // A change without --force: train and downstream rerun, none of them forced.
    f.config["train"]["lr"] = json!(0.5);
    f.run(&RunOptions::default());
    let ran = forced_of(&f);
    assert_eq!(ran.keys().collect::<Vec<_>>(), ["evaluate", "report", "train"]);
    assert!(ran.values().all(|forced| !forced), "{ran:?}");
}

/// A stage whose params type reads the paths in `reads`.
struct Typed {
    kind: &'static str,
    type_name: &'static str,
    reads: &'static [&'static str],
}

impl Stage for Typed {
    fn kind(&self) -> &str {
        self.kind
    }
    fn version(&self) -> u32 {
        1
    }
    fn check_params(&self, params: &Value) -> Result<(), String> {
        let undeclared: Vec<String> = self
            .reads
            .iter()
            .filter(|path| params.pointer(&format!("/{}", path.replace('.', "/"))).is_none())
            .map(|path| format!("params type `{}` reads `{path}` which `params` does not declare", self.type_name))
            .collect();
        if undeclared.is_empty() { Ok(()) } else { Err(undeclared.join("; ")) }
    }
    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        std::fs::write(ctx.out_dir.join("out.txt"), ctx.params.to_string())?;
        Ok(())
    }
}

#[test]
fn every_params_mismatch_of_the_pipeline_is_reported_at_once() {
    let mut f = Fixture::new(Duration::ZERO);
    f.pipeline = r#"
version = 1
[stages.shard]
kind = "shard"
params = ["model.preset"]
outs = ["out.txt"]
[stages.train]
kind = "train"
needs = ["shard"]
params = ["train.lr"]
outs = ["out.txt"]
[stages.describe]
kind = "describe"
params = ["llm"]
outs = ["out.txt"]
"#
    .into();
    f.registry.register(Typed {
        kind: "shard",
        type_name: "ShardParams",
        reads: &["model.preset", "model.image_size"],
    });
    f.registry.register(Typed { kind: "train", type_name: "TrainParams", reads: &["train.lr", "train.epochs"] });
    f.registry.register(Typed { kind: "describe", type_name: "DescribeParams", reads: &["llm.model"] });
    // Only describe is selected: the mismatches of the other stages are still reported.
    let options = RunOptions { until: vec!["describe".into()], ..RunOptions::default() };
    let error = sspa_dag::plan(&f.project(), &f.registry, &options).expect_err("two stages disagree");
    let DagError::Params { path, problems } = &error else { panic!("unexpected {error:?}") };
    assert_eq!(path, Path::new("pipeline.toml"));
    let stages: Vec<&str> = problems.iter().map(|p| p.stage.as_str()).collect();
    assert_eq!(stages, ["shard", "train"]);
    let text = error.to_string();
    assert!(text.starts_with("pipeline `pipeline.toml` and the stages' params types disagree:\n"), "{text}");
    assert!(
        text.contains(
            "\n  stage `shard`: params type `ShardParams` reads `model.image_size` which `params` does not declare"
        ),
        "{text}"
    );
    assert!(text.contains("\n  stage `train`: params type `TrainParams` reads `train.epochs`"), "{text}");
    assert!(!text.contains("describe"), "{text}");

    // Declaring what the types read makes the plan pass.
    f.pipeline = f.pipeline.replace(r#"["model.preset"]"#, r#"["model"]"#).replace(r#"["train.lr"]"#, r#"["train"]"#);
    sspa_dag::plan(&f.project(), &f.registry, &options).expect("params agree");
}

#[test]
fn every_missing_input_is_reported_at_once() {
    let mut f = Fixture::new(Duration::ZERO);
    f.config["prompt"]["template"] = json!("templates/missing.j2");
    f.config["data"]["weights"] = json!("weights/absent.bin");
    f.config.as_object_mut().expect("object").remove("evaluate");
    let error = sspa_dag::plan(&f.project(), &f.registry, &RunOptions::default()).expect_err("three problems");
    let DagError::Inputs(problems) = &error else { panic!("unexpected {error:?}") };
    let stages: Vec<&str> = problems.iter().map(|p| p.stage.as_str()).collect();
    assert_eq!(stages, ["describe", "shard", "evaluate"]);
    let text = error.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert_eq!(lines[0], "3 input problems:");
    assert!(lines[1].starts_with("  stage `describe`: input `templates/missing.j2` does not exist"), "{text}");
    assert!(
        lines[2].starts_with("  stage `shard`: input `") && lines[2].ends_with("weights/absent.bin` does not exist")
    );
    assert_eq!(lines[3], "  stage `evaluate`: reads param `evaluate`, which the config does not have");
    // Nothing was run or recorded.
    assert!(f.try_run(&RunOptions::default()).is_err());
    assert!(!f.project().workspace.runs_dir().exists());
}

#[test]
fn stage_params_are_the_runners_own_extraction() {
    let f = Fixture::new(Duration::ZERO);
    let project = f.project();
    let def = project.spec.stage("embed").expect("embed");
    let (flat, nested) = sspa_dag::stage_params(&f.config, def).expect("declared");
    assert_eq!(flat, BTreeMap::from([("model.preset".to_string(), json!("p"))]));
    assert_eq!(nested, json!({"model": {"preset": "p"}}));
    let plan = sspa_dag::plan(&project, &f.registry, &RunOptions::default()).expect("plan");
    let planned = plan.get("embed").expect("planned");
    assert_eq!(planned.parts.params, flat);
    assert_eq!(planned.params, nested);

    let mut config = f.config.clone();
    config["model"].as_object_mut().expect("object").remove("preset");
    let error = sspa_dag::stage_params(&config, def).expect_err("missing");
    assert_eq!(error.to_string(), "stage `embed`: reads param `model.preset`, which the config does not have");
}
