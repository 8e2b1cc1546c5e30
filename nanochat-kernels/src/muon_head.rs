//! nanochat HEAD's Muon step (`nanochat/optim.py` at 92d63d4, `muon_step_fused` of
//! `MuonAdamW`) for one (rows, cols) matrix P with gradient G:
//!
//! ```text
//! M = M + (1 - mu) (G - M);   U = G + mu (M - G)                  momentum, Nesterov
//! U = U * (||U||_F / sqrt(rows)) / max(||U_row||, 1e-6)           MuonEq: rows to the RMS row norm
//! X = PolarExpress(U)                                             5 steps, per-step coefficients
//! X = X * sqrt(min(rows, cols)) / max(||X||_F, 1e-6)              Muon+
//! NorMuon (per row when rows >= cols, else per column; n = the other side):
//!   v = mean of X^2 along the other side; S = S + (1 - beta2) (v - S)
//!   step = 1 / sqrt(max(S, 1e-10)); X = X * step * ||X||_F / max(sqrt(sum(v n step^2)), 1e-10)
//! lr' = lr * sqrt(max(1, rows / cols))
//! P = P - lr' X - lr' wd P [X P >= 0]                            cautious weight decay
//! ```
//!
//! The matrix products and element-wise passes run as kernels; the per-row (or per-column)
//! statistics of MuonEq and NorMuon, vectors of `rows` or `cols` numbers, are finished on the
//! host in f64. [`muon_head_step_ref`] and its stages are the plain-Rust f64 reference.

use cubecl::prelude::*;

use crate::broadcast::binary_broadcast;
use crate::check::{f64s, Check, Ctx};
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::elementwise::{axpby_inplace, binary, Binary};
use crate::launch::{self, item_index};
use crate::layout::{transpose, write_rows};
use crate::optim::orthogonalise_batched;
use crate::reduce::{reduce_rows, Reduce};
use crate::{Client, Handle, Result};

/// Polar Express's coefficients (a, b, c) per iteration (Amsel et al. 2025; num_iters 5, safety
/// 2e-2, cushion 2), as HEAD uses them.
pub const POLAR_EXPRESS_COEFFS: [(f64, f64, f64); 5] = [
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
];

/// The hyper-parameters of one HEAD Muon step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MuonHeadStep {
    /// The group's learning rate (before the `sqrt(max(1, rows / cols))` factor).
    pub lr: f32,
    /// The momentum `mu` (scheduled: 0.85 -> 0.97 -> 0.90).
    pub momentum: f32,
    /// NorMuon's second-moment decay (0.9).
    pub beta2: f32,
    /// Cautious weight decay (scheduled; scaled by the same factor as the rate).
    pub weight_decay: f32,
    /// Polar Express iterations (5).
    pub ns_steps: usize,
}

/// Whether NorMuon keeps one statistic per row (rows >= cols) or per column.
pub fn normuon_per_row(rows: usize, cols: usize) -> bool {
    rows >= cols
}

// ---------------------------------------------------------------------------------------------
// f64 reference

fn frob(x: &[f64]) -> f64 {
    x.iter().map(|v| v * v).sum::<f64>().sqrt()
}

fn mm(p: &[f64], q: &[f64], n: usize, k: usize, m: usize, tp: bool, tq: bool) -> Vec<f64> {
    // op(p) (n, k) @ op(q) (k, m); p stored (k, n) when tp, q stored (m, k) when tq.
    let mut out = vec![0.0; n * m];
    for i in 0..n {
        for j in 0..m {
            out[i * m + j] = (0..k)
                .map(|l| {
                    let a = if tp { p[l * n + i] } else { p[i * k + l] };
                    let b = if tq { q[j * k + l] } else { q[l * m + j] };
                    a * b
                })
                .sum();
        }
    }
    out
}

/// MuonEq: every row of `u` (rows, cols) rescaled to the RMS row norm `||U||_F / sqrt(rows)`.
pub fn muoneq_ref(u: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let target = frob(u) / (rows as f64).sqrt();
    u.chunks(cols)
        .flat_map(|row| {
            let f = target / frob(row).max(1e-6);
            row.iter().map(move |v| v * f).collect::<Vec<_>>()
        })
        .collect()
}

