//! The speedrun recipe: the whole pipeline as a list of `nanochat` command lines, as nanochat's
//! `speedrun.sh` (`runs/speedrun.sh` today) is a list of `python -m scripts.…` lines: tokenizer
//! (train, evaluate), base model (train, CORE), mid-training, SFT, chat evaluation of the mid and
//! SFT models (ChatCORE), optionally RL (and its evaluation); the report card closes it.
//!
//! [`Recipe::new`] picks the settings for the device: on the CPU a small model on the bundled
//! corpus and the committed evaluation samples (`--samples`); on CUDA the full-size recipe
//! (depth 20, sequence 2048, bf16, 16 rows accumulated to 524,288 tokens a step, 20 tokens per
//! parameter capped at 4 epochs of the corpus) on the corpus files of a folder. [`plan`] turns
//! them into the stages' command lines; the `nanochat speedrun` command runs each in its own
//! process's dispatcher and records [`summary`] for the report.

use std::path::{Path, PathBuf};

use nanochat_kernels::Backend;
use serde_json::json;

use crate::model::Architecture;
use crate::{CoreError, Result};

/// The flags of `nanochat speedrun`: what the recipe takes from the user (`None`: the device's
/// default).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpeedrunOptions {
    /// The device every stage runs on (`cpu`: the small recipe; `cuda[:N]`: the full one).
    pub backend: Backend,
    /// `--recipe`: nanochat v1's pipeline (the default) or HEAD's (no mid-training; HEAD's
    /// SFT).
    pub recipe: Architecture,
    /// Model depth (default: 4 on cpu, 20 on cuda).
    pub depth: Option<usize>,
    /// Base-training steps (default: 800 on cpu; on cuda 20 tokens per parameter, at most 4
    /// epochs of the corpus).
    pub base_steps: Option<u64>,
    /// Mid-training and SFT steps each (default: v1 150 on cpu, 1000 on cuda; head one pass
    /// over the conversations).
    pub chat_steps: Option<u64>,
    /// Evaluate only the first N problems (CORE items) of each task (default: all).
    pub max_problems: Option<usize>,
    /// Also run chat-rl after SFT, and evaluate the RL model.
    pub rl: bool,
    /// chat-rl steps (with `rl`).
    pub rl_steps: u64,
    /// Tokenizer vocabulary (default: 8192 on cpu, 65536 on cuda).
    pub vocab_size: Option<usize>,
    /// Pass `--quiet` (no progress bars) to the stages that take it.
    pub quiet: bool,
    /// The ranks the speedrun runs on (`mpirun -np N nanochat speedrun`; 0 or 1: one
    /// process). On the CPU the recipe's rows are shared out (`--batch-size` B / N per rank,
    /// `--total-batch-size` B x T), so the run trains on the one-process tokens; on a GPU
    /// `--batch-size` stays rows per GPU, as nanochat's `--device-batch-size`.
    pub world_size: usize,
}

/// The settings of a speedrun, resolved for its device ([`Recipe::new`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Recipe {
    /// nanochat v1's pipeline or HEAD's.
    pub recipe: Architecture,
    /// The full-size recipe on a GPU (else the small CPU one).
    pub cuda: bool,
    /// Model depth (n_layer).
    pub depth: usize,
    /// Tokenizer vocabulary size.
    pub vocab: usize,
    /// Tokens per row.
    pub seq_len: usize,
    /// Rows per micro-batch.
    pub batch_size: usize,
    /// Tokens per optimizer step (`None`: one micro-batch).
    pub total_batch: Option<usize>,
    /// Base-training steps (`None`: HEAD's scaling law, `--target-param-data-ratio 8` as its
    /// speedrun).
    pub base_steps: Option<u64>,
    /// Mid-training and SFT steps each (`None`: HEAD's one pass over the conversations).
    pub chat_steps: Option<u64>,
    /// `--dtype` of the training stages (`float32`, `bfloat16`).
    pub dtype: &'static str,
    /// Training files, the last one validation; empty: the bundled corpus.
    pub inputs: Vec<PathBuf>,
    /// Set when the corpus is too small for 20 tokens per parameter and `base_steps` was not
    /// given: the line saying so (the command prints it).
    pub warning: Option<String>,
}

/// Corpus files the cuda recipe trains on, by how their names end.
const CORPUS_EXTENSIONS: [&str; 5] = [".parquet", ".jsonl", ".txt", ".jsonl.gz", ".txt.gz"];

