//! What a [`GPT::forward`](super::GPT::forward) computes and how: nanochat's
//! `forward(idx, targets=None, kv_cache=None, loss_reduction='mean')`, plus the tape and which
//! positions' logits.

use super::KvCache;
use crate::ops::Reduction;
use crate::Tape;

/// Which positions' logits a forward computes. Anything but `All` is for inference (no tape,
/// no targets): the (B, T, vocab) logits, the largest tensor of a forward, are then never made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogitPositions<'a> {
    /// Every position: (B, T, vocab).
    #[default]
    All,
    /// Each row's last position: (B, 1, vocab) (what a prefill needs).
    Last,
    /// Row `b`'s position `p[b]` (one per row, each below T): (B, 1, vocab) (scoring
    /// right-padded prompts: the model is causal, so padding after a position changes nothing).
    PerRow(&'a [usize]),
    /// Any positions of the (B T) flattened rows, repeats allowed: entry `i` is position
    /// `f[i] % T` of row `f[i] / T`; (N, 1, vocab).
    Flat(&'a [usize]),
}

/// The options of [`GPT::forward`](super::GPT::forward); the default is inference of every
/// position's logits. Set fields directly or chain the builder methods:
/// `ForwardOptions::new().tape(&tape).targets(&targets, Reduction::Mean)`.
#[derive(Default)]
pub struct ForwardOptions<'a> {
    /// Record every op for [`Tape::backward`] (training). None: inference, nothing is saved.
    pub tape: Option<&'a Tape>,
    /// Run positions `cache.len()..cache.len() + T` of each sequence, appending their keys and
    /// values (the cache advances by T). Inference only.
    pub kv_cache: Option<&'a mut KvCache>,
    /// Which positions' logits (every position unless told).
    pub positions: LogitPositions<'a>,
    /// Return the cross-entropy against these targets (B T of them; -1 = ignored) instead of
    /// the logits: a scalar (`Reduction::Mean`) or (B, T) (`Reduction::None`).
    pub targets: Option<(&'a [i32], Reduction)>,
}

impl<'a> ForwardOptions<'a> {
    /// Inference of every position's logits (the default).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records on `tape` (training).
    pub fn tape(mut self, tape: &'a Tape) -> Self {
        self.tape = Some(tape);
        self
    }

    /// Decodes with `cache`.
    pub fn kv_cache(mut self, cache: &'a mut KvCache) -> Self {
        self.kv_cache = Some(cache);
        self
    }

    /// Computes the logits of `positions` only.
    pub fn positions(mut self, positions: LogitPositions<'a>) -> Self {
        self.positions = positions;
        self
    }

    /// Returns the loss against `targets`, reduced by `reduction` (nanochat's
    /// `loss_reduction`).
    pub fn targets(mut self, targets: &'a [i32], reduction: Reduction) -> Self {
        self.targets = Some((targets, reduction));
        self
    }
}
