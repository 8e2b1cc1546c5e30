//! `nanochat base-eval`: the base model's CORE score (nanochat's `base_eval.py`) over the
//! few-shot tasks that can be had offline, with a JSON result file and a report stage
//! (`base-eval`). `--hf-path` evaluates a model saved in our safetensors + config format from
//! any folder.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use nanochat_core::checkpoint::{load_model, Phase};
use nanochat_core::eval::core::{core_score, evaluate_core_task, load_core_tasks};
use nanochat_core::tasks::EvalData;
use nanochat_core::tokenizer::Tokenizer;
use nanochat_core::{DType, GPT};
use serde_json::json;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// Evaluate at most N items per task (default: all).
    #[arg(long, value_parser = super::chat_eval::at_least_one())]
    pub max_per_task: Option<usize>,
    /// Tag of the base model (default: the newest).
    #[arg(short = 'g', long)]
    pub model_tag: Option<String>,
    /// Step (default: the newest).
    #[arg(short = 's', long)]
    pub step: Option<u64>,
    /// Use the tokenizer found even when its fingerprint differs from the model's.
    #[arg(long)]
    pub force_tokenizer: bool,
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

/// The model file of a folder: `model.safetensors`, else its only `*.safetensors`.
fn model_file(dir: &Path) -> anyhow::Result<PathBuf> {
    let named = dir.join("model.safetensors");
    if named.exists() {
        return Ok(named);
    }
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading --hf-path {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("--hf-path {}: no .safetensors file", dir.display()),
        _ => bail!(
            "--hf-path {}: several .safetensors files and no model.safetensors",
            dir.display()
        ),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let data = if args.samples {
        EvalData::Samples
    } else {
        EvalData::Fetched
    };
    let tasks = load_core_tasks(data).context("loading the CORE tasks")?;
    let device = args.device.open()?;
    let paths = super::paths()?;
    let root = paths.model_root.clone();
    let (model, tokenizer, source) = match &args.hf_path {
        Some(dir) => {
            let file = model_file(dir)?;
            let model = GPT::load(&file, &device, DType::F32)
                .with_context(|| format!("loading {}", file.display()))?;
            let tok_dir = if dir.join("tokenizer.json").exists() {
                dir.clone()
            } else {
                paths.tokenizer_dir()
            };
            let tok = Tokenizer::from_pretrained(&tok_dir)
                .with_context(|| format!("loading the tokenizer from {}", tok_dir.display()))?;
            (model, tok, json!({"hf_path": dir}))
        }
        None => {
            let (model, tok, meta) = load_model(
                paths,
                Phase::Base,
                &device,
                args.model_tag.as_deref(),
                args.step,
                args.force_tokenizer,
            )
            .with_context(|| format!("loading the base model from {}", root.display()))?;
            (
                model,
                tok,
                json!({"model_tag": args.model_tag, "step": meta.step}),
            )
        }
    };
    let max_len = model.config().block_size;
    let mut results = Vec::new();
    for task in &tasks {
        let label = task.meta.label.clone();
        let bar = super::progress::bar(args.quiet, 0, "{prefix:>24} {bar:30} {pos}/{len}", &label);
        let r = device
            .exclusive(|| {
                evaluate_core_task(
                    &model,
                    &tokenizer,
                    task,
                    args.max_per_task,
                    max_len,
                    &mut |done, total| {
                        if let Some(b) = &bar {
                            b.set_length(total as u64);
                            b.set_position(done as u64);
                        }
                    },
                )
            })?
            .with_context(|| format!("evaluating {label}"))?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        eprintln!(
            "{label}: accuracy {:.4} | centered {:.4} ({} items)",
            r.accuracy, r.centered, r.total
        );
        results.push(r);
    }
    let core = core_score(&results);
    eprintln!("CORE: {core:.4}");
    let result = json!({
        "model": source, "data": if args.samples { "samples" } else { "fetched" },
        "max_per_task": args.max_per_task, "tasks": results, "CORE": core,
    });
    let out_path = args
        .output
        .clone()
        .unwrap_or_else(|| root.join("eval").join("base-eval.json"));
    let mut summary: serde_json::Map<String, serde_json::Value> = results
        .iter()
        .map(|r| (r.label.clone(), json!(r.centered)))
        .collect();
    summary.insert("CORE".into(), json!(core));
    super::write_eval_result(
        &out_path,
        &result,
        "base-eval",
        json!({"model": result["model"], "data": result["data"], "max_per_task": args.max_per_task, "result_file": out_path}),
        serde_json::Value::Object(summary),
    )?;
    Ok(ExitCode::SUCCESS)
}
