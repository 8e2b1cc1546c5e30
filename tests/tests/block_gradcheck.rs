//! A whole transformer block of nanochat's shape, composed on the tape from the primitive ops
//! (rmsnorm, linear, rotary, attention, relu^2, residual adds), gradient-checked against an f64
//! reference composed from the kernels' references: the rules compose.

use nanochat_core::autograd::gradcheck::{assert_gradcheck, rng, Input, Tolerance};
use nanochat_core::ops::{self, RotaryTables};
use nanochat_core::{DType, Device, Result, Tape, Tensor};
use nanochat_kernels::attention::{attention_forward_ref, AttentionShape};
use nanochat_kernels::check::f64s;
use nanochat_kernels::matmul::{matmul_ref, MatmulShape};
use nanochat_kernels::rmsnorm::rmsnorm_forward_ref;
use nanochat_kernels::rotary::{rotary_ref, RotaryShape};

const B: usize = 2;
const T: usize = 5;
const H: usize = 2;
const HKV: usize = 1;
const D: usize = 4;
const C: usize = H * D;
const EPS: f64 = 1e-6;

fn block(tape: Option<&Tape>, xs: &[Tensor], rot: &RotaryTables) -> Result<Tensor> {
    let [x, c_q, c_k, c_v, c_proj, c_fc, c_fc_proj] = xs else {
        unreachable!()
    };
    let h = ops::rmsnorm(tape, x, EPS as f32)?;
    let q = ops::reshape(tape, &ops::linear(tape, &h, c_q)?, &[B, T, H, D])?;
    let k = ops::reshape(tape, &ops::linear(tape, &h, c_k)?, &[B, T, HKV, D])?;
    let v = ops::reshape(tape, &ops::linear(tape, &h, c_v)?, &[B, T, HKV, D])?;
    let q = ops::rmsnorm(tape, &ops::rotary(tape, &q, rot, 0)?, EPS as f32)?;
    let k = ops::rmsnorm(tape, &ops::rotary(tape, &k, rot, 0)?, EPS as f32)?;
    let y = ops::reshape(
        tape,
        &ops::attention(tape, &q, &k, &v, usize::MAX)?,
        &[B, T, C],
    )?;
    let x = ops::add(tape, x, &ops::linear(tape, &y, c_proj)?)?;
    let m = ops::relu2(
        tape,
        &ops::linear(tape, &ops::rmsnorm(tape, &x, EPS as f32)?, c_fc)?,
    )?;
    ops::add(tape, &x, &ops::linear(tape, &m, c_fc_proj)?)
}

fn linear_ref(x: &[f64], w: &[f64], out: usize) -> Vec<f64> {
    let rows = x.len() / (w.len() / out);
    matmul_ref(
        x,
        w,
        &MatmulShape::new(rows, out, w.len() / out, false, true),
    )
}

fn block_ref(xs: &[Vec<f64>], cos: &[f64], sin: &[f64]) -> Vec<f64> {
    let [x, c_q, c_k, c_v, c_proj, c_fc, c_fc_proj] = xs else {
        unreachable!()
    };
    let h = rmsnorm_forward_ref(x, C, EPS).0;
    let rs = |heads| RotaryShape {
        batch: B,
        seq: T,
        heads,
        head_dim: D,
        t0: 0,
        table_len: T,
    };
    let q = rmsnorm_forward_ref(
        &rotary_ref(&linear_ref(&h, c_q, C), cos, sin, rs(H), 1.0),
        D,
        EPS,
    )
    .0;
    let k = rmsnorm_forward_ref(
        &rotary_ref(&linear_ref(&h, c_k, HKV * D), cos, sin, rs(HKV), 1.0),
        D,
        EPS,
    )
    .0;
    let v = linear_ref(&h, c_v, HKV * D);
    let y = attention_forward_ref(&q, &k, &v, &AttentionShape::new(B, T, H, HKV, D)).0;
    let x: Vec<f64> = x
        .iter()
        .zip(linear_ref(&y, c_proj, C))
        .map(|(a, b)| a + b)
        .collect();
    let m: Vec<f64> = linear_ref(&rmsnorm_forward_ref(&x, C, EPS).0, c_fc, 4 * C)
        .iter()
        .map(|v| v.max(0.0).powi(2))
        .collect();
    x.iter()
        .zip(linear_ref(&m, c_fc_proj, C))
        .map(|(a, b)| a + b)
        .collect()
}

#[test]
fn transformer_block_gradients_match_finite_differences() {
    let dev = Device::cpu().unwrap();
    let rot = RotaryTables::new(&dev, T, D, 10000.0, DType::F32).unwrap();
    let (cos, sin) = (
        f64s(&rot.cos.to_vec_f32().unwrap()),
        f64s(&rot.sin.to_vec_f32().unwrap()),
    );
    let mut r = rng(11);
    let s = 1.0 / (C as f64).sqrt();
    let inputs = vec![
        Input::random(&mut r, &[B, T, C], -1.0, 1.0),
        Input::random(&mut r, &[C, C], -s, s),
        Input::random(&mut r, &[HKV * D, C], -s, s),
        Input::random(&mut r, &[HKV * D, C], -s, s),
        Input::random(&mut r, &[C, C], -s, s),
        Input::random(&mut r, &[4 * C, C], -s, s),
        Input::random(&mut r, &[C, 4 * C], -s / 2.0, s / 2.0),
    ];
    let tol = Tolerance {
        atol: 5e-4,
        rtol: 5e-3,
        h: 1e-4,
    };
    assert_gradcheck(
        &inputs,
        |t, xs| block(t, xs, &rot),
        |xs| block_ref(xs, &cos, &sin),
        tol,
        11,
    )
    .unwrap();
}
