//! `nanochat base-eval`: the base model's CORE score (nanochat's `base_eval.py`) over the
//! few-shot tasks that can be had offline, with a JSON result file and a report stage
//! (`base-eval`). `--hf-path` evaluates a model saved in our safetensors + config format from
//! any folder. `--split-tokens N` adds nanochat's bpb evaluation: bits per byte on N tokens of
//! the base run's train and validation splits (a nanochat checkpoint's: nanochat's shards under the
//! base dir), in batches of `--device-batch-size` rows; the result names the data.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use nanochat_core::checkpoint::{load_folder_model, Phase};
use nanochat_core::eval::core::CoreResult;
use nanochat_core::eval::{core_eval_path, split_bpb, CoreEval, CoreModelSource, SplitData};
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
    /// Evaluate at most N items per task (default and -1: all).
    #[arg(long, allow_negative_numbers = true, value_parser = super::compat::count_or_minus_one)]
    pub max_per_task: Option<i64>,
    /// Also measure bits per byte on this many tokens of the base run's train and validation
    /// splits (nanochat's bpb evaluation; default: CORE only).
    #[arg(long)]
    pub split_tokens: Option<usize>,
    /// Rows per batch of that measurement.
    #[arg(long, default_value_t = 32)]
    pub device_batch_size: usize,
    #[command(flatten)]
    pub checkpoint: super::CheckpointArgs,
    /// Evaluate the model in this folder instead: a `*.safetensors` file of ours (weights plus
    /// the config in its metadata) and, if present, its `tokenizer.json`.
    #[arg(long, conflicts_with_all = ["model_tag", "step"])]
    pub hf_path: Option<PathBuf>,
    /// Use the small CORE samples committed in data/samples/core/ instead of the fetched sets
    /// (or of nanochat's `<base dir>/eval_bundle/`, which is used when it exists).
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
    let max = super::compat::optional_count("--max-per-task", args.max_per_task, 1)?;
    let max = max.map(|n| n as usize);
    let paths = super::paths()?;
    // nanochat's CORE data, when its base dir has it (`--samples` still picks the samples).
    let bundle = paths.base_dir.join("eval_bundle");
    let eval = if !args.samples && bundle.is_dir() {
        eprintln!("CORE data: {} (nanochat's eval bundle)", bundle.display());
        CoreEval::load_bundle(&bundle, max)
            .with_context(|| format!("loading the CORE tasks of {}", bundle.display()))?
    } else {
        CoreEval::load(data, max).context("loading the CORE tasks")?
    };
    let device = args.device.open()?;
    let (model, tokenizer, source, inputs) = load(&args, paths, &device)?;
    let mut bars = super::progress::eval_bars(args.quiet, BAR, |r: &CoreResult| {
        let (a, c) = (r.accuracy, r.centered);
        format!(
            "{}: accuracy {a:.4} | centered {c:.4} ({} items)",
            r.label, r.total
        )
    });
    let max_len = model.config().block_size;
    // The bpb splits first: a bad --split-tokens fails before CORE's minutes.
    let bpb =
        match args.split_tokens {
            Some(n) => Some(device.exclusive(|| {
                split_bpb(&model, &tokenizer, &inputs, args.device_batch_size, n)
            })??),
            None => None,
        };
    let mut result = eval.run(&model, &tokenizer, max_len, &device, source, &mut bars)?;
    eprintln!("CORE: {:.4}", result.core);
    if let Some(b) = bpb {
        let (t, v, n) = (b.train_bpb, b.val_bpb, b.split_tokens);
        eprintln!("train bpb: {t:.4} | val bpb: {v:.4} ({n} tokens each)");
        result.bpb = Some(b);
    }
    let out_path = (args.output.clone()).unwrap_or_else(|| core_eval_path(&paths.model_root));
    super::write_eval_result(&out_path, &result)?;
    Ok(ExitCode::SUCCESS)
}

/// The model of `--hf-path`, else of `-g/-s` among the base checkpoints, how the result file
/// names it, and the base run's `--input` files (none: the bundled corpus, as for a folder).
fn load(
    args: &Args,
    paths: &Paths,
    device: &Device,
) -> anyhow::Result<(GPT, Tokenizer, CoreModelSource, SplitData)> {
    if let Some(dir) = &args.hf_path {
        let (model, tok) =
            load_folder_model(paths, dir, device).context("loading the --hf-path model")?;
        let hf_path = dir.clone();
        let data = SplitData::Inputs(vec![]);
        return Ok((model, tok, CoreModelSource::Folder { hf_path }, data));
    }
    let m = args.checkpoint.load(Phase::Base, device)?;
    // The tag the model came from (the one chosen when -g was not given).
    let tag = nanochat_core::checkpoint::root_tag(
        &m.root,
        Phase::Base,
        args.checkpoint.model_tag.as_deref(),
        &m.meta,
    );
    let (model_tag, step) = (Some(tag), m.meta.step);
    let source = CoreModelSource::Checkpoint { model_tag, step };
    let inputs: Vec<PathBuf> = m.meta.run["inputs"].as_array().map_or_else(Vec::new, |a| {
        a.iter()
            .filter_map(|p| p.as_str().map(PathBuf::from))
            .collect()
    });
    // A model of nanochat's own was trained on nanochat's shards: measure on them.
    let data = if m.meta.format == nanochat_core::checkpoint::nanochat::NANOCHAT_FORMAT
        && inputs.is_empty()
    {
        SplitData::Nanochat {
            base_dir: paths.base_dir.clone(),
            generation: m.model.config().architecture,
        }
    } else {
        SplitData::Inputs(inputs)
    };
    Ok((m.model, m.tokenizer, source, data))
}

/// A task's bar: its label and items done.
const BAR: &str = "{prefix:>24} {bar:30} {pos}/{len}";
