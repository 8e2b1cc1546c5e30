//! Optimizer updates: the fused AdamW step, and Muon's Newton-Schulz orthogonalisation (the
//! quintic iteration with coefficients (3.4445, -4.7750, 2.0315), Frobenius-normalised by
//! `norm + 1e-7`, run on the transpose when rows > cols), composed of the matmul and
//! element-wise kernels.

use cubecl::prelude::*;

use crate::broadcast::binary_broadcast;
use crate::check::{f64s, Check, Ctx};
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::elementwise::{binary, unary, Binary, Unary};
use crate::launch::{self, item_index};
use crate::layout::transpose;
use crate::matmul::{
    matmul, packed_matmul_ext, takes_packed, Epilogue, Gemm, MatmulShape, PackedExtras,
};
use crate::reduce::{reduce_rows, Reduce};
use crate::{Client, Handle, Result};

/// Hyper-parameters of one AdamW step (PyTorch's AdamW semantics: decoupled weight decay,
/// bias-corrected moments, eps added to the corrected root).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWStep {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment (the mean of the gradients).
    pub beta1: f32,
    /// Decay of the second moment (the mean of their squares).
    pub beta2: f32,
    /// Added to the root of the corrected second moment.
    pub eps: f32,
    /// Decoupled weight decay: the parameter shrinks by `lr * weight_decay` of itself.
    pub weight_decay: f32,
    /// 1-based step number (for the bias corrections).
    pub step: u32,
}

