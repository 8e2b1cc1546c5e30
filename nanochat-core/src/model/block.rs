//! nanochat's `Block`: `x + attn(norm(x))`, then `x + mlp(norm(x))`; and what every block of
//! one forward shares ([`BlockContext`]).

use super::attention::CausalSelfAttention;
use super::gpt::norm;
use super::mlp::MLP;
use super::params::{NamedParams, Params};
use super::{GPTConfig, KvCache};
use crate::ops::{self, RotaryTables};
use crate::{Result, Tape, Tensor};

/// One transformer block: `attn` and `mlp`. A per-layer parameter (a scalar, a gate) is a field
/// here, built and listed under its field name.
#[derive(Clone, Debug)]
pub struct Block {
    /// The attention branch.
    pub attn: CausalSelfAttention,
    /// The MLP branch.
    pub mlp: MLP,
    layer_idx: usize,
}

/// What a block's forward needs besides `x`, the same for every block of one forward:
/// nanochat's `cos_sin` (the rotary tables, from position `t0`) and `kv_cache`, plus the tape,
/// dropout and HEAD's per-layer value embedding.
pub(crate) struct BlockContext<'a> {
    /// Records the forward for backward (training); None for inference.
    pub tape: Option<&'a Tape>,
    pub rotary: &'a RotaryTables,
    /// The position of x's first row: the cache's length (0 without a cache).
    pub t0: usize,
    /// The KV cache being decoded into (inference).
    pub kv_cache: Option<&'a mut KvCache>,
    pub dropout: Dropout,
    /// HEAD: this block's value embedding `value_embeds.{i}[idx]` (B, T, Hkv D), on the layers
    /// that have one.
    pub ve: Option<Tensor>,
}

/// Dropout on the residual branches (nanochat-rs' `GPTConfig.dropout`; nanochat has none): in
/// training mode at `p > 0`, a mask per forward (`step`) and per site.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dropout {
    pub p: f32,
    /// The forward's training step; None in evaluation mode.
    pub step: Option<u32>,
}

impl Dropout {
    /// `x` with dropout at `site` (a distinct mask per step and site), or `x` itself.
    pub(crate) fn apply(&self, tape: Option<&Tape>, x: &Tensor, site: usize) -> Result<Tensor> {
        match self.step {
            Some(step) if self.p != 0.0 => {
                let seed = step.wrapping_mul(0x9E37_79B9) ^ (site as u32).wrapping_mul(0x85EB_CA6B);
                ops::dropout(tape, x, self.p, seed)
            }
            _ => Ok(x.clone()),
        }
    }
}

impl Block {
    /// Block `layer_idx`, its parameters from scope `p`.
    pub(crate) fn new(config: &GPTConfig, layer_idx: usize, mut p: Params<'_>) -> Result<Self> {
        Ok(Block {
            attn: CausalSelfAttention::new(config, layer_idx, p.scope("attn"))?,
            mlp: MLP::new(config, p.scope("mlp"))?,
            layer_idx,
        })
    }

    /// Lists `attn`, then `mlp`.
    pub(crate) fn named_parameters(&self, mut n: NamedParams<'_>) {
        self.attn.named_parameters(n.scope("attn"));
        self.mlp.named_parameters(n.scope("mlp"));
    }

    /// The residual stream `x` (B, T, C) after this block, (B, T, C).
    ///
    /// Errors: those of the attention (shapes, a full cache).
    pub(crate) fn forward(&self, x: &Tensor, ctx: &mut BlockContext<'_>) -> Result<Tensor> {
        let tape = ctx.tape;
        let site = 2 * self.layer_idx;
        let a = self.attn.forward(&norm(tape, x)?, ctx)?; // (B, T, C)
        let x = ops::add(tape, x, &ctx.dropout.apply(tape, &a, site)?)?; // (B, T, C)
        let m = self.mlp.forward(tape, &norm(tape, &x)?)?; // (B, T, C)
        ops::add(tape, &x, &ctx.dropout.apply(tape, &m, site + 1)?) // (B, T, C)
    }
}
