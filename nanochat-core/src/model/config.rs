//! `GPTConfig`: the model's hyper-parameters under the names nanochat users know, with
//! validation and the depth-scaled size presets.

use serde::{Deserialize, Serialize};

use crate::{CoreError, Result};

/// nanochat's GPT configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GPTConfig {
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

impl Default for GPTConfig {
    fn default() -> Self {
        GPTConfig {
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
