//! The client alone against the fault-injecting server.

use sspa_config::LlmApi;
use sspa_llm::fault_server::{Fault, FaultServer, answer_for, cut_answer};
use sspa_llm::{ApiKey, GenerationParams, LlmClient, LlmError, LlmSettings, RetryPolicy, Usage};
use sspa_prompt::{ChatMessage, RenderedPrompt, Role};
use std::time::{Duration, Instant};

fn settings(base_url: &str) -> LlmSettings {
    LlmSettings {
        base_url: base_url.to_owned(),
        model: "m".into(),
        api: LlmApi::Completions,
        params: GenerationParams { temperature: 0.0, max_tokens: 32, stop: vec!["\n".into()], seed: 7 },
        timeout: Duration::from_millis(500),
        stream: true,
        idle_timeout: Duration::from_secs(20),
        concurrency: 2,
        probe_concurrency: None,
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

fn streaming_settings(base_url: &str) -> LlmSettings {
    let mut settings = settings(base_url);
    settings.timeout = Duration::from_secs(10);
    settings.idle_timeout = Duration::from_millis(300);
    settings
}

#[tokio::test]
async fn streams_both_routes_and_reads_usage() {
    let server = FaultServer::start().await.expect("server");
    server.set_token_pause(Duration::from_millis(5));
    let client = LlmClient::new(streaming_settings(&server.base_url())).expect("client");
    let answer = client.generate(&prompt("Coat"), 0).await.expect("completion");
    assert_eq!((answer.text.as_str(), answer.attempts), (answer_for("Coat").as_str(), 1));
    let words = answer_for("Coat").split_whitespace().count() as u64;
    assert_eq!(answer.usage, Some(Usage { prompt_tokens: 2, completion_tokens: words }));
    let chat = RenderedPrompt::Chat(vec![ChatMessage { role: Role::User, content: "Describe: Bag".into() }]);
    let answer = client.generate(&chat, 0).await.expect("chat");
    assert_eq!(answer.text, answer_for("Bag"));
    let log = server.log();
    assert!(log.iter().all(|r| r.body["stream"] == true), "every request streams");
    assert_eq!(log[1].path, "/v1/chat/completions");
    assert!(client.streaming());
}

#[tokio::test]
async fn a_stalled_stream_hits_the_idle_timeout_is_closed_and_retried() {
    let server = FaultServer::start().await.expect("server");
    server.plan("Coat", [Fault::StallStream(Duration::from_secs(5))]);
    let client = LlmClient::new(streaming_settings(&server.base_url())).expect("client");
    let started = Instant::now();
    let answer = client.generate(&prompt("Coat"), 0).await.expect("answer");
    assert_eq!((answer.text, answer.attempts), (answer_for("Coat"), 2));
    // The idle timeout (300 ms), not the whole-answer timeout (10 s) or the stall (5 s), ended it.
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    // The client closed the stalled connection: the server saw it go before its answer ended.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(server.abandoned(), 1);
}

#[tokio::test]
async fn a_slow_start_lowers_the_limit_but_keeps_the_request() {
    let server = FaultServer::start().await.expect("server");
    // The answer starts after 0.7 s, past the 0.3 s idle timeout: a queueing server.
    server.set_answer_delay(Duration::from_millis(700));
    let mut settings = streaming_settings(&server.base_url());
    settings.concurrency = 4;
    let client = LlmClient::new(settings).expect("client");
    let answer = client.generate(&prompt("Coat"), 0).await.expect("answer");
    assert_eq!((answer.text, answer.attempts), (answer_for("Coat"), 1), "not closed and sent again");
    assert_eq!(server.counts().get("Coat"), Some(&1));
    assert_eq!(server.abandoned(), 0);
    let stats = client.concurrency();
    assert_eq!((stats.decreases, stats.lowest), (1, 2), "the wait counted as congestion: {stats:?}");
}

#[tokio::test]
async fn a_stream_cut_mid_token_is_retried_and_the_whole_timeout_still_holds() {
    let server = FaultServer::start().await.expect("server");
    server.plan("Coat", [Fault::CutStream, Fault::CutStream]);
    let client = LlmClient::new(streaming_settings(&server.base_url())).expect("client");
    let answer = client.generate(&prompt("Coat"), 0).await.expect("answer");
    assert_eq!((answer.text, answer.attempts), (answer_for("Coat"), 3));

    // Tokens that keep coming, but too slowly for the whole answer's timeout.
    server.plan("Bag", std::iter::repeat_n(Fault::Trickle(Duration::from_millis(100)), 4));
    let mut settings = streaming_settings(&server.base_url());
    settings.timeout = Duration::from_millis(600);
    let client = LlmClient::new(settings).expect("client");
    let error = client.generate(&prompt("Bag"), 0).await.expect_err("too slow");
    assert!(error.to_string().contains("timed out"), "{error}");
}

#[tokio::test]
async fn a_server_without_streaming_gets_plain_requests_after_the_first_refusal() {
    let server = FaultServer::start().await.expect("server");
    server.disable_streaming();
    let client = LlmClient::new(streaming_settings(&server.base_url())).expect("client");
    for label in ["Coat", "Bag", "Hat"] {
        let answer = client.generate(&prompt(label), 0).await.expect("answer");
        assert_eq!((answer.text, answer.attempts), (answer_for(label), 1), "the refusal is not an attempt");
        assert!(answer.usage.is_some(), "usage from the plain JSON answer");
    }
    assert!(!client.streaming());
    let streamed: Vec<bool> = server.log().iter().map(|r| r.body["stream"] == true).collect();
    assert_eq!(streamed, [true, false, false, false], "one refused streaming request, then plain ones");
}

#[tokio::test]
async fn adaptive_concurrency_settles_at_the_server_queue_size() {
    let server = FaultServer::start().await.expect("server");
    server.set_queue(2);
    server.set_token_pause(Duration::from_millis(12));
    let mut settings = streaming_settings(&server.base_url());
    settings.concurrency = 8;
    settings.idle_timeout = Duration::from_millis(80);
    settings.retry.max_retries = 8;
    let client = std::sync::Arc::new(LlmClient::new(settings).expect("client"));
    client.check_endpoint().await.expect("up");
    assert_eq!(client.concurrency().server_slots, None, "no /props: no cap");
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..40 {
        let client = client.clone();
        tasks.spawn(async move { client.generate(&prompt(&format!("L{index}")), 0).await });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task").expect("every label answered");
    }
    let stats = client.concurrency();
    assert_eq!(stats.current, 2, "{stats:?}");
    assert!(stats.decreases >= 2 && stats.start == 8, "{stats:?}");
    assert!(server.most_serving() <= 2);
}

#[tokio::test]
async fn advertised_slots_cap_the_limit() {
    let server = FaultServer::start().await.expect("server");
    server.advertise_slots(3);
    let mut settings = streaming_settings(&server.base_url());
    settings.concurrency = 8;
    let client = std::sync::Arc::new(LlmClient::new(settings).expect("client"));
    client.check_endpoint().await.expect("up");
    server.set_answer_delay(Duration::from_millis(50));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..24 {
        let client = client.clone();
        tasks.spawn(async move { client.generate(&prompt(&format!("L{index}")), 0).await });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("task").expect("answered");
    }
    let stats = client.concurrency();
    assert_eq!((stats.server_slots, stats.start, stats.current, stats.highest), (Some(3), 3, 3, 3), "{stats:?}");
    assert_eq!(server.most_serving(), 3);
}

/// Runs `count` prompts `L0..` at once through one client and waits for every answer.
async fn ask_all(client: &std::sync::Arc<LlmClient>, count: usize) -> Vec<Result<sspa_llm::Generation, LlmError>> {
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..count {
        let client = client.clone();
        tasks.spawn(async move { client.generate(&prompt(&format!("L{index}")), 0).await });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.expect("task"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_is_the_ceiling_when_the_server_advertises_no_slots() {
    // vLLM, TGI and hosted endpoints have no llama.cpp `/props`: nothing caps the limit but
    // `llm.concurrency`, and a window of successes must not raise it past that.
    let server = FaultServer::start().await.expect("server");
    server.set_answer_delay(Duration::from_millis(5));
    let mut settings = streaming_settings(&server.base_url());
    settings.concurrency = 4;
    let client = std::sync::Arc::new(LlmClient::new(settings).expect("client"));
    client.check_endpoint().await.expect("up");
    for result in ask_all(&client, 120).await {
        result.expect("answered");
    }
    let stats = client.concurrency();
    eprintln!("concurrency = 4, no /props, 120 prompts: {stats:?}, most in flight {}", server.most_serving());
    assert_eq!(stats.server_slots, None);
    assert_eq!((stats.start, stats.current, stats.highest), (4, 4, 4), "{stats:?}");
    assert!(server.most_serving() <= 4, "{} requests in flight at once", server.most_serving());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_concurrency_goes_above_only_when_the_server_advertises_no_slots() {
    for advertised in [None, Some(8)] {
        let server = FaultServer::start().await.expect("server");
        if let Some(slots) = advertised {
            server.advertise_slots(slots);
        }
        server.set_answer_delay(Duration::from_millis(5));
        let mut settings = streaming_settings(&server.base_url());
        settings.concurrency = 2;
        settings.probe_concurrency = Some(6);
        let client = std::sync::Arc::new(LlmClient::new(settings).expect("client"));
        client.check_endpoint().await.expect("up");
        for result in ask_all(&client, 120).await {
            result.expect("answered");
        }
        let stats = client.concurrency();
        match advertised {
            // 2 + 3 + 4 + 5 = 14 successes reach 6; 120 leave room for a halving under load.
            None => {
                assert_eq!((stats.start, stats.ceiling), (2, 6), "{stats:?}");
                assert!(stats.highest > 2 && stats.highest <= 6, "{stats:?}");
                assert!(server.most_serving() <= 6, "{}", server.most_serving());
            }
            // The server says: `concurrency` is the ceiling again, even below its slots.
            Some(_) => {
                assert_eq!((stats.start, stats.ceiling, stats.highest), (2, 2, 2), "{stats:?}");
                assert!(server.most_serving() <= 2, "{}", server.most_serving());
            }
        }
    }
    let mut settings = settings("http://127.0.0.1:9/v1");
    settings.concurrency = 4;
    settings.probe_concurrency = Some(3);
    let error = LlmClient::new(settings).expect_err("below concurrency");
    assert!(error.to_string().contains("`probe_concurrency`") && error.to_string().contains("(4)"), "{error}");
}

#[tokio::test]
async fn a_cut_off_answer_is_retried_then_fails_naming_max_tokens() {
    for stream in [true, false] {
        let server = FaultServer::start().await.expect("server");
        let mut settings = streaming_settings(&server.base_url());
        settings.stream = stream;
        let client = LlmClient::new(settings).expect("client");
        // Cut off once, then a whole answer: the whole one is returned.
        server.plan("Coat", [Fault::CutOff(11)]);
        let answer = client.generate(&prompt("Coat"), 0).await.expect("answer");
        assert_eq!((answer.text, answer.attempts), (answer_for("Coat"), 2), "stream {stream}");
        // Cut off every time: a failure that says why and what to change.
        server.plan("Bag", std::iter::repeat_n(Fault::CutOff(11), 4));
        let error = client.generate(&prompt("Bag"), 0).await.expect_err("cut off every time");
        let message = error.to_string();
        assert!(!error.is_fatal(), "{message}");
        assert!(message.contains("4 attempt") && message.contains("cut off"), "stream {stream}: {message}");
        assert!(message.contains("`llm.max_tokens` = 32"), "stream {stream}: {message}");
        assert_eq!(server.counts()["Bag"], 4, "stream {stream}");
        // A caller's rule may use a cut-off answer as it is; what it refuses is retried.
        let mut settings = streaming_settings(&server.base_url());
        settings.stream = stream;
        let client = LlmClient::new(settings).expect("client").accept_cut_off(|text| text.contains("parts."));
        server.plan("Hat", [Fault::CutOff(11), Fault::CutOff(5)]);
        let answer = client.generate(&prompt("Hat"), 0).await.expect("accepted");
        assert_eq!((answer.text.as_str(), answer.attempts), (cut_answer("Hat", 11).as_str(), 1), "stream {stream}");
        assert_eq!(answer.finish_reason.as_deref(), Some("length"));
        let answer = client.generate(&prompt("Hat"), 0).await.expect("refused by the rule, then whole");
        assert_eq!((answer.text, answer.attempts), (answer_for("Hat"), 2), "stream {stream}");
        assert_eq!(answer.finish_reason.as_deref(), Some("stop"));
    }
}

#[tokio::test]
async fn endless_and_oversized_bodies_fail_fast_at_the_byte_limit() {
    // max_tokens = 32: the limit is the 1 MiB floor.
    for stream in [true, false] {
        for fault in [Fault::Endless, Fault::HugeBody(3 << 20)] {
            let server = FaultServer::start().await.expect("server");
            let mut settings = streaming_settings(&server.base_url());
            settings.stream = stream;
            settings.timeout = Duration::from_secs(20);
            let client = LlmClient::new(settings).expect("client");
            server.plan("Coat", std::iter::repeat_n(fault.clone(), 4));
            let started = Instant::now();
            let error = client.generate(&prompt("Coat"), 0).await.expect_err("too big");
            let message = error.to_string();
            assert!(message.contains("1048576 bytes"), "{fault:?}, stream {stream}: {message}");
            assert!(started.elapsed() < Duration::from_secs(5), "{fault:?}, stream {stream}: {:?}", started.elapsed());
            assert_eq!(server.counts()["Coat"], 1, "{fault:?}, stream {stream}: not asked again");
            tokio::time::sleep(Duration::from_millis(100)).await;
            if fault == Fault::Endless {
                assert_eq!(server.abandoned(), 1, "{fault:?}, stream {stream}: the connection was closed");
            }
        }
    }
}
