//! The domain config schema: one struct per TOML section.
//!
//! Unknown keys are rejected by [`crate::load`] (which reports all of them with their line and
//! column), not by serde, so that one typo does not hide the next. Defaults follow `shared/design/SSPA.md` (training recipe) and
//! the issues' wording. Paths are relative to the project root (the directory holding `pipeline/`).

use crate::preset::{ComputeDevice, Precision, Preset};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A whole domain file, e.g. `domains/demo.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DomainConfig {
    /// `[domain]` (required): the domain's name and description.
    pub domain: DomainSection,
    /// `[labels]`: where the label list comes from. Default: the data manifest.
    #[serde(default)]
    pub labels: LabelsSection,
    /// `[llm]`: the endpoint that writes KAP descriptions. Default: the local server of
    /// `scripts/llm-server`.
    #[serde(default)]
    pub llm: LlmSection,
    /// `[prompt]` (required): the KAP template and how answers are cut.
    pub prompt: PromptSection,
    /// `[data]` (required): the dataset manifest and sharding.
    pub data: DataSection,
    /// `[model]`: encoder preset and the SSPA head's size.
    #[serde(default)]
    pub model: ModelSection,
    /// `[features]`: how the features stage stores the frozen image encoder's features.
    #[serde(default)]
    pub features: FeaturesSection,
    /// `[train]`: optimiser, schedule, EMA, loss and device.
    #[serde(default)]
    pub train: TrainSection,
    /// `[ablation]`: the paper's ablation switches. Default: full SSPA.
    #[serde(default)]
    pub ablation: AblationSection,
    /// `[evaluate]`: metric kind, threshold, top-k and the scored split.
    #[serde(default)]
    pub evaluate: EvaluateSection,
    /// `[workspace]`: where stage outputs and run records live.
    #[serde(default)]
    pub workspace: WorkspaceSection,
    /// `[promote]`: the gate between a retrained candidate and the registry's `current` model.
    #[serde(default)]
    pub promote: PromoteSection,
    /// `[notify]`: a command told of every `retrain` decision. Default: none.
    #[serde(default)]
    pub notify: NotifySection,
    /// `[cache]`: a remote stage cache shared by workspaces. Default: none.
    #[serde(default)]
    pub cache: CacheSection,
    /// `[executor]`: settings of the executors of `run --executor …`.
    #[serde(default)]
    pub executor: ExecutorSection,
}

/// `[domain]`: what the classifier recognises.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DomainSection {
    /// Short identifier (`[a-z0-9_]+`), used in file names and reports.
    pub name: String,
    /// One or two sentences given to the LLM as context for every label.
    pub description: String,
}

/// `[labels]`: where the ordered label list comes from. Exactly one source.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LabelsSection {
    /// Labels written inline, in class-index order.
    pub names: Option<Vec<String>>,
    /// A text file with one label per line.
    pub file: Option<PathBuf>,
    /// Take the label list from the data manifest (the default when nothing else is given).
    #[serde(default)]
    pub from_manifest: bool,
}

/// Which OpenAI-compatible route to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmApi {
    /// `/v1/completions` with a few-shot prompt ending in `"{label}:"` (base models).
    Completions,
    /// `/v1/chat/completions` with system/user/assistant messages (instruction models).
    Chat,
}

/// `[llm]`: the endpoint that writes KAP descriptions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LlmSection {
    /// Base URL up to and including `/v1`, e.g. `http://127.0.0.1:8088/v1`.
    pub base_url: String,
    /// Environment variable that, when set, overrides `base_url` (for cron jobs and CI).
    pub base_url_env: Option<String>,
    /// Model name sent in the request body.
    pub model: String,
    /// Route called: `completions` (base models) or `chat` (instruction models). Default
    /// `completions`.
    pub api: LlmApi,
    /// Sampling temperature sent with every request, in `[0, 2]`; 0 is greedy. Default 0.
    pub temperature: f64,
    /// Most tokens an answer may have (the request's `max_tokens`); positive. Default 64.
    pub max_tokens: u32,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Answers per label (averaged downstream).
    pub samples: u32,
    /// Seed sent with every request; a label's `k`-th answer (from 0) is asked with `seed + k`.
    /// Default 0.
    pub seed: u64,
    /// Per-request timeout in seconds: the whole answer must arrive within it.
    pub timeout_s: f64,
    /// Ask for answers as server-sent events (`"stream": true`); servers that refuse are asked
    /// again without, once, and the rest of the run does not stream.
    pub stream: bool,
    /// Seconds without a streamed token after which a streaming request is closed and retried.
    /// Waiting longer than this for the answer to start (the server queues the request or is
    /// slow to read the prompt) lowers the concurrency limit but keeps the request, up to
    /// `timeout_s`.
    pub idle_timeout_s: f64,
    /// Requests in flight at once.
    pub concurrency: u32,
    /// Opt-in probing above `concurrency`: when set and the server advertises no slots (vLLM,
    /// TGI and hosted endpoints have no llama.cpp `GET /props`), the adaptive limit may rise one
    /// request at a time up to this many in flight while the server keeps up. At least
    /// `concurrency`; unset (the default), `concurrency` is the most ever in flight.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_concurrency: Option<u32>,
    /// Requests started per second at most; 0 means unlimited.
    pub requests_per_second: f64,
    /// Retries after the first attempt, for transient failures.
    pub max_retries: u32,
    /// Answers shorter than this (after trimming) count as failures and are retried.
    pub min_chars: u32,
    /// Name of the environment variable holding the API key (the key itself never appears in config).
    pub api_key_env: Option<String>,
}

