//! Finite-difference gradient checks: the tape's gradients of `loss = sum(w * f(x))` (random
//! weights `w`, f run by the kernels in f32) against central differences
//! `(L(x + h e) - L(x - h e)) / 2h` of the op's plain-Rust reference in f64.
//!
//! Each element must agree within an absolute or a relative tolerance (`approx::relative_eq!`);
//! inputs larger than [`MAX_PROBES`] elements are probed at a random subset of positions.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use thiserror::Error;

use crate::{ops, CoreError, DType, Device, Result, Tape, Tensor};

/// Elements probed per input at most.
pub const MAX_PROBES: usize = 48;

/// One input of a check: values, shape, and whether to differentiate it.
#[derive(Clone, Debug)]
pub struct Input {
    /// Row-major values in f64 (cast to the op's dtype for the tape side).
    pub values: Vec<f64>,
    /// Shape of the input.
    pub shape: Vec<usize>,
    /// Whether the gradient with respect to this input is checked.
    pub wrt: bool,
}

impl Input {
    /// A differentiated input of uniform random values in [lo, hi).
    pub fn random(rng: &mut StdRng, shape: &[usize], lo: f64, hi: f64) -> Input {
        let n = shape.iter().product();
        Input {
            values: (0..n).map(|_| rng.random_range(lo..hi)).collect(),
            shape: shape.to_vec(),
            wrt: true,
        }
    }

    /// An input that is not differentiated (tables, constants).
    pub fn constant(values: Vec<f64>, shape: &[usize]) -> Input {
        Input {
            values,
            shape: shape.to_vec(),
            wrt: false,
        }
    }
}

/// Agreement of one input's gradient.
#[derive(Clone, Debug)]
pub struct GradReport {
    /// Index of the input in the check's `inputs`.
    pub input: usize,
    /// How many elements were probed by finite differences (at most [`MAX_PROBES`]).
    pub probes: usize,
    /// Worst element: (tape, finite difference).
    pub worst: (f64, f64),
    /// Largest |tape - finite difference| over the probed elements.
    pub max_abs_err: f64,
    /// Whether every probed element was within the [`Tolerance`].
    pub passed: bool,
}

/// Tolerances of a check: an element passes when |tape - fd| <= atol or <= rtol * max(|.|).
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance, against the larger magnitude of the two gradients.
    pub rtol: f64,
    /// Finite-difference step.
    pub h: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            atol: 2e-4,
            rtol: 2e-3,
            h: 1e-4,
        }
    }
}

/// Runs the check on `device` in f32 (on the device's thread); returns one report per
/// differentiated input.
pub fn gradcheck(
    device: &Device,
    inputs: &[Input],
    forward: impl Fn(Option<&Tape>, &[Tensor]) -> Result<Tensor> + Sync,
    reference: impl Fn(&[Vec<f64>]) -> Vec<f64> + Sync,
    tol: Tolerance,
    seed: u64,
) -> Result<Vec<GradReport>> {
    device.exclusive(|| gradcheck_inline(device, inputs, &forward, &reference, tol, seed))?
}

