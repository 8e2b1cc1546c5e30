//! Clap parsers of the sampling flags of chat-cli, chat-web, chat-eval and chat-rl (`-t`, `-k`,
//! `-m`, `-n`): the ranges of a chat request (`nanochat_core::engine::request`), checked on the
//! number as written when the flags are parsed, before any model is loaded. The error names
//! the setting and its range.

use nanochat_core::engine::request::{RequestError, MAX_TOKENS, NUM_SAMPLES, TEMPERATURE, TOP_K};
use nanochat_core::engine::Limit;

/// `-t`: a number in 0-2.
pub fn temperature(s: &str) -> Result<f32, RequestError> {
    Ok(TEMPERATURE.float("temperature", s)? as f32)
}

/// `-k`: an integer in 1-200.
pub fn top_k(s: &str) -> Result<usize, RequestError> {
    Ok(TOP_K.int("top_k", s)? as usize)
}

/// `-m` of chat-cli and chat-web: an integer in 1-4096.
pub fn max_tokens(s: &str) -> Result<usize, RequestError> {
    Ok(MAX_TOKENS.int("max_tokens", s)? as usize)
}

/// `-m` of chat-eval and chat-rl: an integer in 1-4096.
pub fn max_new_tokens(s: &str) -> Result<usize, RequestError> {
    Ok(MAX_TOKENS.int("max_new_tokens", s)? as usize)
}

/// `-n` of chat-eval: an integer in 1-8.
pub fn num_samples(s: &str) -> Result<usize, RequestError> {
    Ok(NUM_SAMPLES.int("num_samples", s)? as usize)
}

/// `-n` of chat-rl: an integer in 2-8 (an advantage needs two samples of a prompt).
pub fn rl_num_samples(s: &str) -> Result<usize, RequestError> {
    let limit = Limit {
        lo: 2,
        ..NUM_SAMPLES
    };
    Ok(limit.int("num_samples", s)? as usize)
}
