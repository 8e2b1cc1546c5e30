//! `GPTConfig`: the model's hyper-parameters under the names nanochat users know, with
//! validation and the depth-scaled size presets.

use serde::{Deserialize, Serialize};

use crate::{CoreError, Result};

/// Which nanochat the model is: its architecture is recorded in every config (and so in every
/// checkpoint meta), never guessed from the tensors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// nanochat v1 (commit 16788ee, Nov 2025): rope base 10000, full causal attention, no
    /// value embeddings, per-layer scalars, smear or backout.
    #[default]
    V1,
    /// nanochat HEAD (commit 92d63d4, Jul 2026; its current form since 2026-03-14): sliding
    /// windows (`window_pattern`), value embeddings with a per-kv-head gate, `resid_lambdas` and
    /// `x0_lambdas`, smear, backout, rope base 100000, q and k scaled by 1.2 after QK-norm, and
    /// the vocabulary padded to a multiple of 64 (`nanochat/gpt.py` at 92d63d4).
    Head,
}

impl Architecture {
    /// `v1` or `head` (the `--recipe` values and the config's `architecture` key).
    pub fn name(self) -> &'static str {
        match self {
            Architecture::V1 => "v1",
            Architecture::Head => "head",
        }
    }

    /// Parses [`Architecture::name`]; `None` for another word.
    pub fn parse(s: &str) -> Option<Architecture> {
        match s {
            "v1" => Some(Architecture::V1),
            "head" => Some(Architecture::Head),
            _ => None,
        }
    }

    /// The rotary base this architecture uses: 10000 (v1) or 100000 (HEAD).
    pub fn rope_base(self) -> f32 {
        match self {
            Architecture::V1 => 10000.0,
            Architecture::Head => 100000.0,
        }
    }
}

/// Channels of the normalised embedding that HEAD's smear gate reads (`smear_gate` is (1, 24)).
pub const SMEAR_CHANNELS: usize = 24;
/// Channels of the normed block input that HEAD's value-embedding gate reads (`ve_gate` is
/// (n_kv_head, 12)).
pub const VE_GATE_CHANNELS: usize = 12;
/// HEAD's vocabulary padding: wte, lm_head and the value embeddings have a multiple of this many
/// rows (GPT's `pad_vocab_size_to=64`).
pub const PAD_VOCAB_SIZE_TO: usize = 64;

/// The longest context a config may ask for (2^20 tokens): far beyond nanochat's 2048, small
/// enough that the rotary tables of any head size fit in memory.
pub const MAX_BLOCK_SIZE: usize = 1 << 20;

/// nanochat's GPT configuration.
///
/// Deserialising reads both nanochat's `model_config` and this project's: a config without an
/// `architecture` key is HEAD when it has HEAD's `window_pattern` key (nanochat HEAD always
/// writes it, v1 never does), else v1; a missing `rope_base` is the architecture's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawGPTConfig")]
pub struct GPTConfig {
    /// v1 or HEAD: which modules the model has.
    pub architecture: Architecture,
    /// HEAD's per-layer attention windows, tiled over the layers (`S` short, `L` long; the last
    /// layer is always long): see [`GPTConfig::window_sizes`]. `L` for v1.
    pub window_pattern: String,
    /// Tokens in the vocabulary (including the special tokens).
    pub vocab_size: usize,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention); divides `n_head`.
    pub n_kv_head: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// Longest sequence (rotary tables are built for it); nanochat calls it `sequence_len`.
    #[serde(rename = "sequence_len", alias = "block_size")]
    pub block_size: usize,
    /// Dropout on the attention and MLP outputs, in training mode only.
    pub dropout: f32,
    /// A bias in every Linear (nanochat has none).
    pub bias: bool,
    /// Base of the rotary frequencies.
    pub rope_base: f32,
}

/// [`GPTConfig`] as read, before the architecture's defaults fill what is missing.
#[derive(Deserialize)]
struct RawGPTConfig {
    architecture: Option<Architecture>,
    window_pattern: Option<String>,
    vocab_size: Option<usize>,
    n_layer: Option<usize>,
    n_head: Option<usize>,
    n_kv_head: Option<usize>,
    n_embd: Option<usize>,
    #[serde(rename = "sequence_len", alias = "block_size")]
    block_size: Option<usize>,
    dropout: Option<f32>,
    bias: Option<bool>,
    rope_base: Option<f32>,
}

