//! `sspa-pipe cache status|push|pull|verify`: the remote cache (`[cache] remote`) by hand — which
//! of the config's stage results are here and there, push what is only here, pull what is only
//! there, check every entry on the remote (and replace the damaged ones). Pulls are checked file by
//! file and against the stage's declared outputs, and published atomically, like results the
//! runner pulls.

use super::print_json;
use crate::cli::ConfigArgs;
use crate::exit::{self, UsageError};
use serde::Serialize;
use sspa_dag::remote::{human_bytes, pull_result};
use sspa_dag::{Existing, Progress, RemoteHandle, RunOptions, error_chain};

#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// Each stage of the config: its key, whether its result is cached here and on the remote.
    Status {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long)]
        json: bool,
    },
    /// Push every result of the config's stages that is cached here and not on the remote.
    Push {
        #[command(flatten)]
        config: ConfigArgs,
        /// Also stages whose `[cache.stages.<name>] push` is false.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Pull every result of the config's stages that is on the remote and not cached here.
    Pull {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long)]
        json: bool,
    },
    /// Check every entry on the remote of the pipeline's stages (any key): download each file and
    /// compare its size and BLAKE3 with the entry's manifest.
    Verify {
        #[command(flatten)]
        config: ConfigArgs,
        /// Replace each damaged entry: push this workspace's copy when it has the result, else
        /// take the entry off the remote (the next run that computes it pushes it again).
        #[arg(long)]
        repair: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Serialize)]
struct Row {
    stage: String,
    key: String,
    local: bool,
    remote: bool,
    /// What `push`/`pull` did: `pushed`, `pulled`, `already there`, `skipped (push = false)`,
    /// `failed: …`.
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<String>,
    bytes: u64,
    seconds: f64,
}

pub fn cache(command: &CacheCommand, progress: bool) -> anyhow::Result<u8> {
    let (config, json) = match command {
        CacheCommand::Status { config, json }
        | CacheCommand::Push { config, json, .. }
        | CacheCommand::Pull { config, json }
        | CacheCommand::Verify { config, json, .. } => (config, *json),
    };
    let (loaded, project) = crate::project::load(config)?;
    let remote = crate::project::remote(&loaded, &project.spec)?
        .ok_or_else(|| UsageError(format!("`{}` has no `[cache] remote`", loaded.path.display())))?;
    if let CacheCommand::Verify { repair, .. } = command {
        return verify(&project, &remote, *repair, progress, json);
    }
    let registry = sspa_stages::registry();
    let plan = sspa_dag::plan(&project, &registry, &RunOptions::default())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build()?;
    let workspace = &project.workspace;
    let _lock = match command {
        CacheCommand::Status { .. } => None,
        _ => Some(sspa_dag::WorkspaceLock::acquire(&workspace.root, "sspa-pipe cache")?),
    };
    let mut rows = Vec::new();
    let mut failed = 0;
    for stage in &plan.stages {
        let local = workspace.missing_outputs(&stage.name, &stage.key).is_some_and(|missing| missing.is_empty());
        let on_remote = runtime.block_on(remote.contains(&stage.name, &stage.key))?;
        let mut row = Row {
            stage: stage.name.clone(),
            key: stage.key.clone(),
            local,
            remote: on_remote,
            action: None,
            bytes: 0,
            seconds: 0.0,
        };
        let started = std::time::Instant::now();
        match command {
            CacheCommand::Status { .. } => {}
            CacheCommand::Push { all, .. } if local && !on_remote => {
                if !*all && !remote.pushes(&stage.name) {
                    row.action = Some("skipped (push = false)".into());
                } else {
                    let dir = workspace.result_dir(&stage.name, &stage.key);
                    let bar = transfer_bar(progress, &stage.name);
                    match runtime.block_on(remote.push(&stage.name, &stage.key, &dir, Existing::KeepIfIntact, bar)) {
                        Ok(transfer) => {
                            row.remote = true;
                            row.bytes = transfer.bytes;
                            row.action = Some(if transfer.already_there { "already there" } else { "pushed" }.into());
                        }
                        Err(error) => {
                            failed += 1;
                            row.action = Some(format!("failed: {}", error_chain(&error)));
                        }
                    }
                }
            }
            CacheCommand::Pull { .. } if on_remote && !local => {
                let bar = transfer_bar(progress, &stage.name);
                let outs = project.spec.stage(&stage.name).map(|def| def.spec.outs.clone()).unwrap_or_default();
                match runtime.block_on(pull_result(workspace, &*remote, stage, &outs, bar)) {
                    Ok((_, transfer)) => {
                        row.local = true;
                        row.bytes = transfer.bytes;
                        row.action = Some("pulled".into());
                    }
                    Err(error) => {
                        failed += 1;
                        row.action = Some(format!("failed: {}", error_chain(&error)));
                    }
                }
            }
            CacheCommand::Push { .. } | CacheCommand::Pull { .. } | CacheCommand::Verify { .. } => {}
        }
        row.seconds = started.elapsed().as_secs_f64();
        rows.push(row);
    }
    print(&remote, &rows, json)?;
    Ok(if failed > 0 { exit::STAGE_FAILED } else { exit::OK })
}

