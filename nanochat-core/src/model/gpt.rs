//! The GPT of nanochat (`nanochat/gpt.py`), on the tape:
//!
//! ```text
//! x = norm(wte(idx))                                       (B, T, C)
//! per block: x = x + attn(norm(x))                         rotary, QK-norm, causal GQA
//!            x = x + mlp(norm(x))                          c_proj(relu(c_fc(x))^2)
//! logits = 15 * tanh(lm_head(norm(x)) / 15)                (B, T, vocab), f32
//! ```
//! Departures from GPT-2, as nanochat: no positional embedding (rotary instead), RMSNorm
//! without weights, QK-norm, relu^2 MLP, untied embedding and unembedding, no biases (unless
//! `bias`), logit softcap.
//!
//! nanochat HEAD ([`Architecture::Head`], `nanochat/gpt.py` at 92d63d4) adds:
//!
//! ```text
//! e  = norm(wte(idx))                                      (B, T, C)
//! x_t = e_t + smear_lambda * sigmoid(e_t[:24] . smear_gate) * e_{t-1}      smear (t >= 1)
//! x0 = x
//! per block i: x = resid_lambdas[i] * x + x0_lambdas[i] * x0
//!              x = block(x)   (sliding window; value embedding gated into v; q, k x1.2)
//!              x_back = x after block n_layer / 2
//! x = x - backout_lambda * x_back
//! logits = 15 * tanh(lm_head(norm(x))[..., :vocab] / 15)  (lm_head has the padded vocab rows)
//! ```
//!
//! The modules are nanochat's: [`GPT`] { `transformer`: [`Transformer`] { `wte`, `h`: [`Block`]
//! { `attn`: [`CausalSelfAttention`], `mlp`: [`MLP`] } }, `lm_head` }, so a field path is a
//! state_dict name (`model.transformer.h[0].attn.c_q.weight` is
//! `transformer.h.0.attn.c_q.weight`). A new parameter goes in the struct it belongs to (a
//! per-layer one in `Block`, a model-wide one in `GPT`), built and listed under its field name.
//!
//! [`CausalSelfAttention`]: super::CausalSelfAttention
//! [`MLP`]: super::MLP

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};

use rand::rngs::StdRng;
use rand::SeedableRng;

use super::block::{Block, BlockContext, Dropout};
use super::linear::{Embedding, Init, Linear};
use super::options::{ForwardOptions, LogitPositions};
use super::params::{MakeParam, NamedParams, Params};
use super::{Architecture, GPTConfig, KvCache, SMEAR_CHANNELS};
use crate::ops::{self, Reduction, RotaryTables};
use crate::{CoreError, DType, Device, Result, Tape, Tensor};

/// RMSNorm's epsilon: PyTorch's default for the compute dtype (f32).
pub const NORM_EPS: f32 = f32::EPSILON;
/// The logit softcap.
pub const SOFTCAP: f32 = 15.0;

/// nanochat's `norm`: RMSNorm over the last axis, without weights.
pub(crate) fn norm(tape: Option<&Tape>, x: &Tensor) -> Result<Tensor> {
    ops::rmsnorm(tape, x, NORM_EPS)
}

/// nanochat's `transformer` ModuleDict: the token embedding `wte` and the blocks `h`.
#[derive(Clone, Debug)]
pub struct Transformer {
    /// (vocab, C).
    pub wte: Embedding,
    /// `n_layer` blocks.
    pub h: Vec<Block>,
}

impl Transformer {
    fn new(config: &GPTConfig, mut p: Params<'_>) -> Result<Self> {
        let init = match config.architecture {
            Architecture::V1 => Init::Embedding,
            Architecture::Head => Init::Normal { std: 0.8 },
        };
        let wte = Embedding::new(
            p.scope("wte"),
            config.padded_vocab_size(),
            config.n_embd,
            init,
        )?;
        let mut hp = p.scope("h");
        let h = (0..config.n_layer)
            .map(|i| Block::new(config, i, hp.scope(&i.to_string())))
            .collect::<Result<_>>()?;
        Ok(Transformer { wte, h })
    }

