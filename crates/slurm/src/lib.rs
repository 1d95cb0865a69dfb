//! Stages as Slurm jobs: [`SlurmExecutor`] implements the runner's [`Executor`] with the Slurm
//! client commands (as Snakemake's and Nextflow's Slurm executors do): each stage is one batch
//! script running the tool on that stage alone (`<program> run CONFIG --only STAGE`), submitted
//! with `sbatch`, chained with `--dependency=afterok:` on the jobs it needs (and
//! `--kill-on-invalid-dep=yes`, so Slurm drops it when one of them fails), polled with `squeue`
//! (`-t all`: finished jobs stay listed for `MinJobAge`), then `sacct` where accounting exists and
//! `scontrol show job` where it does not, and cancelled with `scancel`.
//!
//! Every client command runs with a time limit ([`SlurmOptions::client_timeout`]): a controller
//! that does not answer fails the call, it never hangs the run. A job the run gives up on is
//! cancelled before the run lets go of the workspace lock: one unknown to `squeue`, `sacct` and
//! `scontrol` for [`LOST_AFTER`] (a controller failover, a purge), and one pending for longer than
//! [`SlurmOptions::max_pending`] for any reason but waiting on the jobs it needs (the error names
//! Slurm's pending reason: `Resources`, `Priority`, `ReqNodeNotAvail`, `BeginTime`, …).
//!
//! The batch script is written next to the job's log (`runs/<run>/logs/<stage>.sbatch`) so a user
//! can read or resubmit what ran.

use sspa_dag::{Executor, ExecutorError, JobEnd, JobHandle, JobRequest};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A job unknown to every client command for this long is given up (and cancelled).
pub const LOST_AFTER: Duration = Duration::from_secs(30);
/// Default of [`SlurmOptions::client_timeout`].
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`Executor::cancel`] waits for cancelled jobs to leave the queue.
const CANCEL_WAIT: Duration = Duration::from_secs(60);

/// Why a Slurm client command failed.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("cannot run `{command}` ({source}): are Slurm's client commands installed and on PATH?")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` did not answer within {} s (is the Slurm controller reachable?)", timeout.as_secs_f64())]
    Timeout { command: String, timeout: Duration },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("`squeue` cannot reach the Slurm controller: {stderr}")]
    Unreachable { stderr: String },
    #[error("`sbatch` printed no job id: {stdout:?}")]
    NoJobId { stdout: String },
    #[error("`{}`: {source}", path.display())]
    Script {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("jobs {} still running {} s after `scancel`", ids.join(", "), waited.as_secs())]
    StillRunning { ids: Vec<String>, waited: Duration },
}

/// Per-stage resources (`[executor.slurm.<stage>]`), each the `sbatch` option of that name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageResources {
    pub partition: Option<String>,
    /// `--gres`, e.g. `gpu:1`.
    pub gres: Option<String>,
    /// `--cpus-per-task`.
    pub cpus: Option<u32>,
    /// `--mem`, e.g. `16G`.
    pub mem: Option<String>,
    /// `--time`, e.g. `02:00:00`.
    pub time: Option<String>,
    /// More `sbatch` arguments, as given.
    pub args: Vec<String>,
}

/// How jobs are submitted.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// The tool as the compute nodes see it (a shared path).
    pub program: PathBuf,
    /// Arguments before `--only STAGE`: `run CONFIG [--pipeline FILE] [-S key=value]…`.
    pub run_args: Vec<OsString>,
    /// The jobs' working directory.
    pub workdir: PathBuf,
    /// Default partition (`--partition`), when set.
    pub partition: Option<String>,
    /// `sbatch` arguments for every job (`[executor.slurm] args`, then `--slurm-arg`).
    pub args: Vec<String>,
    pub stages: BTreeMap<String, StageResources>,
    /// Between two `squeue` polls of a job.
    pub poll: Duration,
    /// Longest a job may stay pending for a reason other than the jobs it needs
    /// (`[executor.slurm] max_pending_s`); it is then cancelled.
    pub max_pending: Duration,
    /// Longest one client command (`sbatch`, `squeue`, `sacct`, `scontrol`, `scancel`) may take.
    pub client_timeout: Duration,
    /// The directory of the client commands (`None`: found on `PATH`).
    pub client_dir: Option<PathBuf>,
}

