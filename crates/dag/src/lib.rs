//! dag: the pipeline engine of sspa-pipe. It reads a declarative stage graph, keys every stage by
//! a BLAKE3 hash of exactly what it reads, skips what is cached, runs the rest (independent stages
//! in parallel), publishes each result atomically and records why every stage ran or not.
//!
//! It knows nothing about machine learning: stages plug in through [`Stage`] and a [`Registry`].

mod error;
pub mod executor;
mod fsutil;
pub mod gc;
pub mod graph;
pub mod hash;
pub mod index;
pub mod key;
pub mod lock;
pub mod record;
pub mod remote;
pub mod runner;
pub mod spec;
pub mod stage;
pub mod store;

pub use error::{DagError, StageProblem};
pub use executor::{Executor, ExecutorError, ExecutorHandle, JobEnd, JobHandle, JobRequest};
pub use fsutil::{write_atomic, write_json_atomic};
pub use index::{RunEntry, StageEntry, run_index};
pub use lock::WorkspaceLock;
pub use record::{JobRecord, RunRecord, RunStatus, StageRecord, StageStatus};
pub use remote::{Existing, RemoteCache, RemoteHandle, Transfer, TransferError};
pub use runner::{
    Decision, Outcome, Plan, PlannedStage, Project, RunOptions, error_chain, plan, plan_with_remote, records_dir,
    recover, run, run_locked, stage_params,
};
pub use spec::{PipelineSpec, StageDef};
pub use stage::{Progress, Registry, Stage, StageContext, StageError};
pub use store::Workspace;
