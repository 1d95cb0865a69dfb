//! The pipeline as an Argo Workflows `Workflow` (as Snakemake and Nextflow do for Kubernetes):
//! a DAG template with one task per stage, each task its own container template running
//! `sspa-pipe run CONFIG --until STAGE` in the image. Pods share no disk: every pod's workspace
//! starts empty, the results of the stages it needs come from the remote cache (`[cache] remote`,
//! required), and the stage's own result is pushed there — so a stage already on the remote is a
//! pull, not a computation, and a re-submitted workflow computes only what changed.

use super::GraphArgs;
use super::yaml::to_yaml;
use crate::exit::UsageError;
use serde_json::{Value, json};
use sspa_config::LoadedConfig;
use sspa_dag::PipelineSpec;

/// Argo names: lowercase letters, digits and `-`.
fn argo_name(stage: &str) -> String {
    stage.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect()
}

/// The config, and the `--pipeline` arguments if one was given, as paths inside the project: the
/// image holds the project, so both must be in it.
fn inside_project(loaded: &LoadedConfig, args: &GraphArgs) -> anyhow::Result<(String, Vec<String>)> {
    let absolute = std::path::absolute(&loaded.path)?;
    let config = absolute.strip_prefix(&loaded.project_root).map_err(|_| {
        UsageError(format!(
            "`{}` is outside the project `{}`: the image holds the project, so the config must be in it",
            loaded.path.display(),
            loaded.project_root.display()
        ))
    })?;
    let config = config.to_string_lossy().into_owned();
    let pipeline = match &args.config.pipeline {
        Some(path) => {
            let absolute = std::path::absolute(path)?;
            let inside = absolute
                .strip_prefix(&loaded.project_root)
                .map_err(|_| UsageError(format!("--pipeline `{}` is outside the project", path.display())))?;
            vec!["--pipeline".to_string(), inside.to_string_lossy().into_owned()]
        }
        None => Vec::new(),
    };
    Ok((config, pipeline))
}

pub fn workflow(loaded: &LoadedConfig, spec: &PipelineSpec, args: &GraphArgs) -> anyhow::Result<String> {
    let Some(remote) = &loaded.config.cache.remote else {
        return Err(UsageError(format!(
            "`{}`: --format argo needs [cache] remote (pods share no disk: each stage's inputs come from the remote cache)",
            loaded.path.display()
        ))
        .into());
    };
    if remote.starts_with("file://") {
        return Err(UsageError(format!(
            "`{}`: [cache] remote = \"{remote}\" is a local directory, which pods do not share; use s3://, gs:// or az://",
            loaded.path.display()
        ))
        .into());
    }
    let (config, pipeline) = inside_project(loaded, args)?;
    let overrides: Vec<String> = args.config.set.iter().flat_map(|o| ["-S".to_string(), o.argument.clone()]).collect();
    let image = args.image.clone().unwrap_or_else(|| format!("sspa-pipe:{}", env!("CARGO_PKG_VERSION")));
    let domain = &loaded.config.domain.name;

    let tasks: Vec<Value> = spec
        .stages
        .iter()
        .map(|stage| {
            let mut task = json!({ "name": argo_name(&stage.name), "template": argo_name(&stage.name) });
            if !stage.spec.needs.is_empty() {
                task["dependencies"] = json!(stage.spec.needs.iter().map(|n| argo_name(n)).collect::<Vec<_>>());
            }
            task
        })
        .collect();
    let mut templates = vec![json!({ "name": "pipeline", "dag": { "tasks": tasks } })];
    for stage in &spec.stages {
        let mut run = vec!["run".to_string(), config.clone()];
        run.extend(pipeline.iter().cloned());
        run.extend(overrides.iter().cloned());
        run.extend(["--until".to_string(), stage.name.clone()]);
        templates.push(json!({
            "name": argo_name(&stage.name),
            "metadata": { "labels": { "sspa-pipe/stage": argo_name(&stage.name) } },
            "container": {
                "image": "{{workflow.parameters.image}}",
                "command": ["sspa-pipe"],
                "args": run,
                "workingDir": args.workdir,
                "envFrom": [{ "secretRef": { "name": "{{workflow.parameters.credentials}}" } }],
            },
        }));
    }
    let manifest = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "generateName": format!("sspa-{}-", argo_name(domain)),
            "labels": { "app.kubernetes.io/name": "sspa-pipe", "sspa-pipe/domain": argo_name(domain) },
        },
        "spec": {
            "entrypoint": "pipeline",
            "arguments": { "parameters": [
                { "name": "image", "value": image },
                { "name": "credentials", "value": args.secret },
            ]},
            "templates": templates,
        },
    });
    let given: String = overrides.iter().map(|a| format!(" {a}")).collect();
    let header = format!(
        "# Argo Workflows manifest of the `{domain}` pipeline, written by\n\
         # `sspa-pipe graph {config}{given} --format argo`. One pod per stage\n\
         # (`sspa-pipe run {config}{given} --until STAGE`): what a stage needs is pulled from the remote\n\
         # cache {remote}, what it computes is pushed there. Submit with `argo submit`.\n"
    );
    Ok(format!("{header}{}", to_yaml(&manifest)))
}
