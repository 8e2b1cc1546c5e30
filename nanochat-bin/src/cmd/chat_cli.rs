//! `nanochat chat-cli`: talk to a trained model in the terminal (nanochat's `chat_cli.py`).

use std::io::{BufRead, Write};

use anyhow::Context;
use clap::Parser;
use nanochat_core::engine::{Engine, GenerateParams};
use nanochat_core::tokenizer::chat::{Conversation, Message};

#[derive(Parser, Debug)]
pub struct Args {
    #[command(flatten)]
    model: super::ModelArgs,
    /// Answer this one prompt and exit.
    #[arg(short = 'p', long)]
    prompt: Option<String>,
    /// Sampling temperature, 0-2 (0: greedy).
    #[arg(short = 't', long, default_value_t = 0.6, value_parser = super::sampling::temperature)]
    temperature: f32,
    /// Keep the k most likely tokens, 1-200.
    #[arg(short = 'k', long, default_value_t = 50, value_parser = super::sampling::top_k)]
    top_k: usize,
    /// Most tokens per reply, 1-4096.
    #[arg(short = 'm', long, default_value_t = 256, value_parser = super::sampling::max_tokens)]
    max_tokens: usize,
    /// Seed of the sampler (default: random).
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    device: super::DeviceArg,
    /// With -p: print one JSON object (`reply`, the generated token ids `tokens`, `finish_reason`)
    /// instead of streaming text; `scripts/gpu-check.sh` compares devices token for token so.
    #[arg(long, requires = "prompt")]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<std::process::ExitCode> {
    let device = args.device.open()?;
    let loaded = args.model.load(&device)?;
    let engine = Engine::new(loaded.model, loaded.tokenizer)?;
    let params = GenerateParams {
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_k: Some(args.top_k),
        seed: args.seed,
        ..Default::default()
    };
    let mut conv = Conversation::new(Vec::new());
    let mut out = std::io::stdout();
    if let Some(prompt) = &args.prompt {
        conv.messages.push(Message::user(prompt));
        if args.json {
            let tokens = engine.completion_prompt(&conv)?;
            let (ids, finish_reason) = engine.generate_ids(&tokens, &params)?;
            let reply = engine.tokenizer().decode(&ids)?;
            let line = serde_json::json!({
                "reply": reply,
                "tokens": ids,
                "finish_reason": finish_reason.as_str(),
            });
            writeln!(out, "{line}")?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        answer(&engine, &conv, &params, &mut out)?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    eprintln!(
        "nanochat chat: {} model, step {}. Type `clear` for a new conversation, `quit` to exit.",
        loaded.phase.name(),
        loaded.meta.step
    );
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        write!(out, "\nUser: ")?;
        out.flush()?;
        let Some(line) = lines.next() else { break };
        let line = line.context("reading stdin")?;
        let input = line.trim();
        match input {
            "" => continue,
            "quit" | "exit" => break,
            "clear" => {
                conv.messages.clear();
                writeln!(out, "(conversation cleared)")?;
                continue;
            }
            _ => {}
        }
        conv.messages.push(Message::user(input));
        match answer(&engine, &conv, &params, &mut out) {
            Ok(reply) => conv.messages.push(Message::assistant_from_reply(&reply)),
            Err(e) => {
                // The session goes on: forget the unanswered message and say why.
                conv.messages.pop();
                writeln!(out)?;
                eprintln!("error: {e:#} (type `clear` to start a new conversation)");
            }
        }
    }
    writeln!(out)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Streams the assistant's reply to stdout; returns it.
fn answer(
    engine: &Engine,
    conv: &Conversation,
    params: &GenerateParams,
    out: &mut impl Write,
) -> anyhow::Result<String> {
    write!(out, "Assistant: ")?;
    out.flush()?;
    let io_err = |error: std::io::Error| nanochat_core::CoreError::Os {
        op: "writing the reply to stdout",
        error,
    };
    let (reply, reason) = engine.reply(conv, params, |text| {
        out.write_all(text.as_bytes()).map_err(io_err)?;
        out.flush().map_err(io_err)
    })?;
    writeln!(out)?;
    if reason == nanochat_core::engine::FinishReason::ContextFull {
        eprintln!(
            "(the reply stopped: the model's context of {} tokens is full; `clear` starts over)",
            engine.model().config().block_size
        );
    }
    Ok(reply)
}
