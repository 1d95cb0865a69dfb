use super::*;
use crate::labels::LabelList;
use sspa_config::DomainSection;
use sspa_llm::fault_server::FaultServer;
use std::sync::Mutex;
use std::time::Duration;

/// Labels whose post-processing panics in this test binary.
static PANIC_ON: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub(super) fn panic_hook(label: &str) {
    let panics = PANIC_ON.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).iter().any(|l| l == label);
    if panics {
        panic!("injected panic while post-processing `{label}`");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_request_task_is_a_failure_with_its_reason_and_the_rest_are_described() {
    PANIC_ON.lock().expect("hook").push("PanicLabel".into());
    let server = FaultServer::start().await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("templates")).expect("dir");
    std::fs::write(dir.path().join("templates/t.j2"), "Items.\n{{ label }}:").expect("template");
    let names: Vec<String> = ["A1", "PanicLabel", "B2", "C3"].iter().map(|s| (*s).to_owned()).collect();
    let llm = LlmSection {
        base_url: server.base_url(),
        base_url_env: None,
        model: "fake-model".into(),
        timeout_s: 5.0,
        ..LlmSection::default()
    };
    let mut request = DescribeRequest::new(
        DomainSection { name: "test".into(), description: "Test items.".into() },
        llm,
        PromptSection { template: "templates/t.j2".into(), max_chars: 300, max_sentences: 2 },
        dir.path(),
        LabelList::from_names("labels", &names).expect("labels"),
    );
    request.retry =
        Some(RetryPolicy { max_retries: 1, base_delay: Duration::from_millis(5), max_delay: Duration::from_millis(5) });
    let out = dir.path().join("out.parquet");
    let summary = describe(&request, &dir.path().join("state"), &out, &|_| {}).await.expect("run completes");
    assert_eq!((summary.new, summary.failed), (3, 1), "{summary:?}");
    assert_eq!(summary.failures[0].label, "PanicLabel");
    assert!(summary.failures[0].reason.contains("panicked: injected panic"), "{}", summary.failures[0].reason);
    let rows = crate::read_parquet(&out).expect("output");
    assert_eq!(rows.iter().map(|r| r.label.as_str()).collect::<Vec<_>>(), ["A1", "B2", "C3"]);
    // Usage from the (streamed) answers is counted per row and in total.
    assert!(rows.iter().all(|r| r.prompt_tokens.is_some() && r.completion_tokens.is_some()));
    assert_eq!(summary.completion_tokens, rows.iter().filter_map(|r| r.completion_tokens).sum::<u64>());
    assert!(summary.completion_tokens > 0 && summary.answers_without_usage == 0);
    assert_eq!(summary.total_prompt_tokens, summary.prompt_tokens);
    assert_eq!(summary.streamed, Some(true));
    assert_eq!(summary.concurrency.map(|c| (c.start, c.decreases)), Some((2, 0)), "no overload, no decrease");
}
