//! sspa-pipe: train and serve SSPA multi-label image classifiers through a cached DAG of stages.
//!
//! The binary is thin: [`cli`] parses arguments, each command lives in [`commands`], and all real
//! work happens in the workspace crates (`sspa-dag`, `sspa-config`, the stage crates).

pub mod cli;
pub mod commands;
pub mod exit;
pub mod project;
