//! One module per subcommand: its `Args` and its `run`.

pub mod base_eval;
pub mod base_train;
pub mod bench;
pub mod chat_cli;
pub mod chat_eval;
pub mod chat_rl;
pub mod chat_train;
pub mod chat_web;
pub mod progress;
pub mod report;
pub mod selftest;
pub mod speedrun;
pub mod tok_eval;
pub mod tok_train;
pub mod verify_reference;

use anyhow::Context;
use nanochat_core::Device;

/// Records a stage of the pipeline for `nanochat report` (under the model root). A failure to
/// write it is a warning: it never fails the work the stage did.
pub fn report_stage(stage: &str, settings: serde_json::Value, results: serde_json::Value) {
    let root = nanochat_core::checkpoint::model_root();
    if let Err(e) = nanochat_core::report::log_stage(&root, stage, settings, results) {
        tracing::warn!("could not record the `{stage}` stage for the report: {e}");
        eprintln!("warning: could not record the `{stage}` stage for the report: {e}");
    }
}

/// Opens the device named on the command line (`cpu`, `cuda`, `cuda:N`).
pub fn open_device(name: &str) -> anyhow::Result<Device> {
    Device::parse(name).with_context(|| format!("cannot open device `{name}`"))
}
