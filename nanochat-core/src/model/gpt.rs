//! The GPT of nanochat (`nanochat/gpt.py`), on the tape:
//!
//! ```text
//! x = rmsnorm(wte[idx])                                    (B, T, C)
//! per block: x = x + c_proj(attn(rmsnorm(x)))              attn: rotary, QK-norm, causal GQA
//!            x = x + c_proj(relu(c_fc(rmsnorm(x)))^2)
//! logits = 15 * tanh(lm_head(rmsnorm(x)) / 15)             (B, T, vocab), f32
//! ```
//! Departures from GPT-2, as nanochat: no positional embedding (rotary instead), RMSNorm
//! without weights, QK-norm, relu^2 MLP, untied embedding and unembedding, no biases (unless
//! `bias`), logit softcap.

use std::sync::atomic::{AtomicU32, Ordering};

use rand::rngs::StdRng;
use rand::SeedableRng;

use nanochat_kernels::attention::{attention_decode, attention_forward, AttentionShape, KvLayout};
use nanochat_kernels::layout::write_rows;
use nanochat_kernels::with_float;

use super::linear::{Init, Linear};
use super::{GPTConfig, KvCache};
use crate::ops::{self, Reduction, RotaryTables};
use crate::{CoreError, DType, Device, Result, Tape, Tensor};

/// Which positions' logits a forward computes.
#[derive(Clone, Copy)]
enum Pick<'a> {
    All,
    /// Each row's last position.
    Last,
    /// Rows `b T + p` of the (B T, C) activations.
    At(&'a [usize]),
}

/// RMSNorm's epsilon: PyTorch's default for the compute dtype (f32).
pub const NORM_EPS: f32 = f32::EPSILON;
/// The logit softcap.
pub const SOFTCAP: f32 = 15.0;

/// One transformer block: attention (`attn.c_q`, `c_k`, `c_v`, `c_proj`) and MLP
/// (`mlp.c_fc`, `mlp.c_proj`).
#[derive(Clone, Debug)]
pub struct Block {
    pub c_q: Linear,
    pub c_k: Linear,
    pub c_v: Linear,
    pub c_proj: Linear,
    pub c_fc: Linear,
    pub mlp_c_proj: Linear,
}

pub struct GPT {
    config: GPTConfig,
    device: Device,
    /// Parameter (master weight) dtype.
    dtype: DType,
    /// Activation and matmul dtype: bf16 over f32 master weights for mixed precision (weights
    /// are cast on the way in, gradients flow back to them in f32).
    compute: DType,
    pub wte: Tensor,
    pub blocks: Vec<Block>,
    pub lm_head: Linear,
    rotary: RotaryTables,
    training: bool,
    /// Advances with every training forward, so each step draws fresh dropout masks.
    dropout_step: AtomicU32,
}

/// Every parameter: nanochat's state_dict name, shape and initialisation, in a fixed order.
pub fn parameter_specs(c: &GPTConfig) -> Vec<(String, Vec<usize>, Init)> {
    let (e, kv) = (c.n_embd, c.n_kv_head * c.head_dim());
    let mut out = vec![(
        "transformer.wte.weight".to_string(),
        vec![c.vocab_size, e],
        Init::Embedding,
    )];
    let linear = |out: &mut Vec<(String, Vec<usize>, Init)>,
                  name: String,
                  o: usize,
                  i: usize,
                  init: Init| {
        out.push((format!("{name}.weight"), vec![o, i], init));
        if c.bias {
            out.push((format!("{name}.bias"), vec![o], Init::Zeros));
        }
    };
    for l in 0..c.n_layer {
        let p = format!("transformer.h.{l}");
        linear(&mut out, format!("{p}.attn.c_q"), e, e, Init::Linear);
        linear(&mut out, format!("{p}.attn.c_k"), kv, e, Init::Linear);
        linear(&mut out, format!("{p}.attn.c_v"), kv, e, Init::Linear);
        linear(&mut out, format!("{p}.attn.c_proj"), e, e, Init::Zeros);
        linear(&mut out, format!("{p}.mlp.c_fc"), 4 * e, e, Init::Linear);
        linear(&mut out, format!("{p}.mlp.c_proj"), e, 4 * e, Init::Zeros);
    }
    linear(
        &mut out,
        "lm_head".to_string(),
        c.vocab_size,
        e,
        Init::Zeros,
    );
    out
}

