//! The explicit tape. Ops given `Some(&tape)` record a node (inputs, output, backward rule)
//! when one of their inputs requires a gradient; [`Tape::backward`] replays the nodes in
//! reverse. The tape owns the activations its rules saved and frees them as it goes.

use std::cell::RefCell;
use std::collections::HashSet;

use super::grads::{GradSink, Grads};
use crate::tensor::TensorId;
use crate::{CoreError, Result, Tensor};

type BackwardFn = Box<dyn FnOnce(&Tensor, &mut GradSink) -> Result<()>>;

struct Node {
    op: &'static str,
    output: TensorId,
    inputs: Vec<(TensorId, bool)>,
    backward: BackwardFn,
}

/// A recording of differentiable ops.
#[derive(Default)]
pub struct Tape {
    nodes: RefCell<Vec<Node>>,
    /// Tensors that require a gradient: watched leaves and outputs of recorded ops.
    requires: RefCell<HashSet<TensorId>>,
    watched: RefCell<HashSet<TensorId>>,
}

impl Tape {
    /// An empty tape (PyTorch's autograd graph, made explicit: ops record into it only when
    /// passed `Some(&tape)`).
    pub fn new() -> Tape {
        Tape::default()
    }

    /// A new tape watching each of `params` ([`Tape::watch`]): a training step's tape.
    pub fn watching(params: &[Tensor]) -> Tape {
        let tape = Tape::new();
        for p in params {
            tape.watch(p);
        }
        tape
    }

    /// Marks `t` as a leaf whose gradient [`Tape::backward`] returns (a parameter or an input).
    pub fn watch(&self, t: &Tensor) -> Tensor {
        self.requires.borrow_mut().insert(t.id());
        self.watched.borrow_mut().insert(t.id());
        t.clone()
    }

    /// Whether `t` is a watched leaf or the output of a recorded op that depends on one
    /// (PyTorch's `requires_grad`).
    pub fn requires_grad(&self, t: &Tensor) -> bool {
        self.requires.borrow().contains(&t.id())
    }

    /// Number of recorded ops.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// Whether no op has been recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records `output = op(inputs)` with its backward rule. The rule receives the gradient of
    /// the output and a sink adding into the inputs' gradients (by position in `inputs`).
    pub fn record(
        &self,
        op: &'static str,
        inputs: &[&Tensor],
        output: &Tensor,
        backward: impl FnOnce(&Tensor, &mut GradSink) -> Result<()> + 'static,
    ) {
        let inputs: Vec<(TensorId, bool)> = inputs
            .iter()
            .map(|t| (t.id(), self.requires_grad(t)))
            .collect();
        if !inputs.iter().any(|&(_, w)| w) {
            return;
        }
        if profiling_forward() {
            profile_forward_op(op, output);
        }
        self.requires.borrow_mut().insert(output.id());
        self.nodes.borrow_mut().push(Node {
            op,
            output: output.id(),
            inputs,
            backward: Box::new(backward),
        });
    }

    /// Backpropagates from a one-element `loss`; returns the gradients of the watched tensors.
    pub fn backward(self, loss: &Tensor) -> Result<Grads> {
        if loss.len() != 1 {
            return Err(CoreError::Tape {
                op: "backward",
                why: format!("needs a one-element loss, got {:?}", loss.shape()),
            });
        }
        if !self.requires_grad(loss) {
            return Err(CoreError::Tape {
                op: "backward",
                why: "the loss does not depend on any watched tensor".into(),
            });
        }
        let mut grads = Grads::default();
        grads.accumulate(loss.id(), loss.full_like(1.0)?)?;
        let watched = self.watched.into_inner();
        for node in self.nodes.into_inner().into_iter().rev() {
            let g = if watched.contains(&node.output) {
                grads.get_id(node.output).cloned()
            } else {
                grads.take_id(node.output)
            };
            let Some(g) = g else { continue };
            let mut sink = GradSink {
                inputs: &node.inputs,
                grads: &mut grads,
            };
            let t0 = profiling().then(std::time::Instant::now);
            let device = g.device().clone();
            (node.backward)(&g, &mut sink).map_err(|e| CoreError::Backward {
                op: node.op,
                error: Box::new(e),
            })?;
            if let Some(t0) = t0 {
                device.sync()?;
                eprintln!(
                    "backward {} {:.3} ms",
                    node.op,
                    t0.elapsed().as_secs_f64() * 1e3
                );
            }
        }
        Ok(grads)
    }
}

