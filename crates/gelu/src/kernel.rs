//! The scalar kernels, written so that LLVM vectorises the loops that call them: polynomials,
//! one division, clamps and bit casts, no calls into libm.
//!
//! - [`erf`]: the rational approximation of Eigen's `generic_fast_erf_float` (odd degree-13
//!   numerator, even degree-8 denominator over `x ∈ [-4, 4]`; `±1` beyond), within 1e-6 of the
//!   exact value (tested against `f64` below).
//! - [`exp`]: Cephes' `expf` (range reduction by `ln 2`, degree-5 polynomial, `2ⁿ` built from the
//!   exponent bits), relative error below 2e-7 on the range used here.
//! - [`gelu`], [`gelu_grad`]: `x Φ(x)` and `g (Φ(x) + x φ(x))` with `Φ(x) = ½ (1 + erf(x / √2))`.
//! - [`relu6`], [`relu6_grad`]: `min(max(x, 0), 6)` (EfficientNet-Lite0) and its gradient.

use std::f32::consts::{FRAC_1_SQRT_2, LOG2_E};

use rayon::prelude::*;

/// Values per task: below this a slice is done on the calling thread.
const CHUNK: usize = 1 << 14;

/// One chunk's loop as a `pulp` operation: `with_simd` is inlined into a function compiled for the
/// SIMD level `pulp` found at run time (AVX-512, AVX2 + FMA, or the baseline), where LLVM
/// vectorises the scalar loop at that width.
enum Loop<'a> {
    Gelu { input: &'a [f32], out: &'a mut [f32] },
    GeluInPlace { values: &'a mut [f32] },
    GeluGrad { input: &'a [f32], grad: &'a mut [f32] },
    Relu6 { input: &'a [f32], out: &'a mut [f32] },
    Relu6InPlace { values: &'a mut [f32] },
    Relu6Grad { input: &'a [f32], grad: &'a mut [f32] },
}

impl pulp::WithSimd for Loop<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        match self {
            Loop::Gelu { input, out } => {
                for (y, &x) in out.iter_mut().zip(input) {
                    *y = gelu(x);
                }
            }
            Loop::GeluInPlace { values } => {
                for value in values.iter_mut() {
                    *value = gelu(*value);
                }
            }
            Loop::GeluGrad { input, grad } => {
                for (g, &x) in grad.iter_mut().zip(input) {
                    *g = gelu_grad(x, *g);
                }
            }
            Loop::Relu6 { input, out } => {
                for (y, &x) in out.iter_mut().zip(input) {
                    *y = relu6(x);
                }
            }
            Loop::Relu6InPlace { values } => {
                for value in values.iter_mut() {
                    *value = relu6(*value);
                }
            }
            Loop::Relu6Grad { input, grad } => {
                for (g, &x) in grad.iter_mut().zip(input) {
                    *g = relu6_grad(x, *g);
                }
            }
        }
    }
}

fn run(op: Loop<'_>) {
    pulp::Arch::new().dispatch(op);
}

/// `make(input, out)` over the whole slices, or over chunks of [`CHUNK`] values on rayon's threads.
fn zip_chunks(input: &[f32], out: &mut [f32], make: for<'x> fn(&'x [f32], &'x mut [f32]) -> Loop<'x>) {
    assert_eq!(input.len(), out.len(), "kernel slices differ in length");
    if input.len() <= CHUNK {
        run(make(input, out));
    } else {
        input.par_chunks(CHUNK).zip(out.par_chunks_mut(CHUNK)).for_each(|(input, out)| run(make(input, out)));
    }
}

/// `make(values)` over the whole slice, or over chunks of [`CHUNK`] values on rayon's threads.
fn chunks(values: &mut [f32], make: for<'x> fn(&'x mut [f32]) -> Loop<'x>) {
    if values.len() <= CHUNK {
        run(make(values));
    } else {
        values.par_chunks_mut(CHUNK).for_each(|values| run(make(values)));
    }
}

