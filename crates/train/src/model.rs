//! The trained module (the head — SSPA's or a peer's, `model.head` — with CAP's prompt tokens),
//! its `config.json`, deterministic initialisation and safetensors weights.
//!
//! Weight files name tensors by parameter path without the head's enum variant (`head.dsf.…`,
//! `head.linear.…`): SSPA weight files written before peers existed load unchanged.

use std::path::Path;
use std::sync::Mutex;

use crate::optim::parameter_snapshot;
use burn::module::{Module, ModuleMapper, Param, ParamId};
use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::Distribution;
use serde::{Deserialize, Serialize};
use sspa_config::{AblationSection, ModelSection, TrainSection};
use sspa_model::{Head, HeadConfig};

use crate::backbone::{Backbone, BackboneSpec};
use crate::error::TrainError;
use crate::features::atomic_write_bytes;

/// Version of `config.json` and of the checkpoint layout.
pub const FORMAT_VERSION: u32 = 2;

/// Standard deviation of the prompt tokens' initialisation (SSPA.md: N(0, 0.02²)).
const PROMPT_INIT_STD: f64 = 0.02;

/// Parameter ids start here and count up in visiting order, so that a module rebuilt from the
/// same config has the same ids (optimiser state and EMA are keyed by id).
const PARAM_ID_BASE: u64 = 0x5353_5041_0000_0000;

/// burn's CPU backend keeps one global RNG: seeding and drawing the initial weights happen under
/// this lock so that concurrent initialisations in one process stay reproducible.
static INIT_LOCK: Mutex<()> = Mutex::new(());

/// What is trained: the head, with CAP the `M` prompt tokens, and with
/// `model.freeze_image_encoder = false` the image encoder.
#[derive(Module, Debug)]
pub struct SspaModel {
    /// The head: SSPA's, or a peer's ([`sspa_model::HeadKind`]).
    pub head: Head,
    /// CAP prompt tokens `[V]_1 … [V]_M`, `[M, prompt_width]` (absent when `ablation.cap = false`).
    pub prompts: Option<Param<Tensor<2>>>,
    /// The image encoder when it is trained (absent when it is frozen and its features cached).
    pub backbone: Option<Backbone>,
}

/// Everything `config.json` records: enough to rebuild the model and to check that a checkpoint
/// belongs to the run that resumes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelConfig {
    /// [`FORMAT_VERSION`].
    pub format_version: u32,
    /// The head. An SSPA head is stored bare (as before peers existed, so SSPA `config.json`
    /// files and checkpoint fingerprints are unchanged); a peer's is tagged by `kind`.
    #[serde(with = "stored_head")]
    pub head: HeadConfig,
    /// `[model]` of the domain config.
    pub model: ModelSection,
    /// `[ablation]` of the domain config.
    pub ablation: AblationSection,
    /// `[train]` of the domain config.
    pub train: TrainSection,
    /// Label names in class-index order.
    pub labels: Vec<String>,
    /// Width `d_t` of `T_k` and `T_l`.
    pub text_width: usize,
    /// CAP prompt tokens `M` (0 without CAP).
    pub prompt_tokens: usize,
    /// Width of one prompt token.
    pub prompt_width: usize,
    /// Patches per image `N` the head was trained with.
    pub patches_per_image: usize,
    /// The trained image encoder's architecture (absent when the encoder is frozen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone: Option<BackboneSpec>,
}

