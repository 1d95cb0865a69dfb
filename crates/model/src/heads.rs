//! One of four heads behind one interface, so that a trainer can hold "the head" whichever it is:
//! SSPA ([`SspaHead`]) or a peer a user would try instead on the same frozen features, the same
//! loss and the same budget — a linear probe ([`LinearHead`]), a two-layer MLP ([`MlpHead`]) or an
//! ML-Decoder-style query decoder ([`QueryDecoder`]).
//!
//! Every head takes the inputs SSPA's does (`T_k`, `T_l`, `f_g`, `F_p`) and returns an
//! [`SspaOutput`]. A peer reads only the image features and returns one set of logits `s`, carried
//! as the single branch in `global_logits` (`scores = σ(s)`, no regional branch): [`crate::SspaLoss`]
//! then applies one ASL term of weight 1, exactly as for SSPA's global-only variant, so the same
//! training loop, loss and evaluation serve all four. Peers read the encoder's features at their
//! own width `c` (each has its own first layer; no shared image projection) and ignore `[ablation]`,
//! whose switches are SSPA's.
//!
//! Checkpoints: [`Head`] is a burn enum module, whose record paths include the variant
//! (`Sspa.dsf.…`). Saving and loading with `SafetensorsStore::skip_enum_variants(true)` keeps the
//! paths of a bare `SspaHead` (`dsf.…`), so SSPA checkpoints written before this enum still load.

use burn::prelude::*;
use burn::tensor::activation::sigmoid;
use serde::{Deserialize, Serialize};
use sspa_config::{AblationSection, ModelSection};

use crate::error::{ModelError, check_image_inputs, shape_error};
use crate::head::{SspaHead, SspaHeadConfig, SspaOutput};
use crate::linear_head::{LinearHead, LinearHeadConfig};
use crate::mlp_head::{MlpHead, MlpHeadConfig};
use crate::query_decoder::{QueryDecoder, QueryDecoderConfig};

/// Which head maps the features to logits: `model.head` of the domain config.
pub use sspa_config::HeadKind;

/// A tensor of a head with one slice per class along `axis`: what a warm start across label
/// sets remaps by label name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassAxis {
    /// The parameter's path below the head, as saved (`class_weights`, `classifier.weight`).
    pub tensor: &'static str,
    /// The axis of length `C`.
    pub axis: usize,
}

/// The configuration of any head, tagged by its kind (`{"kind": "mlp", …}` in JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum HeadConfig {
    /// [`SspaHeadConfig`].
    Sspa(SspaHeadConfig),
    /// [`LinearHeadConfig`].
    Linear(LinearHeadConfig),
    /// [`MlpHeadConfig`].
    Mlp(MlpHeadConfig),
    /// [`QueryDecoderConfig`].
    QueryDecoder(QueryDecoderConfig),
}

