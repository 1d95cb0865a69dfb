//! config: domain files (`domains/*.toml`) from raw TOML to a validated [`DomainConfig`].
//!
//! [`load`] reports every problem it can find in one go (syntax errors, unknown keys, wrongly typed
//! values, failed checks), each with the file, line and column, so a user fixes a file in one pass.

#![warn(missing_docs)]

mod errors;
mod locate;
pub mod metric_names;
mod overrides;
mod preset;
mod reference;
mod schema;
mod validate;

pub use errors::{ConfigError, ConfigErrors};
pub use overrides::Override;
pub use preset::{ComputeDevice, PRESETS, Precision, Preset, PresetInfo, Resampling};
pub use reference::{ModelReference, ReferenceError};
pub use schema::*;
pub use validate::gate_metrics;

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// The file that marks the project root (the directory that relative config paths start from).
pub const PIPELINE_FILE: &str = "pipeline/pipeline.toml";

/// Sections a domain file may have; `true` when required.
const SECTIONS: &[(&str, bool)] = &[
    ("domain", true),
    ("labels", false),
    ("llm", false),
    ("prompt", true),
    ("data", true),
    ("model", false),
    ("features", false),
    ("train", false),
    ("ablation", false),
    ("evaluate", false),
    ("workspace", false),
    ("promote", false),
    ("notify", false),
    ("cache", false),
    ("executor", false),
];

/// A validated domain config and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The config file as given.
    pub path: PathBuf,
    /// Directory holding `pipeline/pipeline.toml`; relative paths in the config start here.
    pub project_root: PathBuf,
    /// The validated settings, typed; what the lifecycle resolves against the workspace
    /// (`train.init_weights`) is set through [`LoadedConfig::resolve_init_weights`], so this and
    /// [`LoadedConfig::json`] never disagree.
    pub config: DomainConfig,
    /// The same config as JSON (defaults filled in), the form stage parameters are hashed from.
    json: serde_json::Value,
    /// Absolute workspace directory: stage cache, run records, lock.
    pub workspace_dir: PathBuf,
}

impl LoadedConfig {
    /// The config as the JSON document stage parameters are read and hashed from: every default
    /// filled in, and `train.init_weights` once resolved.
    pub fn json(&self) -> &serde_json::Value {
        &self.json
    }

    /// Binds the registry weights file `train.init` resolved to (`None`: training starts from
    /// scratch), in the typed config and in [`LoadedConfig::json`] alike; its content is part of
    /// the train key. The one place the resolved value is written.
    pub fn resolve_init_weights(&mut self, weights: Option<PathBuf>) {
        if let Some(train) = self.json.get_mut("train").and_then(serde_json::Value::as_object_mut) {
            match &weights {
                Some(file) => {
                    train.insert("init_weights".into(), serde_json::Value::String(file.to_string_lossy().into_owned()));
                }
                None => {
                    train.remove("init_weights");
                }
            }
        }
        self.config.train.init_weights = weights;
    }

    /// Resolves a config path against the project root.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        self.project_root.join(path)
    }
}

/// A check that needs more than the config text, e.g. the data manifest's splits: returns
/// `(dotted key path, message)` for each problem, reported with the key's line like any other.
pub type ExternalCheck = dyn Fn(&DomainConfig, &Path) -> Vec<(String, String)> + Sync;

/// What validation knows beyond the file: the build's capabilities and checks of other crates.
#[derive(Clone, Copy, Default)]
pub struct Checks<'a> {
    /// This build has the libtorch backend (`--features tch`); without it `train.device =
    /// "libtorch"` / `"cuda:N"` is an error naming the feature.
    pub libtorch: bool,
    /// Runs after the built-in checks, on a config that parsed (given the project root).
    pub external: Option<&'a ExternalCheck>,
}

/// Reads, parses and validates a domain file.
pub fn load(path: &Path, checks: &Checks<'_>) -> Result<LoadedConfig, ConfigErrors> {
    load_with_overrides(path, checks, &[])
}

