//! The HTTP client: one [`LlmClient::generate`] call is one prompt, retried as needed.

use crate::limit::RateLimiter;
use crate::{LlmError, LlmSettings, parse_retry_after};
use serde_json::{Value, json};
use sspa_prompt::RenderedPrompt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Longest `Retry-After` that is obeyed as is; longer ones are cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// Characters of an error body kept in messages.
const BODY_SNIPPET: usize = 300;

/// One usable answer.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The answer text as the server sent it.
    pub text: String,
    /// Attempts it took, the successful one included.
    pub attempts: u32,
}

/// An OpenAI-compatible client with retries, a concurrency limit and a rate limit.
#[derive(Debug)]
pub struct LlmClient {
    http: reqwest::Client,
    settings: LlmSettings,
    in_flight: Semaphore,
    rate: RateLimiter,
    requests: AtomicU64,
}

/// What one attempt came to.
enum Attempt {
    Answer(String),
    /// Worth another try; `after` is the server's `Retry-After`.
    Retry {
        reason: String,
        after: Option<Duration>,
        connect: bool,
    },
    /// This prompt will not succeed by asking again.
    Fail(String),
    Fatal(LlmError),
}

impl LlmClient {
    pub fn new(settings: LlmSettings) -> Result<Self, LlmError> {
        settings.validate()?;
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(settings.concurrency)
            .build()
            .map_err(LlmError::Client)?;
        Ok(Self {
            http,
            in_flight: Semaphore::new(settings.concurrency.max(1)),
            rate: RateLimiter::new(settings.requests_per_second),
            requests: AtomicU64::new(0),
            settings,
        })
    }

    pub fn settings(&self) -> &LlmSettings {
        &self.settings
    }

    /// HTTP requests sent so far, retries included.
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    fn route(&self, prompt: &RenderedPrompt) -> String {
        match prompt {
            RenderedPrompt::Completion(_) => format!("{}/completions", self.settings.base_url),
            RenderedPrompt::Chat(_) => format!("{}/chat/completions", self.settings.base_url),
        }
    }

    /// Checks that something answers HTTP at the base URL (`GET {base}/models`), so that a run
    /// against a stopped server fails once, clearly, instead of once per label.
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
                        let body = snippet(&response.text().await.unwrap_or_default());
                        return Err(LlmError::Refused { url, status, body });
                    }
                    return Ok(());
                }
                Err(error) if error.is_connect() || error.is_timeout() => last = describe_error(&error),
                // Anything else means a peer answered, if oddly: let the real requests judge.
                Err(_) => return Ok(()),
            }
        }
        Err(LlmError::EndpointDown { url: self.settings.base_url.clone(), reason: last })
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

    fn body(&self, prompt: &RenderedPrompt, seed: u64) -> Value {
        let params = &self.settings.params;
        let mut body = json!({
            "model": self.settings.model,
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
            "seed": seed,
            "n": 1,
            "stream": false,
        });
        if !params.stop.is_empty() {
            body["stop"] = json!(params.stop);
        }
        match prompt {
            RenderedPrompt::Completion(text) => body["prompt"] = json!(text),
            RenderedPrompt::Chat(messages) => body["messages"] = json!(messages),
        }
        body
    }

    /// Sends one prompt and returns the first usable answer, retrying transient failures.
    /// `seed` is sent as is (callers vary it per sample).
    pub async fn generate(&self, prompt: &RenderedPrompt, seed: u64) -> Result<Generation, LlmError> {
        let url = self.route(prompt);
        let body = self.body(prompt, seed);
        let retry = self.settings.retry;
        let mut only_connect_errors = true;
        let mut last_reason = String::new();
        let attempts = retry.max_retries.saturating_add(1);
        for attempt in 1..=attempts {
            let outcome = {
                let _permit = self.in_flight.acquire().await;
                self.rate.acquire().await;
                self.attempt(&url, &body, prompt).await
            };
            let (reason, after, connect) = match outcome {
                Attempt::Answer(text) => return Ok(Generation { text, attempts: attempt }),
                Attempt::Fail(reason) => return Err(LlmError::Failed { attempts: attempt, reason }),
                Attempt::Fatal(error) => return Err(error),
                Attempt::Retry { reason, after, connect } => (reason, after, connect),
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

    async fn attempt(&self, url: &str, body: &Value, prompt: &RenderedPrompt) -> Attempt {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = match self.authorised(self.http.post(url)).json(body).send().await {
            Ok(response) => response,
            Err(error) => {
                return Attempt::Retry { reason: describe_error(&error), after: None, connect: error.is_connect() };
            }
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, chrono::Utc::now()));
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(error) => return Attempt::Retry { reason: describe_error(&error), after: None, connect: false },
        };
        let code = status.as_u16();
        if !status.is_success() {
            let text = snippet(&String::from_utf8_lossy(&bytes));
            return match code {
                429 => Attempt::Retry {
                    reason: format!("HTTP 429 (rate limited): {text}"),
                    after: retry_after,
                    connect: false,
                },
                408 | 500..=599 => {
                    Attempt::Retry { reason: format!("HTTP {code}: {text}"), after: retry_after, connect: false }
                }
                401 | 403 | 404 | 405 => {
                    Attempt::Fatal(LlmError::Refused { url: url.to_owned(), status: code, body: text })
                }
                _ => Attempt::Fail(format!("HTTP {code}: {text}")),
            };
        }
        let parsed: Value = match serde_json::from_slice(&bytes) {
            Ok(value) => value,
            Err(error) => {
                let text = snippet(&String::from_utf8_lossy(&bytes));
                return Attempt::Retry {
                    reason: format!("malformed JSON ({error}): `{text}`"),
                    after: None,
                    connect: false,
                };
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
            return Attempt::Retry {
                reason: format!("malformed response: no string `{field}` in `{}`", snippet(&parsed.to_string())),
                after: None,
                connect: false,
            };
        };
        let length = text.trim().chars().count();
        if length == 0 {
            return Attempt::Retry { reason: "empty answer".into(), after: None, connect: false };
        }
        if length < self.settings.min_chars {
            return Attempt::Retry {
                reason: format!("answer too short ({length} < {} chars): `{}`", self.settings.min_chars, text.trim()),
                after: None,
                connect: false,
            };
        }
        Attempt::Answer(text.to_owned())
    }
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
