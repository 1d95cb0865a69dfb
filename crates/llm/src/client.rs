//! The HTTP client: one [`LlmClient::generate`] call is one prompt, retried as needed.

use crate::limit::{AdaptiveLimit, ConcurrencyStats, Permit, RateLimiter};
use crate::{LlmError, LlmSettings, parse_retry_after};
use serde_json::{Value, json};
use sspa_prompt::RenderedPrompt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Longest `Retry-After` that is obeyed as is; longer ones are cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Characters of an error body kept in messages.
const BODY_SNIPPET: usize = 300;
/// The smallest response body limit, and the limit for bodies that are not answers (`/props`,
/// error bodies).
pub const MIN_RESPONSE_BYTES: usize = 1 << 20;
/// Response body bytes allowed per `max_tokens` token above [`MIN_RESPONSE_BYTES`]: a streamed
/// token costs one event of about 150–300 bytes of JSON; this leaves room for long tokens,
/// escapes and servers that add fields.
pub const RESPONSE_BYTES_PER_TOKEN: usize = 4096;

/// The most bytes one response body may have for answers of at most `max_tokens` tokens: the
/// larger of [`MIN_RESPONSE_BYTES`] and [`RESPONSE_BYTES_PER_TOKEN`] per token.
pub fn response_limit(max_tokens: u32) -> usize {
    MIN_RESPONSE_BYTES.max(RESPONSE_BYTES_PER_TOKEN.saturating_mul(max_tokens as usize))
}

/// Token counts the server reported for one answer (`usage`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// One usable answer.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The answer text as the server sent it.
    pub text: String,
    /// Attempts it took, the successful one included.
    pub attempts: u32,
    /// What the server said the answer cost, when it said.
    pub usage: Option<Usage>,
    /// Why the server stopped: `stop` (a stop sequence or the end of the answer), `length` (cut
    /// off by `max_tokens`, accepted only by [`LlmClient::accept_cut_off`]'s rule), when it said.
    pub finish_reason: Option<String>,
}

/// Which answers cut off by `max_tokens` may be used as they are.
#[derive(Clone)]
struct CutOffRule(std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>);

impl std::fmt::Debug for CutOffRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CutOffRule(..)")
    }
}

/// An OpenAI-compatible client with retries, an adaptive concurrency limit and a rate limit.
#[derive(Debug)]
pub struct LlmClient {
    http: reqwest::Client,
    settings: LlmSettings,
    in_flight: AdaptiveLimit,
    rate: RateLimiter,
    requests: AtomicU64,
    /// Cleared, once, when the server shows it does not stream.
    stream: AtomicBool,
    /// Cut-off answers this accepts are used; others are retried, then failed.
    cut_off: Option<CutOffRule>,
}

/// What one attempt came to.
enum Attempt {
    Answer(String, Option<Usage>, Option<String>),
    /// Worth another try; `after` is the server's `Retry-After`; `overload` when the server is
    /// too busy (timeouts, 429, 503), which lowers the concurrency limit.
    Retry {
        reason: String,
        after: Option<Duration>,
        connect: bool,
        overload: bool,
    },
    /// The server refused `"stream": true`; ask again without.
    NoStreaming(String),
    /// This prompt will not succeed by asking again.
    Fail(String),
    Fatal(LlmError),
}

/// What an HTTP error status means for the request: rate limited or a server error are retried
/// (after `Retry-After` when sent; 429 and 503 also lower the concurrency limit), a refusal of
/// streaming turns streaming off, 401/403/404/405 end the run (the URL or key is wrong), any
/// other status fails this prompt.
fn refusal(url: &str, code: u16, text: &str, stream: bool, retry_after: Option<Duration>) -> Attempt {
    if stream && matches!(code, 400 | 422 | 501) && text.to_ascii_lowercase().contains("stream") {
        return Attempt::NoStreaming(format!("HTTP {code}: {text}"));
    }
    match code {
        429 => Attempt::Retry {
            reason: format!("HTTP 429 (rate limited): {text}"),
            after: retry_after,
            connect: false,
            overload: true,
        },
        408 | 500..=599 => Attempt::Retry {
            reason: format!("HTTP {code}: {text}"),
            after: retry_after,
            connect: false,
            overload: code == 503,
        },
        401 | 403 | 404 | 405 => {
            Attempt::Fatal(LlmError::Refused { url: url.to_owned(), status: code, body: text.to_owned() })
        }
        _ => Attempt::Fail(format!("HTTP {code}: {text}")),
    }
}

fn retry(reason: impl Into<String>) -> Attempt {
    Attempt::Retry { reason: reason.into(), after: None, connect: false, overload: false }
}

