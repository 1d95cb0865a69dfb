//! The whole SSPA head: DSF → QSM → GDMA → aggregator for the regional branch, cosine logits for
//! the global branch, and the final score (SSPA Eq. 18).
//!
//! Inputs are raw projected encoder outputs (L2 normalisation happens only inside `cos`):
//! KAP text features `T_k`, CAP text features `T_l` (computed upstream through the frozen text
//! encoder), the global image feature `f_g` and the patch features `F_p`. When the text encoder is
//! not CLIP, its width `d_t` is mapped to `d` by a learnable `Linear(d_t, d)` shared by `T_k` and
//! `T_l` (SSPA.md, "Further fixed choices").
//!
//! `ablation.kap = "template"` and `ablation.cap` change what is fed in (template-only `T_k`,
//! hand-written prompts for `T_l`), not the head. `ablation.kap = "off"` drops `T_k` from QSM
//! ([`SspaHeadConfig::knowledge`]); `ablation.classifier = "learned"` replaces the text category
//! centres of both branches by learned per-class weights ([`SspaHead::class_weights`], Uni-D).

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::sigmoid;
use sspa_config::{
    AblationSection, Aggregator as AggregatorKind, Alignment, Branches, Classifier, GlobalText, ImageProjectionKind,
    KapSource, ModelSection, Synthesis,
};

use crate::aggregator::{Aggregator, AggregatorConfig};
use crate::dsf::{DynamicSemanticFilter, DynamicSemanticFilterConfig};
use crate::error::{ModelError, check_image_inputs, shape_error};
use crate::gdma::{Gdma, GdmaConfig};
use crate::image_projection::{ImageProjection, ImageProjectionConfig};
use crate::qsm::{Qsm, QsmConfig};
use crate::similarity::{LOGIT_SCALE_INIT, l2_normalize, logit_scale, scalar_param};

/// Configuration of [`SspaHead`]; [`SspaHeadConfig::from_sections`] builds it from the domain
/// config.
#[derive(Config, Debug)]
pub struct SspaHeadConfig {
    /// Joint embedding width `d` (a positive multiple of 4).
    pub d_model: usize,
    /// Width `d_t` of a non-CLIP text encoder; `Some` adds the learnable `Linear(d_t, d)` applied
    /// to both `T_k` and `T_l`. `None`: the text features already have width `d`.
    pub text_width: Option<usize>,
    /// Width `c` of the image encoder's features; `Some` adds the learnable `Linear(c, d)` applied
    /// to `f_g` and every `f_i` ([`ImageProjection`]). `None`: the image features already have width `d`.
    pub image_width: Option<usize>,
    /// Quaternion component width `q` of QSM; `None` means `d/4`.
    pub quaternion_width: Option<usize>,
    /// Dynamic Semantic Filtering on (`T_c = DSF(T_l, F_p)`) or off (`T_c = T_l`).
    #[config(default = true)]
    pub dsf: bool,
    /// How `T_u` is synthesised (Table VII).
    #[config(default = "Synthesis::Quaternion")]
    pub synthesis: Synthesis,
    /// Which GDMA directions run (Tables VIII, IX).
    #[config(default = "Alignment::Both")]
    pub alignment: Alignment,
    /// GDMA gates on, or plain `X + A`.
    #[config(default = true)]
    pub gate: bool,
    /// Patch aggregation (Fig. 5).
    #[config(default = "AggregatorKind::Soft")]
    pub aggregator: AggregatorKind,
    /// Which branches produce the score (Eq. 18).
    #[config(default = "Branches::Both")]
    pub branches: Branches,
    /// Text features of the global branch: `T_l` (CAP) or `T_k` (KAP).
    #[config(default = "GlobalText::Cap")]
    pub global_text: GlobalText,
    /// Whether QSM reads `T_k` (`false`: `ablation.kap = "off"`).
    #[config(default = true)]
    pub knowledge: bool,
    /// `Some(C)`: learned per-class weights `W ∈ R^{C×d}` are the category centres of both
    /// branches (Uni-D) instead of `T*` and the global branch's text features.
    pub learned_classes: Option<usize>,
    /// LayerNorm epsilon of every LN.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
    /// Initial `a` of both logit scales `α = exp(a)`.
    #[config(default = "LOGIT_SCALE_INIT")]
    pub logit_scale_init: f64,
    /// Initial `b` of the aggregator temperature `τ = exp(b)`.
    #[config(default = 0.0)]
    pub log_temperature_init: f64,
}

