//! Cross-entropy of logits against integer targets with `ignore_index = -1`, fused with the
//! log-softmax: the mean over non-ignored targets (training) or one loss per position
//! (evaluation, ignored positions give 0).

use nanochat_kernels::cross_entropy::{
    cross_entropy_backward, cross_entropy_forward, cross_entropy_forward_grad, upload_targets,
};
use nanochat_kernels::elementwise::Binary;
use nanochat_kernels::DType;

use super::{sum, zip};
use crate::autograd::recording;
use crate::{CoreError, Result, Tape, Tensor};

/// How per-position losses are combined (nanochat's `loss_reduction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// Mean over targets != -1: a 0-d tensor.
    Mean,
    /// One loss per position, shaped like the targets.
    None,
}

/// Loss of `logits` (..., V) against `targets` (one per row of the logits; -1 = ignored).
pub fn cross_entropy(
    tape: Option<&Tape>,
    logits: &Tensor,
    targets: &[i32],
    reduction: Reduction,
) -> Result<Tensor> {
    fused_cross_entropy(tape, logits, targets, None, reduction)
}

/// [`cross_entropy`] of `cap * tanh(logits / cap)` (nanochat's logit softcap), fused: the
/// softcapped logits are never stored. Equal to `cross_entropy(softcap(logits, cap))`.
pub fn softcap_cross_entropy(
    tape: Option<&Tape>,
    logits: &Tensor,
    targets: &[i32],
    cap: f32,
    reduction: Reduction,
) -> Result<Tensor> {
    fused_cross_entropy(tape, logits, targets, Some(cap), reduction)
}

fn fused_cross_entropy(
    tape: Option<&Tape>,
    logits: &Tensor,
    targets: &[i32],
    softcap: Option<f32>,
    reduction: Reduction,
) -> Result<Tensor> {
    let (rows, vocab) = logits.rows_cols();
    let lead = &logits.shape()[..logits.rank().saturating_sub(1)];
    if targets.len() != rows {
        return Err(CoreError::shape(
            "cross_entropy",
            &[logits.shape(), &[targets.len()]],
            "one target per row of logits",
        ));
    }
    if let Some((i, t)) = targets
        .iter()
        .enumerate()
        .find(|(_, &t)| t < -1 || t >= vocab as i32)
    {
        return Err(CoreError::shape(
            "cross_entropy",
            &[logits.shape()],
            format!("target {t} at position {i} is outside 0..{vocab} (or -1 to ignore)"),
        ));
    }
    let count = targets.iter().filter(|&&t| t >= 0).count();
    if reduction == Reduction::Mean && count == 0 {
        return Err(CoreError::shape(
            "cross_entropy",
            &[logits.shape()],
            "every target is -1: the mean is undefined",
        ));
    }
    let ht = upload_targets(logits.device().client(), targets);
    if let (Some(t), Reduction::Mean) = (recording(tape, &[logits]), reduction) {
        return mean_with_gradient(t, logits, &ht, count, softcap);
    }
    let (losses, lse) = launch!(logits, F, c => cross_entropy_forward::<F>(c, logits.handle(), &ht, rows, vocab, softcap))?;
    // Per-row losses are f32 whatever the logits' dtype.
    let per_row = Tensor::from_handle(logits.device(), losses, lead, DType::F32)?;
    let y = match reduction {
        Reduction::None => per_row,
        Reduction::Mean => super::scale(None, &sum(None, &per_row)?, 1.0 / count as f32)?,
    };
    if let Some(t) = recording(tape, &[logits]) {
        let logits2 = logits.clone();
        let lead = lead.to_vec();
        t.record("cross_entropy", &[logits], &y, move |g, sink| {
            // Gradient of each row's loss (f32).
            let grad_rows = match reduction {
                Reduction::None => g.clone(),
                Reduction::Mean => zip(
                    &Tensor::full(logits2.device(), &lead, 1.0 / count as f32, DType::F32)?,
                    g,
                    Binary::Mul,
                    0.0,
                    0.0,
                )?,
            };
            let dx = launch_wrap!(&logits2, logits2.shape(), F, c => cross_entropy_backward::<F>(c, logits2.handle(), &ht, &lse, grad_rows.handle(), rows, vocab, softcap))?;
            sink.add(0, dx)
        });
    }
    Ok(y)
}

