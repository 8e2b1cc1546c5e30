//! AdamW with PyTorch's semantics (decoupled weight decay, bias-corrected moments), one fused
//! kernel launch per parameter, moments in f32.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use nanochat_kernels::optim::{adamw_step, AdamWStep};

use crate::tensor::TensorId;
use crate::{CoreError, DType, Grads, Result, Tensor};

/// AdamW's hyper-parameters (nanochat's defaults: betas (0.8, 0.95), eps 1e-10, no decay).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    /// Learning rate (default 1e-3; [`AdamW::step_with_lr`] overrides it per step).
    pub lr: f32,
    /// Decay rates (beta1, beta2) of the first and second moments.
    pub betas: (f32, f32),
    /// Added to the root of the second moment in the denominator.
    pub eps: f32,
    /// Decoupled weight decay: `param *= 1 - lr * weight_decay` before the update.
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            betas: (0.8, 0.95),
            eps: 1e-10,
            weight_decay: 0.0,
        }
    }
}

/// Zeroed f32 moments (m, v) for `param`, each of its shape. Errors: allocation on its device.
pub fn adamw_state(param: &Tensor) -> Result<(Tensor, Tensor)> {
    Ok((
        Tensor::zeros(param.device(), param.shape(), DType::F32)?,
        Tensor::zeros(param.device(), param.shape(), DType::F32)?,
    ))
}

/// The moments of the AdamW parameter `name` as a checkpoint names them (PyTorch's
/// `<name>.exp_avg`, `<name>.exp_avg_sq`).
pub fn adamw_state_tensors(name: &str, m: &Tensor, v: &Tensor) -> [(String, Tensor); 2] {
    [
        (format!("{name}.exp_avg"), m.clone()),
        (format!("{name}.exp_avg_sq"), v.clone()),
    ]
}

/// The moments of the AdamW parameter `name` (shaped like `param`) read back through `get`
/// (see [`adamw_state_tensors`]). Errors: `get`'s (a missing or misshapen tensor).
pub fn load_adamw_state(
    name: &str,
    param: &Tensor,
    get: &mut dyn FnMut(&str, &Tensor) -> Result<Tensor>,
) -> Result<(Tensor, Tensor)> {
    Ok((
        get(&format!("{name}.exp_avg"), param)?,
        get(&format!("{name}.exp_avg_sq"), param)?,
    ))
}

/// One AdamW step of `param` in place at learning rate `lr`, step number `step` (from 1, for
/// the bias correction), updating the moments `m`, `v` in place (as `torch.optim.AdamW`).
/// Errors: [`CoreError::Mismatch`] when `grad`'s shape or dtype is not `param`'s.
pub fn adamw_update(
    param: &Tensor,
    grad: &Tensor,
    (m, v): (&Tensor, &Tensor),
    config: &AdamWConfig,
    lr: f32,
    step: u32,
) -> Result<()> {
    if grad.shape() != param.shape() || grad.dtype() != param.dtype() {
        return Err(CoreError::Mismatch {
            op: "adamw",
            why: format!("gradient {grad:?} for parameter {param:?}"),
        });
    }
    let h = AdamWStep {
        lr,
        beta1: config.betas.0,
        beta2: config.betas.1,
        eps: config.eps,
        weight_decay: config.weight_decay,
        step,
    };
    crate::ops::launch!(param, F, c => adamw_step::<F>(c, param.handle(), grad.handle(), m.handle(), v.handle(), param.len(), &h))?;
    Ok(())
}

/// AdamW over a set of parameters; state is created on a parameter's first step.
pub struct AdamW {
    /// Its hyper-parameters.
    pub config: AdamWConfig,
    state: HashMap<TensorId, (Tensor, Tensor)>,
    step: u32,
}

impl AdamW {
    /// An optimizer with no state yet (step 0).
    pub fn new(config: AdamWConfig) -> AdamW {
        AdamW {
            config,
            state: HashMap::new(),
            step: 0,
        }
    }

    /// Steps taken.
    pub fn steps(&self) -> u32 {
        self.step
    }

    /// Updates every parameter that has a gradient, in place, at learning rate `lr`.
    pub fn step_with_lr(&mut self, params: &[Tensor], grads: &Grads, lr: f32) -> Result<()> {
        self.step += 1;
        for p in params {
            let Some(g) = grads.get(p) else { continue };
            if let Entry::Vacant(e) = self.state.entry(p.id()) {
                e.insert(adamw_state(p)?);
            }
            let (m, v) = &self.state[&p.id()];
            adamw_update(p, g, (m, v), &self.config, lr, self.step)?;
        }
        Ok(())
    }

    /// [`AdamW::step_with_lr`] at the configured learning rate.
    pub fn step(&mut self, params: &[Tensor], grads: &Grads) -> Result<()> {
        self.step_with_lr(params, grads, self.config.lr)
    }
}
