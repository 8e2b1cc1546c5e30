//! `nanochat chat-rl`: reinforcement learning on tasks with a reward (nanochat's `chat_rl.py`:
//! REINFORCE with advantage = reward - mean over each prompt's samples), from the SFT model by
//! default; saves `rl_checkpoints/<tag>/` with a `metrics.jsonl` of mean rewards, and a report
//! stage (`chat-rl`).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use nanochat_core::checkpoint::{checkpoint_dir, save_checkpoint, Phase, SaveInfo};
use nanochat_core::engine::{Engine, GenerateParams};
use nanochat_core::rl::{mean_reward, RlConfig, RlTrainer};
use nanochat_core::tasks::{Arithmetic, SpellingBee, Split, Task, TaskMixture};
use serde_json::json;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// The model to start from (sft by default).
    #[command(flatten)]
    pub model: super::ModelArgs,
    /// Tasks with a reward, comma-separated: arithmetic, spelling-bee.
    #[arg(long, value_delimiter = ',', default_value = "arithmetic,spelling-bee")]
    pub tasks: Vec<String>,
    #[arg(long, default_value_t = 50)]
    pub total_steps: u64,
    /// Prompts per step.
    #[arg(long, default_value_t = 4)]
    pub examples_per_step: usize,
    /// Samples per prompt, 2-8.
    #[arg(short = 'n', long, default_value_t = 8, value_parser = super::sampling::rl_num_samples)]
    pub num_samples: usize,
    /// Most tokens per sample, 1-4096.
    #[arg(short = 'm', long, default_value_t = 128, value_parser = super::sampling::max_new_tokens)]
    pub max_new_tokens: usize,
    /// Sampling temperature, 0-2.
    #[arg(short = 't', long, default_value_t = 1.0, value_parser = super::sampling::temperature)]
    pub temperature: f32,
    /// Keep the k most likely tokens, 1-200.
    #[arg(short = 'k', long, default_value_t = 50, value_parser = super::sampling::top_k)]
    pub top_k: usize,
    /// Learning rates as a fraction of the pretraining defaults.
    #[arg(long, default_value_t = 0.05)]
    pub init_lr_frac: f32,
    /// Greedy pass@1 on the tasks' test splits every this many steps (and at the end); 0: only
    /// at the start and the end.
    #[arg(long, default_value_t = 25)]
    pub eval_every: u64,
    /// Test problems per evaluation.
    #[arg(long, default_value_t = 32)]
    pub eval_examples: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[command(flatten)]
    pub device: super::DeviceArg,
    #[arg(long)]
    pub quiet: bool,
}

fn reward_task(name: &str, split: Split, size: usize) -> anyhow::Result<Arc<dyn Task>> {
    Ok(match name {
        "arithmetic" => Arc::new(Arithmetic::new(size, split)),
        "spelling-bee" | "spellingbee" | "SpellingBee" => Arc::new(SpellingBee::new(size, split)?),
        other => anyhow::bail!(
            "chat-rl: task `{other}` has no reward; expected arithmetic or spelling-bee"
        ),
    })
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let train = args
        .tasks
        .iter()
        .map(|t| reward_task(t, Split::Train, 2000))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let test = args
        .tasks
        .iter()
        .map(|t| reward_task(t, Split::Test, 1000))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let train: Arc<dyn Task> = Arc::new(TaskMixture::new(train, args.seed));
    let test = TaskMixture::new(test, args.seed);
    let device = args.device.open()?;
    let super::Loaded {
        phase,
        root,
        model,
        tokenizer,
        meta,
    } = args.model.load(&device)?;
    let tag = super::chat_train::root_tag(&root, phase, args.model.model_tag.as_deref(), &meta);
    let cfg = RlConfig {
        total_steps: args.total_steps,
        examples_per_step: args.examples_per_step,
        num_samples: args.num_samples,
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_k: Some(args.top_k),
        init_lr_frac: args.init_lr_frac,
        seed: args.seed,
    };
    let mut rl = RlTrainer::new(Engine::new(model, tokenizer)?, train, cfg.clone())?;
    let greedy = GenerateParams {
        num_samples: 1,
        max_tokens: args.max_new_tokens,
        temperature: 0.0,
        top_k: None,
        seed: Some(0),
    };
    let evaluate = |rl: &RlTrainer| {
        device.exclusive(|| mean_reward(&rl.engine, &test, args.eval_examples, &greedy))
    };
    let pass_start = evaluate(&rl)??;
    eprintln!(
        "chat-rl {tag}: from {} step {}, test pass@1 {pass_start:.4}",
        phase.name(),
        meta.step
    );
    let dir = checkpoint_dir(&root, Phase::Rl, &tag);
    let metrics = nanochat_core::train::MetricsLog::open(&dir, 0)?;
    let bar = super::progress::bar(args.quiet, args.total_steps, super::progress::STEPS, "");
    let mut pass_end = pass_start;
    let mut rewards = Vec::new();
    while rl.step < args.total_steps {
        let s = rl.train_step().context("RL step")?;
        rewards.push(s.mean_reward);
        let last = rl.step == args.total_steps;
        let mut line = json!({"step": s.step, "mean_reward": s.mean_reward, "mean_tokens": s.mean_tokens,
            "lr_multiplier": s.lr_multiplier});
        if last || (args.eval_every > 0 && rl.step % args.eval_every == 0) {
            pass_end = evaluate(&rl)??;
            line["pass_at_1"] = json!(pass_end);
            super::progress::line(&bar, format!("step {}: test pass@1 {pass_end:.4}", rl.step));
        }
        metrics.append_json(&line)?;
        if let Some(b) = &bar {
            b.set_position(rl.step);
            b.set_message(format!(
                "reward {:.3} | {:.0} tokens",
                s.mean_reward, s.mean_tokens
            ));
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let run = json!({"command": "chat-rl", "source": {"phase": phase.name(), "tag": tag, "step": meta.step},
        "tasks": args.tasks, "config": cfg});
    save_checkpoint(
        &dir,
        Phase::Rl,
        rl.step,
        rl.engine.model(),
        None,
        SaveInfo {
            tokenizer_path: meta.tokenizer_path.clone(),
            tokenizer_sha256: Some(rl.engine.tokenizer().fingerprint()?),
            run: run.clone(),
            ..SaveInfo::default()
        },
    )?;
    let k = rewards.len().clamp(1, 5);
    let results = json!({
        "steps": rl.step, "pass_at_1_start": pass_start, "pass_at_1_end": pass_end,
        "mean_reward_first": rewards.iter().take(k).sum::<f64>() / k as f64,
        "mean_reward_last": rewards.iter().rev().take(k).sum::<f64>() / k as f64,
        "wall_s": start.elapsed().as_secs_f64(),
    });
    super::report_stage(
        "chat-rl",
        json!({"checkpoint_dir": dir, "run": run}),
        results.clone(),
    );
    println!(
        "{}",
        serde_json::to_string_pretty(
            &json!({"phase": "rl", "model_tag": tag, "checkpoint_dir": dir, "results": results})
        )?
    );
    Ok(ExitCode::SUCCESS)
}