/// Polar Express: `X = G / (||G||_F * 1.01 + 1e-6)`, then `steps` iterations
/// `X = a X + X (b A + c A^2)` with `A = X^T X` for a tall matrix (rows > cols), else
/// `X = a X + (b A + c A^2) X` with `A = X X^T`.
pub fn polar_express_ref(g: &[f64], rows: usize, cols: usize, steps: usize) -> Vec<f64> {
    let norm = frob(g) * 1.01 + 1e-6;
    let mut x: Vec<f64> = g.iter().map(|v| v / norm).collect();
    let tall = rows > cols;
    for &(a, b, c) in POLAR_EXPRESS_COEFFS.iter().take(steps) {
        if tall {
            let gram = mm(&x, &x, cols, rows, cols, true, false); // X^T X (cols, cols)
            let gram2 = mm(&gram, &gram, cols, cols, cols, false, false);
            let poly: Vec<f64> = gram
                .iter()
                .zip(&gram2)
                .map(|(p, q)| b * p + c * q)
                .collect();
            let xp = mm(&x, &poly, rows, cols, cols, false, false);
            x = x.iter().zip(&xp).map(|(p, q)| a * p + q).collect();
        } else {
            let gram = mm(&x, &x, rows, cols, rows, false, true); // X X^T (rows, rows)
            let gram2 = mm(&gram, &gram, rows, rows, rows, false, false);
            let poly: Vec<f64> = gram
                .iter()
                .zip(&gram2)
                .map(|(p, q)| b * p + c * q)
                .collect();
            let px = mm(&poly, &x, rows, rows, cols, false, false);
            x = x.iter().zip(&px).map(|(p, q)| a * p + q).collect();
        }
    }
    x
}

/// Muon+: `X * sqrt(min(rows, cols)) / max(||X||_F, 1e-6)`.
pub fn muon_plus_ref(x: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    let f = (rows.min(cols) as f64).sqrt() / frob(x).max(1e-6);
    x.iter().map(|v| v * f).collect()
}

/// NorMuon's statistic of `x`: the mean of squares of every row (rows >= cols) or column.
fn normuon_vmean(x: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    if normuon_per_row(rows, cols) {
        x.chunks(cols)
            .map(|r| r.iter().map(|v| v * v).sum::<f64>() / cols as f64)
            .collect()
    } else {
        (0..cols)
            .map(|j| (0..rows).map(|i| x[i * cols + j].powi(2)).sum::<f64>() / rows as f64)
            .collect()
    }
}

/// NorMuon's per-row (or per-column) factors from the statistic `vmean`, updating the second
/// moment `s` in place (`S = S + (1 - beta2) (vmean - S)`); the Frobenius norm is kept.
pub fn normuon_factors(vmean: &[f64], s: &mut [f64], n: usize, beta2: f64) -> Vec<f64> {
    let n = n as f64;
    let vnorm = (vmean.iter().sum::<f64>() * n).sqrt();
    let mut step = Vec::with_capacity(s.len());
    for (si, &v) in s.iter_mut().zip(vmean) {
        *si += (1.0 - beta2) * (v - *si);
        step.push(1.0 / si.max(1e-10).sqrt());
    }
    let vnorm2 = vmean
        .iter()
        .zip(&step)
        .map(|(v, st)| v * n * st * st)
        .sum::<f64>()
        .sqrt();
    step.iter()
        .map(|st| st * vnorm / vnorm2.max(1e-10))
        .collect()
}

/// NorMuon on `x` with its second moment `s` ((rows) or (cols) values), in place.
pub fn normuon_ref(x: &mut [f64], s: &mut [f64], rows: usize, cols: usize, beta2: f64) {
    let per_row = normuon_per_row(rows, cols);
    let vmean = normuon_vmean(x, rows, cols);
    let f = normuon_factors(&vmean, s, if per_row { cols } else { rows }, beta2);
    for (i, v) in x.iter_mut().enumerate() {
        *v *= if per_row { f[i / cols] } else { f[i % cols] };
    }
}

