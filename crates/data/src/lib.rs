//! sspa-data: dataset manifests, annotation importers, the Fashion-MNIST demo sets, the
//! shard stage and the batch loader.
//!
//! Flow: [`Manifest`] (`data_manifest/*.toml`) → [`import::import`] (COCO, VOC, CSV, JSON list,
//! mmpretrain → [`Split`]s with targets 1 / 0 / −1 in manifest label order) → [`shard::shard`]
//! (parallel decode and resize, uint8 shard files, a Parquet index, BLAKE3 per shard) →
//! [`loader::Loader`] (seeded shuffled epochs, random resized crop and flip, `f32` NCHW batches)
//! → [`TensorBatch`] (`Batch::into_tensors(device)` or `Loader::tensors(device)`: burn tensors).
//! Annotations are streamed, so sharding holds no per-image state (see [`shard`]).
//!
//! # For the DAG runner
//! - inputs to hash: [`stage_inputs`]`(data, project_root)` (manifest, label file, annotation
//!   files; for the demo the Fashion-MNIST IDX files);
//! - the stage: [`shard()`]`(&ShardRequest { data, geometry, project_root, state_dir, threads },
//!   out_dir, progress)` → [`ShardSummary`] (serde); it builds the demo set first when the
//!   manifest has a `[demo]` section and `<data root>/fashion-mosaic` lacks a current build
//!   (data root: `$SSPA_DATA_ROOT`, else `data.root`, else `<project_root>/data`);
//! - downstream: [`open_shards`]`(out_dir)` → [`ShardSet`] → `.split("train")` →
//!   [`Loader::new`]`(&split, &LoaderConfig::train(..), epoch)`, an iterator of [`Batch`]es.

pub mod checksums;
pub mod codec;
pub mod demo;
pub mod error;
pub mod import;
pub mod loader;
pub mod manifest;
pub mod preprocess;
pub mod reader;
pub mod scenes;
pub mod shard;
pub mod tensors;

pub use error::DataError;
pub use import::{Dataset, ImageEntry, Split, SplitCheck, SplitSource};
pub use loader::{Augment, Batch, Loader, LoaderConfig, ShardSet, SplitReader, epoch_order, open_shards};
pub use manifest::{Manifest, data_root, data_root_at};
pub use preprocess::{BadImageReason, Geometry, Resample, mean_std};
pub use shard::{BadImage, ShardRequest, ShardSummary, prepare, shard, shard_manifest, stage_inputs};
pub use tensors::TensorBatch;