/// Slurm's job states that are final.
const FINAL_STATES: &[&str] = &[
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "PREEMPTED",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "SPECIAL_EXIT",
    "REVOKED",
];

fn is_final(state: &str) -> bool {
    FINAL_STATES.contains(&state)
}

/// A job's state as `squeue` lists it, and why it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    state: String,
    reason: String,
}

#[derive(Debug)]
pub struct SlurmExecutor {
    options: SlurmOptions,
    /// [`LOST_AFTER`] (shorter in tests).
    lost_after: Duration,
}

impl SlurmExecutor {
    /// Checks that `squeue` runs (the cluster's client commands are installed and a controller
    /// answers); the error says which failed and what it printed.
    pub fn connect(options: SlurmOptions) -> Result<Self, SlurmError> {
        let executor = Self { options, lost_after: LOST_AFTER };
        let out = executor.client("squeue", &["-h", "-o", "%i", "-j", "1"])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // An unknown job id is an answer: the controller is up.
        if !out.status.success() && !stderr.contains("Invalid job id") {
            return Err(SlurmError::Unreachable { stderr: stderr.trim().to_string() });
        }
        Ok(executor)
    }

    /// Runs one client command within [`SlurmOptions::client_timeout`].
    fn client(&self, program: &str, args: &[&str]) -> Result<Output, SlurmError> {
        let path = match &self.options.client_dir {
            Some(dir) => dir.join(program),
            None => PathBuf::from(program),
        };
        let mut command = Command::new(path);
        command.args(args);
        let shown = || format!("{program} {}", args.join(" "));
        match run_bounded(command, self.options.client_timeout) {
            Ok(Some(out)) => Ok(out),
            Ok(None) => Err(SlurmError::Timeout { command: shown(), timeout: self.options.client_timeout }),
            Err(source) => Err(SlurmError::Spawn { command: program.to_string(), source }),
        }
    }

    /// The `sbatch` arguments of a job (everything but the script).
    pub fn sbatch_args(&self, job: &JobRequest) -> Vec<String> {
        let resources = self.options.stages.get(&job.stage).cloned().unwrap_or_default();
        let mut args = vec![
            "--parsable".to_string(),
            format!("--job-name=sspa-{}", job.stage),
            format!("--output={}", job.log_dir.join(format!("{}-%j.log", job.stage)).display()),
            format!("--chdir={}", self.options.workdir.display()),
        ];
        if let Some(partition) = resources.partition.as_ref().or(self.options.partition.as_ref()) {
            args.push(format!("--partition={partition}"));
        }
        if !job.after.is_empty() {
            args.push(format!("--dependency=afterok:{}", job.after.join(":")));
            args.push("--kill-on-invalid-dep=yes".into());
        }
        if let Some(gres) = &resources.gres {
            args.push(format!("--gres={gres}"));
        }
        if let Some(cpus) = resources.cpus {
            args.push(format!("--cpus-per-task={cpus}"));
        }
        if let Some(mem) = &resources.mem {
            args.push(format!("--mem={mem}"));
        }
        if let Some(time) = &resources.time {
            args.push(format!("--time={time}"));
        }
        args.extend(self.options.args.iter().cloned());
        args.extend(resources.args);
        args
    }

    /// The batch script of a job: its environment, then the tool on the stage alone.
    pub fn script(&self, job: &JobRequest) -> String {
        let mut script = String::from("#!/bin/sh\n# Written by sspa-pipe: one pipeline stage as a Slurm job.\n");
        for (name, value) in &job.env {
            script.push_str(&format!("export {name}={}\n", shell_quote(value)));
        }
        let mut words = vec![shell_quote(&self.options.program.to_string_lossy())];
        words.extend(self.options.run_args.iter().map(|a| shell_quote(&a.to_string_lossy())));
        words.extend(["--only".to_string(), shell_quote(&job.stage)]);
        script.push_str(&format!("exec {}\n", words.join(" ")));
        script
    }