impl Default for LlmSection {
    fn default() -> Self {
        Self {
            base_url: "http://127.0.0.1:8088/v1".into(),
            base_url_env: Some("SSPA_LLM_URL".into()),
            model: "gemma-3-270m".into(),
            api: LlmApi::Completions,
            temperature: 0.0,
            max_tokens: 64,
            stop: vec!["\n".into()],
            samples: 1,
            seed: 0,
            timeout_s: 60.0,
            stream: true,
            idle_timeout_s: 20.0,
            concurrency: 2,
            probe_concurrency: None,
            requests_per_second: 0.0,
            max_retries: 4,
            min_chars: 12,
            api_key_env: None,
        }
    }
}

/// `[prompt]`: the KAP template and post-processing of answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromptSection {
    /// minijinja template, e.g. `templates/kap/demo.j2`.
    pub template: PathBuf,
    /// Keep at most this many characters of the answer (cut at a sentence end when possible).
    #[serde(default = "default_max_chars")]
    pub max_chars: u32,
    /// Keep at most this many sentences of the answer.
    #[serde(default = "default_max_sentences")]
    pub max_sentences: u32,
}

fn default_max_chars() -> u32 {
    300
}
fn default_max_sentences() -> u32 {
    2
}

/// What to do with an image that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBadImage {
    /// Stop with an error naming the images (missing files are found before any is decoded).
    #[default]
    Fail,
    /// Leave the image out of the shards.
    Skip,
}

/// `[features]`: the cached image features of the frozen-encoder path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FeaturesSection {
    /// How each feature value is stored: `f32` (default: the encoder's values exactly), `f16` or
    /// `bf16` (half the disk and page cache; values rounded once when written, read back as f32).
    pub dtype: FeatureDtype,
}

/// `features.dtype`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatureDtype {
    /// 4 bytes a value, exact.
    #[default]
    F32,
    /// IEEE half precision: 2 bytes, 11 significant bits, range ±65504.
    F16,
    /// bfloat16: 2 bytes, 8 significant bits, f32's range.
    Bf16,
}

impl FeatureDtype {
    /// Bytes a value.
    pub fn size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::Bf16 => 2,
        }
    }
}

