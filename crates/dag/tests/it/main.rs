//! The runner against fake stages that record how often, when and with what they ran.

mod failures;
mod index;
mod remote;
mod runner;

use serde_json::{Value, json};
use sspa_dag::{PipelineSpec, Project, Registry, RunOptions, Stage, StageContext, StageError, Workspace};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One run of a fake stage.
#[derive(Debug, Clone)]
pub struct Ran {
    pub name: String,
    pub start: Instant,
    pub end: Instant,
    /// What the runner said in `StageContext::forced`.
    pub forced: bool,
}

pub type RunLog = Arc<Mutex<Vec<Ran>>>;

/// Writes `out.txt` = its params plus the text of every upstream `out.txt`, after an optional sleep.
/// Params steer it: `<section>.fail = true` fails, `<section>.panic = "text"` panics with a
/// `String` payload, `<section>.panic = true` with a `&str` one (`<section>` is `llm` or `data`).
pub struct Fake {
    pub kind: &'static str,
    pub log: RunLog,
    pub sleep: Duration,
    /// The evaluate stage also writes its params as JSON to this file.
    pub metrics_file: Option<&'static str>,
}

impl Fake {
    fn flag<'a>(ctx: &'a StageContext, name: &str) -> Option<&'a Value> {
        ["llm", "data"].iter().find_map(|section| ctx.params.pointer(&format!("/{section}/{name}")))
    }
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
        match Self::flag(ctx, "panic") {
            Some(Value::String(message)) => panic!("{message}"),
            Some(Value::Bool(true)) => panic!("index out of bounds in a fake stage"),
            _ => {}
        }
        if Self::flag(ctx, "fail").and_then(Value::as_bool) == Some(true) {
            return Err("asked to fail".into());
        }
        if Self::flag(ctx, "block_publish").and_then(Value::as_bool) == Some(true) {
            // A directory where the runner writes its done marker: publishing fails.
            std::fs::create_dir_all(ctx.out_dir.join(sspa_dag::store::DONE_MARKER).join("in-the-way"))?;
        }
        std::fs::write(ctx.out_dir.join("out.txt"), text)?;
        if let (true, Some(file)) = (ctx.name == "evaluate", self.metrics_file) {
            std::fs::write(ctx.out_dir.join(file), ctx.params.to_string())?;
        }
        self.log.lock().map_err(|_| "poisoned")?.push(Ran {
            name: ctx.name.clone(),
            start,
            end: Instant::now(),
            forced: ctx.forced,
        });
        Ok(())
    }
}

pub const PIPELINE: &str = r#"
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

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub config: Value,
    pub log: RunLog,
    pub registry: Registry,
    pub pipeline: String,
}

impl Fixture {
    pub fn new(sleep: Duration) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("templates")).expect("mkdir");
        std::fs::write(dir.path().join("templates/kap.j2"), "Describe {{ label }}").expect("write");
        let log: RunLog = Arc::default();
        let mut registry = Registry::new();
        registry.register(Fake { kind: "fake", log: log.clone(), sleep, metrics_file: None });
        let config = json!({
            "llm": {"model": "m", "temperature": 0.0},
            "prompt": {"template": "templates/kap.j2"},
            "data": {"shard_size": 10},
            "model": {"preset": "p", "image_size": 224},
            "train": {"lr": 0.001, "epochs": 2},
            "evaluate": {"threshold": 0.5},
        });
        Self { dir, config, log, registry, pipeline: PIPELINE.to_string() }
    }

    pub fn project(&self) -> Project {
        Project {
            root: self.dir.path().to_path_buf(),
            config_path: PathBuf::from("domains/test.toml"),
            config: self.config.clone(),
            workspace: Workspace::new(self.dir.path().join("work")),
            spec: PipelineSpec::parse(Path::new("pipeline.toml"), &self.pipeline).expect("valid pipeline"),
            tool_version: "test".into(),
        }
    }

    pub fn try_run(
        &self,
        options: &RunOptions,
    ) -> Result<(sspa_dag::RunRecord, sspa_dag::Outcome), sspa_dag::DagError> {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(sspa_dag::run(&self.project(), &self.registry, options))
    }

    pub fn run(&self, options: &RunOptions) -> (sspa_dag::RunRecord, sspa_dag::Outcome) {
        self.try_run(options).expect("run")
    }

    /// Stage names that ran since the last call, sorted.
    pub fn take_ran(&self) -> Vec<String> {
        let mut log = self.log.lock().expect("log");
        let mut names: Vec<String> = log.drain(..).map(|r| r.name).collect();
        names.sort();
        names
    }

    pub fn reasons(record: &sspa_dag::RunRecord, stage: &str) -> Vec<String> {
        record.stages.iter().find(|s| s.name == stage).map(|s| s.reasons.clone()).unwrap_or_default()
    }

    pub fn stage<'a>(record: &'a sspa_dag::RunRecord, stage: &str) -> &'a sspa_dag::StageRecord {
        record.stages.iter().find(|s| s.name == stage).unwrap_or_else(|| panic!("no stage `{stage}` in the record"))
    }
}
