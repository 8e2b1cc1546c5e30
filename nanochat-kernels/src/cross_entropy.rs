//! Fused log-softmax + cross-entropy with `ignore_index = -1`.
//!
//! Forward: per row, `lse = logsumexp(logits)` and `loss = lse - logits[target]` (0 for ignored
//! rows); both f32. The mean over non-ignored targets is `sum(loss) / count`, taken by the caller
//! (which knows the targets on the host). Backward: `dlogits = g_row * (softmax - onehot)` from
//! the saved `lse` and a per-row gradient `g_row` (`g / count` for the mean, or per-token
//! gradients for the 'none' reduction); ignored rows get zeros.
//!
//! Targets are i32; anything outside `0..vocab` counts as ignored in the kernel so it can never
//! read out of bounds (callers validate targets and report bad ones before launching).

use cubecl::prelude::*;

use crate::check::{f64s, Check, Ctx};
use crate::dtype::KernelFloat;
use crate::launch::{self, RowLaunch, row_index, row_max_sumexp};
use crate::{Client, Handle, Result};

#[cube(launch)]
fn cross_entropy_forward_kernel<F: Float, N: Size>(
    logits: &[Vector<F, N>],
    targets: &[i32],
    loss: &mut [f32],
    lse: &mut [f32],
    rows: usize,
    vocab: usize,
    #[comptime] plane: bool,
) {
    let row = row_index();
    if row < rows {
        let vecs = vocab / N::value();
        let base = row * vecs;
        let (m, s) = row_max_sumexp::<F, N>(logits, base, vecs, plane);
        let l = m + s.ln();
        if UNIT_POS_X == 0 {
            let t = targets[row];
            let mut out = 0.0f32;
            if t >= 0 && (t as usize) < vocab {
                let tu = t as usize;
                let v = logits[base + tu / N::value()];
                let lane = tu % N::value();
                let mut picked = 0.0f32;
                #[unroll]
                for k in 0..N::value() {
                    if k == lane {
                        picked = f32::cast_from(v.extract(k));
                    }
                }
                out = l - picked;
            }
            loss[row] = out;
            lse[row] = l;
        }
    }
}

#[cube(launch)]
fn cross_entropy_backward_kernel<F: Float, N: Size>(
    logits: &[Vector<F, N>],
    targets: &[i32],
    lse: &[f32],
    grad_rows: &[f32],
    dlogits: &mut [Vector<F, N>],
    rows: usize,
    vocab: usize,
) {
    let row = row_index();
    if row < rows {
        let vecs = vocab / N::value();
        let base = row * vecs;
        let t = targets[row];
        let valid = t >= 0 && (t as usize) < vocab;
        let g = if valid { grad_rows[row] } else { 0.0f32 };
        let gv = Vector::<f32, N>::new(g);
        let lv = Vector::<f32, N>::new(lse[row]);
        let mut c = UNIT_POS_X as usize;
        while c < vecs {
            let mut d = (Vector::<f32, N>::cast_from(logits[base + c]) - lv).exp() * gv;
            if valid && (t as usize) / N::value() == c {
                let lane = (t as usize) % N::value();
                #[unroll]
                for k in 0..N::value() {
                    if k == lane {
                        d.insert(k, d.extract(k) - g);
                    }
                }
            }
            dlogits[base + c] = Vector::cast_from(d);
            c += CUBE_DIM_X as usize;
        }
    }
}

/// Per-row loss and logsumexp (both f32, `rows` values) of `logits` (rows, vocab) against i32
/// `targets` (rows).
pub fn cross_entropy_forward<F: KernelFloat>(
    client: &Client,
    logits: &Handle,
    targets: &Handle,
    rows: usize,
    vocab: usize,
) -> Result<(Handle, Handle)> {
    launch::check_size("cross_entropy", "logits", logits, &[rows, vocab], F::DTYPE)?;
    launch::check_words("cross_entropy", "targets", targets, &[rows])?;
    if vocab == 0 {
        return Err(crate::KernelError::shape("cross_entropy", &[&[rows, vocab]], "vocab is empty"));
    }
    let loss = client.empty(rows.max(1) * 4);
    let lse = client.empty(rows.max(1) * 4);
    if rows == 0 {
        return Ok((loss, lse));
    }
    let RowLaunch { vs, geo: g, vecs: n } = launch::row_launch(client, F::DTYPE.size(), rows, vocab);
    unsafe {
        cross_entropy_forward_kernel::launch::<F>(
            client,
            g.cube_count,
            g.cube_dim,
            vs,
            BufferArg::from_raw_parts(logits.clone(), n),
            BufferArg::from_raw_parts(targets.clone(), rows),
            BufferArg::from_raw_parts(loss.clone(), rows),
            BufferArg::from_raw_parts(lse.clone(), rows),
            rows,
            vocab,
            g.plane,
        )
    };
    Ok((loss, lse))
}