impl Recipe {
    /// The settings of a run of `opts`. On the CPU both recipes train the same model on the same
    /// tokens (HEAD's SFT makes one pass unless `chat_steps` is given). On CUDA v1 is
    /// nanochat's November speedrun (below) and HEAD its July one (`runs/speedrun.sh` at
    /// 92d63d4: depth 24, vocabulary 32768, 16 rows of 2048 tokens, the automatic batch and
    /// 8 tokens per scaling parameter; FP8 left out, as GPU-only and not yet here). The cuda
    /// recipe reads the corpus files (`.parquet`,
    /// `.jsonl`, `.txt`, optionally `.gz`) in `corpus`, sorted by name, the last one (or
    /// `bundled.jsonl` when it is there) for validation, and sizes the base training from their
    /// bytes. Errors: [`CoreError::Missing`] (no `corpus` folder, naming `scripts/fetch_data.sh`),
    /// [`CoreError::Io`], [`CoreError::File`] (no corpus file, or none besides the validation
    /// one).
    pub fn new(opts: &SpeedrunOptions, corpus: &Path) -> Result<Recipe> {
        let head = opts.recipe == Architecture::Head;
        let world = opts.world_size.max(1);
        if opts.backend.is_cpu() && !4usize.is_multiple_of(world) {
            return Err(CoreError::invalid(
                "world size",
                world,
                "1, 2 or 4 on the CPU (the recipe's 4 rows a step are shared out among the ranks)",
            ));
        }
        if opts.backend.is_cpu() {
            return Ok(Recipe {
                recipe: opts.recipe,
                cuda: false,
                depth: opts.depth.unwrap_or(4),
                vocab: opts.vocab_size.unwrap_or(8192),
                seq_len: 256,
                batch_size: 4,
                total_batch: None,
                base_steps: Some(opts.base_steps.unwrap_or(800)),
                chat_steps: opts.chat_steps.or((!head).then_some(150)),
                dtype: "float32",
                inputs: Vec::new(),
                warning: None,
            });
        }
        let (files, val) = corpus_files(corpus)?;
        if head {
            let mut inputs = files;
            inputs.push(val);
            return Ok(Recipe {
                recipe: opts.recipe,
                cuda: true,
                depth: opts.depth.unwrap_or(24),
                vocab: opts.vocab_size.unwrap_or(32768),
                seq_len: 2048,
                batch_size: 16,
                total_batch: None,
                base_steps: opts.base_steps,
                chat_steps: opts.chat_steps,
                dtype: "bfloat16",
                inputs,
                warning: None,
            });
        }
        let depth = opts.depth.unwrap_or(20);
        // nanochat: 20 tokens per parameter (Chinchilla) at a total batch of 524,288 tokens, but
        // no more than 4 epochs of the corpus (about 4.5 bytes per token at vocab 65536).
        let (n_embd, vocab) = (64 * depth, opts.vocab_size.unwrap_or(65536));
        let params = 12 * depth * n_embd * n_embd + 2 * vocab * n_embd;
        let total_batch = 524_288;
        let bytes: u64 = files
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        let chinchilla = (20 * params / total_batch) as u64;
        let four_epochs = (4 * bytes / 9 * 2 / total_batch as u64).max(1);
        let base_steps = opts.base_steps.unwrap_or(chinchilla.min(four_epochs));
        let warning = (opts.base_steps.is_none() && four_epochs < chinchilla).then(|| {
            format!(
                "speedrun: the corpus ({:.0} MB) allows {four_epochs} steps of 4 epochs, fewer than the {chinchilla} of 20 tokens per parameter",
                bytes as f64 / 1e6
            )
        });
        let mut inputs = files;
        inputs.push(val);
        Ok(Recipe {
            recipe: opts.recipe,
            cuda: true,
            depth,
            vocab,
            seq_len: 2048,
            batch_size: 16,
            total_batch: Some(total_batch),
            base_steps: Some(base_steps),
            chat_steps: Some(opts.chat_steps.unwrap_or(1000)),
            dtype: "bfloat16",
            inputs,
            warning,
        })
    }

    /// The checkpoint tag of every stage: `d<depth>`.
    pub fn tag(&self) -> String {
        format!("d{}", self.depth)
    }
}

