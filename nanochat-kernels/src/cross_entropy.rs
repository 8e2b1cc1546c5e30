//! Fused log-softmax + cross-entropy with `ignore_index = -1`, optionally fused with nanochat's
//! logit softcap `y = cap * tanh(x / cap)` (the (rows, vocab) softcapped logits are then never
//! stored, which saves two passes over the largest tensor of training).
//!
//! Forward: per row, `lse = logsumexp(y)` and `loss = lse - y[target]` (0 for ignored rows);
//! both f32. The mean over non-ignored targets is `sum(loss) / count`, taken by the caller
//! (which knows the targets on the host). Backward: `dx = g_row * (softmax(y) - onehot)`, times
//! `1 - (y / cap)^2` when capped, from the saved `lse` and a per-row gradient `g_row` (`g /
//! count` for the mean, or per-token gradients for the 'none' reduction); ignored rows get
//! zeros.
//!
//! Targets are i32; anything outside `0..vocab` counts as ignored in the kernel so it can never
//! read out of bounds (callers validate targets and report bad ones before launching).

use cubecl::prelude::*;

use crate::check::{f64s, Check, Ctx};
use crate::dtype::KernelFloat;
use crate::launch::{self, lane_sum, load_capped, row_index, row_max_sumexp, row_sum};
use crate::{Client, Handle, Result};

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn cross_entropy_forward_kernel<F: Float, N: Size>(
    logits: &[Vector<F, N>],
    targets: &[i32],
    loss: &mut [f32],
    lse: &mut [f32],
    rows: usize,
    vocab: usize,
    cap: f32,
    #[comptime] capped: bool,
    #[comptime] bounded: bool,
    #[comptime] plane: bool,
) {
    let row = row_index();
    if row < rows {
        let vecs = vocab / N::value();
        let base = row * vecs;
        let (m, s) = row_max_sumexp::<F, N>(logits, base, vecs, cap, capped, bounded, plane);
        let l = m + s.ln();
        write_row_loss::<F, N>(
            logits,
            loss,
            lse,
            row,
            base,
            targets[row],
            vocab,
            l,
            cap,
            capped,
        );
    }
}