fn gradcheck_inline(
    device: &Device,
    inputs: &[Input],
    forward: &(impl Fn(Option<&Tape>, &[Tensor]) -> Result<Tensor> + Sync),
    reference: &(impl Fn(&[Vec<f64>]) -> Vec<f64> + Sync),
    tol: Tolerance,
    seed: u64,
) -> Result<Vec<GradReport>> {
    let mut rng = StdRng::seed_from_u64(seed);
    // The f32 values the kernels see are the reference's inputs too.
    let xs: Vec<Vec<f64>> = inputs
        .iter()
        .map(|i| i.values.iter().map(|&v| v as f32 as f64).collect())
        .collect();
    let out_len = reference(&xs).len();
    let w: Vec<f64> = (0..out_len).map(|_| rng.random_range(-1.0..1.0)).collect();
    let loss_ref =
        |xs: &[Vec<f64>]| -> f64 { reference(xs).iter().zip(&w).map(|(y, w)| y * w).sum() };

    // Tape gradients.
    let tape = Tape::new();
    let tensors: Vec<Tensor> = inputs
        .iter()
        .zip(&xs)
        .map(|(i, x)| {
            let t = Tensor::from_f64(device, x, &i.shape, DType::F32)?;
            Ok(if i.wrt { tape.watch(&t) } else { t })
        })
        .collect::<Result<_>>()?;
    let y = forward(Some(&tape), &tensors)?;
    if y.len() != out_len {
        return Err(crate::CoreError::Mismatch {
            op: "gradcheck",
            why: format!("the op gives {} values, its reference {out_len}", y.len()),
        });
    }
    let wt = Tensor::from_f64(device, &w, y.shape(), DType::F32)?;
    let loss = ops::sum(Some(&tape), &ops::mul(Some(&tape), &y, &wt)?)?;
    let grads = tape.backward(&loss)?;

    let mut reports = Vec::new();
    for (idx, input) in inputs.iter().enumerate().filter(|(_, i)| i.wrt) {
        let g = grads
            .require(&tensors[idx], "gradcheck input")?
            .to_vec_f64()?;
        let n = input.values.len();
        let probes: Vec<usize> = if n <= MAX_PROBES {
            (0..n).collect()
        } else {
            (0..MAX_PROBES).map(|_| rng.random_range(0..n)).collect()
        };
        let mut report = GradReport {
            input: idx,
            probes: probes.len(),
            worst: (0.0, 0.0),
            max_abs_err: 0.0,
            passed: true,
        };
        for &e in &probes {
            let mut plus = xs.clone();
            plus[idx][e] += tol.h;
            let mut minus = xs.clone();
            minus[idx][e] -= tol.h;
            let fd = (loss_ref(&plus) - loss_ref(&minus)) / (2.0 * tol.h);
            let ok = approx::relative_eq!(g[e], fd, epsilon = tol.atol, max_relative = tol.rtol);
            let err = (g[e] - fd).abs();
            if err > report.max_abs_err {
                report.max_abs_err = err;
                report.worst = (g[e], fd);
            }
            report.passed &= ok;
        }
        reports.push(report);
    }
    Ok(reports)
}

