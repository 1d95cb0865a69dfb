//! stages: the stage kinds this build provides, each binding a library crate to the DAG runner.
//!
//! The runner knows stages only through [`sspa_dag::Stage`]; adding a kind means one file here and
//! one line in [`registry`]. Each kind implements [`TypedStage`]: its `Params` type is both what
//! `params` in `pipeline/pipeline.toml` declares and what the stage deserialises, so a stage cannot
//! read a config value that is not in its cache key ([`params`] checks the two agree when the
//! pipeline is planned).

mod describe;
mod embed;
mod evaluate;
mod features;
mod finetune;
#[cfg(test)]
mod key_property;
mod labels;
pub mod params;
mod report;
mod shard;
mod train;

use sspa_dag::Registry;
use std::path::Path;

pub use describe::{Describe, concurrency_message};
pub use embed::Embed;
pub use evaluate::Evaluate;
pub use features::Features;
pub use labels::{DataLocation, resolve as resolve_labels};
pub use params::{Typed, TypedStage};
pub use report::{Report, lineage_of as report_lineage};
pub use shard::Shard;
pub use train::Train;

/// Every stage kind this build can run.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry
        .register(Typed(Describe))
        .register(Typed(Embed))
        .register(Typed(Shard))
        .register(Typed(Features))
        .register(Typed(Train))
        .register(Typed(Evaluate))
        .register(Typed(Report));
    registry
}

/// The checks config validation runs for this build: whether it has libtorch, and the checks
/// that read the data manifest (`evaluate.split` must be one of its splits).
pub fn config_checks() -> sspa_config::Checks<'static> {
    sspa_config::Checks { libtorch: sspa_infer::device::LIBTORCH, external: Some(&manifest_checks) }
}

fn manifest_checks(config: &sspa_config::DomainConfig, project_root: &Path) -> Vec<(String, String)> {
    let path = project_root.join(&config.data.manifest);
    // A manifest that does not load is reported by the stages that read it, with its own errors.
    let Ok(manifest) = sspa_data::Manifest::load(&path) else { return Vec::new() };
    let split = &config.evaluate.split;
    if manifest.splits.contains_key(split) {
        return Vec::new();
    }
    let available: Vec<String> = manifest.splits.keys().map(|name| format!("`{name}`")).collect();
    vec![(
        "evaluate.split".into(),
        format!("`{split}` is not a split of `{}` (it has {})", config.data.manifest.display(), available.join(", ")),
    )]
}

/// Errors of the stage glue itself; library errors pass through.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Labels(#[from] sspa_describe::LabelError),
    #[error(transparent)]
    Data(#[from] sspa_data::DataError),
    #[error("{0}")]
    Incomplete(String),
    #[error("writing `{path}`: {source}")]
    Summary {
        path: std::path::PathBuf,
        #[source]
        source: sspa_dag::DagError,
    },
}

/// `summary.json` beside a stage's outputs: what it did, for `status` and reports.
pub(crate) fn write_summary<T: serde::Serialize>(out_dir: &Path, summary: &T) -> Result<(), Error> {
    let path = out_dir.join("summary.json");
    sspa_dag::write_json_atomic(&path, summary).map_err(|source| Error::Summary { path, source })
}
