//! `shard`: decode, resize and pack the dataset named by `data.manifest` into shards (sspa-data).

use crate::params::TypedStage;
use serde::{Deserialize, Serialize};
use sspa_config::{DataSection, Preset};
use sspa_dag::{StageContext, StageError};
use sspa_data::{Geometry, ShardRequest};
use std::path::{Path, PathBuf};

pub struct Shard;

/// `data`, `model.preset`, `model.image_size`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ShardParams {
    pub data: DataSection,
    pub model: ShardModel,
}

/// The `[model]` keys that decide the stored geometry.
#[derive(Debug, Serialize, Deserialize)]
pub struct ShardModel {
    pub preset: Preset,
    pub image_size: u32,
}

impl TypedStage for Shard {
    type Params = ShardParams;
    const KIND: &'static str = "shard";
    const VERSION: u32 = 1;

    /// The manifest's annotation files (for the demo, the Fashion-MNIST IDX files).
    fn inputs(&self, params: &ShardParams, project_root: &Path) -> Result<Vec<PathBuf>, StageError> {
        Ok(sspa_data::stage_inputs(&params.data, project_root)?)
    }

    fn run(&self, params: ShardParams, ctx: &StageContext) -> Result<(), StageError> {
        let request = ShardRequest {
            data: &params.data,
            geometry: Geometry::for_preset(params.model.preset.name(), params.model.image_size)?,
            project_root: &ctx.project_root,
            state_dir: &ctx.state_dir,
            threads: None,
        };
        let progress = |done: u64, total: u64| ctx.progress.update(done, total);
        let summary = sspa_data::shard(&request, &ctx.out_dir, &progress)?;
        for bad in &summary.bad_images {
            tracing::warn!("skipped image: {bad:?}");
        }
        crate::write_summary(&ctx.out_dir, &summary)?;
        Ok(())
    }
}