/// `out[i] = gelu(input[i])`, in parallel chunks of vectorised loops.
///
/// # Panics
/// When the slices differ in length.
pub fn gelu_slice(input: &[f32], out: &mut [f32]) {
    zip_chunks(input, out, |input, out| Loop::Gelu { input, out });
}

/// `values[i] = gelu(values[i])`, as [`gelu_slice`].
pub fn gelu_in_place(values: &mut [f32]) {
    chunks(values, |values| Loop::GeluInPlace { values });
}

/// `grad[i] = gelu_grad(input[i], grad[i])`, as [`gelu_slice`].
///
/// # Panics
/// When the slices differ in length.
pub fn gelu_grad_in_place(input: &[f32], grad: &mut [f32]) {
    zip_chunks(input, grad, |input, grad| Loop::GeluGrad { input, grad });
}

/// `out[i] = relu6(input[i])`, as [`gelu_slice`].
///
/// # Panics
/// When the slices differ in length.
pub fn relu6_slice(input: &[f32], out: &mut [f32]) {
    zip_chunks(input, out, |input, out| Loop::Relu6 { input, out });
}

/// `values[i] = relu6(values[i])`, as [`gelu_slice`].
pub fn relu6_in_place(values: &mut [f32]) {
    chunks(values, |values| Loop::Relu6InPlace { values });
}

/// `grad[i] = relu6_grad(input[i], grad[i])`, as [`gelu_slice`].
///
/// # Panics
/// When the slices differ in length.
pub fn relu6_grad_in_place(input: &[f32], grad: &mut [f32]) {
    zip_chunks(input, grad, |input, grad| Loop::Relu6Grad { input, grad });
}

/// `min(max(x, 0), 6)`; NaN stays NaN (compare-and-select, which vectorises; flex's clamp is a
/// scalar closure with a NaN branch per value).
#[inline(always)]
pub fn relu6(x: f32) -> f32 {
    x.clamp(0.0, 6.0)
}

/// `g` where `0 < x < 6`, else 0 (PyTorch's `hardtanh_backward`).
#[inline(always)]
pub fn relu6_grad(x: f32, g: f32) -> f32 {
    if x > 0.0 && x < 6.0 { g } else { 0.0 }
}

/// `1 / √(2π)`.
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// `erf(x)` for `f32`: exactly `±1` from `|x| ≥ 3.92` on (where the `f32` value of `erf` is 1; the
/// rational form is a few ulp short of it there).
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let saturated = x.abs() >= 3.92;
    let sign = 1.0f32.copysign(x);
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 - 2.101_024e-6;
    p = p * x2 - 5.692_506_4e-5;
    p = p * x2 - 7.349_906_3e-4;
    p = p * x2 - 2.954_6e-3;
    p = p * x2 - 1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 - 2.133_740_6e-4;
    q = q * x2 - 1.682_827e-3;
    q = q * x2 - 7.373_329_4e-3;
    q = q * x2 - 1.426_473_9e-2;
    if saturated { sign } else { x * p / q }
}

