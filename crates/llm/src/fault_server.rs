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
use tokio::net::{TcpListener, TcpStream};

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

async fn serve(mut stream: TcpStream, shared: Arc<Mutex<Shared>>) {
    let Some((path, authorization, body)) = read_request(&mut stream).await else { return };
    if path.ends_with("/models") {
        let _ = stream.write_all(&response("200 OK", "", r#"{"object":"list","data":[{"id":"fake"}]}"#)).await;
        return;
    }
    let label = label_of(&body);
    let (fault, delay) = {
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
        (fault, shared.answer_delay)
    };
    let chat = path.ends_with("/chat/completions");
    let answer = |text: &str| -> String {
        if chat {
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}], "model": "fake"})
                .to_string()
        } else {
            json!({"choices": [{"index": 0, "text": text, "finish_reason": "stop"}], "model": "fake"}).to_string()
        }
    };
    let bytes = match fault {
        None => {
            tokio::time::sleep(delay).await;
            response("200 OK", "", &answer(&answer_for(&label)))
        }
        Some(Fault::ServerError) => response("500 Internal Server Error", "", r#"{"error":"injected"}"#),
        Some(Fault::TooManyRequests(after)) => {
            response("429 Too Many Requests", &format!("Retry-After: {after}\r\n"), r#"{"error":"slow down"}"#)
        }
        Some(Fault::MalformedJson) => response("200 OK", "", r#"{"choices": [{"text": "A trunc"#),
        Some(Fault::EmptyText) => response("200 OK", "", &answer("")),
        Some(Fault::Status(code)) => response(&format!("{code} Injected"), "", r#"{"error":"injected status"}"#),
        Some(Fault::Hang(duration)) => {
            tokio::time::sleep(duration).await;
            return;
        }
        Some(Fault::Reset) => {
            let _ = stream.set_zero_linger();
            drop(stream);
            return;
        }
        Some(Fault::Trickle(pause)) => {
            let bytes = response("200 OK", "", &answer(&answer_for(&label)));
            for piece in bytes.chunks(16) {
                if stream.write_all(piece).await.is_err() || stream.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(pause).await;
            }
            return;
        }
    };
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
}
