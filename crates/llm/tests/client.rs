//! The client alone against the fault-injecting server.

use sspa_config::LlmApi;
use sspa_llm::fault_server::{Fault, FaultServer, answer_for};
use sspa_llm::{ApiKey, GenerationParams, LlmClient, LlmError, LlmSettings, RetryPolicy};
use sspa_prompt::RenderedPrompt;
use std::time::{Duration, Instant};

fn settings(base_url: &str) -> LlmSettings {
    LlmSettings {
        base_url: base_url.to_owned(),
        model: "m".into(),
        api: LlmApi::Completions,
        params: GenerationParams { temperature: 0.0, max_tokens: 32, stop: vec!["\n".into()], seed: 7 },
        timeout: Duration::from_millis(500),
        concurrency: 2,
        requests_per_second: 0.0,
        retry: RetryPolicy {
            max_retries: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
        },
        min_chars: 12,
        api_key: Some(ApiKey::new("sk-abc".into())),
    }
}

fn prompt(label: &str) -> RenderedPrompt {
    RenderedPrompt::Completion(format!("Items.\n{label}:"))
}

#[tokio::test]
async fn sends_the_body_and_key_and_returns_the_text() {
    let server = FaultServer::start().await.expect("server");
    let client = LlmClient::new(settings(&server.base_url())).expect("client");
    let answer = client.generate(&prompt("Coat"), 11).await.expect("answer");
    assert_eq!((answer.text, answer.attempts), (answer_for("Coat"), 1));
    let request = &server.log()[0];
    assert_eq!(request.authorization.as_deref(), Some("Bearer sk-abc"));
    assert_eq!(request.body["prompt"], "Items.\nCoat:");
    assert_eq!(request.body["seed"], 11);
    assert_eq!(request.body["stop"][0], "\n");
    assert_eq!(request.body["max_tokens"], 32);
}

#[tokio::test]
async fn retry_after_is_waited_for() {
    let server = FaultServer::start().await.expect("server");
    server.plan("Coat", [Fault::TooManyRequests("0.3".into())]);
    let client = LlmClient::new(settings(&server.base_url())).expect("client");
    let started = Instant::now();
    let answer = client.generate(&prompt("Coat"), 0).await.expect("answer");
    assert_eq!(answer.attempts, 2);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn too_short_answers_and_timeouts_end_as_failures_with_reasons() {
    let server = FaultServer::start().await.expect("server");
    let mut settings = settings(&server.base_url());
    settings.min_chars = 1000;
    let client = LlmClient::new(settings).expect("client");
    let error = client.generate(&prompt("Coat"), 0).await.expect_err("too short");
    assert!(!error.is_fatal());
    assert!(error.to_string().contains("4 attempt") && error.to_string().contains("too short"), "{error}");
    assert_eq!(server.counts()["Coat"], 4);

    server.plan("Bag", std::iter::repeat_n(Fault::Hang(Duration::from_secs(2)), 4));
    let client = LlmClient::new(self::settings(&server.base_url())).expect("client");
    let error = client.generate(&prompt("Bag"), 0).await.expect_err("timeouts");
    assert!(error.to_string().contains("timed out"), "{error}");
}

#[tokio::test]
async fn refused_and_down_are_fatal() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let client = LlmClient::new(settings(&url)).expect("client");
    let error = client.check_endpoint().await.expect_err("down");
    assert!(matches!(error, LlmError::EndpointDown { .. }) && error.is_fatal());
    assert!(error.to_string().contains(&format!("`{url}`")), "{error}");
    let error = client.generate(&prompt("Coat"), 0).await.expect_err("down");
    assert!(matches!(error, LlmError::EndpointDown { .. }), "{error}");

    let server = FaultServer::start().await.expect("server");
    let client = LlmClient::new(settings(&server.base_url())).expect("client");
    client.check_endpoint().await.expect("something answers");
    server.plan("Coat", [Fault::Status(401)]);
    let error = client.generate(&prompt("Coat"), 0).await.expect_err("refused");
    assert!(matches!(error, LlmError::Refused { status: 401, .. }) && error.is_fatal(), "{error}");
    server.plan("Bag", [Fault::Status(400)]);
    let error = client.generate(&prompt("Bag"), 0).await.expect_err("bad request");
    assert!(!error.is_fatal() && error.to_string().contains("HTTP 400"), "{error}");
    assert_eq!(server.counts()["Bag"], 1, "a 400 is not retried");
    assert!(!error.to_string().contains("sk-abc"));
}
