//! nanochat's `MLP`: `c_proj(relu(c_fc(x))^2)`, a 4x wide hidden layer.

use super::linear::{Init, Linear};
use super::params::{NamedParams, Params};
use super::{Architecture, GPTConfig};
use crate::{ops, Result, Tape, Tensor};

/// One block's MLP: parameters `c_fc` (4C, C) and `c_proj` (C, 4C) (plus biases when the config
/// has them).
#[derive(Clone, Debug)]
#[allow(clippy::upper_case_acronyms)] // nanochat's class name
pub struct MLP {
    /// (4C, C).
    pub c_fc: Linear,
    /// (C, 4C).
    pub c_proj: Linear,
}

impl MLP {
    /// The MLP of a block, its parameters from scope `p`.
    pub(crate) fn new(config: &GPTConfig, mut p: Params<'_>) -> Result<Self> {
        let (e, bias) = (config.n_embd, config.bias);
        let fc_init = match config.architecture {
            Architecture::V1 => Init::Linear,
            // HEAD: U(-0.4 s, 0.4 s), s = sqrt(3 / C).
            Architecture::Head => Init::uniform(0.4 * config.head_init_bound()),
        };
        Ok(MLP {
            c_fc: Linear::new(p.scope("c_fc"), e, 4 * e, bias, fc_init)?,
            // Zero at init, as nanochat's `init_weights`.
            c_proj: Linear::new(p.scope("c_proj"), 4 * e, e, bias, Init::Zeros)?,
        })
    }

    /// Lists `c_fc`, `c_proj`.
    pub(crate) fn named_parameters(&self, mut n: NamedParams<'_>) {
        self.c_fc.named_parameters(n.scope("c_fc"));
        self.c_proj.named_parameters(n.scope("c_proj"));
    }

    /// `x` (B, T, C) -> (B, T, C).
    pub(crate) fn forward(&self, tape: Option<&Tape>, x: &Tensor) -> Result<Tensor> {
        let x = self.c_fc.forward(tape, x)?; // (B, T, 4C)
        let x = ops::relu2(tape, &x)?; // relu(x)^2, (B, T, 4C)
        self.c_proj.forward(tape, &x) // (B, T, C)
    }
}
