//! HEAD's scaling-law settings (`scripts/base_train.py` at 92d63d4, "scaling laws"): from the
//! depth, the model's shape; from its parameter counts, the number of training tokens, the
//! total batch size, the learning-rate and weight-decay scales and the number of steps.

use crate::model::{Architecture, GPTConfig};

/// The reference total batch size of HEAD's scaling (2^19 tokens, the d12 optimum).
pub const B_REF: usize = 1 << 19;

/// base_train's arguments that shape the model and its horizon (nanochat's flag names).
#[derive(Clone, Debug, PartialEq)]
pub struct HeadScalingArgs {
    /// `--depth` (20): the number of layers.
    pub depth: usize,
    /// `--aspect-ratio` (64): model width per layer.
    pub aspect_ratio: usize,
    /// `--head-dim` (128).
    pub head_dim: usize,
    /// `--max-seq-len` (2048): the context (`sequence_len`).
    pub max_seq_len: usize,
    /// `--window-pattern` (`SSSL`).
    pub window_pattern: String,
    /// The tokenizer's vocabulary (32768 by default).
    pub vocab_size: usize,
    /// `--target-param-data-ratio` (12): training tokens per scaling parameter.
    pub target_param_data_ratio: f64,
}

impl Default for HeadScalingArgs {
    fn default() -> Self {
        HeadScalingArgs {
            depth: 20,
            aspect_ratio: 64,
            head_dim: 128,
            max_seq_len: 2048,
            window_pattern: "SSSL".into(),
            vocab_size: 32768,
            target_param_data_ratio: 12.0,
        }
    }
}

impl HeadScalingArgs {
    /// The model of these arguments: `n_embd = ceil(depth * aspect_ratio / head_dim) *
    /// head_dim`, `n_head = n_embd / head_dim`, `n_kv_head = n_head` (base_train never uses
    /// GQA).
    pub fn model_config(&self) -> GPTConfig {
        let hd = self.head_dim.max(1);
        let n_embd = (self.depth * self.aspect_ratio).div_ceil(hd) * hd;
        let n_head = n_embd / hd;
        GPTConfig {
            architecture: Architecture::Head,
            window_pattern: self.window_pattern.clone(),
            vocab_size: self.vocab_size,
            n_layer: self.depth,
            n_head,
            n_kv_head: n_head,
            n_embd,
            block_size: self.max_seq_len,
            rope_base: Architecture::Head.rope_base(),
            ..GPTConfig::default()
        }
    }
}

/// Parameters by group, as HEAD's `num_scaling_params` counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamCounts {
    /// The token embedding: padded vocab x C.
    pub wte: usize,
    /// Every value embedding: layers with one x padded vocab x (n_kv_head head_dim).
    pub value_embeds: usize,
    /// The unembedding: padded vocab x C.
    pub lm_head: usize,
    /// Every matrix in the blocks (attention, MLP and the value-embedding gates).
    pub transformer_matrices: usize,
    /// resid_lambdas, x0_lambdas, smear_gate (24), smear_lambda, backout_lambda.
    pub scalars: usize,
}

impl ParamCounts {
    /// The counts of a HEAD model of `config`, from the shapes alone.
    pub fn of(config: &GPTConfig) -> ParamCounts {
        let (l, c) = (config.n_layer, config.n_embd);
        let vp = config.padded_vocab_size();
        let kvd = config.n_kv_head * config.head_dim();
        let n_ve = (0..l).filter(|&i| config.has_value_embeds(i)).count();
        ParamCounts {
            wte: vp * c,
            value_embeds: n_ve * vp * kvd,
            lm_head: vp * c,
            transformer_matrices: l * (2 * c * c + 2 * kvd * c + 8 * c * c)
                + n_ve * crate::model::VE_GATE_CHANNELS * config.n_kv_head,
            scalars: 2 * l + crate::model::SMEAR_CHANNELS + 2,
        }
    }

    /// Every parameter.
    pub fn total(&self) -> usize {
        self.wte + self.value_embeds + self.lm_head + self.transformer_matrices + self.scalars
    }

