//! nanochat's layers with parameters: `nn.Linear` (`y = x @ W^T (+ b)` with W (out, in)) and
//! `nn.Embedding` (rows of a table), and how parameters start.

use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

use super::params::{NamedParams, Params};
use crate::{ops, DType, Result, Tape, Tensor};

/// nanochat's `nn.Linear`: parameters `weight` and, with biases, `bias`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// (out_features, in_features).
    pub weight: Tensor,
    /// (out_features), when the config asks for biases.
    pub bias: Option<Tensor>,
}

impl Linear {
    /// `nn.Linear(in_features, out_features, bias)` in scope `p`: `weight` (out, in) initialised
    /// as `init`, and with `bias` a zero `bias` (out).
    pub(crate) fn new(
        mut p: Params<'_>,
        in_features: usize,
        out_features: usize,
        bias: bool,
        init: Init,
    ) -> Result<Linear> {
        Ok(Linear {
            weight: p.tensor("weight", &[out_features, in_features], init)?,
            bias: if bias {
                Some(p.tensor("bias", &[out_features], Init::Zeros)?)
            } else {
                None
            },
        })
    }

    /// Lists `weight`, then `bias`.
    pub(crate) fn named_parameters(&self, mut n: NamedParams<'_>) {
        n.tensor("weight", &self.weight);
        if let Some(b) = &self.bias {
            n.tensor("bias", b);
        }
    }

    /// `x @ W^T (+ b)`, in `x`'s dtype (the weights are cast to it when they differ: mixed
    /// precision).
    pub fn forward(&self, tape: Option<&Tape>, x: &Tensor) -> Result<Tensor> {
        let y = ops::linear(tape, x, &ops::cast(tape, &self.weight, x.dtype())?)?;
        match &self.bias {
            Some(b) => ops::add(tape, &y, &ops::cast(tape, b, x.dtype())?),
            None => Ok(y),
        }
    }
}

/// nanochat's `nn.Embedding`: the table `weight` (num_embeddings, embedding_dim).
#[derive(Clone, Debug)]
pub struct Embedding {
    /// (vocab, C).
    pub weight: Tensor,
}

impl Embedding {
    /// `nn.Embedding(num_embeddings, embedding_dim)` in scope `p`, initialised N(0, 1).
    pub(crate) fn new(
        mut p: Params<'_>,
        num_embeddings: usize,
        embedding_dim: usize,
    ) -> Result<Embedding> {
        Ok(Embedding {
            weight: p.tensor("weight", &[num_embeddings, embedding_dim], Init::Embedding)?,
        })
    }

    /// Lists `weight`.
    pub(crate) fn named_parameters(&self, mut n: NamedParams<'_>) {
        n.tensor("weight", &self.weight);
    }

    /// The rows of token ids `idx` laid out as `shape` (e.g. (B, T)): (shape..., C) in `dtype`
    /// (the table is cast to it first: mixed precision).
    ///
    /// Errors: an id beyond the table, or ids that do not fill `shape`.
    pub fn forward(
        &self,
        tape: Option<&Tape>,
        idx: &[u32],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        let table = ops::cast(tape, &self.weight, dtype)?;
        ops::embedding(tape, &table, idx, shape)
    }
}

/// How a parameter starts (nanochat's `init_weights`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// A Linear weight (out, in): N(0, 1/sqrt(fan_in) * min(1, sqrt(fan_out / fan_in))).
    Linear,
    /// The embedding: N(0, 1).
    Embedding,
    /// Zeros: lm_head and both c_proj (so the initial loss is ln(vocab)), and every bias.
    Zeros,
}

impl Init {
    /// Initial values of a parameter of `shape`.
    pub fn values(self, shape: &[usize], rng: &mut StdRng) -> Vec<f32> {
        let n: usize = shape.iter().product();
        let std = match self {
            Init::Zeros => return vec![0.0; n],
            Init::Embedding => 1.0,
            Init::Linear => {
                let (fan_out, fan_in) = (shape[0] as f64, shape[1] as f64);
                1.0 / fan_in.sqrt() * (fan_out / fan_in).sqrt().min(1.0)
            }
        };
        let dist = Normal::new(0.0, std).expect("finite std");
        (0..n).map(|_| dist.sample(rng) as f32).collect()
    }
}
