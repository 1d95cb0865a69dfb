//! The SSPA head (Tan et al., *SSPA: Split-and-Synthesize Prompting with Gated Alignments for
//! Multi-Label Image Recognition*, arXiv 2407.20920) as burn blocks, and its training loss.
//!
//! Every equation follows `shared/design/SSPA.md`; the choices marked there as open are config
//! switches here ([`SspaHeadConfig`] mirrors the domain config's `[model]` and `[ablation]`).
//!
//! - [`cma`]: cross-modal attention with query-only projection (Eq. 3).
//! - [`mlp`]: the `Linear(d, 4d) → GELU → Linear(4d, d)` block used everywhere.
//! - [`dsf`]: Dynamic Semantic Filtering (Eq. 5).
//! - [`quaternion`]: quaternion linear layer via the Hamilton product (Eq. 9).
//! - [`qsm`]: Quaternion Semantic Modeling and its ablations (Eqs. 6–10, Table VII).
//! - [`gate`]: the GDMA gate (Eq. 11); [`alignment`]: one gated direction (Eq. 12 or 13);
//!   [`gdma`]: both directions in parallel.
//! - [`aggregator`]: soft / mean / hard patch aggregation (Eqs. 14–16).
//! - [`image_projection`]: the learnable `Linear(c, d)` after a non-CLIP image backbone.
//! - [`head`]: the whole head, global branch and final score (Eq. 18).
//! - [`asl`]: Asymmetric Loss and the total loss (Eqs. 17, 19).
//!
//! The peer heads SSPA is compared with, on the same inputs, loss and training loop:
//! - [`linear_head`]: a linear probe on the global feature.
//! - [`mlp_head`]: a two-layer MLP on the global and the mean patch feature.
//! - [`query_decoder`]: an ML-Decoder-style head, built from [`cross_attention`] (multi-head
//!   attention with projected keys and values) and [`group_linear`] (group fully-connected outputs).
//! - [`heads`]: any of the four behind one interface ([`Head`], [`HeadConfig`], [`HeadKind`]).
//!
//! The training machinery (AdamW groups, schedule, EMA, loop, checkpoints) is `sspa-train`'s.
//!
//! Modules are not generic over a backend: the device they are initialised on decides it.

pub mod aggregator;
pub mod alignment;
pub mod asl;
pub mod cma;
pub mod cross_attention;
pub mod dsf;
pub mod error;
pub mod gate;
pub mod gdma;
pub mod group_linear;
pub mod head;
pub mod heads;
pub mod image_projection;
pub mod linear_head;
pub mod mlp;
pub mod mlp_head;
pub mod qsm;
pub mod quaternion;
pub mod query_decoder;
pub mod similarity;
#[cfg(test)]
mod test_util;

pub use aggregator::{Aggregator, AggregatorConfig, AggregatorOutput};
pub use alignment::{GatedAlignment, GatedAlignmentConfig};
pub use asl::{AsymmetricLoss, AsymmetricLossConfig, SspaLoss, validate_targets};
pub use cma::{CrossModalAttention, CrossModalAttentionConfig};
pub use cross_attention::{MultiHeadCrossAttention, MultiHeadCrossAttentionConfig};
pub use dsf::{DynamicSemanticFilter, DynamicSemanticFilterConfig};
pub use error::ModelError;
pub use gate::{Gate, GateConfig, GateOutput};
pub use gdma::{Gdma, GdmaConfig, GdmaOutput};
pub use group_linear::{GroupLinear, GroupLinearConfig};
pub use head::{SspaHead, SspaHeadConfig, SspaOutput};
pub use heads::{ClassAxis, Head, HeadConfig, HeadKind};
pub use image_projection::{ImageProjection, ImageProjectionConfig};
pub use linear_head::{LinearHead, LinearHeadConfig};
pub use mlp::{Mlp, MlpConfig};
pub use mlp_head::{MlpHead, MlpHeadConfig};
pub use qsm::{Qsm, QsmConfig};
pub use quaternion::{QuaternionLinear, QuaternionLinearConfig};
pub use query_decoder::{QueryDecoder, QueryDecoderConfig};
