//! The reference sampler: a streaming generator over the KV cache (prefill the prompt once,
//! then one token at a time), with temperature (0 = argmax), top-k and a seed: nanochat's
//! `GPT.generate` (gpt.py, 16788ee). The batched path with tool use is the engine's
//! ([`crate::engine::Engine`]).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::{ForwardOptions, KvCache, GPT};
use crate::{CoreError, Result};

/// How the next token is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; 0 picks the most likely token.
    pub temperature: f32,
    /// Keep only the k most likely tokens.
    pub top_k: Option<usize>,
    /// Seeds the generator's `StdRng` (nanochat's `seed=42`): the same seed, the same tokens.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 1.0,
            top_k: None,
            seed: 42,
        }
    }
}

/// Draws a token id from one row of logits (vocab,): argmax at temperature 0 or top-k 1, else
/// a draw from softmax(logits / temperature) over the `top_k` largest (as `sample_next_token`
/// in nanochat's `engine.py`). Errors: [`CoreError::InvalidArgument`] for empty logits, a
/// negative or non-finite temperature, or a `top_k` of 0.
pub fn sample_token(
    logits: &[f32],
    temperature: f32,
    top_k: Option<usize>,
    rng: &mut StdRng,
) -> Result<u32> {
    if logits.is_empty() {
        return Err(CoreError::InvalidArgument {
            name: "logits",
            value: "an empty vocabulary".into(),
            expected: "at least one logit to sample from".into(),
        });
    }
    if !(temperature >= 0.0 && temperature.is_finite()) {
        return Err(CoreError::InvalidArgument {
            name: "temperature",
            value: temperature.to_string(),
            expected: "a finite number >= 0".into(),
        });
    }
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i as u32)
            .unwrap_or(0)
    };
    if temperature == 0.0 || top_k == Some(1) {
        return Ok(argmax());
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    if let Some(k) = top_k {
        if k == 0 {
            return Err(CoreError::InvalidArgument {
                name: "top_k",
                value: "0".into(),
                expected: "at least 1".into(),
            });
        }
        // Partition around the k-th largest (linear), then order only the k kept.
        let k = k.min(logits.len());
        if k < order.len() {
            order.select_nth_unstable_by(k - 1, |&a, &b| {
                logits[b].total_cmp(&logits[a]).then(a.cmp(&b))
            });
            order.truncate(k);
        }
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    }
    let m = order
        .iter()
        .map(|&i| logits[i])
        .fold(f32::NEG_INFINITY, f32::max);
    let weights: Vec<f64> = order
        .iter()
        .map(|&i| (((logits[i] - m) / temperature) as f64).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (w, &i) in weights.iter().zip(&order) {
        if u < *w {
            return Ok(i as u32);
        }
        u -= w;
    }
    Ok(*order.last().expect("non-empty") as u32)
}

/// Streams sampled tokens: `for token in model.generate(&prompt, 256, params)? { ... }`.
pub struct Generator<'a> {
    model: &'a GPT,
    cache: KvCache,
    params: SamplingParams,
    rng: StdRng,
    /// Logits of the next position.
    next_logits: Vec<f32>,
    remaining: usize,
    failed: bool,
}

impl GPT {
    /// Generates up to `max_new_tokens` tokens after `tokens` (nanochat's `generate`). Stops
    /// early when the context (`block_size`) is full.
    pub fn generate(
        &self,
        tokens: &[u32],
        max_new_tokens: usize,
        params: SamplingParams,
    ) -> Result<Generator<'_>> {
        if tokens.is_empty() {
            return Err(CoreError::InvalidArgument {
                name: "prompt",
                value: "0 tokens".into(),
                expected: "at least one token to generate after".into(),
            });
        }
        let c = self.config();
        if tokens.len() > c.block_size {
            return Err(CoreError::ContextFull {
                what: "prompt",
                len: tokens.len(),
                limit: c.block_size,
            });
        }
        let mut cache = KvCache::new(c, self.get_device(), self.compute_dtype(), 1, c.block_size)?;
        let opts = ForwardOptions::new().kv_cache(&mut cache);
        let logits = self.forward(tokens, (1, tokens.len()), opts)?;
        let v = c.vocab_size;
        let all = logits.to_vec_f32()?;
        let next_logits = all[all.len() - v..].to_vec();
        Ok(Generator {
            model: self,
            cache,
            params,
            rng: StdRng::seed_from_u64(params.seed),
            next_logits,
            remaining: max_new_tokens,
            failed: false,
        })
    }
}

impl Generator<'_> {
    fn step(&mut self) -> Result<u32> {
        let token = sample_token(
            &self.next_logits,
            self.params.temperature,
            self.params.top_k,
            &mut self.rng,
        )?;
        self.remaining -= 1;
        if self.remaining > 0 && self.cache.len() < self.cache.capacity() {
            let (model, cache) = (self.model, &mut self.cache);
            self.next_logits = model.get_device().exclusive(|| {
                let opts = ForwardOptions::new().kv_cache(cache);
                model.forward(&[token], (1, 1), opts)?.to_vec_f32()
            })??;
        } else {
            self.remaining = 0;
        }
        Ok(token)
    }

    /// Whether generation stopped because the context is full.
    pub fn context_full(&self) -> bool {
        self.cache.len() >= self.cache.capacity()
    }
}

impl Iterator for Generator<'_> {
    type Item = Result<u32>;

    fn next(&mut self) -> Option<Result<u32>> {
        if self.remaining == 0 || self.failed {
            return None;
        }
        let r = self.step();
        self.failed = r.is_err();
        Some(r)
    }
}