fn overloaded(reason: impl Into<String>) -> Attempt {
    Attempt::Retry { reason: reason.into(), after: None, connect: false, overload: true }
}

/// Makes rustls's `ring` provider the process's TLS provider (the build leaves out aws-lc-rs, so
/// none is installed otherwise); a provider installed earlier stays.
fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl LlmClient {
    pub fn new(settings: LlmSettings) -> Result<Self, LlmError> {
        settings.validate()?;
        install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            // A connection per request: answers take seconds, so reuse saves nothing, while a
            // pooled connection the server closes after its per-connection request budget
            // (cpp-httplib: 5, llama.cpp's server) turns the next request on it into a failure
            // and a resend (seen under load: 54 requests for 40 labels).
            .pool_max_idle_per_host(0)
            .build()
            .map_err(LlmError::Client)?;
        Ok(Self {
            http,
            in_flight: AdaptiveLimit::new(settings.concurrency, settings.probe_concurrency),
            rate: RateLimiter::new(settings.requests_per_second),
            requests: AtomicU64::new(0),
            stream: AtomicBool::new(settings.stream),
            cut_off: None,
            settings,
        })
    }

    /// Uses answers cut off by `max_tokens` (`finish_reason = "length"`) for which `usable`
    /// holds, e.g. because what the caller keeps of them ends before the cut. Without this, every
    /// cut-off answer is retried, then failed.
    #[must_use]
    pub fn accept_cut_off(mut self, usable: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        self.cut_off = Some(CutOffRule(std::sync::Arc::new(usable)));
        self
    }

    /// The most bytes a response body may have (see [`response_limit`]).
    pub fn response_limit(&self) -> usize {
        response_limit(self.settings.params.max_tokens)
    }

    pub fn settings(&self) -> &LlmSettings {
        &self.settings
    }

    /// HTTP requests sent so far, retries included.
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// The concurrency limit now and its history.
    pub fn concurrency(&self) -> ConcurrencyStats {
        self.in_flight.stats()
    }

    /// Whether requests are (still) sent with `"stream": true`.
    pub fn streaming(&self) -> bool {
        self.stream.load(Ordering::Relaxed)
    }

    fn route(&self, prompt: &RenderedPrompt) -> String {
        match prompt {
            RenderedPrompt::Completion(_) => format!("{}/completions", self.settings.base_url),
            RenderedPrompt::Chat(_) => format!("{}/chat/completions", self.settings.base_url),
        }
    }

    /// Checks that something answers HTTP at the base URL (`GET {base}/models`), so that a run
    /// against a stopped server fails once, clearly, instead of once per label. Then asks the
    /// server for its slots (llama.cpp `GET /props`, `total_slots`) and caps the concurrency
    /// limit there when it says.
    pub async fn check_endpoint(&self) -> Result<(), LlmError> {
        let url = format!("{}/models", self.settings.base_url);
        let mut last = String::new();
        for attempt in 0..3u32 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            let request =
                self.authorised(self.http.get(&url)).timeout(self.settings.timeout.min(Duration::from_secs(10)));
            match request.send().await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if status == 401 || status == 403 {
                        let body = match read_body(response, MIN_RESPONSE_BYTES).await {
                            Ok(bytes) => snippet(&String::from_utf8_lossy(&bytes)),
                            Err(error) => error.to_string(),
                        };
                        return Err(LlmError::Refused { url, status, body });
                    }
                    self.discover_slots().await;
                    return Ok(());
                }
                Err(error) if error.is_connect() || error.is_timeout() => last = describe_error(&error),
                // Anything else means a peer answered, if oddly: let the real requests judge.
                Err(_) => return Ok(()),
            }
        }
        Err(LlmError::EndpointDown { url: self.settings.base_url.clone(), reason: last })
    }

    /// `GET {server}/props` → `total_slots`; anything else (other servers) leaves no cap.
    async fn discover_slots(&self) {
        let base = self.settings.base_url.strip_suffix("/v1").unwrap_or(&self.settings.base_url);
        let request = self.authorised(self.http.get(format!("{base}/props"))).timeout(Duration::from_secs(3));
        let Ok(response) = request.send().await else { return self.no_slots() };
        if !response.status().is_success() {
            return self.no_slots();
        }
        let Ok(bytes) = read_body(response, MIN_RESPONSE_BYTES).await else { return self.no_slots() };
        let Ok(props) = serde_json::from_slice::<Value>(&bytes) else { return self.no_slots() };
        if let Some(slots) = props["total_slots"].as_u64().filter(|&slots| slots > 0) {
            let slots = usize::try_from(slots).unwrap_or(usize::MAX);
            if slots < self.settings.concurrency {
                tracing::info!(
                    slots,
                    concurrency = self.settings.concurrency,
                    "the LLM server has fewer slots than llm.concurrency; sending at most that many at once"
                );
            }
            self.in_flight.cap(slots);
        } else {
            self.no_slots();
        }
    }

    /// The server advertises no slots: `llm.concurrency` stays the ceiling unless
    /// `llm.probe_concurrency` allows more.
    fn no_slots(&self) {
        if let Some(probe) = self.settings.probe_concurrency.filter(|&probe| probe > self.settings.concurrency) {
            tracing::info!(
                concurrency = self.settings.concurrency,
                probe_concurrency = probe,
                "the LLM server advertises no slots; probing above llm.concurrency up to llm.probe_concurrency"
            );
        }
    }

    fn authorised(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.settings.api_key {
            None => request,
            Some(key) => match reqwest::header::HeaderValue::from_str(&format!("Bearer {}", key.expose())) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    request.header(reqwest::header::AUTHORIZATION, value)
                }
                // A key with control characters cannot be sent; the server will answer 401.
                Err(_) => request,
            },
        }
    }

    fn body(&self, prompt: &RenderedPrompt, seed: u64, stream: bool) -> Value {
        let params = &self.settings.params;
        let mut body = json!({
            "model": self.settings.model,
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
            "seed": seed,
            "n": 1,
            "stream": stream,
        });
        if stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        if !params.stop.is_empty() {
            body["stop"] = json!(params.stop);
        }
        match prompt {
            RenderedPrompt::Completion(text) => body["prompt"] = json!(text),
            RenderedPrompt::Chat(messages) => body["messages"] = json!(messages),
        }
        body
    }

    /// Stops streaming for the rest of this client's life, logging it once.
    fn stop_streaming(&self, why: &str) {
        if self.stream.swap(false, Ordering::Relaxed) {
            tracing::warn!(url = %self.settings.base_url, reason = %why, "the LLM server does not stream; asking without streaming from now on");
        }
    }

    /// Sends one prompt and returns the first usable answer, retrying transient failures.
    /// `seed` is sent as is (callers vary it per sample).
    pub async fn generate(&self, prompt: &RenderedPrompt, seed: u64) -> Result<Generation, LlmError> {
        let url = self.route(prompt);
        let retry = self.settings.retry;
        let mut only_connect_errors = true;
        let mut last_reason = String::new();
        let attempts = retry.max_retries.saturating_add(1);
        for attempt in 1..=attempts {
            let outcome = {
                let permit = self.in_flight.acquire().await;
                self.rate.acquire().await;
                let mut outcome = self.attempt(&url, prompt, seed, &permit).await;
                if let Attempt::NoStreaming(why) = &outcome {
                    self.stop_streaming(why);
                    outcome = self.attempt(&url, prompt, seed, &permit).await;
                }
                match &outcome {
                    Attempt::Answer(..) => permit.success(),
                    Attempt::Retry { overload: true, .. } => permit.overload(),
                    _ => {}
                }
                outcome
            };
            let (reason, after, connect) = match outcome {
                Attempt::Answer(text, usage, finish_reason) => {
                    return Ok(Generation { text, attempts: attempt, usage, finish_reason });
                }
                Attempt::Fail(reason) | Attempt::NoStreaming(reason) => {
                    return Err(LlmError::Failed { attempts: attempt, reason });
                }
                Attempt::Fatal(error) => return Err(error),
                Attempt::Retry { reason, after, connect, .. } => (reason, after, connect),
            };
            only_connect_errors &= connect;
            last_reason = reason;
            if attempt == attempts {
                break;
            }
            let wait = match after {
                Some(after) => after.min(MAX_RETRY_AFTER),
                None => retry.backoff(attempt - 1),
            };
            tracing::debug!(url = %url, attempt, wait_ms = wait.as_millis() as u64, reason = %last_reason, "retrying");
            tokio::time::sleep(wait).await;
        }
        if only_connect_errors {
            return Err(LlmError::EndpointDown { url: self.settings.base_url.clone(), reason: last_reason });
        }
        Err(LlmError::Failed { attempts, reason: last_reason })
    }

    /// One request, bounded by `timeout` as a whole. When the bound fires the response is
    /// dropped, which closes its connection, so the server can stop generating it.
    async fn attempt(&self, url: &str, prompt: &RenderedPrompt, seed: u64, permit: &Permit<'_>) -> Attempt {
        let stream = self.streaming();
        let body = self.body(prompt, seed, stream);
        self.requests.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.settings.timeout, self.exchange(url, &body, prompt, stream, permit)).await {
            Ok(outcome) => outcome,
            Err(_) => overloaded(format!("timed out: no complete answer within {:?}", self.settings.timeout)),
        }
    }

    async fn exchange(
        &self,
        url: &str,
        body: &Value,
        prompt: &RenderedPrompt,
        stream: bool,
        permit: &Permit<'_>,
    ) -> Attempt {
        let response = match self.send(url, body, stream, permit).await {
            Ok(response) => response,
            Err(error) => {
                return Attempt::Retry {
                    reason: describe_error(&error),
                    after: None,
                    connect: error.is_connect(),
                    overload: error.is_timeout(),
                };
            }
        };
        let status = response.status();
        let header = |name| response.headers().get(name).and_then(|value| value.to_str().ok());
        let retry_after =
            header(reqwest::header::RETRY_AFTER).and_then(|value| parse_retry_after(value, chrono::Utc::now()));
        let event_stream =
            header(reqwest::header::CONTENT_TYPE).is_some_and(|value| value.starts_with("text/event-stream"));
        if status.is_success() && event_stream {
            return self.read_events(response, prompt).await;
        }
        let bytes = match read_body(response, self.response_limit()).await {
            Ok(bytes) => bytes,
            Err(BodyError::TooLarge { limit }) => return Attempt::Fail(self.too_large(limit)),
            Err(BodyError::Read(error)) => {
                return Attempt::Retry {
                    reason: describe_error(&error),
                    after: None,
                    connect: false,
                    overload: error.is_timeout(),
                };
            }
        };
        if !status.is_success() {
            return refusal(url, status.as_u16(), &snippet(&String::from_utf8_lossy(&bytes)), stream, retry_after);
        }
        if stream {
            // A plain JSON answer to a streaming request: the server ignores `stream`.
            self.stop_streaming("it answered a streaming request with a plain JSON body");
        }
        self.plain_answer(&bytes, prompt)
    }

    /// Sends the request and waits for the response's headers.
    async fn send(
        &self,
        url: &str,
        body: &Value,
        stream: bool,
        permit: &Permit<'_>,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let send = self.authorised(self.http.post(url)).json(body).send();
        if !stream {
            return send.await;
        }
        // Streaming servers send headers when generation starts. Waiting longer than the idle
        // timeout for that means the server is queueing or slow to read the prompt: that lowers
        // the concurrency limit, but the request keeps its place (bounded by `timeout` as a
        // whole) — closing it would only send the same prompt again, to the back of the queue.
        tokio::pin!(send);
        match tokio::time::timeout(self.settings.idle_timeout, &mut send).await {
            Ok(sent) => sent,
            Err(_) => {
                tracing::debug!("{}: the server is queueing; waiting on", self.idle_reason("the response to start"));
                permit.overload();
                send.await
            }
        }
    }

    /// Judges a complete (non-streamed) JSON answer's text.
    fn plain_answer(&self, bytes: &[u8], prompt: &RenderedPrompt) -> Attempt {
        let parsed: Value = match serde_json::from_slice(bytes) {
            Ok(value) => value,
            Err(error) => {
                let text = snippet(&String::from_utf8_lossy(bytes));
                return retry(format!("malformed JSON ({error}): `{text}`"));
            }
        };
        let choice = &parsed["choices"][0];
        let text = match prompt {
            RenderedPrompt::Completion(_) => choice["text"].as_str(),
            RenderedPrompt::Chat(_) => choice["message"]["content"].as_str(),
        };
        let Some(text) = text else {
            let field = match prompt {
                RenderedPrompt::Completion(_) => "choices[0].text",
                RenderedPrompt::Chat(_) => "choices[0].message.content",
            };
            return retry(format!("malformed response: no string `{field}` in `{}`", snippet(&parsed.to_string())));
        };
        self.judge(text.to_owned(), usage_of(&parsed), choice["finish_reason"].as_str().map(str::to_owned))
    }

    fn too_large(&self, limit: usize) -> String {
        format!(
            "the response body exceeded {limit} bytes, the limit for answers of `llm.max_tokens` = {} tokens (the \
             larger of 1 MiB and 4 KiB per token): the server sends more than an answer, or does not stop",
            self.settings.params.max_tokens
        )
    }

    fn idle_reason(&self, what: &str) -> String {
        format!("idle timeout: waited {:?} for {what}", self.settings.idle_timeout)
    }

    /// Reads server-sent events (`data: {json}` lines, ended by `data: [DONE]`) until the answer
    /// is complete; a pause longer than `idle_timeout` or a stream that ends early is retried.
    async fn read_events(&self, mut response: reqwest::Response, prompt: &RenderedPrompt) -> Attempt {
        let mut pending: Vec<u8> = Vec::new();
        let mut text = String::new();
        let mut usage = None;
        let mut finish_reason: Option<String> = None;
        let (limit, mut received) = (self.response_limit(), 0usize);
        loop {
            let chunk = match tokio::time::timeout(self.settings.idle_timeout, response.chunk()).await {
                Err(_) => return overloaded(self.idle_reason("the next token")),
                Ok(Err(error)) => return retry(format!("stream broke: {}", describe_error(&error))),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => chunk,
            };
            received = received.saturating_add(chunk.len());
            if received > limit {
                return Attempt::Fail(self.too_large(limit));
            }
            pending.extend_from_slice(&chunk);
            while let Some(end) = pending.iter().position(|&byte| byte == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let line = String::from_utf8_lossy(&line);
                let Some(data) = line.trim().strip_prefix("data:") else { continue };
                let data = data.trim();
                if data == "[DONE]" {
                    return if finish_reason.is_some() || !text.is_empty() {
                        self.judge(text, usage, finish_reason)
                    } else {
                        retry("stream ended with [DONE] before any answer")
                    };
                }
                let event: Value = match serde_json::from_str(data) {
                    Ok(event) => event,
                    Err(error) => {
                        return retry(format!("malformed JSON in a stream event ({error}): `{}`", snippet(data)));
                    }
                };
                if !event["error"].is_null() {
                    return retry(format!(
                        "the server reported an error mid-stream: {}",
                        snippet(&event["error"].to_string())
                    ));
                }
                if let Some(found) = usage_of(&event) {
                    usage = Some(found);
                }
                let choice = &event["choices"][0];
                let piece = match prompt {
                    RenderedPrompt::Completion(_) => choice["text"].as_str(),
                    RenderedPrompt::Chat(_) => choice["delta"]["content"].as_str(),
                };
                text.push_str(piece.unwrap_or_default());
                if let Some(reason) = choice["finish_reason"].as_str() {
                    finish_reason = Some(reason.to_owned());
                }
            }
        }
        if finish_reason.is_some() {
            return self.judge(text, usage, finish_reason);
        }
        retry(format!(
            "stream ended before the answer was complete (no finish_reason or [DONE]) after {} chars",
            text.chars().count()
        ))
    }

    /// Accepts an answer, or retries an empty, too short or cut-off one (a cut-off answer that
    /// the [`LlmClient::accept_cut_off`] rule accepts is used).
    fn judge(&self, text: String, usage: Option<Usage>, finish_reason: Option<String>) -> Attempt {
        let length = text.trim().chars().count();
        if length == 0 {
            return retry("empty answer");
        }
        if length < self.settings.min_chars {
            return retry(format!(
                "answer too short ({length} < {} chars): `{}`",
                self.settings.min_chars,
                text.trim()
            ));
        }
        if finish_reason.as_deref() == Some("length") && !self.cut_off.as_ref().is_some_and(|rule| (rule.0)(&text)) {
            return retry(format!(
                "answer cut off at `llm.max_tokens` = {} tokens (finish_reason `length`) before it was complete: \
                 `{}`; raise `llm.max_tokens`",
                self.settings.params.max_tokens,
                snippet(&text)
            ));
        }
        Attempt::Answer(text, usage, finish_reason)
    }
}

/// Why a response body was not read whole.
#[derive(Debug)]
enum BodyError {
    /// It is (or says it is) longer than `limit` bytes; the connection is dropped unread.
    TooLarge {
        limit: usize,
    },
    Read(reqwest::Error),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge { limit } => write!(f, "the response body exceeded {limit} bytes"),
            Self::Read(error) => f.write_str(&describe_error(error)),
        }
    }
}

/// Reads a whole response body of at most `limit` bytes: a `Content-Length` above it is refused
/// before reading, and a body without one is read chunk by chunk until it passes the limit.
async fn read_body(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|length| length > limit as u64) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `usage.{prompt_tokens, completion_tokens}`, when present.
fn usage_of(value: &Value) -> Option<Usage> {
    let usage = value.get("usage")?;
    let prompt_tokens = usage["prompt_tokens"].as_u64()?;
    let completion_tokens = usage["completion_tokens"].as_u64().unwrap_or(0);
    Some(Usage { prompt_tokens, completion_tokens })
}

fn snippet(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(BODY_SNIPPET) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// A reqwest error with its causes, e.g. "error sending request: connection refused".
fn describe_error(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "response body failed"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
