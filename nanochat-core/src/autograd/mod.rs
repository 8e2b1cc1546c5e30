//! The hand-built tape autodiff: [`Tape`] records each op's backward rule, [`Grads`] collects
//! gradients (repeated uses of a tensor accumulate), [`gradcheck`] compares a tape's gradients
//! with central finite differences of an f64 reference.

pub mod gradcheck;
mod grads;
mod tape;

pub use grads::{GradSink, Grads};
pub use tape::{recording, Tape};