/// The mean loss in training: the forward computes the gradient of the mean in the same pass
/// over the logits ([`cross_entropy_forward_grad`]), so the backward reads nothing of them
/// again; it only scales that gradient by the upstream one when that is not 1 (gradient
/// accumulation divides the loss).
fn mean_with_gradient(
    t: &Tape,
    logits: &Tensor,
    ht: &nanochat_kernels::Handle,
    count: usize,
    softcap: Option<f32>,
) -> Result<Tensor> {
    let (rows, vocab) = logits.rows_cols();
    let lead = &logits.shape()[..logits.rank().saturating_sub(1)];
    let scale = 1.0 / count as f32;
    let (losses, _lse, dlogits) = launch!(logits, F, c => cross_entropy_forward_grad::<F>(c, logits.handle(), ht, rows, vocab, softcap, scale))?;
    let per_row = Tensor::from_handle(logits.device(), losses, lead, DType::F32)?;
    let y = super::scale(None, &sum(None, &per_row)?, scale)?;
    let dx = Tensor::from_handle(logits.device(), dlogits, logits.shape(), logits.dtype())?;
    t.record("cross_entropy", &[logits], &y, move |g, sink| {
        let g = g.to_vec_f32()?[0];
        if g == 1.0 {
            sink.add(0, dx)
        } else {
            sink.add(0, super::scale(None, &dx, g)?)
        }
    });
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::testing::*;
    use nanochat_kernels::cross_entropy::cross_entropy_forward_ref;

    gradcheck_test!(cross_entropy_gradcheck(rows in 1usize..6, vocab in 1usize..17, seed in any::<u64>()) {
        let x = [Input::random(&mut rng(seed), &[rows, vocab], -3.0, 3.0)];
        // Row 1 is ignored; the others have targets.
        let targets: Vec<i32> = (0..rows).map(|i| if i == 1 { -1 } else { ((i * 7 + seed as usize) % vocab) as i32 }).collect();
        let count = targets.iter().filter(|&&t| t >= 0).count() as f64;
        let losses = |xs: &[Vec<f64>], cap| cross_entropy_forward_ref(&xs[0], &targets, vocab, cap).0;
        check!("mean", &x, |t, xs| cross_entropy(t, &xs[0], &targets, Reduction::Mean), |xs| vec![losses(xs, None).iter().sum::<f64>() / count], seed)?;
        check!("none", &x, |t, xs| cross_entropy(t, &xs[0], &targets, Reduction::None), |xs| losses(xs, None), seed)?;
        check!("softcap", &x, |t, xs| softcap_cross_entropy(t, &xs[0], &targets, 2.5, Reduction::Mean), |xs| vec![losses(xs, Some(2.5)).iter().sum::<f64>() / count], seed)?;
    });

    #[test]
    fn bad_targets_are_errors() {
        let dev = crate::Device::cpu().unwrap();
        let x = Tensor::zeros(&dev, &[2, 3], DType::F32).unwrap();
        let e = cross_entropy(None, &x, &[0, 3], Reduction::Mean)
            .unwrap_err()
            .to_string();
        assert!(e.contains("target 3 at position 1"), "{e}");
        assert!(cross_entropy(None, &x, &[-1, -1], Reduction::Mean)
            .unwrap_err()
            .to_string()
            .contains("every target is -1"));
        assert!(cross_entropy(None, &x, &[0], Reduction::Mean).is_err());
        // The fused softcap equals softcap then cross-entropy.
        let logits = Tensor::from_f32(
            &dev,
            &[20.0, -3.0, 1.0, 4.0, 0.5, -30.0],
            &[2, 3],
            DType::F32,
        )
        .unwrap();
        let a = softcap_cross_entropy(None, &logits, &[0, 2], 15.0, Reduction::Mean)
            .unwrap()
            .to_scalar()
            .unwrap();
        let b = cross_entropy(
            None,
            &crate::ops::softcap(None, &logits, 15.0).unwrap(),
            &[0, 2],
            Reduction::Mean,
        )
        .unwrap()
        .to_scalar()
        .unwrap();
        assert!((a - b).abs() < 1e-6, "{a} vs {b}");
        // Uniform logits: loss = ln 3.
        let l = cross_entropy(None, &x, &[0, -1], Reduction::Mean)
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!((l - 3f32.ln()).abs() < 1e-6);
    }

    /// Training's mean loss takes its gradient from the forward: with the upstream gradient 1
    /// (the loss itself, taken unscaled) and 0.25 (a loss divided by 4 accumulation steps) it
    /// equals the reference gradient, ignored rows zero.
    #[test]
    fn the_training_mean_gradient_comes_from_the_forward() {
        use nanochat_kernels::cross_entropy::cross_entropy_backward_ref;
        let dev = crate::Device::cpu().unwrap();
        let (rows, vocab) = (5, 37);
        let values: Vec<f32> = (0..rows * vocab)
            .map(|i| ((i * 7919) % 200) as f32 / 20.0 - 5.0)
            .collect();
        let targets = [3, -1, 36, 0, 17];
        for (upstream, cap) in [(1.0f32, Some(15.0f32)), (0.25, None)] {
            let tape = Tape::new();
            let x =
                tape.watch(&Tensor::from_f32(&dev, &values, &[rows, vocab], DType::F32).unwrap());
            let loss =
                fused_cross_entropy(Some(&tape), &x, &targets, cap, Reduction::Mean).unwrap();
            let loss = crate::ops::scale(Some(&tape), &loss, upstream).unwrap();
            let grads = tape.backward(&loss).unwrap();
            let got = grads.require(&x, "x").unwrap().to_vec_f32().unwrap();
            let xs: Vec<f64> = values.iter().map(|&v| v as f64).collect();
            let g = vec![upstream as f64 / 4.0; rows];
            let want = cross_entropy_backward_ref(&xs, &targets, &g, vocab, cap);
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (*a as f64 - b).abs() < 1e-6,
                    "{upstream} {cap:?} [{i}]: {a} vs {b}"
                );
            }
            assert!(got[vocab..2 * vocab].iter().all(|&v| v == 0.0));
        }
    }
}
