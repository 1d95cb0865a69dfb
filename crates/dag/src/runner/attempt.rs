//! One attempt at a stage's result, made one of three ways behind one trait: computed in this
//! process ([`Compute`]), pulled from the remote cache ([`Pull`]), or computed by a job of a
//! cluster scheduler ([`Job`]). Each returns a typed [`Produced`] or [`AttemptError`]; the execute
//! loop starts attempts, shows their progress the same way and records how they ended.

use super::error_chain;
use crate::executor::{ExecutorHandle, JobEnd, JobHandle};
use crate::remote::{BoxFuture, RemoteHandle, Transfer, TransferError};
use crate::stage::{Progress, Stage, StageContext};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// One way of producing a stage's result.
pub(super) trait Attempt: Send {
    /// What its progress line and bar say before the attempt says more (`pulling from …`,
    /// `slurm job 12 (log)`).
    fn label(&self) -> String;
    /// Does the work; a blocking attempt runs on the blocking pool inside the future.
    fn run(self: Box<Self>, progress: Progress) -> BoxFuture<'static, Result<Produced, AttemptError>>;
}

/// What a successful attempt produced.
#[derive(Debug)]
pub(super) enum Produced {
    /// The stage's files, computed here, are in its staging directory.
    Computed,
    /// The stage's files, pulled, are in its staging directory.
    Pulled(Transfer),
    /// A job computed the stage and published its result in the workspace itself.
    Job(JobEnd),
}

/// Why an attempt produced nothing.
#[derive(Debug, thiserror::Error)]
pub(super) enum AttemptError {
    /// The stage returned an error (its message chain) or panicked.
    #[error("{0}")]
    Stage(String),
    /// The pull failed: the stage is computed instead.
    #[error(transparent)]
    Pull(TransferError),
    /// The job did not succeed (its [`JobEnd::message`] says how).
    #[error("job ended {}", .0.state)]
    Job(JobEnd),
    /// The attempt's task ended without an answer (the runtime cancelled it).
    #[error("stage task ended abnormally: {0}")]
    Lost(String),
}

/// Runs the stage's implementation here, on the blocking pool, writing into `ctx.out_dir`; a
/// panic is caught and becomes the attempt's error.
pub(super) struct Compute {
    pub stage: Arc<dyn Stage>,
    /// What the stage sees; its progress is the attempt's.
    pub ctx: StageContext,
}

impl Attempt for Compute {
    fn label(&self) -> String {
        String::new()
    }

    fn run(self: Box<Self>, progress: Progress) -> BoxFuture<'static, Result<Produced, AttemptError>> {
        // The stage's logs carry the caller's span (e.g. which experiment variant runs).
        let span = tracing::Span::current();
        Box::pin(async move {
            let task = tokio::task::spawn_blocking(move || {
                let _span = span.enter();
                let Compute { stage, mut ctx } = *self;
                ctx.progress = progress;
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| stage.run(&ctx))) {
                    Ok(Ok(())) => Ok(Produced::Computed),
                    Ok(Err(error)) => Err(AttemptError::Stage(error_chain(error.as_ref()))),
                    Err(payload) => Err(AttemptError::Stage(format!("panicked: {}", panic_message(payload.as_ref())))),
                }
            });
            task.await.unwrap_or_else(|error| Err(AttemptError::Lost(error.to_string())))
        })
    }
}

/// Downloads the stage's published result from the remote cache into `into`.
pub(super) struct Pull {
    pub remote: RemoteHandle,
    pub stage: String,
    pub key: String,
    pub into: PathBuf,
}

impl Attempt for Pull {
    fn label(&self) -> String {
        format!("pulling from {}", self.remote.location())
    }

    fn run(self: Box<Self>, progress: Progress) -> BoxFuture<'static, Result<Produced, AttemptError>> {
        Box::pin(async move {
            let pulled = self.remote.pull(&self.stage, &self.key, &self.into, progress).await;
            pulled.map(Produced::Pulled).map_err(AttemptError::Pull)
        })
    }
}

/// Waits for a submitted job on the blocking pool (the executor polls its scheduler).
pub(super) struct Job {
    pub executor: ExecutorHandle,
    pub job: JobHandle,
    pub cancel: Arc<AtomicBool>,
}

impl Attempt for Job {
    fn label(&self) -> String {
        format!("{} job {} ({})", self.executor.name(), self.job.id, self.job.log.display())
    }

    fn run(self: Box<Self>, _progress: Progress) -> BoxFuture<'static, Result<Produced, AttemptError>> {
        Box::pin(async move {
            let task = tokio::task::spawn_blocking(move || self.executor.wait(&self.job, &self.cancel));
            match task.await {
                Ok(end) if end.succeeded => Ok(Produced::Job(end)),
                Ok(end) => Err(AttemptError::Job(end)),
                Err(error) => Err(AttemptError::Lost(error.to_string())),
            }
        })
    }
}

/// The message of a panic payload (`panic!("...")` gives a `&str`, `panic!("{x}")` a `String`).
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(text), _) => (*text).to_string(),
        (None, Some(text)) => text.clone(),
        (None, None) => "a panic payload that is not a string".to_string(),
    }
}
