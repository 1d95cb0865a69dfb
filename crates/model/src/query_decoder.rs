//! The `query-decoder` peer head, after ML-Decoder (Ridnik et al., *ML-Decoder: Scalable and
//! Versatile Classification Head*, WACV 2023; public code `Alibaba-MIIL/ML_Decoder`,
//! `src_files/ml_decoder/ml_decoder.py`), written from its description:
//!
//! 1. The patch features are the spatial tokens: `Z = ReLU(F_p W_e + b_e) ∈ R^{B×N×D}`
//!    (ML-Decoder's `embed_standart`). Like ML-Decoder, which decodes the backbone's spatial map
//!    in place of global pooling, the head does **not** read the global feature `f_g`, nor text.
//! 2. `K` learnable label queries `Q ∈ R^{K×D}` (one per class when `C ≤ max_queries`, else
//!    `K = max_queries` queries each scoring a group of `⌈C/K⌉` classes), shared by all images.
//! 3. One decoder layer **without self-attention among the queries** (ML-Decoder's key change to
//!    the transformer decoder, which makes the cost linear in `K`), post-norm as ML-Decoder:
//!    `Q̂ = LN_1(Q)`, `H = LN_2(Q̂ + MHA(Q̂, Z))`, `H' = LN_3(H + W_2 ReLU(H W_1 + b_1) + b_2)`.
//!    (Where the self-attention was, ML-Decoder's code keeps `tgt + dropout(tgt)`, which in
//!    evaluation doubles the queries before `LN_1`: the same up to LayerNorm's `ε`, left out.)
//! 4. Group fully-connected outputs ([`GroupLinear`]): query `k`'s embedding through its own
//!    `D → g` map, cut to `C` logits, plus a per-class bias.
//!
//! Differences from ML-Decoder's code, all to match the other heads here: the queries are learned
//! (the code freezes its random queries; the paper and the issue asking for this head describe
//! learnable ones); no dropout (none anywhere in the SSPA head); widths from the domain config
//! (`D = model.embed_dim`, `F = 4D`) instead of 768 and 2048.

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::Distribution;
use burn::tensor::activation::relu;
use sspa_norm::{LayerNorm, LayerNormConfig};

use crate::cross_attention::{MultiHeadCrossAttention, MultiHeadCrossAttentionConfig};
use crate::error::ModelError;
use crate::group_linear::{GroupLinear, GroupLinearConfig};

/// Configuration of [`QueryDecoder`].
#[derive(Config, Debug)]
pub struct QueryDecoderConfig {
    /// Width `c` of the image encoder's patch features.
    pub image_width: usize,
    /// Number of labels `C`.
    pub classes: usize,
    /// Decoder width `D` (token embedding, queries, attention); `HeadConfig::from_sections` uses
    /// `model.embed_dim`.
    pub d_model: usize,
    /// Attention heads `H` (must divide `D`); ML-Decoder uses 8.
    #[config(default = 8)]
    pub heads: usize,
    /// Hidden width `F` of the feed-forward block; `None` means `4D`.
    pub feedforward_width: Option<usize>,
    /// Most queries `K`: one per class up to this many classes, else this many queries each
    /// scoring `⌈C/K⌉` classes (ML-Decoder's default number of groups, 100).
    #[config(default = 100)]
    pub max_queries: usize,
    /// LayerNorm epsilon of the three LNs.
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
}

impl QueryDecoderConfig {
    /// Number of queries `K = min(C, max_queries)`.
    pub fn queries(&self) -> usize {
        self.classes.min(self.max_queries)
    }

    /// `F`.
    pub fn feedforward(&self) -> usize {
        self.feedforward_width.unwrap_or(4 * self.d_model)
    }

    /// Checks what [`QueryDecoderConfig::init`] relies on.
    ///
    /// # Errors
    /// [`ModelError::OutOfRange`] for a zero width, class count or query count;
    /// [`ModelError::Heads`] when `H` does not divide `D`.
    pub fn validate(&self) -> Result<(), ModelError> {
        for (key, value) in [
            ("image feature width", self.image_width),
            ("classes", self.classes),
            ("model.embed_dim", self.d_model),
            ("query decoder max_queries", self.max_queries),
            ("query decoder feed-forward width", self.feedforward()),
        ] {
            if value == 0 {
                return Err(ModelError::OutOfRange { key, value: "0".into() });
            }
        }
        if self.heads == 0 || !self.d_model.is_multiple_of(self.heads) {
            return Err(ModelError::Heads { d_model: self.d_model, heads: self.heads });
        }
        Ok(())
    }

