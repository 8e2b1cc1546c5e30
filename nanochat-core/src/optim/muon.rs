//! Muon (nanochat's `muon.py`): SGD with Nesterov momentum whose update is orthogonalised by
//! five Newton-Schulz steps, scaled by `max(1, rows / cols)^0.5`. For the 2-d matrices of the
//! transformer blocks.

use nanochat_kernels::elementwise::{axpby_inplace, binary, Binary};
use nanochat_kernels::optim::newton_schulz;

use crate::{CoreError, Result, Tensor};

/// Muon's hyper-parameters (nanochat's defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MuonConfig {
    /// Learning rate (default 0.02).
    pub lr: f32,
    /// Momentum coefficient m of the buffer (default 0.95; ramped by [`super::muon_momentum`]).
    pub momentum: f32,
    /// Nesterov momentum (default true).
    pub nesterov: bool,
    /// Newton-Schulz iterations that orthogonalise the update (default 5).
    pub ns_steps: usize,
}

impl Default for MuonConfig {
    fn default() -> Self {
        MuonConfig {
            lr: 0.02,
            momentum: 0.95,
            nesterov: true,
            ns_steps: 5,
        }
    }
}

/// One Muon step of `param` (rows, cols) in place, with its momentum buffer `buf` (same shape
/// and dtype, updated in place): `buf = m buf + (1 - m) g`; `u = (1 - m) g + m buf` (Nesterov)
/// or `buf`; `param -= lr * sqrt(max(1, rows / cols)) * NS5(u)`. Errors: [`CoreError::Shape`]
/// when `param` is not 2-d; [`CoreError::Mismatch`] when `grad` or `buf` differ from it in
/// shape or dtype.
pub fn muon_update(
    param: &Tensor,
    grad: &Tensor,
    buf: &Tensor,
    lr: f32,
    momentum: f32,
    nesterov: bool,
    ns_steps: usize,
) -> Result<()> {
    let (rows, cols) = param.dims2()?;
    if grad.shape() != param.shape()
        || buf.shape() != param.shape()
        || grad.dtype() != param.dtype()
        || buf.dtype() != param.dtype()
    {
        return Err(CoreError::Mismatch {
            op: "muon",
            why: format!("param {param:?}, grad {grad:?}, momentum {buf:?}"),
        });
    }
    let n = param.len();
    let m = momentum;
    crate::ops::launch!(param, F, c => {
        axpby_inplace::<F>(c, buf.handle(), grad.handle(), n, m, 1.0 - m)?;
        let update = if nesterov { binary::<F>(c, grad.handle(), buf.handle(), n, Binary::Axpby, 1.0 - m, m)? } else { buf.handle().clone() };
        let ortho = newton_schulz::<F>(c, &update, rows, cols, ns_steps)?;
        let scale = (rows as f32 / cols as f32).max(1.0).sqrt();
        axpby_inplace::<F>(c, param.handle(), &ortho, n, 1.0, -lr * scale)?;
    });
    Ok(())
}
