//! `shard`: decode, resize and pack the dataset named by `data.manifest` into shards (sspa-data).

use sspa_config::{DataSection, ModelSection};
use sspa_dag::{Stage, StageContext, StageError};
use sspa_data::ShardRequest;

pub struct Shard;

impl Stage for Shard {
    fn kind(&self) -> &str {
        "shard"
    }

    fn version(&self) -> u32 {
        1
    }

    /// The manifest's annotation files (for the demo, the Fashion-MNIST IDX files).
    fn inputs(
        &self,
        params: &serde_json::Value,
        project_root: &std::path::Path,
    ) -> Result<Vec<std::path::PathBuf>, StageError> {
        let data: DataSection = serde_json::from_value(params["data"].clone())?;
        Ok(sspa_data::stage_inputs(&data, project_root)?)
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let data: DataSection = ctx.section("data")?;
        let model: ModelSection = ctx.section("model")?;
        let request = ShardRequest {
            data: &data,
            model: &model,
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
