//! Checks of the packed CPU GEMM's extras ([`super::PackedExtras`]): the three products of one
//! Polar Express iteration (`A = X X^T` with a symmetric output, `c A A + b A` read and written
//! symmetrically with a fused sum, `P X + a X` with a symmetric P), against float64.

use super::{matmul_ref, packed_matmul_ext, Epilogue, Gemm, MatmulShape, PackedExtras};
use crate::check::{f64s, Ctx};
use crate::Result;

/// (batch, r, c) of X: ragged row panels (16, 64: not multiples of 12), a ragged column panel
/// (48), depths of one block and of several (304 = 256 + 48; 528), a batch, and the model's
/// 256 x 256.
const CASES: [(usize, usize, usize); 5] = [
    (1, 16, 16),
    (2, 48, 32),
    (1, 32, 304),
    (3, 64, 528),
    (1, 256, 256),
];

/// The upper triangle (j >= i) of each (n, n) matrix of a stack: all a symmetric output
/// promises.
fn upper(x: &[f64], n: usize) -> Vec<f64> {
    let mut out = Vec::new();
    for m in x.chunks(n * n) {
        for i in 0..n {
            out.extend_from_slice(&m[i * n + i..(i + 1) * n]);
        }
    }
    out
}

/// Each (n, n) matrix of a stack rebuilt from its upper triangle (what a symmetric read sees).
fn mirrored(x: &[f32], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for (b, m) in x.chunks(n * n).enumerate() {
        for i in 0..n {
            for j in 0..n {
                out[b * n * n + i * n + j] = m[i.min(j) * n + i.max(j)] as f64;
            }
        }
    }
    out
}

