use super::*;

#[test]
fn second_holder_is_refused_with_pid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = WorkspaceLock::acquire(dir.path(), "run").expect("free");
    let err = WorkspaceLock::acquire(dir.path(), "run").expect_err("held");
    let text = err.to_string();
    assert!(text.contains(&format!("locked by PID {}", std::process::id())), "{text}");
    assert_eq!(WorkspaceLock::holder(dir.path()).map(|h| h.pid), Some(std::process::id()));
    drop(first);
    assert!(WorkspaceLock::holder(dir.path()).is_none());
    let again = WorkspaceLock::acquire(dir.path(), "run").expect("released");
    assert!(again.took_over.is_none());
}

#[test]
fn a_job_with_the_holders_token_works_under_its_lock() {
    let dir = tempfile::tempdir().expect("tempdir");
    let holder = WorkspaceLock::acquire_with(dir.path(), "run", None).expect("free");
    assert_eq!(holder.token().len(), 32);
    let job = WorkspaceLock::acquire_with(dir.path(), "run", Some(holder.token())).expect("delegated");
    assert!(job.delegated() && !holder.delegated());
    // A second job too; the job ending leaves the holder's lock in place.
    let other = WorkspaceLock::acquire_with(dir.path(), "run", Some(holder.token())).expect("delegated");
    drop(job);
    drop(other);
    assert_eq!(WorkspaceLock::holder(dir.path()).map(|h| h.pid), Some(std::process::id()));
    let err = WorkspaceLock::acquire_with(dir.path(), "run", Some("not-the-token")).expect_err("held");
    assert!(err.to_string().contains("locked by PID"), "{err}");
    drop(holder);
    assert!(WorkspaceLock::holder(dir.path()).is_none());
    // A token of a holder that let go is no lock.
    let fresh = WorkspaceLock::acquire_with(dir.path(), "run", Some("stale")).expect("free");
    assert!(!fresh.delegated());
}

#[test]
fn dead_holder_is_taken_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let stale = Holder {
        pid: 999_999_999,
        started: "2026-01-01T00:00:00Z".into(),
        command: "run".into(),
        token: None,
        host: None,
    };
    std::fs::write(dir.path().join("lock"), serde_json::to_string(&stale).expect("json")).expect("write");
    let lock = WorkspaceLock::acquire(dir.path(), "run").expect("stale lock is free");
    assert_eq!(lock.took_over.as_ref().map(|h| h.pid), Some(999_999_999));
}

/// A lease as a holder on `host` writes it, last renewed `age` ago.
fn lease(workspace: &Path, generation: u64, host: &str, token: &str, age: Duration) -> PathBuf {
    let holder = Holder {
        pid: 4242,
        started: "2026-03-01T02:00:00Z".into(),
        command: "run".into(),
        token: Some(token.into()),
        host: Some(host.into()),
    };
    let path = lease_path(workspace, generation);
    std::fs::write(&path, serde_json::to_string(&holder).expect("json")).expect("write lease");
    let file = OpenOptions::new().write(true).open(&path).expect("open");
    file.set_modified(SystemTime::now() - age).expect("set mtime");
    path
}

/// Issue 26: where `flock` is local to each node (NFS `nolock`, Lustre `localflock`, BeeGFS), a
/// process on another node found the `flock` free and took the workspace from a live holder. The
/// holder's lease refuses it (and still lets the holder's own jobs in, by token).
#[test]
fn a_live_lease_of_another_node_refuses_the_lock_where_flock_is_node_local() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The holder runs on node-a: its flock is not visible here, its lease is.
    let path = lease(dir.path(), 3, "node-a", "tok-a", Duration::from_secs(5));
    let error = WorkspaceLock::acquire_with(dir.path(), "run", None).expect_err("held on node-a");
    let text = error.to_string();
    assert!(text.contains("locked by PID 4242 on node-a"), "{text}");
    assert!(matches!(error, DagError::Locked { .. }), "exit code 3: {error:?}");
    assert_eq!(WorkspaceLock::holder(dir.path()).and_then(|h| h.host).as_deref(), Some("node-a"));
    // A job node-a's holder submitted works under its lock.
    let job = WorkspaceLock::acquire_with(dir.path(), "run", Some("tok-a")).expect("delegated");
    assert!(job.delegated());
    drop(job);
    assert!(path.exists(), "a job leaves the holder's lease alone");
    // The flock is free again (the refused and the delegated attempts both let it go).
    let mut file = OpenOptions::new().read(true).write(true).open(dir.path().join("lock")).expect("open");
    file.try_lock().expect("flock released");
    assert!(read_holder(&mut file).is_none(), "the holder text was not overwritten");
}