impl SspaHeadConfig {
    /// The head described by `[model]` and `[ablation]` for `classes` labels; `text_width` is the text encoder's output
    /// width when it differs from `model.embed_dim` (non-CLIP encoders), else `None`; `image_width`
    /// is the image encoder's feature width `c` (projected by a learnable `Linear(c, d)` with
    /// `model.image_projection = "linear"`, required to equal `d` with `"none"`).
    ///
    /// # Errors
    /// [`ModelError`] when the widths are unusable (see [`SspaHeadConfig::validate`]).
    pub fn from_sections(
        model: &ModelSection,
        ablation: &AblationSection,
        text_width: Option<usize>,
        image_width: usize,
        classes: usize,
    ) -> Result<Self, ModelError> {
        let d_model = usize::try_from(model.embed_dim)
            .map_err(|_| ModelError::OutOfRange { key: "model.embed_dim", value: model.embed_dim.to_string() })?;
        let image_width = match model.image_projection {
            ImageProjectionKind::Linear => Some(image_width),
            ImageProjectionKind::None if image_width == d_model => None,
            ImageProjectionKind::None => return Err(ModelError::ImageWidth { image_width, d_model }),
        };
        let config = Self::new(d_model)
            .with_image_width(image_width)
            .with_text_width(text_width.filter(|&width| width != d_model))
            .with_dsf(ablation.dsf)
            .with_synthesis(ablation.synthesis)
            .with_alignment(ablation.alignment)
            .with_gate(ablation.gate)
            .with_aggregator(ablation.aggregator)
            .with_branches(ablation.branches)
            .with_global_text(ablation.global_text)
            .with_knowledge(ablation.kap != KapSource::Off)
            .with_learned_classes((ablation.classifier == Classifier::Learned).then_some(classes));
        config.validate()?;
        Ok(config)
    }

    /// Checks what [`SspaHeadConfig::init`] relies on.
    ///
    /// # Errors
    /// [`ModelError::EmbedWidth`] unless `d` is a positive multiple of 4;
    /// [`ModelError::QuaternionWidth`] for `q = 0`; [`ModelError::TextWidth`] for `d_t = 0`.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.d_model == 0 || !self.d_model.is_multiple_of(4) {
            return Err(ModelError::EmbedWidth { d_model: self.d_model });
        }
        if self.quaternion_width == Some(0) {
            return Err(ModelError::QuaternionWidth { quaternion_width: 0 });
        }
        if self.text_width == Some(0) {
            return Err(ModelError::TextWidth { text_width: 0 });
        }
        if self.image_width == Some(0) {
            return Err(ModelError::ImageWidth { image_width: 0, d_model: self.d_model });
        }
        if self.learned_classes == Some(0) {
            return Err(ModelError::OutOfRange { key: "classes", value: "0".into() });
        }
        Ok(())
    }

    /// Builds the head; regional blocks are left out when only the global branch runs.
    ///
    /// # Panics
    /// If the config does not pass [`SspaHeadConfig::validate`].
    pub fn init(&self, device: &Device) -> SspaHead {
        if let Err(error) = self.validate() {
            panic!("invalid SSPA head config: {error}");
        }
        let d = self.d_model;
        let regional = self.branches != Branches::Global;
        let global = self.branches != Branches::Regional;
        SspaHead {
            image_projection: self.image_width.map(|width| ImageProjectionConfig::new(width, d).init(device)),
            text_projection: self.text_width.map(|width| LinearConfig::new(width, d).init(device)),
            dsf: (regional && self.dsf)
                .then(|| DynamicSemanticFilterConfig::new(d).with_layer_norm_eps(self.layer_norm_eps).init(device)),
            qsm: regional.then(|| {
                QsmConfig::new(d)
                    .with_quaternion_width(self.quaternion_width)
                    .with_synthesis(self.synthesis)
                    .with_knowledge(self.knowledge)
                    .init(device)
            }),
            gdma: regional.then(|| {
                GdmaConfig::new(d)
                    .with_alignment(self.alignment)
                    .with_gate(self.gate)
                    .with_layer_norm_eps(self.layer_norm_eps)
                    .init(device)
            }),
            aggregator: regional.then(|| {
                AggregatorConfig::new()
                    .with_kind(self.aggregator)
                    .with_logit_scale_init(self.logit_scale_init)
                    .with_log_temperature_init(self.log_temperature_init)
                    .init(device)
            }),
            global_logit_scale: global.then(|| scalar_param(self.logit_scale_init, device)),
            class_weights: self.learned_classes.map(|classes| {
                let std = 1.0 / (d as f64).sqrt();
                Param::from_tensor(Tensor::random([classes, d], Distribution::Normal(0.0, std), device))
            }),
            global_text: self.global_text,
            d_model: d,
        }
    }
}

