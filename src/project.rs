//! Binds a domain config to the pipeline definition and its workspace.

use crate::cli::ConfigArgs;
use anyhow::Context;
use sspa_config::LoadedConfig;
use sspa_dag::{PipelineSpec, Project, Workspace};
use sspa_registry::{Champion, Reference, Registry, RegistryError};
use std::path::PathBuf;

/// Loads and validates the config with its `-S` overrides (every error at once), then the
/// pipeline file, and resolves a warm start (`train.init`) against the workspace's registry.
pub fn load(args: &ConfigArgs) -> anyhow::Result<(LoadedConfig, Project)> {
    let mut loaded = sspa_config::load_with_overrides(&args.config, &sspa_stages::config_checks(), &args.set)?;
    let weights = init_weights(&loaded)?;
    loaded.resolve_init_weights(weights.map(PathBuf::from));
    let pipeline_path = match args.pipeline.as_deref() {
        Some(p) => p.to_path_buf(),
        None => loaded.project_root.join(sspa_config::PIPELINE_FILE),
    };
    let spec = PipelineSpec::load(&pipeline_path).context("loading the pipeline definition")?;
    let project = Project {
        root: loaded.project_root.clone(),
        config_path: loaded.path.clone(),
        config: loaded.json().clone(),
        workspace: Workspace::new(loaded.workspace_dir.clone()),
        spec,
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
    };
    Ok((loaded, project))
}

/// The registry weights file `train.init` names (relative to the project root when it is inside
/// it), checked file by file; `None` trains from scratch. An alias (`current`) resolves as the
/// promotion gate resolves its champion ([`Registry::champion`]): when its version cannot be
/// used, the newest intact version it pointed at before, with a warning; when it points nowhere
/// yet, or at nothing usable, training starts from scratch with a warning, so that the first
/// scheduled run, or the one after the registry was lost, rebuilds the model. A version named
/// explicitly must exist.
fn init_weights(loaded: &LoadedConfig) -> anyhow::Result<Option<String>> {
    let Some(reference) = loaded.config.train.init.model().cloned() else { return Ok(None) };
    let registry = Registry::of_workspace(&loaded.workspace_dir);
    let version = match &reference {
        Reference::Alias(alias) => match registry.champion(alias) {
            Champion::Current(version) => version,
            Champion::Fallback { version, why } => {
                tracing::warn!("train.init = \"{reference}\": {why}; warm start from v{}", version.info.version);
                version
            }
            Champion::First => {
                tracing::warn!(
                    "train.init = \"{reference}\": the registry `{}` has no such model yet; training from scratch",
                    registry.dir().display()
                );
                return Ok(None);
            }
            Champion::Unusable { why } => {
                tracing::warn!("train.init = \"{reference}\": {why}; training from scratch");
                return Ok(None);
            }
        },
        Reference::Version(_) => match registry.resolve(&reference) {
            Ok(version) => version,
            Err(e @ RegistryError::Corrupt { .. }) => {
                tracing::warn!("train.init = \"{reference}\": {e}; training from scratch");
                return Ok(None);
            }
            Err(e) => return Err(crate::exit::UsageError(format!("train.init = \"{reference}\": {e}")).into()),
        },
    };
    let file = version.weights_file();
    let shown = file.strip_prefix(&loaded.project_root).unwrap_or(&file);
    tracing::debug!("train.init = \"{reference}\": warm start from v{} (`{}`)", version.info.version, shown.display());
    Ok(Some(shown.to_string_lossy().into_owned()))
}

