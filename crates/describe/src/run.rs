//! The describe stage: render, look up, ask for what is missing, store, snapshot.

use crate::cache::{CacheError, CacheRow, DescriptionCache, write_parquet};
use crate::labels::{DuplicateLabel, LabelList};
use crate::postprocess::{cut_off_is_harmless, postprocess};
use serde::Serialize;
use serde_json::json;
use sspa_config::{DomainSection, LlmApi, LlmSection, PromptSection};
use sspa_llm::{ConcurrencyStats, Generation, LlmClient, LlmError, LlmSettings, RetryPolicy};
use sspa_prompt::{KapTemplate, PromptContext, PromptError, RenderedPrompt, sha256_hex};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Bumped when the meaning of a cached answer changes; part of every request key.
pub const CACHE_FORMAT_VERSION: u32 = 1;

/// What the stage reads.
#[derive(Debug, Clone)]
pub struct DescribeRequest {
    pub domain: DomainSection,
    pub llm: LlmSection,
    pub prompt: PromptSection,
    /// Directory that config paths (`prompt.template`) are relative to.
    pub project_root: PathBuf,
    /// The labels, in class-index order (`label_id` is the position here).
    pub labels: LabelList,
    /// Overrides the retry timing (the count still comes from `llm.max_retries`); tests use short waits.
    pub retry: Option<RetryPolicy>,
}

impl DescribeRequest {
    pub fn new(
        domain: DomainSection,
        llm: LlmSection,
        prompt: PromptSection,
        project_root: &Path,
        labels: LabelList,
    ) -> Self {
        Self { domain, llm, prompt, project_root: project_root.to_path_buf(), labels, retry: None }
    }
}

/// Where a run stands, for a progress line: answers done (cached ones included) of `total`,
/// and the adaptive concurrency limit once requests are being sent (absent before, and when
/// every answer was cached).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DescribeProgress {
    pub done: u64,
    pub total: u64,
    /// Requests allowed in flight at once now ([`sspa_llm::ConcurrencyStats::current`]).
    pub concurrency: Option<usize>,
}

/// A label (sample) that got no usable answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelFailure {
    pub label: String,
    pub sample: u32,
    pub reason: String,
}