/// The SSPA head.
#[derive(Module, Debug)]
pub struct SspaHead {
    /// `Linear(c, d)` for image features of another width (non-CLIP backbones).
    pub image_projection: Option<ImageProjection>,
    /// `Linear(d_t, d)` for non-CLIP text encoders.
    pub text_projection: Option<Linear>,
    /// Dynamic Semantic Filtering (regional branch, `dsf = true`).
    pub dsf: Option<DynamicSemanticFilter>,
    /// QSM or its ablation (regional branch).
    pub qsm: Option<Qsm>,
    /// Gated dual-modal alignments (regional branch).
    pub gdma: Option<Gdma>,
    /// Patch aggregation with its own logit scale `α_r` (regional branch).
    pub aggregator: Option<Aggregator>,
    /// `a_g` of the global branch's `α_g` (global branch).
    pub global_logit_scale: Option<Param<Tensor<1>>>,
    /// Learned category centres `W`, `[C, d]` (`classifier = "learned"`): both branches compare
    /// with them instead of text features.
    pub class_weights: Option<Param<Tensor<2>>>,
    /// Which text features the global branch compares with.
    #[module(skip)]
    pub global_text: GlobalText,
    /// `d`.
    pub d_model: usize,
}

/// What [`SspaHead::forward`] returns.
#[derive(Debug, Clone)]
pub struct SspaOutput {
    /// Global logits `s^g`, `[B, C]` (absent when only the regional branch runs).
    pub global_logits: Option<Tensor<2>>,
    /// Regional logits `s^r`, `[B, C]` (absent when only the global branch runs).
    pub regional_logits: Option<Tensor<2>>,
    /// Score `p = (σ(s^g) + σ(s^r)) / 2`, or the one branch's sigmoid, `[B, C]`.
    pub scores: Tensor<2>,
    /// Aggregator patch weights `w`, `[B, N, C]`.
    pub aggregator_weights: Option<Tensor<3>>,
    /// Visual-to-semantic gate values, `[B, C, d]`.
    pub text_gate: Option<Tensor<3>>,
    /// Semantic-to-visual gate values, `[B, N, d]`.
    pub patch_gate: Option<Tensor<3>>,
}

impl SspaHead {
    /// Shape-checked [`SspaHead::forward`].
    ///
    /// # Errors
    /// [`ModelError::Shape`] when the inputs disagree in `C`, `B` or width.
    pub fn try_forward(
        &self,
        knowledge: Tensor<2>,
        context: Tensor<2>,
        global: Tensor<2>,
        patches: Tensor<3>,
    ) -> Result<SspaOutput, ModelError> {
        let text_width = self.text_projection.as_ref().map_or(self.d_model, |projection| projection.weight.dims()[0]);
        let [classes, width] = knowledge.dims();
        if width != text_width {
            return Err(shape_error("knowledge", &knowledge.dims(), format!("[C, {text_width}]")));
        }
        if context.dims() != [classes, text_width] {
            return Err(shape_error("context", &context.dims(), format!("[{classes}, {text_width}]")));
        }
        if let Some(weights) = &self.class_weights
            && weights.dims()[0] != classes
        {
            return Err(shape_error("knowledge", &knowledge.dims(), format!("[{}, {text_width}]", weights.dims()[0])));
        }
        check_image_inputs(&global, &patches, self.image_width())?;
        Ok(self.forward(knowledge, context, global, patches))
    }

    /// Width `c` of the image features the head takes (`d` without an image projection).
    pub fn image_width(&self) -> usize {
        self.image_projection.as_ref().map_or(self.d_model, ImageProjection::input_width)
    }

