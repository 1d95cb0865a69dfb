//! Typed stage parameters: one type per stage that is both its declared `params` and what it reads.
//!
//! The runner hands a stage exactly the config values `pipeline/pipeline.toml` declares for it,
//! nested as in the config. [`parse`] deserialises them into the stage's `Params` type and
//! serialises the result back: the two must be equal, leaf for leaf. A field the type has but the
//! pipeline does not declare would come back as a default (or `null`), a declared value the type
//! does not read would be missing — either way the check fails, naming the stage, the type and
//! the key. The runner calls it for every stage when it plans ([`sspa_dag::Stage::check_params`]),
//! so a disagreement stops `plan` and `run` before anything runs, and no params type can carry
//! `#[serde(default)]` for a key outside the stage's cache key.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sspa_dag::key::leaves;
use sspa_dag::{Stage, StageContext, StageError};
use std::path::{Path, PathBuf};

/// A stage kind with a typed view of its params.
pub trait TypedStage: Send + Sync + 'static {
    /// Exactly the values `params` declares, nested as in the config.
    type Params: Serialize + DeserializeOwned;

    /// The `kind` pipeline files refer to.
    const KIND: &'static str;
    /// Bump when the outputs for the same inputs change.
    const VERSION: u32;

    /// Input files the stage reads beyond the declared `deps` (see [`Stage::inputs`]).
    fn inputs(&self, params: &Self::Params, project_root: &Path) -> Result<Vec<PathBuf>, StageError> {
        let _ = (params, project_root);
        Ok(Vec::new())
    }

    /// Does the work, writing every output into `ctx.out_dir`.
    fn run(&self, params: Self::Params, ctx: &StageContext) -> Result<(), StageError>;
}

/// Adapts a [`TypedStage`] to the runner's [`Stage`].
pub struct Typed<S>(pub S);

impl<S: TypedStage> Stage for Typed<S> {
    fn kind(&self) -> &str {
        S::KIND
    }

    fn version(&self) -> u32 {
        S::VERSION
    }

    fn check_params(&self, params: &Value) -> Result<(), String> {
        parse::<S::Params>(params).map(|_| ())
    }

    fn inputs(&self, params: &Value, project_root: &Path) -> Result<Vec<PathBuf>, StageError> {
        self.0.inputs(&parse::<S::Params>(params)?, project_root)
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        self.0.run(parse::<S::Params>(&ctx.params)?, ctx)
    }
}

/// The short name of a type, for messages (`sspa_stages::shard::ShardParams` → `ShardParams`).
fn type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// Deserialises `declared` into `P` and checks that `P` reads exactly what was declared.
///
/// # Errors
/// A message naming `P` and every key on which the two disagree.
pub fn parse<P: Serialize + DeserializeOwned>(declared: &Value) -> Result<P, String> {
    let name = type_name::<P>();
    let params: P = serde_path_to_error::deserialize(declared).map_err(|e| {
        let at = e.path().to_string();
        let message = e.inner().to_string();
        // serde names a missing field without its parents: give the whole dotted key.
        match message.strip_prefix("missing field `").and_then(|rest| rest.split_once('`')) {
            Some((field, _)) => {
                let key = if at == "." { field.to_owned() } else { format!("{at}.{field}") };
                format!("params type `{name}` reads `{key}`, which `params` does not declare")
            }
            None => format!("params type `{name}` cannot read the declared value at `{at}`: {message}"),
        }
    })?;
    let read = serde_json::to_value(&params).map_err(|e| format!("params type `{name}` does not serialise: {e}"))?;
    let (have, want) = (leaves(declared), leaves(&read));
    let mut problems = Vec::new();
    for (key, value) in &want {
        match have.get(key) {
            None => problems.push(format!("reads `{key}`, which `params` does not declare")),
            Some(declared) if declared != value => {
                problems.push(format!("reads `{key}` as {value}, but the declared value is {declared}"))
            }
            Some(_) => {}
        }
    }
    for key in have.keys().filter(|key| !want.contains_key(*key)) {
        problems.push(format!("does not read `{key}`, which `params` declares"));
    }
    if problems.is_empty() { Ok(params) } else { Err(format!("params type `{name}` {}", problems.join("; "))) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Inner {
        preset: String,
        size: u32,
    }

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Params {
        model: Inner,
        weights: Option<String>,
    }

    #[test]
    fn exactly_the_declared_values_parse() {
        let declared = json!({"model": {"preset": "x", "size": 3}, "weights": null});
        let params: Params = parse(&declared).expect("agrees");
        assert_eq!(params.model.size, 3);
    }

    #[test]
    fn an_undeclared_optional_field_is_caught() {
        // serde would read the missing `weights` as `None`: the round trip shows it was never declared.
        let error = parse::<Params>(&json!({"model": {"preset": "x", "size": 3}})).expect_err("undeclared");
        assert_eq!(error, "params type `Params` reads `weights`, which `params` does not declare");
    }

    #[test]
    fn a_declared_value_the_type_ignores_is_caught() {
        let declared = json!({"model": {"preset": "x", "size": 3, "extra": true}, "weights": "w"});
        let error = parse::<Params>(&declared).expect_err("extra");
        assert_eq!(error, "params type `Params` does not read `model.extra`, which `params` declares");
    }

    #[test]
    fn a_missing_required_field_names_the_type() {
        let error = parse::<Params>(&json!({"model": {"preset": "x"}, "weights": null})).expect_err("missing");
        assert_eq!(error, "params type `Params` reads `model.size`, which `params` does not declare");
        let error = parse::<Params>(&json!({"model": {"preset": 3, "size": 1}, "weights": null})).expect_err("type");
        assert!(error.starts_with("params type `Params` cannot read the declared value at `model.preset`"), "{error}");
    }
}