/// `eˣ` for `f32`, `x` clamped to `[-87.3, 88.7]` (no overflow, no denormal results).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2²³: adding it rounds to the nearest integer
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.3, 88.7);
    let shifted = x * LOG2_E + ROUND; // n = round(x / ln 2) sits in the low mantissa bits
    let n = shifted - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2ⁿ from the exponent field, n ∈ [-126, 128] after the clamp: integer ops only (no
    // float-to-int conversion), so the loop vectorises.
    let n_bits = shifted.to_bits().wrapping_sub(ROUND.to_bits());
    e * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

/// `Φ(x) = ½ (1 + erf(x / √2))`.
#[inline(always)]
fn cdf(x: f32) -> f32 {
    0.5 * (1.0 + erf(x * FRAC_1_SQRT_2))
}

/// `GELU(x) = x Φ(x)`.
#[inline(always)]
pub fn gelu(x: f32) -> f32 {
    x * cdf(x)
}

/// `g · GELU'(x) = g (Φ(x) + x φ(x))`, `φ(x) = e^{-x²/2} / √(2π)`.
#[inline(always)]
pub fn gelu_grad(x: f32, g: f32) -> f32 {
    g * (cdf(x) + x * INV_SQRT_2PI * exp(-0.5 * x * x))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `erf` in `f64` by its Taylor series (|x| ≤ 3) or continued fraction, as the reference.
    fn erf_f64(x: f64) -> f64 {
        if x.abs() > 3.0 {
            // erfc by Lentz's continued fraction.
            let a = x.abs();
            let mut f = a;
            let (mut c, mut d) = (a, 0.0_f64);
            for n in 1..200 {
                let an = n as f64 / 2.0;
                d = a + an * d;
                d = 1.0 / d;
                c = a + an / c;
                let delta = c * d;
                f *= delta;
                if (delta - 1.0).abs() < 1e-16 {
                    break;
                }
            }
            let erfc = (-a * a).exp() / (f * std::f64::consts::PI.sqrt());
            return x.signum() * (1.0 - erfc);
        }
        let (mut sum, mut term) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            let next = term / (2 * n + 1) as f64;
            sum += next;
            if next.abs() < 1e-18 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    fn grid() -> impl Iterator<Item = f32> {
        (-12_000..=12_000).map(|i| i as f32 * 1e-3)
    }

    #[test]
    fn erf_is_within_1e_6_of_f64() {
        let worst = grid().map(|x| (f64::from(erf(x)) - erf_f64(f64::from(x))).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-6, "max |erf error| {worst}");
        assert_eq!(erf(0.0), 0.0);
        assert_eq!((erf(3.92), erf(-40.0), erf(f32::INFINITY)), (1.0, -1.0, 1.0));
    }

    #[test]
    fn exp_is_within_2e_7_relative_of_f64() {
        let worst = (-87_000..=88_000)
            .map(|i| i as f32 * 1e-3)
            .map(|x| ((f64::from(exp(x)) - f64::from(x).exp()) / f64::from(x).exp()).abs())
            .fold(0.0, f64::max);
        assert!(worst < 2e-7, "max relative exp error {worst}");
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn slice_kernels_equal_the_scalar_ones_at_every_length() {
        for n in [0, 1, 7, 16, 1000, CHUNK, CHUNK + 3, 5 * CHUNK + 11] {
            let x: Vec<f32> = (0..n).map(|i| ((i * 7919) % 2001) as f32 * 0.005 - 5.0).collect();
            let g: Vec<f32> = (0..n).map(|i| ((i * 104_729) % 101) as f32 * 0.02 - 1.0).collect();
            let mut out = vec![f32::NAN; n];
            gelu_slice(&x, &mut out);
            let mut in_place = x.clone();
            gelu_in_place(&mut in_place);
            let mut grad = g.clone();
            gelu_grad_in_place(&x, &mut grad);
            for i in 0..n {
                assert!((out[i] - gelu(x[i])).abs() <= 1e-6 * (1.0 + x[i].abs()), "n {n} i {i}");
                assert_eq!(out[i].to_bits(), in_place[i].to_bits(), "n {n} i {i}");
                assert!((grad[i] - gelu_grad(x[i], g[i])).abs() <= 1e-6, "n {n} i {i}");
            }
        }
    }

    #[test]
    fn gelu_and_its_gradient_match_f64() {
        for x in grid() {
            let xd = f64::from(x);
            let cdf = 0.5 * (1.0 + erf_f64(xd / std::f64::consts::SQRT_2));
            let expected = xd * cdf;
            let grad = cdf + xd * (-0.5 * xd * xd).exp() / (2.0 * std::f64::consts::PI).sqrt();
            assert!((f64::from(gelu(x)) - expected).abs() <= 1e-6 * (1.0 + xd.abs()), "gelu({x})");
            assert!((f64::from(gelu_grad(x, 1.0)) - grad).abs() <= 2e-6, "gelu'({x})");
            assert!((f64::from(gelu_grad(x, -2.5)) + 2.5 * grad).abs() <= 5e-6, "scaled gelu'({x})");
        }
    }
}
