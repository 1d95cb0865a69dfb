//! `llm.probe_concurrency` as the config loader reads it (the shipped demo domain, overridden).

use sspa_config::{Checks, Override, load_with_overrides};
use std::path::Path;

fn demo_with(overrides: &[&str]) -> Result<sspa_config::LoadedConfig, sspa_config::ConfigErrors> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let overrides: Vec<Override> = overrides.iter().map(|o| o.parse().expect("override")).collect();
    load_with_overrides(&root.join("domains/demo.toml"), &Checks::default(), &overrides)
}

#[test]
fn probe_concurrency_is_opt_in_and_at_least_concurrency() {
    let loaded = demo_with(&[]).expect("the demo loads");
    assert_eq!(loaded.config.llm.probe_concurrency, None);
    // Unset, it is not part of the config's values (nor of the describe stage's key).
    assert!(loaded.json()["llm"].get("probe_concurrency").is_none(), "{}", loaded.json()["llm"]);

    let loaded = demo_with(&["llm.concurrency=4", "llm.probe_concurrency=16"]).expect("valid");
    assert_eq!((loaded.config.llm.concurrency, loaded.config.llm.probe_concurrency), (4, Some(16)));
    assert_eq!(loaded.json()["llm"]["probe_concurrency"], 16);

    let errors = demo_with(&["llm.concurrency=4", "llm.probe_concurrency=2"]).expect_err("below concurrency");
    let message = errors.to_string();
    assert!(message.contains("llm.probe_concurrency") && message.contains("(4)"), "{message}");
}
