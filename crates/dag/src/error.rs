use std::path::PathBuf;

/// Errors of the runner itself; a stage's own failure is reported in the run record instead.
#[derive(Debug, thiserror::Error)]
pub enum DagError {
    #[error("I/O error on `{path}`: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pipeline `{path}`: {message}")]
    Pipeline { path: PathBuf, message: String },
    #[error("dependency cycle: {}", chain.join(" -> "))]
    Cycle { chain: Vec<String> },
    #[error("unknown stage `{name}` (stages: {known})")]
    UnknownStage { name: String, known: String },
    #[error("stage `{stage}` has kind `{kind}`, which this build does not provide (kinds: {known})")]
    UnknownKind { stage: String, kind: String, known: String },
    #[error("stage `{stage}`: {message}")]
    Input { stage: String, message: String },
    /// Every missing or unreadable input of the selected stages, found by one `plan`.
    #[error("{}", list_problems("input problem", .0))]
    Inputs(Vec<StageProblem>),
    /// The pipeline file's declared `params` and the stages' params types disagree.
    #[error("pipeline `{}` and the stages' params types disagree:\n{}", path.display(), list_lines(problems))]
    Params { path: PathBuf, problems: Vec<StageProblem> },
    #[error(
        "workspace `{workspace}` is locked by PID {pid}{} (started {started}); wait for it to finish, or stop it",
        host.as_ref().map(|host| format!(" on {host}")).unwrap_or_default()
    )]
    Locked {
        workspace: PathBuf,
        pid: u32,
        /// The holder's host, when it is not this one.
        host: Option<String>,
        started: String,
    },
    #[error("`--only {stage}` needs the output of `{upstream}`, which is not in the cache: run without `--only` first")]
    MissingUpstream { stage: String, upstream: String },
    #[error("cannot encode `{what}` as JSON: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
}

/// One stage's problem in an error that collects them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageProblem {
    pub stage: String,
    pub message: String,
}

impl std::fmt::Display for StageProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stage `{}`: {}", self.stage, self.message)
    }
}

/// One problem alone on its line; several counted, then one per line.
fn list_problems(what: &str, problems: &[StageProblem]) -> String {
    match problems {
        [one] => one.to_string(),
        _ => format!("{} {what}s:\n{}", problems.len(), list_lines(problems)),
    }
}

fn list_lines(problems: &[StageProblem]) -> String {
    problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n")
}

impl DagError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| DagError::Io { path, source }
    }
}
