//! The describe stage against a fault-injecting server on 127.0.0.1.

use crate::support::*;
use sspa_config::LlmApi;
use sspa_describe::{DescribeError, DescribeProgress, describe, read_parquet};
use sspa_llm::fault_server::{Fault, FaultServer};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_is_retried_once_and_every_label_described() {
    let server = FaultServer::start().await.expect("server");
    let names = numbered(12);
    server.plan("L0", [Fault::ServerError]);
    server.plan("L1", [Fault::TooManyRequests("0.4".into())]);
    server.plan("L2", [Fault::Hang(Duration::from_millis(2500))]);
    server.plan("L3", [Fault::MalformedJson]);
    server.plan("L4", [Fault::Reset]);
    server.plan("L5", [Fault::Trickle(Duration::from_millis(15))]);
    server.plan("L6", [Fault::EmptyText]);
    server.plan("L7", [Fault::ServerError, Fault::TooManyRequests("0".into()), Fault::Reset]);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = project(dir.path());
    let labels = labels(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let request = request(&root, &server.base_url(), labels);
    let out = dir.path().join("out/descriptions.parquet");
    let seen = std::sync::Mutex::new(Vec::new());
    let progress = |p: DescribeProgress| seen.lock().expect("progress").push((p.done, p.total));
    let summary = describe(&request, &dir.path().join("state"), &out, &progress).await.expect("run");

    assert_eq!((summary.cached, summary.new, summary.failed), (0, 12, 0), "{summary:?}");
    let expected: HashMap<String, usize> = names
        .iter()
        .map(|name| {
            let retries = match name.as_str() {
                "L5" | "L8" | "L9" | "L10" | "L11" => 0,
                "L7" => 3,
                _ => 1,
            };
            (name.clone(), 1 + retries)
        })
        .collect();
    assert_eq!(server.counts(), expected, "only the needed retries");
    assert_eq!(summary.requests, expected.values().sum::<usize>() as u64);

    let log = server.log();
    let l1: Vec<Instant> = log.iter().filter(|r| r.label == "L1").map(|r| r.at).collect();
    assert!(l1[1] - l1[0] >= Duration::from_millis(400), "Retry-After honoured: {:?}", l1[1] - l1[0]);
    assert!(log.iter().all(|r| r.path == "/v1/completions" && r.body["model"] == "fake-model"));

    let rows = read_parquet(&out).expect("output");
    let got: Vec<&str> = rows.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(got, names.iter().map(String::as_str).collect::<Vec<_>>(), "every label once, in order");
    for (id, row) in rows.iter().enumerate() {
        assert_eq!(row.label_id as usize, id);
        assert!(row.description.ends_with(&format!("A photo of a {}.", row.label)), "{}", row.description);
        assert!(row.raw.contains(&row.label));
        assert_eq!(row.model, "fake-model");
        assert_eq!(row.request_key.len(), 64);
    }
    let keys: HashSet<&str> = rows.iter().map(|r| r.request_key.as_str()).collect();
    assert_eq!(keys.len(), 12);
    let seen = seen.into_inner().expect("progress");
    assert_eq!(seen.first(), Some(&(0, 12)));
    assert_eq!(seen.last(), Some(&(12, 12)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reports_the_adaptive_concurrency_limit() {
    let server = FaultServer::start().await.expect("server");
    // Answers 2 at a time; the requests waiting behind them get no token and time out idle.
    server.set_queue(2);
    server.set_token_pause(Duration::from_millis(12));
    let dir = tempfile::tempdir().expect("tempdir");
    let root = project(dir.path());
    let names = numbered(24);
    let mut request = request(&root, &server.base_url(), labels(&names.iter().map(String::as_str).collect::<Vec<_>>()));
    request.llm.concurrency = 8;
    request.llm.timeout_s = 10.0;
    request.llm.idle_timeout_s = 0.08;
    request.llm.max_retries = 8;
    request.retry = Some(sspa_llm::RetryPolicy { max_retries: 8, ..fast_retry() });
    let state = dir.path().join("state");
    let out = dir.path().join("out.parquet");
    let seen = std::sync::Mutex::new(Vec::new());
    let progress = |p: DescribeProgress| seen.lock().expect("progress").push(p);
    let summary = describe(&request, &state, &out, &progress).await.expect("run");
    assert_eq!((summary.new, summary.failed), (24, 0), "{summary:?}");
    let stats = summary.concurrency.expect("requests were sent");

    let seen = seen.into_inner().expect("progress");
    assert_eq!(seen[0], DescribeProgress { done: 0, total: 24, concurrency: None }, "nothing asked yet");
    let limits: Vec<usize> = seen.iter().filter_map(|p| p.concurrency).collect();
    assert_eq!(limits.first(), Some(&8), "starts at llm.concurrency: {limits:?}");
    assert_eq!(limits.last(), Some(&stats.current), "ends where the summary says: {limits:?}");
    assert_eq!(stats.current, 2, "settles at the server's queue size: {stats:?}");
    assert!(stats.decreases >= 2 && limits.iter().all(|&limit| limit <= 8), "{stats:?}, {limits:?}");
    assert_eq!(seen.last().map(|p| (p.done, p.total)), Some((24, 24)));

    // Everything cached: no request, so no limit to show.
    let seen = std::sync::Mutex::new(Vec::new());
    let progress = |p: DescribeProgress| seen.lock().expect("progress").push(p);
    let again = describe(&request, &state, &out, &progress).await.expect("cached run");
    assert_eq!((again.cached, again.requests), (24, 0));
    assert!(again.concurrency.is_none());
    assert_eq!(seen.into_inner().expect("progress"), [DescribeProgress { done: 24, total: 24, concurrency: None }]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_fail_one_label_and_a_rerun_asks_only_for_it() {
    let server = FaultServer::start().await.expect("server");
    server.plan("L1", [Fault::MalformedJson, Fault::MalformedJson, Fault::MalformedJson]);
    server.plan("L2", [Fault::EmptyText, Fault::EmptyText, Fault::EmptyText]);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = project(dir.path());
    let mut request = request(&root, &server.base_url(), labels(&["L0", "L1", "L2", "L3"]));
    request.llm.max_retries = 2;
    let (state, out) = (dir.path().join("state"), dir.path().join("out.parquet"));
    let summary = describe(&request, &state, &out, &no_progress).await.expect("run");
    assert_eq!((summary.new, summary.failed), (2, 2), "{summary:?}");
    assert_eq!(summary.failures[0].label, "L1");
    assert!(summary.failures[0].reason.contains("malformed JSON"), "{}", summary.failures[0].reason);
    assert!(summary.failures[0].reason.contains("3 attempt"), "{}", summary.failures[0].reason);
    assert!(summary.failures[1].reason.contains("empty answer"), "{}", summary.failures[1].reason);
    assert_eq!(server.counts()["L1"], 3);
    assert_eq!(labels_in(&out), ["L0", "L3"]);
    let json = serde_json::to_value(&summary).expect("summary serialises");
    assert_eq!(json["failed"], 2);

    server.clear_log();
    let summary = describe(&request, &state, &out, &no_progress).await.expect("rerun");
    assert_eq!((summary.cached, summary.new, summary.failed), (2, 2, 0), "{summary:?}");
    let mut asked: Vec<String> = server.log().into_iter().map(|r| r.label).collect();
    asked.sort();
    assert_eq!(asked, ["L1", "L2"]);
    assert_eq!(labels_in(&out), ["L0", "L1", "L2", "L3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_sends_only_missing_keys() {
    let server = FaultServer::start().await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = project(dir.path());
    let (state, out) = (dir.path().join("state"), dir.path().join("out.parquet"));
    let first = request(&root, &server.base_url(), labels(&["a", "b", "c"]));
    describe(&first, &state, &out, &no_progress).await.expect("first run");
    assert_eq!(server.log().len(), 3);
    assert_eq!(std::fs::read_dir(state.join("segments")).expect("segments").count(), 0, "compacted");

    server.clear_log();
    let second = request(&root, &server.base_url(), labels(&["d", "b", "a", "e"]));
    let summary = describe(&second, &state, &out, &no_progress).await.expect("second run");
    assert_eq!((summary.cached, summary.new), (2, 2));
    let asked: HashSet<String> = server.log().into_iter().map(|r| r.label).collect();
    assert_eq!(asked, HashSet::from(["d".to_owned(), "e".to_owned()]));
    let rows = read_parquet(&out).expect("output");
    let ids: Vec<(u32, &str)> = rows.iter().map(|r| (r.label_id, r.label.as_str())).collect();
    assert_eq!(ids, [(0, "d"), (1, "b"), (2, "a"), (3, "e")], "ids follow this request's order");
    assert_eq!(read_parquet(&state.join("descriptions.parquet")).expect("cache").len(), 5);

    // Post-processing is not part of the key: a shorter cap re-cuts cached answers, asks nothing.
    server.clear_log();
    let mut shorter = second.clone();
    shorter.prompt.max_sentences = 1;
    let summary = describe(&shorter, &state, &out, &no_progress).await.expect("shorter");
    assert_eq!((summary.cached, summary.new, summary.requests), (4, 0, 0));
    assert!(server.log().is_empty());
    let row = &read_parquet(&out).expect("output")[0];
    assert_eq!(row.description, "A d has a distinct shape, colour and parts. A photo of a d.");

    // A generation parameter is part of the key: everything is asked again.
    let mut hotter = second.clone();
    hotter.llm.temperature = 0.7;
    let summary = describe(&hotter, &state, &out, &no_progress).await.expect("hotter");
    assert_eq!((summary.cached, summary.new), (0, 4));

    // So are the sample index and its seed.
    server.clear_log();
    let mut sampled = second.clone();
    sampled.llm.samples = 2;
    let summary = describe(&sampled, &state, &out, &no_progress).await.expect("sampled");
    assert_eq!((summary.total, summary.cached, summary.new), (8, 4, 4));
    let seeds: HashSet<u64> = server.log().iter().filter_map(|r| r.body["seed"].as_u64()).collect();
    assert_eq!(seeds, HashSet::from([1]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_down_is_one_error_naming_the_url_and_the_cache_survives() {
    let server = FaultServer::start().await.expect("server");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = project(dir.path());
    let (state, out) = (dir.path().join("state"), dir.path().join("out.parquet"));
    describe(&request(&root, &server.base_url(), labels(&["a", "b"])), &state, &out, &no_progress)
        .await
        .expect("first run");
    drop(server);

    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}/v1");
    let started = Instant::now();
    let error = describe(&request(&root, &url, labels(&["a", "b", "c"])), &state, &out, &no_progress)
        .await
        .expect_err("nothing listens");
    let message = error.to_string();
    assert!(matches!(error, DescribeError::Llm(_)), "{message}");
    assert!(message.contains(&format!("`{url}`")) && message.contains("scripts/llm-server start"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(5), "fails fast");
    assert_eq!(read_parquet(&state.join("descriptions.parquet")).expect("cache intact").len(), 2);

    // Fully cached labels need no server at all.
    let summary =
        describe(&request(&root, &url, labels(&["b", "a"])), &state, &out, &no_progress).await.expect("cached run");
    assert_eq!((summary.cached, summary.new, summary.requests), (2, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_route_and_limits() {
    let server = FaultServer::start().await.expect("server");
    server.set_answer_delay(Duration::from_millis(100));
    let dir = tempfile::tempdir().expect("tempdir");
    let root = project(dir.path());
    let names = numbered(6);
    let mut request = request(&root, &server.base_url(), labels(&names.iter().map(String::as_str).collect::<Vec<_>>()));
    request.llm.api = LlmApi::Chat;
    request.llm.concurrency = 2;
    let started = Instant::now();
    let summary = describe(&request, &dir.path().join("state"), &dir.path().join("out.parquet"), &no_progress)
        .await
        .expect("run");
    let elapsed = started.elapsed();
    assert_eq!(summary.new, 6);
    assert!(elapsed >= Duration::from_millis(300), "6 answers of 100 ms, 2 at a time: {elapsed:?}");
    let log = server.log();
    assert!(log.iter().all(|r| r.path == "/v1/chat/completions"));
    let messages = log[0].body["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 4);
    assert_eq!(messages[0]["role"], "system");

    // Requests per second: 5 requests at 10/s take at least 0.4 s however fast the server is.
    server.set_answer_delay(Duration::ZERO);
    request.llm.concurrency = 8;
    request.llm.requests_per_second = 10.0;
    request.labels = labels(&["p", "q", "r", "s", "t"]);
    let started = Instant::now();
    describe(&request, &dir.path().join("state"), &dir.path().join("out.parquet"), &no_progress).await.expect("run");
    assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
    let starts: Vec<Instant> = server.log().iter().rev().take(5).map(|r| r.at).collect();
    assert!(starts[0] - starts[4] >= Duration::from_millis(350), "5 starts at 10/s span {:?}", starts[0] - starts[4]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_keeps_its_answers() {
    let server = FaultServer::start().await.expect("server");
    server.set_answer_delay(Duration::from_millis(60));
    let dir = tempfile::tempdir().expect("tempdir");
    let root = project(dir.path());
    let names = numbered(20);
    let mut request = request(&root, &server.base_url(), labels(&names.iter().map(String::as_str).collect::<Vec<_>>()));
    request.llm.concurrency = 2;
    let (state, out) = (dir.path().join("state"), dir.path().join("out.parquet"));
    {
        // Cut the run short (drop its future) once a few answers are durable.
        let run = describe(&request, &state, &out, &no_progress);
        tokio::pin!(run);
        let deadline = Instant::now() + Duration::from_secs(30);
        while segment_labels(&state).len() < 3 {
            assert!(Instant::now() < deadline, "no progress");
            tokio::select! {
                result = &mut run => panic!("the run ended before it was cancelled: {result:?}"),
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
    }
    let durable = segment_labels(&state);
    assert!(!durable.is_empty() && durable.len() < 20, "{durable:?}");

    server.clear_log();
    let summary = describe(&request, &state, &out, &no_progress).await.expect("resume");
    assert_eq!((summary.cached, summary.new), (durable.len(), 20 - durable.len()));
    let asked: HashSet<String> = server.log().into_iter().map(|r| r.label).collect();
    assert!(asked.iter().all(|label| !durable.contains(label)), "answered labels asked again");
    assert_eq!(labels_in(&out), names);
}

/// The runner may `tokio::spawn` the stage: its future must be `Send`.
#[test]
fn describe_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let dir = tempfile::tempdir().expect("tempdir");
    let request = request(dir.path(), "http://127.0.0.1:9/v1", labels(&["a"]));
    let progress = |_: sspa_describe::DescribeProgress| {};
    let future = describe(&request, dir.path(), dir.path(), &progress);
    assert_send(&future);
}

/// Answers cut off by `llm.max_tokens` (`finish_reason = "length"`): retried, then failed with the
/// label and the setting to change, and never cached — unless post-processing keeps only whole
/// sentences from before the cut (then the description is the one the whole answer gives).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_answers_are_retried_failed_and_not_cached_unless_the_kept_sentences_are_whole() {
    for stream in [true, false] {
        let server = FaultServer::start().await.expect("server");
        // `CutOff(11)`: " A L has a distinct shape, colour and parts. It is" — one whole sentence.
        server.plan("L1", std::iter::repeat_n(Fault::CutOff(11), 5));
        server.plan("L2", [Fault::CutOff(11)]);
        let dir = tempfile::tempdir().expect("tempdir");
        let root = project(dir.path());
        let mut request = request(&root, &server.base_url(), labels(&["L0", "L1", "L2"]));
        request.llm.stream = stream;
        request.llm.max_tokens = 11;
        let (state, out) = (dir.path().join("state"), dir.path().join("out.parquet"));
        let summary = describe(&request, &state, &out, &no_progress).await.expect("run");
        assert_eq!((summary.new, summary.failed), (2, 1), "stream {stream}: {summary:?}");
        let failure = &summary.failures[0];
        assert_eq!(failure.label, "L1");
        assert!(failure.reason.contains("5 attempt") && failure.reason.contains("cut off"), "{}", failure.reason);
        assert!(failure.reason.contains("`llm.max_tokens` = 11"), "{}", failure.reason);
        assert_eq!(server.counts()["L1"], 5);
        assert_eq!(server.counts()["L2"], 2, "cut off once, then whole");
        assert_eq!(labels_in(&out), ["L0", "L2"]);
        let rows = read_parquet(&out).expect("output");
        assert_eq!(
            rows[1].description,
            "A L2 has a distinct shape, colour and parts. It is often seen next to related things. A photo of a L2."
        );
        assert!(!segment_labels(&state).contains(&"L1".to_owned()) && summary.cached == 0);

        // One sentence kept: the cut does not reach it, so the cut-off answer is used and cached.
        server.clear_log();
        server.plan("L1", [Fault::CutOff(11)]);
        let mut one = request.clone();
        one.prompt.max_sentences = 1;
        let summary = describe(&one, &state, &out, &no_progress).await.expect("one sentence");
        assert_eq!((summary.cached, summary.new, summary.failed), (2, 1, 0), "stream {stream}: {summary:?}");
        assert_eq!(server.counts()["L1"], 1, "accepted as it came");
        let rows = read_parquet(&out).expect("output");
        assert_eq!(rows[1].description, "A L1 has a distinct shape, colour and parts. A photo of a L1.");
        assert_eq!(rows[1].finish_reason.as_deref(), Some("length"));
        assert_eq!(rows[0].finish_reason.as_deref(), Some("stop"));

        // Two sentences again: the cached answer's cut now matters. It fails, naming the label and
        // the setting, without asking (the same request would be cut the same way).
        server.clear_log();
        let summary = describe(&request, &state, &out, &no_progress).await.expect("two sentences");
        assert_eq!((summary.cached, summary.new, summary.failed), (2, 0, 1), "stream {stream}: {summary:?}");
        assert_eq!(summary.failures[0].label, "L1");
        assert!(summary.failures[0].reason.contains("`llm.max_tokens` = 11"), "{}", summary.failures[0].reason);
        assert!(server.log().is_empty(), "nothing asked");
        assert_eq!(labels_in(&out), ["L0", "L2"]);
    }
}