/// `[data]`: the dataset and how it is sharded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataSection {
    /// Dataset manifest, e.g. `data_manifest/demo.toml`.
    pub manifest: PathBuf,
    /// Directory the manifest's relative paths start from.
    pub root: Option<PathBuf>,
    /// Environment variable that, when set, overrides `root`.
    #[serde(default = "default_root_env")]
    pub root_env: Option<String>,
    /// An image that cannot be read: `fail` stops sharding with an error, `skip` leaves it out.
    /// Default `fail`.
    #[serde(default)]
    pub on_bad_image: OnBadImage,
    /// Images per shard file.
    #[serde(default = "default_shard_size")]
    pub shard_size: u32,
    /// How each stored image is encoded in the shard files: `auto` (default: `jpeg` when
    /// `model.image_size` ≥ 224, else `raw`; resolved when the config is loaded), `raw` (uint8
    /// RGB, no decode when read), `png` (lossless) or `jpeg` (lossy, `jpeg_quality`).
    #[serde(default, skip_serializing_if = "ShardEncoding::is_raw")]
    pub shard_encoding: ShardEncoding,
    /// Quality (1–100) of JPEG shards; default 95.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jpeg_quality: Option<u8>,
}

/// `data.shard_encoding`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShardEncoding {
    /// [`ShardEncoding::Jpeg`] for images of [`JPEG_FROM_IMAGE_SIZE`] px and more, where raw
    /// pixels cost 4.7–6.4× the disk of JPEG at quality 95 and the loader still outruns a GPU
    /// step; [`ShardEncoding::Raw`] below, where shards are small and the images reproduce
    /// exactly. What a domain file means when it leaves the key out ([`crate::parse`] fills it
    /// in and resolves it); a resolved config never holds it.
    Auto,
    /// Row-major uint8 RGB: 3 bytes a pixel, read without decoding. What an absent key means in
    /// resolved settings (stage parameters), which leave `raw` out.
    #[default]
    Raw,
    /// One PNG a stored image (fast compression): lossless, decoded when read.
    Png,
    /// One baseline JPEG a stored image: lossy, decoded when read.
    Jpeg,
}

/// `model.image_size` from which `shard_encoding = "auto"` stores JPEG.
pub const JPEG_FROM_IMAGE_SIZE: u32 = 224;

impl ShardEncoding {
    /// Whether this is `raw` (left out of the stage parameters, so results sharded before the key
    /// existed keep their key).
    pub fn is_raw(&self) -> bool {
        *self == Self::Raw
    }

    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Raw => "raw",
            Self::Png => "png",
            Self::Jpeg => "jpeg",
        }
    }

    /// The encoding `auto` stands for at `image_size`; any other is itself.
    pub fn resolve(self, image_size: u32) -> Self {
        match self {
            Self::Auto if image_size >= JPEG_FROM_IMAGE_SIZE => Self::Jpeg,
            Self::Auto => Self::Raw,
            other => other,
        }
    }
}

impl DataSection {
    /// `jpeg_quality` when set, else 95.
    pub fn jpeg_quality(&self) -> u8 {
        self.jpeg_quality.unwrap_or(DEFAULT_JPEG_QUALITY)
    }
}

/// `data.jpeg_quality` when not set.
pub const DEFAULT_JPEG_QUALITY: u8 = 95;

fn default_root_env() -> Option<String> {
    Some("SSPA_DATA_ROOT".into())
}
fn default_shard_size() -> u32 {
    1000
}

