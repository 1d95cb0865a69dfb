//! Benchmark: a fully cached re-run of a 6-stage pipeline, and a re-run over 10,000 unchanged
//! input files. Run with `cargo bench -p sspa-dag --bench cached_rerun`.

use serde_json::json;
use sspa_dag::{PipelineSpec, Project, Registry, RunOptions, Stage, StageContext, StageError, Workspace};
use std::path::Path;
use std::time::Instant;

struct Touch;

impl Stage for Touch {
    fn kind(&self) -> &str {
        "touch"
    }
    fn version(&self) -> u32 {
        1
    }
    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        std::fs::write(ctx.out_dir.join("out.txt"), ctx.params.to_string())?;
        Ok(())
    }
}

const PIPELINE: &str = r#"
version = 1
[stages.describe]
kind = "touch"
params = ["a"]
deps = ["inputs"]
outs = ["out.txt"]
[stages.embed]
kind = "touch"
needs = ["describe"]
outs = ["out.txt"]
[stages.shard]
kind = "touch"
params = ["b"]
outs = ["out.txt"]
[stages.train]
kind = "touch"
needs = ["embed", "shard"]
outs = ["out.txt"]
[stages.evaluate]
kind = "touch"
needs = ["train"]
outs = ["out.txt"]
[stages.report]
kind = "touch"
needs = ["evaluate"]
outs = ["out.txt"]
"#;

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let inputs = dir.path().join("inputs");
    for i in 0..10_000 {
        let sub = inputs.join(format!("{:02}", i % 100));
        std::fs::create_dir_all(&sub)?;
        std::fs::write(sub.join(format!("{i}.bin")), vec![(i % 251) as u8; 4096])?;
    }
    let project = Project {
        root: dir.path().to_path_buf(),
        config_path: "bench.toml".into(),
        config: json!({"a": {"x": 1}, "b": {"y": 2}}),
        workspace: Workspace::new(dir.path().join("work")),
        spec: PipelineSpec::parse(Path::new("pipeline.toml"), PIPELINE)?,
        tool_version: "bench".into(),
    };
    let mut registry = Registry::new();
    registry.register(Touch);
    let runtime = tokio::runtime::Runtime::new()?;
    let options = RunOptions { jobs: 2, ..RunOptions::default() };

    let start = Instant::now();
    runtime.block_on(sspa_dag::run(&project, &registry, &options))?;
    println!("first run (hashes 10,000 files of 4 KiB, runs 6 stages): {:.1} ms", start.elapsed().as_secs_f64() * 1e3);

    let mut cached = Vec::new();
    for _ in 0..15 {
        let start = Instant::now();
        let (record, _) = runtime.block_on(sspa_dag::run(&project, &registry, &options))?;
        cached.push(start.elapsed().as_secs_f64() * 1e3);
        assert!(record.stages.iter().all(|s| s.status == sspa_dag::StageStatus::Skipped));
    }
    println!(
        "fully cached re-run, 6 stages over 10,000 unchanged input files: median {:.1} ms, max {:.1} ms (15 runs)",
        median(cached.clone()),
        cached.iter().cloned().fold(0.0, f64::max)
    );

    let mut planning = Vec::new();
    for _ in 0..15 {
        let start = Instant::now();
        sspa_dag::plan(&project, &registry, &options)?;
        planning.push(start.elapsed().as_secs_f64() * 1e3);
    }
    println!("plan only (stat + memo lookup of 10,000 files): median {:.1} ms", median(planning));
    Ok(())
}
