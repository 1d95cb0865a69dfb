//! Running stages somewhere else (a cluster scheduler) instead of in this process, as Snakemake
//! and Nextflow do: each stage becomes one job that runs the tool itself on that one stage
//! (`run --only STAGE` in the binary), over the same workspace (a shared file system) or a remote
//! cache. The runner still plans, orders, records and interrupts; an [`Executor`] only submits,
//! polls and cancels. The job publishes its result itself; the runner then checks it is there.
//!
//! A job runs under the submitting run's workspace lock: the runner hands its lock's token to the
//! job through [`LOCK_TOKEN_ENV`] ([`crate::WorkspaceLock::acquire`] accepts a matching token as the
//! lock), and its run id through [`PARENT_RUN_ENV`], so that the job's own run record is filed
//! under the parent's (`runs/<parent>/jobs/`) and not listed as a run of its own.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

/// Environment variable carrying the workspace lock's token to a job.
pub const LOCK_TOKEN_ENV: &str = "SSPA_WORKSPACE_LOCK_TOKEN";
/// Environment variable carrying the submitting run's id to a job.
pub const PARENT_RUN_ENV: &str = "SSPA_PARENT_RUN";

/// One stage to submit.
#[derive(Debug, Clone)]
pub struct JobRequest {
    pub stage: String,
    pub key: String,
    /// Jobs (ids of this executor) that must succeed before this one starts; the scheduler holds
    /// it until then (and drops it if one fails).
    pub after: Vec<String>,
    /// Directory for the job's log.
    pub log_dir: PathBuf,
    /// Environment the job must see (the lock token and parent run id).
    pub env: Vec<(String, String)>,
}

/// A submitted job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobHandle {
    pub id: String,
    /// Where its output goes.
    pub log: PathBuf,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEnd {
    /// The scheduler's final state (`COMPLETED`, `FAILED`, `CANCELLED`, …).
    pub state: String,
    pub succeeded: bool,
    /// Why it did not succeed: the scheduler's reason and exit code, the end of its log.
    pub message: Option<String>,
}

/// An executor's own error, kept as the source of an [`ExecutorError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an executor could not submit or cancel a job (its cause is the scheduler's own error).
#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    /// The scheduler did not accept the job.
    #[error("cannot submit it to {executor}")]
    Submit {
        executor: String,
        #[source]
        source: BoxError,
    },
    /// The scheduler may still run the jobs.
    #[error("cannot cancel {executor} job(s) {}", ids.join(", "))]
    Cancel {
        executor: String,
        ids: Vec<String>,
        #[source]
        source: BoxError,
    },
}

/// Submits, polls and cancels jobs (blocking calls, each bounded in time: the runner makes them
/// off its event loop where they wait).
pub trait Executor: Send + Sync {
    /// `slurm`, for records and messages.
    fn name(&self) -> &str;
    /// Submits the job; returns once the scheduler has accepted it.
    fn submit(&self, job: &JobRequest) -> Result<JobHandle, ExecutorError>;
    /// Waits for the job to end, polling the scheduler. Returns early, with the job still
    /// running, only once `cancel` is set (the runner then cancels it); any other end that is
    /// not a success leaves no job of its own running (a job the executor gives up on — lost by
    /// the scheduler, pending past its bound — is cancelled before `wait` returns).
    fn wait(&self, job: &JobHandle, cancel: &AtomicBool) -> JobEnd;
    /// Cancels the jobs and waits (bounded) until the scheduler no longer runs them.
    fn cancel(&self, jobs: &[JobHandle]) -> Result<(), ExecutorError>;
}

/// A shared handle on an executor (for [`crate::RunOptions`]).
#[derive(Clone)]
pub struct ExecutorHandle(pub std::sync::Arc<dyn Executor>);

impl std::fmt::Debug for ExecutorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ExecutorHandle({})", self.0.name())
    }
}

impl std::ops::Deref for ExecutorHandle {
    type Target = dyn Executor;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref()
    }
}