/// `[model]`: encoders and the SSPA head's size.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelSection {
    /// One of `minilm-efficientnet-lite0`, `clip-rn50`, `clip-rn101`, `clip-vit-b32`, `clip-vit-b16`
    /// (see [`crate::PRESETS`]).
    pub preset: Preset,
    /// Directory of text-encoder weights (HF layout); empty means the preset's installed default.
    pub text_weights: Option<PathBuf>,
    /// Directory or file of image-encoder weights; empty means the preset's installed default.
    pub image_weights: Option<PathBuf>,
    /// Square input size in pixels.
    pub image_size: u32,
    /// Joint embedding width `d` of the SSPA head (divisible by 4).
    pub embed_dim: u32,
    /// CAP prompt tokens `M`.
    pub prompt_tokens: u32,
    /// Keep the image encoder frozen and cache its features.
    pub freeze_image_encoder: bool,
    /// How image-encoder features reach the joint width `d`.
    pub image_projection: ImageProjectionKind,
    /// The head trained on the image features: `sspa` (the method), or a peer a user would try
    /// instead on the same features, loss and budget — `linear` (a linear probe on the global
    /// feature), `mlp` (two layers on the global and the mean patch feature) or `query-decoder`
    /// (ML-Decoder style: label queries, one cross-attention layer, group fully-connected
    /// outputs). Peers read no text and ignore `[ablation]`; their inner width is `embed_dim`.
    /// Default `sspa` (left out of the stage keys, so SSPA runs keep theirs).
    #[serde(skip_serializing_if = "HeadKind::is_sspa")]
    pub head: HeadKind,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            preset: Preset::MinilmEfficientnetLite0,
            text_weights: None,
            image_weights: None,
            image_size: 224,
            embed_dim: 384,
            prompt_tokens: 4,
            freeze_image_encoder: true,
            image_projection: ImageProjectionKind::Linear,
            head: HeadKind::Sspa,
        }
    }
}

/// `[train.asl]`: Asymmetric Loss parameters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AslSection {
    /// Focusing exponent `γ+` of positives: their term is weighted by `(1 − p)^γ+`; 0 or more.
    /// Default 0.
    pub gamma_pos: f64,
    /// Focusing exponent `γ−` of negatives: their term is weighted by `p_m^γ−`; 0 or more.
    /// Default 4.
    pub gamma_neg: f64,
    /// Probability margin `m` shifted off negatives.
    pub clip: f64,
    /// Lower clamp of the probabilities inside the logs; positive. Default 1e-8.
    pub eps: f64,
    /// Treat the focusing weight as a constant in backprop.
    pub detach_focusing: bool,
}

impl Default for AslSection {
    fn default() -> Self {
        Self { gamma_pos: 0.0, gamma_neg: 4.0, clip: 0.05, eps: 1e-8, detach_focusing: true }
    }
}

/// `[train]`: optimisation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainSection {
    /// Passes over the training images; positive. Default 20.
    pub epochs: u32,
    /// Images per optimiser step; positive. Default 32.
    pub batch_size: u32,
    /// Peak learning rate of AdamW, reached after the warm-up and decayed to 0 by a cosine;
    /// positive. Default 5e-5.
    pub lr: f64,
    /// AdamW's decoupled weight decay, applied to weight matrices only (not to biases, LayerNorms,
    /// logit scales or CAP prompt tokens); 0 or more. Default 1e-4.
    pub weight_decay: f64,
    /// Epochs of linear learning-rate warm-up (fractions allowed, rounded to steps); 0 or more.
    /// Default 1.
    pub warmup_epochs: f64,
    /// Decay of the exponential moving average of the weights, updated every step; in `[0, 1)`.
    /// Default 0.9997.
    pub ema_decay: f64,
    /// Global gradient-norm clip; 0 disables it.
    pub grad_clip: f64,
    /// Weight `λ` of the regional loss.
    pub lambda_regional: f64,
    /// Seed of the initialisation, the per-epoch shuffles and the validation slice. Default 0.
    pub seed: u64,
    /// `cpu` (burn flex), `libtorch` or `cuda:N` (libtorch; builds with the `tch` feature): the
    /// device of every stage that computes.
    pub device: ComputeDevice,
    /// `f32`, `mixed` (f32 master weights, bf16 forward and backward) or `bf16` (everything bf16).
    pub precision: Precision,
    /// `[train.asl]`: the Asymmetric Loss of both branches.
    pub asl: AslSection,
    /// Where training starts: `scratch` (the seeded initialisation), `current` or another alias
    /// of the model registry, or a registry version `v<N>` (warm start; see [`TrainInit`]).
    pub init: TrainInit,
    /// The registry weights file `init` resolved to (set when the config is bound to its
    /// workspace, never written in a domain file); its content is part of the train key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_weights: Option<PathBuf>,
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            epochs: 20,
            batch_size: 32,
            lr: 5e-5,
            weight_decay: 1e-4,
            warmup_epochs: 1.0,
            ema_decay: 0.9997,
            grad_clip: 0.0,
            lambda_regional: 1.0,
            seed: 0,
            device: ComputeDevice::Cpu,
            precision: Precision::F32,
            asl: AslSection::default(),
            init: TrainInit::Scratch,
            init_weights: None,
        }
    }
}

