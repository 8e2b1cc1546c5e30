//! The inference engine (nanochat's `engine.py`): batched sampling over the KV cache with the
//! calculator tool.
//!
//! The prompt is prefilled once with batch 1; its cache is replicated to `num_samples` rows
//! and all samples decode as one batch, one token column per step. Each column carries, per
//! row, the token, its mask (1 sampled, 0 forced by the tool) and the probability the model
//! gave a sampled token (softmax of the logits at temperature 1 over the tokenizer's vocabulary;
//! ids past it, in a padded model vocabulary, are never drawn).
//!
//! ```no_run
//! # fn demo(model: nanochat_core::GPT, tokenizer: nanochat_core::tokenizer::Tokenizer) -> nanochat_core::Result<()> {
//! use nanochat_core::engine::{Engine, GenerateParams};
//! let engine = Engine::new(model, tokenizer)?;
//! let prompt = engine.tokenizer().encode("The capital of France is");
//! let params = GenerateParams { num_samples: 2, max_tokens: 16, temperature: 0.0, ..Default::default() };
//! let (results, probabilities) = engine.generate_batch(&prompt, &params)?;
//! # Ok(()) }
//! ```

mod bench;
mod chat;
pub mod generation;
mod number;
pub mod openai;
pub mod pool;
pub mod request;
mod row;
pub mod session;
mod stop;

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::model::{sample_token, ForwardOptions, KvCache, LogitPositions};
use crate::tokenizer::Tokenizer;
use crate::{CoreError, Result, GPT};
pub use bench::{bench_decode, DecodeBench};
pub use chat::{completion_prompt, Completion, TextStream};
pub use number::{Decimal, Limit};
use row::{RowState, Specials};
pub use stop::StopMatcher;

/// How [`Engine::generate`] samples: the keyword arguments of nanochat's `Engine.generate`
/// (`nanochat/engine.py`). Defaults: 1 sample, 256 tokens, temperature 1, no top-k, a drawn
/// seed (nanochat: no token limit, seed 42).
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateParams {
    /// Rows sampled from the one prompt.
    pub num_samples: usize,
    /// Most tokens generated per row (forced tool tokens count).
    pub max_tokens: usize,
    /// Softmax temperature; 0 picks the most likely token.
    pub temperature: f32,
    /// Keep only the k most likely tokens.
    pub top_k: Option<usize>,
    /// The same seed gives the same output; `None` draws one.
    pub seed: Option<u64>,
}

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            num_samples: 1,
            max_tokens: 256,
            temperature: 1.0,
            top_k: None,
            seed: None,
        }
    }
}

/// One step of every row.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenColumn {
    /// The token emitted by each row, `num_samples` ids (after a row ended: whatever was drawn).
    pub tokens: Vec<u32>,
    /// 1 sampled, 0 forced (a calculator result).
    pub masks: Vec<u8>,
    /// The model's probability of each sampled token; `None` for a forced one.
    pub probs: Vec<Option<f32>>,
}

/// Why a generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// Every row reached `<|assistant_end|>` or `<|bos|>`.
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// The context (the model's `block_size`) is full.
    ContextFull,
}

impl FinishReason {
    /// The reason in words (and as the OpenAI API names the first two: `stop`, `length`).
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
            FinishReason::ContextFull => "context_full",
        }
    }
}

/// A model and its tokenizer, ready to sample: nanochat's `Engine` (`nanochat/engine.py`).
pub struct Engine {
    model: GPT,
    tokenizer: Tokenizer,
    specials: Specials,
}

impl Engine {
    /// Fails when the tokenizer lacks nanochat's special tokens ([`CoreError::Tokenizer`]) or
    /// its vocabulary is larger than the model's ([`CoreError::VocabMismatch`]).
    pub fn new(model: GPT, tokenizer: Tokenizer) -> Result<Engine> {
        if tokenizer.vocab_size() > model.config().vocab_size {
            return Err(CoreError::VocabMismatch {
                tokenizer: tokenizer.vocab_size(),
                model: model.config().vocab_size,
            });
        }
        let specials = Specials::of(&tokenizer)?;
        Ok(Engine {
            model,
            tokenizer,
            specials,
        })
    }

