//! The shipped chat-style domains (`api = "chat"`) described through `/v1/chat/completions` by a
//! real instruct model with a chat template: SmolLM2-135M-Instruct (`scripts/llm-server start
//! --model smollm2`).
//!
//! Needs `SSPA_TEST_CHAT_LLM_URL` (e.g. `http://127.0.0.1:8089/v1`). Without it the test fails
//! under CI (`CI` set) and is skipped, with a note, elsewhere.

use sspa_config::{LlmApi, LlmSection};
use sspa_describe::{DescribeRequest, LabelList, describe, read_parquet};
use std::path::Path;

fn chat_server() -> Option<String> {
    match std::env::var("SSPA_TEST_CHAT_LLM_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => panic!(
            "SSPA_TEST_CHAT_LLM_URL is not set under CI: run `scripts/llm-server install && scripts/llm-server start --model smollm2` and export it"
        ),
        _ => {
            eprintln!(
                "skipped: set SSPA_TEST_CHAT_LLM_URL (see `scripts/llm-server start --model smollm2`) to run against the chat model"
            );
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shipped_chat_domains_render_and_are_described_through_the_chat_route() {
    let Some(url) = chat_server() else { return };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cases: [(&str, [&str; 3]); 3] = [
        ("natural", ["person", "bicycle", "dog"]),
        ("pedestrian", ["Backpack", "Hat", "LongCoat"]),
        ("remote_sensing", ["airplane", "river", "farmland"]),
    ];
    for (domain, labels) in cases {
        // The shipped domains train on CUDA: validate them as a `--features tch` build would.
        let checks = sspa_config::Checks { libtorch: true, external: None };
        let loaded = sspa_config::load(&root.join(format!("domains/{domain}.toml")), &checks)
            .unwrap_or_else(|errors| panic!("domains/{domain}.toml: {errors}"));
        let config = loaded.config;
        assert_eq!(config.llm.api, LlmApi::Chat, "{domain} is a chat-style domain");
        let llm = LlmSection {
            base_url: url.clone(),
            base_url_env: None,
            api_key_env: None,
            model: "smollm2-135m-instruct".into(),
            timeout_s: 120.0,
            ..config.llm.clone()
        };
        let names: Vec<String> = labels.iter().map(|s| (*s).to_owned()).collect();
        let request = DescribeRequest::new(
            config.domain.clone(),
            llm,
            config.prompt.clone(),
            &root,
            LabelList::from_names(domain, &names).expect("labels"),
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let (state, out) = (dir.path().join("state"), dir.path().join("descriptions.parquet"));
        let summary = describe(&request, &state, &out, &|_| {}).await.expect("describe");
        assert_eq!((summary.new, summary.failed), (3, 0), "{domain}: {:#?}", summary.failures);
        assert_eq!(summary.streamed, Some(true), "llama.cpp streams the chat route");
        let stats = summary.concurrency.expect("asked");
        assert!(stats.server_slots.is_some_and(|slots| stats.highest <= slots), "{stats:?}");
        assert!(summary.prompt_tokens > 0 && summary.completion_tokens > 0, "{summary:?}");
        let rows = read_parquet(&out).expect("output");
        assert_eq!(rows.iter().map(|r| r.label.as_str()).collect::<Vec<_>>(), labels);
        for row in &rows {
            eprintln!("{domain} / {}: {}", row.label, row.description);
            let suffix = format!(" A photo of a {}.", row.label);
            assert!(row.description.ends_with(&suffix), "{}", row.description);
            assert!(row.description.len() >= suffix.len() + 12, "{}", row.description);
            assert!(row.completion_tokens.is_some_and(|tokens| tokens > 0));
        }
    }
}