/// Why [`assert_gradcheck`] failed.
#[derive(Debug, Error)]
pub enum GradcheckError {
    /// The check could not run (the op, its backward or the device failed).
    #[error(transparent)]
    Core(#[from] CoreError),
    /// No input had `wrt` set: there was nothing to compare.
    #[error("gradcheck: no input was differentiated")]
    NothingDifferentiated,
    /// The tape's gradient of input `failed.input` disagrees with the finite differences.
    #[error("gradient mismatch: {failed:?} (all: {all:?})")]
    Mismatch {
        /// The first input that failed.
        failed: GradReport,
        /// Every differentiated input's report.
        all: Vec<GradReport>,
    },
}

/// Test helper: runs [`gradcheck`] on the CPU; an error when one input's gradient disagrees
/// ([`GradcheckError::Mismatch`], with the reports), when none is differentiated, or when the
/// check cannot run.
pub fn assert_gradcheck(
    inputs: &[Input],
    forward: impl Fn(Option<&Tape>, &[Tensor]) -> Result<Tensor> + Sync,
    reference: impl Fn(&[Vec<f64>]) -> Vec<f64> + Sync,
    tol: Tolerance,
    seed: u64,
) -> std::result::Result<(), GradcheckError> {
    let device = Device::cpu()?;
    let reports = gradcheck(&device, inputs, forward, reference, tol, seed)?;
    if reports.is_empty() {
        return Err(GradcheckError::NothingDifferentiated);
    }
    match reports.iter().find(|r| !r.passed) {
        Some(r) => Err(GradcheckError::Mismatch {
            failed: r.clone(),
            all: reports.clone(),
        }),
        None => Ok(()),
    }
}

/// [`assert_gradcheck`] (at the default [`Tolerance`] unless one is given last) inside a
/// property test: `check!(what, inputs, forward, reference, seed[, tol])` is `Ok(())` or a
/// test-case failure naming `what` (the op or case checked) and the mismatch.
#[cfg(test)]
macro_rules! check {
    ($what:expr, $inputs:expr, $forward:expr, $reference:expr, $seed:expr) => {
        $crate::autograd::gradcheck::check!(
            $what,
            $inputs,
            $forward,
            $reference,
            $seed,
            $crate::autograd::gradcheck::Tolerance::default()
        )
    };
    ($what:expr, $inputs:expr, $forward:expr, $reference:expr, $seed:expr, $tol:expr) => {
        $crate::autograd::gradcheck::assert_gradcheck($inputs, $forward, $reference, $tol, $seed)
            .map_err(|e| proptest::test_runner::TestCaseError::fail(format!("{}: {e}", $what)))
    };
}
#[cfg(test)]
pub(crate) use check;

/// One op's gradient-check property test with few cases ([`crate::ops::testing::config`]):
/// `gradcheck_test!(name(arg in strategy, ..) { body })`, the body building inputs from the
/// drawn arguments and running [`check!`]s with `?`.
#[cfg(test)]
macro_rules! gradcheck_test {
    ($(#[$meta:meta])* $name:ident($($arg:pat in $strat:expr),+ $(,)?) $body:block) => {
        proptest::proptest! {
            #![proptest_config($crate::ops::testing::config())]
            $(#[$meta])*
            #[test]
            fn $name($($arg in $strat),+) $body
        }
    };
}
#[cfg(test)]
pub(crate) use gradcheck_test;

/// A seeded rng for building inputs.
pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nanochat_kernels::elementwise::Unary;

    /// An exp whose backward forgets the chain rule's factor: the check must notice.
    fn wrong_exp(tape: Option<&Tape>, x: &Tensor) -> Result<Tensor> {
        let y = crate::ops::map(x, Unary::Exp)?;
        if let Some(t) = crate::autograd::recording(tape, &[x]) {
            t.record("wrong_exp", &[x], &y, |g, sink| sink.add(0, g.clone()));
        }
        Ok(y)
    }

    #[test]
    fn a_wrong_backward_rule_is_caught() {
        let mut r = rng(7);
        let x = Input::random(&mut r, &[3, 4], -1.0, 1.0);
        let reference = |xs: &[Vec<f64>]| xs[0].iter().map(|v| v.exp()).collect();
        let e = assert_gradcheck(
            std::slice::from_ref(&x),
            |t, xs| wrong_exp(t, &xs[0]),
            reference,
            Tolerance::default(),
            7,
        )
        .unwrap_err();
        match &e {
            GradcheckError::Mismatch { failed, all } => {
                assert_eq!((failed.input, failed.passed, all.len()), (0, false, 1));
                assert_eq!(failed.probes, 12);
            }
            other => panic!("expected a gradient mismatch, got {other:?}"),
        }
        assert!(e.to_string().starts_with("gradient mismatch"), "{e}");
        assert!(assert_gradcheck(
            std::slice::from_ref(&x),
            |t, xs| crate::ops::exp(t, &xs[0]),
            reference,
            Tolerance::default(),
            7
        )
        .is_ok());
        // A constant input only: the loss depends on nothing watched, which backward refuses.
        let c = Input::constant(x.values.clone(), &x.shape);
        let e = assert_gradcheck(
            &[c],
            |t, xs| crate::ops::exp(t, &xs[0]),
            reference,
            Tolerance::default(),
            7,
        )
        .unwrap_err();
        assert!(
            matches!(
                e,
                GradcheckError::Core(CoreError::Tape { op: "backward", .. })
            ),
            "{e:?}"
        );
    }
}