/// The executor `run --executor` names: `None` for the local one; for Slurm, the cluster's client
/// commands checked to answer, every job running this binary on this config (with the same
/// `-S` overrides and pipeline file) from the current directory. A stage named in
/// `[executor.slurm.<stage>]` must be a stage of the pipeline.
pub fn executor(
    loaded: &LoadedConfig,
    spec: &PipelineSpec,
    config: &ConfigArgs,
    args: &crate::cli::ExecutorArgs,
) -> anyhow::Result<Option<sspa_dag::ExecutorHandle>> {
    use crate::cli::ExecutorKind;
    let slurm = &loaded.config.executor.slurm;
    if args.executor == ExecutorKind::Local {
        if args.slurm_partition.is_some() || !args.slurm_arg.is_empty() {
            return Err(
                crate::exit::UsageError("--slurm-partition and --slurm-arg need --executor slurm".into()).into()
            );
        }
        return Ok(None);
    }
    let unknown: Vec<&String> = slurm.stages.keys().filter(|name| spec.stage(name).is_none()).collect();
    if !unknown.is_empty() {
        return Err(crate::exit::UsageError(format!(
            "`{}`: [executor.slurm.<stage>] names no stage of the pipeline: {} (stages: {}; the settings of every job are partition, args, poll_s, max_pending_s, program)",
            loaded.path.display(),
            unknown.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "),
            spec.names().join(", ")
        ))
        .into());
    }
    let cwd = std::env::current_dir().context("the current directory")?;
    let absolute = |path: &std::path::Path| if path.is_absolute() { path.to_path_buf() } else { cwd.join(path) };
    let program = match &slurm.program {
        Some(program) => loaded.resolve(program),
        None => std::env::current_exe().context("locating this sspa-pipe binary for the jobs")?,
    };
    let mut run_args: Vec<std::ffi::OsString> = vec!["run".into(), absolute(&config.config).into()];
    if let Some(pipeline) = &config.pipeline {
        run_args.extend(["--pipeline".into(), absolute(pipeline).into()]);
    }
    for set in &config.set {
        run_args.extend(["-S".into(), set.argument.clone().into()]);
    }
    let options = sspa_slurm::SlurmOptions {
        program,
        run_args,
        workdir: cwd,
        partition: args.slurm_partition.clone().or_else(|| slurm.partition.clone()),
        args: slurm.args.iter().chain(&args.slurm_arg).cloned().collect(),
        stages: slurm
            .stages
            .iter()
            .map(|(name, stage)| {
                let resources = sspa_slurm::StageResources {
                    partition: stage.partition.clone(),
                    gres: stage.gres.clone(),
                    cpus: stage.cpus,
                    mem: stage.mem.clone(),
                    time: stage.time.clone(),
                    args: stage.args.clone(),
                };
                (name.clone(), resources)
            })
            .collect(),
        poll: std::time::Duration::from_secs_f64(slurm.poll_s),
        max_pending: std::time::Duration::from_secs_f64(slurm.max_pending_s),
        client_timeout: sspa_slurm::CLIENT_TIMEOUT,
        client_dir: None,
    };
    let executor = sspa_slurm::SlurmExecutor::connect(options).map_err(|e| anyhow::anyhow!("--executor slurm: {e}"))?;
    Ok(Some(sspa_dag::ExecutorHandle(std::sync::Arc::new(executor))))
}

/// The remote cache `[cache] remote` names, if any, with its push policy; a stage named in
/// `[cache.stages]` must be a stage of the pipeline.
pub fn remote(loaded: &LoadedConfig, spec: &PipelineSpec) -> anyhow::Result<Option<sspa_dag::RemoteHandle>> {
    let cache = &loaded.config.cache;
    let Some(url) = &cache.remote else { return Ok(None) };
    let unknown: Vec<&String> = cache.stages.keys().filter(|name| spec.stage(name).is_none()).collect();
    if !unknown.is_empty() {
        return Err(crate::exit::UsageError(format!(
            "`{}`: [cache.stages] names no stage of the pipeline: {} (stages: {})",
            loaded.path.display(),
            unknown.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", "),
            spec.names().join(", ")
        ))
        .into());
    }
    let policy = sspa_remote::PushPolicy {
        default: cache.push,
        stages: cache.stages.iter().map(|(name, stage)| (name.clone(), stage.push)).collect(),
    };
    let remote = sspa_remote::ObjectRemote::open(url, policy)
        .map_err(|e| crate::exit::UsageError(format!("`{}`: {e}", loaded.path.display())))?;
    Ok(Some(sspa_dag::RemoteHandle(std::sync::Arc::new(remote))))
}
