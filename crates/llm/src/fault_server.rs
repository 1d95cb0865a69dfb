//! A fault-injecting OpenAI-compatible server on 127.0.0.1, for tests and benchmarks.
//!
//! Raw HTTP/1.1 over tokio TCP, one request per connection (`Connection: close`). Each request's
//! label is read from the prompt's last line (`"{label}:"` or `"Describe: {label}"`); a per-label
//! plan of [`Fault`]s is consumed one per request, and requests without a planned fault are
//! answered with a description that names the label. Every request is logged.

use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// What the server does instead of answering.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// HTTP 500.
    ServerError,
    /// HTTP 429 with `Retry-After: {0}` (seconds, may be fractional).
    TooManyRequests(String),
    /// Read the request, then say nothing for this long and close.
    Hang(Duration),
    /// HTTP 200 with a body that is not JSON.
    MalformedJson,
    /// Close the connection with a TCP reset before answering.
    Reset,
    /// Answer correctly, a few bytes at a time with this pause between them.
    Trickle(Duration),
    /// HTTP 200 with an empty answer text.
    EmptyText,
    /// This HTTP status with a small JSON error body.
    Status(u16),
    /// A streaming answer that sends its first words, then nothing for this long, then closes.
    /// (Without streaming: the same as [`Fault::Hang`].)
    StallStream(Duration),
    /// A streaming answer whose connection closes in the middle of an event, before the end.
    /// (Without streaming: the same as [`Fault::Reset`].)
    CutStream,
    /// The answer's first this many words, ended with `finish_reason = "length"`, as a server
    /// does when `max_tokens` runs out mid-answer.
    CutOff(usize),
    /// HTTP 200 whose body never ends: an event stream of words without pause, or (without
    /// streaming) a JSON body without `Content-Length` that grows until the client goes away.
    Endless,
    /// A well-formed answer whose text is this many bytes: one JSON body with its
    /// `Content-Length`, or (streaming) one event of that size.
    HugeBody(usize),
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    pub label: String,
    pub path: String,
    pub fault: Option<Fault>,
    pub authorization: Option<String>,
    pub body: Value,
    pub at: Instant,
}

#[derive(Default)]
struct Shared {
    plans: HashMap<String, VecDeque<Fault>>,
    log: Vec<LoggedRequest>,
    answer_delay: Duration,
    /// Pause between streamed words.
    token_pause: Duration,
    /// Answer requests with `"stream": true` by HTTP 400, as servers without streaming do.
    no_streaming: bool,
    /// Answer at most this many at once; the rest wait (and give up their place when the
    /// client closes the connection).
    queue: Option<Arc<Semaphore>>,
    /// `total_slots` in `GET /props`; without it `/props` is 404.
    advertised_slots: Option<usize>,
    serving: usize,
    most_serving: usize,
    /// Requests whose client closed the connection before the answer was complete.
    abandoned: usize,
}

/// The running server; stops when dropped.
pub struct FaultServer {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FaultServer {
    /// Binds 127.0.0.1 on a free port and serves until dropped.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, state.clone()));
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Faults for the next requests about `label`, in order.
    pub fn plan(&self, label: &str, faults: impl IntoIterator<Item = Fault>) {
        lock(&self.shared).plans.entry(label.to_owned()).or_default().extend(faults);
    }

    /// Pause before every normal answer (to keep requests in flight).
    pub fn set_answer_delay(&self, delay: Duration) {
        lock(&self.shared).answer_delay = delay;
    }

    /// Pause between the words of a streamed answer.
    pub fn set_token_pause(&self, pause: Duration) {
        lock(&self.shared).token_pause = pause;
    }

    /// Refuse `"stream": true` with HTTP 400 (`streaming is not supported`).
    pub fn disable_streaming(&self) {
        lock(&self.shared).no_streaming = true;
    }

    /// Serve at most `slots` requests at once; the others wait for a slot, like a busy server's
    /// queue. A waiting request whose client closes its connection leaves the queue.
    pub fn set_queue(&self, slots: usize) {
        lock(&self.shared).queue = Some(Arc::new(Semaphore::new(slots.max(1))));
    }