/// [`load`] with `-S key=value` overrides applied before validation, which treats them exactly
/// like values of the file (problems with them name the argument).
pub fn load_with_overrides(
    path: &Path,
    checks: &Checks<'_>,
    overrides: &[Override],
) -> Result<LoadedConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigErrors::single(path, format!("cannot read the config: {e}")))?;
    let project_root = find_project_root(path).ok_or_else(|| {
        ConfigErrors::single(
            path,
            format!("no `{PIPELINE_FILE}` in any directory above this config: run from a project checkout"),
        )
    })?;
    let config = parse_with_overrides(path, &text, &project_root, checks, overrides)?;
    let json = serde_json::to_value(&config)
        .map_err(|e| ConfigErrors::single(path, format!("config does not serialise: {e}")))?;
    let workspace_dir = project_root
        .join(config.workspace.dir.clone().unwrap_or_else(|| PathBuf::from("work").join(&config.domain.name)));
    Ok(LoadedConfig { path: path.to_path_buf(), project_root, config, json, workspace_dir })
}

/// Parses and validates config text; `file` is used in messages, `project_root` to check paths.
pub fn parse(file: &Path, text: &str, project_root: &Path, checks: &Checks<'_>) -> Result<DomainConfig, ConfigErrors> {
    parse_with_overrides(file, text, project_root, checks, &[])
}

/// [`parse`] with overrides applied to the parsed table before any check.
pub fn parse_with_overrides(
    file: &Path,
    text: &str,
    project_root: &Path,
    checks: &Checks<'_>,
    overrides: &[Override],
) -> Result<DomainConfig, ConfigErrors> {
    let locator = locate::Locator::new(text);
    let mut errors =
        ConfigErrors::new(file).with_overrides(overrides.iter().map(|o| (o.key.clone(), o.argument.clone())).collect());

    let (_, syntax) = toml::de::DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        for e in syntax {
            let at = e.span().map(|s| locator.position(s.start)).unwrap_or((1, 1));
            errors.push(at, e.message().trim().to_string());
        }
        return Err(errors);
    }
    let mut root: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            let at = e.span().map(|s| locator.position(s.start)).unwrap_or((1, 1));
            errors.push(at, e.message().trim().to_string());
            return Err(errors);
        }
    };
    for item in overrides {
        if let Err(message) = item.apply(&mut root) {
            errors.push_argument(&item.argument, message);
        }
    }
    // A domain file without `data.shard_encoding` means `auto` (resolved below); resolved
    // settings leave `raw` out, so that is what an absent key means to serde.
    if let Some(toml::Value::Table(data)) = root.get_mut("data") {
        data.entry("shard_encoding").or_insert_with(|| toml::Value::String("auto".into()));
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    for key in root.keys() {
        if !SECTIONS.iter().any(|(name, _)| name == key) {
            let names: Vec<_> = SECTIONS.iter().map(|(n, _)| format!("[{n}]")).collect();
            errors.push_key(
                key,
                locator.key(&[key.as_str()]),
                format!("unknown section `[{key}]`; expected one of {}", names.join(", ")),
            );
        }
    }
    for (name, required) in SECTIONS {
        match root.get(*name) {
            None if *required => errors.push((1, 1), format!("missing required section `[{name}]`")),
            None => {}
            Some(value) => check_section(name, value, &locator, &mut errors),
        }
    }
    if !errors.is_empty() {
        errors.sort();
        return Err(errors);
    }
    let mut config: DomainConfig = match toml::Value::Table(root).try_into() {
        Ok(c) => c,
        Err(e) => {
            errors.push((1, 1), e.to_string());
            return Err(errors);
        }
    };
    // Resolved once, here: the stage parameters (and so the shard key) carry what is stored.
    config.data.shard_encoding = config.data.shard_encoding.resolve(config.model.image_size);
    for (path, message) in validate::validate(&config, project_root, checks) {
        let keys: Vec<&str> = path.split('.').collect();
        errors.push_key(&path, locator.key_or_parent(&keys), format!("`{path}`: {message}"));
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        errors.sort();
        Err(errors)
    }
}