    fn named_parameters(&self, mut n: NamedParams<'_>) {
        self.wte.named_parameters(n.scope("wte"));
        let mut hn = n.scope("h");
        for (i, block) in self.h.iter().enumerate() {
            block.named_parameters(hn.scope(&i.to_string()));
        }
    }
}

/// nanochat's GPT: `transformer` (embedding and blocks) and `lm_head` (vocab, C), with the
/// rotary tables, the compute dtype and the training mode.
pub struct GPT {
    config: GPTConfig,
    device: Device,
    /// Parameter (master weight) dtype.
    dtype: DType,
    /// Activation and matmul dtype: bf16 over f32 master weights for mixed precision (weights
    /// are cast on the way in, gradients flow back to them in f32).
    compute: DType,
    /// The embedding and the blocks.
    pub transformer: Transformer,
    /// The unembedding (padded vocab, C), untied from `wte`.
    pub lm_head: Linear,
    /// HEAD: the factor on the residual stream before each block, (n_layer,).
    pub resid_lambdas: Option<Tensor>,
    /// HEAD: the factor on `x0` (the smeared embedding) added before each block, (n_layer,).
    pub x0_lambdas: Option<Tensor>,
    /// HEAD: the smear's strength, (1,).
    pub smear_lambda: Option<Tensor>,
    /// HEAD: how much of the residual after block `n_layer / 2` is subtracted, (1,).
    pub backout_lambda: Option<Tensor>,
    /// HEAD: the smear gate (1, 24), read from the first 24 channels of the normed embedding.
    pub smear_gate: Option<Linear>,
    /// HEAD: the value embeddings (padded vocab, Hkv D) of the layers that have one, by layer
    /// index (`value_embeds.{i}`).
    pub value_embeds: BTreeMap<usize, Embedding>,
    rotary: RotaryTables,
    /// The rotary tables' values rounded to bf16 whatever the compute dtype
    /// ([`GPT::use_bf16_rotary_tables`]).
    rotary_bf16: bool,
    training: bool,
    /// Advances with every training forward, so each step draws fresh dropout masks.
    dropout_step: AtomicU32,
}

impl GPT {
    /// A model initialised as nanochat does, from `seed`.
    ///
    /// Errors: an invalid config.
    pub fn new(config: GPTConfig, device: &Device, dtype: DType, seed: u64) -> Result<GPT> {
        let mut rng = StdRng::seed_from_u64(seed);
        GPT::build(config, device, dtype, |_, shape, init| {
            Tensor::from_f32(device, &init.values(shape, &mut rng), shape, dtype)
        })
    }