/// Gradient of the per-row losses with respect to the logits, given the saved `lse` and the
/// gradient of each row's loss `grad_rows` (f32, rows).
pub fn cross_entropy_backward<F: KernelFloat>(
    client: &Client,
    logits: &Handle,
    targets: &Handle,
    lse: &Handle,
    grad_rows: &Handle,
    rows: usize,
    vocab: usize,
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
    let RowLaunch { vs, geo: g, vecs: n } = launch::row_launch(client, F::DTYPE.size(), rows, vocab);
    unsafe {
        cross_entropy_backward_kernel::launch::<F>(
            client,
            g.cube_count,
            g.cube_dim,
            vs,
            BufferArg::from_raw_parts(logits.clone(), n),
            BufferArg::from_raw_parts(targets.clone(), rows),
            BufferArg::from_raw_parts(lse.clone(), rows),
            BufferArg::from_raw_parts(grad_rows.clone(), rows),
            BufferArg::from_raw_parts(out.clone(), n),
            rows,
            vocab,
        )
    };
    Ok(out)
}

/// Plain-Rust reference of [`cross_entropy_forward`]: (loss, lse) per row.
pub fn cross_entropy_forward_ref(logits: &[f64], targets: &[i32], vocab: usize) -> (Vec<f64>, Vec<f64>) {
    let mut loss = Vec::new();
    let mut lse = Vec::new();
    for (row, &t) in logits.chunks(vocab).zip(targets) {
        let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let l = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        lse.push(l);
        loss.push(if t >= 0 && (t as usize) < vocab { l - row[t as usize] } else { 0.0 });
    }
    (loss, lse)
}

/// Plain-Rust reference of [`cross_entropy_backward`].
pub fn cross_entropy_backward_ref(logits: &[f64], targets: &[i32], grad_rows: &[f64], vocab: usize) -> Vec<f64> {
    let (_, lse) = cross_entropy_forward_ref(logits, targets, vocab);
    let mut out = Vec::with_capacity(logits.len());
    for (r, row) in logits.chunks(vocab).enumerate() {
        let t = targets[r];
        let valid = t >= 0 && (t as usize) < vocab;
        for (j, v) in row.iter().enumerate() {
            let g = if valid { grad_rows[r] } else { 0.0 };
            let onehot = if valid && j == t as usize { 1.0 } else { 0.0 };
            out.push(g * ((v - lse[r]).exp() - onehot));
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
    vec![Check { name: "cross_entropy", run: check_cross_entropy }]
}

fn check_cross_entropy(ctx: &mut Ctx) -> Result<()> {
    use rand::Rng;
    for (rows, vocab) in [(1, 1), (3, 7), (6, 33), (5, 64), (4, 1000), (7, 4099)] {
        let case = format!("rows={rows} vocab={vocab}");
        let x = ctx.rand(rows * vocab, -6.0, 6.0);
        let targets: Vec<i32> = (0..rows)
            .map(|r| if r % 3 == 1 { -1 } else { ctx.rng.random_range(0..vocab as i32) })
            .collect();
        let (hx, ht) = (ctx.upload(&x), upload_targets(ctx.client, &targets));
        let (hl, hlse) = crate::with_float!(ctx.dtype, F =>
            cross_entropy_forward::<F>(ctx.client, &hx, &ht, rows, vocab))?;
        let loss = crate::check::download(ctx.client, crate::DType::F32, &hl)?;
        let (want_loss, _) = cross_entropy_forward_ref(&f64s(&x), &targets, vocab);
        ctx.compare("cross_entropy.forward", &case, &loss, &want_loss, 1e-5);

        let grad_rows = ctx.rand_f32(rows, 0.1, 1.0);
        let hg = crate::check::upload_f32(ctx.client, &grad_rows);
        let hd = crate::with_float!(ctx.dtype, F =>
            cross_entropy_backward::<F>(ctx.client, &hx, &ht, &hlse, &hg, rows, vocab))?;
        let got = ctx.download(&hd)?;
        let want = cross_entropy_backward_ref(&f64s(&x), &targets, &f64s(&grad_rows), vocab);
        let tol = ctx.tol(8.0).max(1e-5);
        ctx.compare("cross_entropy.backward", &case, &got, &want, tol);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cross_entropy_matches_reference() {
        crate::check::assert_check("cross_entropy");
    }
}
