//! Binds a domain config to the pipeline definition and its workspace.

use crate::cli::ConfigArgs;
use anyhow::Context;
use sspa_config::LoadedConfig;
use sspa_dag::{PipelineSpec, Project, Workspace};

/// Loads and validates the config with its `-S` overrides (every error at once), then the
/// pipeline file.
pub fn load(args: &ConfigArgs) -> anyhow::Result<(LoadedConfig, Project)> {
    let loaded = sspa_config::load_with_overrides(&args.config, &sspa_stages::config_checks(), &args.set)?;
    let pipeline_path = match args.pipeline.as_deref() {
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