    /// Builds the model taking each parameter from `make(state_dict name, shape, init)`, in
    /// [`GPT::named_parameters`] order.
    ///
    /// Errors: an invalid config, those of `make`, a tensor of another shape, and
    /// [`CoreError::ModelTooLarge`], before anything is allocated, when the weights
    /// ([`GPTConfig::num_params`] in `dtype`) would take more than 90% of the memory the device
    /// has free: a model too large for the machine (a huge `--depth` or vocabulary, a
    /// checkpoint's meta claiming one) is refused instead of aborting the process on
    /// allocation.
    pub fn build(
        config: GPTConfig,
        device: &Device,
        dtype: DType,
        mut make: impl FnMut(&str, &[usize], Init) -> Result<Tensor>,
    ) -> Result<GPT> {
        config.validate()?;
        check_weights_fit(&config, device, dtype.size() as u64, "for its weights")?;
        let make: &mut MakeParam<'_> = &mut make;
        let mut p = Params::new(make);
        let head = config.architecture == Architecture::Head;
        let l = config.n_layer;
        // HEAD's own parameters come first in its state_dict.
        let mut scalar = |name: &str, shape: usize, init: Init| -> Result<Option<Tensor>> {
            head.then(|| p.tensor(name, &[shape], init)).transpose()
        };
        let resid_lambdas = scalar(
            "resid_lambdas",
            l,
            Init::Ramp {
                first: 1.15,
                last: 1.05,
            },
        )?;
        let x0_lambdas = scalar(
            "x0_lambdas",
            l,
            Init::Ramp {
                first: 0.20,
                last: 0.05,
            },
        )?;
        let smear_lambda = scalar("smear_lambda", 1, Init::Constant { value: 0.0 })?;
        let backout_lambda = scalar("backout_lambda", 1, Init::Constant { value: 0.2 })?;
        let transformer = Transformer::new(&config, p.scope("transformer"))?;
        let (e, v) = (config.n_embd, config.padded_vocab_size());
        // Zero at init in v1's `init_weights`, N(0, 0.001^2) in HEAD's.
        let lm_init = if head {
            Init::Normal { std: 0.001 }
        } else {
            Init::Zeros
        };
        let lm_head = Linear::new(p.scope("lm_head"), e, v, config.bias, lm_init)?;
        let smear_gate = head
            .then(|| {
                let init = Init::Uniform { lo: 0.0, hi: 0.02 };
                Linear::new(p.scope("smear_gate"), SMEAR_CHANNELS, 1, false, init)
            })
            .transpose()?;
        let mut value_embeds = BTreeMap::new();
        let kvd = config.n_kv_head * config.head_dim();
        let mut vp = p.scope("value_embeds");
        for i in (0..l).filter(|&i| config.has_value_embeds(i)) {
            let init = Init::uniform(config.head_init_bound());
            value_embeds.insert(i, Embedding::new(vp.scope(&i.to_string()), v, kvd, init)?);
        }
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
            transformer,
            lm_head,
            resid_lambdas,
            x0_lambdas,
            smear_lambda,
            backout_lambda,
            smear_gate,
            value_embeds,
            rotary,
            rotary_bf16: false,
            training: false,
            dropout_step: AtomicU32::new(0),
        })
    }
}

/// Refuses a model of `config` whose weights, at `bytes_per_param` bytes per parameter
/// ([`GPTConfig::num_params`]), would take more than 90% of the memory `device` has free
/// ([`exceeds_free`](crate::train::exceeds_free)). `stage` says what for (`for its weights`).
/// Errors: [`CoreError::ModelTooLarge`].
pub fn check_weights_fit(
    config: &GPTConfig,
    device: &Device,
    bytes_per_param: u64,
    stage: &'static str,
) -> Result<()> {
    let need = config.num_params().saturating_mul(bytes_per_param);
    match crate::train::exceeds_free(need, device) {
        Some(free) => Err(model_too_large(
            config,
            stage,
            device.to_string(),
            need,
            free,
        )),
        None => Ok(()),
    }
}

