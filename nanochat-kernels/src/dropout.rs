//! Dropout with a counter-based mask: element i is kept when a hash of (seed, i) is at least
//! `p`, and kept elements are scaled by 1 / (1 - p). The mask is recomputed from the seed in the
//! backward, so nothing is stored, and the same (seed, shape) gives the same mask on any device.

use cubecl::prelude::*;

use crate::check::{f64s, Check, Ctx};
use crate::device::DeviceInfo;
use crate::dtype::KernelFloat;
use crate::launch::{self, item_index};
use crate::{Client, Handle, KernelError, Result};

/// The "lowbias32" integer hash (Chris Wellons), on (seed, index).
#[cube]
fn hash(seed: u32, i: u32) -> u32 {
    let mut x = i ^ (seed * 0x9E37_79B9u32);
    x ^= x >> 16u32;
    x *= 0x7feb_352du32;
    x ^= x >> 15u32;
    x *= 0x846c_a68bu32;
    x ^= x >> 16u32;
    x
}

/// Plain-Rust twin of the kernel's hash.
pub fn hash_ref(seed: u32, i: u32) -> u32 {
    let mut x = i ^ seed.wrapping_mul(0x9E37_79B9);
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

/// Whether element `i` is kept: the hash's top 24 bits as a uniform in [0, 1), against `p`.
pub fn keep_ref(seed: u32, i: u32, p: f32) -> bool {
    (hash_ref(seed, i) >> 8) as f32 * (1.0 / 16_777_216.0) >= p
}

#[cube(launch)]
fn dropout_kernel<F: Float>(
    x: &[F],
    y: &mut [F],
    p: f32,
    scale: f32,
    seed: u32,
    steps: usize,
    #[comptime] blocked: bool,
) {
    for s in 0..steps {
        let i = item_index(s, steps, blocked);
        if i < y.len() {
            let u = f32::cast_from(hash(seed, i as u32) >> 8u32) * 0.000_000_059_604_645f32;
            let keep = if u >= p { scale } else { 0.0f32 };
            y[i] = F::cast_from(f32::cast_from(x[i]) * keep);
        }
    }
}

/// `x * mask / (1 - p)` over `len` elements; the backward is the same call on the gradient
/// with the same seed.
pub fn dropout<F: KernelFloat>(
    client: &Client,
    x: &Handle,
    len: usize,
    p: f32,
    seed: u32,
) -> Result<Handle> {
    launch::check_size("dropout", "x", x, &[len], F::DTYPE)?;
    if !(0.0..1.0).contains(&p) {
        return Err(KernelError::unsupported(
            "dropout",
            format!("probability {p} is outside [0, 1)"),
        ));
    }
    if len > u32::MAX as usize {
        return Err(KernelError::unsupported(
            "dropout",
            format!("{len} elements exceed the mask's 2^32 counter"),
        ));
    }
    let y = client.empty(len.max(1) * F::DTYPE.size());
    if len == 0 {
        return Ok(y);
    }
    let g = launch::elemwise(&DeviceInfo::of(client), len);
    dropout_kernel::launch::<F>(
        client,
        g.cube_count,
        g.cube_dim,
        launch::buffer("dropout", "x", x, len, F::DTYPE.size())?,
        launch::buffer("dropout", "y", &y, len, F::DTYPE.size())?,
        p,
        1.0 / (1.0 - p),
        seed,
        g.steps,
        g.blocked,
    );
    Ok(y)
}

/// Plain-Rust reference of [`dropout`].
pub fn dropout_ref(x: &[f64], p: f32, seed: u32) -> Vec<f64> {
    let scale = 1.0 / (1.0 - p as f64);
    x.iter()
        .enumerate()
        .map(|(i, v)| {
            if keep_ref(seed, i as u32, p) {
                v * scale
            } else {
                0.0
            }
        })
        .collect()
}

pub(crate) fn checks() -> Vec<Check> {
    crate::check::check_list!["dropout" => check_dropout]
}

fn check_dropout(ctx: &mut Ctx) -> Result<()> {
    for (len, p, seed) in [(1, 0.5, 1), (33, 0.1, 7), (4099, 0.5, 1234), (1000, 0.0, 3)] {
        let x = ctx.rand(len, -1.0, 1.0);
        let hx = ctx.upload(&x);
        let y = crate::with_float!(ctx.dtype, F => dropout::<F>(ctx.client, &hx, len, p, seed))?;
        let got = ctx.download(&y)?;
        let tol = ctx.tol(2.0);
        let label = format!("len={len} p={p}");
        let expected = dropout_ref(&f64s(&x), p, seed);
        ctx.compare("dropout", &label, &got, &expected, tol);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::check::check_tests!(dropout_matches_reference => "dropout");

    #[test]
    fn keep_rate_is_one_minus_p() {
        for p in [0.1f32, 0.5, 0.9] {
            let kept = (0..100_000u32).filter(|&i| keep_ref(42, i, p)).count() as f32 / 100_000.0;
            assert!((kept - (1.0 - p)).abs() < 0.01, "p={p}: kept {kept}");
        }
        // Different seeds, different masks.
        assert!((0..64u32).any(|i| keep_ref(1, i, 0.5) != keep_ref(2, i, 0.5)));
    }
}
