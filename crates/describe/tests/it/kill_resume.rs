//! kill -9 during a describe run, then a re-run: answered labels are not asked again.
//!
//! The run to kill is this same test binary, started again to run only the ignored
//! `child_describe` helper, which reads its setup from the environment. That helper cannot pass:
//! without the setup it fails, and a run that completes instead of being killed fails too.

use crate::support::*;
use sspa_describe::{DescribeRequest, LabelList, describe, read_parquet};
use sspa_llm::fault_server::FaultServer;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const KEY_ENV: &str = "SSPA_TEST_CHILD_API_KEY";
const SECRET: &str = "sk-test-0123456789-secret";

fn child_request(root: &Path, url: &str, names: &[String], concurrency: u32) -> DescribeRequest {
    let mut request = request(root, url, LabelList::from_names("child", names).expect("labels"));
    request.llm.concurrency = concurrency;
    request.llm.api_key_env = Some(KEY_ENV.into());
    request
}

/// The full test name of [`child_describe`] in this binary.
const CHILD_TEST: &str = "kill_resume::child_describe";

/// Not a test: the process that the test below kills. Runs only when started by it, and never
/// passes: its only good end is `SIGKILL`.
#[tokio::test]
#[ignore = "helper process for kill_minus_9_then_resume"]
async fn child_describe() {
    let Ok(setup) = std::env::var("SSPA_TEST_CHILD_SETUP") else {
        panic!("{CHILD_TEST} is the process kill_minus_9_then_resume kills; it does nothing on its own");
    };
    let [root, url, state, names, concurrency] =
        <[&str; 5]>::try_from(setup.split('\t').collect::<Vec<_>>()).expect("setup");
    let names: Vec<String> = names.split(',').map(str::to_owned).collect();
    let request = child_request(Path::new(root), url, &names, concurrency.parse().expect("concurrency"));
    describe(&request, Path::new(state), &PathBuf::from(state).join("never.parquet"), &no_progress)
        .await
        .expect("child run");
    panic!("the child run completed: it should have been killed by kill_minus_9_then_resume first");
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() { files.extend(files_under(&path)) } else { files.push(path) }
    }
    files
}

/// What a kill -9 and a resumed run came to.
struct Resumed {
    /// Labels answered durably before the kill.
    durable: HashSet<String>,
    /// Labels the killed run had asked for without a durable answer: in flight at the kill.
    unanswered: HashSet<String>,
    /// Labels the resumed run asked for that the killed run had asked for too.
    asked_again: HashSet<String>,
    /// Most requests the server was answering at once during the killed run.
    most_in_flight: usize,
}

/// Starts a describe run of `names` at `concurrency` in a child process, kills it (SIGKILL) once
/// `kill_at` answers are durable, then resumes it here; checks that the resumed run asks each
/// missing label once, nothing answered before the kill, and completes the output.
async fn kill_and_resume(names: &[String], concurrency: u32, answer_delay: Duration, kill_at: usize) -> Resumed {
    let server = FaultServer::start().await.expect("server");
    server.set_answer_delay(answer_delay);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = project(dir.path());
    let state = dir.path().join("state");
    let setup =
        format!("{}\t{}\t{}\t{}\t{concurrency}", root.display(), server.base_url(), state.display(), names.join(","));
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", CHILD_TEST, "--ignored", "--nocapture", "--test-threads", "1"])
        .env("SSPA_TEST_CHILD_SETUP", &setup)
        .env(KEY_ENV, SECRET)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("child");
    let deadline = Instant::now() + Duration::from_secs(60);
    while segment_labels(&state).len() < kill_at {
        assert!(Instant::now() < deadline, "child made no progress");
        assert!(child.try_wait().expect("child status").is_none(), "child ended before it was killed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");

    let durable: HashSet<String> = segment_labels(&state).into_iter().collect();
    assert!(durable.len() >= kill_at && durable.len() < names.len(), "{} answered before the kill", durable.len());
    let first_log = server.log();
    assert!(first_log.iter().all(|r| r.authorization.as_deref() == Some(&format!("Bearer {SECRET}"))));
    let asked_first: HashSet<String> = first_log.into_iter().map(|r| r.label).collect();
    let most_in_flight = server.most_serving();

    server.clear_log();
    // This process has no key in its environment (setting one would need `unsafe`); the fake
    // server does not check keys, so the resumed run goes without.
    let mut request = child_request(&root, &server.base_url(), names, concurrency);
    request.llm.api_key_env = None;
    // "Asked once" must not depend on the machine's load: no answer times out here.
    request.llm.timeout_s = 30.0;
    let out = dir.path().join("out.parquet");
    let summary = describe(&request, &state, &out, &no_progress).await.expect("resume");
    assert_eq!(summary.cached, durable.len(), "{summary:?}");
    assert_eq!(summary.new, names.len() - durable.len());
    let asked: Vec<String> = server.log().into_iter().map(|r| r.label).collect();
    let asked_set: HashSet<String> = asked.iter().cloned().collect();
    assert_eq!(asked.len(), asked_set.len(), "each missing label asked once");
    assert!(asked_set.is_disjoint(&durable), "labels answered before the kill were asked again");
    let rows = read_parquet(&out).expect("output");
    assert_eq!(rows.iter().map(|r| r.label.clone()).collect::<Vec<_>>(), names);

    for file in files_under(&state) {
        let bytes = std::fs::read(&file).expect("state file");
        assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "API key written to {}", file.display());
    }
    Resumed {
        unanswered: asked_first.difference(&durable).cloned().collect(),
        asked_again: asked_set.intersection(&asked_first).cloned().collect(),
        durable,
        most_in_flight,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_9_then_resume() {
    kill_and_resume(&numbered(40), 2, Duration::from_millis(150), 6).await;
}

/// The scenario: `concurrency = 4` against a server that advertises no slots (vLLM, TGI,
/// hosted endpoints), killed mid-run. The limit stays at 4, so the kill leaves at most the 4
/// requests in flight (plus answers received but not yet made durable by the run's single
/// writer) for the resumed run to ask again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_minus_9_at_concurrency_4_leaves_few_prompts_to_ask_again() {
    let resumed = kill_and_resume(&numbered(200), 4, Duration::from_millis(20), 120).await;
    eprintln!(
        "concurrency 4, no /props, killed after {} durable answers: {} in flight at once at most, {} asked but \
         unanswered at the kill, {} asked again by the resumed run",
        resumed.durable.len(),
        resumed.most_in_flight,
        resumed.unanswered.len(),
        resumed.asked_again.len()
    );
    assert!(resumed.most_in_flight <= 4, "{} requests in flight at once", resumed.most_in_flight);
    assert_eq!(resumed.asked_again, resumed.unanswered, "the resumed run asks exactly what the kill left");
    assert!(resumed.asked_again.len() <= 8, "{} prompts asked again", resumed.asked_again.len());
}