    /// Builds the decoder: queries `~ N(0, 1)` (as `nn.Embedding`), LayerNorms `γ = 1, β = 0`,
    /// linear layers as PyTorch's `nn.Linear`, the group FC as [`GroupLinearConfig::init`].
    ///
    /// # Panics
    /// If the config does not pass [`QueryDecoderConfig::validate`].
    pub fn init(&self, device: &Device) -> QueryDecoder {
        if let Err(error) = self.validate() {
            panic!("invalid query decoder config: {error}");
        }
        let (d, queries) = (self.d_model, self.queries());
        let norm = || LayerNormConfig::new(d).with_epsilon(self.layer_norm_eps).init(device);
        QueryDecoder {
            embed: LinearConfig::new(self.image_width, d).init(device),
            queries: Param::from_tensor(Tensor::random([queries, d], Distribution::Normal(0.0, 1.0), device)),
            norm_query: norm(),
            attention: MultiHeadCrossAttentionConfig::new(d, self.heads).init(device),
            norm_attention: norm(),
            feedforward_expand: LinearConfig::new(d, self.feedforward()).init(device),
            feedforward_contract: LinearConfig::new(self.feedforward(), d).init(device),
            norm_feedforward: norm(),
            output: GroupLinearConfig::new(queries, d, self.classes).init(device),
        }
    }
}

/// Label queries decoding the patch tokens in one cross-attention layer.
#[derive(Module, Debug)]
pub struct QueryDecoder {
    /// `W_e` `[c, D]`, `b_e` `[D]`: the patch features to tokens (ReLU after).
    pub embed: Linear,
    /// Label queries `Q`, `[K, D]`.
    pub queries: Param<Tensor<2>>,
    /// `LN_1`, on the queries.
    pub norm_query: LayerNorm,
    /// Cross-attention of the queries over the tokens.
    pub attention: MultiHeadCrossAttention,
    /// `LN_2`, after the attention's residual.
    pub norm_attention: LayerNorm,
    /// `W_1` `[D, F]`, `b_1`.
    pub feedforward_expand: Linear,
    /// `W_2` `[F, D]`, `b_2`.
    pub feedforward_contract: Linear,
    /// `LN_3`, after the feed-forward residual.
    pub norm_feedforward: LayerNorm,
    /// Group fully-connected outputs.
    pub output: GroupLinear,
}

impl QueryDecoder {
    /// Width `c` of the patch features this head takes.
    pub fn image_width(&self) -> usize {
        self.embed.weight.dims()[0]
    }

    /// Number of labels `C`.
    pub fn classes(&self) -> usize {
        self.output.classes()
    }

    /// Logits of every label.
    ///
    /// # Shapes
    /// - patches (`F_p`): `[B, N, c]`
    /// - output: `[B, C]`
    pub fn forward(&self, patches: Tensor<3>) -> Tensor<2> {
        let [batch, _, _] = patches.dims();
        let tokens = relu(self.embed.forward(patches));
        // The queries do not depend on the image: normalise once, then share across the batch.
        let queries = self.norm_query.forward(self.queries.val());
        let [count, width] = queries.dims();
        let queries = queries.unsqueeze::<3>().expand([batch, count, width]);
        let attended = self.attention.forward(queries.clone(), tokens);
        let decoded = self.norm_attention.forward(queries + attended);
        let hidden = relu(self.feedforward_expand.forward(decoded.clone()));
        let decoded = self.norm_feedforward.forward(decoded + self.feedforward_contract.forward(hidden));
        self.output.forward(decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, device, random};

    #[test]
    fn one_query_per_class_up_to_the_limit_then_groups() {
        let device = device();
        let small = QueryDecoderConfig::new(12, 5, 8).with_heads(2);
        assert_eq!((small.queries(), small.feedforward()), (5, 32));
        let head = small.init(&device);
        assert_eq!(head.queries.dims(), [5, 8]);
        assert_eq!(head.output.weight.dims(), [5, 8, 1]);
        assert_eq!((head.image_width(), head.classes()), (12, 5));
        assert_eq!(head.forward(random([3, 7, 12], &device)).dims(), [3, 5]);

        let grouped = QueryDecoderConfig::new(12, 5, 8).with_heads(2).with_max_queries(2).init(&device);
        assert_eq!(grouped.queries.dims(), [2, 8]);
        assert_eq!(grouped.output.weight.dims(), [2, 8, 3]);
        assert_eq!(grouped.forward(random([3, 7, 12], &device)).dims(), [3, 5]);
    }

    #[test]
    fn the_patch_order_does_not_matter_and_images_are_decoded_independently() {
        let device = device();
        let head = QueryDecoderConfig::new(6, 4, 8).with_heads(2).init(&device);
        let patches = random([2, 5, 6], &device);
        let logits = head.forward(patches.clone());
        // Attention is a set operation over the tokens.
        assert_close(head.forward(patches.clone().flip([1])), logits.clone(), 1e-5);
        // Image 1 alone gives its row of the batch.
        let alone = head.forward(patches.slice([1..2, 0..5, 0..6]));
        assert_close(alone, logits.slice([1..2, 0..4]), 1e-5);
    }

    #[test]
    fn invalid_configs_are_named() {
        assert_eq!(
            QueryDecoderConfig::new(6, 4, 10).with_heads(4).validate(),
            Err(ModelError::Heads { d_model: 10, heads: 4 })
        );
        assert!(matches!(
            QueryDecoderConfig::new(6, 0, 8).validate(),
            Err(ModelError::OutOfRange { key: "classes", .. })
        ));
        assert!(QueryDecoderConfig::new(6, 4, 8).validate().is_ok());
    }
}
