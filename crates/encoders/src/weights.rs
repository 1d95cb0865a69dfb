//! Reading safetensors checkpoints with an explicit key inventory.
//!
//! A model loader asks a [`Checkpoint`] for each tensor it needs, by key and expected shape, and
//! declares the keys it deliberately ignores. [`Checkpoint::finish`] then fails with one
//! [`EncoderError::Weights`] listing every missing, unexpected, mis-shaped or mis-typed tensor, so
//! a wrong file is diagnosed in one go rather than key by key. Only `F32` tensors are read.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn::tensor::TensorData;
use safetensors::{Dtype, SafeTensors};

use crate::error::EncoderError;

/// One mismatch between a checkpoint and the architecture that loads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightProblem {
    /// The architecture needs a tensor the file lacks.
    Missing {
        /// Checkpoint key.
        key: String,
        /// The shape the architecture expects.
        expected: Vec<usize>,
    },
    /// The file holds a tensor the architecture does not know.
    Unexpected {
        /// Checkpoint key.
        key: String,
        /// Its shape in the file.
        shape: Vec<usize>,
    },
    /// A tensor has the wrong shape.
    Shape {
        /// Checkpoint key.
        key: String,
        /// Its shape in the file.
        found: Vec<usize>,
        /// The shape the architecture expects.
        expected: Vec<usize>,
    },
    /// A tensor has an element type other than `F32`.
    Dtype {
        /// Checkpoint key.
        key: String,
        /// Its element type in the file.
        found: String,
    },
}

impl fmt::Display for WeightProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { key, expected } => write!(f, "missing `{key}` (expected shape `{expected:?}`)"),
            Self::Unexpected { key, shape } => write!(f, "unexpected `{key}` (shape `{shape:?}`)"),
            Self::Shape { key, found, expected } => {
                write!(f, "`{key}` has shape `{found:?}`, expected `{expected:?}`")
            }
            Self::Dtype { key, found } => write!(f, "`{key}` has dtype `{found}`, expected `F32`"),
        }
    }
}

struct RawTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

/// A safetensors file opened for loading, with a record of what has been consumed.
pub struct Checkpoint {
    path: PathBuf,
    model: String,
    tensors: BTreeMap<String, RawTensor>,
    consumed: BTreeSet<String>,
    problems: Vec<WeightProblem>,
}

impl Checkpoint {
    /// Reads and parses the whole file. Unreadable, truncated or non-safetensors files are an
    /// [`EncoderError::Io`] or [`EncoderError::Checkpoint`]; `model` names the architecture in
    /// later errors.
    pub fn open(path: &Path, model: &str) -> Result<Self, EncoderError> {
        let buffer = std::fs::read(path).map_err(|source| EncoderError::Io { path: path.to_path_buf(), source })?;
        Self::from_bytes(&buffer, path, model)
    }

    /// Parses an in-memory safetensors buffer; `path` is only used in messages.
    pub fn from_bytes(buffer: &[u8], path: &Path, model: &str) -> Result<Self, EncoderError> {
        let parsed = SafeTensors::deserialize(buffer)
            .map_err(|error| EncoderError::Checkpoint { path: path.to_path_buf(), reason: error.to_string() })?;
        let tensors = parsed
            .iter()
            .map(|(name, view)| {
                let raw = RawTensor { dtype: view.dtype(), shape: view.shape().to_vec(), bytes: view.data().to_vec() };
                (name.to_string(), raw)
            })
            .collect();
        Ok(Self {
            path: path.to_path_buf(),
            model: model.to_string(),
            tensors,
            consumed: BTreeSet::new(),
            problems: Vec::new(),
        })
    }