impl GPT {
    /// A model initialised as nanochat does, from `seed`.
    pub fn new(config: GPTConfig, device: &Device, dtype: DType, seed: u64) -> Result<GPT> {
        let mut rng = StdRng::seed_from_u64(seed);
        GPT::build(config, device, dtype, |_, shape, init| {
            Tensor::from_f32(device, &init.values(shape, &mut rng), shape, dtype)
        })
    }

    /// Builds the model taking each parameter from `make(name, shape, init)`.
    pub fn build(
        config: GPTConfig,
        device: &Device,
        dtype: DType,
        mut make: impl FnMut(&str, &[usize], Init) -> Result<Tensor>,
    ) -> Result<GPT> {
        config.validate()?;
        let specs = parameter_specs(&config);
        let mut params = Vec::with_capacity(specs.len());
        for (name, shape, init) in &specs {
            let t = make(name, shape, *init)?;
            if t.shape() != shape.as_slice() {
                return Err(CoreError::Config(format!(
                    "parameter {name}: shape {:?}, expected {shape:?}",
                    t.shape()
                )));
            }
            params.push(t);
        }
        let mut it = params.into_iter();
        let wte = it.next().expect("wte is the first spec");
        let bias = config.bias;
        let mut take = move || -> Linear {
            let weight = it.next().expect("one tensor per spec");
            let bias = if bias {
                Some(it.next().expect("one tensor per spec"))
            } else {
                None
            };
            Linear { weight, bias }
        };
        // parameter_specs' order after wte: per layer c_q c_k c_v c_proj c_fc mlp.c_proj, then
        // lm_head.
        let blocks = (0..config.n_layer)
            .map(|_| Block {
                c_q: take(),
                c_k: take(),
                c_v: take(),
                c_proj: take(),
                c_fc: take(),
                mlp_c_proj: take(),
            })
            .collect();
        let lm_head = take();
        let rotary = RotaryTables::new(
            device,
            config.block_size,
            config.head_dim(),
            config.rope_base,
            dtype,
        )?;
        Ok(GPT {
            config,
            device: device.clone(),
            dtype,
            compute: dtype,
            wte,
            blocks,
            lm_head,
            rotary,
            training: false,
            dropout_step: AtomicU32::new(0),
        })
    }
}

impl std::fmt::Debug for GPT {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GPT({:?} on {}, {} weights, {} compute)",
            self.config, self.device, self.dtype, self.compute
        )
    }
}

impl GPT {
    pub fn config(&self) -> &GPTConfig {
        &self.config
    }

    /// The device holding the parameters (nanochat's `get_device`).
    pub fn get_device(&self) -> &Device {
        &self.device
    }

    /// The parameters' dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The dtype of activations and matmuls.
    pub fn compute_dtype(&self) -> DType {
        self.compute
    }

    /// Computes in `dtype` (bf16: mixed precision over the master weights).
    pub fn set_compute_dtype(&mut self, dtype: DType) -> Result<()> {
        if dtype != self.compute {
            let c = &self.config;
            self.rotary =
                RotaryTables::new(&self.device, c.block_size, c.head_dim(), c.rope_base, dtype)?;
            self.compute = dtype;
        }
        Ok(())
    }

    /// Training mode: dropout is applied.
    pub fn train(&mut self) {
        self.training = true;
    }

    /// Evaluation mode (the default): no dropout.
    pub fn eval(&mut self) {
        self.training = false;
    }

    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The training RNG state (the counter the dropout masks derive from), for checkpoints.
    pub fn rng_state(&self) -> u64 {
        self.dropout_step.load(Ordering::Relaxed) as u64
    }

    pub fn set_rng_state(&self, state: u64) {
        self.dropout_step.store(state as u32, Ordering::Relaxed);
    }

