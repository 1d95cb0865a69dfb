//! The runner with a remote cache: a pulled result is checked against the stage's declared
//! outputs like a computed one, and a damaged entry is replaced by the push that follows.

use crate::Fixture;
use sspa_dag::remote::{BoxFuture, Existing, RemoteCache, RemoteHandle, Transfer, TransferError};
use sspa_dag::store::ResultInfo;
use sspa_dag::{Progress, RunOptions, StageStatus};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Files a pull writes: name and content.
type Files = Vec<(String, Vec<u8>)>;

/// A remote holding, for each `(stage, key)`, the files a pull writes.
#[derive(Default)]
struct FakeRemote {
    entries: BTreeMap<(String, String), Files>,
    /// Every push: stage and how it treated an existing entry.
    pushes: Mutex<Vec<(String, Existing)>>,
}

impl RemoteCache for FakeRemote {
    fn location(&self) -> String {
        "fake://remote".into()
    }
    fn pushes(&self, _: &str) -> bool {
        true
    }
    fn contains<'a>(&'a self, stage: &'a str, key: &'a str) -> BoxFuture<'a, Result<bool, TransferError>> {
        Box::pin(async move { Ok(self.entries.contains_key(&(stage.into(), key.into()))) })
    }
    fn pull<'a>(
        &'a self,
        stage: &'a str,
        key: &'a str,
        into: &'a Path,
        _: Progress,
    ) -> BoxFuture<'a, Result<Transfer, TransferError>> {
        Box::pin(async move {
            let files = self.entries.get(&(stage.into(), key.into())).cloned().unwrap_or_default();
            for (name, bytes) in &files {
                std::fs::write(into.join(name), bytes).map_err(TransferError::local(into.join(name)))?;
            }
            Ok(Transfer { files: files.len(), bytes: 1, ..Transfer::default() })
        })
    }
    fn push<'a>(
        &'a self,
        stage: &'a str,
        _: &'a str,
        _: &'a Path,
        existing: Existing,
        _: Progress,
    ) -> BoxFuture<'a, Result<Transfer, TransferError>> {
        Box::pin(async move {
            self.pushes.lock().expect("pushes").push((stage.to_owned(), existing));
            Ok(Transfer { files: 1, bytes: 1, replaced: existing == Existing::Replace, ..Transfer::default() })
        })
    }
    fn verify<'a>(&'a self, _: &'a str, _: &'a str, _: Progress) -> BoxFuture<'a, Result<Transfer, TransferError>> {
        Box::pin(async move { Ok(Transfer::default()) })
    }
    fn remove<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, Result<(), TransferError>> {
        Box::pin(async move { Ok(()) })
    }
    fn keys<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<Vec<String>, TransferError>> {
        Box::pin(async move { Ok(Vec::new()) })
    }
}

/// A fake remote holding, for the planned stage `name`, a `.sspa-done.json` of its key that lists
/// no outputs (pulled in `duration_s`), beside `files`; and the planned stage's key.
fn remote_with(f: &Fixture, name: &str, duration_s: f64, files: Files) -> (FakeRemote, String) {
    let plan = sspa_dag::plan(&f.project(), &f.registry, &RunOptions::default()).expect("plan");
    let planned = plan.get(name).expect("planned");
    let marker = ResultInfo {
        key: planned.key.clone(),
        parts: planned.parts.clone(),
        outs: Vec::new(),
        finished_at: "2026-01-01T00:00:00.000Z".into(),
        duration_s,
    };
    let mut all = vec![(".sspa-done.json".to_owned(), serde_json::to_vec(&marker).expect("json"))];
    all.extend(files);
    let mut remote = FakeRemote::default();
    remote.entries.insert((name.into(), planned.key.clone()), all);
    (remote, planned.key.clone())
}

/// Issue 26: a pulled result was checked only against its own `.sspa-done.json`, so a remote
/// marker listing no outputs was published without them and then counted as `unchanged`. It is
/// now checked against the stage's declared `outs`: the pull fails, the stage is computed, and
/// its push replaces the damaged entry.
#[test]
fn a_pulled_result_lacking_a_declared_output_is_computed_and_its_entry_replaced() {
    let f = Fixture::new(Duration::ZERO);
    let project = f.project();
    // A marker of the right key that lists no outputs, and no `out.txt`.
    let (remote, key) = remote_with(&f, "describe", 1.0, Vec::new());
    let remote = Arc::new(remote);
    let options = RunOptions { remote: Some(RemoteHandle(remote.clone())), ..RunOptions::default() };
    let (record, outcome) = f.run(&options);
    assert_eq!(outcome, sspa_dag::Outcome::Succeeded, "{:?}", record.stages);
    let stage = Fixture::stage(&record, "describe");
    assert_eq!(stage.status, StageStatus::Ran, "computed instead: {stage:?}");
    let note = stage.remote.as_deref().unwrap_or_default();
    assert!(
        note.starts_with("pull failed: the pulled result of `describe` lacks declared output(s): out.txt"),
        "{note}"
    );
    assert!(note.contains("; replaced a damaged entry: pushed 1 files, 1 B in "), "{note}");
    let pushes = remote.pushes.lock().expect("pushes").clone();
    assert!(pushes.contains(&("describe".into(), Existing::Replace)), "{pushes:?}");
    assert!(pushes.contains(&("shard".into(), Existing::KeepIfIntact)), "{pushes:?}");
    let published = project.workspace.result_dir("describe", &key);
    assert!(published.join("out.txt").is_file());
    // The next run finds every result complete.
    let (again, _) = f.run(&RunOptions::default());
    assert!(again.stages.iter().all(|s| s.status == StageStatus::Skipped), "{:?}", again.stages);
}

/// A pulled result with every declared output is published with the declared outputs in its
/// marker (not the pulled marker's list), so a later loss of one is seen.
#[test]
fn a_complete_pulled_result_is_published_with_the_declared_outputs() {
    let f = Fixture::new(Duration::ZERO);
    let project = f.project();
    let (remote, key) = remote_with(&f, "shard", 2.5, vec![("out.txt".into(), b"pulled shard".to_vec())]);
    let options = RunOptions { remote: Some(RemoteHandle(Arc::new(remote))), ..RunOptions::default() };
    let (record, _) = f.run(&options);
    assert_eq!(Fixture::stage(&record, "shard").status, StageStatus::Pulled);
    let dir = project.workspace.result_dir("shard", &key);
    let info: ResultInfo =
        serde_json::from_slice(&std::fs::read(dir.join(".sspa-done.json")).expect("marker")).expect("json");
    assert_eq!((info.outs, info.duration_s), (vec!["out.txt".to_owned()], 2.5));
    std::fs::remove_file(dir.join("out.txt")).expect("rm");
    assert_eq!(project.workspace.missing_outputs("shard", &key), Some(vec!["out.txt".to_owned()]));
}