/// [`CoreError::ModelTooLarge`] for a model of `config` that needs `need` bytes `stage` (`for
/// its weights`, `to load its checkpoint`) where `place` (a device, or host memory) has `free`.
pub(crate) fn model_too_large(
    config: &GPTConfig,
    stage: &'static str,
    place: String,
    need: u64,
    free: u64,
) -> CoreError {
    CoreError::ModelTooLarge {
        stage,
        device: place,
        need,
        free,
        num_params: config.num_params(),
        n_layer: config.n_layer,
        n_embd: config.n_embd,
        vocab_size: config.vocab_size,
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
    /// The configuration the model was built with.
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
            if self.rotary_bf16 {
                self.use_bf16_rotary_tables()?;
            }
        }
        Ok(())
    }

    /// Rounds the rotary cos/sin tables to bf16 values (kept in the compute dtype from now on),
    /// as nanochat v1 builds them on every device (`cos.bfloat16()` in
    /// `_precompute_rotary_embeddings`, `nanochat/gpt.py` at 16788ee): on a CPU its float32
    /// forward multiplies by bf16 tables. A continued nanochat v1 run uses this to take
    /// nanochat's exact losses (f32 tables land 4.6e-5 lower on the first one); loading and
    /// serving keep f32 tables, nearer the float64 reference.
    pub fn use_bf16_rotary_tables(&mut self) -> Result<()> {
        self.rotary_bf16 = true;
        ops::round_bf16_in_place(&self.rotary.cos)?;
        ops::round_bf16_in_place(&self.rotary.sin)
    }

    /// Training mode: dropout is applied.
    pub fn train(&mut self) {
        self.training = true;
    }

    /// Evaluation mode (the default): no dropout.
    pub fn eval(&mut self) {
        self.training = false;
    }

    /// Whether the model is in training mode.
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// The training RNG state (the counter the dropout masks derive from), for checkpoints.
    pub fn rng_state(&self) -> u64 {
        self.dropout_step.load(Ordering::Relaxed) as u64
    }

    /// Restores the training RNG state of [`GPT::rng_state`].
    pub fn set_rng_state(&self, state: u64) {
        self.dropout_step.store(state as u32, Ordering::Relaxed);
    }

    /// Every parameter under its state_dict name, from the field paths, in nanochat's
    /// state_dict order: (HEAD: `resid_lambdas`, `x0_lambdas`, `smear_lambda`,
    /// `backout_lambda`), `transformer.wte`, then per block `attn.c_q`, `c_k`, `c_v`, `c_proj`
    /// (HEAD: `ve_gate` on value-embedding layers), `mlp.c_fc`, `c_proj`, then `lm_head`
    /// (`weight`, then `bias` when the config has biases), (HEAD: `smear_gate`,
    /// `value_embeds.{i}`). Nanochat's `named_parameters`.
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        let mut n = NamedParams::new(&mut out);
        for (name, t) in [
            ("resid_lambdas", &self.resid_lambdas),
            ("x0_lambdas", &self.x0_lambdas),
            ("smear_lambda", &self.smear_lambda),
            ("backout_lambda", &self.backout_lambda),
        ] {
            if let Some(t) = t {
                n.tensor(name, t);
            }
        }
        self.transformer.named_parameters(n.scope("transformer"));
        self.lm_head.named_parameters(n.scope("lm_head"));
        if let Some(g) = &self.smear_gate {
            g.named_parameters(n.scope("smear_gate"));
        }
        let mut vn = n.scope("value_embeds");
        for (i, e) in &self.value_embeds {
            e.named_parameters(vn.scope(&i.to_string()));
        }
        out
    }

    /// Marks embedding tables as stored in bfloat16, as nanochat keeps `transformer.wte.weight`
    /// and `value_embeds.{i}.weight` (their values must be bf16 already: the optimizer keeps
    /// them so, [`crate::optim::MuonAdamW::keep_in_bf16`]); their gradients are then
    /// PyTorch's for a bf16 table ([`crate::model::Embedding::bf16_storage`]). Errors:
    /// [`CoreError::InvalidArgument`] for a name that is not one of the model's embeddings.
    pub fn keep_in_bf16(&mut self, names: &[String]) -> Result<()> {
        for name in names {
            let table = if name == "transformer.wte.weight" {
                Some(&mut self.transformer.wte)
            } else {
                name.strip_prefix("value_embeds.")
                    .and_then(|r| r.strip_suffix(".weight"))
                    .and_then(|i| i.parse::<usize>().ok())
                    .and_then(|i| self.value_embeds.get_mut(&i))
            };
            match table {
                Some(e) => e.bf16_storage = true,
                None => {
                    return Err(CoreError::invalid(
                        "bf16 parameter",
                        name,
                        "an embedding table of the model (transformer.wte.weight, value_embeds.{i}.weight)",
                    ))
                }
            }
        }
        Ok(())
    }

    /// Every parameter, in [`GPT::named_parameters`]' order, without the names (nanochat's
    /// `parameters()`).
    pub fn parameters(&self) -> Vec<Tensor> {
        self.named_parameters()
            .into_iter()
            .map(|(_, p)| p)
            .collect()
    }

    /// Number of parameters.
    pub fn num_params(&self) -> usize {
        self.named_parameters().iter().map(|(_, t)| t.len()).sum()
    }

    /// FLOPs per token of a training step, as nanochat counts them for MFU (`estimate_flops`):
    /// `6 * (matmul weights) + sum over layers of 12 * n_head * head_dim * min(window, block_size)`,
    /// the matmul weights being every parameter but the embedding tables (`wte`, HEAD's value
    /// embeddings) and HEAD's scalars. For v1 that is `6 * (params - wte) + 12 * n_layer *
    /// n_head * head_dim * block_size`.
    pub fn estimate_flops(&self) -> f64 {
        let c = &self.config;
        let matmul: usize = self
            .named_parameters()
            .iter()
            .filter(|(n, t)| {
                t.rank() >= 2 && n != "transformer.wte.weight" && !n.starts_with("value_embeds.")
            })
            .map(|(_, t)| t.len())
            .sum();
        // v1 biases are rank 1 but are matmul parameters in nanochat's count.
        let biases: usize = self
            .named_parameters()
            .iter()
            .filter(|(n, _)| n.ends_with(".bias"))
            .map(|(_, t)| t.len())
            .sum();
        let attn: usize = c
            .window_sizes()
            .iter()
            .map(|&w| 12 * c.n_head * c.head_dim() * w.min(c.block_size))
            .sum();
        6.0 * (matmul + biases) as f64 + attn as f64
    }
}

