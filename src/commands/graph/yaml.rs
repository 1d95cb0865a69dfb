//! Block-style YAML from a JSON value, for manifests people read: keys plain, every string
//! double-quoted as JSON writes it (a JSON string is a valid YAML double-quoted scalar), so no
//! value is ever read back as another type.

use serde_json::Value;

pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    block(value, 0, &mut out);
    out
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => serde_json::to_string(text).unwrap_or_default(),
        Value::Array(items) if items.is_empty() => "[]".into(),
        Value::Object(map) if map.is_empty() => "{}".into(),
        other => other.to_string(),
    }
}

fn is_block(value: &Value) -> bool {
    matches!(value, Value::Array(a) if !a.is_empty()) || matches!(value, Value::Object(m) if !m.is_empty())
}

fn key(text: &str) -> String {
    let plain = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if plain { text.to_string() } else { serde_json::to_string(text).unwrap_or_default() }
}

/// Writes `value` (a map or a list) at `indent`.
fn block(value: &Value, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if is_block(v) {
                    out.push_str(&format!("{pad}{}:\n", key(k)));
                    // Lists sit at their key's indentation (as kubectl writes them).
                    block(v, if v.is_array() { indent } else { indent + 2 }, out);
                } else {
                    out.push_str(&format!("{pad}{}: {}\n", key(k), scalar(v)));
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                if is_block(item) {
                    // `- ` then the item's first line; the rest indented under it.
                    let mut inner = String::new();
                    block(item, indent + 2, &mut inner);
                    let trimmed = inner.get(indent + 2..).unwrap_or_default();
                    out.push_str(&format!("{pad}- {trimmed}"));
                } else {
                    out.push_str(&format!("{pad}- {}\n", scalar(item)));
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_maps_and_lists_in_block_style() {
        let value = serde_json::json!({
            "a": {"b": "x: y", "n": 3, "t": true, "empty": []},
            "list": [{"name": "one", "deps": ["p", "q"]}, "two"],
            "weird key": null
        });
        assert_eq!(
            to_yaml(&value),
            "a:\n  b: \"x: y\"\n  n: 3\n  t: true\n  empty: []\nlist:\n- name: \"one\"\n  deps:\n  - \"p\"\n  - \"q\"\n- \"two\"\n\"weird key\": null\n"
        );
    }
}
