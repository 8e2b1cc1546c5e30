//! `nanochat base-eval`: the base model's CORE score (nanochat's `base_eval.py`) over the
//! few-shot tasks that can be had offline, with a JSON result file and a report stage
//! (`base-eval`). `--hf-path` evaluates a model saved in our safetensors + config format from
//! any folder.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use nanochat_core::checkpoint::{load_folder_model, Phase};
use nanochat_core::eval::core::CoreResult;
use nanochat_core::eval::{core_eval_path, CoreEval, CoreModelSource};
use nanochat_core::paths::Paths;
use nanochat_core::tokenizer::Tokenizer;
use nanochat_core::{Device, GPT};

// The checkpoint flags (shared with the chat commands) say here that they select a base model.
#[derive(clap::Args, Clone, Debug)]
#[command(mut_arg("model_tag", |a| a.help("Tag of the base model (default: the newest)")))]
#[command(mut_arg("force_tokenizer", |a| {
    a.help("Use the tokenizer found even when its fingerprint differs from the model's")
}))]
pub struct Args {
    /// Evaluate at most N items per task (default: all).
    #[arg(long, value_parser = super::chat_eval::at_least_one())]
    pub max_per_task: Option<usize>,
    #[command(flatten)]
    pub checkpoint: super::CheckpointArgs,
    /// Evaluate the model in this folder instead: a `*.safetensors` file of ours (weights plus
    /// the config in its metadata) and, if present, its `tokenizer.json`.
    #[arg(long, conflicts_with_all = ["model_tag", "step"])]
    pub hf_path: Option<PathBuf>,
    /// Use the small CORE samples committed in data/samples/core/ instead of the fetched sets.
    #[arg(long)]
    pub samples: bool,
    /// The JSON result file (default: <model dir>/eval/base-eval.json).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub device: super::DeviceArg,
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let data = super::eval_data(args.samples);
    let eval = CoreEval::load(data, args.max_per_task).context("loading the CORE tasks")?;
    let device = args.device.open()?;
    let paths = super::paths()?;
    let (model, tokenizer, source) = load(&args, paths, &device)?;
    let mut bars = super::progress::eval_bars(args.quiet, BAR, |r: &CoreResult| {
        let (a, c) = (r.accuracy, r.centered);
        format!(
            "{}: accuracy {a:.4} | centered {c:.4} ({} items)",
            r.label, r.total
        )
    });
    let max_len = model.config().block_size;
    let result = eval.run(&model, &tokenizer, max_len, &device, source, &mut bars)?;
    eprintln!("CORE: {:.4}", result.core);
    let out_path = (args.output.clone()).unwrap_or_else(|| core_eval_path(&paths.model_root));
    super::write_eval_result(&out_path, &result)?;
    Ok(ExitCode::SUCCESS)
}

/// The model of `--hf-path`, else of `-g/-s` among the base checkpoints, and how the result
/// file names it.
fn load(
    args: &Args,
    paths: &Paths,
    device: &Device,
) -> anyhow::Result<(GPT, Tokenizer, CoreModelSource)> {
    if let Some(dir) = &args.hf_path {
        let (model, tok) =
            load_folder_model(paths, dir, device).context("loading the --hf-path model")?;
        let hf_path = dir.clone();
        return Ok((model, tok, CoreModelSource::Folder { hf_path }));
    }
    let m = args.checkpoint.load(Phase::Base, device)?;
    let (model_tag, step) = (args.checkpoint.model_tag.clone(), m.meta.step);
    let source = CoreModelSource::Checkpoint { model_tag, step };
    Ok((m.model, m.tokenizer, source))
}

/// A task's bar: its label and items done.
const BAR: &str = "{prefix:>24} {bar:30} {pos}/{len}";
