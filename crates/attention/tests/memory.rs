//! The autodiff graph of the fused op holds no `L_q × L_k` tensor; the decomposed one does.
//!
//! A counting global allocator measures the heap bytes that stay allocated after the forward
//! pass (flex only: libtorch allocates outside Rust's allocator). One test per binary, so no other
//! test allocates concurrently.

mod common;

use std::alloc::System;

use common::retained::{live_bytes, retained_bytes};
use sspa_attention::{attention, attention_decomposed};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn the_graph_keeps_no_score_sized_tensor() {
    assert!(live_bytes() > 0, "the counting allocator is installed");
    // [B, H, L_q, L_k, d]: the scores (1 MiB) dwarf Q, K and V (64 KiB each).
    let shape = [2, 2, 256, 256, 16];
    let scores = (2 * 2 * 256 * 256 * size_of::<f32>()) as isize;
    let fused = retained_bytes(attention, shape);
    let decomposed = retained_bytes(attention_decomposed, shape);
    eprintln!("retained after forward: fused {fused} B, decomposed {decomposed} B, one score tensor {scores} B");
    assert!(decomposed >= scores, "the decomposed graph should keep the probabilities ({decomposed} B)");
    assert!(fused < scores / 4, "the fused graph keeps {fused} B, a score tensor is {scores} B");
}
