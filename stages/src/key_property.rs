//! The cache-key property over the shipped demo config: for every stage, changing any config leaf
//! its params type reads changes its key, and changing any other leaf does not.

use serde_json::Value;
use sspa_dag::key::{KEY_FORMAT, KeyParts, leaves};
use sspa_dag::{PipelineSpec, StageDef};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn demo() -> Value {
    let path = repository().join("domains/demo.toml");
    let checks = sspa_config::Checks { libtorch: true, external: None };
    sspa_config::load(&path, &checks).unwrap_or_else(|e| panic!("{e}")).json().clone()
}

fn pipeline() -> PipelineSpec {
    PipelineSpec::load(&repository().join("pipeline/pipeline.toml")).expect("pipeline.toml")
}

/// The key of `def` over `config`, everything but the params held fixed.
fn key(config: &Value, def: &StageDef) -> String {
    let (params, _) = sspa_dag::runner::stage_params(config, def).expect("declared params exist");
    KeyParts {
        key_format: KEY_FORMAT,
        kind: def.kind.clone(),
        kind_version: 1,
        params,
        deps: BTreeMap::new(),
        upstream: BTreeMap::new(),
    }
    .key()
}

/// `value` with its leaf at `path` changed (to something of the same JSON kind where there is one).
fn mutate(value: &Value, path: &str) -> Value {
    let mut out = value.clone();
    let mut at = &mut out;
    for segment in path.split('.') {
        at = at.get_mut(segment).expect("the leaf exists");
    }
    *at = match at.take() {
        Value::Bool(b) => Value::Bool(!b),
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => Value::from(u + 1),
            (None, Some(f)) => Value::from(f * 2.0 + 1.0),
            _ => Value::from(1),
        },
        Value::String(s) => Value::String(format!("{s}-changed")),
        Value::Array(mut items) => {
            items.push(Value::String("added".into()));
            Value::Array(items)
        }
        Value::Null => Value::String("set".into()),
        Value::Object(_) => Value::String("replaced".into()),
    };
    out
}

/// Whether the stage declares `leaf` (itself or a section above it).
fn declares(def: &StageDef, leaf: &str) -> bool {
    def.spec.params.iter().any(|param| leaf == param || leaf.starts_with(&format!("{param}.")))
}

#[test]
fn a_stage_key_covers_exactly_the_leaves_its_params_type_reads() {
    let config = demo();
    let spec = pipeline();
    let registry = crate::registry();
    let all = leaves(&config);
    assert!(all.len() > 60, "the demo config has {} leaves", all.len());
    for def in &spec.stages {
        let stage = registry.get(&def.kind).unwrap_or_else(|| panic!("no stage kind `{}`", def.kind));
        // The type reads exactly the declared values (leaf for leaf) ...
        let (_, nested) = sspa_dag::runner::stage_params(&config, def).expect("params");
        stage.check_params(&nested).unwrap_or_else(|e| panic!("stage `{}`: {e}", def.name));
        let read = leaves(&nested);
        let base = key(&config, def);
        // ... so every leaf of the type, and no other config leaf, moves the key.
        for leaf in all.keys() {
            let changed = key(&mutate(&config, leaf), def) != base;
            assert_eq!(
                changed,
                declares(def, leaf),
                "stage `{}`, leaf `{leaf}`: key {} although the stage {} it",
                def.name,
                if changed { "changed" } else { "did not change" },
                if declares(def, leaf) { "reads" } else { "does not read" }
            );
            assert_eq!(read.contains_key(leaf), declares(def, leaf), "stage `{}`, leaf `{leaf}`", def.name);
        }
    }
}

#[test]
fn a_pipeline_that_disagrees_with_a_params_type_is_refused() {
    let config = demo();
    let registry = crate::registry();
    let text = std::fs::read_to_string(repository().join("pipeline/pipeline.toml")).expect("read");
    let narrowed = text.replace(
        "params = [\"data\", \"model.preset\", \"model.image_size\"]",
        "params = [\"data\", \"model.preset\"]",
    );
    assert_ne!(narrowed, text, "the shard stage's params line");
    let spec = PipelineSpec::parse(&repository().join("pipeline/pipeline.toml"), &narrowed).expect("parses");
    let shard = spec.stage("shard").expect("shard");
    let (_, nested) = sspa_dag::runner::stage_params(&config, shard).expect("params");
    let error = registry.get("shard").expect("shard kind").check_params(&nested).expect_err("disagrees");
    assert!(error.contains("`ShardParams`") && error.contains("model.image_size"), "{error}");
}
