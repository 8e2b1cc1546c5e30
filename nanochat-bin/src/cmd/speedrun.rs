//! `nanochat speedrun`: the whole pipeline in one command, as nanochat's `speedrun.sh`:
//! tokenizer (train, evaluate), base model (train, CORE), mid-training, SFT, chat evaluation of
//! the mid and SFT models (ChatCORE), optionally RL, and the report card. `--recipe head` is
//! HEAD's pipeline: no mid-training, SFT from the base model.
//!
//! The default (`--device cpu`) needs nothing but the repository: the bundled corpus, the
//! committed chat sets and the committed evaluation samples (`--samples`); it takes about 10
//! minutes on 2 cores. `--device cuda` runs the full-size recipe on one GPU (depth 20,
//! sequence 2048, bf16, 16 rows accumulated to 524,288 tokens a step, 20 tokens per parameter
//! capped at 4 epochs of the corpus) on the corpus files in `$NANOCHAT_DATA_DIR/corpus`
//! (`scripts/fetch_data.sh`, or FineWeb shards put there).
//!
//! The recipe and its stages are `nanochat_core::speedrun`'s. Each stage is the subcommand of
//! the same name, run in this process (so compiled kernels are reused); every stage's
//! arguments are printed before it runs.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context};
use nanochat_core::model::Architecture;
use nanochat_core::speedrun::{plan, report_generate, summary, Recipe, SpeedrunOptions};

#[derive(clap::Args, Clone, Debug)]
pub struct Args {
    #[command(flatten)]
    pub device: super::DeviceArg,
    /// Which nanochat: v1 (with mid-training) or head (HEAD's base recipe, SFT from base).
    #[arg(long, value_parser = ["v1", "head"], default_value = "v1")]
    pub recipe: String,
    /// Model depth (default: 4 on cpu; on cuda v1 20, head 24).
    #[arg(long, value_parser = super::depth)]
    pub depth: Option<usize>,
    /// Base-training steps (default: 800 on cpu; on cuda 20 tokens per parameter).
    #[arg(long)]
    pub base_steps: Option<u64>,
    /// Mid-training and SFT steps each (default: v1 150 on cpu, 1000 on cuda; head one pass).
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
    /// Tokenizer vocabulary (default: 8192 on cpu; on cuda v1 65536, head 32768).
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

impl From<Args> for SpeedrunOptions {
    fn from(a: Args) -> Self {
        SpeedrunOptions {
            backend: a.device.backend,
            recipe: Architecture::parse(&a.recipe).unwrap_or_default(),
            depth: a.depth,
            base_steps: a.base_steps,
            chat_steps: a.chat_steps,
            max_problems: a.max_problems,
            rl: a.rl,
            rl_steps: a.rl_steps,
            vocab_size: a.vocab_size,
            quiet: a.quiet,
            world_size: nanochat_core::dist::world().world_size(),
        }
    }
}

/// Runs one subcommand line (`["nanochat", "base-train", "--depth", "4", ...]`) in this process.
pub type Dispatch<'a> = &'a dyn Fn(Vec<String>) -> anyhow::Result<ExitCode>;

pub fn run(args: Args, dispatch: Dispatch<'_>) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let opts = SpeedrunOptions::from(args);
    let corpus = super::paths()?.data_dir.join("corpus");
    let recipe = Recipe::new(&opts, &corpus)?;
    if let Some(w) = &recipe.warning {
        eprintln!("{w}");
    }
    let mut timings = Vec::new();
    // Across ranks (`mpirun -np N nanochat speedrun`): the stages that run across ranks run on
    // all of them; the others (tok-train, tok-eval, chat-rl, the report) on rank 0 while the
    // others wait for it at a barrier (rank 0's failure aborts the job).
    let dist = nanochat_core::dist::world();
    let here = |argv: &[String]| {
        !dist.is_distributed()
            || dist.is_main()
            || argv.get(1).is_some_and(|c| super::runs_across_ranks(c))
    };
    for stage in plan(&recipe, &opts) {
        let (name, line) = (stage.name, stage.args_line());
        eprintln!("\n== speedrun: {name}: {line}");
        let t0 = Instant::now();
        if here(&stage.argv) {
            let code = dispatch(stage.argv)
                .with_context(|| format!("speedrun stage `{name}` ({line})"))?;
            if code != ExitCode::SUCCESS {
                bail!("speedrun stage `{name}` failed ({line})");
            }
        }
        dist.barrier()?;
        timings.push((name, t0.elapsed().as_secs_f64()));
    }
    let (settings, results) = summary(&recipe, &opts, started.elapsed().as_secs_f64(), &timings);
    super::report_stage("speedrun", settings, results);
    eprintln!("\n== speedrun: report");
    let code = if dist.is_main() {
        dispatch(report_generate())?
    } else {
        ExitCode::SUCCESS
    };
    dist.barrier()?;
    eprintln!(
        "speedrun done in {:.1} min",
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(code)
}
