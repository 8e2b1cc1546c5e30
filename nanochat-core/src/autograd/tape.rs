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
    pub fn new() -> Tape {
        Tape::default()
    }

    /// Marks `t` as a leaf whose gradient [`Tape::backward`] returns (a parameter or an input).
    pub fn watch(&self, t: &Tensor) -> Tensor {
        self.requires.borrow_mut().insert(t.id());
        self.watched.borrow_mut().insert(t.id());
        t.clone()
    }

    pub fn requires_grad(&self, t: &Tensor) -> bool {
        self.requires.borrow().contains(&t.id())
    }

    /// Number of recorded ops.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

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
            return Err(CoreError::Autograd(format!(
                "backward needs a one-element loss, got {:?}",
                loss.shape()
            )));
        }
        if !self.requires_grad(loss) {
            return Err(CoreError::Autograd(
                "the loss does not depend on any watched tensor".into(),
            ));
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
            (node.backward)(&g, &mut sink)
                .map_err(|e| CoreError::Autograd(format!("backward of {}: {e}", node.op)))?;
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

/// The tape to record on, when there is one and one of `inputs` requires a gradient: ops call
/// this first so that inference saves nothing.
pub fn recording<'a>(tape: Option<&'a Tape>, inputs: &[&Tensor]) -> Option<&'a Tape> {
    tape.filter(|t| inputs.iter().any(|x| t.requires_grad(x)))
}