    /// Logits of both branches and the final score.
    ///
    /// # Shapes
    /// - knowledge (`T_k`): `[C, d_t]` (`d_t = d` without a text projection)
    /// - context (`T_l`): `[C, d_t]`
    /// - global (`f_g`): `[B, c]` (`c = d` without an image projection)
    /// - patches (`F_p`): `[B, N, c]`
    /// - output: see [`SspaOutput`]
    pub fn forward(
        &self,
        knowledge: Tensor<2>,
        context: Tensor<2>,
        global: Tensor<2>,
        patches: Tensor<3>,
    ) -> SspaOutput {
        let (global, patches) = match &self.image_projection {
            Some(projection) => (projection.forward_global(global), projection.forward_patches(patches)),
            None => (global, patches),
        };
        let (knowledge, context) = match &self.text_projection {
            Some(projection) => (projection.forward(knowledge), projection.forward(context)),
            None => (knowledge, context),
        };

        let centres = self.class_weights.as_ref().map(Param::val);
        let global_logits = self.global_logit_scale.as_ref().map(|a| {
            let text = match (&centres, self.global_text) {
                (Some(centres), _) => centres.clone(),
                (None, GlobalText::Cap) => context.clone(),
                (None, GlobalText::Kap) => knowledge.clone(),
            };
            let cosine = l2_normalize(global.clone()).matmul(l2_normalize(text).transpose());
            cosine * logit_scale(a).unsqueeze::<2>()
        });

        let regional = match (&self.qsm, &self.gdma, &self.aggregator) {
            (Some(qsm), Some(gdma), Some(aggregator)) => {
                let [batch, _] = global.dims();
                let [classes, d] = context.dims();
                let context = context.unsqueeze::<3>().expand([batch, classes, d]);
                let filtered = match &self.dsf {
                    Some(dsf) => dsf.forward(context, patches.clone()),
                    None => context,
                };
                let unified = qsm.forward(knowledge, filtered, global);
                let aligned = gdma.forward(unified, patches);
                let centres = match centres {
                    Some(centres) => centres.unsqueeze::<3>().expand([batch, classes, d]),
                    None => aligned.text,
                };
                Some((aggregator.forward(aligned.patches, centres), aligned.text_gate, aligned.patch_gate))
            }
            _ => None,
        };
        let (regional_logits, aggregator_weights, text_gate, patch_gate) = match regional {
            Some((aggregated, text_gate, patch_gate)) => {
                (Some(aggregated.logits), Some(aggregated.weights), text_gate, patch_gate)
            }
            None => (None, None, None, None),
        };

        let scores = match (&global_logits, &regional_logits) {
            (Some(g), Some(r)) => (sigmoid(g.clone()) + sigmoid(r.clone())).div_scalar(2.0),
            (Some(logits), None) | (None, Some(logits)) => sigmoid(logits.clone()),
            (None, None) => unreachable!("`branches` always enables at least one branch"),
        };
        SspaOutput { global_logits, regional_logits, scores, aggregator_weights, text_gate, patch_gate }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, device, random};

    struct Inputs {
        knowledge: Tensor<2>,
        context: Tensor<2>,
        global: Tensor<2>,
        patches: Tensor<3>,
    }

    fn inputs(device: &Device, text_width: usize) -> Inputs {
        Inputs {
            knowledge: random([4, text_width], device),
            context: random([4, text_width], device),
            global: random([2, 16], device),
            patches: random([2, 9, 16], device),
        }
    }

    fn run(head: &SspaHead, x: &Inputs) -> SspaOutput {
        head.forward(x.knowledge.clone(), x.context.clone(), x.global.clone(), x.patches.clone())
    }

    /// The regional logits computed block by block, with `T_c` given.
    fn regional(head: &SspaHead, x: &Inputs, filtered: Tensor<3>) -> Tensor<2> {
        let unified = head.qsm.as_ref().expect("qsm").forward(x.knowledge.clone(), filtered, x.global.clone());
        let aligned = head.gdma.as_ref().expect("gdma").forward(unified, x.patches.clone());
        head.aggregator.as_ref().expect("aggregator").forward(aligned.patches, aligned.text).logits
    }

    fn global(head: &SspaHead, x: &Inputs, text: Tensor<2>) -> Tensor<2> {
        let alpha = logit_scale(head.global_logit_scale.as_ref().expect("α_g")).unsqueeze::<2>();
        l2_normalize(x.global.clone()).matmul(l2_normalize(text).transpose()) * alpha
    }

    #[test]
    fn full_head_shapes_and_score() {
        let device = device();
        let head = SspaHeadConfig::new(16).init(&device);
        let x = inputs(&device, 16);
        let out = run(&head, &x);
        let (g, r) = (out.global_logits.expect("s^g"), out.regional_logits.expect("s^r"));
        assert_eq!((g.dims(), r.dims()), ([2, 4], [2, 4]));
        assert_close(out.scores, (sigmoid(g.clone()) + sigmoid(r)).div_scalar(2.0), 1e-6);
        assert_close(g, global(&head, &x, x.context.clone()), 1e-6);
        assert_eq!(out.aggregator_weights.expect("w").dims(), [2, 9, 4]);
        assert_eq!(out.text_gate.expect("text gate").dims(), [2, 4, 16]);
        assert_eq!(out.patch_gate.expect("patch gate").dims(), [2, 9, 16]);
    }