/// `train.init`: the seeded initialisation, or the weights of a registry model.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TrainInit {
    /// Fresh weights drawn from `train.seed`.
    #[default]
    Scratch,
    /// The promoted weights of a registry model (`current`, another alias, or `v3`).
    Model(crate::ModelReference),
}

impl TrainInit {
    /// `scratch`, `v<N>`, or an alias name (a-z, 0-9, `-`, `_`).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "scratch" {
            return Ok(Self::Scratch);
        }
        crate::ModelReference::parse(text).map(Self::Model).map_err(|error| match error {
            crate::ReferenceError::VersionZero(_) => error.to_string(),
            crate::ReferenceError::Invalid(_) => {
                format!("`{text}` is none of `scratch`, `current` (or another alias: a-z, 0-9, -, _) and `v<N>`")
            }
        })
    }

    /// The registry model it names, if any.
    pub fn model(&self) -> Option<&crate::ModelReference> {
        match self {
            Self::Scratch => None,
            Self::Model(reference) => Some(reference),
        }
    }
}

impl std::fmt::Display for TrainInit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Scratch => f.write_str("scratch"),
            Self::Model(reference) => reference.fmt(f),
        }
    }
}

impl Serialize for TrainInit {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TrainInit {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `[promote]`: the gate `sspa-pipe retrain` puts between a candidate and the registry's
/// `current` model, both scored on the same current evaluation split.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PromoteSection {
    /// The metric that must improve: a key of the evaluate report (`mAP`, `CF1`, `OF1`,
    /// `top3.CF1`, pedestrian `mA`, ...).
    pub metric: String,
    /// Which weights are compared, registered and served: `ema` or `raw`.
    pub weights: ServedWeights,
    /// The candidate's `metric` must beat the current model's by at least this (absolute, in
    /// percentage points).
    pub min_delta: f64,
    /// Metrics that may not drop by more than `max_drop` points.
    pub guard: Vec<String>,
    /// How far each `guard` metric may fall below the current model's (absolute, in percentage
    /// points; also `metric`'s allowance on the shared labels when the candidate knows new ones);
    /// 0 or more. Default 1.
    pub max_drop: f64,
}

impl Default for PromoteSection {
    fn default() -> Self {
        Self {
            metric: "mAP".into(),
            weights: ServedWeights::Ema,
            min_delta: 0.0,
            guard: vec!["CF1".into(), "OF1".into()],
            max_drop: 1.0,
        }
    }
}

/// `promote.weights`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServedWeights {
    /// The weights of the last training step.
    Raw,
    /// The exponential moving average of the weights (`train.ema_decay`).
    Ema,
}

impl ServedWeights {
    /// `raw` / `ema`: the prefix of the run index's metric names.
    pub fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Ema => "ema",
        }
    }
}

/// `[cache]`: a remote cache shared by workspaces (no stage reads it: it changes no key).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheSection {
    /// `s3://bucket/prefix`, `gs://…`, `az://…` or `file:///dir`; credentials come from the
    /// environment only (`AWS_ACCESS_KEY_ID`, … as the provider's SDKs read them).
    pub remote: Option<String>,
    /// Push each computed result (per stage: `[cache.stages.<name>] push = false`).
    pub push: bool,
    /// `[cache.stages.<name>]`: per-stage settings, keyed by stage name. Default: none.
    pub stages: std::collections::BTreeMap<String, CacheStageSection>,
}

impl Default for CacheSection {
    fn default() -> Self {
        Self { remote: None, push: true, stages: Default::default() }
    }
}

