//! The gradient store. Backward rules add into it; nothing ever assigns a gradient, so a tensor
//! used several times gets the sum of its uses.

use std::collections::HashMap;

use nanochat_kernels::elementwise::{binary, Binary};

use crate::tensor::TensorId;
use crate::{CoreError, Result, Tensor};

/// Gradients by tensor identity.
#[derive(Default)]
pub struct Grads {
    map: HashMap<TensorId, Tensor>,
}

impl Grads {
    /// The gradient of `t`, if it was reached by backward.
    pub fn get(&self, t: &Tensor) -> Option<&Tensor> {
        self.map.get(&t.id())
    }

    /// The gradient of `t`, or [`CoreError::NoGradient`] naming it `name` when backward did not
    /// reach it (it took no part in the loss).
    pub fn require(&self, t: &Tensor, name: &str) -> Result<&Tensor> {
        self.get(t).ok_or_else(|| CoreError::NoGradient {
            name: name.to_string(),
            tensor: format!("{t:?}"),
        })
    }

    /// Removes and returns the gradient of `t`.
    pub fn take(&mut self, t: &Tensor) -> Option<Tensor> {
        self.map.remove(&t.id())
    }

    pub(crate) fn take_id(&mut self, id: TensorId) -> Option<Tensor> {
        self.map.remove(&id)
    }

    pub(crate) fn get_id(&self, id: TensorId) -> Option<&Tensor> {
        self.map.get(&id)
    }

    /// Number of tensors that have a gradient.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no tensor has a gradient (nothing on the tape needed one).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Adds every gradient of `other` into this store (gradient accumulation over micro-batches).
    pub fn merge(&mut self, other: Grads) -> Result<()> {
        for (id, g) in other.map {
            self.accumulate(id, g)?;
        }
        Ok(())
    }

    /// Adds `grad` into the gradient of tensor `id` (the one place gradients are combined).
    pub fn accumulate(&mut self, id: TensorId, grad: Tensor) -> Result<()> {
        match self.map.remove(&id) {
            None => {
                self.map.insert(id, grad);
            }
            Some(prev) => {
                if prev.shape() != grad.shape() || prev.dtype() != grad.dtype() {
                    return Err(CoreError::Mismatch {
                        op: "gradient accumulation",
                        why: format!("gradients of one tensor disagree: {prev:?} vs {grad:?}"),
                    });
                }
                let sum = crate::ops::launch_wrap!(&prev, prev.shape(), F, c => binary::<F>(c, prev.handle(), grad.handle(), prev.len(), Binary::Add, 0.0, 0.0))?;
                self.map.insert(id, sum);
            }
        }
        Ok(())
    }
}

/// What a backward rule writes to: the gradients of its inputs, by position. Inputs that do
/// not require a gradient are skipped (a rule can ask with [`GradSink::wants`] to avoid the
/// work).
pub struct GradSink<'a> {
    pub(crate) inputs: &'a [(TensorId, bool)],
    pub(crate) grads: &'a mut Grads,
}

impl GradSink<'_> {
    /// Whether input `i` needs a gradient.
    pub fn wants(&self, i: usize) -> bool {
        self.inputs.get(i).is_some_and(|&(_, w)| w)
    }

    /// Adds `grad` to the gradient of input `i` (ignored when it needs none).
    pub fn add(&mut self, i: usize, grad: Tensor) -> Result<()> {
        match self.inputs.get(i) {
            Some(&(id, true)) => self.grads.accumulate(id, grad),
            Some(_) => Ok(()),
            None => Err(CoreError::OutOfRange {
                what: "the inputs a backward rule writes to".into(),
                index: i,
                len: self.inputs.len(),
            }),
        }
    }
}