pub(super) fn check_packed_extras(ctx: &mut Ctx) -> Result<()> {
    let (a, b, c) = (3.5, -4.75, 2.0);
    for (batch, r, cols) in CASES {
        let case = format!("{batch}x{r}x{cols}");
        let x = ctx.rand(batch * r * cols, -1.0, 1.0);
        let hx = ctx.upload(&x);
        // Outputs start as NaN: a symmetric output's unwritten part must never be read.
        let nan = |ctx: &Ctx, n: usize| ctx.upload(&vec![f32::NAN; n]);
        let tol = |ctx: &Ctx, k: usize| ctx.tol(4.0) + 2e-7 * (k as f64).sqrt();

        let gram_s = MatmulShape::batched(batch, r, r, cols, false, true);
        let gram = nan(ctx, batch * r * r);
        let sym_out = PackedExtras {
            sym_out: true,
            ..PackedExtras::default()
        };
        crate::with_float!(ctx.dtype, F => packed_matmul_ext::<F>(ctx.client, Gemm::new(&hx, &hx, &gram, &gram_s), sym_out))?;
        let got_gram = ctx.download(&gram)?;
        let want = matmul_ref(&f64s(&x), &f64s(&x), &gram_s);
        let (got_u, want_u) = (upper(&f64s(&got_gram), r), upper(&want, r));
        let got_u: Vec<f32> = got_u.iter().map(|&v| v as f32).collect();
        let t = tol(ctx, cols);
        ctx.compare(
            "matmul (packed, X X^T symmetric)",
            &case,
            &got_u,
            &want_u,
            t,
        );

        // poly = c A A + b A, A read from its upper triangle.
        let sq_s = MatmulShape::batched(batch, r, r, r, false, false);
        let poly = nan(ctx, batch * r * r);
        let fused = PackedExtras {
            sym_a: true,
            sym_b: true,
            sym_out: true,
            epilogue: Some(Epilogue {
                alpha: c,
                beta: b,
                c: &gram,
            }),
        };
        crate::with_float!(ctx.dtype, F => packed_matmul_ext::<F>(ctx.client, Gemm::new(&gram, &gram, &poly, &sq_s), fused))?;
        let got_poly = ctx.download(&poly)?;
        let am = mirrored(&got_gram, r);
        let aa = matmul_ref(&am, &am, &sq_s);
        let want: Vec<f64> = aa
            .iter()
            .zip(&am)
            .map(|(p, q)| c as f64 * p + b as f64 * q)
            .collect();
        let got_u: Vec<f32> = upper(&f64s(&got_poly), r)
            .iter()
            .map(|&v| v as f32)
            .collect();
        let t = tol(ctx, r);
        ctx.compare(
            "matmul (packed, c A A + b A symmetric)",
            &case,
            &got_u,
            &upper(&want, r),
            t,
        );

        // next = P X + a X, P read from its upper triangle.
        let px_s = MatmulShape::batched(batch, r, cols, r, false, false);
        let next = nan(ctx, batch * r * cols);
        let step = PackedExtras {
            sym_a: true,
            epilogue: Some(Epilogue {
                alpha: 1.0,
                beta: a,
                c: &hx,
            }),
            ..PackedExtras::default()
        };
        crate::with_float!(ctx.dtype, F => packed_matmul_ext::<F>(ctx.client, Gemm::new(&poly, &hx, &next, &px_s), step))?;
        let got = ctx.download(&next)?;
        let pm = mirrored(&got_poly, r);
        let want: Vec<f64> = matmul_ref(&pm, &f64s(&x), &px_s)
            .iter()
            .zip(&x)
            .map(|(p, &q)| p + a as f64 * q as f64)
            .collect();
        ctx.compare("matmul (packed, P X + a X)", &case, &got, &want, t);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::upload_f32;

    crate::check::check_tests!(packed_extras_match_reference => "matmul.packed_extras");

    /// `out = alpha A B + beta out` in place, over one depth block and over several (f32
    /// splits the depth in blocks of 256): C may be the output buffer.
    #[test]
    fn the_epilogue_may_add_the_output_itself() {
        let client = crate::Backend::Cpu.client().unwrap();
        for k in [200, 300, 600] {
            let (m, n) = (16, 32);
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 11) as f32 * 0.01).collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5) % 13) as f32 * 0.02 - 0.1)
                .collect();
            let c: Vec<f32> = (0..m * n).map(|i| i as f32 * 0.5).collect();
            let (ha, hb, hc) = (
                upload_f32(&client, &a),
                upload_f32(&client, &b),
                upload_f32(&client, &c),
            );
            let s = MatmulShape::new(m, n, k, false, false);
            let x = PackedExtras {
                epilogue: Some(Epilogue {
                    alpha: 2.0,
                    beta: -3.0,
                    c: &hc,
                }),
                ..PackedExtras::default()
            };
            packed_matmul_ext::<f32>(&client, Gemm::new(&ha, &hb, &hc, &s), x).unwrap();
            let got = crate::check::download(&client, crate::DType::F32, &hc).unwrap();
            let ab = matmul_ref(&f64s(&a), &f64s(&b), &s);
            for (i, (g, p)) in got.iter().zip(&ab).enumerate() {
                let want = 2.0 * p - 3.0 * c[i] as f64;
                assert!(
                    (*g as f64 - want).abs() <= 1e-4 * want.abs().max(1.0),
                    "k {k}, element {i}: {g} against {want}"
                );
            }
        }
    }

    /// Sizes whose lengths overflow are an error naming the shape, not a panic.
    #[test]
    fn shapes_that_overflow_are_errors() {
        let client = crate::Backend::Cpu.client().unwrap();
        let h = upload_f32(&client, &[1.0; 64]);
        let huge = MatmulShape::batched(1 << 40, 1 << 20, 1 << 20, 16, false, false);
        let e = packed_matmul_ext::<f32>(
            &client,
            Gemm::new(&h, &h, &h, &huge),
            PackedExtras::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("overflow"), "{e}");
        let e = super::super::matmul::<f32>(&client, &h, &h, &huge)
            .unwrap_err()
            .to_string();
        assert!(e.contains("overflow"), "{e}");
    }

    #[test]
    fn extras_that_do_not_fit_the_shape_are_errors() {
        let client = crate::Backend::Cpu.client().unwrap();
        let h = upload_f32(&client, &[1.0; 32 * 32]);
        let small = upload_f32(&client, &[1.0; 16]);
        let run = |s: MatmulShape, x: PackedExtras| {
            packed_matmul_ext::<f32>(&client, Gemm::new(&h, &h, &h, &s), x)
                .unwrap_err()
                .to_string()
        };
        let sym_a = PackedExtras {
            sym_a: true,
            ..PackedExtras::default()
        };
        let e = run(MatmulShape::new(32, 32, 32, true, false), sym_a);
        assert!(e.contains("symmetric A must be square"), "{e}");
        let e = run(MatmulShape::new(16, 32, 32, false, false), sym_a);
        assert!(e.contains("symmetric A must be square"), "{e}");
        let sym_b = PackedExtras {
            sym_b: true,
            ..PackedExtras::default()
        };
        let e = run(MatmulShape::new(32, 32, 32, false, true), sym_b);
        assert!(e.contains("symmetric B must be square"), "{e}");
        let sym_out = PackedExtras {
            sym_out: true,
            ..PackedExtras::default()
        };
        let e = run(MatmulShape::new(16, 32, 32, false, false), sym_out);
        assert!(e.contains("symmetric output must be square"), "{e}");
        let fused = PackedExtras {
            epilogue: Some(Epilogue {
                alpha: 1.0,
                beta: 1.0,
                c: &small,
            }),
            ..PackedExtras::default()
        };
        let e = run(MatmulShape::new(32, 32, 32, false, false), fused);
        assert!(e.contains("epilogue c"), "{e}");
    }
}
