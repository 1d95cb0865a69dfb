//! Per-epoch checkpoints, written so that a crash never leaves a half-written one in use.
//!
//! Layout under the checkpoint directory:
//! ```text
//! epoch-0003/            one finished epoch
//!   config.json          ModelConfig (must equal the resuming run's)
//!   model.safetensors    raw weights (head + prompts), as trained: f32 master weights under
//!                        `train.precision = "f32"` or `"mixed"`, bf16 under `"bf16"`
//!   model_ema.safetensors
//!   optimizer.bpk        AdamW moments and step counts (burnpack), keyed by parameter id
//!   state.json           CheckpointState: epochs, global step, seed, fingerprint, history
//! latest.json            {"epoch_dir": "epoch-0003"}, replaced atomically after the directory
//! ```
//! An epoch directory is written as `.epoch-0003.partial` and renamed when complete; `latest.json`
//! is then swapped by rename, and older epoch directories are pruned. Shuffling needs no saved RNG:
//! epoch `e`'s permutation is a pure function of `(seed, e)`.

use std::path::{Path, PathBuf};

use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use crate::error::TrainError;
use crate::features::atomic_write_bytes;
use crate::history::EpochLog;
use crate::model::{FORMAT_VERSION, ModelConfig, SspaModel, load_weights, save_weights};
use crate::warm_start::WarmStartReport;

const LATEST: &str = "latest.json";

/// `state.json` of a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointState {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Epochs finished.
    pub epochs_done: u32,
    /// Optimiser steps taken.
    pub global_step: u64,
    /// `train.seed` (initialisation and per-epoch shuffles derive from it).
    pub seed: u64,
    /// BLAKE3 over config, text inputs, both feature sets (or the images and the pretrained
    /// encoder) and the warm start: a checkpoint only resumes its own run.
    pub fingerprint: String,
    /// The log so far.
    pub history: Vec<EpochLog>,
    /// What the warm start of the run copied (absent for a run from the seeded initialisation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warm_start: Option<WarmStartReport>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Latest {
    epoch_dir: String,
}

/// A checkpoint read back: live model, EMA weights (as a model with the same parameter ids),
/// optimiser and state.
pub struct Restored {
    /// The model being trained (on the training device).
    pub model: SspaModel,
    /// The EMA weights, on the training device (wrap with `ModelEma::new`).
    pub ema: SspaModel,
    /// The optimiser with its state.
    pub optimizer: ModuleOptimizer,
    /// Counters and history.
    pub state: CheckpointState,
}

fn epoch_dir_name(epochs_done: u32) -> String {
    format!("epoch-{epochs_done:04}")
}

/// Writes the checkpoint of `state.epochs_done` and points `latest.json` at it; keeps the newest
/// `keep` epoch directories (at least one).
///
/// # Errors
/// [`TrainError::Io`], [`TrainError::Json`] or [`TrainError::Weights`].
pub fn save_checkpoint(
    dir: &Path,
    config: &ModelConfig,
    model: &SspaModel,
    ema: &SspaModel,
    optimizer: &ModuleOptimizer,
    state: &CheckpointState,
    keep: usize,
) -> Result<PathBuf, TrainError> {
    std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
    let name = epoch_dir_name(state.epochs_done);
    let partial = dir.join(format!(".{name}.partial"));
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(TrainError::io(&partial))?;
    }
    std::fs::create_dir_all(&partial).map_err(TrainError::io(&partial))?;

    config.save(&partial.join("config.json"))?;
    save_weights(model, &partial.join("model.safetensors"))?;
    save_weights(ema, &partial.join("model_ema.safetensors"))?;
    let optimizer_path = partial.join("optimizer.bpk");
    let bytes = optimizer
        .into_bytes()
        .map_err(|error| TrainError::Weights { path: optimizer_path.clone(), reason: error.to_string() })?;
    atomic_write_bytes(&optimizer_path, &bytes)?;
    let state_path = partial.join("state.json");
    let json = serde_json::to_vec_pretty(state).map_err(TrainError::json(&state_path))?;
    atomic_write_bytes(&state_path, &json)?;

    let final_dir = dir.join(&name);
    sspa_fsio::publish_dir(&partial, &final_dir).map_err(TrainError::io(&final_dir))?;
    let latest_path = dir.join(LATEST);
    let latest = serde_json::to_vec(&Latest { epoch_dir: name.clone() }).map_err(TrainError::json(&latest_path))?;
    atomic_write_bytes(&latest_path, &latest)?;

    prune(dir, &name, keep.max(1))?;
    Ok(final_dir)
}

