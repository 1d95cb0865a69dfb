//! The declarative pipeline file (`pipeline/pipeline.toml`), like `dvc.yaml`.
//!
//! ```toml
//! [stages.describe]
//! kind = "describe"                  # which implementation runs it
//! needs = []                         # upstream stages (their outputs become inputs)
//! params = ["domain", "llm"]         # config sections/keys it reads: only these are hashed
//! deps = ["${prompt.template}"]      # input files or directories; ${a.b} reads the config
//! outs = ["descriptions.parquet"]    # files the stage must leave in its output directory
//! ```

use crate::error::DagError;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Version of the pipeline file format this build reads.
pub const SPEC_FORMAT: u32 = 1;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    version: u32,
    stages: toml::value::Table,
}

/// One stage as written in the pipeline file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Implementation to run; defaults to the stage's name.
    pub kind: Option<String>,
    #[serde(default)]
    pub needs: Vec<String>,
    #[serde(default)]
    pub params: Vec<String>,
    #[serde(default)]
    pub deps: Vec<String>,
    #[serde(default)]
    pub outs: Vec<String>,
    /// JSON files among `outs` that hold the stage's metrics (like DVC's `metrics`): the run
    /// index ([`crate::index`]) reads them into every run that produced or reused the result.
    #[serde(default)]
    pub metrics: Vec<String>,
    /// One line for `graph` and `plan`.
    pub description: Option<String>,
}

/// A stage with its name, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct StageDef {
    pub name: String,
    pub kind: String,
    pub spec: StageSpec,
}

/// All stages of a pipeline, in the order the file lists them.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    pub path: PathBuf,
    pub stages: Vec<StageDef>,
}

impl PipelineSpec {
    pub fn load(path: &Path) -> Result<Self, DagError> {
        let text = std::fs::read_to_string(path).map_err(|source| DagError::Io { path: path.to_path_buf(), source })?;
        Self::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, DagError> {
        let bad = |message: String| DagError::Pipeline { path: path.to_path_buf(), message };
        let raw: RawSpec = toml::from_str(text).map_err(|e| bad(e.to_string().trim().to_string()))?;
        if raw.version != SPEC_FORMAT {
            return Err(bad(format!(
                "format version {} is not supported (this build reads {SPEC_FORMAT})",
                raw.version
            )));
        }
        let mut stages = Vec::new();
        for (name, value) in raw.stages {
            let spec: StageSpec = value
                .try_into()
                .map_err(|e: toml::de::Error| bad(format!("stage `{name}`: {}", e.message().trim())))?;
            let kind = spec.kind.clone().unwrap_or_else(|| name.clone());
            stages.push(StageDef { name, kind, spec });
        }
        let spec = Self { path: path.to_path_buf(), stages };
        spec.check_needs()?;
        spec.check_metrics()?;
        crate::graph::topological_order(&spec)?;
        Ok(spec)
    }

    pub fn stage(&self, name: &str) -> Option<&StageDef> {
        self.stages.iter().find(|s| s.name == name)
    }

    pub fn names(&self) -> Vec<&str> {
        self.stages.iter().map(|s| s.name.as_str()).collect()
    }

    fn check_metrics(&self) -> Result<(), DagError> {
        for stage in &self.stages {
            if let Some(metric) = stage.spec.metrics.iter().find(|m| !stage.spec.outs.contains(m)) {
                return Err(DagError::Pipeline {
                    path: self.path.clone(),
                    message: format!(
                        "stage `{}` declares metrics `{metric}`, which is not one of its `outs`",
                        stage.name
                    ),
                });
            }
        }
        Ok(())
    }

    fn check_needs(&self) -> Result<(), DagError> {
        for stage in &self.stages {
            for need in &stage.spec.needs {
                if self.stage(need).is_none() {
                    return Err(DagError::Pipeline {
                        path: self.path.clone(),
                        message: format!(
                            "stage `{}` needs `{need}`, which is not a stage (stages: {})",
                            stage.name,
                            self.names().join(", ")
                        ),
                    });
                }
            }
        }
        Ok(())
    }
}

/// Reads a dotted path (`train.asl.clip`) out of the config JSON ([`sspa_fsio::json_path`]).
pub use sspa_fsio::json_path as lookup;

/// Expands `${a.b}` references in a dependency pattern. A reference to an absent or null value
/// drops the dependency (optional inputs); an array value yields one dependency per element.
pub fn expand_dep(pattern: &str, config: &Value) -> Result<Vec<String>, String> {
    let Some(start) = pattern.find("${") else { return Ok(vec![pattern.to_string()]) };
    let end = pattern[start..].find('}').map(|e| start + e).ok_or_else(|| format!("unclosed `${{` in `{pattern}`"))?;
    let key = &pattern[start + 2..end];
    let values: Vec<String> = match lookup(config, key) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect(),
        Some(other) => vec![other.to_string()],
    };
    let mut out = Vec::new();
    for v in values {
        let replaced = format!("{}{}{}", &pattern[..start], v, &pattern[end + 1..]);
        out.extend(expand_dep(&replaced, config)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expands_config_references() {
        let config =
            json!({"prompt": {"template": "templates/kap/demo.j2"}, "labels": {"file": null}, "x": ["a", "b"]});
        assert_eq!(expand_dep("${prompt.template}", &config).expect("ok"), vec!["templates/kap/demo.j2"]);
        assert!(expand_dep("${labels.file}", &config).expect("ok").is_empty());
        assert!(expand_dep("${nothing.here}", &config).expect("ok").is_empty());
        assert_eq!(expand_dep("d/${x}.txt", &config).expect("ok"), vec!["d/a.txt", "d/b.txt"]);
        assert!(expand_dep("${oops", &config).is_err());
    }

    #[test]
    fn unknown_need_is_named() {
        let text = "version = 1\n[stages.a]\nneeds = [\"b\"]\n";
        let err = PipelineSpec::parse(Path::new("p.toml"), text).expect_err("bad");
        assert!(err.to_string().contains("stage `a` needs `b`, which is not a stage"), "{err}");
    }

    #[test]
    fn metrics_must_be_outputs() {
        let text = "version = 1\n[stages.a]\nouts = [\"m.json\"]\nmetrics = [\"n.json\"]\n";
        let err = PipelineSpec::parse(Path::new("p.toml"), text).expect_err("bad");
        assert!(
            err.to_string().contains("stage `a` declares metrics `n.json`, which is not one of its `outs`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_stage_key_is_rejected() {
        let text = "version = 1\n[stages.a]\noutputs = []\n";
        let err = PipelineSpec::parse(Path::new("p.toml"), text).expect_err("bad");
        assert!(err.to_string().contains("stage `a`: unknown field `outputs`"), "{err}");
    }
}