    /// The model it samples from.
    pub fn model(&self) -> &GPT {
        &self.model
    }

    /// The tokenizer that encodes prompts and decodes replies.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Streams token columns after `tokens`: `for column in engine.generate(&prompt, &params)?`.
    /// The stream ends when every row is done, at `max_tokens`, or when the context is full
    /// ([`EngineStream::finish_reason`] says which). Errors: an empty prompt
    /// ([`CoreError::NoData`]), one longer than the model's `block_size`
    /// ([`CoreError::ContextFull`]), or `num_samples`/`top_k` of 0 or a negative or non-finite
    /// temperature ([`CoreError::InvalidArgument`]).
    pub fn generate(&self, tokens: &[u32], params: &GenerateParams) -> Result<EngineStream<'_>> {
        let block = self.model.config().block_size;
        if tokens.is_empty() {
            return Err(CoreError::no_data("prompt tokens", "generate"));
        }
        if tokens.len() > block {
            return Err(CoreError::ContextFull {
                what: "prompt",
                len: tokens.len(),
                limit: block,
            });
        }
        if params.num_samples == 0 {
            return Err(CoreError::invalid("num_samples", 0, "at least 1"));
        }
        if params.top_k == Some(0) {
            return Err(CoreError::invalid("top_k", 0, "at least 1"));
        }
        if !(params.temperature >= 0.0 && params.temperature.is_finite()) {
            return Err(CoreError::invalid(
                "temperature",
                params.temperature,
                "a finite number >= 0",
            ));
        }
        let n = params.num_samples;
        let capacity = block.min(tokens.len() + params.max_tokens.max(1));
        let c = self.model.config();
        let (dev, dtype) = (self.model.get_device(), self.model.compute_dtype());
        let (cache, logits) = dev.exclusive(|| -> Result<(KvCache, Vec<f32>)> {
            let mut prefill = KvCache::new(c, dev, dtype, 1, capacity)?;
            let last = self
                .model
                .forward(
                    tokens,
                    (1, tokens.len()),
                    ForwardOptions::new()
                        .kv_cache(&mut prefill)
                        .positions(LogitPositions::Last),
                )?
                .to_vec_f32()?;
            let cache = if n == 1 {
                prefill
            } else {
                prefill.replicate(n)?
            };
            Ok((cache, last))
        })??;
        let seed = params.seed.unwrap_or_else(rand::random);
        Ok(EngineStream {
            engine: self,
            params: params.clone(),
            cache,
            logits: logits.repeat(n),
            rows: (0..n).map(|_| RowState::default()).collect(),
            rng: StdRng::seed_from_u64(seed),
            generated: 0,
            finish: None,
            failed: false,
        })
    }

    /// The token ids one sample generates after `tokens` (its terminal token included, when it
    /// emits one) and why it stopped: the raw stream, for comparing devices token for token.
    pub fn generate_ids(
        &self,
        tokens: &[u32],
        params: &GenerateParams,
    ) -> Result<(Vec<u32>, FinishReason)> {
        let params = GenerateParams {
            num_samples: 1,
            ..params.clone()
        };
        let mut stream = self.generate(tokens, &params)?;
        let mut ids = Vec::new();
        for column in stream.by_ref() {
            ids.push(column?.tokens[0]);
        }
        let reason = stream.finish_reason().ok_or_else(|| CoreError::Internal {
            op: "generate_ids",
            why: "the generation ended without a finish reason".into(),
        })?;
        Ok((ids, reason))
    }

    /// Generates and collects: the sequences (the prompt, then each row's tokens up to, not
    /// including, its terminal token) and, per generated token, the model's probability of it
    /// (`None` where the calculator forced it), as nanochat's
    /// `results, masks = engine.generate_batch(...)` with probabilities in place of masks.
    #[allow(clippy::type_complexity, reason = "nanochat's `results, masks` pair")]
    pub fn generate_batch(
        &self,
        tokens: &[u32],
        params: &GenerateParams,
    ) -> Result<(Vec<Vec<u32>>, Vec<Vec<Option<f32>>>)> {
        let n = params.num_samples;
        let mut results = vec![tokens.to_vec(); n];
        let mut probabilities = vec![Vec::new(); n];
        let mut done = vec![false; n];
        for column in self.generate(tokens, params)? {
            let column = column?;
            for i in 0..n {
                if done[i] {
                    continue;
                }
                let t = column.tokens[i];
                if self.specials.is_terminal(t) {
                    done[i] = true;
                } else {
                    results[i].push(t);
                    probabilities[i].push(column.probs[i]);
                }
            }
            if done.iter().all(|&d| d) {
                break;
            }
        }
        Ok((results, probabilities))
    }
}

