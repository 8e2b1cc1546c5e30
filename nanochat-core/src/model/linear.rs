//! nanochat's Linear: `y = x @ W^T (+ b)` with W (out, in), and how parameters start.

use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal};

use crate::{ops, Result, Tape, Tensor};

#[derive(Clone, Debug)]
pub struct Linear {
    /// (out_features, in_features).
    pub weight: Tensor,
    /// (out_features), when the config asks for biases.
    pub bias: Option<Tensor>,
}

impl Linear {
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