/// What a run did. Counts are answers (labels × `llm.samples`).
#[derive(Debug, Clone, Serialize)]
pub struct DescribeSummary {
    pub labels: usize,
    pub samples_per_label: u32,
    /// Answers wanted: `labels × samples_per_label`.
    pub total: usize,
    /// Answers found in the cache and used. A cached answer cut off by `llm.max_tokens` that
    /// post-processing would now read into counts as failed instead (see `failures`).
    pub cached: usize,
    /// Answers received in this run.
    pub new: usize,
    /// Answers still missing (see `failures`).
    pub failed: usize,
    pub failures: Vec<LabelFailure>,
    pub duplicates: Vec<DuplicateLabel>,
    /// HTTP requests sent, retries included.
    pub requests: u64,
    /// Tokens of the prompts and answers of this run's new answers, as the server counted them
    /// (answers whose server gave no `usage` count nothing here; see `answers_without_usage`).
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// New answers whose server reported no token usage.
    pub answers_without_usage: usize,
    /// Tokens of every answer in `out_file`, cached ones included, where counted.
    pub total_prompt_tokens: u64,
    pub total_completion_tokens: u64,
    /// The adaptive concurrency limit (absent when nothing was asked).
    pub concurrency: Option<ConcurrencyStats>,
    /// Whether answers were streamed (false after falling back for a server that does not stream).
    pub streamed: Option<bool>,
    pub template_sha256: String,
    pub out_file: PathBuf,
    pub elapsed_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    #[error(transparent)]
    Prompt(#[from] PromptError),
    #[error(transparent)]
    Llm(#[from] LlmError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("no labels to describe")]
    NoLabels,
}

/// SHA-256 over everything that decides an answer: the rendered prompt, model, API kind,
/// every generation parameter (`params_json`), the sample index and [`CACHE_FORMAT_VERSION`].
/// The endpoint URL is not part of it: the same model behind another address gives the same answer.
pub fn request_key(prompt: &RenderedPrompt, model: &str, api: LlmApi, params_json: &str, sample: u32) -> String {
    let api = match api {
        LlmApi::Completions => "completions",
        LlmApi::Chat => "chat",
    };
    let material = json!({
        "cache_format": CACHE_FORMAT_VERSION,
        "prompt": prompt.canonical_text(),
        "model": model,
        "api": api,
        "params": params_json,
        "sample": sample,
    });
    sha256_hex(material.to_string().as_bytes())
}

/// One wanted answer.
struct Job {
    label_id: u32,
    label: String,
    sample: u32,
    seed: u64,
    prompt: Arc<RenderedPrompt>,
    prompt_sha256: String,
    params_json: String,
    key: String,
}

/// One call of [`describe`]: what it was given, when it started, and the answers it wants.
struct Run<'a> {
    req: &'a DescribeRequest,
    out_file: &'a Path,
    progress: &'a (dyn Fn(DescribeProgress) + Send + Sync),
    started: Instant,
    samples: u32,
    jobs: Vec<Job>,
    /// `jobs.len()`, as progress counts it.
    total: u64,
}

/// Describes `req.labels`: answers already in the cache under `state_dir` are reused, missing ones
/// are asked for (each made durable as it arrives), and a snapshot of the requested labels'
/// rows is written to `out_file` (Parquet, atomically). Labels that got no answer are listed in
/// [`DescribeSummary::failures`], not returned as an error. Errors are what stops a whole run:
/// a template that does not render, an unreachable or refusing endpoint, a cache I/O failure.
/// The cache is compacted before returning, on success and on those errors alike.
pub async fn describe(
    req: &DescribeRequest,
    state_dir: &Path,
    out_file: &Path,
    progress: &(dyn Fn(DescribeProgress) + Send + Sync),
) -> Result<DescribeSummary, DescribeError> {
    let started = Instant::now();
    if req.labels.is_empty() {
        return Err(DescribeError::NoLabels);
    }
    let template = KapTemplate::load(&req.project_root.join(&req.prompt.template))?;
    let samples = req.llm.samples.max(1);
    let jobs = plan_jobs(req, &template, samples)?;
    let total = jobs.len() as u64;
    let run = Run { req, out_file, progress, started, samples, jobs, total };

    let mut cache = DescriptionCache::open(state_dir)?;
    let missing: Vec<usize> = (0..run.jobs.len()).filter(|&i| cache.get(&run.jobs[i].key).is_none()).collect();
    let mut tally = Tally::default();
    let unusable = unusable_cached(&run, &cache, &mut tally.failures);
    let cached = run.jobs.len() - missing.len() - unusable.len();
    let done = (cached + unusable.len()) as u64;
    progress(DescribeProgress { done, total, concurrency: None });
    tracing::info!(labels = req.labels.len(), total, cached, missing = missing.len(), "describe");

    ask_then_compact(&run, &missing, &mut cache, &mut tally, done).await?;
    let rows = snapshot_rows(&run, &cache, &unusable);
    write_parquet(out_file, &rows)?;
    drop(cache);
    Ok(summarize(&run, &template, cached, tally, &rows))
}

/// How much of an answer post-processing keeps: `(prompt.max_chars, prompt.max_sentences)`.
fn kept_length(req: &DescribeRequest) -> (usize, usize) {
    (req.prompt.max_chars as usize, req.prompt.max_sentences as usize)
}

/// One job per label and sample, in label order: the label's rendered prompt, the sample's seed,
/// its generation parameters and its request key.
fn plan_jobs(req: &DescribeRequest, template: &KapTemplate, samples: u32) -> Result<Vec<Job>, DescribeError> {
    let context = PromptContext { domain: req.domain.name.clone(), domain_description: req.domain.description.clone() };
    let mut jobs = Vec::with_capacity(req.labels.len() * samples as usize);
    for (label_id, label) in req.labels.labels.iter().enumerate() {
        let prompt = Arc::new(template.render(&context, label, req.llm.api)?);
        let prompt_sha256 = prompt.sha256();
        for sample in 0..samples {
            let seed = req.llm.seed.wrapping_add(u64::from(sample));
            let params_json = json!({
                "temperature": req.llm.temperature,
                "max_tokens": req.llm.max_tokens,
                "stop": req.llm.stop,
                "seed": seed,
            })
            .to_string();
            let key = request_key(&prompt, &req.llm.model, req.llm.api, &params_json, sample);
            jobs.push(Job {
                label_id: u32::try_from(label_id).unwrap_or(u32::MAX),
                label: label.clone(),
                sample,
                seed,
                prompt: prompt.clone(),
                prompt_sha256: prompt_sha256.clone(),
                params_json,
                key,
            });
        }
    }
    Ok(jobs)
}

/// The jobs whose cached answer cannot be used now, each added to `failures` saying what to change.
fn unusable_cached(run: &Run<'_>, cache: &DescriptionCache, failures: &mut Vec<LabelFailure>) -> HashSet<usize> {
    let (max_chars, max_sentences) = kept_length(run.req);
    // A cached answer cut off by `max_tokens` was kept because its kept sentences ended before the
    // cut; post-processing that now keeps more would read into the cut. Asking again would get the
    // same cut (the request is the same), so such a label fails, saying what to change.
    let mut unusable = HashSet::new();
    for (index, job) in run.jobs.iter().enumerate() {
        if let Some(row) = cache.get(&job.key)
            && row.finish_reason.as_deref() == Some("length")
            && !cut_off_is_harmless(&row.raw, max_chars, max_sentences)
        {
            unusable.insert(index);
            tracing::warn!(label = %job.label, sample = job.sample, "the cached answer was cut off before what is kept of it now");
            failures.push(LabelFailure {
                label: job.label.clone(),
                sample: job.sample,
                reason: format!(
                    "the cached answer was cut off at `llm.max_tokens` = {} tokens and `prompt.max_sentences` = \
                     {max_sentences} / `prompt.max_chars` = {max_chars} now keep its unfinished end; raise \
                     `llm.max_tokens` (a new request) or keep fewer sentences",
                    run.req.llm.max_tokens
                ),
            });
        }
    }
    unusable
}

/// Asks for the `missing` jobs (if any), then compacts the cache whatever came of asking.
async fn ask_then_compact(
    run: &Run<'_>,
    missing: &[usize],
    cache: &mut DescriptionCache,
    tally: &mut Tally,
    done: u64,
) -> Result<(), DescribeError> {
    if missing.is_empty() {
        cache.compact()?;
        return Ok(());
    }
    let outcome = query(run, missing, cache, tally, done).await;
    // Whatever happened, fold what arrived into the Parquet file before reporting.
    let compacted = cache.compact();
    outcome?;
    compacted?;
    Ok(())
}

/// The rows of the snapshot: each job's usable cached answer, post-processed, under its label.
fn snapshot_rows(run: &Run<'_>, cache: &DescriptionCache, unusable: &HashSet<usize>) -> Vec<CacheRow> {
    let (max_chars, max_sentences) = kept_length(run.req);
    let mut rows = Vec::with_capacity(run.jobs.len());
    for (index, job) in run.jobs.iter().enumerate() {
        if let Some(row) = cache.get(&job.key).filter(|_| !unusable.contains(&index)) {
            rows.push(CacheRow {
                label_id: job.label_id,
                label: job.label.clone(),
                domain: run.req.domain.name.clone(),
                description: postprocess(&row.raw, &job.label, max_chars, max_sentences),
                ..row.clone()
            });
        }
    }
    rows
}

/// The summary of a finished run, from its tally and the snapshot's `rows`.
fn summarize(run: &Run<'_>, template: &KapTemplate, cached: usize, tally: Tally, rows: &[CacheRow]) -> DescribeSummary {
    let Tally { mut failures, new, requests, prompt_tokens, completion_tokens, answers_without_usage, client } = tally;
    failures.sort_by(|a, b| (&a.label, a.sample).cmp(&(&b.label, b.sample)));
    DescribeSummary {
        labels: run.req.labels.len(),
        samples_per_label: run.samples,
        total: run.jobs.len(),
        cached,
        new,
        failed: failures.len(),
        failures,
        duplicates: run.req.labels.duplicates.clone(),
        requests,
        prompt_tokens,
        completion_tokens,
        answers_without_usage,
        total_prompt_tokens: rows.iter().filter_map(|r| r.prompt_tokens).sum(),
        total_completion_tokens: rows.iter().filter_map(|r| r.completion_tokens).sum(),
        concurrency: client.as_ref().map(|c| c.concurrency()),
        streamed: client.as_ref().map(|c| c.streaming()),
        template_sha256: template.sha256().to_owned(),
        out_file: run.out_file.to_path_buf(),
        elapsed_ms: u64::try_from(run.started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// What the asking part of a run came to.
#[derive(Default)]
struct Tally {
    failures: Vec<LabelFailure>,
    new: usize,
    requests: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    answers_without_usage: usize,
    client: Option<Arc<LlmClient>>,
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-text panic payload".to_owned())
}

/// Answers at most this often (and at the end) are reported in the log with the concurrency limit.
const PROGRESS_LOG_EVERY: u64 = 10;

/// What one request task returns: the answer and its post-processed description.
type Answer = Result<(Generation, String), LlmError>;

/// What became of one job's task: its answer, or why there is none (the text, and the request's
/// error where there was one; a panic or a cancellation has none).
type Outcome = Result<(Generation, String), (String, Option<LlmError>)>;

/// Asks for the `missing` jobs concurrently. Each task asks and post-processes one answer; a
/// task that panics becomes that answer's failure, with the panic's message as the reason.
async fn query(
    run: &Run<'_>,
    missing: &[usize],
    cache: &mut DescriptionCache,
    tally: &mut Tally,
    mut done: u64,
) -> Result<(), DescribeError> {
    let client = connect(run.req, tally).await?;
    // The limit as it starts (cut to the server's slots by `check_endpoint`), before any answer.
    (run.progress)(DescribeProgress { done, total: run.total, concurrency: Some(client.concurrency().current) });
    // Dropping the set (an early return, or the caller cancelling this future) aborts the
    // requests still in flight; every answer already received is in the cache by then.
    let (mut tasks, task_jobs) = spawn_requests(run, &client, missing);
    let result = loop {
        let Some(joined) = tasks.join_next_with_id().await else { break Ok(()) };
        let (index, outcome) = task_outcome(joined, &task_jobs);
        // Every task was registered before the first one was joined.
        let Some(index) = index else { continue };
        if let Err(error) = settle(run, &run.jobs[index], outcome, cache, tally) {
            break Err(error);
        }
        done += 1;
        report_answered(run, &client, done);
    };
    tally.requests = client.requests_sent();
    result
}

/// The client for this run (kept in `tally`), once its endpoint has answered.
async fn connect(req: &DescribeRequest, tally: &mut Tally) -> Result<Arc<LlmClient>, DescribeError> {
    let mut settings = LlmSettings::from_config(&req.llm)?;
    if let Some(retry) = req.retry {
        settings.retry = RetryPolicy { max_retries: req.llm.max_retries, ..retry };
    }
    let (max_chars, max_sentences) = kept_length(req);
    // An answer cut off by `max_tokens` is used when the sentences kept of it end before the cut
    // (its description is the whole answer's); other cut-off answers are retried, then failed.
    let client = Arc::new(
        LlmClient::new(settings)?.accept_cut_off(move |raw| cut_off_is_harmless(raw, max_chars, max_sentences)),
    );
    tally.client = Some(client.clone());
    client.check_endpoint().await?;
    Ok(client)
}

/// Starts one task per `missing` job, each asking for and post-processing its answer; returns the
/// tasks and which job each is for.
fn spawn_requests(
    run: &Run<'_>,
    client: &Arc<LlmClient>,
    missing: &[usize],
) -> (tokio::task::JoinSet<Answer>, HashMap<tokio::task::Id, usize>) {
    let (max_chars, max_sentences) = kept_length(run.req);
    let mut tasks = tokio::task::JoinSet::new();
    let mut task_jobs = HashMap::new();
    for &index in missing {
        let job = &run.jobs[index];
        let (client, prompt, seed, label) = (client.clone(), job.prompt.clone(), job.seed, job.label.clone());
        let handle = tasks.spawn(async move {
            let generation = client.generate(&prompt, seed).await?;
            #[cfg(test)]
            tests::panic_hook(&label);
            let description = postprocess(&generation.text, &label, max_chars, max_sentences);
            Ok::<_, LlmError>((generation, description))
        });
        task_jobs.insert(handle.id(), index);
    }
    (tasks, task_jobs)
}

/// Which job a finished (or panicked, or cancelled) task was for, and what became of it.
fn task_outcome(
    joined: Result<(tokio::task::Id, Answer), tokio::task::JoinError>,
    task_jobs: &HashMap<tokio::task::Id, usize>,
) -> (Option<usize>, Outcome) {
    match joined {
        Ok((id, result)) => (task_jobs.get(&id).copied(), result.map_err(|e| (e.to_string(), Some(e)))),
        Err(error) => {
            let index = task_jobs.get(&error.id()).copied();
            let reason = if error.is_panic() {
                format!("describing it panicked: {}", panic_message(error.into_panic().as_ref()))
            } else {
                "its request task was cancelled".to_owned()
            };
            (index, Err((reason, None)))
        }
    }
}

/// Records what became of `job`: an answer is stored, a fatal error stops the run (returned),
/// any other error is the job's failure.
fn settle(
    run: &Run<'_>,
    job: &Job,
    outcome: Outcome,
    cache: &mut DescriptionCache,
    tally: &mut Tally,
) -> Result<(), DescribeError> {
    match outcome {
        Ok(answer) => store_answer(run, job, answer, cache, tally)?,
        Err((_, Some(error))) if error.is_fatal() => return Err(error.into()),
        Err((reason, _)) => {
            tracing::warn!(label = %job.label, sample = job.sample, %reason, "no description");
            tally.failures.push(LabelFailure { label: job.label.clone(), sample: job.sample, reason });
        }
    }
    Ok(())
}

/// Counts an answer's tokens and appends it to the cache (durable from then on).
fn store_answer(
    run: &Run<'_>,
    job: &Job,
    (generation, description): (Generation, String),
    cache: &mut DescriptionCache,
    tally: &mut Tally,
) -> Result<(), DescribeError> {
    let Generation { text, attempts, usage, finish_reason } = generation;
    tracing::debug!(label = %job.label, sample = job.sample, attempts, "answered");
    match usage {
        Some(usage) => {
            tally.prompt_tokens += usage.prompt_tokens;
            tally.completion_tokens += usage.completion_tokens;
        }
        None => tally.answers_without_usage += 1,
    }
    cache.append(CacheRow {
        label_id: job.label_id,
        label: job.label.clone(),
        domain: run.req.domain.name.clone(),
        sample: job.sample,
        prompt_sha256: job.prompt_sha256.clone(),
        request_key: job.key.clone(),
        model: run.req.llm.model.clone(),
        params_json: job.params_json.clone(),
        description,
        raw: text,
        created_at: chrono::Utc::now(),
        prompt_tokens: usage.map(|u| u.prompt_tokens),
        completion_tokens: usage.map(|u| u.completion_tokens),
        finish_reason,
    })?;
    tally.new += 1;
    Ok(())
}

/// Reports one more answer done: to `progress` each time, to the log every
/// [`PROGRESS_LOG_EVERY`] answers and at the last.
fn report_answered(run: &Run<'_>, client: &LlmClient, done: u64) {
    let total = run.total;
    let limit = client.concurrency().current;
    (run.progress)(DescribeProgress { done, total, concurrency: Some(limit) });
    if done.is_multiple_of(PROGRESS_LOG_EVERY) || done == total {
        tracing::info!("describe: {done}/{total} answers, {limit} request(s) in flight at most");
    }
}

#[cfg(test)]
mod tests;
