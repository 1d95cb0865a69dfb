//! `describe`: KAP descriptions for every label (sspa-describe), cached across runs in the stage's
//! state directory so an interrupted or repeated run asks the LLM only for missing answers.

use crate::Error;
use sspa_config::{DataSection, DomainSection, LabelsSection, LlmSection, PromptSection};
use sspa_dag::{Stage, StageContext, StageError};
use sspa_describe::{DESCRIPTIONS_FILE, DescribeRequest};

pub struct Describe;

impl Stage for Describe {
    fn kind(&self) -> &str {
        "describe"
    }

    fn version(&self) -> u32 {
        1
    }

    fn run(&self, ctx: &StageContext) -> Result<(), StageError> {
        let labels: LabelsSection = ctx.section("labels")?;
        let data: DataSection = ctx.section("data")?;
        let list = crate::labels::resolve(&labels, &data, &ctx.project_root)?;
        for warning in list.warnings() {
            tracing::warn!("{warning}");
        }
        let request = DescribeRequest::new(
            ctx.section::<DomainSection>("domain")?,
            ctx.section::<LlmSection>("llm")?,
            ctx.section::<PromptSection>("prompt")?,
            &ctx.project_root,
            list,
        );
        let progress = |done: u64, total: u64| ctx.progress.update(done, total);
        let out_file = ctx.out_dir.join(DESCRIPTIONS_FILE);
        let summary = ctx.runtime.block_on(sspa_describe::describe(&request, &ctx.state_dir, &out_file, &progress))?;
        tracing::info!(
            "describe: {} cached, {} new, {} failed ({} requests)",
            summary.cached,
            summary.new,
            summary.failed,
            summary.requests
        );
        if !summary.failures.is_empty() {
            let failures: Vec<String> =
                summary.failures.iter().map(|f| format!("`{}` (sample {}): {}", f.label, f.sample, f.reason)).collect();
            return Err(Error::Incomplete(format!(
                "{} of {} answers missing; the answers received are cached and a re-run asks only for these: {}",
                summary.failed,
                summary.total,
                failures.join("; ")
            ))
            .into());
        }
        crate::write_summary(&ctx.out_dir, &summary)?;
        Ok(())
    }
}