/// The columns of one generation; an iterator of `Result<TokenColumn>`.
pub struct EngineStream<'a> {
    engine: &'a Engine,
    params: GenerateParams,
    cache: KvCache,
    /// Logits of the next position, row after row.
    logits: Vec<f32>,
    rows: Vec<RowState>,
    rng: StdRng,
    generated: usize,
    finish: Option<FinishReason>,
    failed: bool,
}

impl EngineStream<'_> {
    /// Why the stream ended (`None` while it runs or after an error).
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    fn step(&mut self) -> Result<TokenColumn> {
        let v = self.engine.model.config().vocab_size;
        let sp = self.engine.specials;
        let n = self.rows.len();
        let mut column = TokenColumn {
            tokens: Vec::with_capacity(n),
            masks: Vec::with_capacity(n),
            probs: Vec::with_capacity(n),
        };
        // Only ids the tokenizer can decode are drawn (a model's vocabulary may be padded).
        let drawable = self.engine.tokenizer.vocab_size().min(v);
        for (i, row) in self.rows.iter_mut().enumerate() {
            let logits = &self.logits[i * v..i * v + drawable];
            let sampled = sample_token(
                logits,
                self.params.temperature,
                self.params.top_k,
                &mut self.rng,
            )?;
            let (token, mask, prob) = match row.forced.pop_front() {
                Some(f) => (f, 0, None),
                None => (sampled, 1, Some(probability(logits, sampled))),
            };
            row.accept(token, &sp, &self.engine.tokenizer);
            column.tokens.push(token);
            column.masks.push(mask);
            column.probs.push(prob);
        }
        self.generated += 1;
        if self.rows.iter().all(|r| r.completed) {
            self.finish = Some(FinishReason::Stop);
        } else if self.generated >= self.params.max_tokens {
            self.finish = Some(FinishReason::Length);
        } else if self.cache.len() >= self.cache.capacity() {
            self.finish = Some(FinishReason::ContextFull);
        } else {
            let (model, cache) = (&self.engine.model, &mut self.cache);
            let tokens = &column.tokens;
            self.logits = model.get_device().exclusive(|| {
                model
                    .forward(tokens, (n, 1), ForwardOptions::new().kv_cache(cache))?
                    .to_vec_f32()
            })??;
        }
        Ok(column)
    }
}

impl Iterator for EngineStream<'_> {
    type Item = Result<TokenColumn>;

    fn next(&mut self) -> Option<Result<TokenColumn>> {
        if self.finish.is_some() || self.failed || self.params.max_tokens == 0 {
            if self.params.max_tokens == 0 {
                self.finish = Some(FinishReason::Length);
            }
            return None;
        }
        let r = self.step();
        self.failed = r.is_err();
        Some(r)
    }
}

/// softmax(logits)[token], in f64.
fn probability(logits: &[f32], token: u32) -> f32 {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - m).exp()).sum();
    ((logits[token as usize] as f64 - m).exp() / sum) as f32
}

#[cfg(test)]
pub(crate) mod tests;
