//! The interface every stage kind implements, and the registry the runner looks kinds up in.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// A stage's own failure; the runner records its message chain and keeps going elsewhere.
pub type StageError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// One kind of work (`describe`, `train`, ...). Implementations are registered once, in the binary.
pub trait Stage: Send + Sync {
    /// The `kind` pipeline files refer to.
    fn kind(&self) -> &str;
    /// Bump when the outputs for the same inputs change (format or semantics): cached results of
    /// older versions are then stale.
    fn version(&self) -> u32;
    /// Input files the stage reads beyond the pipeline's declared `deps`, found from its params:
    /// model weights in an install directory, annotation files named by a dataset manifest.
    /// Their content hashes join the cache key like declared deps.
    fn inputs(&self, params: &Value, project_root: &std::path::Path) -> Result<Vec<PathBuf>, StageError> {
        let _ = (params, project_root);
        Ok(Vec::new())
    }
    /// Checks the declared params — nested JSON exactly as `run` will receive them in
    /// `ctx.params` — against what the stage reads; a mismatch means `pipeline.toml` and the
    /// stage's params type disagree. `plan` calls it for every stage of the pipeline and reports
    /// every mismatch at once, naming the pipeline file and the stage.
    fn check_params(&self, params: &Value) -> Result<(), String> {
        let _ = params;
        Ok(())
    }
    /// Does the work, blocking, writing every output into `ctx.out_dir`. A panic is caught by the
    /// runner and recorded as the stage's failure (`panicked: <message>`).
    fn run(&self, ctx: &StageContext) -> Result<(), StageError>;
}

/// What a running stage sees. Only the config values it declared are in `params`, so the cache
/// key covers everything it can read.
pub struct StageContext {
    /// The stage's name in the pipeline.
    pub name: String,
    /// Declared config values, nested as in the config (`params["train"]["lr"]`).
    pub params: Value,
    /// Relative paths in the config start here.
    pub project_root: PathBuf,
    /// Declared inputs, resolved against the project root.
    pub deps: Vec<PathBuf>,
    /// Upstream stage name → its published output directory.
    pub inputs: BTreeMap<String, PathBuf>,
    /// Empty directory for the outputs; published atomically only when `run` succeeds.
    pub out_dir: PathBuf,
    /// Stage-owned directory that survives failures and interruptions (for resumable work).
    pub state_dir: PathBuf,
    /// The runner's tokio runtime, for stages that do async I/O (`runtime.block_on(..)`).
    pub runtime: tokio::runtime::Handle,
    pub progress: Progress,
    /// True when the stage runs because it, or a stage upstream of it, was forced (`--force`).
    /// A resumable stage then discards the checkpoints it keeps in `state_dir` for this key
    /// before starting, so that the result is recomputed; otherwise (after an interruption, a
    /// failure or a kill) it resumes from them.
    pub forced: bool,
    pub(crate) cancel: Arc<AtomicBool>,
}

impl StageContext {
    /// True once the user asked the run to stop (Ctrl-C); long loops should return early.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    /// Deserialises one declared config section, e.g. `ctx.section::<TrainSection>("train")`.
    pub fn section<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, StageError> {
        let value = crate::spec::lookup(&self.params, name)
            .ok_or_else(|| format!("stage `{}` reads `{name}` but does not declare it in `params`", self.name))?;
        serde_json::from_value(value.clone()).map_err(|e| format!("config `{name}`: {e}").into())
    }

    /// The output directory of a needed stage.
    pub fn input(&self, stage: &str) -> Result<&PathBuf, StageError> {
        self.inputs.get(stage).ok_or_else(|| {
            format!("stage `{}` reads the output of `{stage}` but does not declare it in `needs`", self.name).into()
        })
    }
}

/// Progress of one stage; drawn by indicatif on a terminal, silent otherwise.
#[derive(Clone)]
pub struct Progress {
    bar: indicatif::ProgressBar,
}

impl Progress {
    pub(crate) fn new(bar: indicatif::ProgressBar) -> Self {
        Self { bar }
    }

    /// A progress handle drawing `bar` (commands outside the runner, e.g. cache transfers).
    pub fn from_bar(bar: indicatif::ProgressBar) -> Self {
        Self { bar }
    }

    /// A progress handle that draws nothing (tests, library use).
    pub fn hidden() -> Self {
        Self { bar: indicatif::ProgressBar::hidden() }
    }

    pub fn set_length(&self, length: u64) {
        self.bar.set_length(length);
    }

    pub fn set_position(&self, position: u64) {
        self.bar.set_position(position);
    }

    /// Sets both the length and the position: the shape of the libraries' `(done, total)` callbacks.
    pub fn update(&self, done: u64, total: u64) {
        self.bar.set_length(total);
        self.bar.set_position(done);
    }

    pub fn inc(&self, delta: u64) {
        self.bar.inc(delta);
    }

    pub fn set_message(&self, message: impl Into<String>) {
        self.bar.set_message(message.into());
    }
}

/// Stage kinds by name.
#[derive(Default, Clone)]
pub struct Registry {
    kinds: BTreeMap<String, Arc<dyn Stage>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn register(&mut self, stage: impl Stage + 'static) -> &mut Self {
        self.kinds.insert(stage.kind().to_string(), Arc::new(stage));
        self
    }

    pub fn get(&self, kind: &str) -> Option<Arc<dyn Stage>> {
        self.kinds.get(kind).cloned()
    }

    pub fn kinds(&self) -> Vec<&str> {
        self.kinds.keys().map(String::as_str).collect()
    }
}
