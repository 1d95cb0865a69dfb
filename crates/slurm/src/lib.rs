//! Stages as Slurm jobs: [`SlurmExecutor`] implements the runner's [`Executor`] with the Slurm
//! client commands (as Snakemake's and Nextflow's Slurm executors do): each stage is one batch
//! script running the tool on that stage alone (`<program> run CONFIG --only STAGE`), submitted
//! with `sbatch`, chained with `--dependency=afterok:` on the jobs it needs (and
//! `--kill-on-invalid-dep=yes`, so Slurm drops it when one of them fails), polled with `squeue`
//! (`-t all`: finished jobs stay listed for `MinJobAge`), then `sacct` where accounting exists and
//! `scontrol show job` where it does not, and cancelled with `scancel`.
//!
//! The batch script is written next to the job's log (`runs/<run>/logs/<stage>.sbatch`) so a user
//! can read or resubmit what ran.

use sspa_dag::{Executor, JobEnd, JobHandle, JobRequest};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

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

#[derive(Debug)]
pub struct SlurmExecutor {
    options: SlurmOptions,
}

impl SlurmExecutor {
    /// Checks that `sbatch` and `squeue` run (the cluster's client commands are installed and a
    /// controller answers); the error says which failed and what it printed.
    pub fn connect(options: SlurmOptions) -> Result<Self, String> {
        let out = Command::new("squeue")
            .args(["-h", "-o", "%i", "-j", "1"])
            .output()
            .map_err(|e| format!("cannot run `squeue` ({e}): are Slurm's client commands installed and on PATH?"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        // An unknown job id is an answer: the controller is up.
        if !out.status.success() && !stderr.contains("Invalid job id") {
            return Err(format!("`squeue` cannot reach the Slurm controller: {}", stderr.trim()));
        }
        Ok(Self { options })
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

    fn squeue_state(id: &str) -> Option<String> {
        let out = Command::new("squeue").args(["-h", "-t", "all", "-o", "%T", "-j", id]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_string)
    }

    /// The final state, exit code and reason of a job no longer in `squeue`'s list.
    fn final_state(id: &str) -> Option<(String, Option<String>, Option<String>)> {
        if let Ok(out) = Command::new("sacct").args(["-n", "-P", "-X", "-o", "State,ExitCode", "-j", id]).output()
            && out.status.success()
            && let Some((state, exit)) = parse_sacct(&String::from_utf8_lossy(&out.stdout))
        {
            return Some((state, Some(exit), None));
        }
        let out = Command::new("scontrol").args(["show", "job", "-o", id]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let fields = parse_scontrol(&String::from_utf8_lossy(&out.stdout));
        let state = fields.get("JobState")?.clone();
        Some((state, fields.get("ExitCode").cloned(), fields.get("Reason").cloned()))
    }

    /// State, exit code and reason (`scontrol`; `squeue` alone for the state).
    fn details(id: &str) -> (Option<String>, Option<String>) {
        match Self::final_state(id) {
            Some((_, exit, reason)) => (exit, reason.filter(|r| r != "None")),
            None => (None, None),
        }
    }
}

impl Executor for SlurmExecutor {
    fn name(&self) -> &str {
        "slurm"
    }

    fn submit(&self, job: &JobRequest) -> Result<JobHandle, String> {
        let script_path = job.log_dir.join(format!("{}.sbatch", job.stage));
        sspa_fsio::write_atomic(&script_path, self.script(job).as_bytes())
            .map_err(|e| format!("`{}`: {e}", script_path.display()))?;
        let args = self.sbatch_args(job);
        let out = Command::new("sbatch")
            .args(&args)
            .arg(&script_path)
            .output()
            .map_err(|e| format!("cannot run `sbatch` ({e})"))?;
        if !out.status.success() {
            return Err(format!(
                "`sbatch {} {}` failed: {}",
                args.join(" "),
                script_path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let id = parse_sbatch(&String::from_utf8_lossy(&out.stdout))
            .ok_or_else(|| format!("`sbatch` printed no job id: {:?}", String::from_utf8_lossy(&out.stdout)))?;
        let log = job.log_dir.join(format!("{}-{id}.log", job.stage));
        Ok(JobHandle { id, log })
    }

    fn wait(&self, job: &JobHandle, cancel: &AtomicBool) -> JobEnd {
        let mut last = String::new();
        let mut unknown_since: Option<Instant> = None;
        loop {
            if cancel.load(Ordering::Relaxed) {
                return JobEnd { state: last, succeeded: false, message: Some("interrupted".into()) };
            }
            let state = Self::squeue_state(&job.id).or_else(|| Self::final_state(&job.id).map(|(state, ..)| state));
            match state {
                Some(state) => {
                    unknown_since = None;
                    // `CANCELLED by 0` → `CANCELLED`.
                    let state = state.split_whitespace().next().unwrap_or_default().to_string();
                    if state != last {
                        tracing::info!("slurm job {} {state}", job.id);
                        last = state.clone();
                    }
                    if FINAL_STATES.contains(&state.as_str()) {
                        let succeeded = state == "COMPLETED";
                        let message = (!succeeded).then(|| {
                            let (exit, reason) = Self::details(&job.id);
                            failure_message(&job.id, &state, exit.as_deref(), reason.as_deref(), &job.log)
                        });
                        return JobEnd { state, succeeded, message };
                    }
                }
                None => {
                    // Briefly unknown right after submission on a busy controller; for good after
                    // the job was purged without accounting.
                    let since = *unknown_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(30) {
                        return JobEnd {
                            state: "UNKNOWN".into(),
                            succeeded: false,
                            message: Some(format!(
                                "slurm job {} is unknown to squeue, sacct and scontrol (purged?); log: {}",
                                job.id,
                                job.log.display()
                            )),
                        };
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

    fn cancel(&self, jobs: &[JobHandle]) -> Result<(), String> {
        if jobs.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
        let out = Command::new("scancel").args(&ids).output().map_err(|e| format!("cannot run `scancel` ({e})"))?;
        if !out.status.success() {
            return Err(format!("`scancel {}` failed: {}", ids.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
        }
        // Until Slurm no longer runs them (KillWait is seconds on most clusters).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let live: Vec<&str> = ids
                .iter()
                .copied()
                .filter(|id| {
                    Self::squeue_state(id)
                        .is_some_and(|s| !FINAL_STATES.contains(&s.split_whitespace().next().unwrap_or_default()))
                })
                .collect();
            if live.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("jobs {} still running 60 s after `scancel`", live.join(", ")));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
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
            },
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