/// One entry of the remote, as `verify` found it.
#[derive(Debug, Serialize)]
struct Checked {
    stage: String,
    key: String,
    /// `intact` or `damaged`.
    status: &'static str,
    files: usize,
    bytes: u64,
    /// What is wrong with a damaged entry (the first file that differs or is missing).
    #[serde(skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
    /// What `--repair` did: `pushed from here`, `removed`, `failed: …`.
    #[serde(skip_serializing_if = "Option::is_none")]
    action: Option<String>,
}

/// `cache verify [--repair]`: every entry of every stage of the pipeline on the remote, checked
/// file by file. Exit 1 when a damaged entry remains (or a repair failed).
fn verify(
    project: &sspa_dag::Project,
    remote: &RemoteHandle,
    repair: bool,
    progress: bool,
    json: bool,
) -> anyhow::Result<u8> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build()?;
    let workspace = &project.workspace;
    // A repair pushes this workspace's results: nothing may change them meanwhile.
    let _lock =
        if repair { Some(sspa_dag::WorkspaceLock::acquire(&workspace.root, "sspa-pipe cache verify")?) } else { None };
    let mut entries = Vec::new();
    for stage in project.spec.names() {
        for key in runtime.block_on(remote.keys(stage))? {
            let bar = transfer_bar(progress, stage);
            let checked = runtime.block_on(remote.verify(stage, &key, bar));
            let mut entry = Checked {
                stage: stage.to_string(),
                key,
                status: "intact",
                files: 0,
                bytes: 0,
                problem: None,
                action: None,
            };
            match checked {
                Ok(transfer) => (entry.files, entry.bytes) = (transfer.files, transfer.bytes),
                Err(damage) if damage.is_damage() => {
                    entry.status = "damaged";
                    entry.problem = Some(error_chain(&damage));
                    if repair {
                        entry.action = Some(runtime.block_on(repair_entry(project, remote, &entry.stage, &entry.key)));
                    }
                }
                Err(unreachable) => return Err(unreachable.into()),
            }
            entries.push(entry);
        }
    }
    let remaining = entries
        .iter()
        .filter(|e| e.status == "damaged" && e.action.as_deref().is_none_or(|a| a.starts_with("failed")))
        .count();
    if json {
        print_json(&serde_json::json!({"remote": remote.location(), "entries": entries}))?;
    } else {
        println!("remote: {}", remote.location());
        println!("{:<10} {:<12} {:>5} status", "stage", "key", "files");
        for e in &entries {
            let status = match (&e.problem, &e.action) {
                (None, _) => format!("intact ({})", human_bytes(e.bytes)),
                (Some(problem), None) => format!("damaged: {problem}"),
                (Some(problem), Some(action)) => format!("damaged: {problem}; {action}"),
            };
            println!("{:<10} {:<12} {:>5} {status}", e.stage, e.key.get(..12).unwrap_or(&e.key), e.files);
        }
        let damaged = entries.iter().filter(|e| e.status == "damaged").count();
        println!("{} entries, {damaged} damaged, {remaining} left damaged", entries.len());
    }
    Ok(if remaining > 0 { exit::STAGE_FAILED } else { exit::OK })
}

/// Replaces a damaged entry with this workspace's result when it has it, else takes it off the
/// remote; says what it did.
async fn repair_entry(project: &sspa_dag::Project, remote: &RemoteHandle, stage: &str, key: &str) -> String {
    let workspace = &project.workspace;
    let repaired = if workspace.missing_outputs(stage, key).is_some_and(|missing| missing.is_empty()) {
        let dir = workspace.result_dir(stage, key);
        remote.push(stage, key, &dir, Existing::Replace, Progress::hidden()).await.map(|_| "repaired: pushed from here")
    } else {
        remote.remove(stage, key).await.map(|()| "removed from the remote (not cached here)")
    };
    repaired.map_or_else(|error| format!("failed: {}", error_chain(&error)), str::to_owned)
}

/// A bytes bar on a terminal, nothing otherwise.
fn transfer_bar(progress: bool, stage: &str) -> Progress {
    if !progress {
        return Progress::hidden();
    }
    let bar = indicatif::ProgressBar::new(0).with_prefix(stage.to_owned());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix:>10.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Progress::from_bar(bar)
}

fn print(remote: &RemoteHandle, rows: &[Row], json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(&serde_json::json!({"remote": remote.location(), "stages": rows}));
    }
    println!("remote: {}", remote.location());
    println!("{:<10} {:<12} {:<6} {:<7} action", "stage", "key", "here", "remote");
    let yes = |b: bool| if b { "yes" } else { "no" };
    for row in rows {
        let action = match &row.action {
            Some(action) if row.bytes > 0 => format!("{action} {} in {:.1} s", human_bytes(row.bytes), row.seconds),
            Some(action) => action.clone(),
            None => String::new(),
        };
        println!("{:<10} {:<12} {:<6} {:<7} {action}", row.stage, &row.key[..12], yes(row.local), yes(row.remote));
    }
    Ok(())
}