    #[test]
    fn dsf_filters_the_cap_features_or_passes_them_through() {
        let device = device();
        let x = inputs(&device, 16);
        let context = x.context.clone().unsqueeze::<3>().expand([2, 4, 16]);

        let with = SspaHeadConfig::new(16).init(&device);
        let filtered = with.dsf.as_ref().expect("dsf").forward(context.clone(), x.patches.clone());
        assert_close(run(&with, &x).regional_logits.expect("s^r"), regional(&with, &x, filtered), 1e-5);

        let without = SspaHeadConfig::new(16).with_dsf(false).init(&device);
        assert!(without.dsf.is_none());
        assert_close(run(&without, &x).regional_logits.expect("s^r"), regional(&without, &x, context), 1e-5);
    }

    #[test]
    fn branch_switches_pick_the_score() {
        let device = device();
        let x = inputs(&device, 16);
        let global_only = SspaHeadConfig::new(16).with_branches(Branches::Global).init(&device);
        assert!(global_only.qsm.is_none() && global_only.aggregator.is_none() && global_only.dsf.is_none());
        let out = run(&global_only, &x);
        assert!(out.regional_logits.is_none() && out.aggregator_weights.is_none());
        assert_close(out.scores, sigmoid(out.global_logits.expect("s^g")), 0.0);

        let regional_only = SspaHeadConfig::new(16).with_branches(Branches::Regional).init(&device);
        assert!(regional_only.global_logit_scale.is_none());
        let out = run(&regional_only, &x);
        assert!(out.global_logits.is_none());
        assert_close(out.scores, sigmoid(out.regional_logits.expect("s^r")), 0.0);
    }

    #[test]
    fn global_text_switch_compares_with_kap_features() {
        let device = device();
        let x = inputs(&device, 16);
        let head = SspaHeadConfig::new(16).with_global_text(GlobalText::Kap).init(&device);
        assert_close(run(&head, &x).global_logits.expect("s^g"), global(&head, &x, x.knowledge.clone()), 1e-6);
    }

    #[test]
    fn ablation_switches_reach_the_blocks() {
        let device = device();
        let config = SspaHeadConfig::new(16)
            .with_synthesis(Synthesis::Sum)
            .with_alignment(Alignment::SemanticToVisual)
            .with_gate(false)
            .with_aggregator(AggregatorKind::Hard);
        let head = config.init(&device);
        assert_eq!(head.qsm.as_ref().expect("qsm").num_params(), 0);
        let gdma = head.gdma.as_ref().expect("gdma");
        assert!(gdma.visual_to_semantic.is_none());
        assert!(gdma.semantic_to_visual.as_ref().expect("S→V").gate.gate.is_none());
        assert!(head.aggregator.as_ref().expect("aggregator").log_temperature.is_none());
        let out = run(&head, &inputs(&device, 16));
        assert!(out.text_gate.is_none() && out.patch_gate.is_none());
    }

    #[test]
    fn a_non_clip_text_width_is_projected() {
        let device = device();
        let head = SspaHeadConfig::new(16).with_text_width(Some(24)).init(&device);
        let x = inputs(&device, 24);
        let out = head
            .try_forward(x.knowledge.clone(), x.context.clone(), x.global.clone(), x.patches.clone())
            .expect("shapes agree");
        assert_eq!(out.scores.dims(), [2, 4]);
        let wrong = head.try_forward(random([4, 16], &device), x.context, x.global, x.patches);
        assert!(matches!(wrong, Err(ModelError::Shape { input: "knowledge", .. })));
    }

