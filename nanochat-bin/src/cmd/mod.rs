//! One module per subcommand: its `Args` and its `run`.

pub mod base_eval;
pub mod base_train;
pub mod bench;
pub mod chat_cli;
pub mod chat_eval;
pub mod chat_rl;
pub mod chat_train;
pub mod chat_web;
pub mod compat;
pub mod export;
pub mod progress;
pub mod report;
pub mod sampling;
pub mod selftest;
pub mod speedrun;
pub mod tok_eval;
pub mod tok_train;
pub mod verify_reference;

use std::path::Path;

use anyhow::Context;
use nanochat_core::checkpoint::{load_phase, CheckpointQuery, Phase};
use nanochat_core::eval::EvalReport;
use nanochat_core::paths::Paths;
use nanochat_core::tasks::EvalData;
use nanochat_core::Device;
use serde_json::Value;

/// The commands that run across the ranks of an MPI launch; the others refuse one (the
/// speedrun runs them across ranks and the rest on rank 0 alone).
pub const RUN_ACROSS_RANKS: [&str; 8] = [
    "base-train",
    "mid-train",
    "chat-sft",
    "chat-rl",
    "base-eval",
    "chat-eval",
    "bench",
    "speedrun",
];

/// Whether the command `name` (its `_` spelling too) runs across ranks.
pub fn runs_across_ranks(name: &str) -> bool {
    RUN_ACROSS_RANKS.contains(&name.replace('_', "-").as_str())
}

/// Which trained model a command loads: `-i/--source`, `-g/--model-tag`, `-s/--step`
/// (nanochat's flags, shared by chat-cli, chat-web, chat-eval and chat-rl).
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// Which checkpoints: base, mid, sft or rl.
    #[arg(short = 'i', long, default_value = "sft", value_parser = ["base", "mid", "sft", "rl"])]
    pub source: String,
    #[command(flatten)]
    pub checkpoint: CheckpointArgs,
}

/// Which checkpoint of a phase: `-g/--model-tag`, `-s/--step`, `--force-tokenizer` (in
/// [`ModelArgs`] and base-eval).
#[derive(clap::Args, Clone, Debug)]
pub struct CheckpointArgs {
    /// Model tag (default: the newest).
    #[arg(short = 'g', long, value_parser = model_tag)]
    pub model_tag: Option<String>,
    /// Step (default: the newest).
    #[arg(short = 's', long)]
    pub step: Option<u64>,
    /// Use the tokenizer found even when its fingerprint differs from the one the model was
    /// trained with (a warning instead of an error).
    #[arg(long)]
    pub force_tokenizer: bool,
}

impl CheckpointArgs {
    /// The checkpoint of these flags among `phase`'s under the model root, on `device`.
    pub fn load(&self, phase: Phase, device: &Device) -> anyhow::Result<Loaded> {
        let p = paths()?;
        let query = CheckpointQuery {
            model_tag: self.model_tag.as_deref(),
            step: self.step,
            force_tokenizer: self.force_tokenizer,
        };
        load_phase(p, phase, device, &query).with_context(|| {
            format!(
                "loading the {} model from {}",
                phase.name(),
                p.model_root.display()
            )
        })
    }
}

/// A model loaded from the model root, with where it came from.
pub use nanochat_core::checkpoint::LoadedModel as Loaded;

impl ModelArgs {
    pub fn phase(&self) -> anyhow::Result<Phase> {
        Ok(Phase::parse(&self.source)?)
    }

    /// The model of these flags under the model root, on `device`.
    pub fn load(&self, device: &Device) -> anyhow::Result<Loaded> {
        self.checkpoint.load(self.phase()?, device)
    }
}

/// An evaluation's outputs: its result as a JSON file at `path` and on stdout, and its report
/// stage.
pub fn write_eval_result(path: &Path, result: &impl EvalReport) -> anyhow::Result<()> {
    // Every rank has the summed result; rank 0 writes it.
    if !nanochat_core::dist::world().is_main() {
        return Ok(());
    }
    let json = nanochat_core::eval::write_result(path, result)?;
    let settings = result.report_settings(path);
    report_stage_for(
        Some(path),
        &result.stage(),
        settings,
        result.report_summary(),
    );
    println!("{}", serde_json::to_string(&json)?);
    eprintln!("results written to {}", path.display());
    Ok(())
}

