//! `nanochat chat-eval`: a chat model's accuracy on the evaluation tasks and its ChatCORE
//! (nanochat's `chat_eval.py`), with a progress bar per task, a JSON result file, and a report
//! stage (`chat-eval-<source>`).

use std::path::PathBuf;
use std::process::ExitCode;

use nanochat_core::engine::Engine;
use nanochat_core::eval::{
    chat_eval_path, parse_chat_tasks, ChatEval, EvalOptions, ModelOrigin, TaskResult, CHAT_TASKS,
};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: super::ModelArgs,
    /// Tasks, pipe-separated, e.g. "ARC-Easy|GSM8K" (default: ARC-Easy, ARC-Challenge, MMLU,
    /// GSM8K, HumanEval, SpellingBee).
    #[arg(short = 'a', long)]
    pub task_name: Option<String>,
    /// Sampling temperature of the generative tasks, 0-2 (0: greedy).
    #[arg(short = 't', long, default_value_t = 0.0, value_parser = super::sampling::temperature)]
    pub temperature: f32,
    /// Samples per generative problem (pass@n), 1-8.
    #[arg(short = 'n', long, default_value_t = 1, value_parser = super::sampling::num_samples)]
    pub num_samples: usize,
    /// Prompts per forward in the multiple-choice tasks.
    #[arg(short = 'b', long, default_value_t = 8, value_parser = at_least_one())]
    pub batch_size: usize,
    /// Evaluate only the first N problems of each task (`-x`: nanochat's short name).
    #[arg(short = 'x', long, value_parser = at_least_one())]
    pub max_problems: Option<usize>,
    /// Keep the k most likely tokens, 1-200.
    #[arg(short = 'k', long, default_value_t = 50, value_parser = super::sampling::top_k)]
    pub top_k: usize,
    /// Most tokens per completion, 1-4096.
    #[arg(short = 'm', long, default_value_t = 512, value_parser = super::sampling::max_new_tokens)]
    pub max_new_tokens: usize,
    /// Use the small evaluation samples committed in data/samples/ instead of the fetched sets.
    #[arg(long)]
    pub samples: bool,
    /// The JSON result file (default: <model dir>/eval/chat-eval-<source>.json).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub device: super::DeviceArg,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// A count of at least 1 (clap rejects 0 with a message naming the flag).
pub fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Every task loads before the model: a missing data set fails before any model time is spent.
    let names = parse_chat_tasks(args.task_name.as_deref())?;
    let eval = ChatEval::load(names, super::eval_data(args.samples), args.options())?;
    let device = args.device.open()?;
    let loaded = args.model.load(&device)?;
    let origin = ModelOrigin {
        source: loaded.phase,
        step: loaded.meta.step,
        model_tag: args.model.checkpoint.model_tag.clone(),
    };
    let out_path =
        (args.output.clone()).unwrap_or_else(|| chat_eval_path(&loaded.root, loaded.phase));
    let engine = Engine::new(loaded.model, loaded.tokenizer)?;
    let mut bars = super::progress::eval_bars(args.quiet, BAR, |r: &TaskResult| {
        let pct = 100.0 * r.accuracy;
        format!("{}: {pct:.2}% ({}/{})", r.task, r.correct, r.total)
    });
    let result = eval.run(&engine, engine.tokenizer(), &device, origin, &mut bars)?;
    match result.chat_core {
        Some(c) => eprintln!("ChatCORE: {c:.4}"),
        None => eprintln!(
            "ChatCORE: not computed (it needs all of {})",
            CHAT_TASKS.join("|")
        ),
    }
    super::write_eval_result(&out_path, &result)?;
    Ok(ExitCode::SUCCESS)
}

impl Args {
    /// The evaluation settings of these flags.
    fn options(&self) -> EvalOptions {
        EvalOptions {
            temperature: self.temperature,
            top_k: Some(self.top_k),
            num_samples: self.num_samples,
            max_new_tokens: self.max_new_tokens,
            batch_size: self.batch_size,
            max_problems: self.max_problems,
            ..EvalOptions::default()
        }
    }
}

/// A task's bar: its name, elapsed time, problems done and the running accuracy.
const BAR: &str = "{prefix:>14} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}";