impl GPT {
    /// The forward of token ids `idx` laid out as (B, T) (row-major, `batch` rows of `seq`):
    /// nanochat's `forward(idx, targets, kv_cache, loss_reduction)`. Returns the softcapped
    /// logits in f32 of the positions `opts.positions` names ((B, T, vocab) by default), or with
    /// `opts.targets` the cross-entropy against them (a scalar, or (B, T) unreduced). With
    /// `opts.tape` every op is recorded for [`Tape::backward`]; with `opts.kv_cache` the
    /// positions follow the cache's and their keys and values are appended to it.
    ///
    /// Errors: `idx` not B T > 0 ids (or an id beyond the vocabulary), more than `block_size`
    /// positions (cache included), a cache of another batch or without room for T more, a tape
    /// with a cache or with only some positions, targets with only some positions, positions
    /// out of range.
    pub fn forward(
        &self,
        idx: &[u32],
        (batch, seq): (usize, usize),
        opts: ForwardOptions<'_>,
    ) -> Result<Tensor> {
        let ForwardOptions {
            tape,
            mut kv_cache,
            positions,
            targets,
        } = opts;
        self.check_forward(idx, (batch, seq), tape, kv_cache.as_deref(), positions)?;
        if targets.is_some() && positions != LogitPositions::All {
            return Err(CoreError::Unsupported {
                op: "GPT::forward",
                why: "a loss needs the logits of every position".into(),
            });
        }
        // The position of idx's first column: rotary angles and cache writes start there.
        let t0 = kv_cache.as_ref().map_or(0, |c| c.len());
        let dropout = Dropout {
            p: self.config.dropout,
            step: self.training.then(|| {
                self.dropout_step
                    .fetch_add(1, Ordering::Relaxed)
                    .wrapping_add(1)
            }),
        };
        let mut ctx = BlockContext {
            tape,
            rotary: &self.rotary,
            t0,
            kv_cache: kv_cache.as_deref_mut(),
            dropout,
            ve: None,
        };
        // The trunk.
        let e = self
            .transformer
            .wte
            .forward(tape, idx, &[batch, seq], self.compute)?; // (B, T, C)
        let e = norm(tape, &e)?; // (B, T, C)
        let prev = ctx
            .kv_cache
            .as_ref()
            .and_then(|c| c.prev_embedding().cloned());
        let mut x = self.smear(tape, &e, prev.as_ref())?; // (B, T, C)
        if let (Some(cache), Some(_)) = (ctx.kv_cache.as_deref_mut(), &self.smear_gate) {
            // HEAD's cache carries the last position's embedding to the next decode step.
            cache.set_prev_embedding(ops::narrow(&e, 1, seq - 1, 1)?); // (B, 1, C)
        }
        let x0 = x.clone();
        let mut x_back = None;
        for (i, block) in self.transformer.h.iter().enumerate() {
            if let (Some(rl), Some(xl)) = (&self.resid_lambdas, &self.x0_lambdas) {
                let (rl, xl) = (self.scalar(tape, rl, i)?, self.scalar(tape, xl, i)?); // (1,)
                x = ops::add(tape, &ops::mul(tape, &rl, &x)?, &ops::mul(tape, &xl, &x0)?)?;
            }
            ctx.ve = match self.value_embeds.get(&i) {
                Some(v) => Some(v.forward(tape, idx, &[batch, seq], self.compute)?), // (B, T, Hkv D)
                None => None,
            };
            x = block.forward(&x, &mut ctx)?; // (B, T, C)
            if self.config.backout_layer() == Some(i) {
                x_back = Some(x.clone());
            }
        }
        if let (Some(lambda), Some(x_back)) = (&self.backout_lambda, &x_back) {
            let lambda = self.scalar(tape, lambda, 0)?; // (1,)
            x = ops::sub(tape, &x, &ops::mul(tape, &lambda, x_back)?)?; // (B, T, C)
        }
        let x = self.pick(x, (batch, seq), positions)?; // (B, T, C), or (B | N, 1, C)
        let x = norm(tape, &x)?;
        // The head: nanochat takes the logits to f32 before the softcap.
        let logits = self.lm_head.forward(tape, &x)?; // (B, T, padded vocab)
        let logits = ops::cast(tape, &logits, DType::F32)?; // (B, T, padded vocab), f32
        let (padded, vocab) = (self.config.padded_vocab_size(), self.config.vocab_size);
        let logits = if padded != vocab {
            ops::slice(tape, &logits, 2, 0, vocab)? // (B, T, vocab): the padding cropped
        } else {
            logits
        };
        let out = match targets {
            None => ops::softcap(tape, &logits, SOFTCAP)?, // (B, T, vocab)
            // The softcap is fused into the loss: the (B, T, vocab) softcapped logits, the
            // largest tensor of training, are never stored.
            Some((targets, reduction)) => {
                let loss = ops::softcap_cross_entropy(tape, &logits, targets, SOFTCAP, reduction)?;
                match reduction {
                    Reduction::Mean => loss,                                      // ()
                    Reduction::None => ops::reshape(tape, &loss, &[batch, seq])?, // (B, T)
                }
            }
        };
        if let Some(cache) = kv_cache {
            cache.advance(seq);
        }
        Ok(out)
    }

