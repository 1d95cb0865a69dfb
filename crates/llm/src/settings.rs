//! Resolved client settings: the `[llm]` section plus the environment.

use crate::LlmError;
use serde::Serialize;
use sspa_config::{LlmApi, LlmSection};
use std::time::Duration;

/// An API key. Its `Debug` and `Display` never show the value.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(value: String) -> Self {
        Self(value)
    }
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl std::fmt::Display for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The sampling parameters sent with every request; all of them are part of the cache key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GenerationParams {
    pub temperature: f64,
    pub max_tokens: u32,
    pub stop: Vec<String>,
    pub seed: u64,
}

/// How failed attempts are retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Wait before the first retry; doubles each time, with jitter.
    pub base_delay: Duration,
    /// Longest wait between attempts (also caps `Retry-After`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_retries: 4, base_delay: Duration::from_millis(500), max_delay: Duration::from_secs(30) }
    }
}

impl RetryPolicy {
    /// Wait before retry number `retry` (0-based): `base * 2^retry`, capped, times a random
    /// factor in [0.5, 1) so that clients that failed together do not retry together.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exponential = self.base_delay.saturating_mul(1u32 << retry.min(20)).min(self.max_delay);
        let jitter: f64 = rand::random_range(0.5..1.0);
        exponential.mul_f64(jitter)
    }
}

/// Everything the client needs, resolved from `[llm]` and the environment.
#[derive(Debug, Clone)]
pub struct LlmSettings {
    /// Base URL up to and including `/v1`, without a trailing slash.
    pub base_url: String,
    pub model: String,
    pub api: LlmApi,
    pub params: GenerationParams,
    /// The whole answer must arrive within this.
    pub timeout: Duration,
    /// Ask for server-sent events; see [`LlmSettings::idle_timeout`].
    pub stream: bool,
    /// A streaming answer that sends nothing for this long is closed and retried.
    pub idle_timeout: Duration,
    /// Requests in flight at once, at most; the adaptive limit starts here and stays at or
    /// below it (see `LlmClient`).
    pub concurrency: usize,
    /// Opt-in: while the server advertises no slots, the adaptive limit may rise above
    /// `concurrency` up to this (at least `concurrency`).
    pub probe_concurrency: Option<usize>,
    /// Requests started per second at most; 0 means unlimited.
    pub requests_per_second: f64,
    pub retry: RetryPolicy,
    /// Answers shorter than this many characters (after trimming) are retried, then failed.
    pub min_chars: usize,
    pub api_key: Option<ApiKey>,
}

impl LlmSettings {
    /// Resolves `[llm]`: `base_url_env` overrides `base_url` when set, and the key is read from
    /// `api_key_env`.
    pub fn from_config(section: &LlmSection) -> Result<Self, LlmError> {
        let base_url = section
            .base_url_env
            .as_deref()
            .and_then(|name| std::env::var(name).ok())
            .filter(|url| !url.trim().is_empty())
            .unwrap_or_else(|| section.base_url.clone());
        let api_key = match section.api_key_env.as_deref() {
            None => None,
            Some(name) => match std::env::var(name) {
                Ok(value) if !value.is_empty() => Some(ApiKey::new(value)),
                _ => return Err(LlmError::MissingKey { name: name.to_owned() }),
            },
        };
        let settings = Self {
            base_url: base_url.trim().trim_end_matches('/').to_owned(),
            model: section.model.clone(),
            api: section.api,
            params: GenerationParams {
                temperature: section.temperature,
                max_tokens: section.max_tokens,
                stop: section.stop.clone(),
                seed: section.seed,
            },
            timeout: duration("timeout_s", section.timeout_s)?,
            stream: section.stream,
            idle_timeout: duration("idle_timeout_s", section.idle_timeout_s)?,
            concurrency: section.concurrency.max(1) as usize,
            probe_concurrency: section.probe_concurrency.map(|probe| probe as usize),
            requests_per_second: section.requests_per_second,
            retry: RetryPolicy { max_retries: section.max_retries, ..RetryPolicy::default() },
            min_chars: section.min_chars as usize,
            api_key,
        };
        settings.validate()?;
        Ok(settings)
    }

    pub(crate) fn validate(&self) -> Result<(), LlmError> {
        let setting = |key, reason: &str| Err(LlmError::Setting { key, reason: reason.to_owned() });
        if !(self.base_url.starts_with("http://") || self.base_url.starts_with("https://")) {
            return setting("base_url", &format!("`{}` is not an http(s) URL", self.base_url));
        }
        if !(self.requests_per_second.is_finite() && self.requests_per_second >= 0.0) {
            return setting("requests_per_second", "must be 0 (unlimited) or positive");
        }
        if let Some(probe) = self.probe_concurrency
            && probe < self.concurrency
        {
            return setting(
                "probe_concurrency",
                &format!("{probe} is below `llm.concurrency` ({}): it may only allow more in flight", self.concurrency),
            );
        }
        if self.timeout.is_zero() {
            return setting("timeout_s", "must be positive");
        }
        if self.idle_timeout.is_zero() {
            return setting("idle_timeout_s", "must be positive");
        }
        Ok(())
    }
}

fn duration(key: &'static str, seconds: f64) -> Result<Duration, LlmError> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| LlmError::Setting { key, reason: format!("`{seconds}` is not a positive number of seconds") })
}
