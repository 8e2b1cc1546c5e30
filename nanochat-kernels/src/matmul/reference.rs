//! Plain-Rust reference of the batched matmul with transposed operands, in f64.

use super::MatmulShape;

/// `out[b] = op(A[b]) @ op(B[b])` for row-major operands laid out as [`MatmulShape`] says.
pub fn matmul_ref(a: &[f64], b: &[f64], s: &MatmulShape) -> Vec<f64> {
    let MatmulShape { batch, m, n, k, .. } = *s;
    let (a_bs, a_rs, a_cs) = s.lhs_strides();
    let (b_bs, b_rs, b_cs) = s.rhs_strides();
    let mut out = vec![0.0; batch * m * n];
    for bi in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0;
                for p in 0..k {
                    acc += a[bi * a_bs + i * a_rs + p * a_cs] * b[bi * b_bs + p * b_rs + j * b_cs];
                }
                out[(bi * m + i) * n + j] = acc;
            }
        }
    }
    out
}