    /// Element `i` of a per-layer scalar vector (n_layer,) or a (1,) scalar, as a (1,) tensor
    /// in the compute dtype.
    fn scalar(&self, tape: Option<&Tape>, t: &Tensor, i: usize) -> Result<Tensor> {
        ops::cast(tape, &ops::slice(tape, t, 0, i, 1)?, self.compute)
    }

    /// HEAD's smear of the normed embedding `e` (B, T, C): position t >= 1 adds
    /// `smear_lambda * sigmoid(e_t[:24] . smear_gate) * e_{t-1}` (the previous position's
    /// un-smeared `e`); position 0 adds the same of `prev` (B, 1, C), the cache's embedding of
    /// the position before (a one-token decode step), or nothing. v1: `e` itself.
    ///
    /// Like HEAD, a chunk of several positions smears only within itself.
    fn smear(&self, tape: Option<&Tape>, e: &Tensor, prev: Option<&Tensor>) -> Result<Tensor> {
        let (Some(gate_w), Some(lambda)) = (&self.smear_gate, &self.smear_lambda) else {
            return Ok(e.clone());
        };
        let seq = e.shape()[1];
        let before = match (seq, prev) {
            (1, None) => return Ok(e.clone()),
            (1, Some(p)) => p.clone(), // (B, 1, C)
            // Row t holds e_{t-1}; row 0 is zeros.
            _ => ops::pad(tape, &ops::slice(tape, e, 1, 0, seq - 1)?, 1, 1, 0)?, // (B, T, C)
        };
        let g = gate_w.forward(tape, &ops::slice(tape, e, 2, 0, SMEAR_CHANNELS)?)?; // (B, T, 1)
        let g = ops::mul(
            tape,
            &self.scalar(tape, lambda, 0)?,
            &ops::sigmoid(tape, &g)?,
        )?; // (B, T, 1)
        ops::add(tape, e, &ops::mul(tape, &g, &before)?) // (B, T, C)
    }

