//! Gradient accumulation over the micro-batches of one optimizer step, where a row or a whole
//! micro-batch with no supervised token (every target -1: a prompt longer than the row, a
//! truncated conversation, an empty assistant turn) is a normal event.
//!
//! Normalisation: each micro-batch's loss is the mean cross-entropy over its supervised targets
//! (as nanochat's model forward), and the step's objective is the mean of those losses over the
//! micro-batches that have at least one supervised target. With no empty micro-batch this is
//! nanochat's `loss / grad_accum_steps` (chat_sft.py, mid_train.py, base_train.py) exactly. An
//! empty micro-batch is left out: no forward, no loss, no gradient, and it does not count in the
//! divisor, so a step's gradient equals that of the same step without its empty micro-batches.
//! Here nanochat deviates: PyTorch's mean over only ignored targets is NaN, which its
//! accumulation would spread into every weight.

use crate::data::Batch;
use crate::model::{ForwardOptions, GPT};
use crate::ops::{self, Reduction};
use crate::{Grads, Result, Tape, Tensor};

/// What the micro-batches of one step gave ([`accumulate_gradients`]).
pub struct Accumulated {
    /// The gradient of the step's objective (the mean over the non-empty micro-batches of each
    /// one's mean loss); empty when every micro-batch was.
    pub grads: Grads,
    /// That objective's value (nats per supervised token, averaged over the non-empty
    /// micro-batches); `None` when every micro-batch was empty.
    pub loss: Option<f64>,
    /// Rows, over all the micro-batches, whose targets are all -1 ([`masked_rows`]).
    pub masked_rows: usize,
    /// Micro-batches whose targets are all -1: left out of the step.
    pub empty_micro_batches: usize,
}

impl Accumulated {
    /// Whether no micro-batch had a supervised target: the optimizer step is to be skipped.
    pub fn is_empty(&self) -> bool {
        self.loss.is_none()
    }
}

/// Rows of `batch` (`batch.batch` rows of `batch.seq` targets) whose targets are all -1.
pub fn masked_rows(batch: &Batch) -> usize {
    if batch.seq == 0 {
        return 0;
    }
    batch
        .targets
        .chunks(batch.seq)
        .filter(|row| row.iter().all(|&t| t < 0))
        .count()
}

/// Whether `batch` has at least one supervised target (a target other than -1).
pub fn has_supervised_target(batch: &Batch) -> bool {
    batch.targets.iter().any(|&t| t >= 0)
}

/// Forward and backward of `model` over `batches` (the micro-batches of one optimizer step),
/// recording every parameter; empty micro-batches are counted and skipped (see the module doc
/// for the normalisation). Errors: those of [`GPT::forward`] (shapes, targets out of the vocabulary).
pub fn accumulate_gradients(model: &GPT, batches: &[Batch]) -> Result<Accumulated> {
    let params = model.parameters();
    let masked = batches.iter().map(masked_rows).sum();
    let used: Vec<&Batch> = batches
        .iter()
        .filter(|b| has_supervised_target(b))
        .collect();
    let mut out = Accumulated {
        grads: Grads::default(),
        loss: None,
        masked_rows: masked,
        empty_micro_batches: batches.len() - used.len(),
    };
    if used.is_empty() {
        return Ok(out);
    }
    let scale = 1.0 / used.len() as f32;
    let mut loss_sum = 0.0f64;
    for batch in &used {
        let tape = Tape::watching(&params);
        let loss = model.forward(
            &batch.inputs,
            (batch.batch, batch.seq),
            ForwardOptions::new()
                .tape(&tape)
                .targets(&batch.targets, Reduction::Mean),
        )?;
        loss_sum += loss.to_scalar()? as f64;
        let scaled = ops::scale(Some(&tape), &loss, scale)?;
        out.grads.merge(tape.backward(&scaled)?)?;
    }
    out.loss = Some(loss_sum / used.len() as f64);
    Ok(out)
}

/// Scales `grads` of `params` so that their global L2 norm is at most `max_norm`, as
/// `torch.nn.utils.clip_grad_norm_` does (coefficient `max_norm / (norm + 1e-6)`, clamped to
/// 1; nanochat v1's `base_train` clips at 1.0). Returns the norm before clipping. Parameters
/// without a gradient are skipped.
pub fn clip_grad_norm(grads: &mut Grads, params: &[Tensor], max_norm: f64) -> Result<f64> {
    let mut sum = 0.0f64;
    for p in params {
        if let Some(g) = grads.get(p) {
            sum += g
                .to_vec_f32()?
                .iter()
                .map(|&x| (x as f64) * (x as f64))
                .sum::<f64>();
        }
    }
    let norm = sum.sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for p in params {
            if let Some(g) = grads.take(p) {
                grads.accumulate(p.id(), crate::ops::scale(None, &g, coef as f32)?)?;
            }
        }
    }
    Ok(norm)
}
