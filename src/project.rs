//! Binds a domain config to the pipeline definition and its workspace.

use anyhow::Context;
use sspa_config::LoadedConfig;
use sspa_dag::{PipelineSpec, Project, Workspace};
use std::path::Path;

/// Loads and validates the config (every error at once), then the pipeline file.
pub fn load(config: &Path, pipeline: Option<&Path>) -> anyhow::Result<(LoadedConfig, Project)> {
    let loaded = sspa_config::load(config, &sspa_stages::config_checks())?;
    let pipeline_path = match pipeline {
        Some(p) => p.to_path_buf(),
        None => loaded.project_root.join(sspa_config::PIPELINE_FILE),
    };
    let spec = PipelineSpec::load(&pipeline_path).context("loading the pipeline definition")?;
    let project = Project {
        root: loaded.project_root.clone(),
        config_path: loaded.path.clone(),
        config: loaded.json.clone(),
        workspace: Workspace::new(loaded.workspace_dir.clone()),
        spec,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    Ok((loaded, project))
}
