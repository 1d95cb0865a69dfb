//! The GDMA gate (SSPA Eq. 11, after Kumar & Vepa, ICASSP 2020).
//!
//! For a query modality `X` and its attended signal `A = CMA(X, Y)`:
//! `Ã = tanh(W_a A + b_a)`, `g = σ(W_g [X ‖ A] + b_g)`, `Gate(X, A) = X + g ⊙ Ã`.
//! With the gate switched off (Tables VIII, IX) the block is the plain residual `X + A`.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, tanh};

/// Configuration of [`Gate`].
#[derive(Config, Debug)]
pub struct GateConfig {
    /// Width `d` of `X` and `A`.
    pub d_model: usize,
    /// `false` replaces the gate by `X + A` (no parameters).
    #[config(default = true)]
    pub enabled: bool,
}

impl GateConfig {
    /// Builds `W_a: d → d` and `W_g: 2d → d`, both with bias, or nothing when disabled.
    pub fn init(&self, device: &Device) -> Gate {
        let (modulate, gate) = if self.enabled {
            (
                Some(LinearConfig::new(self.d_model, self.d_model).init(device)),
                Some(LinearConfig::new(2 * self.d_model, self.d_model).init(device)),
            )
        } else {
            (None, None)
        };
        Gate { modulate, gate }
    }
}

/// The gated residual `X + g ⊙ tanh(W_a A + b_a)`.
#[derive(Module, Debug)]
pub struct Gate {
    /// `W_a`, `b_a` (`d → d`).
    pub modulate: Option<Linear>,
    /// `W_g`, `b_g` (`2d → d`) on `[X ‖ A]`.
    pub gate: Option<Linear>,
}

/// What [`Gate::forward`] returns.
#[derive(Debug, Clone)]
pub struct GateOutput<const D: usize> {
    /// `X + g ⊙ Ã`, or `X + A` when the gate is off.
    pub output: Tensor<D>,
    /// The gate values `g ∈ (0, 1)` (for visualisation); `None` when the gate is off.
    pub gate: Option<Tensor<D>>,
}

impl Gate {
    /// # Shapes
    /// - query (`X`, un-normalised): `[..., d]`
    /// - attended (`A`): `[..., d]`
    /// - output, gate: `[..., d]`
    pub fn forward<const D: usize>(&self, query: Tensor<D>, attended: Tensor<D>) -> GateOutput<D> {
        match (&self.modulate, &self.gate) {
            (Some(modulate), Some(gate)) => {
                let modulated = tanh(modulate.forward(attended.clone()));
                let joined = Tensor::cat(vec![query.clone(), attended], D - 1);
                let g = sigmoid(gate.forward(joined));
                GateOutput { output: query + g.clone() * modulated, gate: Some(g) }
            }
            _ => GateOutput { output: query + attended, gate: None },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_close, device, random};
    use burn::module::Param;

    fn with_gate_bias(mut gate: Gate, value: f32, device: &Device) -> Gate {
        let linear = gate.gate.as_mut().expect("W_g");
        linear.bias = Some(Param::from_tensor(Tensor::full([6], value, device)));
        gate
    }

    #[test]
    fn a_closed_gate_passes_the_query_through() {
        let device = device();
        let gate = with_gate_bias(GateConfig::new(6).init(&device), -1e4, &device);
        let (x, a) = (random([2, 3, 6], &device), random([2, 3, 6], &device));
        let out = gate.forward(x.clone(), a);
        assert_close(out.output, x, 1e-6);
        assert!(crate::test_util::values(out.gate.expect("gate values")).iter().all(|&g| g < 1e-6));
    }

    #[test]
    fn an_open_gate_adds_the_modulated_signal() {
        let device = device();
        let gate = with_gate_bias(GateConfig::new(6).init(&device), 1e4, &device);
        let (x, a) = (random([2, 3, 6], &device), random([2, 3, 6], &device));
        let modulated = tanh(gate.modulate.as_ref().expect("W_a").forward(a.clone()));
        assert_close(gate.forward(x.clone(), a).output, x + modulated, 1e-6);
    }

    #[test]
    fn switched_off_it_is_the_plain_residual() {
        let device = device();
        let gate = GateConfig::new(6).with_enabled(false).init(&device);
        assert_eq!(gate.num_params(), 0);
        let (x, a) = (random([2, 3, 6], &device), random([2, 3, 6], &device));
        let out = gate.forward(x.clone(), a.clone());
        assert!(out.gate.is_none());
        assert_close(out.output, x + a, 0.0);
    }
}