impl From<RawGPTConfig> for GPTConfig {
    fn from(r: RawGPTConfig) -> GPTConfig {
        let d = GPTConfig::default();
        let architecture = r.architecture.unwrap_or(if r.window_pattern.is_some() {
            Architecture::Head
        } else {
            Architecture::V1
        });
        GPTConfig {
            architecture,
            window_pattern: r.window_pattern.unwrap_or(d.window_pattern),
            vocab_size: r.vocab_size.unwrap_or(d.vocab_size),
            n_layer: r.n_layer.unwrap_or(d.n_layer),
            n_head: r.n_head.unwrap_or(d.n_head),
            n_kv_head: r.n_kv_head.unwrap_or(d.n_kv_head),
            n_embd: r.n_embd.unwrap_or(d.n_embd),
            block_size: r.block_size.unwrap_or(d.block_size),
            dropout: r.dropout.unwrap_or(d.dropout),
            bias: r.bias.unwrap_or(d.bias),
            rope_base: r.rope_base.unwrap_or(architecture.rope_base()),
        }
    }
}

impl Default for GPTConfig {
    fn default() -> Self {
        GPTConfig {
            architecture: Architecture::V1,
            window_pattern: "L".into(),
            vocab_size: 32768,
            n_layer: 12,
            n_head: 12,
            n_kv_head: 12,
            n_embd: 768,
            block_size: 1024,
            dropout: 0.0,
            bias: false,
            rope_base: 10000.0,
        }
    }
}

/// The model sizes of nanochat's depth scaling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelSize {
    /// depth 4: trains on a laptop CPU in minutes.
    Tiny,
    /// depth 8.
    Small,
    /// depth 12.
    Medium,
    /// depth 20 (nanochat's speedrun model).
    Large,
}

impl ModelSize {
    /// Its depth (`n_layer`): 4, 8, 12 or 20.
    pub fn depth(self) -> usize {
        match self {
            ModelSize::Tiny => 4,
            ModelSize::Small => 8,
            ModelSize::Medium => 12,
            ModelSize::Large => 20,
        }
    }

    /// `tiny`, `small`, `medium` or `large` (the `--size` flag); `None` for another name.
    pub fn parse(s: &str) -> Option<ModelSize> {
        match s {
            "tiny" => Some(ModelSize::Tiny),
            "small" => Some(ModelSize::Small),
            "medium" => Some(ModelSize::Medium),
            "large" => Some(ModelSize::Large),
            _ => None,
        }
    }
}

impl GPTConfig {
    /// nanochat's depth scaling: `n_embd = 64 * depth`, heads of 128 dimensions (rounded up to
    /// at least one head), `n_kv_head = n_head`.
    pub fn from_depth(depth: usize, vocab_size: usize, block_size: usize) -> GPTConfig {
        let n_embd = 64 * depth;
        let n_head = n_embd.div_ceil(128).max(1);
        GPTConfig {
            vocab_size,
            n_layer: depth,
            n_head,
            n_kv_head: n_head,
            n_embd,
            block_size,
            ..GPTConfig::default()
        }
    }

    /// [`GPTConfig::from_depth`] at `size`'s depth.
    pub fn preset(size: ModelSize, vocab_size: usize, block_size: usize) -> GPTConfig {
        GPTConfig::from_depth(size.depth(), vocab_size, block_size)
    }

    /// Channels per attention head: `n_embd / n_head` (`n_embd` when `n_head` is 0).
    pub fn head_dim(&self) -> usize {
        self.n_embd / self.n_head.max(1)
    }

    /// Rows of wte, lm_head and the value embeddings: the vocabulary rounded up to a multiple
    /// of 64 for HEAD (`pad_vocab_size_to=64`; the padding rows' logits are cropped), the
    /// vocabulary itself for v1.
    pub fn padded_vocab_size(&self) -> usize {
        match self.architecture {
            Architecture::V1 => self.vocab_size,
            Architecture::Head => self.vocab_size.div_ceil(PAD_VOCAB_SIZE_TO) * PAD_VOCAB_SIZE_TO,
        }
    }

