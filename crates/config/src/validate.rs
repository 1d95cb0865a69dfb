//! Checks that serde cannot express: ranges, exclusive options, files that must exist, rules
//! between fields, and what the build offers.

use crate::Checks;
use crate::schema::*;
use std::path::Path;

/// Returns `(key path, message)` for every failed check, section by section in file order.
pub(crate) fn validate(c: &DomainConfig, root: &Path, checks: &Checks<'_>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut fail = |path: &str, message: String| out.push((path.to_string(), message));
    domain(&mut fail, c);
    labels(&mut fail, c, root);
    lifecycle(&mut fail, c);
    llm(&mut fail, &c.llm);
    inputs(&mut fail, c, root);
    model(&mut fail, c);
    train(&mut fail, &c.train, checks);
    evaluate(&mut fail, &c.evaluate);
    if let Some(external) = checks.external {
        out.extend(external(c, root));
    }
    out
}

/// `[domain]`: the name (a-z, 0-9, _) and a description for the LLM.
fn domain(fail: &mut impl FnMut(&str, String), c: &DomainConfig) {
    let name = &c.domain.name;
    if name.is_empty() || !name.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_') {
        fail("domain.name", format!("`{name}` must be non-empty and use only a-z, 0-9 and _"));
    }
    if c.domain.description.trim().is_empty() {
        fail("domain.description", "must not be empty: the LLM reads it as context".into());
    }
}

