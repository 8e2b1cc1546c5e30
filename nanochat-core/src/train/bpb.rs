//! Bits per byte (nanochat's `evaluate_bpb`): the summed cross-entropy (nats) of every target
//! that stands for text, over `ln 2` times the UTF-8 bytes of those targets. Special tokens
//! (0 bytes) and ignored targets (-1) count for neither, so the figure is comparable across
//! tokenizers.

use crate::data::Batch;
use crate::model::{ForwardOptions, GPT};
use crate::ops::Reduction;
use crate::Result;

/// Sums (nats, bytes) of one batch.
pub fn batch_nats_bytes(model: &GPT, batch: &Batch, token_bytes: &[u32]) -> Result<(f64, u64)> {
    let losses = model
        .forward(
            &batch.inputs,
            (batch.batch, batch.seq),
            ForwardOptions::new().targets(&batch.targets, Reduction::None),
        )?
        .to_vec_f32()?;
    let (mut nats, mut bytes) = (0.0f64, 0u64);
    for (&l, &t) in losses.iter().zip(&batch.targets) {
        if t < 0 {
            continue;
        }
        let b = token_bytes.get(t as usize).copied().unwrap_or(0) as u64;
        if b > 0 {
            nats += l as f64;
            bytes += b;
        }
    }
    Ok((nats, bytes))
}

/// Bits per byte over `batches`. Rows without a supervised target (all -1) add nothing; NaN
/// when no target of text is left at all (never an error).
pub fn evaluate_bpb<'a>(
    model: &GPT,
    batches: impl IntoIterator<Item = &'a Batch>,
    token_bytes: &[u32],
) -> Result<f64> {
    let (mut nats, mut bytes) = (0.0, 0u64);
    for b in batches {
        let (n, by) = batch_nats_bytes(model, b, token_bytes)?;
        nats += n;
        bytes += by;
    }
    Ok(bits_per_byte(nats, bytes))
}

/// Bits per byte over `batches` across the ranks of `comm`: batch i is evaluated by rank
/// `i % world_size`, and every batch's (nats, bytes) is gathered and summed in batch order, so
/// every rank gets the one-process figure exactly, whatever the world size (nanochat's
/// `evaluate_bpb` all-reduces the sums; summing in one order keeps the figure independent of
/// the cluster). Errors: as [`evaluate_bpb`]; the communicator's.
pub fn evaluate_bpb_across(
    model: &GPT,
    batches: &[Batch],
    token_bytes: &[u32],
    comm: &dyn crate::dist::Communicator,
) -> Result<f64> {
    let (rank, world) = (comm.rank(), comm.world_size());
    if world == 1 {
        return evaluate_bpb(model, batches, token_bytes);
    }
    let mut parts = vec![0.0f64; 2 * batches.len()];
    for (i, b) in batches
        .iter()
        .enumerate()
        .filter(|(i, _)| i % world == rank)
    {
        let (n, by) = batch_nats_bytes(model, b, token_bytes)?;
        parts[2 * i] = n;
        parts[2 * i + 1] = by as f64;
    }
    comm.all_reduce_f64(&mut parts, crate::dist::ReduceOp::Sum)?;
    let (mut nats, mut bytes) = (0.0, 0u64);
    for p in parts.chunks(2) {
        nats += p[0];
        bytes += p[1] as u64;
    }
    Ok(bits_per_byte(nats, bytes))
}

/// Summed nats over `ln 2` times the bytes; NaN when there is no byte.
fn bits_per_byte(nats: f64, bytes: u64) -> f64 {
    if bytes == 0 {
        f64::NAN
    } else {
        nats / (std::f64::consts::LN_2 * bytes as f64)
    }
}