/// The evaluation sets of `--samples`: the committed samples, else the fetched sets.
pub fn eval_data(samples: bool) -> EvalData {
    if samples {
        EvalData::Samples
    } else {
        EvalData::Fetched
    }
}

/// This process's folders (flags aside): built once from the environment
/// (`nanochat_core::paths`).
pub fn paths() -> anyhow::Result<&'static Paths> {
    Ok(nanochat_core::paths::installed()?)
}

/// Records a stage of the pipeline for `nanochat report` (under the model root). A failure to
/// write it is a warning: it never fails the work the stage did.
pub fn report_stage(stage: &str, settings: Value, results: Value) {
    report_stage_for(None, stage, settings, results)
}

/// [`report_stage`] for a stage whose output went to `output`
/// ([`nanochat_core::report::record_stage`]: a scratch run outside the base dir is not
/// recorded).
pub fn report_stage_for(output: Option<&Path>, stage: &str, settings: Value, results: Value) {
    // Rank 0 writes for the job.
    if !nanochat_core::dist::world().is_main() {
        return;
    }
    let recorded = paths().and_then(|p| {
        Ok(nanochat_core::report::record_stage(
            p, output, stage, settings, results,
        )?)
    });
    if let Err(e) = recorded {
        eprintln!("warning: could not record the `{stage}` stage for the report: {e:#}");
    }
}

/// clap's parser of every model tag flag (`-g/--model-tag`, `--base-model`): a folder name,
/// never a path ([`nanochat_core::checkpoint::validate_tag`]).
pub fn model_tag(s: &str) -> Result<String, String> {
    nanochat_core::checkpoint::validate_tag(s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

/// clap's parser of `--depth`: 1 to 256 layers (a usage error otherwise, before anything is
/// allocated).
pub fn depth(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(d) if (1..=256).contains(&d) => Ok(d),
        _ => Err(format!("`{s}` is not a depth from 1 to 256")),
    }
}

/// Opens a device parsed from the command line (`cpu`, `cuda`, `cuda:N`); the error names it.
/// Under several ranks each takes the GPU of its local rank, counted from N (`cuda` = `cuda:0`:
/// rank 3 of a machine takes `cuda:3`, as nanochat's `torchrun` ranks do).
pub fn open_device(backend: nanochat_kernels::Backend) -> anyhow::Result<Device> {
    let backend = match backend {
        nanochat_kernels::Backend::Cuda(i) => {
            nanochat_kernels::Backend::Cuda(i + nanochat_core::dist::world().local_rank())
        }
        b => b,
    };
    Device::new(backend).with_context(|| format!("cannot open device `{backend}`"))
}

/// `-d/--device`: `cpu`, `cuda` or `cuda:N`, checked when the flags are parsed (shared by every
/// command that runs a model).
#[derive(clap::Args, Clone, Copy, Debug)]
pub struct DeviceArg {
    /// Device: cpu, cuda or cuda:N (`--device-type`: nanochat's name).
    #[arg(
        short = 'd',
        long = "device",
        visible_alias = "device-type",
        value_name = "DEVICE",
        default_value = "cpu"
    )]
    pub backend: nanochat_kernels::Backend,
}

impl DeviceArg {
    /// Opens the device (an error names it when it cannot be opened, e.g. no GPU).
    pub fn open(&self) -> anyhow::Result<Device> {
        open_device(self.backend)
    }
}

/// `--dtype`: the compute dtype, `float32` or `bfloat16` (also `f32`, `fp32`, `bf16`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DTypeArg {
    #[default]
    #[value(name = "float32", alias = "f32", alias = "fp32")]
    Float32,
    #[value(name = "bfloat16", alias = "bf16")]
    Bfloat16,
}

impl From<DTypeArg> for nanochat_core::DType {
    fn from(d: DTypeArg) -> Self {
        match d {
            DTypeArg::Float32 => nanochat_core::DType::F32,
            DTypeArg::Bfloat16 => nanochat_core::DType::BF16,
        }
    }
}