    #[test]
    fn config_from_the_domain_sections() {
        let model = ModelSection::default();
        let ablation = AblationSection {
            synthesis: Synthesis::Mlp,
            aggregator: AggregatorKind::Mean,
            branches: Branches::Regional,
            dsf: false,
            ..AblationSection::default()
        };
        let config = SspaHeadConfig::from_sections(&model, &ablation, Some(384), 1280, 4).expect("valid");
        assert_eq!(config.d_model, 384);
        assert_eq!(config.text_width, None, "same width: no projection");
        assert_eq!(config.image_width, Some(1280), "`image_projection = linear` projects");
        assert_eq!(
            (config.synthesis, config.aggregator, config.branches, config.dsf),
            (Synthesis::Mlp, AggregatorKind::Mean, Branches::Regional, false)
        );
        let clip = SspaHeadConfig::from_sections(&model, &ablation, Some(512), 384, 4).expect("valid");
        assert_eq!(clip.text_width, Some(512));
        assert_eq!(clip.image_width, Some(384), "`linear` projects even at equal widths");

        let joint = ModelSection { image_projection: ImageProjectionKind::None, ..ModelSection::default() };
        let direct = SspaHeadConfig::from_sections(&joint, &ablation, None, 384, 4).expect("valid");
        assert_eq!(direct.image_width, None, "`none` takes the features as they are");
        assert_eq!(
            SspaHeadConfig::from_sections(&joint, &ablation, None, 1280, 4).err(),
            Some(ModelError::ImageWidth { image_width: 1280, d_model: 384 }),
            "`none` with another width is an error"
        );

        let odd = ModelSection { embed_dim: 10, ..ModelSection::default() };
        assert_eq!(
            SspaHeadConfig::from_sections(&odd, &ablation, None, 10, 4).err(),
            Some(ModelError::EmbedWidth { d_model: 10 })
        );
    }

    #[test]
    fn config_round_trips_through_json() {
        let config = SspaHeadConfig::new(16)
            .with_text_width(Some(24))
            .with_synthesis(Synthesis::Concat)
            .with_alignment(Alignment::VisualToSemantic)
            .with_aggregator(AggregatorKind::Hard)
            .with_branches(Branches::Regional)
            .with_global_text(GlobalText::Kap);
        let json = serde_json::to_string(&config).expect("serialises");
        let back: SspaHeadConfig = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(format!("{back:?}"), format!("{config:?}"));
        assert!(json.contains("\"synthesis\":\"concat\""), "{json}");
    }

    #[test]
    fn a_learned_classifier_replaces_the_text_centres() {
        let device = device();
        let head = SspaHeadConfig::new(16)
            .with_learned_classes(Some(4))
            .with_alignment(Alignment::SemanticToVisual)
            .with_branches(Branches::Global)
            .init(&device);
        assert_eq!(head.class_weights.as_ref().expect("W").dims(), [4, 16]);
        let x = inputs(&device, 16);
        let first = head.forward(x.knowledge.clone(), x.context.clone(), x.global.clone(), x.patches.clone());
        // The global branch compares f_g with W: the text features do not matter.
        let other = head.forward(x.knowledge.neg(), x.context.neg(), x.global.clone(), x.patches.clone());
        assert_close(first.scores.clone(), other.scores, 0.0);
        let expected = l2_normalize(x.global)
            .matmul(l2_normalize(head.class_weights.as_ref().expect("W").val()).transpose())
            * logit_scale(head.global_logit_scale.as_ref().expect("a_g")).unsqueeze::<2>();
        assert_close(first.global_logits.expect("global"), expected, 1e-6);
        let wrong = head.try_forward(
            random([3, 16], &device),
            random([3, 16], &device),
            random([2, 16], &device),
            random([2, 9, 16], &device),
        );
        assert!(wrong.is_err(), "3 classes against 4 learned centres");
    }

    #[test]
    fn regional_logits_use_the_learned_centres() {
        let device = device();
        let config =
            SspaHeadConfig::new(16).with_alignment(Alignment::SemanticToVisual).with_branches(Branches::Regional);
        let learned = config.clone().with_learned_classes(Some(4)).init(&device);
        let x = inputs(&device, 16);
        let output = learned.forward(x.knowledge.clone(), x.context.clone(), x.global.clone(), x.patches.clone());
        // The same blocks scoring against W instead of T*: rebuild it from the parts.
        let [batch, _] = x.global.dims();
        let context = x.context.clone().unsqueeze::<3>().expand([batch, 4, 16]);
        let filtered = learned.dsf.as_ref().expect("dsf").forward(context, x.patches.clone());
        let unified = learned.qsm.as_ref().expect("qsm").forward(x.knowledge, filtered, x.global);
        let aligned = learned.gdma.as_ref().expect("gdma").forward(unified, x.patches);
        let centres = learned.class_weights.as_ref().expect("W").val().unsqueeze::<3>().expand([batch, 4, 16]);
        let expected = learned.aggregator.as_ref().expect("aggregator").forward(aligned.patches, centres).logits;
        assert_close(output.regional_logits.expect("regional"), expected, 1e-6);
    }
}
