//! `describe`: KAP descriptions for every label (sspa-describe), cached across runs in the stage's
//! state directory so an interrupted or repeated run asks the LLM only for missing answers.

use crate::Error;
use crate::labels::DataLocation;
use crate::params::TypedStage;
use serde::{Deserialize, Serialize};
use sspa_config::{DomainSection, LabelsSection, LlmSection, PromptSection};
use sspa_dag::{StageContext, StageError};
use sspa_describe::{DESCRIPTIONS_FILE, DescribeProgress, DescribeRequest};

pub struct Describe;

/// `domain`, `labels`, `llm`, `prompt`, `data.manifest`, `data.root`, `data.root_env`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DescribeParams {
    pub domain: DomainSection,
    pub labels: LabelsSection,
    pub llm: LlmSection,
    pub prompt: PromptSection,
    /// Where the label list comes from when `labels.from_manifest`.
    pub data: DataLocation,
}

/// The progress line's note: the adaptive limit on requests in flight (`llm.concurrency` at first,
/// cut to the server's slots, halved when the server is overloaded).
pub fn concurrency_message(limit: usize) -> String {
    format!("concurrency {limit}")
}

impl TypedStage for Describe {
    type Params = DescribeParams;
    const KIND: &'static str = "describe";
    const VERSION: u32 = 1;

    fn run(&self, params: DescribeParams, ctx: &StageContext) -> Result<(), StageError> {
        let list = crate::labels::resolve(&params.labels, &params.data, &ctx.project_root)?;
        for warning in list.warnings() {
            tracing::warn!("{warning}");
        }
        let request = DescribeRequest::new(params.domain, params.llm, params.prompt, &ctx.project_root, list);
        let progress = |p: DescribeProgress| {
            ctx.progress.update(p.done, p.total);
            if let Some(limit) = p.concurrency {
                ctx.progress.set_message(concurrency_message(limit));
            }
        };
        let out_file = ctx.out_dir.join(DESCRIPTIONS_FILE);
        let summary = ctx.runtime.block_on(sspa_describe::describe(&request, &ctx.state_dir, &out_file, &progress))?;
        let limit = summary
            .concurrency
            .map_or(String::new(), |c| format!(", concurrency {} → {} (lowest {})", c.start, c.current, c.lowest));
        tracing::info!(
            "describe: {} cached, {} new, {} failed ({} requests{limit})",
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
        // Published results name their files relative to themselves.
        let summary = sspa_describe::DescribeSummary { out_file: DESCRIPTIONS_FILE.into(), ..summary };
        crate::write_summary(&ctx.out_dir, &summary)?;
        Ok(())
    }
}
