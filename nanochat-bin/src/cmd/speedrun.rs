//! `nanochat speedrun`: the whole pipeline in one command, as nanochat's `speedrun.sh`:
//! tokenizer (train, evaluate), base model (train, CORE), mid-training, SFT, chat evaluation of
//! the mid and SFT models (ChatCORE), optionally RL, and the report card.
//!
//! The default (`--device cpu`) needs nothing but the repository: the bundled corpus, the
//! committed chat sets and the committed evaluation samples (`--samples`); it takes about 10
//! minutes on 2 cores. `--device cuda` runs the full-size recipe (depth 20, sequence 2048,
//! bf16, Chinchilla-sized steps) on the data `scripts/fetch_data.sh` fetched.
//!
//! Each stage is the subcommand of the same name, run in this process (so compiled kernels are
//! reused); every stage's arguments are printed before it runs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use serde_json::json;

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    /// cpu (the small recipe on the bundled data) or cuda (the full-size recipe on fetched data).
    #[arg(short = 'd', long, default_value = "cpu")]
    pub device: String,
    /// Model depth (default: 4 on cpu, 20 on cuda).
    #[arg(long)]
    pub depth: Option<usize>,
    /// Base-training steps (default: 800 on cpu; on cuda 20 tokens per parameter).
    #[arg(long)]
    pub base_steps: Option<u64>,
    /// Mid-training and SFT steps each (default: 150 on cpu, 1000 on cuda).
    #[arg(long)]
    pub chat_steps: Option<u64>,
    /// Evaluate only the first N problems (CORE items) of each task (default: all).
    #[arg(long)]
    pub max_problems: Option<usize>,
    /// Also run chat-rl after SFT (and evaluate the RL model).
    #[arg(long)]
    pub rl: bool,
    /// chat-rl steps (with --rl).
    #[arg(long, default_value_t = 30)]
    pub rl_steps: u64,
    /// Tokenizer vocabulary (default: 8192 on cpu, 65536 on cuda).
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs one subcommand line (`["base-train", "--depth", "4", ...]`) in this process.
pub type Dispatch<'a> = &'a dyn Fn(Vec<String>) -> anyhow::Result<ExitCode>;

struct Recipe {
    cuda: bool,
    depth: usize,
    vocab: usize,
    seq_len: usize,
    batch_size: usize,
    total_batch: Option<usize>,
    base_steps: u64,
    chat_steps: u64,
    dtype: &'static str,
    /// Training files (the last one is validation); empty: the bundled corpus.
    inputs: Vec<PathBuf>,
}

