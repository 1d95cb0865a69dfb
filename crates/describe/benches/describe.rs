//! Describe-stage benchmark. `cargo bench -p sspa-describe --bench describe`
//!
//! 1. labels/s at concurrency 1, 2, 4 against the local model (`SSPA_BENCH_LLM_URL`, falling back
//!    to `SSPA_TEST_LLM_URL`; skipped when neither is set);
//! 2. per-request time of this client vs a bare loop of `curl` with the same body (interleaved,
//!    medians), against the local model and against an instant in-process server (pure overhead);
//! 3. a fully cached re-run of 80 labels (target < 200 ms).

use sspa_config::{DomainSection, LlmApi, LlmSection, PromptSection};
use sspa_describe::{DescribeRequest, LabelList, describe};
use sspa_llm::fault_server::FaultServer;
use sspa_llm::{GenerationParams, LlmClient, LlmSettings, RetryPolicy};
use sspa_prompt::{KapTemplate, PromptContext, RenderedPrompt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LABELS: [&str; 8] = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker"];

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn request(url: &str, labels: &[String], concurrency: u32) -> DescribeRequest {
    DescribeRequest::new(
        DomainSection {
            name: "demo".into(),
            description: "Fashion-MNIST: small greyscale photos of clothing items and accessories, four per image in a 2x2 mosaic.".into(),
        },
        LlmSection {
            base_url: url.to_owned(),
            base_url_env: None,
            model: "gemma-3-270m".into(),
            api: LlmApi::Completions,
            timeout_s: 300.0,
            concurrency,
            ..LlmSection::default()
        },
        PromptSection { template: "templates/kap/demo.j2".into(), max_chars: 300, max_sentences: 2 },
        &project_root(),
        LabelList::from_names("bench", labels).expect("labels"),
    )
}

fn settings(url: &str, max_tokens: u32) -> LlmSettings {
    LlmSettings {
        base_url: url.to_owned(),
        model: "gemma-3-270m".into(),
        api: LlmApi::Completions,
        params: GenerationParams { temperature: 0.0, max_tokens, stop: vec!["\n".into()], seed: 0 },
        timeout: Duration::from_secs(300),
        stream: true,
        idle_timeout: Duration::from_secs(20),
        concurrency: 1,
        probe_concurrency: None,
        requests_per_second: 0.0,
        retry: RetryPolicy::default(),
        min_chars: 1,
        api_key: None,
    }
}

/// The demo template's completion prompt for one label.
fn demo_prompt(label: &str) -> String {
    let template = KapTemplate::load(&project_root().join("templates/kap/demo.j2")).expect("template");
    let context = PromptContext { domain: "demo".into(), domain_description: "Fashion-MNIST items.".into() };
    template.render(&context, label, LlmApi::Completions).expect("renders").canonical_text()
}

/// Median seconds per request: this client, then `curl`, same body, sequential. The two are
/// interleaved (one request each, in turn) so that other load on the machine hits both alike.
async fn client_vs_curl(url: &str, prompt: &str, max_tokens: u32, count: u32) -> (f64, f64) {
    // This times requests, not answers: one cut off by the small `max_tokens` is what curl gets too.
    let client = LlmClient::new(settings(url, max_tokens)).expect("client").accept_cut_off(|_| true);
    let prompt = RenderedPrompt::Completion(prompt.to_owned());
    let body = serde_json::json!({
        "model": "gemma-3-270m", "temperature": 0.0, "max_tokens": max_tokens, "seed": 0, "n": 1,
        "stream": false, "stop": ["\n"], "prompt": prompt.canonical_text(),
    })
    .to_string();
    let endpoint = format!("{url}/completions");
    let curl = || {
        let (endpoint, body) = (endpoint.clone(), body.clone());
        tokio::task::spawn_blocking(move || {
            Command::new("curl")
                .args(["-sS", "-f", "-o", "/dev/null", "-H", "Content-Type: application/json", "-d", &body, &endpoint])
                .stdout(Stdio::null())
                .status()
        })
    };
    client.generate(&prompt, 0).await.expect("warm-up");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for _ in 0..count {
        let started = Instant::now();
        client.generate(&prompt, 0).await.expect("answer");
        ours.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let status = curl().await.expect("join").expect("curl runs");
        theirs.push(started.elapsed().as_secs_f64());
        assert!(status.success(), "curl failed");
    }
    (median(ours), median(theirs))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// The 1-minute load average: other work on the machine skews the local-model numbers.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let labels: Vec<String> = LABELS.iter().map(|s| (*s).to_owned()).collect();
    let url = std::env::var("SSPA_BENCH_LLM_URL").or_else(|_| std::env::var("SSPA_TEST_LLM_URL")).ok();
    match &url {
        None => println!("local model: skipped (set SSPA_BENCH_LLM_URL or SSPA_TEST_LLM_URL)"),
        Some(url) => {
            for concurrency in [1u32, 2, 4] {
                let dir = tempfile::tempdir().expect("tempdir");
                let request = request(url, &labels, concurrency);
                let started = Instant::now();
                let summary = describe(&request, &dir.path().join("state"), &dir.path().join("out.parquet"), &|_| {})
                    .await
                    .expect("describe");
                let seconds = started.elapsed().as_secs_f64();
                assert_eq!(summary.new, labels.len(), "{:?}", summary.failures);
                println!(
                    "local model, concurrency {concurrency} (load average {}): {} labels in {seconds:.2} s = {:.2} labels/s",
                    load_average(),
                    labels.len(),
                    labels.len() as f64 / seconds
                );
            }
            let (ours, curl) = client_vs_curl(url, &demo_prompt("Coat"), 16, 10).await;
            println!(
                "local model, 10 sequential requests (max_tokens 16): median client {:.1} ms, curl {:.1} ms per request, ratio {:.3}",
                ours * 1e3,
                curl * 1e3,
                ours / curl
            );
        }
    }

    let server = FaultServer::start().await.expect("server");
    let (ours, curl) = client_vs_curl(&server.base_url(), &demo_prompt("Coat"), 16, 50).await;
    println!(
        "instant server, 50 sequential requests: median client {:.2} ms, curl {:.2} ms per request, ratio {:.3} (client overhead {:.2} ms)",
        ours * 1e3,
        curl * 1e3,
        ours / curl,
        ours * 1e3
    );

    let many: Vec<String> = (0..80).map(|i| format!("label {i}")).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let (state, out) = (dir.path().join("state"), dir.path().join("out.parquet"));
    let request = request(&server.base_url(), &many, 4);
    let first = describe(&request, &state, &out, &|_| {}).await.expect("fill the cache");
    assert_eq!(first.new, 80);
    let mut times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let summary = describe(&request, &state, &out, &|_| {}).await.expect("cached run");
        times.push(started.elapsed().as_secs_f64() * 1e3);
        assert_eq!((summary.cached, summary.requests), (80, 0));
    }
    times.sort_by(f64::total_cmp);
    println!(
        "fully cached re-run of 80 labels: median {:.1} ms, max {:.1} ms (target < 200 ms)",
        times[times.len() / 2],
        times[times.len() - 1]
    );
}
