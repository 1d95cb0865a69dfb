//! llm: a client for OpenAI-compatible servers (vLLM, llama.cpp, TGI, Ollama's OpenAI route).
//!
//! [`LlmClient::generate`] sends one prompt to `/v1/completions` or `/v1/chat/completions` and
//! retries what is worth retrying: connect errors, timeouts, dropped connections, 429 (waiting as
//! long as `Retry-After` asks), 5xx, malformed JSON, empty or too-short answers and answers cut
//! off by `max_tokens` (`finish_reason = "length"`, unless the caller's
//! [`LlmClient::accept_cut_off`] rule uses them as they are). Waits grow exponentially with
//! jitter. Answers are streamed (server-sent events) when `stream` is set: a stream silent for
//! `idle_timeout` or an answer slower than `timeout` is closed (so the server stops generating
//! it) and retried; a server that refuses streaming is asked without, from then on. A response
//! body longer than [`response_limit`] (the larger of 1 MiB and 4 KiB per `max_tokens` token)
//! fails its prompt as soon as it passes the limit. Requests in flight start at `concurrency`
//! and adapt (AIMD): halved on timeouts, 429 and 503, one more after a window of successes, never
//! above `concurrency` (or `probe_concurrency`, opt-in, while the server advertises no slots) nor
//! the slots the server advertises (llama.cpp `GET /props`). At most `requests_per_second` start
//! each second, retries included. The API key is read from the environment variable the config
//! names and is never logged ([`ApiKey`] redacts itself).

mod client;
#[cfg(feature = "fault-server")]
pub mod fault_server;
mod limit;
mod settings;

pub use client::{Generation, LlmClient, MIN_RESPONSE_BYTES, RESPONSE_BYTES_PER_TOKEN, Usage, response_limit};
pub use limit::ConcurrencyStats;
pub use settings::{ApiKey, GenerationParams, LlmSettings, RetryPolicy};

use std::time::Duration;

/// Why a request or a run failed.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// Nothing listens at the endpoint: the run cannot make progress.
    #[error(
        "cannot reach the LLM endpoint `{url}`: {reason}. Start a server there (for the local model: \
         `scripts/llm-server start`) or point `llm.base_url` / `llm.base_url_env` at a running one"
    )]
    EndpointDown { url: String, reason: String },
    /// The server refused every request of this kind (bad key, unknown route or model).
    #[error("the LLM endpoint `{url}` refused the request with HTTP {status}: {body}")]
    Refused { url: String, status: u16, body: String },
    /// This one prompt failed, possibly after retries; other prompts may still succeed.
    #[error("no usable answer after {attempts} attempt(s): {reason}")]
    Failed { attempts: u32, reason: String },
    #[error("environment variable `{name}` (named by `llm.api_key_env`) is not set")]
    MissingKey { name: String },
    #[error("invalid LLM setting `{key}`: {reason}")]
    Setting { key: &'static str, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl LlmError {
    /// True when every other request would fail the same way, so a run should stop.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Self::Failed { .. })
    }
}

/// Parses a `Retry-After` value: delay seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let delta = date.with_timezone(&chrono::Utc) - now;
    Some(delta.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests;