/// The corpus files of `corpus` for training (sorted by name) and the validation file: the
/// bundled corpus when it is there (`scripts/fetch_data.sh` writes it), else the last shard (as
/// nanochat).
fn corpus_files(corpus: &Path) -> Result<(Vec<PathBuf>, PathBuf)> {
    let entries = std::fs::read_dir(corpus).map_err(|e| {
        CoreError::io_or_missing(
            corpus,
            e,
            "run scripts/fetch_data.sh first, or put FineWeb-style .parquet/.jsonl/.txt shards there (the cuda recipe trains on them)",
        )
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            CORPUS_EXTENSIONS.iter().any(|x| name.ends_with(x))
        })
        .collect();
    files.sort();
    let val = match files.iter().position(|p| p.ends_with("bundled.jsonl")) {
        Some(i) => files.remove(i),
        None => files.pop().ok_or_else(|| {
            CoreError::file(
                corpus,
                "holds no corpus files (.parquet, .jsonl, .txt, optionally .gz)",
            )
        })?,
    };
    if files.is_empty() {
        return Err(CoreError::file(
            corpus,
            format!(
                "needs at least one training file besides the validation file {}",
                val.display()
            ),
        ));
    }
    Ok((files, val))
}

/// One step of the speedrun: its name (`"base model"`, the key of its time in [`summary`]) and
/// its command line, `argv[0]` being `nanochat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stage {
    /// What the stage does, as the run prints and times it.
    pub name: &'static str,
    /// The command line (`["nanochat", "base-train", "--depth", "4", ...]`).
    pub argv: Vec<String>,
}

impl Stage {
    fn new(name: &'static str, argv: Vec<String>) -> Stage {
        Stage { name, argv }
    }

    /// The arguments after `nanochat`, joined by spaces (how the run prints the stage).
    pub fn args_line(&self) -> String {
        self.argv[1..].join(" ")
    }
}

/// `nanochat` followed by `parts`.
fn line(parts: &[&str]) -> Vec<String> {
    std::iter::once("nanochat")
        .chain(parts.iter().copied())
        .map(String::from)
        .collect()
}

