//! nanochat's GPT: configuration, parameters, forward (with the tape for training, with a KV
//! cache for decoding), safetensors weights under nanochat's names, and a reference sampler.

mod config;
mod generate;
mod gpt;
mod kv_cache;
mod linear;
#[cfg(test)]
pub(crate) mod tests;
mod weights;

pub use config::{GPTConfig, ModelSize};
pub use generate::{sample_token, Generator, SamplingParams};
pub use gpt::{parameter_specs, Block, GPT, NORM_EPS, SOFTCAP};
pub use kv_cache::KvCache;
pub use linear::{Init, Linear};
