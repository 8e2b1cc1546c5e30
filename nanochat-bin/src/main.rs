//! `nanochat`: one binary that checks, benchmarks, trains, evaluates and serves nanochat
//! models. This file parses arguments and dispatches; the work lives in
//! nanochat-core and nanochat-kernels.
//!
//! ```text
//! nanochat selftest [--device cpu|cuda] [--json]      every kernel against its reference
//! nanochat bench kernels [--device cpu|cuda] [--json]  kernel throughput as one JSON object
//! nanochat verify-reference FILE [--device cpu|cuda]   reproduce nanochat's float64 fixtures
//! nanochat tok-train [--input PATH...] [--output DIR] [--vocab-size N] ...   train the tokenizer
//! nanochat tok-eval [--tokenizer DIR] [--json]         bytes per token vs GPT-2 / GPT-4
//! nanochat base-train | mid-train | chat-sft ...       training (see --help of each)
//! nanochat chat-cli [-i sft] [-g TAG] [-s STEP] [-p PROMPT] [-t 0.6] [-k 50]   chat in the terminal
//! nanochat chat-web [-i sft] [-n WORKERS] [-p 8000] [--host 127.0.0.1]   the chat server
//! nanochat report [generate|reset] [--dir DIR]         the report card (report/report.md)
//! ```

// The `///` comments of the argument structs are `--help` text, where `<model dir>` is a
// placeholder, not HTML.
#![allow(rustdoc::invalid_html_tags)]

