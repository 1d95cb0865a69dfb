use super::{print_json, run_options};
use crate::cli::{ConfigArgs, ExecutorArgs, SelectArgs};
use crate::exit;
use sspa_dag::{Outcome, StageStatus};

pub fn run(
    config: &ConfigArgs,
    select: &SelectArgs,
    jobs: Option<usize>,
    executor: &ExecutorArgs,
    json: bool,
    progress: bool,
) -> anyhow::Result<u8> {
    let (loaded, project) = crate::project::load(config)?;
    let registry = sspa_stages::registry();
    let executor = crate::project::executor(&loaded, &project.spec, config, executor)?;
    // A scheduler queues every stage whose needs are submitted (chained) unless told otherwise.
    let jobs = jobs.unwrap_or(if executor.is_some() { project.spec.names().len().max(1) } else { 1 });
    let mut options = run_options(select, jobs, progress, crate::project::remote(&loaded, &project.spec)?);
    options.executor = executor;
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
            // A failed job's error names the job and its log already.
            let why = match &stage.job {
                Some(job) if stage.error.is_none() => {
                    format!("[{} job {} {}, log {}] {why}", job.executor, job.id, job.state, job.log.display())
                }
                _ => why,
            };
            println!("{:<10} {:<11} {:>8.2}s  {}", stage.name, status, stage.duration_s, why);
        }
        println!(
            "run {} {:?} in {:.2}s; record: {}",
            record.run_id,
            record.status,
            record.duration_s,
            sspa_dag::records_dir(&project, &record).join(&record.run_id).join("run.json").display()
        );
    }
    Ok(match outcome {
        Outcome::Succeeded => exit::OK,
        Outcome::StageFailed => exit::STAGE_FAILED,
        Outcome::Interrupted => exit::INTERRUPTED,
    })
}