/// `NANOCHAT_PROFILE_BACKWARD=1`: each backward rule waits for its kernels and prints its time
/// (stderr), to find where a backward pass spends its time.
fn profiling() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| crate::paths::env_var("NANOCHAT_PROFILE_BACKWARD").is_some())
}

/// `NANOCHAT_PROFILE_FORWARD=1`: each recorded op waits for its kernels and prints the time
/// since the previous recorded op ended (stderr): the op's forward, and whatever unrecorded work
/// ran between the two.
fn profiling_forward() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| crate::paths::env_var("NANOCHAT_PROFILE_FORWARD").is_some())
}

fn profile_forward_op(op: &str, output: &Tensor) {
    thread_local! {
        static LAST: std::cell::Cell<Option<std::time::Instant>> = const { std::cell::Cell::new(None) };
    }
    if output.device().sync().is_err() {
        return;
    }
    let now = std::time::Instant::now();
    if let Some(last) = LAST.with(|l| l.replace(Some(now))) {
        eprintln!("forward {op} {:.3} ms", (now - last).as_secs_f64() * 1e3);
    }
}

/// The tape to record on, when there is one and one of `inputs` requires a gradient: ops call
/// this first so that inference saves nothing.
pub fn recording<'a>(tape: Option<&'a Tape>, inputs: &[&Tensor]) -> Option<&'a Tape> {
    tape.filter(|t| inputs.iter().any(|x| t.requires_grad(x)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ops, DType, Device};

    fn leaf(tape: &Tape, values: &[f32]) -> Tensor {
        let dev = Device::cpu().unwrap();
        tape.watch(&Tensor::from_f32(&dev, values, &[values.len()], DType::F32).unwrap())
    }

    /// Each way of misusing the tape is its own error, naming the op.
    #[test]
    fn tape_misuse_is_a_typed_error() {
        // A loss of two elements.
        let tape = Tape::new();
        let x = leaf(&tape, &[1.0, 2.0]);
        let y = ops::mul(Some(&tape), &x, &x).unwrap();
        let e = tape.backward(&y).err().unwrap();
        assert!(matches!(e, CoreError::Tape { op: "backward", .. }), "{e:?}");
        assert!(e.to_string().contains("[2]"), "{e}");

        // A watched tensor the loss does not use has no gradient.
        let tape = Tape::new();
        let x = leaf(&tape, &[1.0, 2.0]);
        let unused = leaf(&tape, &[3.0]);
        let loss = ops::sum(Some(&tape), &ops::mul(Some(&tape), &x, &x).unwrap()).unwrap();
        let grads = tape.backward(&loss).unwrap();
        let g = grads.require(&x, "x").unwrap().to_vec_f32().unwrap();
        assert_eq!(g, vec![2.0, 4.0]);
        let e = grads.require(&unused, "unused").unwrap_err();
        assert!(
            matches!(&e, CoreError::NoGradient { name, .. } if name == "unused"),
            "{e:?}"
        );

        // A backward rule that writes an input its op does not have.
        let tape = Tape::new();
        let x = leaf(&tape, &[1.0, 2.0]);
        let y = x.full_like(1.0).unwrap();
        tape.record("bad_rule", &[&x], &y, |g, sink| sink.add(1, g.clone()));
        let loss = ops::sum(Some(&tape), &y).unwrap();
        let e = tape.backward(&loss).err().unwrap();
        match &e {
            CoreError::Backward {
                op: "bad_rule",
                error,
            } => assert!(
                matches!(
                    **error,
                    CoreError::OutOfRange {
                        index: 1,
                        len: 1,
                        ..
                    }
                ),
                "{error:?}"
            ),
            other => panic!("expected the backward of bad_rule to fail, got {other:?}"),
        }
        assert!(e.to_string().starts_with("backward of bad_rule: "), "{e}");
    }
}
