//! `[notify] command`: a user's program, given the decision JSON on stdin. Its failure is logged,
//! never fatal: the decision is already recorded.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn notify(section: &sspa_config::NotifySection, decision: &serde_json::Value) {
    let Some((program, args)) = section.command.split_first() else { return };
    let started = Instant::now();
    let spawned =
        Command::new(program).args(args).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!("notify: cannot start `{program}`: {e}");
            return;
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let text = format!("{decision}\n");
        // A command that does not read its input is not an error.
        let _ = stdin.write_all(text.as_bytes());
    }
    let limit = Duration::from_secs_f64(section.timeout_s);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => {
                tracing::info!("notify: `{program}` done in {:.2} s", started.elapsed().as_secs_f64());
                return;
            }
            Ok(Some(status)) => {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                tracing::warn!("notify: `{program}` failed ({status}): {}", stderr.trim());
                return;
            }
            Ok(None) if started.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                tracing::warn!("notify: `{program}` killed after {:.0} s (notify.timeout_s)", section.timeout_s);
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                tracing::warn!("notify: waiting for `{program}`: {e}");
                return;
            }
        }
    }
}
