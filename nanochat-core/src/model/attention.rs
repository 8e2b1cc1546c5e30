//! nanochat's `CausalSelfAttention`: queries, keys and values from `c_q`, `c_k`, `c_v`; rotary
//! position embedding, then QK-norm; causal attention with grouped-query heads (over the KV
//! cache when decoding); the heads side by side through `c_proj`.

use super::block::BlockContext;
use super::gpt::norm;
use super::linear::{Init, Linear};
use super::params::{NamedParams, Params};
use super::GPTConfig;
use crate::{ops, Result, Tensor};

/// One block's attention: parameters `c_q` (C, C), `c_k`, `c_v` (Hkv D, C) and `c_proj`
/// (C, C) (plus biases when the config has them).
#[derive(Clone, Debug)]
pub struct CausalSelfAttention {
    /// Queries: (H D, C).
    pub c_q: Linear,
    /// Keys: (Hkv D, C).
    pub c_k: Linear,
    /// Values: (Hkv D, C).
    pub c_v: Linear,
    /// The output projection: (C, H D).
    pub c_proj: Linear,
    /// The block's index: which layer of the KV cache is this one's.
    layer_idx: usize,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
}

impl CausalSelfAttention {
    /// The attention of layer `layer_idx`, its parameters from scope `p`.
    pub(crate) fn new(config: &GPTConfig, layer_idx: usize, mut p: Params<'_>) -> Result<Self> {
        let (e, d, bias) = (config.n_embd, config.head_dim(), config.bias);
        Ok(CausalSelfAttention {
            c_q: Linear::new(p.scope("c_q"), e, config.n_head * d, bias, Init::Linear)?,
            c_k: Linear::new(p.scope("c_k"), e, config.n_kv_head * d, bias, Init::Linear)?,
            c_v: Linear::new(p.scope("c_v"), e, config.n_kv_head * d, bias, Init::Linear)?,
            // Zero at init, as nanochat's `init_weights`.
            c_proj: Linear::new(p.scope("c_proj"), e, e, bias, Init::Zeros)?,
            layer_idx,
            n_head: config.n_head,
            n_kv_head: config.n_kv_head,
            head_dim: d,
        })
    }

    /// Lists `c_q`, `c_k`, `c_v`, `c_proj`.
    pub(crate) fn named_parameters(&self, mut n: NamedParams<'_>) {
        self.c_q.named_parameters(n.scope("c_q"));
        self.c_k.named_parameters(n.scope("c_k"));
        self.c_v.named_parameters(n.scope("c_v"));
        self.c_proj.named_parameters(n.scope("c_proj"));
    }

    /// The attention of the normed input `x` (B, T, C), at positions `ctx.t0..ctx.t0 + T`;
    /// returns (B, T, C). With `ctx.kv_cache`, the keys and values are appended to this
    /// layer's cache and the queries attend to every cached position.
    ///
    /// Errors: shapes that disagree, a full cache.
    pub(crate) fn forward(&self, x: &Tensor, ctx: &mut BlockContext<'_>) -> Result<Tensor> {
        let tape = ctx.tape;
        let (b, t, _) = x.dims3()?;
        let (h, kv, d) = (self.n_head, self.n_kv_head, self.head_dim);
        // Queries, keys and values.
        let q = ops::reshape(tape, &self.c_q.forward(tape, x)?, &[b, t, h, d])?; // (B, T, H, D)
        let k = ops::reshape(tape, &self.c_k.forward(tape, x)?, &[b, t, kv, d])?; // (B, T, Hkv, D)
        let v = ops::reshape(tape, &self.c_v.forward(tape, x)?, &[b, t, kv, d])?; // (B, T, Hkv, D)
                                                                                  // Rotary embedding (relative positions), then QK-norm.
        let q = norm(tape, &ops::rotary(tape, &q, ctx.rotary, ctx.t0)?)?; // (B, T, H, D)
        let k = norm(tape, &ops::rotary(tape, &k, ctx.rotary, ctx.t0)?)?; // (B, T, Hkv, D)
        let y = match ctx.kv_cache.as_deref_mut() {
            // No cache (training, scoring): causal attention within the T positions.
            None => ops::attention(tape, &q, &k, &v)?, // (B, T, H, D)
            // Decoding: append k, v; the queries attend to the prefix and causally to the chunk.
            Some(cache) => {
                let (k, v) = cache.insert_kv(self.layer_idx, &k, &v)?; // (B, capacity, Hkv, D)
                ops::attention_cached(&q, &k, &v, ctx.t0 + t)? // (B, T, H, D)
            }
        };
        // The heads side by side, projected back to the residual stream.
        let y = ops::reshape(tape, &y, &[b, t, h * d])?; // (B, T, C)
        self.c_proj.forward(tape, &y) // (B, T, C)
    }
}
