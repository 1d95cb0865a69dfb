use super::*;
use chrono::TimeZone;

#[test]
fn retry_after_seconds_and_dates() {
    let now = chrono::Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).single().expect("valid date");
    assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
    assert_eq!(parse_retry_after(" 0.25 ", now), Some(Duration::from_millis(250)));
    assert_eq!(parse_retry_after("Thu, 01 Jan 2026 00:00:07 GMT", now), Some(Duration::from_secs(7)));
    assert_eq!(parse_retry_after("Wed, 31 Dec 2025 23:00:00 GMT", now), Some(Duration::ZERO));
    assert_eq!(parse_retry_after("-1", now), None);
    assert_eq!(parse_retry_after("soon", now), None);
}

#[test]
fn backoff_grows_with_jitter_and_is_capped() {
    let policy =
        RetryPolicy { max_retries: 8, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
    for retry in 0..8 {
        let full = Duration::from_millis(100 * (1 << retry)).min(Duration::from_secs(1));
        for _ in 0..20 {
            let wait = policy.backoff(retry);
            assert!(wait >= full / 2 && wait < full, "retry {retry}: {wait:?} vs {full:?}");
        }
    }
}

#[test]
fn api_key_is_redacted() {
    let key = ApiKey::new("sk-secret-123".into());
    assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
    assert_eq!(key.to_string(), "<redacted>");
    let settings = LlmSettings {
        base_url: "http://127.0.0.1:1/v1".into(),
        model: "m".into(),
        api: sspa_config::LlmApi::Completions,
        params: GenerationParams { temperature: 0.0, max_tokens: 8, stop: vec![], seed: 0 },
        timeout: Duration::from_secs(1),
        stream: true,
        idle_timeout: Duration::from_secs(20),
        concurrency: 1,
        probe_concurrency: None,
        requests_per_second: 0.0,
        retry: RetryPolicy::default(),
        min_chars: 1,
        api_key: Some(key),
    };
    assert!(!format!("{settings:?}").contains("sk-secret"));
    let client = LlmClient::new(settings).expect("client");
    assert!(!format!("{client:?}").contains("sk-secret"));
}

#[test]
fn settings_from_config_read_env() {
    let mut section = sspa_config::LlmSection {
        base_url: "http://127.0.0.1:9/v1/".into(),
        base_url_env: Some("SSPA_LLM_TEST_URL_UNSET_123".into()),
        ..Default::default()
    };
    let settings = LlmSettings::from_config(&section).expect("valid");
    assert_eq!(settings.base_url, "http://127.0.0.1:9/v1");
    section.api_key_env = Some("SSPA_LLM_TEST_KEY_UNSET_123".into());
    let error = LlmSettings::from_config(&section).expect_err("missing key");
    assert!(error.to_string().contains("`SSPA_LLM_TEST_KEY_UNSET_123`"), "{error}");
    section.api_key_env = None;
    section.base_url = "ftp://x".into();
    section.base_url_env = None;
    assert!(LlmSettings::from_config(&section).is_err());
    section.base_url = "http://x/v1".into();
    section.concurrency = 4;
    section.probe_concurrency = Some(16);
    assert_eq!(LlmSettings::from_config(&section).expect("valid").probe_concurrency, Some(16));
    section.probe_concurrency = Some(3);
    let error = LlmSettings::from_config(&section).expect_err("probe below concurrency");
    assert!(error.to_string().contains("`probe_concurrency`"), "{error}");
    section.probe_concurrency = None;
    section.timeout_s = 0.0;
    assert!(LlmSettings::from_config(&section).is_err());
}