/// The forward with the gradient: per row the loss and lse as [`cross_entropy_forward_kernel`],
/// then (the row still in cache) its gradient for a row gradient of `grad_scale`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn cross_entropy_forward_grad_kernel<F: Float, N: Size>(
    logits: &[Vector<F, N>],
    targets: &[i32],
    loss: &mut [f32],
    lse: &mut [f32],
    dlogits: &mut [Vector<F, N>],
    rows: usize,
    vocab: usize,
    cap: f32,
    grad_scale: f32,
    #[comptime] capped: bool,
    #[comptime] bounded: bool,
    #[comptime] plane: bool,
    #[comptime] stash: bool,
) {
    let row = row_index();
    if row < rows {
        let vecs = vocab / N::value();
        let base = row * vecs;
        let l = if comptime![stash] {
            // One pass that also keeps each softcapped value in the gradient's place, where
            // the second pass (same unit, same positions) reads it back instead of taking
            // its tanh again.
            let cv = Vector::<f32, N>::new(cap);
            let mut sum = Vector::<f32, N>::new(0.0);
            let mut c = UNIT_POS_X as usize;
            while c < vecs {
                let y = load_capped::<F, N>(logits[base + c], cap, capped);
                dlogits[base + c] = Vector::cast_from(y);
                sum += (y - cv).exp();
                c += CUBE_DIM_X as usize;
            }
            cap + row_sum(lane_sum::<N>(sum), plane).ln()
        } else {
            let (m, s) = row_max_sumexp::<F, N>(logits, base, vecs, cap, capped, bounded, plane);
            m + s.ln()
        };
        let t = targets[row];
        write_row_loss::<F, N>(logits, loss, lse, row, base, t, vocab, l, cap, capped);
        write_row_grad::<F, N>(
            logits, dlogits, base, vecs, t, vocab, grad_scale, l, cap, capped, stash,
        );
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn cross_entropy_backward_kernel<F: Float, N: Size>(
    logits: &[Vector<F, N>],
    targets: &[i32],
    lse: &[f32],
    grad_rows: &[f32],
    dlogits: &mut [Vector<F, N>],
    rows: usize,
    vocab: usize,
    cap: f32,
    #[comptime] capped: bool,
) {
    let row = row_index();
    if row < rows {
        let vecs = vocab / N::value();
        write_row_grad::<F, N>(
            logits,
            dlogits,
            row * vecs,
            vecs,
            targets[row],
            vocab,
            grad_rows[row],
            lse[row],
            cap,
            capped,
            false,
        );
    }
}

/// One row's loss `l - y[t]` (0 when `t` is ignored) and logsumexp `l`, written by the row's
/// first unit.
#[cube]
#[allow(clippy::too_many_arguments)]
fn write_row_loss<F: Float, N: Size>(
    logits: &[Vector<F, N>],
    loss: &mut [f32],
    lse: &mut [f32],
    row: usize,
    base: usize,
    t: i32,
    vocab: usize,
    l: f32,
    cap: f32,
    #[comptime] capped: bool,
) {
    if UNIT_POS_X == 0 {
        let mut out = 0.0f32;
        if t >= 0 && (t as usize) < vocab {
            let tu = t as usize;
            let v = load_capped::<F, N>(logits[base + tu / N::value()], cap, capped);
            let lane = tu % N::value();
            let mut picked = 0.0f32;
            #[unroll]
            for k in 0..N::value() {
                if k == lane {
                    picked = v.extract(k);
                }
            }
            out = l - picked;
        }
        loss[row] = out;
        lse[row] = l;
    }
}

/// One row of `g * (softmax(y) - onehot(t))` (times the softcap's derivative when `capped`)
/// from the row's logsumexp `l`; zeros when `t` is ignored. Each unit of the row writes every
/// `CUBE_DIM_X`-th vector. With `stashed`, the softcapped logits are read from `dlogits`
/// (written there by the same unit) instead of recomputed from `logits`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn write_row_grad<F: Float, N: Size>(
    logits: &[Vector<F, N>],
    dlogits: &mut [Vector<F, N>],
    base: usize,
    vecs: usize,
    t: i32,
    vocab: usize,
    g: f32,
    l: f32,
    cap: f32,
    #[comptime] capped: bool,
    #[comptime] stashed: bool,
) {
    let valid = t >= 0 && (t as usize) < vocab;
    let g = if valid { g } else { 0.0f32 };
    let gv = Vector::<f32, N>::new(g);
    let lv = Vector::<f32, N>::new(l);
    let mut c = UNIT_POS_X as usize;
    while c < vecs {
        let y = if comptime![stashed] {
            Vector::<f32, N>::cast_from(dlogits[base + c])
        } else {
            load_capped::<F, N>(logits[base + c], cap, capped)
        };
        let mut d = (y - lv).exp() * gv;
        if valid && (t as usize) / N::value() == c {
            let lane = (t as usize) % N::value();
            #[unroll]
            for k in 0..N::value() {
                if k == lane {
                    d.insert(k, d.extract(k) - g);
                }
            }
        }
        if comptime![capped] {
            let r = y * Vector::new(1.0 / cap);
            d *= Vector::new(1.0) - r * r;
        }
        dlogits[base + c] = Vector::cast_from(d);
        c += CUBE_DIM_X as usize;
    }
}

/// `cap` as the kernels take it: (value, whether to apply it). `None` or 0 means no softcap.
fn cap_args(softcap: Option<f32>) -> (f32, bool) {
    match softcap {
        Some(c) if c > 0.0 => (c, true),
        _ => (1.0, false),
    }
}

/// Per-row loss and logsumexp (both f32, `rows` values) of `logits` (rows, vocab), softcapped
/// first when `softcap` is given, against i32 `targets` (rows).
pub fn cross_entropy_forward<F: KernelFloat>(
    client: &Client,
    logits: &Handle,
    targets: &Handle,
    rows: usize,
    vocab: usize,
    softcap: Option<f32>,
) -> Result<(Handle, Handle)> {
    check_args::<F>("cross_entropy", logits, targets, rows, vocab)?;
    let op = "cross_entropy_forward";
    forward::<F>(client, op, logits, targets, (rows, vocab), softcap, None)
}

/// [`cross_entropy_forward`] and, in the same pass over each row, the gradient of the loss
/// `grad_scale * sum(loss)` with respect to `logits` (dtype `F`, (rows, vocab); ignored rows
/// zero): for the mean over `count` targets, `grad_scale = 1 / count`. Training takes it so the
/// logits are read once (and written once) instead of read in the forward and again in the
/// backward; the caller scales it by the upstream gradient when that is not 1.
pub fn cross_entropy_forward_grad<F: KernelFloat>(
    client: &Client,
    logits: &Handle,
    targets: &Handle,
    rows: usize,
    vocab: usize,
    softcap: Option<f32>,
    grad_scale: f32,
) -> Result<(Handle, Handle, Handle)> {
    let op = "cross_entropy_forward_grad";
    check_args::<F>(op, logits, targets, rows, vocab)?;
    let dlogits = client.empty((rows * vocab).max(1) * F::DTYPE.size());
    let grad = Some((grad_scale, &dlogits));
    let (loss, lse) = forward::<F>(client, op, logits, targets, (rows, vocab), softcap, grad)?;
    Ok((loss, lse, dlogits))
}

/// The forward's operands: `logits` (rows, vocab) of dtype `F` with a non-empty vocabulary,
/// `targets` one i32 per row.
fn check_args<F: KernelFloat>(
    op: &'static str,
    logits: &Handle,
    targets: &Handle,
    rows: usize,
    vocab: usize,
) -> Result<()> {
    launch::check_size(op, "logits", logits, &[rows, vocab], F::DTYPE)?;
    launch::check_words(op, "targets", targets, &[rows])?;
    if vocab == 0 {
        return Err(crate::KernelError::shape(
            op,
            &[&[rows, vocab]],
            "vocab is empty",
        ));
    }
    Ok(())
}

/// The forward of both, on checked operands: (loss, lse), and with `grad` (its scale and
/// buffer) the gradient written too.
fn forward<F: KernelFloat>(
    client: &Client,
    op: &'static str,
    logits: &Handle,
    targets: &Handle,
    (rows, vocab): (usize, usize),
    softcap: Option<f32>,
    grad: Option<(f32, &Handle)>,
) -> Result<(Handle, Handle)> {
    let loss = client.empty(rows.max(1) * 4);
    let lse = client.empty(rows.max(1) * 4);
    if rows == 0 {
        return Ok((loss, lse));
    }
    let (cap, capped) = cap_args(softcap);
    let l = launch::row_launch(client, op, F::DTYPE.size(), rows, vocab);
    let (ax, at) = (
        l.vectors("logits", logits)?,
        l.per_row("targets", targets, 4)?,
    );
    let (aloss, alse) = (l.per_row("loss", &loss, 4)?, l.per_row("lse", &lse, 4)?);
    // One pass when the cap bounds the logits closely enough to stand in for their maximum.
    let bounded = capped && cap <= launch::MAX_BOUNDING_CAP;
    match grad {
        Some((grad_scale, dlogits)) => {
            let adx = l.vectors("dlogits", dlogits)?;
            // f32 only: a bf16 stash would round the softcapped logits the gradient is taken
            // from.
            let stash = bounded && F::DTYPE == crate::DType::F32;
            launch::launch_rows!(cross_entropy_forward_grad_kernel::<F>, client, l; ax, at, aloss, alse, adx, rows, vocab, cap, grad_scale, capped, bounded, l.geo.plane, stash);
        }
        None => {
            launch::launch_rows!(cross_entropy_forward_kernel::<F>, client, l; ax, at, aloss, alse, rows, vocab, cap, capped, bounded, l.geo.plane);
        }
    }
    Ok((loss, lse))
}

/// Gradient of the per-row losses with respect to the (pre-softcap, when `softcap` is given)
/// logits, from the saved `lse` and the gradient of each row's loss `grad_rows` (f32, rows).
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy_backward<F: KernelFloat>(
    client: &Client,
    logits: &Handle,
    targets: &Handle,
    lse: &Handle,
    grad_rows: &Handle,
    rows: usize,
    vocab: usize,
    softcap: Option<f32>,
) -> Result<Handle> {
    let op = "cross_entropy_backward";
    launch::check_size(op, "logits", logits, &[rows, vocab], F::DTYPE)?;
    launch::check_words(op, "targets", targets, &[rows])?;
    launch::check_words(op, "lse", lse, &[rows])?;
    launch::check_words(op, "grad_rows", grad_rows, &[rows])?;
    let out = client.empty(rows * vocab * F::DTYPE.size());
    if rows == 0 || vocab == 0 {
        return Ok(out);
    }
    let (cap, capped) = cap_args(softcap);
    let l = launch::row_launch(client, op, F::DTYPE.size(), rows, vocab);
    let (ax, at) = (
        l.vectors("logits", logits)?,
        l.per_row("targets", targets, 4)?,
    );
    let (alse, ag) = (
        l.per_row("lse", lse, 4)?,
        l.per_row("grad_rows", grad_rows, 4)?,
    );
    let adx = l.vectors("dlogits", &out)?;
    launch::launch_rows!(cross_entropy_backward_kernel::<F>, client, l; ax, at, alse, ag, adx, rows, vocab, cap, capped);
    Ok(out)
}

fn softcap_ref(x: &[f64], softcap: Option<f32>) -> Vec<f64> {
    match softcap {
        Some(c) if c > 0.0 => x.iter().map(|v| c as f64 * (v / c as f64).tanh()).collect(),
        _ => x.to_vec(),
    }
}

/// Plain-Rust reference of [`cross_entropy_forward`]: (loss, lse) per row.
pub fn cross_entropy_forward_ref(
    logits: &[f64],
    targets: &[i32],
    vocab: usize,
    softcap: Option<f32>,
) -> (Vec<f64>, Vec<f64>) {
    let y = softcap_ref(logits, softcap);
    let mut loss = Vec::new();
    let mut lse = Vec::new();
    for (row, &t) in y.chunks(vocab).zip(targets) {
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let l = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        lse.push(l);
        loss.push(if t >= 0 && (t as usize) < vocab {
            l - row[t as usize]
        } else {
            0.0
        });
    }
    (loss, lse)
}

/// Plain-Rust reference of [`cross_entropy_backward`].
pub fn cross_entropy_backward_ref(
    logits: &[f64],
    targets: &[i32],
    grad_rows: &[f64],
    vocab: usize,
    softcap: Option<f32>,
) -> Vec<f64> {
    let y = softcap_ref(logits, softcap);
    let (_, lse) = cross_entropy_forward_ref(logits, targets, vocab, softcap);
    let mut out = Vec::with_capacity(logits.len());
    for (r, row) in y.chunks(vocab).enumerate() {
        let t = targets[r];
        let valid = t >= 0 && (t as usize) < vocab;
        for (j, v) in row.iter().enumerate() {
            let g = if valid { grad_rows[r] } else { 0.0 };
            let onehot = if valid && j == t as usize { 1.0 } else { 0.0 };
            let dcap = match softcap {
                Some(c) if c > 0.0 => 1.0 - (v / c as f64).powi(2),
                _ => 1.0,
            };
            out.push(g * ((v - lse[r]).exp() - onehot) * dcap);
        }
    }
    out
}

/// Uploads i32 targets.
pub fn upload_targets(client: &Client, targets: &[i32]) -> Handle {
    let bytes: Vec<u8> = targets.iter().flat_map(|t| t.to_le_bytes()).collect();
    client.create_from_slice(&bytes)
}

pub(crate) fn checks() -> Vec<Check> {
    crate::check::check_list!["cross_entropy" => check_cross_entropy]
}

fn check_cross_entropy(ctx: &mut Ctx) -> Result<()> {
    use rand::Rng;
    // Caps up to 40 take the one-pass logsumexp (40: its limit), 60 the two-pass one.
    for softcap in [None, Some(15.0f32), Some(2.5), Some(40.0), Some(60.0)] {
        for (rows, vocab) in [(1, 1), (3, 7), (6, 33), (5, 64), (4, 1000), (7, 4099)] {
            let case = format!("rows={rows} vocab={vocab} softcap={softcap:?}");
            let x = ctx.rand(rows * vocab, -6.0, 6.0);
            let targets: Vec<i32> = (0..rows)
                .map(|r| {
                    if r % 3 == 1 {
                        -1
                    } else {
                        ctx.rng.random_range(0..vocab as i32)
                    }
                })
                .collect();
            let (hx, ht) = (ctx.upload(&x), upload_targets(ctx.client, &targets));
            let (hl, hlse) = crate::with_float!(ctx.dtype, F =>
                cross_entropy_forward::<F>(ctx.client, &hx, &ht, rows, vocab, softcap))?;
            let loss = crate::check::download(ctx.client, crate::DType::F32, &hl)?;
            let (want_loss, _) = cross_entropy_forward_ref(&f64s(&x), &targets, vocab, softcap);
            ctx.compare("cross_entropy.forward", &case, &loss, &want_loss, 1e-5);

            let grad_rows = ctx.rand_f32(rows, 0.1, 1.0);
            let hg = crate::check::upload_f32(ctx.client, &grad_rows);
            let hd = crate::with_float!(ctx.dtype, F =>
                cross_entropy_backward::<F>(ctx.client, &hx, &ht, &hlse, &hg, rows, vocab, softcap))?;
            let got = ctx.download(&hd)?;
            let want =
                cross_entropy_backward_ref(&f64s(&x), &targets, &f64s(&grad_rows), vocab, softcap);
            let tol = ctx.tol(8.0).max(1e-5);
            ctx.compare("cross_entropy.backward", &case, &got, &want, tol);

            // The forward with the gradient of the mean: the same losses, and the backward's
            // gradient at 1 / count per row.
            let count = targets.iter().filter(|&&t| t >= 0).count().max(1);
            let scale = 1.0 / count as f32;
            let (hl, _, hd) = crate::with_float!(ctx.dtype, F =>
                cross_entropy_forward_grad::<F>(ctx.client, &hx, &ht, rows, vocab, softcap, scale))?;
            let loss = crate::check::download(ctx.client, crate::DType::F32, &hl)?;
            ctx.compare(
                "cross_entropy.forward_grad loss",
                &case,
                &loss,
                &want_loss,
                1e-5,
            );
            let got = ctx.download(&hd)?;
            let want = cross_entropy_backward_ref(
                &f64s(&x),
                &targets,
                &vec![scale as f64; rows],
                vocab,
                softcap,
            );
            ctx.compare("cross_entropy.forward_grad", &case, &got, &want, tol);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    crate::check::check_tests!(cross_entropy_matches_reference => "cross_entropy");
}
