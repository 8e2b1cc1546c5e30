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
use crate::{CoreError, Grads, Result, Tape, Tensor};

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
    Ok(accumulate_share(model, batches, 0..batches.len())?.acc)
}

/// One rank's part of a step ([`accumulate_share`]).
pub struct Share {
    /// The gradient of this rank's micro-batches, already divided by the step's count of
    /// non-empty micro-batches (all ranks'), so that the sum over ranks is the step's gradient;
    /// its `loss` is the step's only when the share is the whole step.
    pub acc: Accumulated,
    /// Each micro-batch's loss for those of the share, 0 elsewhere (and for empty ones):
    /// summed over ranks, then in order, it gives the step's loss exactly as one process does.
    pub losses: Vec<f64>,
    /// The step's non-empty micro-batches (over all ranks).
    pub used: usize,
}

/// Forward and backward over the micro-batches `share` of a step's `batches` (every rank reads
/// all of the step's micro-batches and computes on its own range, so the data order, the
/// normalisation and the count of empty micro-batches do not depend on the world size). With
/// `share` the whole step this is [`accumulate_gradients`], bit for bit. Errors: as
/// [`accumulate_gradients`]; [`CoreError::InvalidArgument`] for a share outside `batches`.
pub fn accumulate_share(
    model: &GPT,
    batches: &[Batch],
    share: std::ops::Range<usize>,
) -> Result<Share> {
    if share.start > share.end || share.end > batches.len() {
        return Err(CoreError::invalid(
            "micro-batch share",
            format!("{share:?}"),
            format!("a range within the step's {} micro-batches", batches.len()),
        ));
    }
    let params = model.parameters();
    let masked = batches.iter().map(masked_rows).sum();
    let used = batches.iter().filter(|b| has_supervised_target(b)).count();
    let mut out = Accumulated {
        grads: Grads::default(),
        loss: None,
        masked_rows: masked,
        empty_micro_batches: batches.len() - used,
    };
    let mut losses = vec![0.0f64; batches.len()];
    if used == 0 {
        return Ok(Share {
            acc: out,
            losses,
            used,
        });
    }
    let scale = 1.0 / used as f32;
    for i in share {
        let batch = &batches[i];
        if !has_supervised_target(batch) {
            continue;
        }
        let tape = Tape::watching(&params);
        let loss = model.forward(
            &batch.inputs,
            (batch.batch, batch.seq),
            ForwardOptions::new()
                .tape(&tape)
                .targets(&batch.targets, Reduction::Mean),
        )?;
        losses[i] = loss.to_scalar()? as f64;
        let scaled = ops::scale(Some(&tape), &loss, scale)?;
        out.grads.merge(tape.backward(&scaled)?)?;
    }
    out.loss = Some(step_loss(&losses, used));
    Ok(Share {
        acc: out,
        losses,
        used,
    })
}

/// The step's loss from every micro-batch's (0 for empty ones), summed in order over `used`
/// non-empty micro-batches.
pub fn step_loss(losses: &[f64], used: usize) -> f64 {
    losses.iter().sum::<f64>() / used as f64
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