/// Removes epoch directories older than the newest `keep`, never `current`.
fn prune(dir: &Path, current: &str, keep: usize) -> Result<(), TrainError> {
    let mut epochs: Vec<String> = std::fs::read_dir(dir)
        .map_err(TrainError::io(dir))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.starts_with("epoch-") && name.len() == 10)
        .collect();
    epochs.sort();
    let excess = epochs.len().saturating_sub(keep);
    for name in epochs.into_iter().take(excess).filter(|name| name != current) {
        let path = dir.join(name);
        std::fs::remove_dir_all(&path).map_err(TrainError::io(&path))?;
    }
    Ok(())
}

/// The checkpoint `latest.json` points at, if there is one.
///
/// # Errors
/// [`TrainError::Checkpoint`] when `latest.json` exists but is unreadable or points nowhere.
pub fn latest_checkpoint(dir: &Path) -> Result<Option<PathBuf>, TrainError> {
    let latest_path = dir.join(LATEST);
    if !latest_path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&latest_path).map_err(TrainError::io(&latest_path))?;
    let latest: Latest = serde_json::from_slice(&bytes).map_err(TrainError::json(&latest_path))?;
    let epoch_dir = dir.join(&latest.epoch_dir);
    if latest.epoch_dir.contains(['/', '\\']) || !epoch_dir.is_dir() {
        return Err(TrainError::Checkpoint {
            path: latest_path,
            reason: format!("points at `{}`, which is not a checkpoint directory", latest.epoch_dir),
        });
    }
    Ok(Some(epoch_dir))
}

/// Reads the checkpoint in `epoch_dir` for a run with `config` and `fingerprint`.
///
/// # Errors
/// [`TrainError::Checkpoint`] when it belongs to another run (config or data differ), or the
/// errors of reading its files.
pub fn load_checkpoint(
    epoch_dir: &Path,
    config: &ModelConfig,
    fingerprint: &str,
    fresh_optimizer: impl FnOnce(&SspaModel) -> ModuleOptimizer,
    device: &burn::prelude::Device,
) -> Result<Restored, TrainError> {
    let mismatch = |reason: String| TrainError::Checkpoint { path: epoch_dir.to_owned(), reason };
    let stored = ModelConfig::load(&epoch_dir.join("config.json"))?;
    if stored.canonical_json() != config.canonical_json() {
        return Err(mismatch("its config.json differs from this run's configuration".into()));
    }
    let state_path = epoch_dir.join("state.json");
    let bytes = std::fs::read(&state_path).map_err(TrainError::io(&state_path))?;
    let state: CheckpointState = serde_json::from_slice(&bytes).map_err(TrainError::json(&state_path))?;
    if state.format_version != FORMAT_VERSION {
        return Err(mismatch(format!("format version `{}`", state.format_version)));
    }
    if state.fingerprint != fingerprint {
        return Err(mismatch("it was trained on other features or text inputs, or from another warm start".into()));
    }
    if state.history.len() != state.epochs_done as usize {
        return Err(mismatch("history length differs from the epochs done".into()));
    }

    // The weights as trained: f32 master weights under `f32` and `mixed` (read without a detour
    // through bf16 on an f32 device), bf16 under `bf16`.
    let master = crate::precision::master_dtype(config.train.precision);
    let load = |file: &str| -> Result<SspaModel, TrainError> {
        let model = load_weights(config.init(state.seed, device)?, &epoch_dir.join(file))?;
        Ok(crate::precision::cast_parameters(model, master))
    };
    let (model, ema) = (load("model.safetensors")?, load("model_ema.safetensors")?);
    let optimizer_path = epoch_dir.join("optimizer.bpk");
    let optimizer = fresh_optimizer(&model)
        .load(&optimizer_path)
        .map_err(|error| TrainError::Weights { path: optimizer_path.clone(), reason: error.to_string() })?;
    Ok(Restored { model, ema, optimizer, state })
}
