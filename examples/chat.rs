//! Load a trained checkpoint and stream the model's reply to one prompt: what
//! `nanochat chat-cli -p` does, through the library.
//!
//! ```text
//! cargo run --release --example chat -- --base-dir ~/.cache/nanochat -i sft -p "Why is the sky blue?"
//! ```
//!
//! The reply goes to stdout as it is generated; notes go to stderr. The exit status is 1 when
//! the model cannot be loaded, generation fails or the reply is empty.

use std::io::Write;

use anyhow::{bail, Context};
use clap::Parser;
use nanochat_core::checkpoint::Phase;
use nanochat_core::engine::{Engine, FinishReason, GenerateParams};
use nanochat_core::tokenizer::chat::{Conversation, Message};
use nanochat_examples::CheckpointArgs;

/// Streams a trained model's reply to a prompt.
#[derive(Parser, Debug)]
struct Args {
    #[command(flatten)]
    checkpoint: CheckpointArgs,
    /// The user's message.
    #[arg(short = 'p', long, default_value = "Hello! Who are you?")]
    prompt: String,
    /// Most tokens in the reply.
    #[arg(short = 'm', long, default_value_t = 64)]
    max_tokens: usize,
    /// Sampling temperature (0: always the most likely token).
    #[arg(short = 't', long, default_value_t = 0.6)]
    temperature: f32,
    /// Keep the k most likely tokens.
    #[arg(short = 'k', long, default_value_t = 50)]
    top_k: usize,
    /// Seed of the sampler: the same seed gives the same reply.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (paths, device) = args.checkpoint.open()?;

    // 1. The checkpoint: the model's config and weights, and the tokenizer it was trained with
    //    (checked against the fingerprint the checkpoint recorded).
    let (phase, model, tokenizer, meta) = args.checkpoint.model.load(paths, &device, Phase::Sft)?;
    eprintln!(
        "{} model, step {}: {} layers, {} dims, context {} tokens, on {device}",
        phase.name(),
        meta.step,
        model.config().n_layer,
        model.config().n_embd,
        model.config().block_size
    );

    // 2. The engine: KV-cache decoding, sampling, the special tokens and the calculator tool.
    let engine = Engine::new(model, tokenizer)?;

    // 3. The conversation so far: one user message. The engine renders it in the chat format
    //    and asks for the assistant's turn.
    let conversation = Conversation::new(vec![Message::user(&args.prompt)]);
    let params = GenerateParams {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_k: Some(args.top_k),
        seed: Some(args.seed),
        ..Default::default()
    };

    // 4. Stream: the callback receives whole characters as they are sampled. (Returning an
    //    error from it would stop generation; here a failed write is kept and reported after.)
    let mut out = std::io::stdout().lock();
    let mut write_error = None;
    let (reply, finish) = engine.reply(&conversation, &params, |text| {
        if write_error.is_none() {
            if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
                write_error = Some(e);
            }
        }
        Ok(())
    })?;
    if let Some(e) = write_error {
        return Err(e).context("writing the reply to stdout");
    }
    writeln!(out).context("writing the reply to stdout")?;

    // 5. Why it stopped: `<|assistant_end|>`, the token limit, or a full context.
    let why = match finish {
        FinishReason::Stop => "the model ended its turn",
        FinishReason::Length => "--max-tokens reached",
        FinishReason::ContextFull => "the context is full",
    };
    eprintln!("({} characters; {why})", reply.chars().count());
    if reply.trim().is_empty() {
        bail!("the model's reply is empty");
    }
    Ok(())
}