    /// Each layer's left attention window W (a query at t sees keys s with `0 <= t - s <= W`,
    /// W + 1 of them): HEAD's `_compute_window_sizes`. The long window is `sequence_len`; the
    /// short one ⌈(⌊sequence_len/4⌋)/128⌉·128; `window_pattern` (upper-cased) is tiled over the
    /// layers and the last layer is always long. v1 attends causally to the whole context,
    /// which is the long window for every layer (a forward never exceeds `sequence_len`).
    pub fn window_sizes(&self) -> Vec<usize> {
        let long = self.block_size;
        let short = (self.block_size / 4).div_ceil(128) * 128;
        let pattern: Vec<char> = self.window_pattern.to_uppercase().chars().collect();
        (0..self.n_layer)
            .map(|i| {
                let is_short = self.architecture == Architecture::Head
                    && i + 1 < self.n_layer
                    && pattern.get(i % pattern.len().max(1)) == Some(&'S');
                if is_short {
                    short
                } else {
                    long
                }
            })
            .collect()
    }

    /// Parameters a model of this config has, counted from the config alone (what
    /// [`GPT::num_params`](super::GPT::num_params) counts once it is built), saturating rather
    /// than overflowing: [`GPT::build`](super::GPT::build) refuses a model too large for the
    /// machine with it before allocating anything.
    pub fn num_params(&self) -> u64 {
        let mul = |a: u64, b: u64| a.saturating_mul(b);
        let (e, d, v) = (
            self.n_embd as u64,
            self.head_dim() as u64,
            self.padded_vocab_size() as u64,
        );
        let (h, kv) = (self.n_head as u64, self.n_kv_head as u64);
        let linear =
            |i: u64, o: u64, bias: bool| mul(i, o).saturating_add(if bias { o } else { 0 });
        let b = self.bias;
        let mut n = mul(v, e); // wte
        for i in 0..self.n_layer {
            let layer = [
                linear(e, mul(h, d), b),  // c_q
                linear(e, mul(kv, d), b), // c_k
                linear(e, mul(kv, d), b), // c_v
                linear(e, e, b),          // attn.c_proj
                linear(e, mul(4, e), b),  // c_fc
                linear(mul(4, e), e, b),  // mlp.c_proj
            ];
            n = layer.iter().fold(n, |n, &p| n.saturating_add(p));
            if self.has_value_embeds(i) {
                let gate = linear(VE_GATE_CHANNELS as u64, kv, false);
                n = n.saturating_add(gate).saturating_add(mul(v, mul(kv, d)));
            }
        }
        n = n.saturating_add(linear(e, v, b)); // lm_head
        if self.architecture == Architecture::Head {
            // resid_lambdas, x0_lambdas, smear_lambda, backout_lambda, smear_gate.
            let scalars = 2 * self.n_layer as u64 + 2;
            n = n.saturating_add(scalars + linear(SMEAR_CHANNELS as u64, 1, false));
        }
        n
    }

    /// Whether layer `i` has a value embedding (`value_embeds.{i}` and `attn.ve_gate`): HEAD's
    /// `has_ve`, alternating layers ending at the last one (`i % 2 == (n_layer - 1) % 2`).
    pub fn has_value_embeds(&self, i: usize) -> bool {
        self.architecture == Architecture::Head && i % 2 == (self.n_layer - 1) % 2
    }

    /// HEAD's backout layer: the residual after block `n_layer / 2` is subtracted (times
    /// `backout_lambda`) before the final norm. None for v1.
    pub fn backout_layer(&self) -> Option<usize> {
        (self.architecture == Architecture::Head).then_some(self.n_layer / 2)
    }

    /// The factor on q and k after QK-norm: 1.2 for HEAD (an effective softmax scale of
    /// 1.44/sqrt(D)), 1 for v1.
    pub fn qk_scale(&self) -> f32 {
        match self.architecture {
            Architecture::V1 => 1.0,
            Architecture::Head => 1.2,
        }
    }

