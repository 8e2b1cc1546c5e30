//! nanochat's `CausalSelfAttention`: queries, keys and values from `c_q`, `c_k`, `c_v`; rotary
//! position embedding, then QK-norm; causal attention with grouped-query heads (over the KV
//! cache when decoding); the heads side by side through `c_proj`. HEAD adds a gated value
//! embedding into v, a sliding window and a factor 1.2 on q and k (`nanochat/gpt.py` at
//! 92d63d4, `CausalSelfAttention.forward`).

use super::block::BlockContext;
use super::gpt::norm;
use super::linear::{Init, Linear};
use super::params::{NamedParams, Params};
use super::{Architecture, GPTConfig, VE_GATE_CHANNELS};
use crate::{ops, Result, Tensor};

/// One block's attention: parameters `c_q` (C, C), `c_k`, `c_v` (Hkv D, C) and `c_proj`
/// (C, C) (plus biases when the config has them), and on HEAD's value-embedding layers the gate
/// `ve_gate` (Hkv, 12).
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
    /// HEAD's value-embedding gate (Hkv, 12), on the layers with a value embedding: how much
    /// of `value_embeds.{i}` each kv head mixes into v, `3 sigmoid(ve_gate(x[..., :12]))`.
    pub ve_gate: Option<Linear>,
    /// The block's index: which layer of the KV cache is this one's.
    layer_idx: usize,
    n_head: usize,
    n_kv_head: usize,
    head_dim: usize,
    /// The left window W: a query sees the W + 1 keys up to itself (HEAD's sliding window;
    /// `sequence_len`, i.e. the whole context, for v1).
    window: usize,
    /// The factor on q and k after QK-norm (HEAD 1.2, v1 1).
    qk_scale: f32,
}

impl CausalSelfAttention {
    /// The attention of layer `layer_idx`, its parameters from scope `p`.
    pub(crate) fn new(config: &GPTConfig, layer_idx: usize, mut p: Params<'_>) -> Result<Self> {
        let (e, d, bias) = (config.n_embd, config.head_dim(), config.bias);
        let qkv_init = match config.architecture {
            Architecture::V1 => Init::Linear,
            Architecture::Head => Init::uniform(config.head_init_bound()),
        };
        let (h, kv) = (config.n_head, config.n_kv_head);
        Ok(CausalSelfAttention {
            c_q: Linear::new(p.scope("c_q"), e, h * d, bias, qkv_init)?,
            c_k: Linear::new(p.scope("c_k"), e, kv * d, bias, qkv_init)?,
            c_v: Linear::new(p.scope("c_v"), e, kv * d, bias, qkv_init)?,
            // Zero at init, as nanochat's `init_weights`.
            c_proj: Linear::new(p.scope("c_proj"), e, e, bias, Init::Zeros)?,
            ve_gate: if config.has_value_embeds(layer_idx) {
                let init = Init::Uniform { lo: 0.0, hi: 0.02 };
                Some(Linear::new(
                    p.scope("ve_gate"),
                    VE_GATE_CHANNELS,
                    kv,
                    false,
                    init,
                )?)
            } else {
                None
            },
            layer_idx,
            n_head: h,
            n_kv_head: kv,
            head_dim: d,
            window: config.window_sizes()[layer_idx],
            qk_scale: config.qk_scale(),
        })
    }

    /// Lists `c_q`, `c_k`, `c_v`, `c_proj`.
    pub(crate) fn named_parameters(&self, mut n: NamedParams<'_>) {
        self.c_q.named_parameters(n.scope("c_q"));
        self.c_k.named_parameters(n.scope("c_k"));
        self.c_v.named_parameters(n.scope("c_v"));
        self.c_proj.named_parameters(n.scope("c_proj"));
        if let Some(g) = &self.ve_gate {
            g.named_parameters(n.scope("ve_gate"));
        }
    }

    /// The left window W of this layer's attention (W + 1 keys per query).
    pub fn window(&self) -> usize {
        self.window
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
        let mut v = ops::reshape(tape, &self.c_v.forward(tape, x)?, &[b, t, kv, d])?; // (B, T, Hkv, D)
        if let (Some(gate), Some(ve)) = (&self.ve_gate, ctx.ve.as_ref()) {
            // HEAD's value embedding, gated per kv head by the first 12 normed channels.
            let g = gate.forward(tape, &ops::slice(tape, x, 2, 0, VE_GATE_CHANNELS)?)?; // (B, T, Hkv)
            let g = ops::scale(tape, &ops::sigmoid(tape, &g)?, 3.0)?; // (B, T, Hkv), in (0, 3)
            let g = ops::reshape(tape, &g, &[b, t, kv, 1])?; // (B, T, Hkv, 1)
            let ve = ops::reshape(tape, ve, &[b, t, kv, d])?; // (B, T, Hkv, D)
            v = ops::add(tape, &v, &ops::mul(tape, &g, &ve)?)?; // (B, T, Hkv, D)
        }
        // Rotary embedding (relative positions), then QK-norm (HEAD: times 1.2 each).
        let mut q = norm(tape, &ops::rotary(tape, &q, ctx.rotary, ctx.t0)?)?; // (B, T, H, D)
        let mut k = norm(tape, &ops::rotary(tape, &k, ctx.rotary, ctx.t0)?)?; // (B, T, Hkv, D)
        if self.qk_scale != 1.0 {
            q = ops::scale(tape, &q, self.qk_scale)?;
            k = ops::scale(tape, &k, self.qk_scale)?;
        }
        let y = match ctx.kv_cache.as_deref_mut() {
            // No cache (training, scoring): causal attention within the T positions.
            None => ops::attention(tape, &q, &k, &v, self.window)?, // (B, T, H, D)
            // Decoding: append k, v; the queries attend to the prefix and causally to the chunk.
            Some(cache) => {
                let (k, v) = cache.insert_kv(self.layer_idx, &k, &v)?; // (B, capacity, Hkv, D)
                ops::attention_cached(&q, &k, &v, ctx.t0 + t, self.window)? // (B, T, H, D)
            }
        };
        // The heads side by side, projected back to the residual stream.
        let y = ops::reshape(tape, &y, &[b, t, h * d])?; // (B, T, C)
        self.c_proj.forward(tape, &y) // (B, T, C)
    }
}
