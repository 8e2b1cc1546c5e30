//! Add a differentiable op the library does not have, check its backward rule against finite
//! differences, and train a small model with it: the template for a new op in `ops/`
//! (docs/contributing.md).
//!
//! The op is swish (SiLU), `swish(x) = x * sigmoid(x)`, with `d swish / dx = s + x s (1 - s)`
//! where `s = sigmoid(x)`.
//!
//! ```text
//! cargo run --release --example custom_op -- --steps 50
//! cargo run --release --example custom_op -- --wrong-backward   # the check fails: exit 1
//! ```
//!
//! The exit status is 1 when the gradient check fails or the model's loss does not go down.

use anyhow::{bail, Context};
use clap::Parser;
use nanochat_core::autograd::gradcheck::{gradcheck, rng, Input, Tolerance};
use nanochat_core::autograd::recording;
use nanochat_core::ops::{self, Reduction};
use nanochat_core::{DType, Tape, Tensor};
use nanochat_examples::{at_least_one, EnvArgs};

/// Gradient-checks a new op (swish) and trains a two-layer model that uses it.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    env: EnvArgs,
    /// Rows of the toy data set (and of the gradient check's input).
    #[arg(long, default_value_t = 32, value_parser = at_least_one())]
    batch: usize,
    /// Input features.
    #[arg(long, default_value_t = 16, value_parser = at_least_one())]
    dim: usize,
    /// Hidden features (where swish is applied).
    #[arg(long, default_value_t = 32, value_parser = at_least_one())]
    hidden: usize,
    /// Classes to predict (at most --dim).
    #[arg(long, default_value_t = 4, value_parser = at_least_one())]
    classes: usize,
    /// Gradient-descent steps.
    #[arg(long, default_value_t = 50, value_parser = at_least_one())]
    steps: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.5)]
    lr: f32,
    /// Seed of the data, the weights and the check.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Drop a term of the derivative, to see the gradient check catch it.
    #[arg(long)]
    wrong_backward: bool,
}

/// `x * sigmoid(x)` element-wise, any shape. Forward through existing ops called without the
/// tape (they record nothing); then one backward rule of our own, recorded only when `x` needs
/// a gradient. `exact = false` forgets the `x s (1 - s)` term (a bug to be caught).
fn swish(tape: Option<&Tape>, x: &Tensor, exact: bool) -> nanochat_core::Result<Tensor> {
    // sigmoid(x) = (1 + tanh(x / 2)) / 2
    let s = ops::affine(
        None,
        &ops::tanh(None, &ops::scale(None, x, 0.5)?)?,
        0.5,
        0.5,
    )?;
    let y = ops::mul(None, x, &s)?;
    if let Some(t) = recording(tape, &[x]) {
        // The rule owns what it needs (x and s); it gets the output's gradient `g` and adds
        // the input's, g * s * (1 + x (1 - s)), into the sink (never assigns).
        let x_saved = x.clone();
        t.record("swish", &[x], &y, move |g, sink| {
            let d = if exact {
                let one_minus_s = ops::affine(None, &s, -1.0, 1.0)?;
                let x_term = ops::affine(None, &ops::mul(None, &x_saved, &one_minus_s)?, 1.0, 1.0)?;
                ops::mul(None, &s, &x_term)?
            } else {
                s
            };
            sink.add(0, ops::mul(None, g, &d)?)
        });
    }
    Ok(y)
}

