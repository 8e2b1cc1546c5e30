//! Evaluate a trained model on a task of your own: implement `tasks::Task`, then hand it to
//! the library's evaluation, as `nanochat chat-eval` does with ARC, MMLU or GSM8K.
//!
//! The task here, "which number is larger?", is categorical: each question lists two numbers
//! with the letters A and B, and the model's answer is the letter whose logit is larger right
//! after the prompt (the model never has to generate). Prints the result as JSON.
//!
//! ```text
//! cargo run --release --example custom_task -- --base-dir ~/.cache/nanochat -i sft --num-examples 40
//! ```
//!
//! The exit status is 1 when the model cannot be loaded, the task's own check disagrees with
//! its reference answers, or the evaluation fails.

use anyhow::{bail, Context};
use clap::Parser;
use nanochat_core::checkpoint::Phase;
use nanochat_core::engine::Engine;
use nanochat_core::eval::{evaluate_task_with, EvalOptions};
use nanochat_core::tasks::{content_text, render_mc, EvalType, Task};
use nanochat_core::tokenizer::chat::{Conversation, Message};
use nanochat_examples::{at_least_one, CheckpointArgs};

/// Evaluates a model on a custom categorical task and prints its accuracy as JSON.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    checkpoint: CheckpointArgs,
    /// Questions to ask.
    #[arg(long, default_value_t = 40, value_parser = at_least_one())]
    num_examples: usize,
    /// Questions per forward pass.
    #[arg(long, default_value_t = 8, value_parser = at_least_one())]
    batch_size: usize,
    /// Seed of the questions' numbers.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

/// "Which number is larger?" over two distinct numbers below 1000. Synthetic: example `i`
/// exists for every `i` (made from `seed` and `i`); `num_examples` says how many to evaluate.
struct LargerNumber {
    num_examples: usize,
    seed: u64,
}

impl LargerNumber {
    /// The two numbers of example `i`, distinct (a splitmix64 hash of the seed and `i`).
    fn pair(&self, i: usize) -> (u64, u64) {
        let mut z = self
            .seed
            .wrapping_add((i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let a = z % 1000;
        (a, (a + 1 + (z >> 32) % 999) % 1000)
    }
}

impl Task for LargerNumber {
    fn name(&self) -> String {
        "larger-number".into()
    }
    fn eval_type(&self) -> EvalType {
        EvalType::Categorical
    }
    fn num_examples(&self) -> usize {
        self.num_examples
    }
    /// The question in nanochat's multiple-choice format, and the reference answer (the
    /// conversation's last message): the letter of the larger number.
    fn get_example(&self, i: usize) -> nanochat_core::Result<Conversation> {
        let (a, b) = self.pair(i);
        let question = render_mc(
            "Which number is larger?",
            &self.choice_letters(i),
            &[a.to_string(), b.to_string()],
        );
        let answer = if a > b { "A" } else { "B" };
        Ok(Conversation::new(vec![
            Message::user(&question),
            Message::assistant(answer),
        ]))
    }
    /// The letters whose logits are compared (each must be one token).
    fn choice_letters(&self, _i: usize) -> Vec<String> {
        vec!["A".into(), "B".into()]
    }
    /// Right when the chosen letter is the reference answer's.
    fn evaluate(&self, conversation: &Conversation, completion: &str) -> bool {
        conversation
            .messages
            .last()
            .is_some_and(|m| content_text(&m.content).trim() == completion.trim())
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (paths, device) = args.checkpoint.open()?;
    let task = LargerNumber {
        num_examples: args.num_examples,
        seed: args.seed,
    };

    // 1. Check the task against itself first: its reference answer must pass and the other
    //    letter must not (a wrong `evaluate` would make every accuracy meaningless).
    for i in 0..task.num_examples() {
        let conv = task.get_example(i)?;
        let reference = content_text(&conv.messages[conv.messages.len() - 1].content);
        let wrong = if reference == "A" { "B" } else { "A" };
        if !task.evaluate(&conv, &reference) || task.evaluate(&conv, wrong) {
            bail!("the task's check disagrees with its own answer on example {i}");
        }
    }

    // 2. The model, wrapped in the engine (which implements the evaluation's `ChatModel`).
    let (phase, model, tokenizer, meta) = args.checkpoint.model.load(paths, &device, Phase::Sft)?;
    let engine = Engine::new(model, tokenizer)?;

    // 3. The library's evaluation: categorical tasks are scored in batches of prompts, on the
    //    device's thread; the callback reports progress.
    let opts = EvalOptions {
        batch_size: args.batch_size,
        ..EvalOptions::default()
    };
    let result = device
        .exclusive(|| {
            evaluate_task_with(
                &engine,
                engine.tokenizer(),
                &task,
                &opts,
                &mut |done, total, correct| eprintln!("{done}/{total}: {correct} right"),
            )
        })?
        .with_context(|| format!("evaluating {}", task.name()))?;

    // 4. The result: accuracy, and how far above chance (0.5 here) it is.
    let line = serde_json::json!({
        "task": result.task, "source": phase.name(), "step": meta.step,
        "accuracy": result.accuracy, "correct": result.correct, "total": result.total,
        "baseline": result.baseline, "centered": result.centered(),
    });
    println!("{line}");
    if result.total != task.num_examples() {
        bail!(
            "evaluated {} of {} examples",
            result.total,
            task.num_examples()
        );
    }
    Ok(())
}