    fn submit_job(&self, job: &JobRequest) -> Result<JobHandle, SlurmError> {
        let script_path = job.log_dir.join(format!("{}.sbatch", job.stage));
        sspa_fsio::write_atomic(&script_path, self.script(job).as_bytes())
            .map_err(|source| SlurmError::Script { path: script_path.clone(), source })?;
        let mut args = self.sbatch_args(job);
        args.push(script_path.display().to_string());
        let words: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.client("sbatch", &words)?;
        if !out.status.success() {
            return Err(SlurmError::Failed {
                command: format!("sbatch {}", args.join(" ")),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let id = parse_sbatch(&stdout).ok_or_else(|| SlurmError::NoJobId { stdout: stdout.to_string() })?;
        let log = job.log_dir.join(format!("{}-{id}.log", job.stage));
        Ok(JobHandle { id, log })
    }

    /// The job's state and pending reason as `squeue` lists it (`None`: not listed, or no answer).
    fn listed(&self, id: &str) -> Option<Listed> {
        let out = self.client("squeue", &["-h", "-t", "all", "-o", "%T|%r", "-j", id]).ok()?;
        if !out.status.success() {
            return None;
        }
        parse_squeue(&String::from_utf8_lossy(&out.stdout))
    }

    /// The final state, exit code and reason of a job no longer in `squeue`'s list.
    fn final_state(&self, id: &str) -> Option<(String, Option<String>, Option<String>)> {
        if let Ok(out) = self.client("sacct", &["-n", "-P", "-X", "-o", "State,ExitCode", "-j", id])
            && out.status.success()
            && let Some((state, exit)) = parse_sacct(&String::from_utf8_lossy(&out.stdout))
        {
            return Some((state, Some(exit), None));
        }
        let out = self.client("scontrol", &["show", "job", "-o", id]).ok()?;
        if !out.status.success() {
            return None;
        }
        let fields = parse_scontrol(&String::from_utf8_lossy(&out.stdout));
        let state = fields.get("JobState")?.clone();
        Some((state, fields.get("ExitCode").cloned(), fields.get("Reason").cloned()))
    }

    /// State, exit code and reason (`scontrol`; `squeue` alone for the state).
    fn details(&self, id: &str) -> (Option<String>, Option<String>) {
        match self.final_state(id) {
            Some((_, exit, reason)) => (exit, reason.filter(|r| r != "None")),
            None => (None, None),
        }
    }

    /// Cancels a job the run gives up on; its end says why (`why` gets what `scancel` did).
    fn give_up(&self, job: &JobHandle, why: impl FnOnce(&str) -> String) -> JobEnd {
        let (cancelled, state) = match self.cancel_jobs(std::slice::from_ref(job)) {
            Ok(()) => (format!("cancelled it (`scancel {}`)", job.id), "CANCELLED"),
            Err(error) => (format!("`scancel {}` failed too ({error}): it may still run", job.id), "UNKNOWN"),
        };
        JobEnd { state: state.into(), succeeded: false, message: Some(why(&cancelled)) }
    }

    fn cancel_jobs(&self, jobs: &[JobHandle]) -> Result<(), SlurmError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        let out = self.client("scancel", &ids)?;
        if !out.status.success() {
            return Err(SlurmError::Failed {
                command: format!("scancel {}", ids.join(" ")),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        // Until Slurm no longer runs them (KillWait is seconds on most clusters).
        let deadline = Instant::now() + CANCEL_WAIT;
        loop {
            let live: Vec<String> = ids
                .iter()
                .filter(|id| self.listed(id).is_some_and(|listed| !is_final(&listed.state)))
                .map(|id| id.to_string())
                .collect();
            if live.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(SlurmError::StillRunning { ids: live, waited: CANCEL_WAIT });
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Executor for SlurmExecutor {
    fn name(&self) -> &str {
        "slurm"
    }

    fn submit(&self, job: &JobRequest) -> Result<JobHandle, ExecutorError> {
        self.submit_job(job).map_err(|e| ExecutorError::Submit { executor: "slurm".into(), source: Box::new(e) })
    }

    fn wait(&self, job: &JobHandle, cancel: &AtomicBool) -> JobEnd {
        let mut last = String::new();
        let mut unknown_since: Option<Instant> = None;
        // Pending for a reason other than its dependencies, since.
        let mut pending_since: Option<Instant> = None;
        loop {
            if cancel.load(Ordering::Relaxed) {
                return JobEnd { state: last, succeeded: false, message: Some("interrupted".into()) };
            }
            let listed = self
                .listed(&job.id)
                .or_else(|| self.final_state(&job.id).map(|(state, ..)| Listed { state, reason: String::new() }));
            match listed {
                Some(Listed { state, reason }) => {
                    unknown_since = None;
                    // `CANCELLED by 0` → `CANCELLED`.
                    let state = state.split_whitespace().next().unwrap_or_default().to_string();
                    if state != last {
                        tracing::info!("slurm job {} {state}", job.id);
                        last = state.clone();
                    }
                    if is_final(&state) {
                        let succeeded = state == "COMPLETED";
                        let message = (!succeeded).then(|| {
                            let (exit, reason) = self.details(&job.id);
                            failure_message(&job.id, &state, exit.as_deref(), reason.as_deref(), &job.log)
                        });
                        return JobEnd { state, succeeded, message };
                    }
                    if state == "PENDING" && !reason.starts_with("Dependency") {
                        let since = *pending_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > self.options.max_pending {
                            return self.give_up(job, |cancelled| {
                                format!(
                                    "slurm job {} still pending after {} s (reason: {reason}), longer than executor.slurm.max_pending_s = {}; {cancelled}",
                                    job.id,
                                    since.elapsed().as_secs(),
                                    self.options.max_pending.as_secs_f64()
                                )
                            });
                        }
                    } else {
                        pending_since = None;
                    }
                }
                None => {
                    // Briefly unknown right after submission on a busy controller; for good after
                    // the job was purged without accounting, or while the controller fails over.
                    let since = *unknown_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > self.lost_after {
                        return self.give_up(job, |cancelled| {
                            format!(
                                "slurm job {} is unknown to squeue, sacct and scontrol for {} s (purged, or the controller fails over?); {cancelled}; log: {}",
                                job.id,
                                self.lost_after.as_secs(),
                                job.log.display()
                            )
                        });
                    }
                }
            }
            // Sleep in small steps so that an interruption is seen quickly.
            let until = Instant::now() + self.options.poll;
            while Instant::now() < until && !cancel.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50).min(self.options.poll));
            }
        }
    }

    fn cancel(&self, jobs: &[JobHandle]) -> Result<(), ExecutorError> {
        self.cancel_jobs(jobs).map_err(|e| ExecutorError::Cancel {
            executor: "slurm".into(),
            ids: jobs.iter().map(|j| j.id.clone()).collect(),
            source: Box::new(e),
        })
    }
}

/// Runs `command` (stdin closed, stdout and stderr captured) for at most `timeout`; `None` when
/// it did not finish in time (it is then killed).
fn run_bounded(mut command: Command, timeout: Duration) -> std::io::Result<Option<Output>> {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            // The readers end when whatever still holds the pipes does; nothing waits for them.
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    Ok(Some(Output { status, stdout, stderr }))
}

/// `squeue -h -o %T|%r`: the first line's state and reason.
fn parse_squeue(stdout: &str) -> Option<Listed> {
    let line = stdout.lines().map(str::trim).find(|l| !l.is_empty())?;
    let (state, reason) = line.split_once('|').unwrap_or((line, ""));
    Some(Listed { state: state.trim().to_string(), reason: reason.trim().to_string() })
}

/// `12345` or `12345;cluster`.
pub fn parse_sbatch(stdout: &str) -> Option<String> {
    let id = stdout.lines().map(str::trim).rfind(|l| !l.is_empty())?.split(';').next()?.trim();
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit() || c == '_')).then(|| id.to_string())
}

/// `sacct -n -P -X -o State,ExitCode`: the first line's state and exit code.
pub fn parse_sacct(stdout: &str) -> Option<(String, String)> {
    let line = stdout.lines().map(str::trim).find(|l| !l.is_empty())?;
    let (state, exit) = line.split_once('|')?;
    let state = state.split_whitespace().next()?.to_string();
    Some((state, exit.trim().to_string()))
}

/// `scontrol show job -o`: `Key=Value` fields of one line (values without spaces, as Slurm
/// prints those it is asked for here).
pub fn parse_scontrol(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .split_whitespace()
        .filter_map(|field| field.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `slurm job 12 FAILED (exit code 1:0, NonZeroExitCode); log …:` and the log's last lines.
fn failure_message(id: &str, state: &str, exit: Option<&str>, reason: Option<&str>, log: &Path) -> String {
    let detail: Vec<String> =
        [exit.map(|e| format!("exit code {e}")), reason.map(str::to_string)].into_iter().flatten().collect();
    let detail = if detail.is_empty() { String::new() } else { format!(" ({})", detail.join(", ")) };
    let tail = std::fs::read_to_string(log)
        .map(|text| {
            let lines: Vec<String> = text.lines().filter(|l| !l.trim().is_empty()).map(clip).collect();
            lines[lines.len().saturating_sub(6)..].join("\n")
        })
        .unwrap_or_default();
    if tail.is_empty() {
        format!("slurm job {id} {state}{detail}; log: {}", log.display())
    } else {
        format!("slurm job {id} {state}{detail}; log {}:\n{tail}", log.display())
    }
}

/// A log line cut to 400 characters (a stage's error can list every failed item).
fn clip(line: &str) -> String {
    match line.char_indices().nth(400) {
        Some((at, _)) => format!("{} …", &line[..at]),
        None => line.to_string(),
    }
}

/// A word for `sh`: single-quoted unless it is plainly safe.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn executor() -> SlurmExecutor {
        let mut stages = BTreeMap::new();
        stages.insert(
            "train".to_string(),
            StageResources { gres: Some("gpu:1".into()), cpus: Some(8), mem: Some("32G".into()), ..Default::default() },
        );
        SlurmExecutor {
            options: SlurmOptions {
                program: "/opt/sspa pipe/sspa-pipe".into(),
                run_args: vec!["run".into(), "domains/demo.toml".into(), "-S".into(), "train.lr='1e-3'".into()],
                workdir: "/project".into(),
                partition: Some("cpu".into()),
                args: vec!["--account=ml".into()],
                stages,
                poll: Duration::from_millis(100),
                max_pending: Duration::from_secs(3600),
                client_timeout: CLIENT_TIMEOUT,
                client_dir: None,
            },
            lost_after: LOST_AFTER,
        }
    }

    fn request(stage: &str, after: &[&str]) -> JobRequest {
        JobRequest {
            stage: stage.into(),
            key: "k".into(),
            after: after.iter().map(|s| s.to_string()).collect(),
            log_dir: "/w/runs/r/logs".into(),
            env: vec![("SSPA_WORKSPACE_LOCK_TOKEN".into(), "abc".into())],
        }
    }

    #[test]
    fn sbatch_arguments_carry_chain_partition_and_stage_resources() {
        let args = executor().sbatch_args(&request("train", &["11", "12"]));
        assert_eq!(
            args,
            [
                "--parsable",
                "--job-name=sspa-train",
                "--output=/w/runs/r/logs/train-%j.log",
                "--chdir=/project",
                "--partition=cpu",
                "--dependency=afterok:11:12",
                "--kill-on-invalid-dep=yes",
                "--gres=gpu:1",
                "--cpus-per-task=8",
                "--mem=32G",
                "--account=ml",
            ]
        );
        let args = executor().sbatch_args(&request("shard", &[]));
        assert!(!args.iter().any(|a| a.starts_with("--dependency") || a.starts_with("--gres")), "{args:?}");
    }

    #[test]
    fn script_quotes_what_the_shell_would_split() {
        let script = executor().script(&request("train", &[]));
        assert!(script.starts_with("#!/bin/sh\n"), "{script}");
        assert!(script.contains("export SSPA_WORKSPACE_LOCK_TOKEN=abc\n"), "{script}");
        assert!(
            script.contains(
                r"exec '/opt/sspa pipe/sspa-pipe' run domains/demo.toml -S 'train.lr='\''1e-3'\''' --only train"
            ),
            "{script}"
        );
    }

    #[test]
    fn parses_what_the_slurm_commands_print() {
        assert_eq!(parse_sbatch("4242\n").as_deref(), Some("4242"));
        assert_eq!(parse_sbatch("4242;cluster\n").as_deref(), Some("4242"));
        assert_eq!(parse_sbatch("sbatch: error\n"), None);
        assert_eq!(parse_sacct("FAILED|1:0\n"), Some(("FAILED".into(), "1:0".into())));
        assert_eq!(parse_sacct("CANCELLED by 0|0:15\n"), Some(("CANCELLED".into(), "0:15".into())));
        assert_eq!(parse_sacct(""), None);
        let fields = parse_scontrol("JobId=7 JobName=sspa-train JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0\n");
        assert_eq!(fields.get("JobState").map(String::as_str), Some("FAILED"));
        assert_eq!(fields.get("ExitCode").map(String::as_str), Some("3:0"));
    }

    /// A directory of fake Slurm client commands: `squeue` prints the lines of `squeue.txt` one
    /// call after another (the last one for good; exit 1 for a line `ERROR`; `CANCELLED` once
    /// `scancel` ran), `scancel` records its arguments in `scancel.txt`, `sacct` and `scontrol`
    /// know no job, `sbatch` hangs.
    fn fake_cluster(squeue: &[&str]) -> (tempfile::TempDir, SlurmExecutor) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path();
        std::fs::write(bin.join("squeue.txt"), squeue.join("\n") + "\n").expect("write");
        let scripts = [
            (
                "squeue",
                r#"d=$(dirname "$0"); [ -f "$d/scancel.txt" ] && { echo "CANCELLED|None"; exit 0; }
n=$(cat "$d/n" 2>/dev/null || echo 1); echo $((n + 1)) > "$d/n"
line=$(sed -n "${n}p" "$d/squeue.txt"); [ -n "$line" ] || line=$(tail -n 1 "$d/squeue.txt")
if [ "$line" = ERROR ]; then echo "slurm_load_jobs error: Unable to contact slurm controller" >&2; exit 1; fi
echo "$line""#,
            ),
            ("scancel", r#"echo "$@" >> "$(dirname "$0")/scancel.txt""#),
            ("sacct", "exit 1"),
            ("scontrol", "echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1"),
            ("sbatch", "exec sleep 30"),
        ];
        for (name, body) in scripts {
            let path = bin.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let mut executor = executor();
        executor.options.client_dir = Some(bin.to_path_buf());
        executor.options.poll = Duration::from_millis(20);
        executor.options.client_timeout = Duration::from_secs(10);
        (dir, executor)
    }

    fn cancelled(dir: &Path) -> String {
        std::fs::read_to_string(dir.join("scancel.txt")).unwrap_or_default()
    }

    /// Waits for `job` with the run interrupting it after `limit` (a wait that never ends).
    fn wait_at_most(executor: &SlurmExecutor, job: &JobHandle, limit: Duration) -> JobEnd {
        let cancel = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let waiting = scope.spawn(|| executor.wait(job, &cancel));
            let deadline = Instant::now() + limit;
            while !waiting.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            cancel.store(true, Ordering::Relaxed);
            waiting.join().expect("wait")
        })
    }

    fn job(id: &str) -> JobHandle {
        JobHandle { id: id.into(), log: "/w/runs/r/logs/train-7.log".into() }
    }

    /// Issue 26: a job unknown to `squeue` for 30 s (a controller failover) was failed but never
    /// cancelled, so it kept running after the run let go of the workspace lock.
    #[test]
    fn a_job_the_controller_lost_is_cancelled_when_given_up() {
        let (dir, mut executor) = fake_cluster(&["RUNNING|None", "ERROR"]);
        executor.lost_after = Duration::from_millis(200);
        let end = wait_at_most(&executor, &job("7"), Duration::from_secs(20));
        assert!(!end.succeeded);
        let message = end.message.unwrap_or_default();
        assert!(message.contains("unknown to squeue") && message.contains("cancelled it (`scancel 7`)"), "{message}");
        assert_eq!(end.state, "CANCELLED");
        assert_eq!(cancelled(dir.path()).trim(), "7");
    }

    /// Issue 26: a job pending forever held the workspace lock with no deadline.
    #[test]
    fn a_job_pending_past_its_bound_is_cancelled_naming_the_reason() {
        let (dir, mut executor) = fake_cluster(&["PENDING|ReqNodeNotAvail"]);
        executor.options.max_pending = Duration::from_millis(300);
        let end = wait_at_most(&executor, &job("8"), Duration::from_secs(20));
        assert!(!end.succeeded);
        let message = end.message.unwrap_or_default();
        assert!(message.starts_with("slurm job 8 still pending after "), "{message}");
        assert!(
            message.contains("(reason: ReqNodeNotAvail), longer than executor.slurm.max_pending_s = 0.3"),
            "{message}"
        );
        assert_eq!(cancelled(dir.path()).trim(), "8");
    }

    /// Waiting on the jobs it needs is no pending to bound: a chained job waits for its upstream
    /// as long as that runs.
    #[test]
    fn pending_on_dependencies_is_not_bounded() {
        let waits = vec!["PENDING|Dependency"; 30];
        let mut lines = waits.clone();
        lines.extend(["RUNNING|None", "COMPLETED|None"]);
        let (dir, mut executor) = fake_cluster(&lines);
        executor.options.max_pending = Duration::from_millis(100);
        let end = wait_at_most(&executor, &job("9"), Duration::from_secs(30));
        assert_eq!((end.state.as_str(), end.succeeded), ("COMPLETED", true), "{:?}", end.message);
        assert!(cancelled(dir.path()).is_empty());
    }

    /// Issue 26: `sbatch` (every client command) ran without a time limit.
    #[test]
    fn a_client_command_that_hangs_times_out() {
        let (dir, mut executor) = fake_cluster(&["RUNNING|None"]);
        executor.options.client_timeout = Duration::from_millis(300);
        let mut request = request("train", &[]);
        request.log_dir = dir.path().join("logs");
        let started = Instant::now();
        let error = executor.submit(&request).expect_err("sbatch hangs");
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        let text = sspa_dag::error_chain(&error);
        assert!(text.starts_with("cannot submit it to slurm: `sbatch --parsable"), "{text}");
        assert!(text.ends_with("did not answer within 0.3 s (is the Slurm controller reachable?)"), "{text}");
    }

    #[test]
    fn parses_squeues_state_and_reason() {
        assert_eq!(
            parse_squeue("PENDING|Resources\n"),
            Some(Listed { state: "PENDING".into(), reason: "Resources".into() })
        );
        assert_eq!(parse_squeue("RUNNING\n"), Some(Listed { state: "RUNNING".into(), reason: String::new() }));
        assert_eq!(parse_squeue("\n"), None);
    }

    #[test]
    fn failure_message_names_state_exit_and_log_tail() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("train-7.log");
        std::fs::write(&log, "a\nb\nError: train: out of memory\n").expect("write");
        let message = failure_message("7", "FAILED", Some("1:0"), Some("NonZeroExitCode"), &log);
        assert!(message.starts_with("slurm job 7 FAILED (exit code 1:0, NonZeroExitCode); log "), "{message}");
        assert!(message.ends_with("a\nb\nError: train: out of memory"), "{message}");
    }
}
