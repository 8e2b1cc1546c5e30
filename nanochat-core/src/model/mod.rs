//! nanochat's GPT: configuration, the modules (`GPT` { `transformer` { `wte`, `h`: `Block`
//! { `attn`, `mlp` } }, `lm_head` }, whose field paths are the state_dict names), one forward
//! (with the tape for training, with a KV cache for decoding, or to a loss), safetensors weights
//! under nanochat's names, and a reference sampler.

mod attention;
mod block;
mod config;
#[cfg(test)]
mod forward_tests;
mod generate;
mod gpt;
#[cfg(test)]
mod head_tests;
mod kv_cache;
mod linear;
mod mlp;
mod options;
mod params;
#[cfg(test)]
pub(crate) mod tests;
mod weights;

pub use attention::CausalSelfAttention;
pub use block::Block;
pub use config::{
    Architecture, GPTConfig, ModelSize, PAD_VOCAB_SIZE_TO, SMEAR_CHANNELS, VE_GATE_CHANNELS,
};
pub use generate::{sample_token, Generator, SamplingParams};
pub(crate) use gpt::model_too_large;
pub use gpt::{check_weights_fit, Transformer, GPT, NORM_EPS, SOFTCAP};
pub use kv_cache::KvCache;
pub use linear::{Embedding, Init, Linear};
pub use mlp::MLP;
pub use options::{ForwardOptions, LogitPositions};