impl ModelConfig {
    /// Writes `config.json` atomically.
    ///
    /// # Errors
    /// [`TrainError::Io`] or [`TrainError::Json`].
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let json = serde_json::to_vec_pretty(self).map_err(TrainError::json(path))?;
        atomic_write_bytes(path, &json)
    }

    /// Reads and checks `config.json`.
    ///
    /// # Errors
    /// [`TrainError::Io`], [`TrainError::Json`], or [`TrainError::Checkpoint`] for another format
    /// version or an invalid head.
    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let bytes = std::fs::read(path).map_err(TrainError::io(path))?;
        let config: Self = serde_json::from_slice(&bytes).map_err(TrainError::json(path))?;
        if config.format_version != FORMAT_VERSION {
            return Err(TrainError::Checkpoint {
                path: path.to_owned(),
                reason: format!("format version `{}`, expected `{FORMAT_VERSION}`", config.format_version),
            });
        }
        config.head.validate()?;
        if config.labels.is_empty() {
            return Err(TrainError::Checkpoint { path: path.to_owned(), reason: "no labels".into() });
        }
        Ok(config)
    }

    /// The same config as canonical JSON (for fingerprints and comparisons).
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A model with fresh weights drawn from `seed` (reproducible within and across processes);
    /// a backbone, if the config has one, gets random weights too (a skeleton to load into).
    ///
    /// # Errors
    /// [`TrainError::Option`] for an invalid backbone architecture.
    pub fn init(&self, seed: u64, device: &Device) -> Result<SspaModel, TrainError> {
        self.assemble(seed, device, None)
    }

    /// A model with a fresh head and prompts drawn from `seed` and `backbone` (pretrained, on
    /// `device`) as its image encoder.
    ///
    /// # Errors
    /// [`TrainError::Option`] when the config records no backbone.
    pub fn init_with_backbone(&self, seed: u64, device: &Device, backbone: Backbone) -> Result<SspaModel, TrainError> {
        if self.backbone.is_none() {
            return Err(TrainError::Option {
                key: "model.freeze_image_encoder",
                value: "true".into(),
                reason: "a frozen-encoder model has no image encoder to train",
            });
        }
        self.assemble(seed, device, Some(backbone))
    }

    fn assemble(&self, seed: u64, device: &Device, backbone: Option<Backbone>) -> Result<SspaModel, TrainError> {
        seeded(device, seed, || {
            let head = self.head.init(device);
            let prompts = (self.prompt_tokens > 0).then(|| {
                let tokens = Tensor::random(
                    [self.prompt_tokens, self.prompt_width],
                    Distribution::Normal(0.0, PROMPT_INIT_STD),
                    device,
                );
                Param::from_tensor(tokens)
            });
            let backbone = match (backbone, &self.backbone) {
                (Some(backbone), _) => Some(backbone),
                (None, Some(spec)) => Some(spec.init(device)?),
                (None, None) => None,
            };
            // Renumbering materialises every lazily initialised parameter while the lock is held.
            Ok(renumber(SspaModel { head, prompts, backbone }))
        })
    }

    /// A model of this config with the weights of `path` (written by [`save_weights`]).
    ///
    /// # Errors
    /// [`TrainError::Weights`] when the file is unreadable or its tensors do not match the model.
    pub fn load_model(&self, path: &Path, device: &Device) -> Result<SspaModel, TrainError> {
        let model = self.init(0, device)?;
        load_weights(model, path)
    }
}

/// `config.json`'s form of [`ModelConfig::head`]: SSPA bare, peers tagged by `kind`.
mod stored_head {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use sspa_model::{HeadConfig, SspaHeadConfig};

    pub fn serialize<S: Serializer>(head: &HeadConfig, serializer: S) -> Result<S::Ok, S::Error> {
        match head {
            HeadConfig::Sspa(config) => config.serialize(serializer),
            peer => peer.serialize(serializer),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<HeadConfig, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Tagged(HeadConfig),
            Bare(SspaHeadConfig),
        }
        Ok(match Stored::deserialize(deserializer)? {
            Stored::Tagged(head) => head,
            Stored::Bare(config) => HeadConfig::Sspa(config),
        })
    }
}

/// Runs `draw` with `device` seeded by `seed`, holding the process-wide initialisation lock.
///
/// burn's CPU backend has one global RNG: anything that draws random weights while another thread
/// seeds it gets other numbers. Draw every random initial value through this function (and
/// materialise lazily initialised parameters inside `draw`) to keep runs reproducible.
pub fn seeded<T>(device: &Device, seed: u64, draw: impl FnOnce() -> T) -> T {
    let _guard = INIT_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    device.seed(seed);
    draw()
}

/// Gives every float parameter the id `PARAM_ID_BASE + visiting index`.
pub(crate) fn renumber<M: Module>(module: M) -> M {
    struct Renumber(u64);
    impl ModuleMapper for Renumber {
        fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.id = ParamId::from(PARAM_ID_BASE + self.0);
            self.0 += 1;
            param
        }
    }
    let module = module.map(&mut Renumber(0));
    // Touch every value so lazy initialisation happens now.
    drop(parameter_snapshot(&module));
    module
}

/// Casts every float parameter to the default float type of its device (`bf16` on a device
/// configured for `train.precision = "bf16"`; f32 under `"f32"` and `"mixed"`, whose bf16 copies
/// are made per step by [`crate::precision::working_copy`]), keeping ids and gradient settings.
/// Weights read from files arrive as stored; computing with them next to activations of the
/// device's type would mix types. A no-op where the types already agree.
pub fn match_device_float<M: Module>(module: M) -> M {
    struct Cast;
    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|tensor| {
                let dtype = tensor.device().settings().float_dtype;
                if tensor.dtype() == dtype.into() {
                    return tensor;
                }
                // Through the host: a fresh leaf in the device's float type (load time only).
                let (require_grad, device) = (tensor.is_require_grad(), tensor.device());
                Tensor::from_data(tensor.into_data(), &device).set_require_grad(require_grad)
            })
        }
    }
    module.map(&mut Cast)
}

