//! What the runnable examples share: the flags that say where nanochat's files are, which
//! device runs the model and which checkpoint to load. The examples themselves are beside this
//! file (`chat.rs`, `finetune.rs`, `custom_op.rs`, `custom_task.rs`); run one with
//! `cargo run --release --example NAME -- --help`, or all four with `scripts/run-examples.sh`.

use std::path::PathBuf;

use anyhow::{bail, Context};
use nanochat_core::checkpoint::{load_model, Meta, Phase};
use nanochat_core::paths::{Paths, BASE_DIR_VAR};
use nanochat_core::tokenizer::Tokenizer;
use nanochat_core::{Device, GPT};

/// `--base-dir` and `-d/--device`: where the tokenizer and checkpoints are, and what runs the
/// model.
#[derive(clap::Args, Clone, Debug)]
pub struct EnvArgs {
    /// nanochat's base dir (tokenizer/, base_checkpoints/, ...). Default: $NANOCHAT_BASE_DIR,
    /// else ~/.cache/nanochat.
    #[arg(long, value_name = "DIR")]
    pub base_dir: Option<PathBuf>,
    /// Device: cpu, cuda or cuda:N.
    #[arg(short = 'd', long, default_value = "cpu")]
    pub device: String,
}

impl EnvArgs {
    /// The folders of this run, installed as the process's paths
    /// ([`nanochat_core::paths::install`]): `--base-dir` when given (it must exist), else the
    /// environment's. `NANOCHAT_MODEL_DIR` and the other variables still apply on top.
    /// Errors: `--base-dir` is not a folder; neither `NANOCHAT_BASE_DIR` nor `HOME` is set.
    pub fn paths(&self) -> anyhow::Result<&'static Paths> {
        let paths = match &self.base_dir {
            Some(dir) => {
                if !dir.is_dir() {
                    bail!("--base-dir {} is not a folder", dir.display());
                }
                // The flag takes the place of the variable; the rest of the environment applies.
                Paths::from_vars(|name| match name {
                    BASE_DIR_VAR => Some(dir.clone().into_os_string()),
                    _ => std::env::var_os(name),
                })?
            }
            None => Paths::from_env()?,
        };
        Ok(nanochat_core::paths::install(paths))
    }

    /// Opens `--device`; the error names it (e.g. `cuda` on a machine without a GPU).
    pub fn open_device(&self) -> anyhow::Result<Device> {
        Device::parse(&self.device).with_context(|| format!("cannot open device `{}`", self.device))
    }
}

/// `-i/--source`, `-g/--model-tag`, `-s/--step`: which checkpoint to load (nanochat's flags).
#[derive(clap::Args, Clone, Debug)]
pub struct ModelArgs {
    /// Which checkpoints: base, mid, sft or rl (default: sft; base for finetune).
    #[arg(short = 'i', long, value_parser = ["base", "mid", "sft", "rl"])]
    pub source: Option<String>,
    /// Model tag, the checkpoint folder's name (default: the newest).
    #[arg(short = 'g', long)]
    pub model_tag: Option<String>,
    /// Step (default: the newest).
    #[arg(short = 's', long)]
    pub step: Option<u64>,
}

impl ModelArgs {
    /// The training phase `--source` names, else `default`.
    pub fn phase_or(&self, default: Phase) -> anyhow::Result<Phase> {
        match &self.source {
            Some(s) => Ok(Phase::parse(s)?),
            None => Ok(default),
        }
    }

    /// Loads the checkpoint these flags name (phase `--source`, else `default`) with the
    /// tokenizer it was trained with ([`load_model`], the tokenizer checked against the
    /// checkpoint's fingerprint). Errors name the checkpoint ([`ModelArgs::describe`]).
    pub fn load(
        &self,
        paths: &Paths,
        device: &Device,
        default: Phase,
    ) -> anyhow::Result<(Phase, GPT, Tokenizer, Meta)> {
        let phase = self.phase_or(default)?;
        let step = self.step;
        let (model, tokenizer, meta) =
            load_model(paths, phase, device, self.model_tag.as_deref(), step, false)
                .with_context(|| format!("loading {}", self.describe(phase)))?;
        Ok((phase, model, tokenizer, meta))
    }

    /// How the checkpoint of `phase` is named in messages: ``the newest sft model``,
    /// ``sft model `tag` at step 500``.
    pub fn describe(&self, phase: Phase) -> String {
        let model = match &self.model_tag {
            Some(tag) => format!("{} model `{tag}`", phase.name()),
            None => format!("the newest {} model", phase.name()),
        };
        match self.step {
            Some(step) => format!("{model} at step {step}"),
            None => model,
        }
    }
}

/// [`EnvArgs`] then [`ModelArgs`]: the flags of an example that loads a checkpoint.
#[derive(clap::Args, Clone, Debug)]
pub struct CheckpointArgs {
    /// Where the files are and what runs the model.
    #[command(flatten)]
    pub env: EnvArgs,
    /// Which checkpoint to load.
    #[command(flatten)]
    pub model: ModelArgs,
}

impl CheckpointArgs {
    /// The run's folders and its opened device ([`EnvArgs::paths`], [`EnvArgs::open_device`]);
    /// their errors.
    pub fn open(&self) -> anyhow::Result<(&'static Paths, Device)> {
        Ok((self.env.paths()?, self.env.open_device()?))
    }
}

/// A clap parser of counts of at least 1 (clap rejects 0 with a message naming the flag).
pub fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}
