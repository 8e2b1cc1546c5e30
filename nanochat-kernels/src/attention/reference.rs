//! Plain-Rust reference of causal grouped-query attention in f64 (with the sliding window of
//! [`AttentionShape::window`]), materialising the full score matrix (the thing the kernels
//! avoid).

use super::AttentionShape;

/// Index of element (b, t, h, d) in a contiguous (B, T, H, D) tensor.
fn at(t_len: usize, heads: usize, hd: usize, b: usize, t: usize, h: usize) -> usize {
    ((b * t_len + t) * heads + h) * hd
}

/// Softmax probabilities (tk values, zero where masked) and lse of query row (b, h, i).
fn probs(
    q: &[f64],
    k: &[f64],
    s: &AttentionShape,
    b: usize,
    h: usize,
    i: usize,
) -> (Vec<f64>, f64) {
    let hk = h / (s.heads / s.kv_heads);
    let (first, limit) = (s.first_key(i), i + s.tk - s.tq + 1);
    let qi = &q[at(s.tq, s.heads, s.head_dim, b, i, h)..][..s.head_dim];
    let scores: Vec<f64> = (first..limit)
        .map(|j| {
            let kj = &k[at(s.tk, s.kv_heads, s.head_dim, b, j, hk)..][..s.head_dim];
            qi.iter().zip(kj).map(|(a, c)| a * c).sum::<f64>() * s.scale()
        })
        .collect();
    let m = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = scores.iter().map(|x| (x - m).exp()).sum();
    let mut p = vec![0.0; first];
    p.extend(scores.iter().map(|x| (x - m).exp() / sum));
    p.resize(s.tk, 0.0);
    (p, m + sum.ln())
}

/// Forward: output (B, Tq, H, D) and logsumexp (B, H, Tq).
pub fn attention_forward_ref(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    s: &AttentionShape,
) -> (Vec<f64>, Vec<f64>) {
    let hd = s.head_dim;
    let mut o = vec![0.0; s.batch * s.tq * s.heads * hd];
    let mut lse = vec![0.0; s.batch * s.heads * s.tq];
    for b in 0..s.batch {
        for h in 0..s.heads {
            let hk = h / (s.heads / s.kv_heads);
            for i in 0..s.tq {
                let (p, l) = probs(q, k, s, b, h, i);
                lse[(b * s.heads + h) * s.tq + i] = l;
                let oi = at(s.tq, s.heads, hd, b, i, h);
                for (j, pj) in p.iter().enumerate() {
                    let vj = at(s.tk, s.kv_heads, hd, b, j, hk);
                    for d in 0..hd {
                        o[oi + d] += pj * v[vj + d];
                    }
                }
            }
        }
    }
    (o, lse)
}

/// Backward: (dq, dk, dv) from the incoming gradient `dout` (B, Tq, H, D).
pub fn attention_backward_ref(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    dout: &[f64],
    s: &AttentionShape,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let hd = s.head_dim;
    let mut dq = vec![0.0; q.len()];
    let mut dk = vec![0.0; k.len()];
    let mut dv = vec![0.0; v.len()];
    for b in 0..s.batch {
        for h in 0..s.heads {
            let hk = h / (s.heads / s.kv_heads);
            for i in 0..s.tq {
                let (p, _) = probs(q, k, s, b, h, i);
                let qi = at(s.tq, s.heads, hd, b, i, h);
                // dp_j = dout_i . v_j ; ds_j = p_j (dp_j - sum_l p_l dp_l)
                let dp: Vec<f64> = (0..s.tk)
                    .map(|j| {
                        let vj = at(s.tk, s.kv_heads, hd, b, j, hk);
                        (0..hd).map(|d| dout[qi + d] * v[vj + d]).sum()
                    })
                    .collect();
                let mean: f64 = p.iter().zip(&dp).map(|(a, c)| a * c).sum();
                for j in 0..s.tk {
                    if p[j] == 0.0 {
                        continue;
                    }
                    let kj = at(s.tk, s.kv_heads, hd, b, j, hk);
                    let ds = p[j] * (dp[j] - mean) * s.scale();
                    for d in 0..hd {
                        dv[kj + d] += p[j] * dout[qi + d];
                        dq[qi + d] += ds * k[kj + d];
                        dk[kj + d] += ds * q[qi + d];
                    }
                }
            }
        }
    }
    (dq, dk, dv)
}