#[test]
fn a_stale_lease_is_taken_over_and_a_released_one_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = lease(dir.path(), 7, "node-a", "tok-a", STALE_AFTER + Duration::from_secs(30));
    let lock = WorkspaceLock::acquire_with(dir.path(), "run", Some("tok-a")).expect("stale lease");
    assert!(!lock.delegated(), "the token of a dead holder is no lock");
    assert_eq!(lock.took_over.as_ref().map(|h| h.pid), Some(4242));
    assert!(!old.exists(), "the stale generation is removed");
    let mine = lease_path(dir.path(), 8);
    let held: Holder = serde_json::from_str(&std::fs::read_to_string(&mine).expect("lease 8")).expect("json");
    assert_eq!((held.pid, held.token.as_deref()), (std::process::id(), Some(lock.token())));
    assert!(!lock.lost());
    drop(lock);
    assert!(leases(dir.path()).is_empty(), "released: {:?}", leases(dir.path()));
}

/// After `kill -9` on this host, the next run takes the workspace at once: the dead holder's lease
/// is of this host, whose flock is free.
#[test]
fn a_lease_left_on_this_host_is_taken_over_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let host = this_host().expect("host name");
    lease(dir.path(), 1, &host, "tok", Duration::ZERO);
    let lock = WorkspaceLock::acquire(dir.path(), "run").expect("dead holder of this host");
    assert_eq!(lock.took_over.as_ref().map(|h| h.pid), Some(4242));
    assert_eq!(leases(dir.path()).iter().map(|(g, _)| *g).collect::<Vec<_>>(), [2]);
}

/// Issue 26 (CI): a holder killed between creating its lease and writing its text left an empty
/// lease, which read as "locked by PID 0 on another host" for two minutes. Leases now appear
/// whole; an empty or damaged one (from an older version) is nobody's and taken over at once,
/// and a draft a killed holder left behind neither blocks nor outlives the next holder's sweep.
#[test]
fn an_empty_lease_or_a_leftover_draft_does_not_hold_the_workspace() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(lease_path(dir.path(), 4), b"").expect("empty lease");
    let draft = dir.path().join(format!("{DRAFT_PREFIX}999999-5"));
    std::fs::write(&draft, b"{\"pid\": 999999").expect("draft");
    OpenOptions::new()
        .write(true)
        .open(&draft)
        .and_then(|f| f.set_modified(SystemTime::now() - STALE_AFTER * 2))
        .expect("age the draft");
    let lock = WorkspaceLock::acquire(dir.path(), "run").expect("an empty lease is nobody's");
    assert!(lock.took_over.is_none(), "{:?}", lock.took_over);
    assert_eq!(leases(dir.path()).iter().map(|(g, _)| *g).collect::<Vec<_>>(), [5]);
    let held: Holder = serde_json::from_str(&std::fs::read_to_string(lease_path(dir.path(), 5)).expect("lease 5"))
        .expect("the new lease is whole");
    assert_eq!(held.pid, std::process::id());
    assert!(!draft.exists(), "the old draft is swept");
    let own_drafts = std::fs::read_dir(dir.path())
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(DRAFT_PREFIX))
        .count();
    assert_eq!(own_drafts, 0, "the holder's own draft is gone once linked");
}

#[test]
fn the_heartbeat_renews_the_lease_and_notices_a_takeover() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = lease(dir.path(), 1, "node-a", "tok", STALE_AFTER * 2);
    assert!(!newest_lease(dir.path()).expect("lease").live());
    touch(&path).expect("touch");
    assert!(newest_lease(dir.path()).expect("lease").live(), "renewed");
    std::fs::remove_file(&path).expect("taken over");
    assert!(touch(&path).is_err(), "a lease taken over cannot be renewed");
}
