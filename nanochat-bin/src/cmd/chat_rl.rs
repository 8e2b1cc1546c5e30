//! `nanochat chat-rl`: reinforcement learning on tasks with a reward (nanochat's `chat_rl.py`:
//! REINFORCE with advantage = reward - mean over each prompt's samples), from the SFT model by
//! default; saves `rl_checkpoints/<tag>/` with a `metrics.jsonl` of mean rewards, and a report
//! stage (`chat-rl`).

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use indicatif::ProgressBar;
use nanochat_core::engine::Engine;
use nanochat_core::model::Architecture;
use nanochat_core::recipe::check_recipe;
use nanochat_core::rl::{RlConfig, RlEvent, RlRun, RlTasks, RlTrainer};

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
    #[arg(short = 't', long, default_value_t = 1.0, value_parser = super::sampling::temperature, allow_negative_numbers = true)]
    pub temperature: f32,
    /// Keep the k most likely tokens, 1-200.
    #[arg(short = 'k', long, default_value_t = 50, value_parser = super::sampling::top_k)]
    pub top_k: usize,
    /// Learning rates as a fraction of the pretraining defaults.
    #[arg(long, default_value_t = 0.05, allow_negative_numbers = true)]
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
    /// The recipe, which follows the source model: naming the other one is an error.
    #[arg(long, value_parser = ["v1", "head"])]
    pub recipe: Option<String>,
    #[command(flatten)]
    pub device: super::DeviceArg,
    #[arg(long)]
    pub quiet: bool,
}

impl Args {
    /// The trainer's settings.
    fn config(&self) -> RlConfig {
        RlConfig {
            total_steps: self.total_steps,
            examples_per_step: self.examples_per_step,
            num_samples: self.num_samples,
            max_new_tokens: self.max_new_tokens,
            temperature: self.temperature,
            top_k: Some(self.top_k),
            init_lr_frac: self.init_lr_frac,
            seed: self.seed,
        }
    }
}

/// Shows an event of the run: pass@1 as a line (the first after `start`), steps on the bar.
fn show(bar: &Option<ProgressBar>, start: &str, e: &RlEvent) {
    if let Some(l) = e.line(start) {
        super::progress::line(bar, l);
    }
    if let (RlEvent::Step(s), Some(b)) = (e, bar) {
        b.set_position(s.step);
        b.set_message(format!(
            "reward {:.3} | {:.0} tokens",
            s.mean_reward, s.mean_tokens
        ));
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let tasks = RlTasks::new(&args.tasks, args.seed).context("chat-rl")?;
    let device = args.device.open()?;
    let loaded = args.model.load(&device)?;
    let (phase, root, meta) = (loaded.phase, loaded.root, loaded.meta);
    let tag = nanochat_core::checkpoint::root_tag(
        &root,
        phase,
        args.model.checkpoint.model_tag.as_deref(),
        &meta,
    );
    let what = format!("{} model `{tag}` step {}", phase.name(), meta.step);
    let recipe = args.recipe.as_deref().and_then(Architecture::parse);
    check_recipe("chat-rl", recipe, loaded.model.config().architecture, &what)?;
    let mut rl = RlTrainer::new(
        Engine::new(loaded.model, loaded.tokenizer)?,
        tasks.train,
        args.config(),
    )?;
    let run = RlRun {
        test: tasks.test,
        tasks: args.tasks.clone(),
        eval_every: args.eval_every,
        eval_examples: args.eval_examples,
        root,
        model_tag: tag.clone(),
        source_phase: phase,
        source_step: meta.step,
        tokenizer_path: meta.tokenizer_path,
        started,
    };
    let start = format!("chat-rl {tag}: from {} step {}", phase.name(), meta.step);
    let bar = super::progress::bar(args.quiet, args.total_steps, super::progress::STEPS, "");
    let out = rl
        .run(&run, &mut |e| show(&bar, &start, e))
        .context("chat-rl")?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let (printed, settings, results) = out.summary(&tag);
    super::report_stage("chat-rl", settings, results);
    println!("{}", serde_json::to_string_pretty(&printed)?);
    Ok(ExitCode::SUCCESS)
}
