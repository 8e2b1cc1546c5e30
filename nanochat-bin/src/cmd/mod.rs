//! One module per subcommand: its `Args` and its `run`.

pub mod base_train;
pub mod bench;
pub mod chat_cli;
pub mod chat_train;
pub mod chat_web;
pub mod progress;
pub mod selftest;
pub mod tok_eval;
pub mod tok_train;
pub mod verify_reference;

use anyhow::Context;
use nanochat_core::Device;

/// Opens the device named on the command line (`cpu`, `cuda`, `cuda:N`).
pub fn open_device(name: &str) -> anyhow::Result<Device> {
    Device::parse(name).with_context(|| format!("cannot open device `{name}`"))
}
