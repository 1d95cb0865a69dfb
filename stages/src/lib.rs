//! stages: the stage kinds this build provides, each binding a library crate to the DAG runner.
//!
//! The runner knows stages only through [`sspa_dag::Stage`]; adding a kind means one file here and
//! one line in [`registry`].

mod describe;
pub mod device;
mod embed;
pub mod encoders;
mod evaluate;
pub mod features;
pub mod finetune;
pub mod labels;
pub mod predict;
mod report;
mod shard;
mod train;

use sspa_dag::Registry;
use std::path::Path;

pub use describe::Describe;
pub use embed::Embed;
pub use evaluate::Evaluate;
pub use report::Report;
pub use shard::Shard;
pub use train::Train;

/// Every stage kind this build can run.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    registry.register(Describe).register(Embed).register(Shard).register(Train).register(Evaluate).register(Report);
    registry
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
    #[error("{0}")]
    Unsupported(String),
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