mod cmd;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nanochat",
    version,
    about = "nanochat in Rust: the whole ChatGPT pipeline (tokenizer, training, evaluation, chat) in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every kernel against its plain-Rust reference on a device (checks a GPU end to end).
    Selftest(cmd::selftest::Args),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(cmd::bench::BenchCommand),
    /// Train the BPE tokenizer (the bundled corpus by default).
    TokTrain(cmd::tok_train::Args),
    /// Bytes per token of our tokenizer vs GPT-2 and GPT-4 on several kinds of text.
    TokEval(cmd::tok_eval::Args),
    /// Pretrain a GPT (the bundled corpus by default).
    BaseTrain(Box<cmd::base_train::Args>),
    /// Mid-train a base model on conversations (chat format, special tokens, tool use).
    MidTrain(cmd::chat_train::Args),
    /// Supervised fine-tuning on conversations (one per row).
    ChatSft(cmd::chat_train::Args),
    /// Chat with a trained model in the terminal (`-p` answers one prompt and exits).
    ChatCli(cmd::chat_cli::Args),
    /// Serve a trained model: chat page, streaming API, OpenAI-compatible endpoint.
    ChatWeb(cmd::chat_web::Args),
    /// Reproduce a float64 fixture of nanochat's PyTorch GPT (logits, loss, every gradient).
    VerifyReference(cmd::verify_reference::Args),
    /// The report card: assemble the logged stages into report.md (`generate`), or `reset`.
    Report(cmd::report::Args),
    /// Evaluate a chat model: ARC, MMLU, GSM8K, HumanEval, SpellingBee and ChatCORE.
    ChatEval(cmd::chat_eval::Args),
    /// Evaluate a base model: the CORE score over few-shot tasks.
    BaseEval(cmd::base_eval::Args),
    /// Reinforcement learning (REINFORCE) on tasks with a reward: arithmetic, SpellingBee.
    ChatRl(cmd::chat_rl::Args),
    /// The whole pipeline: tokenizer, base, mid, SFT, evaluation and the report card.
    Speedrun(cmd::speedrun::Args),
    /// Write a model as another program's files (`--to nanochat`: a nanochat base dir).
    Export(cmd::export::Args),
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            nanochat_core::paths::env_string("NANOCHAT_LOG")
                .and_then(|v| tracing_subscriber::EnvFilter::try_new(v).ok())
                .unwrap_or_else(|| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    // Under a launcher, a usage error (which every rank finds) is printed by rank 0 alone.
    let env = |k: &str| std::env::var(k).ok();
    let other_rank = nanochat_core::dist::launched_rank(&env).is_some_and(|r| r > 0);
    let matches = command().try_get_matches().unwrap_or_else(|e| {
        if other_rank {
            std::process::exit(e.exit_code());
        }
        e.exit()
    });
    let name = matches.subcommand_name().unwrap_or_default().to_string();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    // Joins the ranks of an `mpirun` / `srun` launch (or refuses a launch this build cannot
    // join) before any device exists; only rank 0 prints.
    let guard = match nanochat_core::dist::init() {
        Ok(g) => g,
        Err(e) => {
            if !other_rank {
                eprintln!("error: {e}");
            }
            return std::process::ExitCode::FAILURE;
        }
    };
    let rank_stderr = nanochat_core::dist::silence_other_ranks();
    let result = if nanochat_core::dist::world().is_distributed() && !cmd::runs_across_ranks(&name)
    {
        Err(anyhow::anyhow!(
            "`{name}` runs in one process for now; across ranks (mpirun -np N) run: {}",
            cmd::RUN_ACROSS_RANKS.join(", ")
        ))
    } else {
        dispatch(cli.command)
    };
    match result {
        Ok(code) => {
            guard.finish();
            code
        }
        Err(e) => {
            // Once for the job (rank 0's, unless only another rank failed).
            nanochat_core::dist::report_error(&format!("{e:#}"), rank_stderr);
            // Dropping the guard unfinished ends every rank of the job (no peer is left
            // waiting in a collective).
            drop(guard);
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs a command line in this process (the speedrun's stages).
fn dispatch_line(argv: Vec<String>) -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::from_arg_matches(&command().try_get_matches_from(argv)?)?;
    dispatch(cli.command)
}

/// The command line: each subcommand named with a `-` also answers to its `_` spelling, the
/// name of nanochat's script (`tok_train`), and each long flag too (`--max_seq_len`, as
/// nanochat v1's configurator spells its flags), as hidden aliases.
fn command() -> clap::Command {
    underscore_aliases(Cli::command())
}

fn underscore_aliases(mut cmd: clap::Command) -> clap::Command {
    let flags: Vec<(String, Vec<String>)> = cmd
        .get_arguments()
        .filter_map(|a| {
            let mut names: Vec<String> = a.get_long().into_iter().map(str::to_string).collect();
            names.extend(
                a.get_visible_aliases()
                    .unwrap_or_default()
                    .into_iter()
                    .map(str::to_string),
            );
            let under: Vec<String> = names
                .iter()
                .filter(|n| n.contains('-'))
                .map(|n| n.replace('-', "_"))
                .collect();
            (!under.is_empty()).then(|| (a.get_id().to_string(), under))
        })
        .collect();
    for (id, under) in flags {
        cmd = cmd.mut_arg(id, |a| a.aliases(under));
    }
    let subs: Vec<String> = cmd
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for name in subs {
        cmd = cmd.mut_subcommand(&name, |c| {
            let c = if name.contains('-') {
                c.alias(name.replace('-', "_"))
            } else {
                c
            };
            underscore_aliases(c)
        });
    }
    cmd
}

fn dispatch(command: Command) -> anyhow::Result<std::process::ExitCode> {
    match command {
        Command::Selftest(args) => cmd::selftest::run(args),
        Command::Bench(c) => cmd::bench::run(c),
        Command::VerifyReference(args) => cmd::verify_reference::run(args),
        Command::TokTrain(args) => cmd::tok_train::run(args),
        Command::BaseTrain(args) => cmd::base_train::run(*args),
        Command::MidTrain(args) => {
            cmd::chat_train::run(args, nanochat_core::checkpoint::Phase::Mid)
        }
        Command::ChatSft(args) => cmd::chat_train::run(args, nanochat_core::checkpoint::Phase::Sft),
        Command::TokEval(args) => cmd::tok_eval::run(args),
        Command::ChatCli(args) => cmd::chat_cli::run(args),
        Command::ChatWeb(args) => cmd::chat_web::run(args),
        Command::Report(args) => cmd::report::run(args),
        Command::ChatEval(args) => cmd::chat_eval::run(args),
        Command::BaseEval(args) => cmd::base_eval::run(args),
        Command::ChatRl(args) => cmd::chat_rl::run(args),
        Command::Speedrun(args) => cmd::speedrun::run(args, &dispatch_line),
        Command::Export(args) => cmd::export::run(args),
    }
}
