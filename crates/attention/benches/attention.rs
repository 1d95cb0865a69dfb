//! Fused vs decomposed attention on flex + autodiff: forward+backward time and the heap bytes the
//! graph keeps between forward and backward, at the shapes the pipeline uses.
//!
//! `cargo bench --profile dev -p sspa-attention` (optionally `-- ITERATIONS`).

#[path = "../tests/common/mod.rs"]
mod common;

use std::alloc::System;
use std::time::Instant;

use burn::prelude::*;
use common::retained::{AttentionFn, retained_bytes};
use common::seeded;
use sspa_attention::{attention, attention_decomposed};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Seeded `(Q, K, V, dO)` on flex + autodiff, the first three tracked.
fn operands(shape: [usize; 5]) -> [Tensor<4>; 4] {
    let [batch, heads, length_q, length_k, width] = shape;
    let device = Device::flex().autodiff();
    [
        seeded([batch, heads, length_q, width], 1, 1.0, &device).require_grad(),
        seeded([batch, heads, length_k, width], 2, 1.0, &device).require_grad(),
        seeded([batch, heads, length_k, width], 3, 1.0, &device).require_grad(),
        seeded([batch, heads, length_q, width], 4, 1.0, &device),
    ]
}

/// Milliseconds of one forward and of its backward (`sum(attention ∘ dO)`).
fn forward_backward_ms(attention: AttentionFn, operands: &[Tensor<4>; 4]) -> [f64; 2] {
    let [query, key, value, upstream] = operands.clone();
    let scale = 1.0 / (query.dims()[3] as f64).sqrt();
    let start = Instant::now();
    let output = attention(query.clone(), key, value, None, scale);
    let forward = start.elapsed();
    let grads = (output * upstream).sum().backward();
    // Flex is eager; reading a gradient back makes sure it exists.
    let _ = query.grad(&grads).map(|grad| grad.into_data());
    [forward.as_secs_f64() * 1e3, (start.elapsed() - forward).as_secs_f64() * 1e3]
}

/// The median of each column.
fn medians(mut samples: Vec<[f64; 2]>) -> [f64; 2] {
    [0, 1].map(|column| {
        samples.sort_by(|a, b| a[column].total_cmp(&b[column]));
        samples[samples.len() / 2][column]
    })
}

fn main() {
    let iterations: usize = std::env::args().skip(1).find_map(|argument| argument.parse().ok()).unwrap_or(11);
    let shapes = [
        ("CMA-like", [64, 1, 10, 16, 192]),
        ("MiniLM-like", [10, 12, 11, 11, 32]),
        ("ViT-like", [8, 12, 197, 197, 64]),
    ];
    println!("flex + autodiff, f32; medians of {iterations} interleaved runs after one warm-up; ms");
    println!(
        "{:<12} {:>22} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>13} {:>13} {:>11}",
        "shape",
        "[B, H, L_q, L_k, d]",
        "fus fwd",
        "fus bwd",
        "fus f+b",
        "dec fwd",
        "dec bwd",
        "dec f+b",
        "fused kept B",
        "decomp kept B",
        "scores B"
    );
    for (name, shape) in shapes {
        let [batch, heads, length_q, length_k, _] = shape;
        let scores = batch * heads * length_q * length_k * size_of::<f32>();
        let operands = operands(shape);
        forward_backward_ms(attention, &operands);
        forward_backward_ms(attention_decomposed, &operands);
        let (mut fused, mut decomposed) = (Vec::new(), Vec::new());
        for _ in 0..iterations {
            fused.push(forward_backward_ms(attention, &operands));
            decomposed.push(forward_backward_ms(attention_decomposed, &operands));
        }
        let ([fused_forward, fused_backward], [decomposed_forward, decomposed_backward]) =
            (medians(fused), medians(decomposed));
        let fused_kept = retained_bytes(attention, shape);
        let decomposed_kept = retained_bytes(attention_decomposed, shape);
        println!(
            "{name:<12} {:>22} {fused_forward:>8.2} {fused_backward:>8.2} {:>8.2} {decomposed_forward:>8.2} \
             {decomposed_backward:>8.2} {:>8.2} {fused_kept:>13} {decomposed_kept:>13} {scores:>11}",
            format!("{shape:?}"),
            fused_forward + fused_backward,
            decomposed_forward + decomposed_backward,
        );
    }
}
