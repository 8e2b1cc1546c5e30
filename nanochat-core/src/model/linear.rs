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
    /// The table is stored in bfloat16 (its f32 values are bf16): its gradient is PyTorch's
    /// for a bf16 table ([`ops::embedding_bf16_storage`]). Set for nanochat's bf16 `wte` and
    /// value embeddings when a nanochat run is continued ([`crate::model::GPT::keep_in_bf16`]).
    pub bf16_storage: bool,
}

impl Embedding {
    /// `nn.Embedding(num_embeddings, embedding_dim)` in scope `p`, initialised as `init` (v1:
    /// N(0, 1); HEAD: wte N(0, 0.8^2), the value embeddings U(-s, s)).
    pub(crate) fn new(
        mut p: Params<'_>,
        num_embeddings: usize,
        embedding_dim: usize,
        init: Init,
    ) -> Result<Embedding> {
        Ok(Embedding {
            weight: p.tensor("weight", &[num_embeddings, embedding_dim], init)?,
            bf16_storage: false,
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
        if self.bf16_storage && self.weight.dtype() == DType::F32 {
            let rows = ops::embedding_bf16_storage(tape, &self.weight, idx, shape)?;
            return ops::cast(tape, &rows, dtype);
        }
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
    /// N(0, std^2) (HEAD: wte 0.8, lm_head 0.001).
    Normal {
        /// The standard deviation.
        std: f64,
    },
    /// U(lo, hi) (HEAD: c_q/c_k/c_v and the value embeddings U(-s, s) with s = sqrt(3/C),
    /// c_fc U(-0.4 s, 0.4 s), the gates U(0, 0.02)).
    Uniform {
        /// The lower bound.
        lo: f64,
        /// The upper bound.
        hi: f64,
    },
    /// Every element `value` (HEAD: smear_lambda 0, backout_lambda 0.2).
    Constant {
        /// The value.
        value: f32,
    },
    /// A vector from `first` to `last` in equal steps: element i of n is
    /// `first + (last - first) i / max(n - 1, 1)` (HEAD: resid_lambdas 1.15 -> 1.05,
    /// x0_lambdas 0.20 -> 0.05).
    Ramp {
        /// Element 0.
        first: f64,
        /// Element n - 1.
        last: f64,
    },
}

impl Init {
    /// U(-bound, bound).
    pub fn uniform(bound: f64) -> Init {
        Init::Uniform {
            lo: -bound,
            hi: bound,
        }
    }

    /// Initial values of a parameter of `shape`.
    pub fn values(self, shape: &[usize], rng: &mut StdRng) -> Vec<f32> {
        let n: usize = shape.iter().product();
        let std = match self {
            Init::Zeros => return vec![0.0; n],
            Init::Constant { value } => return vec![value; n],
            Init::Ramp { first, last } => {
                let steps = (n.max(2) - 1) as f64;
                return (0..n)
                    .map(|i| (first + (last - first) * i as f64 / steps) as f32)
                    .collect();
            }
            Init::Uniform { lo, hi } => {
                let dist = rand_distr::Uniform::new_inclusive(lo, hi).expect("lo <= hi, finite");
                return (0..n).map(|_| dist.sample(rng) as f32).collect();
            }
            Init::Normal { std } => std,
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
