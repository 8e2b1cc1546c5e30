//! `nanochat bench decode`: inference throughput of a model shape: prefill tokens/s and decode
//! tokens/s at batch 1 and 8 (the engine's path: KV cache, one token column per step, the
//! logits brought to the host and sampled there).

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::model::{sample_token, ForwardOptions, GPTConfig, KvCache, LogitPositions, GPT};
use crate::{CoreError, DType, Device, Result};

/// The result of [`bench_decode`], printed and written as JSON by `nanochat bench decode` (the
/// counterpart of nanochat's `scripts/infer_bench.py`, on random weights).
#[derive(Clone, Debug, Serialize)]
pub struct DecodeBench {
    /// The device, as it prints (`cpu`, `cuda:0`).
    pub device: String,
    /// The weights' dtype name (`f32`, `bf16`).
    pub dtype: String,
    /// Transformer layers of the benchmarked model.
    pub depth: usize,
    /// Its model width (channels).
    pub n_embd: usize,
    /// Its vocabulary size (tokens).
    pub vocab_size: usize,
    /// Its parameter count.
    pub num_params: usize,
    /// Tokens of the (random) prompt that is prefilled.
    pub prompt_len: usize,
    /// Tokens decoded per row in each timed run.
    pub decode_steps: usize,
    /// Prompt tokens per second of the prefill (batch 1, after a warm-up).
    pub prefill_tokens_per_s: f64,
    /// Generated tokens per second (all rows together) at batch 1 and 8.
    pub decode_tokens_per_s_batch1: f64,
    /// Generated tokens per second at batch 8 (8 rows together).
    pub decode_tokens_per_s_batch8: f64,
    /// Milliseconds per decode step at batch 1 and 8.
    pub decode_ms_per_step_batch1: f64,
    /// Milliseconds per decode step at batch 8.
    pub decode_ms_per_step_batch8: f64,
    /// The bytes of weights read per decode step over the step time at batch 1: the
    /// memory-bound ceiling is the device's bandwidth.
    pub weight_gbps_batch1: f64,
}

/// Times prefill of a `prompt_len` prompt and `steps` decode steps at batch 1 and 8 of a
/// depth-`depth` model (nanochat's scaling, random weights) in `dtype`; sampling at temperature
/// 1, top-k 50. Errors: [`CoreError::InvalidArgument`] for a `prompt_len` or `steps` of 0;
/// model, cache or kernel errors.
pub fn bench_decode(
    device: &Device,
    depth: usize,
    vocab: usize,
    dtype: DType,
    prompt_len: usize,
    steps: usize,
) -> Result<DecodeBench> {
    if prompt_len == 0 {
        return Err(CoreError::invalid(
            "bench decode --prompt-len",
            0,
            "at least 1",
        ));
    }
    if steps == 0 {
        return Err(CoreError::invalid("bench decode --steps", 0, "at least 1"));
    }
    let config = GPTConfig::from_depth(depth, vocab, prompt_len + steps + 1);
    let model = GPT::new(config.clone(), device, dtype, 0)?;
    let mut rng = StdRng::seed_from_u64(0);
    let prompt: Vec<u32> = (0..prompt_len)
        .map(|_| rng.random_range(0..vocab as u32))
        .collect();
    let block = config.block_size;
    let prefill = |cache: &mut KvCache| -> Result<Vec<f32>> {
        device.exclusive(|| -> Result<Vec<f32>> {
            model
                .forward(
                    &prompt,
                    (1, prompt_len),
                    ForwardOptions::new()
                        .kv_cache(cache)
                        .positions(LogitPositions::Last),
                )?
                .to_vec_f32()
        })?
    };
    // Warm-up (JIT compilation), then the timed prefill.
    prefill(&mut KvCache::new(&config, device, dtype, 1, block)?)?;
    let mut cache = KvCache::new(&config, device, dtype, 1, block)?;
    let t0 = Instant::now();
    let last = prefill(&mut cache)?;
    let prefill_s = t0.elapsed().as_secs_f64();

    let decode = |batch: usize| -> Result<f64> {
        let mut cache = if batch == 1 {
            let mut c = KvCache::new(&config, device, dtype, 1, block)?;
            prefill(&mut c)?;
            c
        } else {
            cache.replicate(batch)?
        };
        let mut logits = last.repeat(batch);
        let mut sample_rng = StdRng::seed_from_u64(1);
        let mut step = |logits: &mut Vec<f32>, cache: &mut KvCache| -> Result<()> {
            let tokens = (0..batch)
                .map(|r| {
                    sample_token(
                        &logits[r * vocab..(r + 1) * vocab],
                        1.0,
                        Some(50),
                        &mut sample_rng,
                    )
                })
                .collect::<Result<Vec<u32>>>()?;
            *logits = device.exclusive(|| {
                model
                    .forward(&tokens, (batch, 1), ForwardOptions::new().kv_cache(cache))?
                    .to_vec_f32()
            })??;
            Ok(())
        };
        // One untimed step compiles the batch's kernels.
        step(&mut logits, &mut cache)?;
        let t = Instant::now();
        for _ in 0..steps {
            step(&mut logits, &mut cache)?;
        }
        Ok(t.elapsed().as_secs_f64() / steps as f64)
    };
    let step1 = decode(1)?;
    let step8 = decode(8)?;
    let weight_bytes = (model.num_params() * dtype.size()) as f64;
    Ok(DecodeBench {
        device: device.to_string(),
        dtype: dtype.name().to_string(),
        depth,
        n_embd: config.n_embd,
        vocab_size: vocab,
        num_params: model.num_params(),
        prompt_len,
        decode_steps: steps,
        prefill_tokens_per_s: prompt_len as f64 / prefill_s,
        decode_tokens_per_s_batch1: 1.0 / step1,
        decode_tokens_per_s_batch8: 8.0 / step8,
        decode_ms_per_step_batch1: step1 * 1e3,
        decode_ms_per_step_batch8: step8 * 1e3,
        weight_gbps_batch1: weight_bytes / step1 / 1e9,
    })
}