impl AdamWStep {
    fn corrections(&self) -> (f32, f32) {
        let t = self.step as i32;
        (
            1.0 - (self.beta1 as f64).powi(t) as f32,
            1.0 - (self.beta2 as f64).powi(t) as f32,
        )
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn adamw_kernel<F: Float>(
    param: &mut [F],
    grad: &[F],
    m: &mut [f32],
    v: &mut [f32],
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    decay: f32,
    bc1: f32,
    bc2_sqrt: f32,
    steps: usize,
    #[comptime] blocked: bool,
) {
    for s in 0..steps {
        let i = item_index(s, steps, blocked);
        if i < param.len() {
            let g = f32::cast_from(grad[i]);
            let mi = beta1 * m[i] + (1.0 - beta1) * g;
            let vi = beta2 * v[i] + (1.0 - beta2) * g * g;
            m[i] = mi;
            v[i] = vi;
            let p = f32::cast_from(param[i]) * decay;
            let denom = vi.sqrt() / bc2_sqrt + eps;
            param[i] = F::cast_from(p - (lr / bc1) * mi / denom);
        }
    }
}

/// One AdamW step in place on `param` (dtype `F`, `len` elements) with f32 moments `m`, `v`.
pub fn adamw_step<F: KernelFloat>(
    client: &Client,
    param: &Handle,
    grad: &Handle,
    m: &Handle,
    v: &Handle,
    len: usize,
    h: &AdamWStep,
) -> Result<()> {
    launch::check_size("adamw", "param", param, &[len], F::DTYPE)?;
    launch::check_size("adamw", "grad", grad, &[len], F::DTYPE)?;
    launch::check_words("adamw", "exp_avg", m, &[len])?;
    launch::check_words("adamw", "exp_avg_sq", v, &[len])?;
    if h.step == 0 {
        return Err(crate::KernelError::unsupported(
            "adamw",
            "steps count from 1",
        ));
    }
    if len == 0 {
        return Ok(());
    }
    let (bc1, bc2) = h.corrections();
    let g = launch::elemwise(&DeviceInfo::of(client), len);
    adamw_kernel::launch::<F>(
        client,
        g.cube_count,
        g.cube_dim,
        launch::buffer("adamw", "param", param, len, F::DTYPE.size())?,
        launch::buffer("adamw", "grad", grad, len, F::DTYPE.size())?,
        launch::buffer("adamw", "m", m, len, 4)?,
        launch::buffer("adamw", "v", v, len, 4)?,
        h.lr,
        h.beta1,
        h.beta2,
        h.eps,
        1.0 - h.lr * h.weight_decay,
        bc1,
        bc2.sqrt(),
        g.steps,
        g.blocked,
    );
    Ok(())
}

/// Plain-Rust reference of [`adamw_step`]; updates the slices in place.
pub fn adamw_step_ref(
    param: &mut [f64],
    grad: &[f64],
    m: &mut [f64],
    v: &mut [f64],
    h: &AdamWStep,
) {
    let (b1, b2) = (h.beta1 as f64, h.beta2 as f64);
    let bc1 = 1.0 - b1.powi(h.step as i32);
    let bc2 = 1.0 - b2.powi(h.step as i32);
    for i in 0..param.len() {
        m[i] = b1 * m[i] + (1.0 - b1) * grad[i];
        v[i] = b2 * v[i] + (1.0 - b2) * grad[i] * grad[i];
        param[i] *= 1.0 - h.lr as f64 * h.weight_decay as f64;
        let denom = v[i].sqrt() / bc2.sqrt() + h.eps as f64;
        param[i] -= h.lr as f64 / bc1 * m[i] / denom;
    }
}

/// Muon's quintic coefficients.
pub const NS_COEFFS: (f32, f32, f32) = (3.4445, -4.7750, 2.0315);

/// Newton-Schulz orthogonalisation of a (rows, cols) matrix with `steps` quintic iterations.
pub fn newton_schulz<F: KernelFloat>(
    client: &Client,
    g: &Handle,
    rows: usize,
    cols: usize,
    steps: usize,
) -> Result<Handle> {
    let (a, b, c) = NS_COEFFS;
    let coeffs = vec![(a as f64, b as f64, c as f64); steps];
    orthogonalise::<F>(client, g, (rows, cols), &coeffs, (1.0, 1e-7))
}

/// The quintic iteration shared by Muon's Newton-Schulz and HEAD's Polar Express: `X = G /
/// (||G||_F * norm.0 + norm.1)` (on the device, no round trip to the host), then per
/// coefficient triple `X = a X + (b A + c A^2) X` with `A = X X^T`, run on the transpose when
/// rows > cols (so `A` is the smaller Gram matrix).
pub fn orthogonalise<F: KernelFloat>(
    client: &Client,
    g: &Handle,
    (rows, cols): (usize, usize),
    coeffs: &[(f64, f64, f64)],
    norm: (f32, f32),
) -> Result<Handle> {
    orthogonalise_batched::<F>(client, g, (1, rows, cols), coeffs, norm)
}

/// [`orthogonalise`] of `batch` matrices stacked (batch, rows, cols), each on its own (its own
/// norm; batched products): one launch per stage for the whole stack, as HEAD's `MuonAdamW`
/// stacks the matrices of one shape.
pub fn orthogonalise_batched<F: KernelFloat>(
    client: &Client,
    g: &Handle,
    (batch, rows, cols): (usize, usize, usize),
    coeffs: &[(f64, f64, f64)],
    norm: (f32, f32),
) -> Result<Handle> {
    launch::check_size("orthogonalise", "g", g, &[batch, rows, cols], F::DTYPE)?;
    let tall = rows > cols;
    let (r, c) = if tall { (cols, rows) } else { (rows, cols) };
    let mut x = if tall {
        transpose::<F>(client, g, batch, rows, cols)?
    } else {
        g.clone()
    };
    let row_ms = reduce_rows::<F>(client, &x, batch * r, c, Reduce::MeanSquare)?;
    let total = reduce_rows::<F>(client, &row_ms, batch, r, Reduce::Sum)?;
    let mut n = total;
    for op in [
        Unary::Affine {
            mul: c as f32,
            add: 0.0,
        },
        Unary::Sqrt,
        Unary::Affine {
            mul: norm.0,
            add: norm.1,
        },
    ] {
        n = unary::<F>(client, &n, batch, op)?;
    }
    x = binary_broadcast::<F>(
        client,
        (&x, &[batch, r, c]),
        (&n, &[batch, 1, 1]),
        Binary::Div,
        0.0,
        0.0,
    )?
    .0;
    let gram_s = MatmulShape::batched(batch, r, r, c, false, true);
    let square_s = MatmulShape::batched(batch, r, r, r, false, false);
    let px_s = MatmulShape::batched(batch, r, c, r, false, false);
    if [gram_s, square_s, px_s]
        .iter()
        .all(|s| takes_packed::<F>(client, s))
    {
        x = quintic_packed::<F>(client, x, (gram_s, square_s, px_s), coeffs)?;
    } else {
        x = quintic::<F>(client, x, (gram_s, square_s, px_s), coeffs)?;
    }
    if tall {
        x = transpose::<F>(client, &x, batch, r, c)?;
    }
    Ok(x)
}

/// The quintic iterations of [`orthogonalise_batched`] from normalised `x` (batch, r, c), r <=
/// c, each product its own [`matmul`] and each sum an elementwise launch: any device.
fn quintic<F: KernelFloat>(
    client: &Client,
    mut x: Handle,
    (gram_s, square_s, px_s): (MatmulShape, MatmulShape, MatmulShape),
    coeffs: &[(f64, f64, f64)],
) -> Result<Handle> {
    let (batch, r, c) = (px_s.batch, px_s.m, px_s.n);
    for &(a, b, cc) in coeffs {
        let gram = matmul::<F>(client, &x, &x, &gram_s)?;
        let gram2 = matmul::<F>(client, &gram, &gram, &square_s)?;
        let poly = binary::<F>(
            client,
            &gram,
            &gram2,
            batch * r * r,
            Binary::Axpby,
            b as f32,
            cc as f32,
        )?;
        let px = matmul::<F>(client, &poly, &x, &px_s)?;
        x = binary::<F>(client, &x, &px, batch * r * c, Binary::Axpby, a as f32, 1.0)?;
    }
    Ok(x)
}

/// [`quintic`] with the packed CPU GEMM's extras ([`PackedExtras`]), three launches of the
/// product kernel per iteration and no elementwise ones: `A = X X^T` and `b A + c A A` are
/// symmetric, so only their upper micro-tiles are computed (about 56% of a 256 x 256 output)
/// and read back symmetrically; both sums are fused into the products' writes. The same
/// arithmetic as [`quintic`] up to f32 rounding.
fn quintic_packed<F: KernelFloat>(
    client: &Client,
    mut x: Handle,
    (gram_s, square_s, px_s): (MatmulShape, MatmulShape, MatmulShape),
    coeffs: &[(f64, f64, f64)],
) -> Result<Handle> {
    let es = F::DTYPE.size();
    let (batch, r, c) = (px_s.batch, px_s.m, px_s.n);
    for &(a, b, cc) in coeffs {
        let gram = client.empty(batch * r * r * es);
        let sym = PackedExtras {
            sym_out: true,
            ..PackedExtras::default()
        };
        packed_matmul_ext::<F>(client, Gemm::new(&x, &x, &gram, &gram_s), sym)?;
        // poly = b A + c A A.
        let poly = client.empty(batch * r * r * es);
        let fused = PackedExtras {
            sym_a: true,
            sym_b: true,
            sym_out: true,
            epilogue: Some(Epilogue {
                alpha: cc as f32,
                beta: b as f32,
                c: &gram,
            }),
        };
        packed_matmul_ext::<F>(client, Gemm::new(&gram, &gram, &poly, &square_s), fused)?;
        // X = a X + poly X.
        let next = client.empty(batch * r * c * es);
        let step = PackedExtras {
            sym_a: true,
            epilogue: Some(Epilogue {
                alpha: 1.0,
                beta: a as f32,
                c: &x,
            }),
            ..PackedExtras::default()
        };
        packed_matmul_ext::<F>(client, Gemm::new(&poly, &x, &next, &px_s), step)?;
        x = next;
    }
    Ok(x)
}

/// Plain-Rust reference of [`newton_schulz`], in f64.
pub fn newton_schulz_ref(g: &[f64], rows: usize, cols: usize, steps: usize) -> Vec<f64> {
    let tall = rows > cols;
    let (r, c) = if tall { (cols, rows) } else { (rows, cols) };
    let mut x = if tall {
        crate::layout::transpose_ref(g, 1, rows, cols)
    } else {
        g.to_vec()
    };
    let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt() + 1e-7;
    x.iter_mut().for_each(|v| *v /= norm);
    let mm = |p: &[f64], q: &[f64], n: usize, k: usize, m: usize, tq: bool| -> Vec<f64> {
        // (n, k) @ (k, m), q given as (m, k) when tq
        let mut out = vec![0.0; n * m];
        for i in 0..n {
            for j in 0..m {
                out[i * m + j] = (0..k)
                    .map(|l| p[i * k + l] * if tq { q[j * k + l] } else { q[l * m + j] })
                    .sum();
            }
        }
        out
    };
    let (a, b, cc) = (NS_COEFFS.0 as f64, NS_COEFFS.1 as f64, NS_COEFFS.2 as f64);
    for _ in 0..steps {
        let gram = mm(&x, &x, r, c, r, true);
        let gram2 = mm(&gram, &gram, r, r, r, false);
        let poly: Vec<f64> = gram
            .iter()
            .zip(&gram2)
            .map(|(p, q)| b * p + cc * q)
            .collect();
        let px = mm(&poly, &x, r, r, c, false);
        x = x.iter().zip(&px).map(|(p, q)| a * p + q).collect();
    }
    if tall {
        crate::layout::transpose_ref(&x, 1, r, c)
    } else {
        x
    }
}

pub(crate) fn checks() -> Vec<Check> {
    crate::check::check_list![
        "optim.adamw" => check_adamw,
        "optim.newton_schulz" => check_newton_schulz,
    ]
}

fn check_adamw(ctx: &mut Ctx) -> Result<()> {
    for len in [1, 7, 33, 1000] {
        let mut p = ctx.rand(len, -1.0, 1.0);
        let mut m = ctx.rand_f32(len, -0.1, 0.1);
        let mut v = ctx.rand_f32(len, 0.0, 0.01);
        let (hp, hm, hv) = (
            ctx.upload(&p),
            crate::check::upload_f32(ctx.client, &m),
            crate::check::upload_f32(ctx.client, &v),
        );
        let (mut rp, mut rm, mut rv) = (f64s(&p), f64s(&m), f64s(&v));
        for step in 1..=3 {
            let g = ctx.rand(len, -1.0, 1.0);
            let h = AdamWStep {
                lr: 0.01,
                beta1: 0.8,
                beta2: 0.95,
                eps: 1e-10,
                weight_decay: 0.1,
                step,
            };
            let hg = ctx.upload(&g);
            crate::with_float!(ctx.dtype, F => adamw_step::<F>(ctx.client, &hp, &hg, &hm, &hv, len, &h))?;
            adamw_step_ref(&mut rp, &f64s(&g), &mut rm, &mut rv, &h);
        }
        p = ctx.download(&hp)?;
        m = crate::check::download(ctx.client, crate::DType::F32, &hm)?;
        v = crate::check::download(ctx.client, crate::DType::F32, &hv)?;
        let case = format!("len={len} steps=3");
        let tol = ctx.tol(4.0);
        ctx.compare("adamw param", &case, &p, &rp, tol);
        ctx.compare("adamw exp_avg", &case, &m, &rm, 1e-5);
        ctx.compare("adamw exp_avg_sq", &case, &v, &rv, 1e-5);
    }
    Ok(())
}

fn check_newton_schulz(ctx: &mut Ctx) -> Result<()> {
    for (rows, cols) in [(1, 1), (5, 9), (33, 7), (48, 48), (64, 17)] {
        let g = ctx.rand(rows * cols, -1.0, 1.0);
        let hg = ctx.upload(&g);
        let x =
            crate::with_float!(ctx.dtype, F => newton_schulz::<F>(ctx.client, &hg, rows, cols, 5))?;
        let got = ctx.download(&x)?;
        let want = newton_schulz_ref(&f64s(&g), rows, cols, 5);
        let tol = ctx.tol(64.0).max(2e-5);
        ctx.compare("newton_schulz", &format!("{rows}x{cols}"), &got, &want, tol);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::check::check_tests!(adamw_matches_reference => "optim.adamw", newton_schulz_matches_reference => "optim.newton_schulz");

    /// nanochat's own Newton-Schulz output (float64 PyTorch) on a tall gradient matrix.
    #[test]
    fn newton_schulz_matches_nanochat_fixture() {
        let client = crate::Backend::Cpu.client().unwrap();
        for name in ["gqa_tiny", "mha_small"] {
            let fixture = crate::check::f64_fixture(&format!("reference/{name}.safetensors"));
            let read = |n: &str| fixture[n].clone();
            let (input, shape) = read("muon.input");
            let (want, _) = read("muon.ns5");
            let (rows, cols) = (shape[0], shape[1]);
            // The f64 reference reproduces PyTorch...
            let ours = newton_schulz_ref(&input, rows, cols, 5);
            let (rel, _) =
                crate::check::errors(&ours.iter().map(|&v| v as f32).collect::<Vec<_>>(), &want);
            assert!(rel < 1e-6, "{name}: reference vs nanochat: {rel:e}");
            // ...and the f32 kernels reproduce it to 1e-4.
            let input32: Vec<f32> = input.iter().map(|&v| v as f32).collect();
            let h = crate::check::upload_f32(&client, &input32);
            let x = newton_schulz::<f32>(&client, &h, rows, cols, 5).unwrap();
            let got = crate::check::download(&client, crate::DType::F32, &x).unwrap();
            let (rel, _) = crate::check::errors(&got, &want);
            assert!(rel < 1e-4, "{name}: kernels vs nanochat: {rel:e}");
        }
    }
}