impl HeadConfig {
    /// The head of `kind` for `classes` labels and image features of width `image_width` (`c`).
    /// SSPA: [`SspaHeadConfig::from_sections`] (`text_width` and `[ablation]` matter). Peers use
    /// the joint width `d = model.embed_dim` as their inner width (the MLP's hidden layer, the
    /// query decoder's `D`, with `F = 4d` and 8 attention heads) and ignore the text and `[ablation]`.
    ///
    /// # Errors
    /// [`ModelError`] when the widths are unusable.
    pub fn from_sections(
        kind: HeadKind,
        model: &ModelSection,
        ablation: &AblationSection,
        text_width: Option<usize>,
        image_width: usize,
        classes: usize,
    ) -> Result<Self, ModelError> {
        let embed_dim = || {
            usize::try_from(model.embed_dim)
                .map_err(|_| ModelError::OutOfRange { key: "model.embed_dim", value: model.embed_dim.to_string() })
        };
        let config = match kind {
            HeadKind::Sspa => {
                return SspaHeadConfig::from_sections(model, ablation, text_width, image_width, classes)
                    .map(HeadConfig::Sspa);
            }
            HeadKind::Linear => HeadConfig::Linear(LinearHeadConfig::new(image_width, classes)),
            HeadKind::Mlp => HeadConfig::Mlp(MlpHeadConfig::new(image_width, embed_dim()?, classes)),
            HeadKind::QueryDecoder => {
                HeadConfig::QueryDecoder(QueryDecoderConfig::new(image_width, classes, embed_dim()?))
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Which head this configures.
    pub fn kind(&self) -> HeadKind {
        match self {
            HeadConfig::Sspa(_) => HeadKind::Sspa,
            HeadConfig::Linear(_) => HeadKind::Linear,
            HeadConfig::Mlp(_) => HeadKind::Mlp,
            HeadConfig::QueryDecoder(_) => HeadKind::QueryDecoder,
        }
    }

    /// The head's class-dependent tensors; every other tensor's shape is independent of `C`.
    /// SSPA: the learned category centres `W` `[C, d]` (built only with `ablation.classifier =
    /// "learned"`); linear and MLP: the classifier's weight `[h, C]` (burn's `[in, out]`) and bias
    /// `[C]`; the query decoder with one query per class: the queries `[C, D]`, the group FC's
    /// weight `[C, D, 1]` and bias `[C]`. `None` where classes share a tensor's slices: a query
    /// decoder with fewer queries than classes, each query scoring a group of them.
    pub fn class_axes(&self) -> Option<Vec<ClassAxis>> {
        let axis = |tensor, axis| ClassAxis { tensor, axis };
        match self {
            HeadConfig::Sspa(_) => Some(vec![axis("class_weights", 0)]),
            HeadConfig::Linear(_) | HeadConfig::Mlp(_) => {
                Some(vec![axis("classifier.weight", 1), axis("classifier.bias", 0)])
            }
            HeadConfig::QueryDecoder(config) if config.queries() == config.classes => {
                Some(vec![axis("queries", 0), axis("output.weight", 0), axis("output.bias", 0)])
            }
            HeadConfig::QueryDecoder(_) => None,
        }
    }

    /// Checks what [`HeadConfig::init`] relies on.
    ///
    /// # Errors
    /// [`ModelError`] naming the first unusable value.
    pub fn validate(&self) -> Result<(), ModelError> {
        let positive = |key: &'static str, value: usize| {
            if value == 0 { Err(ModelError::OutOfRange { key, value: "0".into() }) } else { Ok(()) }
        };
        match self {
            HeadConfig::Sspa(config) => config.validate(),
            HeadConfig::Linear(config) => {
                positive("image feature width", config.image_width)?;
                positive("classes", config.classes)
            }
            HeadConfig::Mlp(config) => {
                positive("image feature width", config.image_width)?;
                positive("model.embed_dim", config.hidden_width)?;
                positive("classes", config.classes)
            }
            HeadConfig::QueryDecoder(config) => config.validate(),
        }
    }

    /// Builds the head.
    ///
    /// # Panics
    /// If the config does not pass [`HeadConfig::validate`].
    pub fn init(&self, device: &Device) -> Head {
        if let Err(error) = self.validate() {
            panic!("invalid {} head config: {error}", self.kind());
        }
        match self {
            HeadConfig::Sspa(config) => Head::Sspa(config.init(device)),
            HeadConfig::Linear(config) => Head::Linear(config.init(device)),
            HeadConfig::Mlp(config) => Head::Mlp(config.init(device)),
            HeadConfig::QueryDecoder(config) => Head::QueryDecoder(config.init(device)),
        }
    }
}

/// Any of the four heads.
// One head lives per model: the size difference between variants costs nothing, and boxing the
// SSPA head would put a `Box` in every path that matches on it.
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum Head {
    /// The SSPA head.
    Sspa(SspaHead),
    /// The linear probe.
    Linear(LinearHead),
    /// The two-layer MLP.
    Mlp(MlpHead),
    /// The query decoder.
    QueryDecoder(QueryDecoder),
}

impl Head {
    /// Which head this is.
    pub fn kind(&self) -> HeadKind {
        match self {
            Head::Sspa(_) => HeadKind::Sspa,
            Head::Linear(_) => HeadKind::Linear,
            Head::Mlp(_) => HeadKind::Mlp,
            Head::QueryDecoder(_) => HeadKind::QueryDecoder,
        }
    }

    /// Width `c` of the image features the head takes.
    pub fn image_width(&self) -> usize {
        match self {
            Head::Sspa(head) => head.image_width(),
            Head::Linear(head) => head.image_width(),
            Head::Mlp(head) => head.image_width(),
            Head::QueryDecoder(head) => head.image_width(),
        }
    }

    /// The SSPA head, when this is one (for what only it has: gates, aggregator weights).
    pub fn as_sspa(&self) -> Option<&SspaHead> {
        match self {
            Head::Sspa(head) => Some(head),
            _ => None,
        }
    }

    /// Logits and scores. SSPA: [`SspaHead::forward`]. A peer: its logits `s` as the only
    /// branch in `global_logits`, `scores = σ(s)`, nothing else; the text inputs are not read.
    ///
    /// # Shapes
    /// - knowledge (`T_k`): `[C, d_t]`
    /// - context (`T_l`): `[C, d_t]`
    /// - global (`f_g`): `[B, c]`
    /// - patches (`F_p`): `[B, N, c]`
    /// - output: see [`SspaOutput`]; logits and scores `[B, C]`
    pub fn forward(
        &self,
        knowledge: Tensor<2>,
        context: Tensor<2>,
        global: Tensor<2>,
        patches: Tensor<3>,
    ) -> SspaOutput {
        let logits = match self {
            Head::Sspa(head) => return head.forward(knowledge, context, global, patches),
            Head::Linear(head) => head.forward(global),
            Head::Mlp(head) => head.forward(global, patches),
            Head::QueryDecoder(head) => head.forward(patches),
        };
        peer_output(logits)
    }

    /// Shape-checked [`Head::forward`].
    ///
    /// # Errors
    /// [`ModelError::Shape`] when the inputs disagree in `C`, `B` or width with each other or the
    /// head.
    pub fn try_forward(
        &self,
        knowledge: Tensor<2>,
        context: Tensor<2>,
        global: Tensor<2>,
        patches: Tensor<3>,
    ) -> Result<SspaOutput, ModelError> {
        let classes = match self {
            Head::Sspa(head) => return head.try_forward(knowledge, context, global, patches),
            Head::Linear(head) => head.classes(),
            Head::Mlp(head) => head.classes(),
            Head::QueryDecoder(head) => head.classes(),
        };
        let [text_classes, _] = knowledge.dims();
        if text_classes != classes {
            return Err(shape_error("knowledge", &knowledge.dims(), format!("[{classes}, d_t]")));
        }
        if context.dims()[0] != classes {
            return Err(shape_error("context", &context.dims(), format!("[{classes}, d_t]")));
        }
        check_image_inputs(&global, &patches, self.image_width())?;
        Ok(self.forward(knowledge, context, global, patches))
    }
}

/// A peer's logits as an [`SspaOutput`] with one branch.
fn peer_output(logits: Tensor<2>) -> SspaOutput {
    SspaOutput {
        scores: sigmoid(logits.clone()),
        global_logits: Some(logits),
        regional_logits: None,
        aggregator_weights: None,
        text_gate: None,
        patch_gate: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::asl::SspaLoss;
    use crate::test_util::{assert_close, device, random, values};
    use burn::module::Module;
    use burn::store::{ModuleSnapshot, SafetensorsStore};
    use sspa_config::TrainSection;

    fn configs(image_width: usize) -> Vec<HeadConfig> {
        let (model, ablation) = (ModelSection { embed_dim: 16, ..ModelSection::default() }, AblationSection::default());
        HeadKind::ALL
            .into_iter()
            .map(|kind| HeadConfig::from_sections(kind, &model, &ablation, None, image_width, 4).expect("valid"))
            .collect()
    }

    #[test]
    fn kinds_parse_and_print_their_config_names() {
        for kind in HeadKind::ALL {
            assert_eq!(kind.name().parse::<HeadKind>(), Ok(kind));
            assert_eq!(serde_json::to_string(&kind).expect("json"), format!("\"{kind}\""));
        }
        assert_eq!(HeadKind::default(), HeadKind::Sspa);
        let error = "query_decoder".parse::<HeadKind>().expect_err("underscore");
        assert!(error.contains("`query_decoder`") && error.contains("sspa, linear, mlp, query-decoder"), "{error}");
    }

    #[test]
    fn every_head_maps_the_same_inputs_to_logits_and_scores() {
        let device = device();
        let loss = SspaLoss::from_section(&TrainSection::default());
        let targets = Tensor::<2>::from_floats([[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 1.0, 0.0]], &device);
        for config in configs(24) {
            let head = config.init(&device);
            assert_eq!((head.kind(), head.image_width()), (config.kind(), 24));
            let (knowledge, context) = (random([4, 16], &device), random([4, 16], &device));
            let output = head
                .try_forward(knowledge, context, random([2, 24], &device), random([2, 9, 24], &device))
                .expect("shapes agree");
            assert_eq!(output.scores.dims(), [2, 4], "{}", config.kind());
            let value = values(loss.forward(&output, targets.clone()))[0];
            assert!(value.is_finite() && value > 0.0, "{}: loss {value}", config.kind());
            if config.kind() != HeadKind::Sspa {
                let logits = output.global_logits.expect("the single branch");
                assert!(output.regional_logits.is_none() && output.aggregator_weights.is_none());
                assert_close(output.scores, sigmoid(logits.clone()), 0.0);
                // One ASL term of weight 1.
                let direct = values(loss.asl.forward(logits, targets.clone()))[0];
                assert!((value - direct).abs() <= 1e-6 * direct.abs(), "{value} vs {direct}");
            }
        }
    }

    #[test]
    fn peers_ignore_the_text_and_check_the_shapes() {
        let device = device();
        for config in configs(24).into_iter().skip(1) {
            let head = config.init(&device);
            let (global, patches) = (random([2, 24], &device), random([2, 9, 24], &device));
            let text = random([4, 16], &device);
            let first = head.forward(text.clone(), text.clone(), global.clone(), patches.clone()).scores;
            let other = head.forward(text.clone().neg(), text.clone() * 3.0, global.clone(), patches.clone()).scores;
            assert_close(first, other, 0.0);
            let wrong_classes =
                head.try_forward(random([3, 16], &device), text.clone(), global.clone(), patches.clone());
            assert!(matches!(wrong_classes, Err(ModelError::Shape { input: "knowledge", .. })), "{}", config.kind());
            let wrong_width = head.try_forward(text.clone(), text.clone(), random([2, 16], &device), patches.clone());
            assert!(matches!(wrong_width, Err(ModelError::Shape { input: "global", .. })));
            let wrong_batch = head.try_forward(text.clone(), text, global, random([3, 9, 24], &device));
            assert!(matches!(wrong_batch, Err(ModelError::Shape { input: "patches", .. })));
        }
    }

    #[test]
    fn configs_round_trip_through_json_tagged_by_kind() {
        for config in configs(24) {
            let json = serde_json::to_string(&config).expect("serialises");
            assert!(json.starts_with(&format!("{{\"kind\":\"{}\"", config.kind())), "{json}");
            let back: HeadConfig = serde_json::from_str(&json).expect("deserialises");
            assert_eq!(format!("{back:?}"), format!("{config:?}"));
        }
    }

    #[test]
    fn peers_take_their_inner_width_from_the_embedding_width() {
        let configs = configs(24);
        let HeadConfig::Mlp(mlp) = &configs[2] else { panic!("mlp") };
        assert_eq!((mlp.image_width, mlp.hidden_width, mlp.classes), (24, 16, 4));
        let HeadConfig::QueryDecoder(decoder) = &configs[3] else { panic!("query decoder") };
        assert_eq!((decoder.d_model, decoder.heads, decoder.feedforward(), decoder.queries()), (16, 8, 64, 4));

        let odd = ModelSection { embed_dim: 20, ..ModelSection::default() };
        let error =
            HeadConfig::from_sections(HeadKind::QueryDecoder, &odd, &AblationSection::default(), None, 24, 4).err();
        assert_eq!(error, Some(ModelError::Heads { d_model: 20, heads: 8 }));
        let none = HeadConfig::from_sections(HeadKind::Linear, &odd, &AblationSection::default(), None, 24, 0).err();
        assert!(matches!(none, Some(ModelError::OutOfRange { key: "classes", .. })));
    }

    #[test]
    fn an_sspa_checkpoint_of_the_bare_head_loads_into_the_enum_without_variant_names() {
        let device = device();
        let bare = SspaHeadConfig::new(16).init(&device);
        let mut store = SafetensorsStore::from_bytes(None);
        bare.save_into(&mut store).expect("save");
        let bytes = store.get_bytes().expect("bytes");

        let mut head = HeadConfig::Sspa(SspaHeadConfig::new(16)).init(&device);
        let mut store = SafetensorsStore::from_bytes(Some(bytes)).skip_enum_variants(true);
        let result = head.load_from(&mut store).expect("load");
        assert!(result.missing.is_empty() && result.unused.is_empty() && result.errors.is_empty(), "{result:?}");
        assert_eq!(head.num_params(), bare.num_params());
        let (global, patches) = (random([2, 16], &device), random([2, 9, 16], &device));
        let text = random([4, 16], &device);
        assert_close(
            head.forward(text.clone(), text.clone(), global.clone(), patches.clone()).scores,
            bare.forward(text.clone(), text, global, patches).scores,
            0.0,
        );
    }
}