/// `[cache.stages.<name>]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheStageSection {
    /// Push this stage's computed results, in place of `cache.push` (required).
    pub push: bool,
}

impl CacheSection {
    /// Whether results of `stage` are pushed after they are computed.
    pub fn pushes(&self, stage: &str) -> bool {
        self.stages.get(stage).map_or(self.push, |s| s.push)
    }
}

/// `[executor]`: where `run --executor …` runs stages (no stage reads it: it changes no key).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecutorSection {
    /// `[executor.slurm]`: the Slurm executor's `sbatch` settings.
    pub slurm: SlurmSection,
}

/// `[executor.slurm]`: every job's `sbatch` settings; `[executor.slurm.<stage>]`: one stage's.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SlurmSection {
    /// `--partition` of every job (`--slurm-partition` overrides it).
    pub partition: Option<String>,
    /// More `sbatch` arguments for every job, e.g. `["--account=ml"]`.
    pub args: Vec<String>,
    /// Seconds between two `squeue` polls of a job.
    pub poll_s: f64,
    /// Seconds a job may stay pending for any reason but the jobs it needs (`Resources`,
    /// `Priority`, `ReqNodeNotAvail`, …) before the run cancels it and fails its stage, naming the
    /// reason (the run holds the workspace lock meanwhile).
    pub max_pending_s: f64,
    /// The `sspa-pipe` the compute nodes run (default: this one; it must be on a shared path).
    pub program: Option<PathBuf>,
    /// `[executor.slurm.<stage>]`.
    #[serde(flatten)]
    pub stages: std::collections::BTreeMap<String, SlurmStageSection>,
}

impl Default for SlurmSection {
    fn default() -> Self {
        Self {
            partition: None,
            args: Vec::new(),
            poll_s: 2.0,
            max_pending_s: 12.0 * 3600.0,
            program: None,
            stages: Default::default(),
        }
    }
}

/// `[executor.slurm.<stage>]`: the stage's resources, each the `sbatch` option of that name.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlurmStageSection {
    /// `--partition` of this stage's jobs, in place of `executor.slurm.partition` and
    /// `--slurm-partition`. Default: unset.
    pub partition: Option<String>,
    /// `--gres`, e.g. `"gpu:1"`.
    pub gres: Option<String>,
    /// `--cpus-per-task`.
    pub cpus: Option<u32>,
    /// `--mem`, e.g. `"32G"`.
    pub mem: Option<String>,
    /// `--time`, e.g. `"04:00:00"`.
    pub time: Option<String>,
    /// More `sbatch` arguments for this stage's jobs, after `executor.slurm.args`. Default: none.
    pub args: Vec<String>,
}

/// `[notify]`: a command run after every `retrain` decision with the decision JSON on stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct NotifySection {
    /// Program and arguments (no shell), e.g. `["curl", "-sS", "-d", "@-", "https://hooks.example/x"]`.
    pub command: Vec<String>,
    /// Seconds before the command is killed.
    pub timeout_s: f64,
}

impl Default for NotifySection {
    fn default() -> Self {
        Self { command: Vec::new(), timeout_s: 30.0 }
    }
}

/// `model.head`: which head maps the image features to logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeadKind {
    /// The SSPA head (global and regional branches).
    #[default]
    Sspa,
    /// A linear probe on the global feature.
    Linear,
    /// A two-layer MLP on the global feature and the mean patch feature.
    Mlp,
    /// An ML-Decoder-style query decoder over the patch features.
    QueryDecoder,
}

impl HeadKind {
    /// Every kind, SSPA first.
    pub const ALL: [HeadKind; 4] = [HeadKind::Sspa, HeadKind::Linear, HeadKind::Mlp, HeadKind::QueryDecoder];

    /// The name used in configs: `sspa`, `linear`, `mlp`, `query-decoder`.
    pub fn name(self) -> &'static str {
        match self {
            HeadKind::Sspa => "sspa",
            HeadKind::Linear => "linear",
            HeadKind::Mlp => "mlp",
            HeadKind::QueryDecoder => "query-decoder",
        }
    }

    /// Whether this is the SSPA head (the default).
    pub fn is_sspa(&self) -> bool {
        *self == HeadKind::Sspa
    }
}