/// One HEAD Muon step in f64: updates `p`, the momentum `m` and NorMuon's `s` in place.
pub fn muon_head_step_ref(
    p: &mut [f64],
    g: &[f64],
    m: &mut [f64],
    s: &mut [f64],
    rows: usize,
    cols: usize,
    h: &MuonHeadStep,
) {
    let mu = h.momentum as f64;
    for (mi, gi) in m.iter_mut().zip(g) {
        *mi += (1.0 - mu) * (gi - *mi);
    }
    let u: Vec<f64> = g
        .iter()
        .zip(m.iter())
        .map(|(gi, mi)| gi + mu * (mi - gi))
        .collect();
    let u = muoneq_ref(&u, rows, cols);
    let x = polar_express_ref(&u, rows, cols, h.ns_steps);
    let mut x = muon_plus_ref(&x, rows, cols);
    normuon_ref(&mut x, s, rows, cols, h.beta2 as f64);
    let lr = h.lr as f64 * (rows as f64 / cols as f64).max(1.0).sqrt();
    let wd = h.weight_decay as f64;
    for (pi, xi) in p.iter_mut().zip(&x) {
        let mask = if xi * *pi >= 0.0 { 1.0 } else { 0.0 };
        *pi -= lr * xi + lr * wd * *pi * mask;
    }
}

// ---------------------------------------------------------------------------------------------
// Kernels

/// `p = p - lr x - lr wd p [x p >= 0]`: Muon's update with cautious weight decay.
#[cube(launch)]
fn cautious_update_kernel<F: Float>(
    p: &mut [F],
    x: &[F],
    lr: f32,
    decay: f32,
    steps: usize,
    #[comptime] blocked: bool,
) {
    for s in 0..steps {
        let i = item_index(s, steps, blocked);
        if i < p.len() {
            let pi = f32::cast_from(p[i]);
            let xi = f32::cast_from(x[i]);
            let mut out = pi - lr * xi;
            if xi * pi >= 0.0 {
                out -= decay * pi;
            }
            p[i] = F::cast_from(out);
        }
    }
}

/// Polar Express on the device (see [`polar_express_ref`]) of each of the `batch` (rows, cols)
/// matrices stacked in `g`, each with its own norm ([`orthogonalise_batched`]).
pub fn polar_express<F: KernelFloat>(
    client: &Client,
    g: &Handle,
    (batch, rows, cols): (usize, usize, usize),
    steps: usize,
) -> Result<Handle> {
    let coeffs = &POLAR_EXPRESS_COEFFS[..steps.min(POLAR_EXPRESS_COEFFS.len())];
    orthogonalise_batched::<F>(client, g, (batch, rows, cols), coeffs, (1.01, 1e-6))
}

/// Mean squares of the rows of `x` (rows, cols), on the host.
fn row_mean_squares<F: KernelFloat>(
    client: &Client,
    x: &Handle,
    rows: usize,
    cols: usize,
) -> Result<Vec<f64>> {
    let ms = reduce_rows::<F>(client, x, rows, cols, Reduce::MeanSquare)?;
    Ok(f64s(&crate::check::download(client, F::DTYPE, &ms)?))
}

/// `x` (`g` stacked (rows, cols) matrices) times one factor per row (`per_row`: `g * rows`
/// factors) or one per column of each matrix (`g * cols` factors). The side is given, never
/// inferred from the shape: a 1-row matrix scaled per column is not a per-row scale.
fn scale_lines<F: KernelFloat>(
    client: &Client,
    x: &Handle,
    (g, rows, cols): (usize, usize, usize),
    f: &[f64],
    per_row: bool,
) -> Result<Handle> {
    let f32s: Vec<f32> = f.iter().map(|&v| v as f32).collect();
    let hf = crate::check::upload_as::<F>(client, &f32s);
    let fs = if per_row { [g, rows, 1] } else { [g, 1, cols] };
    Ok(binary_broadcast::<F>(
        client,
        (x, &[g, rows, cols]),
        (&hf, &fs),
        Binary::Mul,
        0.0,
        0.0,
    )?
    .0)
}

/// One HEAD Muon step of `param` (rows, cols) in place, with its momentum buffer `momentum`
/// (same shape and dtype) and NorMuon's second moment `second` (`rows` or `cols` f64 values,
/// [`normuon_per_row`]), both updated in place: [`muon_head_step_group`] of one matrix.
/// Errors: buffers of the wrong size.
#[allow(clippy::too_many_arguments)]
pub fn muon_head_step<F: KernelFloat>(
    client: &Client,
    param: &Handle,
    grad: &Handle,
    momentum: &Handle,
    second: &mut [f64],
    rows: usize,
    cols: usize,
    h: &MuonHeadStep,
) -> Result<()> {
    let mut one = [MuonMatrix {
        param,
        grad,
        momentum,
        second,
    }];
    muon_head_step_group::<F>(client, &mut one, rows, cols, h)
}