/// The stages of a speedrun of `recipe` with `opts`, in order: `report reset`, the tokenizer
/// (`tok-train` on the training files, `tok-eval`), the base model (`base-train`, `base-eval`),
/// `mid-train` and its `chat-eval` (v1 only: HEAD has no mid-training), `chat-sft` and its
/// `chat-eval`, and with `opts.rl` `chat-rl` and its `chat-eval`. HEAD's `base-train` takes
/// `--recipe head` and its SFT inherits the base run's batch (`chat-sft` from the base model).
/// The closing `report generate` is [`report_generate`].
pub fn plan(recipe: &Recipe, opts: &SpeedrunOptions) -> Vec<Stage> {
    let r = recipe;
    let tag = r.tag();
    // Across N ranks on the CPU: B / N rows each, the one-process step of B x T tokens.
    let world = opts.world_size.max(1);
    let shared = world > 1 && !r.cuda;
    let (depth, vocab, seq, batch) = (
        r.depth.to_string(),
        r.vocab.to_string(),
        r.seq_len.to_string(),
        if shared {
            r.batch_size / world
        } else {
            r.batch_size
        }
        .to_string(),
    );
    let head = r.recipe == Architecture::Head;
    let dev = opts.backend.to_string();
    let dev = dev.as_str();
    let quiet: &[&str] = if opts.quiet { &["--quiet"] } else { &[] };
    let samples: &[&str] = if r.cuda { &[] } else { &["--samples"] };
    let limit = |flag: &str| -> Vec<String> {
        opts.max_problems
            .iter()
            .flat_map(|n| [flag.to_string(), n.to_string()])
            .collect()
    };
    let total_batch: Vec<String> = r
        .total_batch
        .or(shared.then_some(r.batch_size * r.seq_len))
        .iter()
        .flat_map(|tb| ["--total-batch-size".to_string(), tb.to_string()])
        .collect();
    let with = |mut v: Vec<String>, extra: &[&[&str]]| {
        v.extend(extra.iter().flat_map(|e| e.iter()).map(|s| s.to_string()));
        v
    };
    let mut stages = vec![
        Stage::new("report reset", line(&["report", "reset"])),
        Stage::new("tokenizer", {
            // The tokenizer learns from the training files (never the validation one).
            let mut v = line(&["tok-train", "--vocab-size", &vocab]);
            if let Some((_, train)) = r.inputs.split_last() {
                v.push("--input".into());
                v.extend(train.iter().map(|p| p.display().to_string()));
            }
            v
        }),
        Stage::new("tokenizer eval", line(&["tok-eval"])),
    ];
    let mut base = line(&["base-train"]);
    if head {
        base.extend(["--recipe".to_string(), "head".to_string()]);
    }
    let horizon = match r.base_steps {
        Some(n) => ["--total-steps".to_string(), n.to_string()],
        None => ["--target-param-data-ratio".to_string(), "8".to_string()],
    };
    base = with(
        base,
        &[&["--depth", &depth, "--seq-len", &seq, "--batch-size", &batch]],
    );
    base.extend(horizon);
    base = with(
        base,
        &[&[
            "--dtype",
            r.dtype,
            "--device",
            dev,
            "--model-tag",
            &tag,
            "--eval-every",
            if r.cuda { "250" } else { "200" },
        ]],
    );
    base.extend(total_batch.iter().cloned());
    if !r.inputs.is_empty() {
        base.push("--input".into());
        base.extend(r.inputs.iter().map(|p| p.display().to_string()));
    }
    stages.push(Stage::new("base model", with(base, &[quiet])));
    let mut core = with(
        line(&["base-eval", "-g", &tag, "--device", dev]),
        &[samples, quiet],
    );
    core.extend(limit("--max-per-task"));
    stages.push(Stage::new("CORE", core));
    let chat_eval = |source: &str| {
        let mut v = with(
            line(&["chat-eval", "-i", source, "-g", &tag, "--device", dev]),
            &[samples, quiet],
        );
        v.extend(limit("--max-problems"));
        v
    };
    let chat_train = |cmd: &str, source: &str| {
        let mut v = line(&[cmd, "--source", source, "--base-model", &tag]);
        if let Some(n) = r.chat_steps {
            v.extend(["--total-steps".to_string(), n.to_string()]);
        }
        if !head {
            // HEAD's SFT inherits the base run's batch.
            v.extend(["--batch-size".to_string(), batch.clone()]);
        }
        v = with(
            v,
            &[&["--device", dev, "--eval-every", "50", "--dtype", r.dtype]],
        );
        if !head {
            v.extend(total_batch.iter().cloned());
        }
        with(v, &[quiet])
    };
    if head {
        stages.push(Stage::new("SFT", chat_train("chat-sft", "base")));
    } else {
        stages.push(Stage::new("mid-training", chat_train("mid-train", "base")));
        stages.push(Stage::new("mid eval", chat_eval("mid")));
        stages.push(Stage::new("SFT", chat_train("chat-sft", "mid")));
    }
    stages.push(Stage::new("SFT eval", chat_eval("sft")));
    if opts.rl {
        let steps = opts.rl_steps.to_string();
        let rl = line(&[
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
        stages.push(Stage::new("RL", with(rl, &[quiet])));
        stages.push(Stage::new("RL eval", chat_eval("rl")));
    }
    stages
}

/// The command line that closes a speedrun: `nanochat report generate` (the report card).
pub fn report_generate() -> Vec<String> {
    line(&["report", "generate"])
}

/// The `speedrun` stage of the report: its settings (device, depth, vocabulary, sequence,
/// steps, RL, data) and results (`wall_s`: the whole run in seconds; `stage_seconds`: each
/// stage's seconds by [`Stage::name`]), as `(settings, results)`.
pub fn summary(
    recipe: &Recipe,
    opts: &SpeedrunOptions,
    wall_s: f64,
    stage_seconds: &[(&str, f64)],
) -> (serde_json::Value, serde_json::Value) {
    let r = recipe;
    let timings: serde_json::Map<String, serde_json::Value> = stage_seconds
        .iter()
        .map(|(name, s)| (name.to_string(), json!(s)))
        .collect();
    (
        json!({"device": opts.backend.to_string(), "recipe": r.recipe.name(), "depth": r.depth, "vocab_size": r.vocab, "seq_len": r.seq_len,
            "base_steps": r.base_steps, "chat_steps": r.chat_steps, "rl": opts.rl,
            "data": if r.cuda { "fetched" } else { "bundled corpus and committed samples" }}),
        json!({"wall_s": wall_s, "stage_seconds": timings}),
    )
}

#[cfg(test)]
mod tests;