/// `[labels]`: one source, no empty or duplicate names, an existing file.
fn labels(fail: &mut impl FnMut(&str, String), c: &DomainConfig, root: &Path) {
    let sources =
        [c.labels.names.is_some(), c.labels.file.is_some(), c.labels.from_manifest].iter().filter(|s| **s).count();
    if sources > 1 {
        fail("labels", "give only one of `names`, `file` and `from_manifest`".into());
    }
    if let Some(names) = &c.labels.names {
        if names.is_empty() {
            fail("labels.names", "is empty".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (i, label) in names.iter().enumerate() {
            if label.trim().is_empty() {
                fail(&format!("labels.names.{i}"), "empty label".into());
            } else if !seen.insert(label) {
                fail(&format!("labels.names.{i}"), format!("duplicate label `{label}`"));
            }
        }
    }
    if let Some(file) = &c.labels.file {
        must_exist(fail, "labels.file", root, file);
    }
}

/// What the lifecycle reads: `train.init_weights` (resolved, never written), `[promote]`,
/// `[notify]`, `[cache] remote` and `[executor.slurm]`.
fn lifecycle(fail: &mut impl FnMut(&str, String), c: &DomainConfig) {
    if c.train.init_weights.is_some() {
        fail(
            "train.init_weights",
            "is set from `train.init` when the config is bound to its workspace; write `init = \"current\"` or \"v<N>\" instead".into(),
        );
    }
    let promote = &c.promote;
    let known = gate_metrics(&c.evaluate);
    let unknown_metric =
        |name: &str| format!("`{name}` is not a metric of the evaluate report; one of {}", known.join(", "));
    if !known.contains(&promote.metric) {
        fail("promote.metric", unknown_metric(&promote.metric));
    }
    if !(promote.min_delta.is_finite() && promote.min_delta >= 0.0) {
        fail("promote.min_delta", format!("{} must be 0 or more (percentage points)", promote.min_delta));
    }
    if !(promote.max_drop.is_finite() && promote.max_drop >= 0.0) {
        fail("promote.max_drop", format!("{} must be 0 or more (percentage points)", promote.max_drop));
    }
    for (i, guard) in promote.guard.iter().enumerate() {
        if !known.contains(guard) {
            fail(&format!("promote.guard.{i}"), unknown_metric(guard));
        }
    }
    if c.notify.command.first().is_some_and(|program| program.trim().is_empty()) {
        fail("notify.command", "the first element is the program to run and must not be empty".into());
    }
    positive(fail, "notify.timeout_s", c.notify.timeout_s);

    if let Some(remote) = &c.cache.remote {
        let schemes = ["s3://", "gs://", "az://", "abfs://", "file:///"];
        if !schemes.iter().any(|scheme| remote.starts_with(scheme)) {
            fail("cache.remote", format!("`{remote}` is none of {}", schemes.map(|s| format!("{s}…")).join(", ")));
        } else if remote.contains('@') {
            fail("cache.remote", "must not hold credentials: they come from the environment".into());
        }
    }

    positive(fail, "executor.slurm.poll_s", c.executor.slurm.poll_s);
    positive(fail, "executor.slurm.max_pending_s", c.executor.slurm.max_pending_s);
}

/// `[llm]`: the endpoint, sampling, limits and environment-variable names.
fn llm(fail: &mut impl FnMut(&str, String), llm: &LlmSection) {
    if !(llm.base_url.starts_with("http://") || llm.base_url.starts_with("https://")) {
        fail("llm.base_url", format!("`{}` must start with http:// or https://", llm.base_url));
    }
    if llm.model.trim().is_empty() {
        fail("llm.model", "must not be empty".into());
    }
    if !(0.0..=2.0).contains(&llm.temperature) {
        fail("llm.temperature", format!("{} is outside [0, 2]", llm.temperature));
    }
    positive(fail, "llm.max_tokens", llm.max_tokens as f64);
    positive(fail, "llm.samples", llm.samples as f64);
    positive(fail, "llm.timeout_s", llm.timeout_s);
    positive(fail, "llm.idle_timeout_s", llm.idle_timeout_s);
    positive(fail, "llm.concurrency", llm.concurrency as f64);
    if let Some(probe) = llm.probe_concurrency
        && probe < llm.concurrency
    {
        fail(
            "llm.probe_concurrency",
            format!("{probe} is below `llm.concurrency` ({}): it may only allow more in flight", llm.concurrency),
        );
    }
    if llm.requests_per_second < 0.0 || !llm.requests_per_second.is_finite() {
        fail("llm.requests_per_second", "must be 0 (unlimited) or positive".into());
    }
    for (key, var) in [("llm.api_key_env", &llm.api_key_env), ("llm.base_url_env", &llm.base_url_env)] {
        if let Some(var) = var
            && (var.is_empty() || !var.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_'))
        {
            fail(key, format!("`{var}` is not an environment variable name (the value never goes in config)"));
        }
    }
}

/// `[prompt]` and `[data]`: files that must exist and positive sizes.
fn inputs(fail: &mut impl FnMut(&str, String), c: &DomainConfig, root: &Path) {
    must_exist(fail, "prompt.template", root, &c.prompt.template);
    positive(fail, "prompt.max_chars", c.prompt.max_chars as f64);
    positive(fail, "prompt.max_sentences", c.prompt.max_sentences as f64);

    must_exist(fail, "data.manifest", root, &c.data.manifest);
    positive(fail, "data.shard_size", c.data.shard_size as f64);
    if let Some(quality) = c.data.jpeg_quality {
        if c.data.shard_encoding != crate::ShardEncoding::Jpeg {
            fail(
                "data.jpeg_quality",
                format!(
                    "applies only to JPEG shards (`shard_encoding = \"jpeg\"`, or `\"auto\"` with \
                     `model.image_size` ≥ {}); the shards here are `{}`",
                    crate::JPEG_FROM_IMAGE_SIZE,
                    c.data.shard_encoding.name()
                ),
            );
        } else if !(1..=100).contains(&quality) {
            fail("data.jpeg_quality", format!("must be between 1 and 100, got {quality}"));
        }
    }
}

/// `[model]` and `[ablation]`: the preset's weights and widths, and the switches that exclude
/// each other.
fn model(fail: &mut impl FnMut(&str, String), c: &DomainConfig) {
    let m = &c.model;
    let preset = m.preset.info();
    if preset.clip && m.image_weights.is_none() {
        fail(
            "model.preset",
            format!(
                "`{}` needs CLIP weights, which are not shipped: set `model.image_weights` (and optionally \
                 `model.text_weights`) to an HF CLIPModel directory or an OpenAI/OpenCLIP safetensors file",
                preset.name
            ),
        );
    }
    if !preset.clip && m.image_projection == ImageProjectionKind::None && m.embed_dim as usize != preset.image_width {
        fail(
            "model.image_projection",
            format!(
                "`none` uses the image features as they are, but `{}` gives c = {} and `model.embed_dim` is {}: \
                 use `linear` or set `embed_dim = {}`",
                preset.name, preset.image_width, m.embed_dim, preset.image_width
            ),
        );
    }
    if m.embed_dim == 0 || !m.embed_dim.is_multiple_of(4) {
        fail("model.embed_dim", format!("{} must be a positive multiple of 4 (quaternion split)", m.embed_dim));
    }
    if m.head == HeadKind::QueryDecoder && !m.embed_dim.is_multiple_of(8) {
        fail(
            "model.embed_dim",
            format!("{} must be a multiple of 8: the query decoder has 8 attention heads", m.embed_dim),
        );
    }
    if m.image_size < 32 {
        fail("model.image_size", format!("{} is below 32 pixels", m.image_size));
    }
    if c.ablation.cap && m.prompt_tokens == 0 {
        fail("model.prompt_tokens", "must be at least 1 while `ablation.cap` is on".into());
    }
    let a = &c.ablation;
    if a.kap == KapSource::Off && a.global_text == GlobalText::Kap && a.branches != Branches::Regional {
        fail(
            "ablation.global_text",
            "`kap` has no KAP features to compare with while `ablation.kap = \"off\"` (use `cap`)".into(),
        );
    }
    if a.classifier == Classifier::Learned
        && matches!(a.alignment, Alignment::Both | Alignment::VisualToSemantic)
        && a.branches != Branches::Global
    {
        fail(
            "ablation.alignment",
            format!(
                "`{}` computes the aligned text centres `T*`, which `ablation.classifier = \"learned\"` replaces: \
                 use `semantic_to_visual` (the paper's Uni-D) or `none`",
                if a.alignment == Alignment::Both { "both" } else { "visual_to_semantic" }
            ),
        );
    }
}

/// `[train]`: ranges, the ASL settings, and a device this build can run.
fn train(fail: &mut impl FnMut(&str, String), t: &TrainSection, checks: &Checks<'_>) {
    positive(fail, "train.epochs", t.epochs as f64);
    positive(fail, "train.batch_size", t.batch_size as f64);
    positive(fail, "train.lr", t.lr);
    non_negative(fail, "train.weight_decay", t.weight_decay);
    non_negative(fail, "train.warmup_epochs", t.warmup_epochs);
    non_negative(fail, "train.grad_clip", t.grad_clip);
    non_negative(fail, "train.lambda_regional", t.lambda_regional);
    if !(0.0..1.0).contains(&t.ema_decay) {
        fail("train.ema_decay", format!("{} is outside [0, 1)", t.ema_decay));
    }
    if t.device.is_libtorch() && !checks.libtorch {
        fail(
            "train.device",
            format!(
                "`{}` needs the libtorch backend, which this build lacks: rebuild with `cargo build --release \
                 --features tch` (LIBTORCH_USE_PYTORCH=1 with PyTorch 2.9.0 in the active venv; see README, \
                 \"GPU training\")",
                t.device
            ),
        );
    }
    // `train.precision` (`f32`, `mixed`, `bf16`) suits every device: burn's flex CPU backend
    // computes bf16 with autodiff too (converting through f32: for tests, not for speed).
    non_negative(fail, "train.asl.gamma_pos", t.asl.gamma_pos);
    non_negative(fail, "train.asl.gamma_neg", t.asl.gamma_neg);
    if !(0.0..1.0).contains(&t.asl.clip) {
        fail("train.asl.clip", format!("{} is outside [0, 1)", t.asl.clip));
    }
    positive(fail, "train.asl.eps", t.asl.eps);
}

/// `[evaluate]`: the threshold, top-k and the split.
fn evaluate(fail: &mut impl FnMut(&str, String), e: &EvaluateSection) {
    if !(e.threshold > 0.0 && e.threshold < 1.0) {
        fail("evaluate.threshold", format!("{} is outside (0, 1)", e.threshold));
    }
    positive(fail, "evaluate.top_k", e.top_k as f64);
    if e.split.trim().is_empty() {
        fail("evaluate.split", "must name a split".into());
    }
}

/// The names `[promote]` may compare: the evaluate report's headline metrics, top-k ones as
/// `top3.CF1`, pedestrian ones only for `evaluate.kind = "pedestrian"`
/// ([`crate::metric_names::headline`]).
pub fn gate_metrics(evaluate: &crate::EvaluateSection) -> Vec<String> {
    crate::metric_names::headline(evaluate.kind, evaluate.top_k)
}

fn positive(fail: &mut impl FnMut(&str, String), path: &str, value: f64) {
    if !(value > 0.0 && value.is_finite()) {
        fail(path, format!("{value} must be positive"));
    }
}

fn non_negative(fail: &mut impl FnMut(&str, String), path: &str, value: f64) {
    if !(value >= 0.0 && value.is_finite()) {
        fail(path, format!("{value} must be zero or positive"));
    }
}

fn must_exist(fail: &mut impl FnMut(&str, String), path: &str, root: &Path, file: &Path) {
    let full = root.join(file);
    if !full.exists() {
        fail(path, format!("`{}` does not exist (looked at `{}`)", file.display(), full.display()));
    }
}