    /// Every parameter under its state_dict name, in [`parameter_specs`] order.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut tensors = vec![self.wte.clone()];
        let mut push = |l: &Linear| {
            tensors.push(l.weight.clone());
            tensors.extend(l.bias.clone());
        };
        for b in &self.blocks {
            for l in [&b.c_q, &b.c_k, &b.c_v, &b.c_proj, &b.c_fc, &b.mlp_c_proj] {
                push(l);
            }
        }
        push(&self.lm_head);
        parameter_specs(&self.config)
            .into_iter()
            .map(|(n, _, _)| n)
            .zip(tensors)
            .collect()
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        parameter_specs(&self.config)
            .iter()
            .map(|(_, s, _)| s.iter().product::<usize>())
            .sum()
    }

    /// FLOPs per token of a training step, as nanochat counts them for MFU:
    /// `6 * (params - embedding) + 12 * n_layer * n_head * head_dim * block_size`.
    pub fn estimate_flops(&self) -> f64 {
        let c = &self.config;
        let non_embedding = (self.num_params() - c.vocab_size * c.n_embd) as f64;
        6.0 * non_embedding + 12.0 * (c.n_layer * c.n_head * c.head_dim() * c.block_size) as f64
    }

    /// Logits (B, T, vocab) in f32 for token ids `idx` (B * T, row-major). With a tape, every
    /// op is recorded for [`Tape::backward`].
    pub fn forward(
        &self,
        tape: Option<&Tape>,
        idx: &[u32],
        batch: usize,
        seq: usize,
    ) -> Result<Tensor> {
        self.run(tape, idx, batch, seq, None, true, Pick::All)
    }

    /// Inference with a KV cache: runs positions `cache.len()..cache.len() + seq` of each
    /// sequence, appending their keys and values; returns their logits (B, seq, vocab).
    pub fn forward_cached(
        &self,
        idx: &[u32],
        batch: usize,
        seq: usize,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        if cache.batch() != batch {
            return Err(CoreError::Config(format!(
                "KV cache holds {} sequences, got {batch}",
                cache.batch()
            )));
        }
        if cache.len() + seq > cache.capacity() {
            return Err(CoreError::Config(format!(
                "KV cache full: {} positions + {seq} new exceed its capacity of {}",
                cache.len(),
                cache.capacity()
            )));
        }
        let logits = self.run(None, idx, batch, seq, Some(cache), true, Pick::All)?;
        cache.advance(seq);
        Ok(logits)
    }

    /// [`GPT::forward_cached`] returning only each row's last position's logits, (B, 1, vocab):
    /// what a prefill needs, without the (B, T, vocab) tensor.
    pub fn forward_cached_last(
        &self,
        idx: &[u32],
        batch: usize,
        seq: usize,
        cache: &mut KvCache,
    ) -> Result<Tensor> {
        if cache.batch() != batch || cache.len() + seq > cache.capacity() {
            return self.forward_cached(idx, batch, seq, cache);
        }
        let logits = self.run(None, idx, batch, seq, Some(cache), true, Pick::Last)?;
        cache.advance(seq);
        Ok(logits)
    }

    /// The (softcapped, f32) logits at one position of each row, (B, 1, vocab): row `b`'s
    /// position `positions[b]`. What scoring a batch of right-padded prompts needs (the model is
    /// causal, so padding after a position does not change its logits) without the
    /// (B, T, vocab) tensor. Inference only (no tape).
    pub fn forward_at(
        &self,
        idx: &[u32],
        batch: usize,
        seq: usize,
        positions: &[usize],
    ) -> Result<Tensor> {
        if positions.len() != batch || positions.iter().any(|&p| p >= seq) {
            return Err(CoreError::shape(
                "GPT::forward_at",
                &[&[positions.len()], &[batch, seq]],
                "need one position below T per row",
            ));
        }
        let flat: Vec<usize> = positions
            .iter()
            .enumerate()
            .map(|(b, &p)| b * seq + p)
            .collect();
        self.forward_positions(idx, batch, seq, &flat)
    }

    /// The (softcapped, f32) logits at any positions, (N, 1, vocab): entry `i` is position
    /// `flat[i] % T` of row `flat[i] / T`. Inference only (no tape).
    pub fn forward_positions(
        &self,
        idx: &[u32],
        batch: usize,
        seq: usize,
        flat: &[usize],
    ) -> Result<Tensor> {
        if flat.is_empty() || flat.iter().any(|&p| p >= batch * seq) {
            return Err(CoreError::shape(
                "GPT::forward_positions",
                &[&[flat.len()], &[batch, seq]],
                "need at least one position, each below B * T",
            ));
        }
        self.run(None, idx, batch, seq, None, true, Pick::At(flat))
    }

    /// Cross-entropy of the logits against `targets` (B * T; -1 = ignored): the mean
    /// (training) or one loss per position (evaluation).
    pub fn loss(
        &self,
        tape: Option<&Tape>,
        idx: &[u32],
        targets: &[i32],
        batch: usize,
        seq: usize,
        reduction: Reduction,
    ) -> Result<Tensor> {
        // The softcap is fused into the loss: the (B, T, vocab) softcapped logits, the largest
        // tensor of training, are never stored.
        let raw = self.run(tape, idx, batch, seq, None, false, Pick::All)?;
        let loss = ops::softcap_cross_entropy(tape, &raw, targets, SOFTCAP, reduction)?;
        match reduction {
            Reduction::Mean => Ok(loss),
            Reduction::None => ops::reshape(tape, &loss, &[batch, seq]),
        }
    }

    /// The logits (f32), softcapped when `capped` (the loss applies the cap itself, fused).
    /// The forward; `pick` other than `All` computes the logits of one position per row only
    /// (an inference prefill, or scoring: (B, 1, vocab) instead of (B, T, vocab)), without a tape.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        tape: Option<&Tape>,
        idx: &[u32],
        batch: usize,
        seq: usize,
        mut cache: Option<&mut KvCache>,
        capped: bool,
        pick: Pick<'_>,
    ) -> Result<Tensor> {
        let c = &self.config;
        if !matches!(pick, Pick::All) && tape.is_some() {
            return Err(CoreError::Config(
                "last-position logits are for inference (no tape)".into(),
            ));
        }
        if idx.len() != batch * seq || seq == 0 {
            return Err(CoreError::shape(
                "GPT::forward",
                &[&[idx.len()], &[batch, seq]],
                "need B * T > 0 token ids",
            ));
        }
        let t0 = cache.as_ref().map_or(0, |c| c.len());
        if t0 + seq > c.block_size {
            return Err(CoreError::Config(format!(
                "sequence of {} positions exceeds block_size {}",
                t0 + seq,
                c.block_size
            )));
        }
        if self.training {
            self.dropout_step.fetch_add(1, Ordering::Relaxed);
        }
        let wte = ops::cast(tape, &self.wte, self.compute)?;
        let mut x = ops::rmsnorm(
            tape,
            &ops::embedding(tape, &wte, idx, &[batch, seq])?,
            NORM_EPS,
        )?;
        for (layer, block) in self.blocks.iter().enumerate() {
            let h = ops::rmsnorm(tape, &x, NORM_EPS)?;
            let a = self.attention(tape, block, &h, layer, cache.as_deref_mut(), t0)?;
            x = ops::add(
                tape,
                &x,
                &self.dropout(tape, &block.c_proj.forward(tape, &a)?, 2 * layer)?,
            )?;
            let h = ops::rmsnorm(tape, &x, NORM_EPS)?;
            let m = ops::relu2(tape, &block.c_fc.forward(tape, &h)?)?;
            x = ops::add(
                tape,
                &x,
                &self.dropout(tape, &block.mlp_c_proj.forward(tape, &m)?, 2 * layer + 1)?,
            )?;
        }
        match pick {
            Pick::Last if seq > 1 => {
                // x is (B, T, C): columns (T - 1) C .. T C of its (B, T C) view.
                let n = c.n_embd;
                let dev = x.device().clone();
                let h = with_float!(x.dtype(), F => nanochat_kernels::layout::slice_cols::<F>(dev.client(), x.handle(), batch, seq * n, (seq - 1) * n, n))?;
                x = Tensor::from_handle(&dev, h, &[batch, 1, n], x.dtype())?;
            }
            Pick::At(flat) => {
                // Gather rows of the (B T, C) view: an embedding lookup in x.
                let rows: Vec<u32> = flat.iter().map(|&r| r as u32).collect();
                let table = ops::reshape(None, &x, &[batch * seq, c.n_embd])?;
                x = ops::embedding(None, &table, &rows, &[rows.len(), 1])?;
            }
            _ => {}
        }
        let logits = self
            .lm_head
            .forward(tape, &ops::rmsnorm(tape, &x, NORM_EPS)?)?;
        // nanochat takes the logits to f32 before the softcap.
        let logits = ops::cast(tape, &logits, DType::F32)?;
        if capped {
            ops::softcap(tape, &logits, SOFTCAP)
        } else {
            Ok(logits)
        }
    }

    /// Dropout in training mode; a distinct mask per step and site.
    fn dropout(&self, tape: Option<&Tape>, x: &Tensor, site: usize) -> Result<Tensor> {
        if !self.training || self.config.dropout == 0.0 {
            return Ok(x.clone());
        }
        let seed = self
            .dropout_step
            .load(Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9)
            ^ (site as u32).wrapping_mul(0x85EB_CA6B);
        ops::dropout(tape, x, self.config.dropout, seed)
    }

    /// Causal self-attention of one block on the normed input `x` (B, T, C); returns the heads'
    /// outputs (B, T, C) before `c_proj`.
    fn attention(
        &self,
        tape: Option<&Tape>,
        block: &Block,
        x: &Tensor,
        layer: usize,
        cache: Option<&mut KvCache>,
        t0: usize,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (b, t, _) = x.dims3()?;
        let (h, kv, d) = (c.n_head, c.n_kv_head, c.head_dim());
        let q = ops::reshape(tape, &block.c_q.forward(tape, x)?, &[b, t, h, d])?;
        let k = ops::reshape(tape, &block.c_k.forward(tape, x)?, &[b, t, kv, d])?;
        let v = ops::reshape(tape, &block.c_v.forward(tape, x)?, &[b, t, kv, d])?;
        // Rotary, then QK-norm.
        let q = ops::rmsnorm(tape, &ops::rotary(tape, &q, &self.rotary, t0)?, NORM_EPS)?;
        let k = ops::rmsnorm(tape, &ops::rotary(tape, &k, &self.rotary, t0)?, NORM_EPS)?;
        let y = match cache {
            None => ops::attention(tape, &q, &k, &v)?,
            Some(cache) => {
                if tape.is_some() {
                    return Err(CoreError::Autograd(
                        "the KV cache is for inference: no tape".into(),
                    ));
                }
                self.cached_attention(&q, &k, &v, layer, cache, t0)?
            }
        };
        ops::reshape(tape, &y, &[b, t, h * d])
    }

    /// Appends k, v to the layer's cache and attends the new queries to every cached position.
    fn cached_attention(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        layer: usize,
        cache: &mut KvCache,
        t0: usize,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (b, t, h, d) = q.dims4()?;
        let client = self.device.client();
        let (ck, cv) = (&cache.k[layer], &cache.v[layer]);
        let row = c.n_kv_head * d;
        with_float!(self.compute, F => {
            write_rows::<F>(client, ck.handle(), cache.capacity(), k.handle(), b, t, row, t0)?;
            write_rows::<F>(client, cv.handle(), cache.capacity(), v.handle(), b, t, row, t0)?;
        });
        let s = AttentionShape {
            batch: b,
            tq: t,
            tk: t0 + t,
            heads: h,
            kv_heads: c.n_kv_head,
            head_dim: d,
        };
        let layout = KvLayout::cache(&s, cache.capacity());
        let out = with_float!(self.compute, F => if t == 1 {
            attention_decode::<F>(client, q.handle(), ck.handle(), cv.handle(), &s, &layout)
        } else {
            attention_forward::<F>(client, q.handle(), ck.handle(), cv.handle(), &s, &layout).map(|(o, _)| o)
        })?;
        Tensor::from_handle(&self.device, out, q.shape(), self.compute)
    }
}
