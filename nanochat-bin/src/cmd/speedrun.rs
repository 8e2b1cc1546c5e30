//! `nanochat speedrun`: the whole pipeline in one command, as nanochat's `speedrun.sh`:
//! tokenizer (train, evaluate), base model (train, CORE), mid-training, SFT, chat evaluation of
//! the mid and SFT models (ChatCORE), optionally RL, and the report card.
//!
//! The default (`--device cpu`) needs nothing but the repository: the bundled corpus, the
//! committed chat sets and the committed evaluation samples (`--samples`); it takes about 10
//! minutes on 2 cores. `--device cuda` runs the full-size recipe on one GPU (depth 20,
//! sequence 2048, bf16, 16 rows accumulated to 524,288 tokens a step, 20 tokens per parameter
//! capped at 4 epochs of the corpus) on the corpus files in `$NANOCHAT_DATA_DIR/corpus`
//! (`scripts/fetch_data.sh`, or FineWeb shards put there).
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
    #[command(flatten)]
    pub device: super::DeviceArg,
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

/// The settings of a run; the cuda recipe reads the corpus files in `corpus`.
fn recipe(args: &Args, corpus: &std::path::Path) -> anyhow::Result<Recipe> {
    let cuda = !args.device.backend.is_cpu();
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
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus)
        .with_context(|| {
            format!(
                "{}: run scripts/fetch_data.sh first, or put FineWeb-style .parquet/.jsonl/.txt shards there (the cuda recipe trains on them)",
                corpus.display()
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            [".parquet", ".jsonl", ".txt", ".jsonl.gz", ".txt.gz"].iter().any(|x| name.ends_with(x))
        })
        .collect();
    files.sort();
    // Validation: the bundled corpus when it is there (fetch_data.sh writes it), else the last
    // shard (as nanochat).
    let val = match files.iter().position(|p| p.ends_with("bundled.jsonl")) {
        Some(i) => files.remove(i),
        None => files
            .pop()
            .with_context(|| format!("{} holds no corpus files", corpus.display()))?,
    };
    if files.is_empty() {
        bail!(
            "{} needs at least one training file besides the validation file {}",
            corpus.display(),
            val.display()
        );
    }
    let depth = args.depth.unwrap_or(20);
    // nanochat: 20 tokens per parameter (Chinchilla) at a total batch of 524,288 tokens, but
    // no more than 4 epochs of the corpus (about 4.5 bytes per token at vocab 65536).
    let (n_embd, vocab) = (64 * depth, args.vocab_size.unwrap_or(65536));
    let params = 12 * depth * n_embd * n_embd + 2 * vocab * n_embd;
    let total_batch = 524_288;
    let bytes: u64 = files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let chinchilla = (20 * params / total_batch) as u64;
    let four_epochs = (4 * bytes / 9 * 2 / total_batch as u64).max(1);
    let base_steps = args.base_steps.unwrap_or(chinchilla.min(four_epochs));
    if args.base_steps.is_none() && four_epochs < chinchilla {
        eprintln!(
            "speedrun: the corpus ({:.0} MB) allows {four_epochs} steps of 4 epochs, fewer than the {chinchilla} of 20 tokens per parameter",
            bytes as f64 / 1e6
        );
    }
    let mut inputs = files;
    inputs.push(val);
    Ok(Recipe {
        cuda,
        depth,
        vocab,
        seq_len: 2048,
        batch_size: 16,
        total_batch: Some(total_batch),
        base_steps,
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
    let r = recipe(&args, &super::paths()?.data_dir.join("corpus"))?;
    let tag = format!("d{}", r.depth);
    let (depth, vocab, seq, batch) = (
        r.depth.to_string(),
        r.vocab.to_string(),
        r.seq_len.to_string(),
        r.batch_size.to_string(),
    );
    let (base_steps, chat_steps) = (r.base_steps.to_string(), r.chat_steps.to_string());
    let dev = args.device.backend.to_string();
    let dev = dev.as_str();
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
        ("tokenizer", {
            // The tokenizer learns from the training files (never the validation one).
            let mut v = line(&["tok-train", "--vocab-size", &vocab]);
            if let Some((_, train)) = r.inputs.split_last() {
                v.push("--input".into());
                v.extend(train.iter().map(|p| p.display().to_string()));
            }
            v
        }),
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
            "--dtype",
            r.dtype,
        ]);
        if let Some(tb) = r.total_batch {
            v.extend(["--total-batch-size".to_string(), tb.to_string()]);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(line: &[&str]) -> Args {
        Cli::parse_from([&["speedrun"][..], line].concat()).args
    }

    #[test]
    fn cpu_recipe_is_the_small_one_on_bundled_data() {
        let r = recipe(&args(&[]), std::path::Path::new("/nonexistent")).unwrap();
        assert_eq!(
            (r.depth, r.vocab, r.seq_len, r.base_steps, r.chat_steps),
            (4, 8192, 256, 800, 150)
        );
        assert!(r.inputs.is_empty() && !r.cuda && r.dtype == "float32");
        let r = recipe(
            &args(&["--depth", "2", "--base-steps", "5"]),
            std::path::Path::new("/x"),
        )
        .unwrap();
        assert_eq!((r.depth, r.base_steps), (2, 5));
    }

    #[test]
    fn cuda_recipe_trains_on_the_corpus_and_validates_on_the_bundled_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            recipe(&args(&["--device", "cuda"]), dir.path()).is_err(),
            "no corpus: an error"
        );
        std::fs::write(dir.path().join("sotu.jsonl"), "x".repeat(10_000_000)).unwrap();
        std::fs::write(dir.path().join("bundled.jsonl"), "y").unwrap();
        std::fs::write(dir.path().join("notes.md"), "ignored").unwrap();
        let r = recipe(&args(&["--device", "cuda"]), dir.path()).unwrap();
        assert_eq!(
            (r.depth, r.vocab, r.seq_len, r.dtype),
            (20, 65536, 2048, "bfloat16")
        );
        let names: Vec<_> = r
            .inputs
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["sotu.jsonl", "bundled.jsonl"], "validation last");
        // 10 MB allows about 4 x 2.2M tokens: a few steps of 524,288 tokens, far fewer than the
        // 20 tokens per parameter of a 560M-parameter model.
        assert!(r.base_steps >= 1 && r.base_steps < 100, "{}", r.base_steps);
        assert_eq!(r.total_batch, Some(524_288));
        assert_eq!(r.total_batch.unwrap() % (r.batch_size * r.seq_len), 0);
    }
}
