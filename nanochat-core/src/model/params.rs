//! Parameters by state_dict path, as PyTorch names them. A module is built from a [`Params`]
//! scope, asking for each tensor under its own field name, and lists its tensors into a
//! [`NamedParams`] scope the same way; a field holding a module opens a sub-scope under the
//! field's name. So the Rust field path `model.transformer.h[0].attn.c_q.weight` is the
//! state_dict name `transformer.h.0.attn.c_q.weight`.

use super::Init;
use crate::{CoreError, Result, Tensor};

/// Where a parameter comes from: `make(state_dict name, shape, init)` (random initialisation,
/// or a tensor of a file).
pub(crate) type MakeParam<'a> = dyn FnMut(&str, &[usize], Init) -> Result<Tensor> + 'a;

/// `prefix.name`, or `name` at the root.
fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// The scope of one module while the model is built: its path, and where tensors come from.
pub(crate) struct Params<'a> {
    make: &'a mut MakeParam<'a>,
    path: String,
}

impl<'a> Params<'a> {
    /// The root scope (the model itself).
    pub(crate) fn new(make: &'a mut MakeParam<'a>) -> Self {
        Params {
            make,
            path: String::new(),
        }
    }

    /// The scope of the module in field `name` (a `Vec` index is a name too: `h.0`).
    pub(crate) fn scope(&mut self, name: &str) -> Params<'_> {
        Params {
            make: &mut *self.make,
            path: join(&self.path, name),
        }
    }

    /// The parameter in field `name`, of `shape`, initialised as `init`.
    ///
    /// Errors: those of `make`, and a tensor of another shape (naming the parameter).
    pub(crate) fn tensor(&mut self, name: &str, shape: &[usize], init: Init) -> Result<Tensor> {
        let path = join(&self.path, name);
        let t = (self.make)(&path, shape, init)?;
        if t.shape() != shape {
            return Err(CoreError::shape(
                "GPT::build",
                &[t.shape(), shape],
                format!(
                    "parameter {path}: shape {:?}, expected {shape:?}",
                    t.shape()
                ),
            ));
        }
        Ok(t)
    }
}

/// The scope of one module while the parameters are listed under their state_dict names.
pub(crate) struct NamedParams<'a> {
    out: &'a mut Vec<(String, Tensor)>,
    path: String,
}

impl<'a> NamedParams<'a> {
    /// The root scope, listing into `out`.
    pub(crate) fn new(out: &'a mut Vec<(String, Tensor)>) -> Self {
        NamedParams {
            out,
            path: String::new(),
        }
    }

    /// The scope of the module in field `name`.
    pub(crate) fn scope(&mut self, name: &str) -> NamedParams<'_> {
        NamedParams {
            out: &mut *self.out,
            path: join(&self.path, name),
        }
    }

    /// Lists the parameter in field `name`.
    pub(crate) fn tensor(&mut self, name: &str, t: &Tensor) {
        self.out.push((join(&self.path, name), t.clone()));
    }
}
