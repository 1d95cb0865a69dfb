use super::print_json;
use crate::cli::ConfigArgs;
use crate::exit;
use sspa_dag::WorkspaceLock;
use sspa_describe::{DescribeProgress, DescribeRequest};
use std::path::Path;

/// Describes a label set (a file, or the config's labels) into `output`, sharing the pipeline's
/// answer cache so that no answer is ever paid for twice. With `progress`, a bar on stderr shows
/// the answers done and the adaptive concurrency limit.
pub fn describe(
    config: &ConfigArgs,
    labels: Option<&Path>,
    output: &Path,
    json: bool,
    progress: bool,
) -> anyhow::Result<u8> {
    let (loaded, project) = crate::project::load(config)?;
    let c = &loaded.config;
    let list = match labels {
        Some(file) => sspa_describe::read_label_file(file)?,
        None => sspa_stages::resolve_labels(&c.labels, &sspa_stages::DataLocation::of(&c.data), &project.root)?,
    };
    for warning in list.warnings() {
        tracing::warn!("{warning}");
    }
    let _lock = WorkspaceLock::acquire(&project.workspace.root, "describe")?;
    let state_dir = project.workspace.state_dir("describe");
    std::fs::create_dir_all(&state_dir)?;
    let request = DescribeRequest::new(c.domain.clone(), c.llm.clone(), c.prompt.clone(), &project.root, list);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().worker_threads(2).build()?;
    let bar = if progress { indicatif::ProgressBar::new(0) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("describe [{elapsed_precise}] [{bar:30}] {pos}/{len} answers {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let update = |p: DescribeProgress| {
        bar.set_length(p.total);
        bar.set_position(p.done);
        if let Some(limit) = p.concurrency {
            bar.set_message(sspa_stages::concurrency_message(limit));
        }
    };
    let summary = runtime.block_on(sspa_describe::describe(&request, &state_dir, output, &update));
    bar.finish_and_clear();
    let summary = summary?;
    if json {
        print_json(&summary)?;
    } else {
        println!(
            "{} labels: {} cached, {} new, {} failed; {} duplicate(s) skipped; written to {}",
            summary.labels,
            summary.cached,
            summary.new,
            summary.failed,
            summary.duplicates.len(),
            output.display()
        );
        if summary.new > 0 {
            let limit = summary
                .concurrency
                .map_or(String::new(), |c| format!("; concurrency {} → {} (lowest {})", c.start, c.current, c.lowest));
            println!(
                "{} requests; tokens: {} prompt + {} completion{limit}",
                summary.requests, summary.prompt_tokens, summary.completion_tokens
            );
        }
        for f in &summary.failures {
            println!("failed: `{}` (sample {}): {}", f.label, f.sample, f.reason);
        }
    }
    Ok(if summary.failed > 0 { exit::STAGE_FAILED } else { exit::OK })
}