    /// Advertise `total_slots` in `GET /props` (llama.cpp).
    pub fn advertise_slots(&self, slots: usize) {
        lock(&self.shared).advertised_slots = Some(slots);
    }

    /// Most requests answered at the same time so far (queue waiters not counted), each counted
    /// until its last bytes start to go out: never more than the client had in flight.
    pub fn most_serving(&self) -> usize {
        lock(&self.shared).most_serving
    }

    /// Requests whose client closed the connection before the answer was complete.
    pub fn abandoned(&self) -> usize {
        lock(&self.shared).abandoned
    }

    pub fn log(&self) -> Vec<LoggedRequest> {
        lock(&self.shared).log.clone()
    }

    /// Requests per label.
    pub fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for request in &lock(&self.shared).log {
            *counts.entry(request.label.clone()).or_insert(0) += 1;
        }
        counts
    }

    pub fn clear_log(&self) {
        lock(&self.shared).log.clear();
    }
}

/// The answer text the server gives for a label.
pub fn answer_for(label: &str) -> String {
    format!(" A {label} has a distinct shape, colour and parts. It is often seen next to related things.")
}

/// [`answer_for`]'s first `words` words, as an answer cut off by `max_tokens`.
pub fn cut_answer(label: &str, words: usize) -> String {
    let answer = answer_for(label);
    let kept: Vec<&str> = answer.split_inclusive(' ').take(words + 1).collect();
    kept.concat().trim_end().to_owned()
}

/// The label a prompt asks about: its last line without `Describe: ` and the trailing colon.
pub fn label_of(body: &Value) -> String {
    let text = body["prompt"]
        .as_str()
        .or_else(|| body["messages"].as_array().and_then(|m| m.last()).and_then(|m| m["content"].as_str()))
        .unwrap_or_default();
    let last = text.rsplit('\n').next().unwrap_or_default();
    let last = last.strip_prefix("Describe: ").unwrap_or(last);
    last.strip_suffix(':').unwrap_or(last).to_owned()
}

async fn read_request(stream: &mut TcpStream) -> Option<(String, Option<String>, Value)> {
    let mut buffer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let header_end = loop {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let mut lines = head.lines();
    let path = lines.next()?.split_whitespace().nth(1)?.to_owned();
    let mut length = 0usize;
    let mut authorization = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().ok()?,
                "authorization" => authorization = Some(value.trim().to_owned()),
                _ => {}
            }
        }
    }
    while buffer.len() < header_end + length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let body = serde_json::from_slice(&buffer[header_end..header_end + length]).unwrap_or(Value::Null);
    Some((path, authorization, body))
}

