//! Stage cache keys: a versioned, canonical BLAKE3 hash of everything a stage's output depends on.
//!
//! The key covers the stage kind and its implementation version, only the config values the stage
//! declares in `params`, the content hashes of its `deps`, and the keys of the stages it needs.
//! The components are stored next to each result so the runner can say *why* a key changed.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Bumped when the key derivation itself changes: every cached result becomes a miss.
pub const KEY_FORMAT: u32 = 1;

/// Everything that goes into a key, kept for explaining reruns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyParts {
    pub key_format: u32,
    pub kind: String,
    pub kind_version: u32,
    /// Declared param path → value (canonicalised).
    pub params: BTreeMap<String, Value>,
    /// Dependency path (as written, relative to the project root) → content hash.
    pub deps: BTreeMap<String, String>,
    /// Upstream stage name → its key.
    pub upstream: BTreeMap<String, String>,
}

impl KeyParts {
    /// Hex BLAKE3 of the canonical JSON encoding.
    pub fn key(&self) -> String {
        let canonical = canonical_json(&serde_json::json!({
            "key_format": self.key_format,
            "kind": self.kind,
            "kind_version": self.kind_version,
            "params": self.params,
            "deps": self.deps,
            "upstream": self.upstream,
        }));
        blake3::hash(canonical.as_bytes()).to_hex().to_string()
    }

    /// Human reasons why `self` differs from `previous` (empty when equal).
    pub fn diff(&self, previous: &KeyParts) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.key_format != previous.key_format {
            reasons.push("cache key format changed".to_string());
        }
        if self.kind != previous.kind || self.kind_version != previous.kind_version {
            reasons.push(format!(
                "stage implementation changed ({} v{} -> {} v{})",
                previous.kind, previous.kind_version, self.kind, self.kind_version
            ));
        }
        let mut params = Vec::new();
        let keys: std::collections::BTreeSet<&String> = self.params.keys().chain(previous.params.keys()).collect();
        for key in keys {
            diff_values(key, self.params.get(key), previous.params.get(key), &mut params);
        }
        reasons.extend(params.into_iter().map(|p| format!("param {p} changed")));
        let deps: std::collections::BTreeSet<&String> = self.deps.keys().chain(previous.deps.keys()).collect();
        for dep in deps {
            match (self.deps.get(dep), previous.deps.get(dep)) {
                (Some(a), Some(b)) if a != b => reasons.push(format!("input {dep} changed")),
                (Some(_), None) => reasons.push(format!("input {dep} added")),
                (None, Some(_)) => reasons.push(format!("input {dep} removed")),
                _ => {}
            }
        }
        for (name, key) in &self.upstream {
            if previous.upstream.get(name) != Some(key) {
                reasons.push(format!("upstream {name} reran"));
            }
        }
        for name in previous.upstream.keys() {
            if !self.upstream.contains_key(name) {
                reasons.push(format!("upstream {name} removed"));
            }
        }
        reasons
    }
}

/// Leaf-level differences between two JSON values, as dotted paths.
fn diff_values(path: &str, a: Option<&Value>, b: Option<&Value>, out: &mut Vec<String>) {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                diff_values(&format!("{path}.{k}"), x.get(k), y.get(k), out);
            }
        }
        (a, b) if a != b => out.push(path.to_string()),
        _ => {}
    }
}

/// Dotted path → leaf value of a JSON tree (`{"train": {"lr": 1}}` → `train.lr = 1`). Arrays and
/// empty objects are leaves: they are compared and replaced whole.
pub fn leaves(value: &Value) -> BTreeMap<String, Value> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, inner) in map {
                    let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                    walk(&path, inner, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", value, &mut out);
    out
}

/// JSON text with object keys sorted at every level and no insignificant whitespace.
pub fn canonical_json(value: &Value) -> String {
    fn sort(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let sorted: BTreeMap<&String, Value> = map.iter().map(|(k, v)| (k, sort(v))).collect();
                let mut out = serde_json::Map::new();
                for (k, v) in sorted {
                    out.insert(k.clone(), v);
                }
                Value::Object(out)
            }
            Value::Array(items) => Value::Array(items.iter().map(sort).collect()),
            other => other.clone(),
        }
    }
    sort(value).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parts() -> KeyParts {
        KeyParts {
            key_format: KEY_FORMAT,
            kind: "train".into(),
            kind_version: 1,
            params: BTreeMap::from([("train".to_string(), json!({"lr": 0.1, "epochs": 3}))]),
            deps: BTreeMap::from([("data_manifest/x.toml".to_string(), "abc".to_string())]),
            upstream: BTreeMap::from([("shard".to_string(), "k1".to_string())]),
        }
    }

    #[test]
    fn key_ignores_object_key_order() {
        let mut a = parts();
        let mut b = parts();
        a.params.insert("m".into(), json!({"x": 1, "y": 2}));
        b.params.insert("m".into(), json!({"y": 2, "x": 1}));
        assert_eq!(a.key(), b.key());
    }

    #[test]
    fn diff_names_each_change() {
        let old = parts();
        let mut new = parts();
        new.params.insert("train".into(), json!({"lr": 0.2, "epochs": 3}));
        new.deps.insert("data_manifest/x.toml".into(), "def".into());
        new.upstream.insert("shard".into(), "k2".into());
        new.kind_version = 2;
        assert_ne!(new.key(), old.key());
        assert_eq!(
            new.diff(&old),
            vec![
                "stage implementation changed (train v1 -> train v2)",
                "param train.lr changed",
                "input data_manifest/x.toml changed",
                "upstream shard reran",
            ]
        );
        assert!(old.diff(&old).is_empty());
    }
}
