use super::{print_json, run_options};
use crate::cli::{ConfigArgs, SelectArgs};
use crate::exit;
use sspa_dag::{Outcome, StageStatus};

pub fn run(config: &ConfigArgs, select: &SelectArgs, jobs: usize, json: bool, progress: bool) -> anyhow::Result<u8> {
    let (loaded, project) = crate::project::load(config)?;
    let registry = sspa_stages::registry();
    let options = run_options(select, jobs, progress, crate::project::remote(&loaded, &project.spec)?);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build()?;
    let result = runtime.block_on(sspa_dag::run(&project, &registry, &options));
    // Stage threads that ignore cancellation must not keep an interrupted process alive.
    runtime.shutdown_background();
    let (record, outcome) = result?;
    if json {
        print_json(&record)?;
    } else {
        for stage in &record.stages {
            let status = match stage.status {
                StageStatus::Ran => "ran",
                StageStatus::Skipped => "skipped",
                StageStatus::Pulled => "pulled",
                StageStatus::Failed => "FAILED",
                StageStatus::NotRun => "not run",
                StageStatus::Interrupted => "interrupted",
                StageStatus::Pending => "pending",
            };
            let why = stage.error.clone().unwrap_or_else(|| stage.reasons.join("; "));
            let why = match &stage.remote {
                Some(remote) if why.is_empty() => remote.clone(),
                Some(remote) => format!("{why}; {remote}"),
                None => why,
            };
            println!("{:<10} {:<11} {:>8.2}s  {}", stage.name, status, stage.duration_s, why);
        }
        println!(
            "run {} {:?} in {:.2}s; record: {}",
            record.run_id,
            record.status,
            record.duration_s,
            project.workspace.runs_dir().join(&record.run_id).join("run.json").display()
        );
    }
    Ok(match outcome {
        Outcome::Succeeded => exit::OK,
        Outcome::StageFailed => exit::STAGE_FAILED,
        Outcome::Interrupted => exit::INTERRUPTED,
    })
}
