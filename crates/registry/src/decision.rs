//! `decisions.jsonl`: one line per decision about the registry, appended and synced, so the log
//! of a scheduled job says what happened on each day and why.

use crate::Registry;
use crate::error::RegistryError;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// The gate promoted the candidate.
    Promoted,
    /// The candidate was trained and the gate refused it.
    Refused,
    /// The candidate is the model `current` already serves (nothing changed).
    Unchanged,
    /// Promoted by `--force-promote` / `models promote` with a reason, bypassing the gate.
    Forced,
    /// `models rollback`.
    RolledBack,
    /// The pipeline failed: nothing to decide.
    Failed,
}

impl DecisionKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Promoted => "promoted",
            Self::Refused => "refused",
            Self::Unchanged => "unchanged",
            Self::Forced => "forced",
            Self::RolledBack => "rolled_back",
            Self::Failed => "failed",
        }
    }
}

/// One decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub at: String,
    pub decision: DecisionKind,
    /// The alias that was (or would have been) moved.
    pub alias: String,
    /// The run whose candidate was judged (absent for rollbacks and manual promotions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// The version the alias points at after the decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// The version it pointed at before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<u32>,
    /// `ema.mAP`-style name of the compared metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    /// The candidate's and the current model's metrics on the same split and labels.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub candidate: Value,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub current: Value,
    /// Why: each rule of the gate that decided, a user's `--reason`, an error.
    pub reasons: Vec<String>,
}

impl Decision {
    pub fn new(decision: DecisionKind, alias: &str) -> Self {
        Self {
            at: sspa_fsio::timestamp(),
            decision,
            alias: alias.to_owned(),
            run_id: None,
            version: None,
            previous: None,
            metric: None,
            candidate: Value::Null,
            current: Value::Null,
            reasons: Vec::new(),
        }
    }
}

/// `decisions.jsonl` as read: the decisions, and the lines that are not one (a write cut short
/// by a crash or a full disk), which a reader reports instead of hiding.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DecisionLog {
    pub decisions: Vec<Decision>,
    pub torn: Vec<TornLine>,
}

/// A line of `decisions.jsonl` that is not a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornLine {
    /// 1-based.
    pub line: usize,
    pub error: String,
}

impl Registry {
    /// Appends `decision` as one line and syncs it. The line always starts a line of its own:
    /// after a torn last line (a crash mid-write, a full disk) the record goes on the next line,
    /// so it is neither glued to the torn one nor lost with it. The caller holds the workspace
    /// lock (one writer).
    pub fn record(&self, decision: &Decision) -> Result<(), RegistryError> {
        std::fs::create_dir_all(&self.dir).map_err(RegistryError::io(&self.dir))?;
        let path = self.decisions_path();
        let mut line = Vec::new();
        if ends_mid_line(&path).map_err(RegistryError::io(&path))? {
            tracing::warn!("`{}` ends in a torn line; the new decision starts a line of its own", path.display());
            line.push(b'\n');
        }
        serde_json::to_writer(&mut line, decision).map_err(RegistryError::json(&path))?;
        line.push(b'\n');
        let mut file =
            std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(RegistryError::io(&path))?;
        // One write of the whole line: appends of one process never interleave with another's.
        file.write_all(&line).and_then(|()| file.sync_all()).map_err(RegistryError::io(&path))
    }

    /// Every recorded decision, oldest first, and every line that is not one (each also logged
    /// as a warning naming the file and line).
    pub fn decisions(&self) -> Result<DecisionLog, RegistryError> {
        let path = self.decisions_path();
        let text = match std::fs::read(&path) {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DecisionLog::default()),
            Err(e) => return Err(RegistryError::io(&path)(e)),
        };
        let mut log = DecisionLog::default();
        for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            match serde_json::from_str(line) {
                Ok(decision) => log.decisions.push(decision),
                Err(e) => {
                    tracing::warn!("`{}` line {}: not a decision (a torn write?): {e}", path.display(), number + 1);
                    log.torn.push(TornLine { line: number + 1, error: e.to_string() });
                }
            }
        }
        Ok(log)
    }

    fn decisions_path(&self) -> std::path::PathBuf {
        self.dir.join("decisions.jsonl")
    }
}

/// Whether the file at `path` is non-empty and does not end in a newline.
fn ends_mid_line(path: &std::path::Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if file.metadata()?.len() == 0 {
        return Ok(false);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    Ok(last[0] != b'\n')
}