    /// The values of `key` in row-major order, if present, `F32` and of shape `expected`;
    /// otherwise records the problem and returns zeros so that loading can go on and report
    /// every problem at once.
    pub fn take_values(&mut self, key: &str, expected: &[usize]) -> Vec<f32> {
        let count = expected.iter().product();
        self.consumed.insert(key.to_string());
        let Some(raw) = self.tensors.get(key) else {
            self.problems.push(WeightProblem::Missing { key: key.into(), expected: expected.to_vec() });
            return vec![0.0; count];
        };
        if raw.dtype != Dtype::F32 {
            self.problems.push(WeightProblem::Dtype { key: key.into(), found: format!("{:?}", raw.dtype) });
            return vec![0.0; count];
        }
        if raw.shape != expected {
            self.problems.push(WeightProblem::Shape {
                key: key.into(),
                found: raw.shape.clone(),
                expected: expected.to_vec(),
            });
            return vec![0.0; count];
        }
        raw.bytes.chunks_exact(4).map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]])).collect()
    }

    /// [`take_values`](Self::take_values) as a tensor of rank `D` on `device`.
    pub fn take<const D: usize>(&mut self, key: &str, expected: [usize; D], device: &Device) -> Tensor<D> {
        let values = self.take_values(key, &expected);
        Tensor::from_data(TensorData::new(values, expected), device)
    }

    /// A PyTorch `nn.Linear` weight `[rows, cols]` (`[out, in]`) as burn's `[cols, rows]`
    /// (`[in, out]`), transposed here on the host so that the tensor is contiguous: a lazily
    /// transposed (column-major) weight makes every forward matmul pack a strided operand, about
    /// 1.5× slower on flex at MiniLM's shapes.
    pub fn take_transposed(&mut self, key: &str, [rows, cols]: [usize; 2], device: &Device) -> Tensor<2> {
        transposed(self.take::<2>(key, [rows, cols], device))
    }

    /// Marks `key` as known but unused (buffers such as `position_ids`, heads not needed).
    /// Absent ignored keys are not an error.
    pub fn ignore(&mut self, key: &str) {
        self.consumed.insert(key.to_string());
    }

    /// Fails with every problem found, unexpected tensors included, or returns `Ok(())`.
    pub fn finish(mut self) -> Result<(), EncoderError> {
        for (key, raw) in &self.tensors {
            if !self.consumed.contains(key) {
                self.problems.push(WeightProblem::Unexpected { key: key.clone(), shape: raw.shape.clone() });
            }
        }
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(EncoderError::Weights { path: self.path, model: self.model, problems: self.problems })
        }
    }
}

/// Builds a [`burn::nn::Linear`] from a PyTorch `nn.Linear` weight `[out, in]` and bias `[out]`.
pub fn linear(
    checkpoint: &mut Checkpoint,
    prefix: &str,
    d_input: usize,
    d_output: usize,
    device: &Device,
) -> burn::nn::Linear {
    use burn::module::Param;
    let weight = checkpoint.take_transposed(&format!("{prefix}.weight"), [d_output, d_input], device);
    let bias = checkpoint.take(&format!("{prefix}.bias"), [d_output], device);
    burn::nn::Linear { weight: Param::from_tensor(weight), bias: Some(Param::from_tensor(bias)) }
}

/// `matrix` transposed into a contiguous tensor (a copy through the backend's tiled transpose; a
/// lazy `transpose()` view would make every matmul that reads it pack a strided operand).
pub fn transposed(matrix: Tensor<2>) -> Tensor<2> {
    let device = matrix.device();
    Tensor::from_data(matrix.transpose().into_data(), &device)
}

/// A [`FrozenLinear`](crate::frozen_linear::FrozenLinear) from PyTorch `weight` `[out, in]` and
/// `bias` `[out]` keys.
pub fn frozen_linear(
    checkpoint: &mut Checkpoint,
    prefix: &str,
    d_input: usize,
    d_output: usize,
    device: &Device,
) -> crate::frozen_linear::FrozenLinear {
    let weight = checkpoint.take(&format!("{prefix}.weight"), [d_output, d_input], device);
    let bias = checkpoint.take(&format!("{prefix}.bias"), [d_output], device);
    crate::frozen_linear::FrozenLinear::from_pytorch(weight, bias)
}

/// Builds a [`sspa_norm::LayerNorm`] from PyTorch `weight`/`bias` keys.
pub fn layer_norm(
    checkpoint: &mut Checkpoint,
    prefix: &str,
    width: usize,
    epsilon: f64,
    device: &Device,
) -> sspa_norm::LayerNorm {
    use burn::module::Param;
    let mut norm = sspa_norm::LayerNormConfig::new(width).with_epsilon(epsilon).init(device);
    norm.gamma = Param::from_tensor(checkpoint.take(&format!("{prefix}.weight"), [width], device));
    norm.beta = Some(Param::from_tensor(checkpoint.take(&format!("{prefix}.bias"), [width], device)));
    norm
}

impl Checkpoint {
    /// Whether the file holds `key` (used to detect key prefixes).
    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }
}
