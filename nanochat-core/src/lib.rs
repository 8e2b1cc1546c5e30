//! nanochat-core: the library behind the `nanochat` binary.
//!
//! - [`Tensor`]: a contiguous n-d array in a cubecl buffer on a [`Device`] (CPU runtime or
//!   CUDA), with host copies and safetensors I/O ([`io`]).
//! - [`autograd`]: the explicit [`Tape`]. Ops called with `Some(&tape)` record a backward rule;
//!   [`Tape::backward`] replays them in reverse into a [`Grads`] store where repeated uses of a
//!   tensor accumulate. With `None` nothing is recorded and no activation is kept (inference).
//! - [`ops`]: every differentiable op — forward through the kernels of `nanochat-kernels`, its
//!   backward rule, and a finite-difference gradient check in its own module.
//!
//! ```
//! use nanochat_core::{ops, Device, Tape, Tensor, DType};
//! let dev = Device::cpu().unwrap();
//! let tape = Tape::new();
//! let x = tape.watch(&Tensor::from_f32(&dev, &[1.0, -2.0, 3.0], &[3], DType::F32).unwrap());
//! let y = ops::mul(Some(&tape), &x, &x).unwrap();          // x^2
//! let loss = ops::sum(Some(&tape), &y).unwrap();           // sum x^2
//! let grads = tape.backward(&loss).unwrap();
//! assert_eq!(grads.get(&x).unwrap().to_vec_f32().unwrap(), vec![2.0, -4.0, 6.0]);
//! ```

pub mod autograd;
pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod dist;
pub mod engine;
pub mod error;
pub mod eval;
pub mod io;
pub mod model;
pub mod ops;
pub mod optim;
pub mod paths;
pub mod recipe;
pub mod report;
pub mod rl;
pub mod selftest;
pub mod speedrun;
pub mod tasks;
pub mod tensor;
pub mod tokenizer;
pub mod tools;
pub mod torchfile;
pub mod train;
pub mod verify;

pub use autograd::{Grads, Tape};
pub use device::Device;
pub use error::{CoreError, Result};
pub use model::{GPTConfig, GPT};
pub use nanochat_kernels::DType;
pub use tensor::Tensor;

/// The README's library example, compiled and run as a doc test so it stays true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