impl std::fmt::Display for HeadKind {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

impl std::str::FromStr for HeadKind {
    type Err = String;

    /// # Errors
    /// The unknown name and the four known ones.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        HeadKind::ALL
            .into_iter()
            .find(|kind| kind.name() == value)
            .ok_or_else(|| format!("unknown head `{value}`; expected one of sspa, linear, mlp, query-decoder"))
    }
}

/// `model.image_projection`: how the image encoder's features (width `c`) reach the joint width `d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageProjectionKind {
    /// A learnable `Linear(c, d)` shared by the global and the patch features ("backbone + projection").
    Linear,
    /// Use the encoder's features as they are (CLIP's joint space); needs `c = d`.
    None,
}

/// How `T_u` is synthesised from `T_k`, `T_c` and `f_g` (Table VII).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synthesis {
    /// Quaternion Semantic Modeling: `W_h [T_k ‖ T_c ‖ f_g]`, then two quaternion layers (full SSPA).
    Quaternion,
    /// The sum `T_k + T_c`.
    Sum,
    /// Concatenation and one linear layer: `W_h [T_k ‖ T_c ‖ f_g]`, `3d → d`.
    Concat,
    /// Dense layers of QSM's topology in place of the quaternion layers.
    Mlp,
}

/// Which GDMA alignment directions run (Tables VIII, IX).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Alignment {
    /// Both directions, in parallel (full SSPA).
    Both,
    /// Visual-to-semantic only: the text features attend to the patches (`T*`).
    VisualToSemantic,
    /// Semantic-to-visual only: the patches attend to the text features (`F*`).
    SemanticToVisual,
    /// No alignment.
    None,
}

/// Patch aggregation (Fig. 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregator {
    /// Patches weighted by a softmax of their logits with a learnable temperature `τ` (full SSPA).
    Soft,
    /// The mean over patches.
    Mean,
    /// The maximum over patches (CDUL).
    Hard,
}

/// Which branches produce the score (Eq. 18).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Branches {
    /// The mean of both branches' sigmoids (full SSPA).
    Both,
    /// The global branch alone (`f_g` against the text features).
    Global,
    /// The regional branch alone (aggregated patch logits).
    Regional,
}

/// Text features the global branch compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GlobalText {
    /// The CAP text features `T_l` (full SSPA).
    Cap,
    /// The KAP text features `T_k`.
    Kap,
}

/// `ablation.kap`: where the KAP text features `T_k` come from (Table VI).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KapSource {
    /// The LLM's descriptions (full SSPA).
    Llm,
    /// The fixed template `"A photo of a {label}."` alone.
    Template,
    /// No KAP input: QSM synthesises `T_u` from `T_c` and `f_g` only.
    Off,
}

impl<'de> Deserialize<'de> for KapSource {
    /// `"llm"`, `"template"`, `"off"`, or the boolean of earlier configs (`true` = `"llm"`,
    /// `false` = `"template"`).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bool(bool),
            Name(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Bool(true) => Ok(Self::Llm),
            Written::Bool(false) => Ok(Self::Template),
            Written::Name(name) => match name.as_str() {
                "llm" => Ok(Self::Llm),
                "template" => Ok(Self::Template),
                "off" => Ok(Self::Off),
                other => Err(serde::de::Error::custom(format!(
                    "unknown KAP source `{other}`, expected `llm`, `template` or `off`"
                ))),
            },
        }
    }
}

/// `ablation.classifier`: what the labels' category centres are (Table IX).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classifier {
    /// The aligned text features `T*` (regional branch) and the text features of `global_text`
    /// (global branch): full SSPA.
    Text,
    /// Learned per-class weights `W ∈ R^{C×d}` in both branches ("Uni-D"): text reaches the
    /// prediction only through the semantic-to-visual alignment.
    Learned,
}