    /// HEAD's init bound `s = sqrt(3) / sqrt(n_embd)` (`init_weights`: c_q, c_k, c_v and the
    /// value embeddings are U(-s, s), c_fc U(-0.4 s, 0.4 s)).
    pub fn head_init_bound(&self) -> f64 {
        3f64.sqrt() / (self.n_embd as f64).sqrt()
    }

    /// Every rule a usable configuration follows; the error names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &'static str, value: String, expected: String| {
            Err(CoreError::InvalidArgument {
                name,
                value,
                expected: format!("{expected} (invalid GPTConfig)"),
            })
        };
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("n_layer", self.n_layer),
            ("n_head", self.n_head),
            ("n_kv_head", self.n_kv_head),
            ("n_embd", self.n_embd),
            ("block_size", self.block_size),
        ] {
            if v == 0 {
                return bad(name, "0".into(), "a positive number".into());
            }
        }
        // Upper bounds, so a corrupt or hostile config (a checkpoint's meta) is an error
        // instead of an allocation that aborts the process (the rotary tables are
        // block_size x head_dim).
        for (name, v, max) in [
            ("block_size (sequence_len)", self.block_size, MAX_BLOCK_SIZE),
            ("n_layer", self.n_layer, 4096),
            ("n_head", self.n_head, 4096),
            ("n_kv_head", self.n_kv_head, 4096),
            ("n_embd", self.n_embd, 1 << 17),
        ] {
            if v > max {
                return bad(name, v.to_string(), format!("at most {max}"));
            }
        }
        if !self.n_embd.is_multiple_of(self.n_head) {
            return bad(
                "n_embd",
                self.n_embd.to_string(),
                format!("a multiple of n_head {}", self.n_head),
            );
        }
        if !self.n_head.is_multiple_of(self.n_kv_head) {
            return bad(
                "n_head",
                self.n_head.to_string(),
                format!("a multiple of n_kv_head {}", self.n_kv_head),
            );
        }
        if self.block_size.saturating_mul(self.head_dim()) > 1 << 28 {
            return bad(
                "block_size (sequence_len)",
                self.block_size.to_string(),
                format!(
                    "at most {} for head_dim {} (the rotary tables hold block_size x head_dim numbers, at most 2^28)",
                    (1usize << 28) / self.head_dim().max(1),
                    self.head_dim()
                ),
            );
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad(
                "head_dim (n_embd / n_head)",
                self.head_dim().to_string(),
                "an even number, for rotary embeddings".into(),
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(
                "dropout",
                self.dropout.to_string(),
                "a number in [0, 1)".into(),
            );
        }
        if !(self.rope_base.is_finite() && self.rope_base > 1.0) {
            return bad(
                "rope_base",
                self.rope_base.to_string(),
                "a finite number above 1".into(),
            );
        }
        let pattern_ok = !self.window_pattern.is_empty()
            && self
                .window_pattern
                .chars()
                .all(|c| matches!(c.to_ascii_uppercase(), 'S' | 'L'));
        if !pattern_ok {
            return bad(
                "window_pattern",
                format!("{:?}", self.window_pattern),
                "letters S (short window) and L (long window)".into(),
            );
        }
        match self.architecture {
            Architecture::V1 if self.window_pattern.to_uppercase().contains('S') => {
                return bad(
                    "window_pattern",
                    format!("{:?}", self.window_pattern),
                    "\"L\" for architecture v1 (sliding windows are HEAD's)".into(),
                );
            }
            Architecture::Head if self.dropout != 0.0 || self.bias => {
                return bad(
                    if self.bias { "bias" } else { "dropout" },
                    if self.bias {
                        "true".into()
                    } else {
                        self.dropout.to_string()
                    },
                    "off for architecture head (nanochat HEAD has neither)".into(),
                );
            }
            Architecture::Head if self.block_size < 2 => {
                return bad(
                    "sequence_len",
                    self.block_size.to_string(),
                    "at least 2 for architecture head (smear mixes in the previous token; --max-seq-len)".into(),
                );
            }
            Architecture::Head if self.n_embd < SMEAR_CHANNELS => {
                return bad(
                    "n_embd",
                    self.n_embd.to_string(),
                    format!("at least {SMEAR_CHANNELS} for architecture head (the smear gate reads {SMEAR_CHANNELS} channels)"),
                );
            }
            _ => {}
        }
        if self.vocab_size > u32::MAX as usize {
            return bad(
                "vocab_size",
                self.vocab_size.to_string(),
                "at most 2^32 - 1 (32-bit token ids)".into(),
            );
        }
        Ok(())
    }

    /// The config as nanochat's JSON (`block_size` is written as nanochat's `sequence_len`;
    /// both names are read), for file metadata.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("config serialises")
    }

    /// Parses a config from JSON (nanochat's field names; missing fields take the defaults)
    /// and validates it.
    pub fn from_json(s: &str) -> Result<GPTConfig> {
        let c: GPTConfig = serde_json::from_str(s).map_err(|e| CoreError::File {
            path: "<config JSON>".into(),
            why: format!("invalid GPTConfig: {e}"),
        })?;
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_scale_like_nanochat() {
        let c = GPTConfig::preset(ModelSize::Tiny, 32768, 1024);
        assert_eq!(
            (c.n_layer, c.n_embd, c.n_head, c.head_dim()),
            (4, 256, 2, 128)
        );
        let c = GPTConfig::preset(ModelSize::Large, 65536, 2048);
        assert_eq!(
            (c.n_layer, c.n_embd, c.n_head, c.head_dim()),
            (20, 1280, 10, 128)
        );
        for s in [
            ModelSize::Tiny,
            ModelSize::Small,
            ModelSize::Medium,
            ModelSize::Large,
        ] {
            GPTConfig::preset(s, 32768, 1024).validate().unwrap();
        }
        GPTConfig::default().validate().unwrap();
    }

    #[test]
    fn invalid_configs_are_errors_naming_the_field() {
        let base = GPTConfig::default();
        let cases = [
            (
                GPTConfig {
                    n_embd: 770,
                    ..base.clone()
                },
                "n_embd",
            ),
            (
                GPTConfig {
                    n_kv_head: 5,
                    ..base.clone()
                },
                "n_head",
            ),
            (
                GPTConfig {
                    n_embd: 36,
                    n_head: 12,
                    n_kv_head: 12,
                    ..base.clone()
                },
                "head_dim (n_embd / n_head)",
            ),
            (
                GPTConfig {
                    n_layer: 0,
                    ..base.clone()
                },
                "n_layer",
            ),
            (
                GPTConfig {
                    vocab_size: 0,
                    ..base.clone()
                },
                "vocab_size",
            ),
            (
                GPTConfig {
                    dropout: 1.0,
                    ..base.clone()
                },
                "dropout",
            ),
        ];
        for (c, field) in cases {
            let e = c.validate().unwrap_err();
            assert!(
                matches!(&e, CoreError::InvalidArgument { name, .. } if *name == field),
                "{e} should name {field}"
            );
            assert!(e.to_string().contains("invalid GPTConfig"), "{e}");
        }
    }

    #[test]
    fn json_round_trip_and_nanochat_names() {
        let c = GPTConfig {
            n_kv_head: 4,
            bias: true,
            ..GPTConfig::default()
        };
        assert_eq!(GPTConfig::from_json(&c.to_json()).unwrap(), c);
        assert!(c.to_json().contains("\"sequence_len\":1024"));
        assert_eq!(
            GPTConfig::from_json("{\"block_size\": 7, \"n_layer\": 1}")
                .unwrap()
                .block_size,
            7
        );
        let fixture = r#"{"sequence_len": 16, "vocab_size": 64, "n_layer": 2, "n_head": 4, "n_kv_head": 2, "n_embd": 32}"#;
        let f = GPTConfig::from_json(fixture).unwrap();
        assert_eq!((f.block_size, f.vocab_size, f.n_kv_head), (16, 64, 2));
        assert!(GPTConfig::from_json("{\"n_head\": 0}").is_err());
        assert!(GPTConfig::from_json("not json").is_err());
    }
}