/// Deserialises one section on its own, collecting unknown keys and the first type error in it.
fn check_section(name: &str, value: &toml::Value, locator: &locate::Locator, errors: &mut ConfigErrors) {
    match name {
        "domain" => check::<DomainSection>(name, value, locator, errors),
        "labels" => check::<LabelsSection>(name, value, locator, errors),
        "llm" => check::<LlmSection>(name, value, locator, errors),
        "prompt" => check::<PromptSection>(name, value, locator, errors),
        "data" => check::<DataSection>(name, value, locator, errors),
        "model" => check::<ModelSection>(name, value, locator, errors),
        "features" => check::<FeaturesSection>(name, value, locator, errors),
        "train" => check::<TrainSection>(name, value, locator, errors),
        "ablation" => check::<AblationSection>(name, value, locator, errors),
        "evaluate" => check::<EvaluateSection>(name, value, locator, errors),
        "workspace" => check::<WorkspaceSection>(name, value, locator, errors),
        "promote" => check::<PromoteSection>(name, value, locator, errors),
        "notify" => check::<NotifySection>(name, value, locator, errors),
        "cache" => check::<CacheSection>(name, value, locator, errors),
        "executor" => check::<ExecutorSection>(name, value, locator, errors),
        _ => {}
    }
}

fn check<T: DeserializeOwned>(
    section: &str,
    value: &toml::Value,
    locator: &locate::Locator,
    errors: &mut ConfigErrors,
) {
    // serde stops at the first wrongly typed value; drop it and try again so that the next one
    // (and every unknown key behind it) is reported too.
    let mut value = value.clone();
    let mut unknown: Vec<String> = Vec::new();
    let mut reported: Vec<String> = Vec::new();
    for _ in 0..64 {
        unknown.clear();
        let mut record = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
        let ignoring = serde_ignored::Deserializer::new(value.clone(), &mut record);
        let Err(e) = serde_path_to_error::deserialize::<_, T>(ignoring) else { break };
        let inner = normalise(&e.path().to_string());
        let full = if inner == "." { section.to_string() } else { format!("{section}.{inner}") };
        if reported.contains(&full) {
            break;
        }
        let keys: Vec<&str> = full.split('.').collect();
        let message = e.into_inner().to_string();
        let message = message.lines().next().unwrap_or_default();
        errors.push_key(&full, locator.value_or_parent(&keys), format!("`{full}`: {message}"));
        let removed = remove_path(&mut value, &keys[1..]);
        reported.push(full);
        if !removed {
            break;
        }
    }
    for path in unknown {
        let full = format!("{section}.{}", normalise(&path));
        let keys: Vec<&str> = full.split('.').collect();
        errors.push_key(&full, locator.key_or_parent(&keys), format!("unknown key `{full}`"));
    }
}

/// Removes the value at `keys` (table keys or array indices); false when there is none.
fn remove_path(value: &mut toml::Value, keys: &[&str]) -> bool {
    match (value, keys) {
        (_, []) => false,
        (toml::Value::Table(t), [last]) => t.remove(*last).is_some(),
        (toml::Value::Array(a), [last]) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => {
                a.remove(i);
                true
            }
            _ => false,
        },
        (toml::Value::Table(t), [first, rest @ ..]) => t.get_mut(*first).is_some_and(|v| remove_path(v, rest)),
        (toml::Value::Array(a), [first, rest @ ..]) => {
            first.parse::<usize>().ok().and_then(|i| a.get_mut(i)).is_some_and(|v| remove_path(v, rest))
        }
        _ => false,
    }
}

/// `stop[0]` and `stop.0` name the same place; locate uses the dotted form.
fn normalise(path: &str) -> String {
    path.replace('[', ".").replace(']', "")
}

/// The nearest directory at or above the config that holds `pipeline/pipeline.toml`.
pub fn find_project_root(config: &Path) -> Option<PathBuf> {
    let absolute = std::path::absolute(config).ok()?;
    absolute.ancestors().skip(1).find(|dir| dir.join(PIPELINE_FILE).is_file()).map(Path::to_path_buf)
}

#[cfg(test)]
mod tests;