/// `[ablation]`: the paper's ablation switches; defaults are full SSPA.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct AblationSection {
    /// Where `T_k` comes from: the LLM's descriptions, the template `"A photo of a {label}."`
    /// alone, or nowhere (`off`).
    pub kap: KapSource,
    /// CAP: `model.prompt_tokens` learnable prompt tokens in front of each label; `false` uses the
    /// fixed embeddings of `"A photo of a {label}."` as `T_l`. Default `true`.
    pub cap: bool,
    /// Dynamic Semantic Filtering of the CAP features by the patches (`T_c = DSF(T_l, F_p)`);
    /// `false` takes `T_c = T_l`. Default `true`.
    pub dsf: bool,
    /// How `T_u` is synthesised: `quaternion` (QSM), `sum`, `concat` or `mlp` (Table VII).
    /// Default `quaternion`.
    pub synthesis: Synthesis,
    /// GDMA directions that run: `both`, `visual_to_semantic`, `semantic_to_visual` or `none`
    /// (Tables VIII, IX). Default `both`.
    pub alignment: Alignment,
    /// Gated alignments (`X + g ⊙ Ã`); `false` adds the attended signal as it is (`X + A`).
    /// Default `true`.
    pub gate: bool,
    /// How patch-label logits become the regional logit: `soft`, `mean` or `hard` (Fig. 5).
    /// Default `soft`.
    pub aggregator: Aggregator,
    /// Which branches produce the score: `both`, `global` or `regional` (Eq. 18). Default `both`.
    pub branches: Branches,
    /// Text features of the global branch: `cap` (`T_l`) or `kap` (`T_k`; not with
    /// `ablation.kap = "off"`). Default `cap`.
    pub global_text: GlobalText,
    /// Category centres: `text` (aligned text features) or `learned` (per-class weights, Uni-D;
    /// needs `ablation.alignment` `semantic_to_visual` or `none` unless `ablation.branches =
    /// "global"`). Default `text`.
    pub classifier: Classifier,
}

impl Default for AblationSection {
    fn default() -> Self {
        Self {
            kap: KapSource::Llm,
            cap: true,
            dsf: true,
            synthesis: Synthesis::Quaternion,
            alignment: Alignment::Both,
            gate: true,
            aggregator: Aggregator::Soft,
            branches: Branches::Both,
            global_text: GlobalText::Cap,
            classifier: Classifier::Text,
        }
    }
}

/// `evaluate.kind`: which metrics a domain reports besides the common ones. The one definition:
/// sspa-metrics re-exports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// mAP, CP/CR/CF1, OP/OR/OF1 and their top-k variants.
    Natural,
    /// Adds mA and the instance Accuracy, Precision, Recall and F1.
    Pedestrian,
}

impl std::str::FromStr for MetricKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "natural" => Ok(Self::Natural),
            "pedestrian" => Ok(Self::Pedestrian),
            other => Err(format!("unknown metric kind `{other}` (expected `natural` or `pedestrian`)")),
        }
    }
}

impl std::fmt::Display for MetricKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Natural => "natural",
            Self::Pedestrian => "pedestrian",
        })
    }
}

/// `[evaluate]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct EvaluateSection {
    /// Metrics reported besides the common ones: `natural` or `pedestrian` (adds mA and the
    /// instance metrics). Default `natural`.
    pub kind: MetricKind,
    /// Probability at or above which a label counts as predicted; in `(0, 1)`. Default 0.5.
    pub threshold: f64,
    /// Labels per image the top-k metrics consider (each still needs `threshold`); positive.
    /// Default 3.
    pub top_k: u32,
    /// Split that is scored.
    pub split: String,
}

impl Default for EvaluateSection {
    fn default() -> Self {
        Self { kind: MetricKind::Natural, threshold: 0.5, top_k: 3, split: "test".into() }
    }
}

/// `[workspace]`: where stage outputs and run records live.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct WorkspaceSection {
    /// Relative to the project root; default `work/<domain.name>`.
    pub dir: Option<PathBuf>,
}
