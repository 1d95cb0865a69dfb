//! The backend extension: one trait, implemented by each execution backend (the fused forward)
//! and by `Autodiff<B, C>` (see [`crate::autodiff`]); `#[backend_extension]` generates the runtime
//! routing from [`Dispatch`](burn::backend::Dispatch) tensors to those implementations.

// burn-tch is deprecated upstream; it is this project's libtorch/CUDA path.
#![allow(deprecated)]

use burn::backend::ops::AttentionModuleOptions;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, backend_extension};

/// Fused scaled dot-product attention as a backend operation.
///
/// The default bodies call the backend's own fused `attention` (`ModuleOps::attention`): flex's
/// naive/flash CPU kernel, libtorch's `scaled_dot_product_attention`. The `Autodiff<B, C>`
/// implementation overrides them with a tracked op (fused forward of `B`, handwritten backward).
///
/// # Shapes
/// - query `[B, H, L_q, d]`, key `[B, H, L_k, d]`, value `[B, H, L_k, d_v]`
/// - mask (additive): broadcastable to `[B, H, L_q, L_k]`
/// - output `[B, H, L_q, d_v]`
#[backend_extension(Flex, LibTorch: cfg(feature = "tch"), Autodiff)]
pub trait FusedAttentionBackend: Backend {
    /// `softmax(scale · Q Kᵀ) V`.
    fn fused_attention(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        Self::attention(query, key, value, None, None, options(scale))
    }

    /// `softmax(scale · Q Kᵀ + mask) V` with an additive mask.
    fn fused_attention_masked(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        mask: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        Self::attention(query, key, value, None, Some(mask), options(scale))
    }
}

/// The fused kernel's options for an explicit scale (no softcap, no built-in causal mask).
pub(crate) fn options(scale: f64) -> AttentionModuleOptions {
    AttentionModuleOptions { scale: Some(scale), softcap: None, is_causal: false }
}

impl FusedAttentionBackend for burn::backend::Flex {}

#[cfg(feature = "tch")]
impl FusedAttentionBackend for burn::backend::LibTorch {}