    /// What the scaling laws count: the blocks' matrices and lm_head (not the embeddings).
    pub fn scaling(&self) -> usize {
        self.transformer_matrices + self.lm_head
    }
}

/// How many steps to train, in base_train's order of precedence.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Horizon {
    /// `--num-iterations N`.
    Iterations(usize),
    /// `--target-flops F`: `F / (flops per token * total batch size)` steps.
    TargetFlops(f64),
    /// `--target-param-data-ratio` (the default): `target tokens / total batch size` steps.
    ParamDataRatio,
}

/// HEAD's derived settings for one model (base_train's "scaling laws" block).
#[derive(Clone, Debug, PartialEq)]
pub struct HeadScaling {
    /// The model.
    pub config: GPTConfig,
    /// Its parameters by group.
    pub params: ParamCounts,
    /// FLOPs per token of a training step: `6 (matrices + lm_head + smear_gate) + sum over
    /// layers of 12 n_head head_dim min(window, sequence_len)`.
    pub flops_per_token: f64,
    /// `int(target_param_data_ratio * scaling params)`.
    pub target_tokens: usize,
    /// The same for the depth-12 model of the same arguments (the reference).
    pub d_ref: f64,
    /// Tokens per optimizer step: `--total-batch-size`, or `2^round(log2(B_REF (target /
    /// D_REF)^0.383))`.
    pub total_batch_size: usize,
    /// `sqrt(total_batch_size / B_REF)`: every learning rate but the smear group's is
    /// multiplied by it.
    pub batch_lr_scale: f64,
    /// Muon's starting weight decay: `weight_decay * sqrt(total_batch_size / B_REF) * D_REF /
    /// target_tokens`.
    pub weight_decay_scaled: f64,
    /// Optimizer steps.
    pub num_iterations: usize,
}

impl HeadScaling {
    /// The settings of `args`, with `total_batch_size` (None: automatic, base_train's `-1`),
    /// the horizon and the base `weight_decay` (`--weight-decay`, 0.28).
    pub fn new(
        args: &HeadScalingArgs,
        total_batch_size: Option<usize>,
        horizon: Horizon,
        weight_decay: f64,
    ) -> HeadScaling {
        let config = args.model_config();
        let params = ParamCounts::of(&config);
        let r = args.target_param_data_ratio;
        let target_tokens = (r * params.scaling() as f64) as usize;
        let reference = HeadScalingArgs {
            depth: 12,
            ..args.clone()
        };
        let d_ref = r * ParamCounts::of(&reference.model_config()).scaling() as f64;
        let total_batch_size = total_batch_size.unwrap_or_else(|| {
            let opt = B_REF as f64 * (target_tokens as f64 / d_ref).powf(0.383);
            1usize << round_log2(opt)
        });
        let ratio = total_batch_size as f64 / B_REF as f64;
        let batch_lr_scale = if ratio == 1.0 { 1.0 } else { ratio.powf(0.5) };
        let weight_decay_scaled = weight_decay * ratio.sqrt() * (d_ref / target_tokens as f64);
        let heads_dim = (config.n_head * config.head_dim()) as f64;
        let attn: f64 = config
            .window_sizes()
            .iter()
            .map(|&w| 12.0 * heads_dim * w.min(config.block_size) as f64)
            .sum();
        let flops_per_token = 6.0
            * (params.transformer_matrices + params.lm_head + crate::model::SMEAR_CHANNELS) as f64
            + attn;
        let num_iterations = match horizon {
            Horizon::Iterations(n) => n,
            Horizon::TargetFlops(f) => {
                crate::recipe::round_half_even(f / (flops_per_token * total_batch_size as f64))
                    .max(0) as usize
            }
            Horizon::ParamDataRatio => target_tokens / total_batch_size,
        };
        HeadScaling {
            config,
            params,
            flops_per_token,
            target_tokens,
            d_ref,
            total_batch_size,
            batch_lr_scale,
            weight_decay_scaled,
            num_iterations,
        }
    }
}

/// `round(log2(x))`, Python's rounding, at least 0.
fn round_log2(x: f64) -> u32 {
    crate::recipe::round_half_even(x.log2()).clamp(0, 62) as u32
}
