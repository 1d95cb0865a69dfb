//! Text inputs of the head: KAP features `T_k` (fixed) and CAP features `T_l` (through the frozen
//! text encoder with learnable prompt tokens, SSPA Eq. 5).
//!
//! The real encoder (frozen MiniLM with the CAP prompt hook) lives elsewhere and plugs in through
//! [`PromptTextEncoder`]. [`FixedTextEncoder`] serves `ablation.cap = false` (a fixed `T_l`, e.g.
//! `T_k` or template prompts), [`MeanPromptEncoder`] is a small learnable-free encoder for tests.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use crate::error::TrainError;

/// The frozen text encoder with CAP's prompt hook: `T_l = E_t([V]_1 … [V]_M, w_j)` for every label.
///
/// Implementations keep their own weights frozen (not part of the trained module, no gradient
/// required); gradients must flow from the output into `prompts` only.
pub trait PromptTextEncoder {
    /// Width of one prompt token (the encoder's word-embedding width).
    fn prompt_width(&self) -> usize;

    /// Output width `d_t`.
    fn output_width(&self) -> usize;

    /// CAP features of `labels`.
    ///
    /// # Shapes
    /// - prompts: `[M, prompt_width]` (learnable, shared across labels; may carry autodiff)
    /// - output: `[labels.len(), output_width]`, on the device of `prompts`
    fn forward(&self, prompts: Tensor<2>, labels: &[String]) -> Tensor<2>;
}

/// KAP features and the label names they belong to.
#[derive(Debug, Clone, PartialEq)]
pub struct TextInputs {
    /// Label names in class-index order.
    pub labels: Vec<String>,
    /// `T_k`, `[C, width]` row-major: description embeddings averaged per label.
    pub knowledge: Vec<f32>,
    /// `d_t`.
    pub width: usize,
}

impl TextInputs {
    /// Checks the sizes.
    ///
    /// # Errors
    /// [`TrainError::FeatureShape`] when `knowledge` is not `[C, width]`, [`TrainError::Option`] for
    /// no labels or a zero width.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.labels.is_empty() || self.width == 0 {
            return Err(TrainError::Option {
                key: "text",
                value: format!("{} labels, width {}", self.labels.len(), self.width),
                reason: "needs at least one label and a positive width",
            });
        }
        let expected = self.labels.len() * self.width;
        if self.knowledge.len() != expected {
            return Err(TrainError::FeatureShape {
                name: "knowledge",
                actual: self.knowledge.len(),
                expected,
                shape: format!("[{}, {}]", self.labels.len(), self.width),
            });
        }
        Ok(())
    }

    /// Number of classes `C`.
    pub fn classes(&self) -> usize {
        self.labels.len()
    }

    /// `T_k` as a tensor, `[C, width]`.
    pub fn knowledge_tensor(&self, device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(self.knowledge.clone(), [self.labels.len(), self.width]), device)
    }
}

/// `ablation.cap = false`: `T_l` is a fixed `[C, d_t]` matrix (`T_k` itself, or template prompts
/// embedded upstream); the prompts are ignored.
#[derive(Debug, Clone)]
pub struct FixedTextEncoder {
    context: Vec<f32>,
    classes: usize,
    width: usize,
    prompt_width: usize,
}

impl FixedTextEncoder {
    /// A fixed `T_l`, `[classes, width]` row-major; `prompt_width` is only reported.
    ///
    /// # Errors
    /// [`TrainError::FeatureShape`] when `context` is not `[classes, width]`.
    pub fn new(context: Vec<f32>, classes: usize, width: usize, prompt_width: usize) -> Result<Self, TrainError> {
        if context.len() != classes * width {
            return Err(TrainError::FeatureShape {
                name: "context",
                actual: context.len(),
                expected: classes * width,
                shape: format!("[{classes}, {width}]"),
            });
        }
        Ok(Self { context, classes, width, prompt_width })
    }

    /// `T_l = T_k`.
    ///
    /// # Errors
    /// As [`TextInputs::validate`].
    pub fn knowledge(text: &TextInputs) -> Result<Self, TrainError> {
        text.validate()?;
        Self::new(text.knowledge.clone(), text.classes(), text.width, text.width)
    }
}

impl PromptTextEncoder for FixedTextEncoder {
    fn prompt_width(&self) -> usize {
        self.prompt_width
    }

    fn output_width(&self) -> usize {
        self.width
    }

    /// Returns the fixed `[C, width]` matrix; callers check that `C` matches their labels.
    fn forward(&self, prompts: Tensor<2>, _labels: &[String]) -> Tensor<2> {
        Tensor::from_data(TensorData::new(self.context.clone(), [self.classes, self.width]), &prompts.device())
    }
}

/// A tiny frozen encoder for tests: `T_l[j] = W (mean_m prompts[m] + e_j) + b` with a fixed
/// per-label embedding `e_j` and a frozen `Linear(prompt_width, width)`.
#[derive(Debug)]
pub struct MeanPromptEncoder {
    /// Per-label embeddings `e_j`, `[C, prompt_width]` (constant).
    pub label_embeddings: Tensor<2>,
    /// The frozen projection.
    pub projection: Linear,
    /// Label names, in the order of `label_embeddings`.
    pub labels: Vec<String>,
}

impl MeanPromptEncoder {
    /// Frozen weights on `device`, drawn from `seed`.
    pub fn new(labels: Vec<String>, prompt_width: usize, width: usize, seed: u64, device: &Device) -> Self {
        crate::model::seeded(device, seed, || {
            let label_embeddings =
                Tensor::random([labels.len(), prompt_width], burn::tensor::Distribution::Normal(0.0, 1.0), device);
            let projection = LinearConfig::new(prompt_width, width).init(device).no_grad();
            // Materialise the lazily initialised weights while the seed holds.
            drop(crate::optim::parameter_snapshot(&projection));
            Self { label_embeddings, projection, labels }
        })
    }
}

/// # Panics
/// `forward` panics on a label the encoder was not built with (it is a test encoder).
impl PromptTextEncoder for MeanPromptEncoder {
    fn prompt_width(&self) -> usize {
        self.label_embeddings.dims()[1]
    }

    fn output_width(&self) -> usize {
        self.projection.weight.dims()[1]
    }

    fn forward(&self, prompts: Tensor<2>, labels: &[String]) -> Tensor<2> {
        let rows: Vec<i64> = labels
            .iter()
            .map(|label| self.labels.iter().position(|known| known == label).map_or(-1, |index| index as i64))
            .collect();
        assert!(rows.iter().all(|&row| row >= 0), "label unknown to the encoder");
        let device = prompts.device();
        let indices = Tensor::<1, Int>::from_data(TensorData::new(rows, [labels.len()]), &device);
        let embeddings = self.label_embeddings.clone().select(0, indices);
        let shared = prompts.mean_dim(0); // [1, prompt_width]
        self.projection.forward(embeddings + shared)
    }
}
