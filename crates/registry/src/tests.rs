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

/// Issue 26: after a torn last line, `models promote` appended its record on the same line: the
/// reader skipped both and `jq` failed on the file. Every record now starts a line of its own and
/// the reader reports the torn line.
#[test]
fn a_record_after_a_torn_line_starts_a_fresh_line_and_the_torn_one_is_reported() {
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
    let mut forced = Decision::new(DecisionKind::Forced, CURRENT);
    forced.version = Some(2);
    registry.record(&forced).expect("record after the torn line");
    let log = registry.decisions().expect("decisions");
    assert_eq!(log.decisions.len(), 3, "the record after the torn line is kept: {log:?}");
    assert_eq!((&log.decisions[1], &log.decisions[2]), (&refused, &forced));
    assert_eq!(log.torn.iter().map(|t| t.line).collect::<Vec<_>>(), [3], "{log:?}");
    let text = std::fs::read_to_string(&path).expect("read");
    let last = text.lines().last().expect("a last line");
    assert_eq!(serde_json::from_str::<Decision>(last).expect("the last line is one whole record"), forced);
}

fn promoted(registry: &Registry, dir: &Path, tag: &str) -> u32 {
    let version = register(registry, &trained(dir, tag), tag).info.version;
    registry.set_alias(CURRENT, version, "gate").expect("alias");
    let mut decision = Decision::new(DecisionKind::Promoted, CURRENT);
    decision.version = Some(version);
    registry.record(&decision).expect("record");
    version
}

/// Issue 26: a damaged champion (one byte appended to a file of v1) made the gate treat the
/// candidate as the first version and promote it. The gate fails closed: the newest intact
/// version the alias pointed at before, else no champion at all (refuse).
#[test]
fn a_champion_that_cannot_be_used_falls_back_to_an_intact_earlier_version_or_none() {
    let tmp = tempfile::tempdir().expect("tmp");
    let registry = Registry::of_workspace(tmp.path());
    assert!(matches!(registry.champion(CURRENT), Champion::First), "nothing was ever promoted");
    promoted(&registry, tmp.path(), "one");
    assert!(matches!(registry.champion(CURRENT), Champion::Current(ref v) if v.info.version == 1));
    let mut history =
        std::fs::OpenOptions::new().append(true).open(registry.dir().join("v1/config.json")).expect("open");
    std::io::Write::write_all(&mut history, b" ").expect("append a byte");
    match registry.champion(CURRENT) {
        Champion::Unusable { why } => assert!(why.contains("v1") && why.contains("no version before"), "{why}"),
        other => panic!("a damaged only version must not open the gate: {other:?}"),
    }
    // v2 and v3 promoted; v3 damaged: v2 is the champion, and the decision says why.
    let tmp2 = tempfile::tempdir().expect("tmp");
    let registry = Registry::of_workspace(tmp2.path());
    for tag in ["one", "two", "three"] {
        promoted(&registry, tmp2.path(), tag);
    }
    std::fs::remove_dir_all(registry.dir().join("v3")).expect("delete v3");
    match registry.champion(CURRENT) {
        Champion::Fallback { version, why } => {
            assert_eq!(version.info.version, 2);
            assert!(why.contains("points at v3"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    // An alias file that does not parse: the decision log's history stands in for it, and the
    // next promotion replaces the file with that history.
    std::fs::write(registry.dir().join("aliases/current.json"), b"{\"alias\": ").expect("damage the alias");
    match registry.champion(CURRENT) {
        Champion::Fallback { version, why } => {
            assert_eq!(version.info.version, 2, "v3 is gone; the log's newest intact is v2");
            assert!(why.contains("current.json"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    let moved = registry.set_alias(CURRENT, 1, "repair").expect("a damaged alias file is replaced");
    assert_eq!((moved.version, moved.history), (1, vec![2, 3]));
    // The alias file deleted while versions exist: the log still says what was promoted.
    std::fs::remove_file(registry.dir().join("aliases/current.json")).expect("delete the alias");
    assert!(matches!(registry.champion(CURRENT), Champion::Fallback { ref version, .. } if version.info.version == 2));
    std::fs::remove_file(registry.dir().join("decisions.jsonl")).expect("delete the log");
    match registry.champion(CURRENT) {
        Champion::Unusable { why } => {
            assert!(why.contains("no alias `current`") && why.contains("models promote"), "{why}")
        }
        other => panic!("versions exist, so this is no first promotion: {other:?}"),
    }
}
