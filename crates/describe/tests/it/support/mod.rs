//! Shared test helpers: a project directory with a tiny KAP template, and requests against it.
#![allow(dead_code)]

use sspa_config::{DomainSection, LlmApi, LlmSection, PromptSection};
use sspa_describe::{DescribeRequest, LabelList};
use sspa_llm::RetryPolicy;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const TEMPLATE: &str = r#"{%- set examples = [{"label": "Bag", "description": "A bag is a boxy item with handles."}] -%}
{%- macro system() %}Describe {{ domain }} items.{% endmacro -%}
{%- macro user(label) %}Describe: {{ label }}{% endmacro -%}
{{ domain_description }}
{% for e in examples %}{{ e.label }}: {{ e.description }}
{% endfor %}{{ label }}:
"#;

/// Writes `templates/kap/test.j2` under `root`.
pub fn project(root: &Path) -> PathBuf {
    let dir = root.join("templates/kap");
    std::fs::create_dir_all(&dir).expect("template dir");
    std::fs::write(dir.join("test.j2"), TEMPLATE).expect("template");
    root.to_path_buf()
}

pub fn labels(names: &[&str]) -> LabelList {
    let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
    LabelList::from_names("test labels", &names).expect("valid labels")
}

pub fn numbered(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("L{i}")).collect()
}

pub fn llm(base_url: &str) -> LlmSection {
    LlmSection {
        base_url: base_url.to_owned(),
        base_url_env: None,
        model: "fake-model".into(),
        api: LlmApi::Completions,
        timeout_s: 0.8,
        concurrency: 4,
        max_retries: 4,
        min_chars: 12,
        ..LlmSection::default()
    }
}

pub fn request(root: &Path, base_url: &str, labels: LabelList) -> DescribeRequest {
    let mut request = DescribeRequest::new(
        DomainSection { name: "test".into(), description: "Test items.".into() },
        llm(base_url),
        PromptSection { template: "templates/kap/test.j2".into(), max_chars: 300, max_sentences: 2 },
        root,
        labels,
    );
    request.retry = Some(fast_retry());
    request
}

pub fn fast_retry() -> RetryPolicy {
    RetryPolicy { max_retries: 4, base_delay: Duration::from_millis(10), max_delay: Duration::from_millis(100) }
}

pub fn no_progress(_: sspa_describe::DescribeProgress) {}

/// Labels of the rows in a Parquet file, in row order.
pub fn labels_in(path: &Path) -> Vec<String> {
    sspa_describe::read_parquet(path).expect("readable parquet").into_iter().map(|row| row.label).collect()
}

/// Labels answered durably so far: the lines of the cache's segment files.
pub fn segment_labels(state: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(state.join("segments")) else { return Vec::new() };
    let mut labels = Vec::new();
    for entry in entries.flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for line in text.lines() {
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(line)
                && let Some(label) = value["label"].as_str()
            {
                labels.push(label.to_owned());
            }
        }
    }
    labels
}
