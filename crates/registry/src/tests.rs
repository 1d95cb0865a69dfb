use super::*;
use crate::version::NewVersion;
use serde_json::json;

const FILES: &[&str] = &["model.safetensors", "model_ema.safetensors", "config.json"];

fn trained(dir: &Path, tag: &str) -> PathBuf {
    let source = dir.join(format!("train-{tag}"));
    std::fs::create_dir_all(&source).expect("mkdir");
    for name in FILES {
        std::fs::write(source.join(name), format!("{tag}:{name}").repeat(100)).expect("write");
    }
    source
}

fn register(registry: &Registry, source: &Path, run: &str) -> Version {
    registry
        .register(NewVersion {
            source,
            files: FILES,
            origin: Origin {
                run_id: run.into(),
                train_key: format!("key-{run}"),
                weights: "ema".into(),
                labels: vec!["a".into(), "b".into()],
                metrics: json!({"ema": {"mAP": 80.0}}),
                lineage: json!({"config_hash": "c"}),
            },
        })
        .expect("register")
}

#[test]
fn versions_are_numbered_hashed_and_checked() {
    let tmp = tempfile::tempdir().expect("tmp");
    let registry = Registry::of_workspace(tmp.path());
    assert!(!registry.exists() && registry.version_numbers().expect("empty").is_empty());
    let v1 = register(&registry, &trained(tmp.path(), "one"), "r1");
    let v2 = register(&registry, &trained(tmp.path(), "two"), "r2");
    assert_eq!((v1.info.version, v2.info.version), (1, 2));
    assert_eq!(registry.version_numbers().expect("list"), [1, 2]);
    assert_eq!(v2.weights_file(), tmp.path().join("models/v2/model_ema.safetensors"));
    let read = registry.version(2).expect("intact");
    assert_eq!(read.info, v2.info);
    assert_eq!(read.info.files["config.json"].size, 1500, "`two:config.json` × 100");

    // Truncated weights: named, with both sizes.
    std::fs::write(v2.dir.join("model_ema.safetensors"), b"short").expect("truncate");
    let error = registry.version(2).expect_err("damaged").to_string();
    assert!(error.contains("v2") && error.contains("model_ema.safetensors") && error.contains("truncated"), "{error}");
    // Same size, other bytes.
    let path = v1.dir.join("model.safetensors");
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[0] ^= 1;
    std::fs::write(&path, bytes).expect("alter");
    assert!(registry.version(1).expect_err("altered").to_string().contains("altered"));
    let missing = registry.version(7).expect_err("no v7").to_string();
    assert!(missing.contains("no version v7") && missing.contains("v1, v2"), "{missing}");
}

#[test]
fn a_promotion_that_died_half_way_is_invisible_and_swept() {
    let tmp = tempfile::tempdir().expect("tmp");
    let registry = Registry::of_workspace(tmp.path());
    register(&registry, &trained(tmp.path(), "one"), "r1");
    // What `kill -9` during a copy leaves: a temp directory with part of the files.
    let partial = registry.dir().join(".tmp-v2-99999");
    std::fs::create_dir_all(&partial).expect("mkdir");
    std::fs::write(partial.join("model.safetensors"), b"half").expect("write");
    assert_eq!(registry.version_numbers().expect("list"), [1], "a temp directory is not a version");
    let v2 = register(&registry, &trained(tmp.path(), "two"), "r2");
    assert_eq!(v2.info.version, 2);
    assert!(!partial.exists(), "swept by the next promotion");
}

#[test]
fn aliases_move_remember_and_roll_back() {
    let tmp = tempfile::tempdir().expect("tmp");
    let registry = Registry::of_workspace(tmp.path());
    let current = Reference::Alias(CURRENT.into());
    let error = registry.resolve(&current).expect_err("nothing promoted").to_string();
    assert!(error.contains("no alias `current`") && error.contains("no model was promoted"), "{error}");
    for tag in ["one", "two", "three"] {
        let version = register(&registry, &trained(tmp.path(), tag), tag);
        registry.set_alias(CURRENT, version.info.version, "gate").expect("alias");
    }
    let alias = registry.alias(CURRENT).expect("read").expect("set");
    assert_eq!((alias.version, alias.history.clone()), (3, vec![1, 2]));
    assert_eq!(registry.resolve(&current).expect("resolve").info.version, 3);
    assert_eq!(registry.rollback(CURRENT, "bad model").expect("rollback").version, 2);
    // A damaged version is passed over.
    std::fs::remove_file(registry.dir().join("v1/config.json")).expect("damage v1");
    let error = registry.rollback(CURRENT, "again").expect_err("only v1 left, damaged").to_string();
    assert!(error.contains("no earlier version"), "{error}");
    assert_eq!(registry.alias(CURRENT).expect("read").expect("set").version, 2, "unchanged by a failed rollback");
    assert!(registry.set_alias(CURRENT, 1, "x").is_err(), "a damaged version cannot be promoted");
    assert!(registry.set_alias("Bad Name", 2, "x").is_err());
    registry.set_alias("staging", 3, "try").expect("user alias");
    let names: Vec<String> = registry.aliases().expect("aliases").into_iter().map(|a| a.alias).collect();
    assert_eq!(names, ["current", "staging"]);
}

#[test]
fn references_parse() {
    assert_eq!(Reference::parse("v12").expect("version"), Reference::Version(12));
    assert_eq!(Reference::parse("current").expect("alias"), Reference::Alias("current".into()));
    assert!(Reference::parse("v0").is_err());
    assert!(Reference::parse("Prod!").is_err());
}

#[test]
fn decisions_append_and_a_torn_line_is_skipped() {
    let tmp = tempfile::tempdir().expect("tmp");
    let registry = Registry::of_workspace(tmp.path());
    let mut refused = Decision::new(DecisionKind::Refused, CURRENT);
    refused.reasons.push("ema.mAP 70.00 < 80.00".into());
    registry.record(&Decision::new(DecisionKind::Promoted, CURRENT)).expect("record");
    registry.record(&refused).expect("record");
    let path = registry.dir().join("decisions.jsonl");
    let mut text = std::fs::read_to_string(&path).expect("read");
    text.push_str("{\"at\": \"2026-");
    std::fs::write(&path, text).expect("torn");
    let read = registry.decisions().expect("decisions");
    assert_eq!(read.len(), 2);
    assert_eq!(read[1], refused);
}
