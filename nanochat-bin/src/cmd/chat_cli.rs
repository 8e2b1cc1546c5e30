//! `nanochat chat-cli`: talk to a trained model in the terminal (nanochat's `chat_cli.py`).

use std::io::{BufRead, Write};

use anyhow::Context;
use clap::Parser;
use nanochat_core::engine::session::{ChatSession, Input};
use nanochat_core::engine::{Engine, GenerateParams};

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
    let mut session = ChatSession::new(&engine, params);
    let mut out = std::io::stdout();
    if let Some(prompt) = &args.prompt {
        if args.json {
            writeln!(out, "{}", session.turn_ids(prompt)?.to_json())?;
        } else {
            answer(&mut session, prompt, &mut out)?;
        }
        return Ok(std::process::ExitCode::SUCCESS);
    }
    eprintln!(
        "nanochat chat: {} model, step {}. Type `clear` for a new conversation, `quit` to exit.",
        loaded.phase.name(),
        loaded.meta.step
    );
    repl(&mut session, &mut out)?;
    Ok(std::process::ExitCode::SUCCESS)
}

/// The interactive loop: one turn per line of stdin until its end, `quit` or `exit`.
fn repl(session: &mut ChatSession, out: &mut impl Write) -> anyhow::Result<()> {
    let mut lines = std::io::stdin().lock().lines();
    loop {
        write!(out, "\nUser: ")?;
        out.flush()?;
        let Some(line) = lines.next() else { break };
        match Input::parse(&line.context("reading stdin")?) {
            Input::Empty => continue,
            Input::Quit => break,
            Input::Clear => {
                session.clear();
                writeln!(out, "(conversation cleared)")?;
            }
            Input::Message(text) => {
                if let Err(e) = answer(session, text, out) {
                    // The session goes on (without the unanswered message): say why.
                    writeln!(out)?;
                    eprintln!("error: {e:#} (type `clear` to start a new conversation)");
                }
            }
        }
    }
    writeln!(out)?;
    Ok(())
}

/// Sends `text` and streams the assistant's reply to `out`. `Assistant: ` is written with the
/// first piece of the reply, so a message refused before generating (too long for the
/// context) prints only its error.
fn answer(session: &mut ChatSession, text: &str, out: &mut impl Write) -> anyhow::Result<()> {
    let io_err = |error: std::io::Error| nanochat_core::CoreError::Os {
        op: "writing the reply to stdout",
        error,
    };
    let mut started = false;
    let (_, reason) = session.turn(text, |text| {
        if !started {
            started = true;
            out.write_all(b"Assistant: ").map_err(io_err)?;
        }
        out.write_all(text.as_bytes()).map_err(io_err)?;
        out.flush().map_err(io_err)
    })?;
    if !started {
        write!(out, "Assistant: ")?;
    }
    writeln!(out)?;
    if reason == nanochat_core::engine::FinishReason::ContextFull {
        eprintln!(
            "(the reply stopped: the model's context of {} tokens is full; `clear` starts over)",
            session.block_size()
        );
    }
    Ok(())
}
