//! `sspa-pipe cache status|push|pull`: the remote cache (`[cache] remote`) by hand — which of the
//! config's stage results are here and there, push what is only here, pull what is only there.
//! Pulls are checked file by file and published atomically, like results the runner pulls.

use super::print_json;
use crate::cli::ConfigArgs;
use crate::exit::{self, UsageError};
use serde::Serialize;
use sspa_dag::remote::{human_bytes, pull_result};
use sspa_dag::{Progress, RemoteHandle, RunOptions};

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
        | CacheCommand::Pull { config, json } => (config, *json),
    };
    let (loaded, project) = crate::project::load(config)?;
    let remote = crate::project::remote(&loaded, &project.spec)?
        .ok_or_else(|| UsageError(format!("`{}` has no `[cache] remote`", loaded.path.display())))?;
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
        let on_remote = runtime.block_on(remote.contains(&stage.name, &stage.key)).map_err(anyhow::Error::msg)?;
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
                    match runtime.block_on(remote.push(&stage.name, &stage.key, &dir, bar)) {
                        Ok(transfer) => {
                            row.remote = true;
                            row.bytes = transfer.bytes;
                            row.action = Some(if transfer.already_there { "already there" } else { "pushed" }.into());
                        }
                        Err(error) => {
                            failed += 1;
                            row.action = Some(format!("failed: {error}"));
                        }
                    }
                }
            }
            CacheCommand::Pull { .. } if on_remote && !local => {
                let bar = transfer_bar(progress, &stage.name);
                match runtime.block_on(pull_result(workspace, &*remote, &stage.name, &stage.key, bar)) {
                    Ok((_, transfer)) => {
                        row.local = true;
                        row.bytes = transfer.bytes;
                        row.action = Some("pulled".into());
                    }
                    Err(error) => {
                        failed += 1;
                        row.action = Some(format!("failed: {error}"));
                    }
                }
            }
            CacheCommand::Push { .. } | CacheCommand::Pull { .. } => {}
        }
        row.seconds = started.elapsed().as_secs_f64();
        rows.push(row);
    }
    print(&remote, &rows, json)?;
    Ok(if failed > 0 { exit::STAGE_FAILED } else { exit::OK })
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
