//! Fine-tune a trained model on your own conversations through the library: the SFT data
//! pipeline `nanochat chat-sft` uses (one conversation per row, loss only on the assistant's
//! tokens), saved as a new `sft` checkpoint that `chat`, `chat-cli` and `chat-eval` can load.
//!
//! ```text
//! cargo run --release --example finetune -- --base-dir ~/.cache/nanochat -i base \
//!     --data examples/data/conversations.jsonl --steps 20 --out-tag my-chat
//! cargo run --release --example chat -- --base-dir ~/.cache/nanochat -i sft -g my-chat
//! ```
//!
//! The data is a JSONL file, one conversation per line:
//! `{"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}]}`.
//! Prints one line per step and a JSON summary; the exit status is 1 when the model or the
//! data cannot be read, or when a loss is not finite.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use nanochat_core::checkpoint::{tokenizer_for, Phase};
use nanochat_core::data::{Batch, DataLoader, Packing};
use nanochat_core::optim::{LrSchedule, OptimConfig, OptimSettings, Schedules};
use nanochat_core::tasks::{CustomJson, Task, TaskSlice};
use nanochat_core::train::{Event, TrainConfig, Trainer};
use nanochat_core::DType;
use nanochat_examples::{at_least_one, CheckpointArgs};
use serde_json::json;

/// Fine-tunes a model on a JSONL file of conversations and saves it as an sft checkpoint.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    checkpoint: CheckpointArgs,
    /// The conversations (one `{"messages": [...]}` per line).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/conversations.jsonl"))]
    data: PathBuf,
    /// Optimizer steps.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    steps: u64,
    /// Conversations per step.
    #[arg(long, default_value_t = 4, value_parser = at_least_one())]
    batch_size: usize,
    /// Tokens per row; longer conversations are cut (default: the model's context).
    #[arg(long, value_parser = at_least_one())]
    seq_len: Option<usize>,
    /// Peak Muon learning rate (the AdamW rates scale with it).
    #[arg(long, default_value_t = 0.02)]
    lr: f32,
    /// Tag (folder name) of the new sft checkpoint.
    #[arg(long, default_value = "example")]
    out_tag: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (paths, device) = args.checkpoint.open()?;

    // 1. The conversations, read first so that a bad file fails before the model loads. The
    //    last tenth (at least one) is held out to measure validation bits per byte.
    let data = CustomJson::from_file(&args.data)
        .with_context(|| format!("reading --data {}", args.data.display()))?;
    let n = data.num_examples();
    if n < 2 {
        bail!(
            "--data {} holds {n} conversation(s); at least 2 are needed (one is held out)",
            args.data.display()
        );
    }
    let n_val = (n / 10).max(1);
    let data: Arc<dyn Task> = Arc::new(data);
    let train_task: Arc<dyn Task> = Arc::new(TaskSlice::new(data.clone(), 0, Some(n - n_val), 1)?);
    let val_task: Arc<dyn Task> = Arc::new(TaskSlice::new(data, n - n_val, None, 1)?);

    // 2. The model to start from (a base or mid checkpoint) and its tokenizer.
    let (phase, model, tokenizer, meta) =
        args.checkpoint.model.load(paths, &device, Phase::Base)?;
    let t = args.seq_len.unwrap_or(model.config().block_size);
    if t > model.config().block_size {
        bail!(
            "--seq-len {t} exceeds the model's context of {} tokens",
            model.config().block_size
        );
    }
    let b = args.batch_size;

    // 3. The SFT pipeline: each conversation rendered in the chat format, one per row, padded;
    //    targets are -1 (no loss) everywhere but the assistant's tokens.
    let train = DataLoader::conversations(train_task, Packing::Padded, tokenizer.clone(), b, t)?;
    let mut val_loader =
        DataLoader::conversations(val_task, Packing::Padded, tokenizer.clone(), b, t)?;
    let val: Vec<Batch> = vec![val_loader.next_batch()?];

    // 4. The training loop's settings: Muon and AdamW groups as nanochat, a warmdown schedule,
    //    validation and a checkpoint at the last step only.
    let cfg = TrainConfig {
        phase: Phase::Sft,
        root: paths.model_root.clone(),
        model_tag: args.out_tag.clone(),
        batch_size: b,
        seq_len: t,
        total_batch_size: b * t,
        total_steps: args.steps,
        optim: OptimSettings::V1(OptimConfig::with_peak_lr(args.lr)),
        schedule: Schedules::V1(LrSchedule::new(args.steps as usize)),
        eval_every: 0,
        save_every: 0,
        sample_prompts: vec![],
        tokenizer_path: tokenizer_for(paths, &meta),
        tokenizer_record: meta.tokenizer_path.clone(),
        compute_dtype: DType::F32,
        run: json!({"command": "examples/finetune", "data": args.data, "source": phase.name(), "step": meta.step}),
    };
    model.set_rng_state(0);
    let mut trainer = Trainer::new(model, tokenizer, Box::new(train), val, cfg)?;

    // 5. Train, printing each step's loss (nats per supervised token) as it comes.
    let mut losses = Vec::new();
    let val_bpb = trainer.run(&mut |event| match event {
        Event::Step(m) => {
            match m.loss {
                Some(loss) => eprintln!("step {:>4}/{}  loss {loss:.4}", m.step, args.steps),
                None => eprintln!(
                    "step {:>4}/{}  skipped (no supervised token)",
                    m.step, args.steps
                ),
            }
            losses.extend(m.loss);
        }
        Event::Saved { dir, step } => eprintln!("saved step {step} in {}", dir.display()),
        _ => {}
    })?;

    // 6. It worked when every step had a finite loss.
    let summary = json!({
        "model_tag": args.out_tag, "steps": trainer.step, "losses": losses, "val_bpb": val_bpb,
        "checkpoint_dir": trainer.cfg.checkpoint_dir(),
    });
    println!("{summary}");
    if losses.is_empty() || losses.iter().any(|l| !l.is_finite()) {
        bail!("fine-tuning failed: losses {losses:?} (none, or not all finite)");
    }
    Ok(())
}