/// The plain f64 reference the check differentiates numerically.
fn swish_reference(xs: &[Vec<f64>]) -> Vec<f64> {
    xs[0].iter().map(|&x| x / (1.0 + (-x).exp())).collect()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.classes < 2 || args.classes > args.dim {
        bail!("--classes {} must be 2 to --dim {}", args.classes, args.dim);
    }
    let device = args.env.open_device()?;
    let exact = !args.wrong_backward;

    // 1. The gradient check: the tape's gradient of sum(w * swish(x)) against central finite
    //    differences of the f64 reference, on random inputs in [-4, 4).
    let input = Input::random(&mut rng(args.seed), &[args.batch, args.dim], -4.0, 4.0);
    let reports = gradcheck(
        &device,
        &[input],
        |tape, xs| swish(tape, &xs[0], exact),
        swish_reference,
        Tolerance::default(),
        args.seed,
    )?;
    for r in &reports {
        eprintln!(
            "gradcheck: {} probes, max |tape - fd| {:.2e} (worst: tape {:.5}, fd {:.5}): {}",
            r.probes,
            r.max_abs_err,
            r.worst.0,
            r.worst.1,
            if r.passed { "passed" } else { "FAILED" }
        );
    }
    if reports.is_empty() || reports.iter().any(|r| !r.passed) {
        bail!("the gradient check of swish failed: its backward rule is wrong");
    }

    // 2. A model using it: logits = swish(x W1^T) W2^T, cross-entropy against the index of the
    //    largest of the first `classes` features (a rule the model can learn).
    let (b, d, h, c) = (args.batch, args.dim, args.hidden, args.classes);
    let mut r = rng(args.seed + 1);
    let x = Input::random(&mut r, &[b, d], -1.0, 1.0).values;
    let targets: Vec<i32> = x
        .chunks(d)
        .map(|row| (0..c).fold(0, |best, j| if row[j] > row[best] { j } else { best }) as i32)
        .collect();
    let w1 = Input::random(&mut r, &[h, d], -1.0, 1.0).values;
    let w2 = Input::random(&mut r, &[c, h], -1.0, 1.0).values;
    let (lr, steps) = (args.lr, args.steps);

    // 3. Plain gradient descent, on the device's thread (kernel launches are direct calls).
    let dev = device.clone();
    let losses = device.exclusive(move || -> anyhow::Result<Vec<f32>> {
        let x = Tensor::from_f64(&dev, &x, &[b, d], DType::F32)?;
        let mut w1 = Tensor::from_f64(&dev, &w1, &[h, d], DType::F32)?;
        let mut w2 = Tensor::from_f64(&dev, &w2, &[c, h], DType::F32)?;
        let mut losses = Vec::new();
        for step in 1..=steps {
            let tape = Tape::new();
            let (p1, p2) = (tape.watch(&w1), tape.watch(&w2));
            let hidden = swish(Some(&tape), &ops::linear(Some(&tape), &x, &p1)?, exact)?;
            let logits = ops::linear(Some(&tape), &hidden, &p2)?;
            let loss = ops::cross_entropy(Some(&tape), &logits, &targets, Reduction::Mean)?;
            losses.push(loss.to_scalar()?);
            let grads = tape.backward(&loss)?;
            let g1 = grads.get(&p1).context("no gradient for W1")?;
            let g2 = grads.get(&p2).context("no gradient for W2")?;
            let norm = |g: &Tensor| -> anyhow::Result<f32> {
                Ok(g.to_vec_f32()?.iter().map(|v| v * v).sum::<f32>().sqrt())
            };
            if step == 1 || step % 10 == 0 || step == steps {
                eprintln!(
                    "step {step:>4}  loss {:.4}  |dW1| {:.4}  |dW2| {:.4}",
                    losses[step - 1],
                    norm(g1)?,
                    norm(g2)?
                );
            }
            w1 = ops::sub(None, &w1, &ops::scale(None, g1, lr)?)?;
            w2 = ops::sub(None, &w2, &ops::scale(None, g2, lr)?)?;
        }
        Ok(losses)
    })??;

    // 4. It worked when the loss went down (and stayed finite).
    let (first, last) = (losses[0], losses[losses.len() - 1]);
    println!(
        "{}",
        serde_json::json!({"gradcheck": "passed", "loss_first": first, "loss_last": last, "steps": steps})
    );
    if !(last.is_finite() && last < first) {
        bail!("training with swish did not lower the loss: {first} -> {last}");
    }
    Ok(())
}