/// Tensor paths leave out enum variants (`head.dsf.…`, not `head.Sspa.dsf.…`): see the module
/// docs. Every reader and writer of weights and of their tensor names uses this.
pub(crate) const SKIP_ENUM_VARIANTS: bool = true;

/// Writes the weights of `model` as safetensors, atomically.
///
/// # Errors
/// [`TrainError::Weights`] or [`TrainError::Io`].
pub fn save_weights<M: ModuleSnapshot>(model: &M, path: &Path) -> Result<(), TrainError> {
    let weights_error = |reason: String| TrainError::Weights { path: path.to_owned(), reason };
    let mut store =
        SafetensorsStore::from_bytes(None).metadata("format", "sspa-train").skip_enum_variants(SKIP_ENUM_VARIANTS);
    model.save_into(&mut store).map_err(|error| weights_error(error.to_string()))?;
    let bytes = store.get_bytes().map_err(|error| weights_error(error.to_string()))?;
    atomic_write_bytes(path, &bytes)
}

/// Loads the weights of `path` into `model`; every tensor must match a parameter and vice versa.
///
/// # Errors
/// [`TrainError::Weights`] on unreadable files, missing, unused or mis-shaped tensors.
pub fn load_weights<M: ModuleSnapshot>(mut model: M, path: &Path) -> Result<M, TrainError> {
    let weights_error = |reason: String| TrainError::Weights { path: path.to_owned(), reason };
    if !path.is_file() {
        return Err(weights_error("file not found".into()));
    }
    let mut store = SafetensorsStore::from_file(path).allow_partial(true).skip_enum_variants(SKIP_ENUM_VARIANTS);
    let result = model.load_from(&mut store).map_err(|error| weights_error(error.to_string()))?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        return Err(weights_error(format!(
            "errors {:?}, missing {:?}, unused {:?}",
            result.errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            result.missing.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            result.unused
        )));
    }
    Ok(renumber(match_device_float(model)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::parameter_snapshot;

    fn small_config() -> ModelConfig {
        let model = ModelSection { embed_dim: 8, prompt_tokens: 2, ..ModelSection::default() };
        let ablation = AblationSection::default();
        ModelConfig {
            format_version: FORMAT_VERSION,
            head: HeadConfig::Sspa(
                sspa_model::SspaHeadConfig::from_sections(&model, &ablation, Some(6), 8, 4).expect("head"),
            ),
            model,
            ablation,
            train: TrainSection::default(),
            labels: vec!["cat".into(), "dog".into(), "bird".into()],
            text_width: 6,
            prompt_tokens: 2,
            prompt_width: 5,
            patches_per_image: 4,
            backbone: None,
        }
    }

    fn values(model: &SspaModel) -> Vec<(ParamId, Vec<f32>)> {
        let mut values: Vec<_> = parameter_snapshot(model)
            .into_iter()
            .map(|(id, tensor)| (id, tensor.into_data().try_to_vec::<f32>().expect("f32")))
            .collect();
        values.sort_by_key(|(id, _)| id.val());
        values
    }

    #[test]
    fn config_json_round_trip() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("config.json");
        let config = small_config();
        config.save(&path).expect("save");
        let loaded = ModelConfig::load(&path).expect("load");
        assert_eq!(loaded.canonical_json(), config.canonical_json());
        assert_eq!(loaded.labels, ["cat", "dog", "bird"]);

        let mut wrong =
            serde_json::from_slice::<serde_json::Value>(&std::fs::read(&path).expect("read")).expect("json");
        wrong["format_version"] = 99.into();
        std::fs::write(&path, wrong.to_string()).expect("write");
        assert!(matches!(ModelConfig::load(&path), Err(TrainError::Checkpoint { .. })));
    }

    #[test]
    fn same_seed_same_weights_and_ids_and_weights_round_trip() {
        let device = Device::flex();
        let config = small_config();
        let a = config.init(3, &device).expect("init");
        let b = config.init(3, &device).expect("init");
        let c = config.init(4, &device).expect("init");
        assert_eq!(values(&a), values(&b));
        assert_ne!(values(&a), values(&c));
        assert!(a.prompts.is_some());

        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("model.safetensors");
        save_weights(&a, &path).expect("save");
        let loaded = config.load_model(&path, &device).expect("load");
        assert_eq!(values(&loaded), values(&a));

        let mut other = small_config();
        other.prompt_tokens = 3;
        let error = other.load_model(&path, &device).expect_err("shape mismatch");
        assert!(matches!(error, TrainError::Weights { .. }), "{error}");
    }
}