fn response(status: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn sse_event(chat: bool, piece: &str, finish: Option<&str>) -> String {
    let choice = if chat {
        json!({"index": 0, "delta": {"content": piece}, "finish_reason": finish})
    } else {
        json!({"index": 0, "text": piece, "finish_reason": finish})
    };
    format!("data: {}\n\n", json!({"choices": [choice], "model": "fake"}))
}

fn usage_json(body: &Value, answer: &str) -> Value {
    let prompt = body["prompt"].as_str().map_or_else(|| body["messages"].to_string(), str::to_owned);
    json!({"prompt_tokens": prompt.split_whitespace().count(), "completion_tokens": answer.split_whitespace().count()})
}

/// Resolves when the client closes its side (or the read fails).
async fn closed(reader: &mut OwnedReadHalf) {
    let mut sink = [0u8; 256];
    loop {
        match reader.read(&mut sink).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Releases a serving place when dropped.
struct Serving(Arc<Mutex<Shared>>);

impl Serving {
    fn enter(shared: &Arc<Mutex<Shared>>) -> Self {
        let mut state = lock(shared);
        state.serving += 1;
        state.most_serving = state.most_serving.max(state.serving);
        Self(shared.clone())
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        lock(&self.0).serving -= 1;
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Mutex<Shared>>) {
    let Some((path, authorization, body)) = read_request(&mut stream).await else { return };
    if path.ends_with("/models") {
        let _ = stream.write_all(&response("200 OK", "", r#"{"object":"list","data":[{"id":"fake"}]}"#)).await;
        return;
    }
    if path == "/props" {
        let slots = lock(&shared).advertised_slots;
        let bytes = match slots {
            Some(slots) => response("200 OK", "", &json!({"total_slots": slots}).to_string()),
            None => response("404 Not Found", "", r#"{"error":"not found"}"#),
        };
        let _ = stream.write_all(&bytes).await;
        return;
    }
    let label = label_of(&body);
    let streaming = body["stream"].as_bool().unwrap_or(false);
    let (fault, delay, pause, no_streaming, queue) = {
        let mut shared = lock(&shared);
        let fault = shared.plans.get_mut(&label).and_then(VecDeque::pop_front);
        shared.log.push(LoggedRequest {
            label: label.clone(),
            path: path.clone(),
            fault: fault.clone(),
            authorization,
            body: body.clone(),
            at: Instant::now(),
        });
        (fault, shared.answer_delay, shared.token_pause, shared.no_streaming, shared.queue.clone())
    };
    if matches!(fault, Some(Fault::Reset)) || (!streaming && matches!(fault, Some(Fault::CutStream))) {
        let _ = stream.set_zero_linger();
        drop(stream);
        return;
    }
    let (mut reader, mut writer) = stream.into_split();
    let completed = tokio::select! {
        completed = answer(&mut writer, &shared, &body, &label, fault, streaming, no_streaming, delay, pause, queue) => completed,
        () = closed(&mut reader) => false,
    };
    if !completed {
        lock(&shared).abandoned += 1;
    }
    let _ = writer.shutdown().await;
}

/// Writes the answer (or the fault); false when the client went away first.
#[allow(clippy::too_many_arguments)]
async fn answer(
    writer: &mut OwnedWriteHalf,
    shared: &Arc<Mutex<Shared>>,
    body: &Value,
    label: &str,
    fault: Option<Fault>,
    streaming: bool,
    no_streaming: bool,
    delay: Duration,
    pause: Duration,
    queue: Option<Arc<Semaphore>>,
) -> bool {
    let _slot = match queue {
        Some(queue) => match queue.acquire_owned().await {
            Ok(permit) => Some(permit),
            Err(_) => return false,
        },
        None => None,
    };
    // Released just before the last bytes go out: a client that read them may start its next
    // request before this task returns, and that must not count as one more at once.
    let serving = Serving::enter(shared);
    let chat = body["messages"].is_array();
    let json_answer_ending = |text: &str, finish: &str| json_body(body, chat, text, finish);
    let json_answer = |text: &str| json_answer_ending(text, "stop");
    if streaming && no_streaming {
        let bytes = response("400 Bad Request", "", r#"{"error":{"message":"streaming is not supported"}}"#);
        drop(serving);
        return writer.write_all(&bytes).await.is_ok();
    }
    let bytes = match fault {
        Some(Fault::ServerError) => response("500 Internal Server Error", "", r#"{"error":"injected"}"#),
        Some(Fault::TooManyRequests(after)) => {
            response("429 Too Many Requests", &format!("Retry-After: {after}\r\n"), r#"{"error":"slow down"}"#)
        }
        Some(Fault::Status(code)) => response(&format!("{code} Injected"), "", r#"{"error":"injected status"}"#),
        Some(Fault::Hang(duration)) => {
            tokio::time::sleep(duration).await;
            return true;
        }
        Some(Fault::StallStream(duration)) if !streaming => {
            tokio::time::sleep(duration).await;
            return true;
        }
        Some(Fault::MalformedJson) if !streaming => response("200 OK", "", r#"{"choices": [{"text": "A trunc"#),
        Some(Fault::EmptyText) if !streaming => response("200 OK", "", &json_answer("")),
        Some(Fault::CutOff(words)) if !streaming => {
            response("200 OK", "", &json_answer_ending(&cut_answer(label, words), "length"))
        }
        Some(Fault::HugeBody(bytes)) if !streaming => response("200 OK", "", &json_answer(&"a".repeat(bytes))),
        Some(Fault::Endless) if !streaming => return write_endless(writer).await,
        Some(Fault::Trickle(pause)) if !streaming => {
            return write_trickled(writer, &response("200 OK", "", &json_answer(&answer_for(label))), pause).await;
        }
        None if !streaming => {
            tokio::time::sleep(delay).await;
            response("200 OK", "", &json_answer(&answer_for(label)))
        }
        fault => return stream_answer(writer, serving, body, label, fault, chat, delay, pause).await,
    };
    drop(serving);
    writer.write_all(&bytes).await.is_ok()
}

/// The JSON body of a complete answer: a chat message when the request was a chat, else a
/// completion's text.
fn json_body(request: &Value, chat: bool, text: &str, finish: &str) -> String {
    let usage = usage_json(request, text);
    let choice = if chat {
        json!({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish})
    } else {
        json!({"index": 0, "text": text, "finish_reason": finish})
    };
    json!({"choices": [choice], "model": "fake", "usage": usage}).to_string()
}

/// A JSON answer that never ends: its text grows until the client goes away (false).
async fn write_endless(writer: &mut OwnedWriteHalf) -> bool {
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"choices\": [{\"text\": \"";
    if writer.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    let filler = [b'a'; 16 * 1024];
    loop {
        if writer.write_all(&filler).await.is_err() || writer.flush().await.is_err() {
            return false;
        }
        tokio::task::yield_now().await;
    }
}

/// Writes `bytes` 16 at a time, `pause` apart; false when the client went away first.
async fn write_trickled(writer: &mut OwnedWriteHalf, bytes: &[u8], pause: Duration) -> bool {
    for piece in bytes.chunks(16) {
        if writer.write_all(piece).await.is_err() || writer.flush().await.is_err() {
            return false;
        }
        tokio::time::sleep(pause).await;
    }
    true
}

/// A streamed answer (server-sent events), or a streaming fault.
#[allow(clippy::too_many_arguments)]
async fn stream_answer(
    writer: &mut OwnedWriteHalf,
    serving: Serving,
    body: &Value,
    label: &str,
    fault: Option<Fault>,
    chat: bool,
    delay: Duration,
    pause: Duration,
) -> bool {
    tokio::time::sleep(delay).await;
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
    if writer.write_all(head.as_bytes()).await.is_err() {
        return false;
    }
    if fault == Some(Fault::MalformedJson) {
        return writer.write_all(b"data: {\"choices\": [{\"text\": \"A tru\n\n").await.is_ok();
    }
    if fault == Some(Fault::Endless) {
        let event = sse_event(chat, " on", None);
        loop {
            if writer.write_all(event.as_bytes()).await.is_err() || writer.flush().await.is_err() {
                return false;
            }
            tokio::task::yield_now().await;
        }
    }
    let text = match fault {
        Some(Fault::EmptyText) => String::new(),
        Some(Fault::CutOff(words)) => cut_answer(label, words),
        Some(Fault::HugeBody(bytes)) => "a".repeat(bytes),
        _ => answer_for(label),
    };
    let finish = if matches!(fault, Some(Fault::CutOff(_))) { "length" } else { "stop" };
    let pieces: Vec<&str> = if matches!(fault, Some(Fault::HugeBody(_))) {
        vec![text.as_str()]
    } else {
        text.split_inclusive(' ').collect()
    };
    let pause = match fault {
        Some(Fault::Trickle(trickle)) => trickle,
        _ => pause,
    };
    for (index, piece) in pieces.iter().enumerate() {
        if index == 3 {
            match &fault {
                Some(Fault::StallStream(duration)) => {
                    tokio::time::sleep(*duration).await;
                    return true;
                }
                Some(Fault::CutStream) => {
                    let event = sse_event(chat, piece, None);
                    let _ = writer.write_all(&event.as_bytes()[..event.len() / 2]).await;
                    return true;
                }
                _ => {}
            }
        }
        if writer.write_all(sse_event(chat, piece, None).as_bytes()).await.is_err() || writer.flush().await.is_err() {
            return false;
        }
        tokio::time::sleep(pause).await;
    }
    let mut tail = sse_event(chat, "", Some(finish));
    if body["stream_options"]["include_usage"].as_bool() == Some(true) {
        tail.push_str(&format!("data: {}\n\n", json!({"choices": [], "usage": usage_json(body, &text)})));
    }
    tail.push_str("data: [DONE]\n\n");
    drop(serving);
    writer.write_all(tail.as_bytes()).await.is_ok()
}
