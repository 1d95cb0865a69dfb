use super::*;

fn result_dir(root: &Path) -> PathBuf {
    let dir = root.join("result");
    std::fs::create_dir_all(dir.join("maps")).expect("mkdir");
    std::fs::write(dir.join(".sspa-done.json"), br#"{"key": "k1"}"#).expect("write");
    std::fs::write(dir.join("metrics.json"), b"{\"mAP\": 80}").expect("write");
    std::fs::write(dir.join("maps/a.png"), vec![7u8; 3000]).expect("write");
    dir
}

fn remote(root: &Path) -> ObjectRemote {
    let url = format!("file://{}", root.join("bucket").display());
    ObjectRemote::open(&url, PushPolicy { default: true, stages: [("shard".to_owned(), false)].into() }).expect("open")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[test]
fn a_pushed_result_pulls_back_byte_for_byte() {
    let tmp = tempfile::tempdir().expect("tmp");
    let source = result_dir(tmp.path());
    let remote = remote(tmp.path());
    assert!(remote.pushes("train") && !remote.pushes("shard"));
    runtime().block_on(async {
        assert!(!remote.contains("evaluate", "k1").await.expect("lookup"));
        let pushed =
            remote.push("evaluate", "k1", &source, Existing::KeepIfIntact, Progress::hidden()).await.expect("push");
        assert_eq!((pushed.files, pushed.bytes, pushed.already_there), (3, 13 + 11 + 3000, false));
        assert!(remote.contains("evaluate", "k1").await.expect("lookup"));
        let again =
            remote.push("evaluate", "k1", &source, Existing::KeepIfIntact, Progress::hidden()).await.expect("push");
        assert!(again.already_there, "a published key is not uploaded twice");
        let into = tmp.path().join("pulled");
        std::fs::create_dir_all(&into).expect("mkdir");
        let pulled = remote.pull("evaluate", "k1", &into, Progress::hidden()).await.expect("pull");
        assert_eq!(pulled.files, 3);
        for file in [".sspa-done.json", "metrics.json", "maps/a.png"] {
            assert_eq!(std::fs::read(into.join(file)).expect("pulled"), std::fs::read(source.join(file)).expect("src"));
        }
    });
}

#[test]
fn a_tampered_object_is_named_and_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let source = result_dir(tmp.path());
    let remote = remote(tmp.path());
    runtime().block_on(async {
        remote.push("evaluate", "k1", &source, Existing::KeepIfIntact, Progress::hidden()).await.expect("push");
        let manifest = remote.manifest("evaluate", "k1").await.expect("read").expect("published");
        let object = tmp.path().join("bucket/evaluate/k1").join(&manifest.upload).join("metrics.json");
        std::fs::write(&object, b"{\"mAP\": 99}").expect("tamper");
        let into = tmp.path().join("pulled");
        std::fs::create_dir_all(&into).expect("mkdir");
        let error = remote.pull("evaluate", "k1", &into, Progress::hidden()).await.expect_err("tampered");
        assert!(error.is_damage(), "{error:?}");
        let error = error.to_string();
        assert!(error.contains("metrics.json") && error.contains("does not match its manifest"), "{error}");
    });
}

#[test]
fn data_without_a_manifest_is_invisible_and_a_second_writer_yields() {
    let tmp = tempfile::tempdir().expect("tmp");
    let source = result_dir(tmp.path());
    let remote = remote(tmp.path());
    runtime().block_on(async {
        // What a push killed before its manifest leaves: objects of an upload, no manifest.
        let partial = remote.path(&["train", "k2", "up-dead", "model.safetensors"]);
        remote.store.put(&partial, PutPayload::from(vec![1u8; 64])).await.expect("put");
        assert!(!remote.contains("train", "k2").await.expect("lookup"));
        assert!(remote.manifest("train", "k2").await.expect("read").is_none());

        // Two writers of one key: the first manifest wins; the loser's upload is removed.
        remote.push("train", "k3", &source, Existing::KeepIfIntact, Progress::hidden()).await.expect("first");
        let winner = remote.manifest("train", "k3").await.expect("read").expect("published");
        let loser = Manifest { upload: "up-loser".into(), ..winner.clone() };
        let create = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        let body = serde_json::to_vec(&loser).expect("json");
        let second = remote.store.put_opts(&remote.path(&["train", "k3", MANIFEST]), body.into(), create).await;
        assert!(matches!(second, Err(object_store::Error::AlreadyExists { .. })), "{second:?}");
        assert_eq!(remote.manifest("train", "k3").await.expect("read"), Some(winner));
    });
}

#[test]
fn missing_s3_credentials_name_the_variables_and_bad_urls_are_refused() {
    // Runs only where the variables are unset (as in CI without the test S3 server's keys).
    if S3_KEYS.iter().all(|name| std::env::var(name).is_err()) {
        let error = ObjectRemote::open("s3://bucket/p", PushPolicy::default()).expect_err("no keys").to_string();
        assert!(error.contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"), "{error}");
    }
    let error = ObjectRemote::open("ftp://host/x", PushPolicy::default()).expect_err("scheme").to_string();
    assert!(error.contains("unsupported scheme `ftp`"), "{error}");
    assert!(safe_join(Path::new("/d"), "../x").is_none() && safe_join(Path::new("/d"), "a/b").is_some());
}

/// The object of `file` in the published upload of `(stage, key)` under the `file://` bucket.
fn object(root: &Path, remote: &ObjectRemote, stage: &str, key: &str, file: &str) -> PathBuf {
    let manifest = runtime().block_on(remote.manifest(stage, key)).expect("read").expect("published");
    root.join("bucket").join(stage).join(key).join(&manifest.upload).join(file)
}

/// Issue 26: when an entry's data files were gone (a lifecycle rule, a partial sync, a writer
/// that deleted its own upload after a create-only put answered 5xx), the next push was refused by
/// the create-only manifest ("already on the remote") and every later pull failed, forever. A push
/// now checks the entry and replaces it.
#[test]
fn a_push_replaces_an_entry_whose_files_are_gone() {
    let tmp = tempfile::tempdir().expect("tmp");
    let source = result_dir(tmp.path());
    let remote = remote(tmp.path());
    let rt = runtime();
    rt.block_on(remote.push("evaluate", "k1", &source, Existing::KeepIfIntact, Progress::hidden())).expect("push");
    let damaged = rt.block_on(remote.manifest("evaluate", "k1")).expect("read").expect("published");
    std::fs::remove_file(object(tmp.path(), &remote, "evaluate", "k1", "metrics.json")).expect("lifecycle rule");

    let pushed = rt
        .block_on(remote.push("evaluate", "k1", &source, Existing::KeepIfIntact, Progress::hidden()))
        .expect("push again");
    assert!(pushed.replaced && !pushed.already_there, "{pushed:?}");
    assert_eq!(pushed.files, 3);
    let replaced = rt.block_on(remote.manifest("evaluate", "k1")).expect("read").expect("published");
    assert_ne!(replaced.upload, damaged.upload, "a fresh upload");
    assert_eq!(replaced.files, damaged.files, "the same content");
    assert!(
        !tmp.path().join("bucket/evaluate/k1").join(&damaged.upload).join("maps/a.png").exists(),
        "the damaged upload's remaining objects are removed"
    );
    let into = tmp.path().join("pulled");
    std::fs::create_dir_all(&into).expect("mkdir");
    rt.block_on(remote.pull("evaluate", "k1", &into, Progress::hidden())).expect("pulls again");
    rt.block_on(remote.verify("evaluate", "k1", &Progress::hidden())).expect("intact");
    // An intact entry stays: the next push keeps it.
    let again =
        rt.block_on(remote.push("evaluate", "k1", &source, Existing::KeepIfIntact, Progress::hidden())).expect("push");
    assert!(again.already_there && !again.replaced, "{again:?}");
}

/// A file altered in place with its size kept is found by a pull (BLAKE3), not by a push's size
/// check: the run then pushes with `Existing::Replace`, and `verify` finds it too.
#[test]
fn an_entry_a_pull_found_damaged_is_replaced_and_verify_names_the_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let source = result_dir(tmp.path());
    let remote = remote(tmp.path());
    let rt = runtime();
    rt.block_on(remote.push("train", "k1", &source, Existing::KeepIfIntact, Progress::hidden())).expect("push");
    std::fs::write(object(tmp.path(), &remote, "train", "k1", "metrics.json"), b"{\"mAP\": 99}").expect("tamper");
    let error = rt.block_on(remote.verify("train", "k1", &Progress::hidden())).expect_err("damaged");
    assert!(matches!(error, TransferError::Mismatch { .. }), "{error:?}");
    assert!(error.to_string().contains("metrics.json"), "{error}");
    let kept =
        rt.block_on(remote.push("train", "k1", &source, Existing::KeepIfIntact, Progress::hidden())).expect("push");
    assert!(kept.already_there, "the sizes match: a push alone keeps it");
    let replaced =
        rt.block_on(remote.push("train", "k1", &source, Existing::Replace, Progress::hidden())).expect("push");
    assert!(replaced.replaced, "{replaced:?}");
    rt.block_on(remote.verify("train", "k1", &Progress::hidden())).expect("intact after the replacement");
    assert_eq!(rt.block_on(remote.keys("train")).expect("keys"), ["k1"]);
    rt.block_on(remote.remove("train", "k1")).expect("remove");
    assert!(!rt.block_on(remote.contains("train", "k1")).expect("lookup"));
    assert!(rt.block_on(remote.keys("train")).expect("keys").is_empty());
}

/// A manifest that is not one (truncated by a partial sync) is replaced too.
#[test]
fn an_unreadable_manifest_is_replaced() {
    let tmp = tempfile::tempdir().expect("tmp");
    let source = result_dir(tmp.path());
    let remote = remote(tmp.path());
    let rt = runtime();
    let location = remote.path(&["report", "k1", MANIFEST]);
    rt.block_on(remote.store.put(&location, PutPayload::from(b"{\"format\": 1, \"sta".to_vec()))).expect("put");
    let error = rt.block_on(remote.manifest("report", "k1")).expect_err("not a manifest");
    assert!(error.is_damage() && error.to_string().contains("not a result manifest"), "{error}");
    let pushed =
        rt.block_on(remote.push("report", "k1", &source, Existing::KeepIfIntact, Progress::hidden())).expect("push");
    assert!(pushed.replaced, "{pushed:?}");
    assert!(rt.block_on(remote.manifest("report", "k1")).expect("read").is_some());
}