/// One matrix of a [`muon_head_step_group`]: the parameter, its gradient and momentum buffer
/// ((rows, cols), one dtype) and NorMuon's second moment (`rows` or `cols` f64 values).
pub struct MuonMatrix<'a> {
    /// The parameter, updated in place.
    pub param: &'a Handle,
    /// Its gradient.
    pub grad: &'a Handle,
    /// Its momentum buffer, updated in place.
    pub momentum: &'a Handle,
    /// NorMuon's second moment, updated in place.
    pub second: &'a mut [f64],
}

/// One HEAD Muon step of every matrix of `mats`, all (rows, cols): HEAD's `MuonAdamW` steps the
/// matrices of one shape as one stack (`muon_step_fused` over `torch.stack`), and so does this.
/// Each matrix's momentum and update are its own launches; MuonEq, Polar Express, Muon+ and
/// NorMuon run once over the stack (each matrix with its own norms and statistics). Errors:
/// buffers of the wrong size.
pub fn muon_head_step_group<F: KernelFloat>(
    client: &Client,
    mats: &mut [MuonMatrix],
    rows: usize,
    cols: usize,
    h: &MuonHeadStep,
) -> Result<()> {
    let op = "muon_head";
    let (g, len) = (mats.len(), rows * cols);
    let per_row = normuon_per_row(rows, cols);
    let n_second = if per_row { rows } else { cols };
    for m in mats.iter() {
        for (name, b) in [
            ("param", m.param),
            ("grad", m.grad),
            ("momentum", m.momentum),
        ] {
            launch::check_size(op, name, b, &[rows, cols], F::DTYPE)?;
        }
        if m.second.len() != n_second {
            return Err(crate::KernelError::unsupported(
                op,
                format!(
                    "second moment of {} values for a {rows}x{cols} matrix",
                    m.second.len()
                ),
            ));
        }
    }
    if g == 0 {
        return Ok(());
    }
    let mu = h.momentum;
    let u = client.empty(g * len * F::DTYPE.size());
    for (i, m) in mats.iter().enumerate() {
        axpby_inplace::<F>(client, m.momentum, m.grad, len, mu, 1.0 - mu)?;
        let ui = binary::<F>(client, m.grad, m.momentum, len, Binary::Axpby, 1.0 - mu, mu)?;
        write_rows::<F>(client, &u, g, &ui, 1, 1, len, i)?;
    }
    // MuonEq, each matrix's rows to its RMS row norm.
    let ms = row_mean_squares::<F>(client, &u, g * rows, cols)?;
    let mut f = Vec::with_capacity(g * rows);
    for msi in ms.chunks(rows) {
        let target = (msi.iter().sum::<f64>() * cols as f64 / rows as f64).sqrt();
        f.extend(
            msi.iter()
                .map(|m| target / (m * cols as f64).sqrt().max(1e-6)),
        );
    }
    let u = scale_lines::<F>(client, &u, (g, rows, cols), &f, true)?;
    let x = polar_express::<F>(client, &u, (g, rows, cols), h.ns_steps)?;
    // Muon+, each matrix to Frobenius norm sqrt(min(rows, cols)).
    let ms = row_mean_squares::<F>(client, &x, g * rows, cols)?;
    let mut f = Vec::with_capacity(g * rows);
    for msi in ms.chunks(rows) {
        let norm = (msi.iter().sum::<f64>() * cols as f64).sqrt();
        let s = (rows.min(cols) as f64).sqrt() / norm.max(1e-6);
        f.extend(std::iter::repeat_n(s, rows));
    }
    let x = scale_lines::<F>(client, &x, (g, rows, cols), &f, true)?;
    // NorMuon, each matrix with its own second moment.
    let vmean = if per_row {
        row_mean_squares::<F>(client, &x, g * rows, cols)?
    } else {
        let xt = transpose::<F>(client, &x, g, rows, cols)?;
        row_mean_squares::<F>(client, &xt, g * cols, rows)?
    };
    let other = if per_row { cols } else { rows };
    let mut f = Vec::with_capacity(g * n_second);
    for (m, v) in mats.iter_mut().zip(vmean.chunks(n_second)) {
        f.extend(normuon_factors(v, m.second, other, h.beta2 as f64));
    }
    let x = scale_lines::<F>(client, &x, (g, rows, cols), &f, per_row)?;
    // The update with cautious weight decay, each matrix from its slice of the stack.
    let lr = h.lr * (rows as f32 / cols as f32).max(1.0).sqrt();
    let geo = launch::elemwise(&DeviceInfo::of(client), len);
    let es = F::DTYPE.size();
    for (i, m) in mats.iter().enumerate() {
        let xi = x.clone().offset_start((i * len * es) as u64);
        cautious_update_kernel::launch::<F>(
            client,
            geo.cube_count.clone(),
            geo.cube_dim,
            launch::buffer(op, "param", m.param, len, es)?,
            launch::buffer(op, "x", &xi, len, es)?,
            lr,
            lr * h.weight_decay,
            geo.steps,
            geo.blocked,
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Checks

pub(crate) fn checks() -> Vec<Check> {
    vec![
        Check {
            name: "optim.muon_head",
            run: check_muon_head,
        },
        Check {
            name: "optim.muon_head_group",
            run: check_muon_head_group,
        },
    ]
}

/// The hyper-parameters of step `step` of the checks (momentum scheduled across steps).
fn check_step(step: usize) -> MuonHeadStep {
    MuonHeadStep {
        lr: 0.02,
        momentum: 0.9 + 0.02 * step as f32,
        beta2: 0.9,
        weight_decay: 0.5,
        ns_steps: 5,
    }
}

/// Compares the update `got - start` with the reference's `want - start`: updates, not
/// parameters (a wrong update hides under a large parameter).
fn compare_update(ctx: &mut Ctx, name: &str, case: &str, start: &[f32], got: &[f32], want: &[f64]) {
    let d_got: Vec<f32> = got.iter().zip(start).map(|(a, b)| a - b).collect();
    let d_want: Vec<f64> = want.iter().zip(start).map(|(a, &b)| a - b as f64).collect();
    let tol = ctx.tol(256.0).max(1e-4);
    ctx.compare(name, case, &d_got, &d_want, tol);
}

fn check_muon_head(ctx: &mut Ctx) -> Result<()> {
    for (rows, cols) in [(1, 1), (5, 9), (33, 7), (16, 16), (2, 12), (1, 12)] {
        let len = rows * cols;
        let p = ctx.rand(len, -1.0, 1.0);
        let (hp, hm) = (ctx.upload(&p), ctx.upload(&vec![0.0; len]));
        let (mut rp, mut rm) = (f64s(&p), vec![0.0; len]);
        let n = if normuon_per_row(rows, cols) {
            rows
        } else {
            cols
        };
        let (mut s, mut rs) = (vec![0.0; n], vec![0.0; n]);
        for step in 0..2 {
            let g = ctx.rand(len, -1.0, 1.0);
            let h = check_step(step);
            let hg = ctx.upload(&g);
            crate::with_float!(ctx.dtype, F => muon_head_step::<F>(ctx.client, &hp, &hg, &hm, &mut s, rows, cols, &h))?;
            muon_head_step_ref(&mut rp, &f64s(&g), &mut rm, &mut rs, rows, cols, &h);
        }
        let got = ctx.download(&hp)?;
        compare_update(
            ctx,
            "muon_head update",
            &format!("{rows}x{cols}"),
            &p,
            &got,
            &rp,
        );
    }
    Ok(())
}

/// A stack of three matrices against three single f64 steps: wide (NorMuon per column), tall
/// (per row) and one row wide (`ve_gate` with one kv head: per column), two steps each, every
/// matrix with its own values and state.
fn check_muon_head_group(ctx: &mut Ctx) -> Result<()> {
    for (rows, cols) in [(5, 9), (33, 7), (1, 12)] {
        let len = rows * cols;
        let n = if normuon_per_row(rows, cols) {
            rows
        } else {
            cols
        };
        let ps: Vec<Vec<f32>> = (0..3).map(|_| ctx.rand(len, -1.0, 1.0)).collect();
        let hps: Vec<Handle> = ps.iter().map(|p| ctx.upload(p)).collect();
        let hms: Vec<Handle> = (0..3).map(|_| ctx.upload(&vec![0.0; len])).collect();
        let mut seconds = vec![vec![0.0; n]; 3];
        let mut rps: Vec<Vec<f64>> = ps.iter().map(|p| f64s(p)).collect();
        let mut rms = vec![vec![0.0; len]; 3];
        let mut rss = vec![vec![0.0; n]; 3];
        for step in 0..2 {
            let h = check_step(step);
            // Gradients of different scales, so that a norm shared across the stack shows.
            let gs: Vec<Vec<f32>> = (0..3)
                .map(|i| {
                    let s = [1.0, 10.0, 0.1][i];
                    ctx.rand(len, -s, s)
                })
                .collect();
            let hgs: Vec<Handle> = gs.iter().map(|g| ctx.upload(g)).collect();
            let mut mats: Vec<MuonMatrix> = hps
                .iter()
                .zip(&hgs)
                .zip(&hms)
                .zip(seconds.iter_mut())
                .map(|(((param, grad), momentum), second)| MuonMatrix {
                    param,
                    grad,
                    momentum,
                    second,
                })
                .collect();
            crate::with_float!(ctx.dtype, F => muon_head_step_group::<F>(ctx.client, &mut mats, rows, cols, &h))?;
            for i in 0..3 {
                muon_head_step_ref(
                    &mut rps[i],
                    &f64s(&gs[i]),
                    &mut rms[i],
                    &mut rss[i],
                    rows,
                    cols,
                    &h,
                );
            }
        }
        for i in 0..3 {
            let got = ctx.download(&hps[i])?;
            let case = format!("{rows}x{cols} matrix {i}");
            compare_update(ctx, "muon_head group update", &case, &ps[i], &got, &rps[i]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::check::check_tests!(muon_head_matches_reference => "optim.muon_head", muon_head_group_matches_reference => "optim.muon_head_group");

    /// The f64 reference against HEAD's own stages (`head_muon.safetensors`): MuonEq, Polar
    /// Express, Muon+ and the full first-step direction, for a tall and a wide matrix.
    #[test]
    fn reference_matches_heads_stages() {
        let fixture = crate::check::f64_fixture("reference/head/head_muon.safetensors");
        let read = |n: &str| fixture[n].clone();
        let rel = |got: &[f64], want: &[f64]| {
            let num: f64 = got.iter().zip(want).map(|(a, b)| (a - b).powi(2)).sum();
            (num / want.iter().map(|b| b * b).sum::<f64>()).sqrt()
        };
        for name in ["muon", "muon_wide"] {
            let (g, shape) = read(&format!("{name}.input"));
            let (r, c) = (shape[0], shape[1]);
            let stage = |s: &str| read(&format!("{name}.{s}")).0;
            assert!(
                rel(&polar_express_ref(&g, r, c, 5), &stage("polar_express")) < 1e-12,
                "{name}"
            );
            let eq = muoneq_ref(&g, r, c);
            assert!(rel(&eq, &stage("muoneq")) < 1e-12, "{name}");
            let ortho = polar_express_ref(&eq, r, c, 5);
            assert!(rel(&ortho, &stage("orthogonalised")) < 1e-12, "{name}");
            let plus = muon_plus_ref(&ortho, r, c);
            assert!(rel(&plus, &stage("muonplus")) < 1e-12, "{name}");
            // The full direction from zero state, momentum 0, beta2 0.9: minus the new
            // parameter of a step at lr 1, wd 0, P = 0.
            let mut p = vec![0.0; r * c];
            let (mut m, mut s) = (
                vec![0.0; r * c],
                vec![0.0; if normuon_per_row(r, c) { r } else { c }],
            );
            let h = MuonHeadStep {
                lr: 1.0,
                momentum: 0.0,
                beta2: 0.9,
                weight_decay: 0.0,
                ns_steps: 5,
            };
            muon_head_step_ref(&mut p, &g, &mut m, &mut s, r, c, &h);
            // HEAD's fused step takes the shape factor sqrt(max(1, r / c)) with its rate.
            let factor = (r as f64 / c as f64).max(1.0).sqrt();
            let dir: Vec<f64> = p.iter().map(|v| -v / factor).collect();
            assert!(
                rel(&dir, &stage("update")) < 1e-12,
                "{name}: {}",
                rel(&dir, &stage("update"))
            );
        }
    }
}
