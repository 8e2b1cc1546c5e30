//! `nanochat chat-eval`: a chat model's accuracy on the evaluation tasks and its ChatCORE
//! (nanochat's `chat_eval.py`), with a progress bar per task, a JSON result file, and a report
//! stage (`chat-eval-<source>`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use nanochat_core::engine::Engine;
use nanochat_core::eval::{chat_core, chat_task, evaluate_task_with, EvalOptions, CHAT_TASKS};
use nanochat_core::tasks::EvalData;
use serde_json::json;

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
    /// Evaluate only the first N problems of each task.
    #[arg(long, value_parser = at_least_one())]
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
    let mut names: Vec<String> = match &args.task_name {
        Some(s) => s
            .split('|')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect(),
        None => CHAT_TASKS.iter().map(|s| s.to_string()).collect(),
    };
    // A task named twice is evaluated once.
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    if names.is_empty() {
        anyhow::bail!("--task-name names no task");
    }
    let data = if args.samples {
        EvalData::Samples
    } else {
        EvalData::Fetched
    };
    // Load every task first: a missing data set fails before any model time is spent.
    let tasks = names
        .iter()
        .map(|n| chat_task(n, data).with_context(|| format!("loading task {n}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let device = args.device.open()?;
    let super::Loaded {
        phase,
        root,
        model,
        tokenizer,
        meta,
    } = args.model.load(&device)?;
    let engine = Engine::new(model, tokenizer)?;
    let tokenizer = engine.tokenizer();
    let opts = EvalOptions {
        temperature: args.temperature,
        top_k: Some(args.top_k),
        num_samples: args.num_samples,
        max_new_tokens: args.max_new_tokens,
        batch_size: args.batch_size,
        max_problems: args.max_problems,
        ..EvalOptions::default()
    };
    let mut results = Vec::new();
    for (name, task) in names.iter().zip(&tasks) {
        let bar = super::progress::bar(
            args.quiet,
            0,
            "{prefix:>14} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            name,
        );
        let mut r = device
            .exclusive(|| {
                evaluate_task_with(
                    &engine,
                    tokenizer,
                    task.as_ref(),
                    &opts,
                    &mut |done, total, correct| {
                        if let Some(b) = &bar {
                            b.set_length(total as u64);
                            b.set_position(done as u64);
                            b.set_message(format!(
                                "{:.2}%",
                                100.0 * correct as f64 / done.max(1) as f64
                            ));
                        }
                    },
                )
            })?
            .with_context(|| format!("evaluating {name}"))?;
        r.task = name.clone();
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        eprintln!(
            "{name}: {:.2}% ({}/{})",
            100.0 * r.accuracy,
            r.correct,
            r.total
        );
        results.push(r);
    }
    // ChatCORE summarises all six tasks (as nanochat); a subset reports none.
    let core = CHAT_TASKS
        .iter()
        .all(|t| names.iter().any(|n| n == t))
        .then(|| chat_core(&results));
    match core {
        Some(c) => eprintln!("ChatCORE: {c:.4}"),
        None => eprintln!(
            "ChatCORE: not computed (it needs all of {})",
            CHAT_TASKS.join("|")
        ),
    }
    let tasks_json: serde_json::Map<String, serde_json::Value> = results
        .iter()
        .map(|r| {
            (
                r.task.clone(),
                json!({"accuracy": r.accuracy, "correct": r.correct, "total": r.total,
                "baseline": r.baseline, "centered": r.centered()}),
            )
        })
        .collect();
    let dir = root.join("eval");
    let out_path = args
        .output
        .clone()
        .unwrap_or_else(|| dir.join(format!("chat-eval-{}.json", phase.name())));
    let result = json!({
        "source": phase.name(), "step": meta.step, "model_tag": args.model.model_tag,
        "data": if args.samples { "samples" } else { "fetched" },
        "options": opts, "tasks": tasks_json, "ChatCORE": core,
    });
    let mut summary: serde_json::Map<String, serde_json::Value> = results
        .iter()
        .map(|r| (r.task.clone(), json!(r.accuracy)))
        .collect();
    if let Some(c) = core {
        summary.insert("ChatCORE".into(), json!(c));
    }
    super::write_eval_result(
        &out_path,
        &result,
        &format!("chat-eval-{}", phase.name()),
        json!({"source": phase.name(), "step": meta.step, "data": result["data"], "options": result["options"], "result_file": out_path}),
        serde_json::Value::Object(summary),
    )?;
    Ok(ExitCode::SUCCESS)
}
