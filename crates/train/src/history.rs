//! The per-epoch training log (`history.json`).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::TrainError;
use crate::features::atomic_write_bytes;

/// One finished epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// 1-based epoch number.
    pub epoch: u32,
    /// Optimiser steps taken since the start of the run, this epoch included.
    pub steps: u64,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    /// Learning rate of the epoch's last step.
    pub lr: f64,
    /// Validation mAP (percent) of the raw model; `None` without validation positives.
    pub val_map: Option<f64>,
    /// Validation mAP (percent) of the EMA model.
    pub val_map_ema: Option<f64>,
    /// Wall time of the epoch, validation included.
    pub seconds: f64,
}

/// Writes `history` as a JSON array, atomically.
///
/// # Errors
/// [`TrainError::Io`] or [`TrainError::Json`].
pub fn write_history(path: &Path, history: &[EpochLog]) -> Result<(), TrainError> {
    let json = serde_json::to_vec_pretty(history).map_err(TrainError::json(path))?;
    atomic_write_bytes(path, &json)
}

/// Reads a `history.json`.
///
/// # Errors
/// [`TrainError::Io`] or [`TrainError::Json`].
pub fn read_history(path: &Path) -> Result<Vec<EpochLog>, TrainError> {
    let bytes = std::fs::read(path).map_err(TrainError::io(path))?;
    serde_json::from_slice(&bytes).map_err(TrainError::json(path))
}