fn recipe(args: &Args) -> anyhow::Result<Recipe> {
    let cuda = args.device.starts_with("cuda");
    if !cuda {
        return Ok(Recipe {
            cuda,
            depth: args.depth.unwrap_or(4),
            vocab: args.vocab_size.unwrap_or(8192),
            seq_len: 256,
            batch_size: 4,
            total_batch: None,
            base_steps: args.base_steps.unwrap_or(800),
            chat_steps: args.chat_steps.unwrap_or(150),
            dtype: "float32",
            inputs: Vec::new(),
        });
    }
    let corpus = nanochat_core::tasks::data_dir().join("corpus");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&corpus)
        .with_context(|| format!("{}: run scripts/fetch_data.sh first (the cuda recipe trains on the fetched corpus)", corpus.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl") && !p.ends_with("bundled.jsonl"))
        .collect();
    inputs.sort();
    let val = corpus.join("bundled.jsonl");
    if inputs.is_empty() || !val.exists() {
        bail!(
            "{} lacks the fetched corpus: run scripts/fetch_data.sh",
            corpus.display()
        );
    }
    inputs.push(val);
    let depth = args.depth.unwrap_or(20);
    // nanochat: 20 tokens per parameter (Chinchilla) at a total batch of 524,288 tokens.
    let (n_embd, vocab) = (64 * depth, args.vocab_size.unwrap_or(65536));
    let params = 12 * depth * n_embd * n_embd + 2 * vocab * n_embd;
    let total_batch = 524_288;
    Ok(Recipe {
        cuda,
        depth,
        vocab,
        seq_len: 2048,
        batch_size: 32,
        total_batch: Some(total_batch),
        base_steps: args
            .base_steps
            .unwrap_or((20 * params / total_batch) as u64),
        chat_steps: args.chat_steps.unwrap_or(1000),
        dtype: "bfloat16",
        inputs,
    })
}

fn line(parts: &[&str]) -> Vec<String> {
    std::iter::once("nanochat")
        .chain(parts.iter().copied())
        .map(String::from)
        .collect()
}

pub fn run(args: Args, dispatch: Dispatch<'_>) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let r = recipe(&args)?;
    let tag = format!("d{}", r.depth);
    let (depth, vocab, seq, batch) = (
        r.depth.to_string(),
        r.vocab.to_string(),
        r.seq_len.to_string(),
        r.batch_size.to_string(),
    );
    let (base_steps, chat_steps) = (r.base_steps.to_string(), r.chat_steps.to_string());
    let dev = args.device.as_str();
    let quiet: &[&str] = if args.quiet { &["--quiet"] } else { &[] };
    let samples: &[&str] = if r.cuda { &[] } else { &["--samples"] };
    let max_problems = args.max_problems.map(|n| n.to_string());
    let limit = |flag: &'static str| -> Vec<String> {
        max_problems
            .iter()
            .flat_map(|n| [flag.to_string(), n.clone()])
            .collect()
    };
    let mut stages: Vec<(&str, Vec<String>)> = vec![
        ("report reset", line(&["report", "reset"])),
        ("tokenizer", line(&["tok-train", "--vocab-size", &vocab])),
        ("tokenizer eval", line(&["tok-eval"])),
    ];
    let mut base = line(&[
        "base-train",
        "--depth",
        &depth,
        "--seq-len",
        &seq,
        "--batch-size",
        &batch,
        "--total-steps",
        &base_steps,
        "--dtype",
        r.dtype,
        "--device",
        dev,
        "--model-tag",
        &tag,
        "--eval-every",
        if r.cuda { "250" } else { "200" },
    ]);
    if let Some(tb) = r.total_batch {
        base.extend(["--total-batch-size".to_string(), tb.to_string()]);
    }
    if !r.inputs.is_empty() {
        base.push("--input".into());
        base.extend(r.inputs.iter().map(|p| p.display().to_string()));
    }
    base.extend(quiet.iter().map(|s| s.to_string()));
    stages.push(("base model", base));
    let mut core = line(&["base-eval", "-g", &tag, "--device", dev]);
    core.extend(samples.iter().chain(quiet).map(|s| s.to_string()));
    core.extend(limit("--max-per-task"));
    stages.push(("CORE", core));
    let chat_eval = |source: &str| {
        let mut v = line(&["chat-eval", "-i", source, "-g", &tag, "--device", dev]);
        v.extend(samples.iter().chain(quiet).map(|s| s.to_string()));
        v.extend(limit("--max-problems"));
        v
    };
    let chat_train = |cmd: &str, source: &str| {
        let mut v = line(&[
            cmd,
            "--source",
            source,
            "--base-model",
            &tag,
            "--total-steps",
            &chat_steps,
            "--batch-size",
            &batch,
            "--device",
            dev,
            "--eval-every",
            "50",
        ]);
        v.extend(quiet.iter().map(|s| s.to_string()));
        v
    };
    stages.push(("mid-training", chat_train("mid-train", "base")));
    stages.push(("mid eval", chat_eval("mid")));
    stages.push(("SFT", chat_train("chat-sft", "mid")));
    stages.push(("SFT eval", chat_eval("sft")));
    if args.rl {
        let steps = args.rl_steps.to_string();
        let mut v = line(&[
            "chat-rl",
            "-i",
            "sft",
            "-g",
            &tag,
            "--total-steps",
            &steps,
            "--device",
            dev,
        ]);
        v.extend(quiet.iter().map(|s| s.to_string()));
        stages.push(("RL", v));
        stages.push(("RL eval", chat_eval("rl")));
    }
    let mut timings = serde_json::Map::new();
    for (name, argv) in stages {
        eprintln!("\n== speedrun: {name}: {}", argv[1..].join(" "));
        let t0 = Instant::now();
        let code = dispatch(argv.clone())
            .with_context(|| format!("speedrun stage `{name}` ({})", argv[1..].join(" ")))?;
        if code != ExitCode::SUCCESS {
            bail!("speedrun stage `{name}` failed ({})", argv[1..].join(" "));
        }
        timings.insert(name.to_string(), json!(t0.elapsed().as_secs_f64()));
    }
    super::report_stage(
        "speedrun",
        json!({"device": dev, "depth": r.depth, "vocab_size": r.vocab, "seq_len": r.seq_len, "base_steps": r.base_steps,
            "chat_steps": r.chat_steps, "rl": args.rl, "data": if r.cuda { "fetched" } else { "bundled corpus and committed samples" }}),
        json!({"wall_s": started.elapsed().as_secs_f64(), "stage_seconds": timings}),
    );
    eprintln!("\n== speedrun: report");
    let code = dispatch(line(&["report", "generate"]))?;
    eprintln!(
        "speedrun done in {:.1} min",
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(code)
}