    /// The checks of [`GPT::forward`] that need no computation.
    fn check_forward(
        &self,
        idx: &[u32],
        (batch, seq): (usize, usize),
        tape: Option<&Tape>,
        cache: Option<&KvCache>,
        positions: LogitPositions<'_>,
    ) -> Result<()> {
        if idx.len() != batch * seq || seq == 0 {
            return Err(CoreError::shape(
                "GPT::forward",
                &[&[idx.len()], &[batch, seq]],
                "need B * T > 0 token ids",
            ));
        }
        if positions != LogitPositions::All && tape.is_some() {
            return Err(CoreError::Tape {
                op: "GPT::forward",
                why: "the logits of only some positions are for inference (no tape)".into(),
            });
        }
        match positions {
            LogitPositions::PerRow(p) if p.len() != batch || p.iter().any(|&p| p >= seq) => {
                return Err(CoreError::shape(
                    "GPT::forward",
                    &[&[p.len()], &[batch, seq]],
                    "need one position below T per row",
                ));
            }
            LogitPositions::Flat(f) if f.is_empty() || f.iter().any(|&p| p >= batch * seq) => {
                return Err(CoreError::shape(
                    "GPT::forward",
                    &[&[f.len()], &[batch, seq]],
                    "need at least one position, each below B * T",
                ));
            }
            _ => {}
        }
        let mut t0 = 0;
        if let Some(cache) = cache {
            if tape.is_some() {
                return Err(CoreError::Tape {
                    op: "GPT::forward",
                    why: "the KV cache is for inference: no tape".into(),
                });
            }
            if cache.batch() != batch {
                return Err(CoreError::InvalidArgument {
                    name: "batch",
                    value: batch.to_string(),
                    expected: format!(
                        "{} (the KV cache holds {} sequences)",
                        cache.batch(),
                        cache.batch()
                    ),
                });
            }
            if cache.len() + seq > cache.capacity() {
                return Err(CoreError::ContextFull {
                    what: "KV cache full: the cached and new positions",
                    len: cache.len() + seq,
                    limit: cache.capacity(),
                });
            }
            t0 = cache.len();
        }
        if t0 + seq > self.config.block_size {
            return Err(CoreError::ContextFull {
                what: "sequence",
                len: t0 + seq,
                limit: self.config.block_size,
            });
        }
        Ok(())
    }

    /// The rows of the residual stream `x` (B, T, C) whose logits are asked for.
    fn pick(
        &self,
        x: Tensor,
        (batch, seq): (usize, usize),
        positions: LogitPositions<'_>,
    ) -> Result<Tensor> {
        let rows = match positions {
            LogitPositions::All => return Ok(x), // (B, T, C)
            LogitPositions::Last => return ops::narrow(&x, 1, seq - 1, 1), // (B, 1, C)
            LogitPositions::PerRow(p) => p
                .iter()
                .enumerate()
                .map(|(b, &p)| (b * seq + p) as u32)
                .collect::<Vec<_>>(),
            LogitPositions::Flat(f) => f.iter().map(|&r| r as u32).collect(),
        };
        // Rows of the (B T, C) view: an embedding lookup in x.
        let table = ops::reshape(None, &x, &[batch * seq, self.config.n_embd])?; // (B T, C)
        ops::embedding(None, &table, &rows, &[rows.len(), 1]) // (N, 1, C)
    }
}
