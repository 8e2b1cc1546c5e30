//! Base training (nanochat's `scripts/base_train.py`) set up from its settings: the tokenizer,
//! the model config, the data (the bundled corpus split 95/5, or files with the last one for
//! validation), what the run reads of each input, and a [`Trainer`] fresh or resumed. The
//! `nanochat base-train` command fills [`BaseTrainOptions`] from its flags, runs
//! [`BaseRun::trainer`] with a progress display, and prints [`BaseRun::summary`].

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

use super::{BatchSource, NanochatResume, RunOutcome, TrainConfig, Trainer};
use crate::checkpoint::Phase;
use crate::data::{
    bundled_documents, split_train_val, unused_warning, Batch, BestFitLoader, DataLoader, Source,
    SourceUsage,
};
use crate::model::{Architecture, GPTConfig, ModelSize, GPT};
use crate::optim::{LrSchedule, MuonAdamWConfig, OptimConfig, OptimSettings, Schedules};
use crate::paths::Paths;
use crate::recipe::{HeadScaling, HeadScalingArgs, HeadSchedule, Horizon};
use crate::tokenizer::Tokenizer;
use crate::{CoreError, DType, Device, Result};

/// The settings of a base-training run (the flags of `nanochat base-train`, nanochat's
/// `scripts/base_train.py` arguments). `None` means the recipe's default for the device
/// ([`BaseTrainOptions::plan`]).
#[derive(Clone, Debug, PartialEq)]
pub struct BaseTrainOptions {
    /// `--recipe`: nanochat v1's model, optimizers, schedule and contiguous loader, or HEAD's
    /// ([`Architecture`]).
    pub recipe: Architecture,
    /// Model size preset; wins over `depth`.
    pub model_size: Option<ModelSize>,
    /// Depth (n_layer); v1: n_embd = 64 x depth; HEAD: `aspect_ratio` x depth rounded up to
    /// whole heads. Neither this nor `model_size`: the tiny preset's depth (4).
    pub depth: Option<usize>,
    /// Rows per micro-batch (nanochat's `--device-batch-size`).
    pub batch_size: usize,
    /// Tokens per optimizer step. `None`: one micro-batch (`batch_size` x `seq_len`), except
    /// HEAD off the CPU, which sizes it automatically.
    pub total_batch_size: Option<usize>,
    /// `--total-batch-size -1`: HEAD's automatic batch size on any device.
    pub auto_total_batch_size: bool,
    /// Optimizer steps (`--total-steps`, `--num-iterations`). `None`: 200, except HEAD off the
    /// CPU, which takes its horizon from `target_param_data_ratio`.
    pub total_steps: Option<u64>,
    /// HEAD: `--target-flops`, the horizon when `total_steps` is not given.
    pub target_flops: Option<f64>,
    /// HEAD: `--target-param-data-ratio` (12 where it applies), the horizon when neither
    /// `total_steps` nor `target_flops` is given.
    pub target_param_data_ratio: Option<f64>,
    /// v1: peak Muon learning rate (the AdamW rates scale by the same factor).
    pub lr: f32,
    /// Tokens per row, also the model's block_size (nanochat's `--max-seq-len`).
    pub seq_len: usize,
    /// Compute dtype (bf16: mixed precision over f32 master weights).
    pub dtype: DType,
    /// Checkpoint folder name (`None`: `d<depth>`).
    pub model_tag: Option<String>,
    /// Validation every N steps (and at the end); 0: only at the end.
    pub eval_every: u64,
    /// Validation tokens per evaluation (rounded up to whole batches).
    pub eval_tokens: usize,
    /// Checkpoint every N steps (and at the end); 0: only at the end.
    pub save_every: u64,
    /// Continue the run saved at this step.
    pub resume_from_step: Option<u64>,
    /// Training files, the last one for validation; empty: the bundled corpus.
    pub inputs: Vec<PathBuf>,
    /// Tokenizer directory (`None`: [`Paths::tokenizer_dir`]).
    pub tokenizer: Option<PathBuf>,
    /// Seed of the initial weights.
    pub seed: u64,
    /// v1: warmup fraction of the steps.
    pub warmup_ratio: f64,
    /// HEAD: warmup steps (`--warmup-steps`, 40).
    pub warmup_steps: Option<usize>,
    /// Warmdown fraction of the steps (v1 0.2, HEAD 0.65).
    pub warmdown_ratio: Option<f64>,
    /// Learning-rate multiplier at the end of the warmdown (v1 0, HEAD 0.05).
    pub final_lr_frac: Option<f64>,
    /// HEAD's model shape and optimizer rates.
    pub head: HeadTrainOptions,
}

/// The settings only `--recipe head` reads (`scripts/base_train.py` at 92d63d4; its defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct HeadTrainOptions {
    /// `--aspect-ratio` (64): model width per layer.
    pub aspect_ratio: usize,
    /// `--head-dim` (128).
    pub head_dim: usize,
    /// `--window-pattern` (`SSSL`), tiled over the layers; the last is always long.
    pub window_pattern: String,
    /// `--embedding-lr` (0.3), before the batch scale.
    pub embedding_lr: f64,
    /// `--unembedding-lr` (0.008), before the batch scale.
    pub unembedding_lr: f64,
    /// `--matrix-lr` (0.02), before the batch scale.
    pub matrix_lr: f64,
    /// `--scalar-lr` (0.5), before the batch scale.
    pub scalar_lr: f64,
    /// `--weight-decay` (0.28): Muon's cautious weight decay before its scaling.
    pub weight_decay: f64,
}

impl Default for HeadTrainOptions {
    fn default() -> Self {
        HeadTrainOptions {
            aspect_ratio: 64,
            head_dim: 128,
            window_pattern: "SSSL".into(),
            embedding_lr: 0.3,
            unembedding_lr: 0.008,
            matrix_lr: 0.02,
            scalar_lr: 0.5,
            weight_decay: 0.28,
        }
    }
}

/// Optimizer steps of a v1 run, and of a HEAD run on the CPU, when no horizon is given.
pub const DEFAULT_TOTAL_STEPS: u64 = 200;

/// What a base-training run will do, resolved from its options ([`BaseTrainOptions::plan`]).
#[derive(Clone, Debug, PartialEq)]
pub struct BasePlan {
    /// The model.
    pub config: GPTConfig,
    /// Optimizer steps.
    pub total_steps: u64,
    /// Tokens per optimizer step.
    pub total_batch_size: usize,
    /// The optimizer and its rates.
    pub optim: OptimSettings,
    /// The schedules over `total_steps`.
    pub schedule: Schedules,
    /// HEAD's scaling-law settings (`None` for v1).
    pub scaling: Option<HeadScaling>,
}

impl BaseTrainOptions {
    /// When resuming, takes the recipe from the checkpoint being resumed (nanochat's own
    /// command lines have no `--recipe`: a HEAD checkpoint is continued with HEAD's recipe).
    /// Does nothing when not resuming. Errors: the resumed step's meta cannot be read (no such
    /// tag or step, a damaged meta): the error names it, before any flag is judged against a
    /// recipe.
    pub fn take_recipe_from_checkpoint(&mut self, paths: &Paths) -> Result<()> {
        let Some(step) = self.resume_from_step else {
            return Ok(());
        };
        let tag = self
            .model_tag
            .clone()
            .unwrap_or_else(|| format!("d{}", self.resolved_depth()));
        let dir = crate::checkpoint::checkpoint_dir(&paths.model_root, Phase::Base, &tag);
        self.recipe = crate::checkpoint::read_meta(&dir, step)?
            .config
            .architecture;
        Ok(())
    }

    /// The model's depth: the preset's, else `depth`, else the tiny preset's.
    pub fn resolved_depth(&self) -> usize {
        match (self.model_size, self.depth) {
            (Some(s), _) => s.depth(),
            (None, Some(d)) => d,
            (None, None) => ModelSize::Tiny.depth(),
        }
    }

    /// The base model's config for a tokenizer of `vocab_size` tokens (v1:
    /// [`GPTConfig::from_depth`] at `seq_len`; HEAD: [`HeadScalingArgs::model_config`]).
    /// Errors: [`CoreError::InvalidArgument`] naming the config field out of range.
    pub fn model_config(&self, vocab_size: usize) -> Result<GPTConfig> {
        let c = match self.recipe {
            Architecture::V1 => {
                GPTConfig::from_depth(self.resolved_depth(), vocab_size, self.seq_len)
            }
            Architecture::Head => self.head_args(vocab_size).model_config(),
        };
        c.validate()?;
        Ok(c)
    }

    fn head_args(&self, vocab_size: usize) -> HeadScalingArgs {
        HeadScalingArgs {
            depth: self.resolved_depth(),
            aspect_ratio: self.head.aspect_ratio,
            head_dim: self.head.head_dim,
            max_seq_len: self.seq_len,
            window_pattern: self.head.window_pattern.clone(),
            vocab_size,
            target_param_data_ratio: self.target_param_data_ratio.unwrap_or(12.0),
        }
    }

    /// Tokens per optimizer step when given or defaulted to one micro-batch (v1's rule; HEAD's
    /// automatic size is [`BaseTrainOptions::plan`]'s).
    pub fn tokens_per_step(&self) -> usize {
        self.total_batch_size
            .unwrap_or(self.batch_size * self.seq_len)
    }

    /// The run this resolves to for a tokenizer of `vocab_size` tokens, on the CPU when
    /// `on_cpu` (the defaults differ there): the model,
    /// the horizon, the batch, the optimizer and its schedules.
    ///
    /// - v1: `total_steps` (200) of `total_batch_size` (one micro-batch) tokens, AdamW + Muon at
    ///   `lr`, [`LrSchedule`] (warmdown 0.2 to 0).
    /// - HEAD ([`HeadScaling`], `scripts/base_train.py` at 92d63d4): the horizon from
    ///   `total_steps`, else `target_flops`, else `target_param_data_ratio`; with none of them,
    ///   200 steps on the CPU and the ratio 12 elsewhere. The batch: `total_batch_size`, else
    ///   automatic when `auto_total_batch_size` or off the CPU, else one micro-batch. Every rate
    ///   times `batch_lr_scale`, Muon's weight decay scaled, [`HeadSchedule`].
    ///
    /// Errors: [`CoreError::InvalidArgument`] for a config field out of range, a HEAD-only
    /// setting under v1, or a horizon of 0 steps.
    pub fn plan(&self, vocab_size: usize, on_cpu: bool) -> Result<BasePlan> {
        let config = self.model_config(vocab_size)?;
        let plan = match self.recipe {
            Architecture::V1 => {
                for (flag, given) in [
                    ("--target-flops", self.target_flops.is_some()),
                    (
                        "--target-param-data-ratio",
                        self.target_param_data_ratio.is_some(),
                    ),
                    ("--total-batch-size -1", self.auto_total_batch_size),
                    ("--warmup-steps", self.warmup_steps.is_some()),
                ] {
                    if given {
                        return Err(CoreError::invalid(
                            flag,
                            "given",
                            "only with --recipe head (v1 trains --total-steps of --total-batch-size tokens)",
                        ));
                    }
                }
                let total_steps = self.total_steps.unwrap_or(DEFAULT_TOTAL_STEPS);
                BasePlan {
                    config,
                    total_steps,
                    total_batch_size: self.tokens_per_step(),
                    optim: OptimSettings::V1(OptimConfig::with_peak_lr(self.lr)),
                    schedule: Schedules::V1(LrSchedule {
                        total_steps: total_steps as usize,
                        warmup_ratio: self.warmup_ratio,
                        warmdown_ratio: self.warmdown_ratio.unwrap_or(0.2),
                        final_lr_frac: self.final_lr_frac.unwrap_or(0.0),
                    }),
                    scaling: None,
                }
            }
            Architecture::Head => self.head_plan(config, vocab_size, on_cpu)?,
        };
        if plan.total_steps == 0 {
            return Err(CoreError::invalid(
                "the number of optimizer steps",
                0,
                "at least 1 (raise --num-iterations, --target-flops or --target-param-data-ratio)",
            ));
        }
        Ok(plan)
    }

    fn head_plan(&self, config: GPTConfig, vocab_size: usize, cpu: bool) -> Result<BasePlan> {
        let horizon = match (
            self.total_steps,
            self.target_flops,
            self.target_param_data_ratio,
        ) {
            (Some(n), _, _) => Horizon::Iterations(n as usize),
            (None, Some(f), _) => Horizon::TargetFlops(f),
            (None, None, Some(_)) => Horizon::ParamDataRatio,
            (None, None, None) if cpu => Horizon::Iterations(DEFAULT_TOTAL_STEPS as usize),
            (None, None, None) => Horizon::ParamDataRatio,
        };
        let batch = match self.total_batch_size {
            Some(n) => Some(n),
            None if self.auto_total_batch_size || !cpu => None,
            None => Some(self.batch_size * self.seq_len),
        };
        let h = &self.head;
        let scaling = HeadScaling::new(&self.head_args(vocab_size), batch, horizon, h.weight_decay);
        debug_assert_eq!(scaling.config, config);
        let s = scaling.batch_lr_scale;
        let optim = OptimSettings::Head(MuonAdamWConfig {
            unembedding_lr: h.unembedding_lr * s,
            embedding_lr: h.embedding_lr * s,
            matrix_lr: h.matrix_lr * s,
            scalar_lr: h.scalar_lr * s,
            weight_decay: scaling.weight_decay_scaled,
        });
        let mut schedule = HeadSchedule::new(scaling.num_iterations, scaling.weight_decay_scaled);
        if let Some(w) = self.warmup_steps {
            schedule.warmup_steps = w;
        }
        if let Some(r) = self.warmdown_ratio {
            schedule.warmdown_ratio = r;
        }
        if let Some(f) = self.final_lr_frac {
            schedule.final_lr_frac = f;
        }
        Ok(BasePlan {
            config,
            total_steps: scaling.num_iterations as u64,
            total_batch_size: scaling.total_batch_size,
            optim,
            schedule: Schedules::Head(schedule),
            scaling: Some(scaling),
        })
    }
}

/// A base-training run ready to train ([`BaseRun::prepare`]).
pub struct BaseRun {
    /// The trainer, at step 0 or at the resumed step.
    pub trainer: Trainer,
    /// The checkpoint folder's name.
    pub tag: String,
    /// Per input, what the run reads of it (`input`, `role`, `documents`, `chars`,
    /// `used_chars`, `share_used`), training inputs first ([`account_inputs`]).
    pub inputs: serde_json::Value,
}

impl BaseRun {
    /// Loads the tokenizer, builds the model config and the data loaders, accounts for the
    /// inputs (each line of that account, warnings included, goes to `notes`), reads the
    /// validation batches and sets up the [`Trainer`]: resumed from `resume_from_step`, else
    /// fresh with f32 master weights seeded by `seed`. Checkpoints go under
    /// `paths.model_root`. Errors: the tokenizer's, [`CoreError::InvalidArgument`] (one input
    /// file only, a config field, the total batch size), the data's and [`Trainer`]'s.
    pub fn prepare(
        opts: &BaseTrainOptions,
        paths: &Paths,
        device: &Device,
        notes: &mut dyn FnMut(String),
    ) -> Result<BaseRun> {
        let tok_dir = paths.tokenizer_dir_or(opts.tokenizer.as_deref());
        let tokenizer = Tokenizer::from_pretrained(&tok_dir)?;
        let plan = opts.plan(tokenizer.vocab_size(), device.backend().is_cpu())?;
        let config = plan.config.clone();
        let tag = opts
            .model_tag
            .clone()
            .unwrap_or_else(|| format!("d{}", config.n_layer));
        if let Some(step) = opts.resume_from_step {
            let dir = crate::checkpoint::checkpoint_dir(&paths.model_root, Phase::Base, &tag);
            let meta = crate::checkpoint::read_meta(&dir, step)?;
            if meta.format == crate::checkpoint::nanochat::NANOCHAT_FORMAT {
                let cfg = train_config(opts, &plan, paths, &tok_dir, &tag, device);
                let resume = NanochatResume {
                    step,
                    // v1's flags cannot describe every v1 model (n_embd is 64 x depth there).
                    flags_config: (opts.recipe == Architecture::Head).then(|| config.clone()),
                    depth: opts.depth.or(opts.model_size.map(|s| s.depth())),
                    inputs: opts.inputs.clone(),
                    val_batches: opts.eval_tokens.div_ceil(opts.batch_size * opts.seq_len),
                    user_config: nanochat_user_config(opts, &plan),
                };
                if meta.config.architecture != opts.recipe {
                    return Err(recipe_mismatch(opts, step, &dir, &meta));
                }
                notes(format!(
                    "base-train: continuing nanochat's run in {} from step {step} in nanochat's format (data: {})",
                    dir.display(),
                    if opts.inputs.is_empty() {
                        let d = crate::data::nanochat_data_dir(&paths.base_dir, meta.config.architecture);
                        format!("nanochat's shards in {}", d.display())
                    } else {
                        "--input".into()
                    }
                ));
                let trainer = Trainer::resume_nanochat(resume, paths, device, tokenizer, cfg)?;
                return Ok(BaseRun {
                    trainer,
                    tag,
                    inputs: json!([]),
                });
            }
        }
        let (train_sources, val_source, labels) = data_sources(&opts.inputs)?;
        let (b, t) = (opts.batch_size, opts.seq_len);
        let mut stream = DataLoader::new(train_sources.clone(), tokenizer.clone(), b, t)?;
        let mut val_loader = DataLoader::new(vec![val_source], tokenizer.clone(), b, t)?;
        let n_val = opts.eval_tokens.div_ceil(b * t).max(1);
        let inputs = account_inputs(
            opts,
            &plan,
            &labels,
            &mut stream,
            &mut val_loader,
            n_val,
            notes,
        )?;
        let val: Vec<Batch> = (0..n_val)
            .map(|_| val_loader.next_batch())
            .collect::<Result<_>>()?;
        // v1 reads one contiguous stream; HEAD packs whole documents best-fit. Validation is the
        // contiguous stream under both, so their bpb compare.
        let train: Box<dyn BatchSource> = match opts.recipe {
            Architecture::V1 => Box::new(stream),
            Architecture::Head => {
                Box::new(BestFitLoader::new(train_sources, tokenizer.clone(), b, t)?)
            }
        };
        if let Some(s) = &plan.scaling {
            notes(format!(
                "base-train --recipe head: {} scaling parameters, {} target tokens, batch {} tokens (lr scale {:.4}), weight decay {:.6}, {} steps",
                s.params.scaling(), s.target_tokens, s.total_batch_size, s.batch_lr_scale,
                s.weight_decay_scaled, s.num_iterations
            ));
        }
        let cfg = train_config(opts, &plan, paths, &tok_dir, &tag, device);
        let trainer = match opts.resume_from_step {
            Some(step) => {
                let meta = crate::checkpoint::read_meta(&cfg.checkpoint_dir(), step)?;
                crate::checkpoint::nanochat::refuse_resume(&meta, &cfg.checkpoint_dir())?;
                if meta.config.architecture != opts.recipe {
                    return Err(recipe_mismatch(opts, step, &cfg.checkpoint_dir(), &meta));
                }
                Trainer::resume(step, device, tokenizer, train, val, cfg)?
            }
            // Master weights are f32; a bf16 compute dtype computes in bf16 over them.
            None => Trainer::new(
                GPT::new(config, device, DType::F32, opts.seed)?,
                tokenizer,
                train,
                val,
                cfg,
            )?,
        };
        Ok(BaseRun {
            trainer,
            tag,
            inputs,
        })
    }

    /// The line `nanochat base-train` prints before training: parameters, shape, steps,
    /// device and checkpoint folder.
    pub fn describe(&self) -> String {
        let (m, cfg) = (&self.trainer.model, &self.trainer.cfg);
        format!(
            "base-train {}: {} parameters, {} layers x {} wide, vocab {}, {} steps of {} tokens on {} -> {}",
            self.tag,
            m.num_params(),
            m.config().n_layer,
            m.config().n_embd,
            m.config().vocab_size,
            cfg.total_steps,
            cfg.total_batch_size,
            m.get_device(),
            cfg.checkpoint_dir().display()
        )
    }

    /// The run's summary (printed as JSON on stdout): tag, step, validation bpb, checkpoint
    /// folder and metrics file, mean tokens/s and the inputs' account.
    pub fn summary(&self, outcome: &RunOutcome) -> serde_json::Value {
        let dir = self.trainer.cfg.checkpoint_dir();
        json!({
            "model_tag": self.tag,
            "step": self.trainer.step,
            "val_bpb": outcome.val_bpb,
            "checkpoint_dir": dir.display().to_string(),
            "metrics": dir.join("metrics.jsonl").display().to_string(),
            "mean_tokens_per_s": outcome.mean_tokens_per_s,
            "inputs": self.inputs,
        })
    }

    /// The `base-train` stage of the report, as `(settings, results)`.
    pub fn report(&self, outcome: &RunOutcome) -> (serde_json::Value, serde_json::Value) {
        let t = &self.trainer;
        (
            json!({"checkpoint_dir": t.cfg.checkpoint_dir().display().to_string(), "model_tag": self.tag,
                "parameters": t.model.num_params(), "run": t.cfg.run}),
            json!({"steps": t.step, "val_bpb": outcome.val_bpb, "tokens_per_s": outcome.mean_tokens_per_s,
                "wall_s": outcome.wall_s}),
        )
    }
}

/// The error of a resume whose `--recipe` is not the checkpoint's generation.
fn recipe_mismatch(
    opts: &BaseTrainOptions,
    step: u64,
    dir: &std::path::Path,
    meta: &crate::checkpoint::Meta,
) -> CoreError {
    CoreError::invalid(
        "--recipe",
        opts.recipe.name(),
        format!(
            "the recipe of the run being resumed: step {step} in {} is a `{}` model",
            dir.display(),
            meta.config.architecture.name()
        ),
    )
}

/// This run's settings under nanochat's `user_config` names (`scripts/base_train.py`'s
/// arguments), laid over a resumed nanochat meta's `user_config`.
fn nanochat_user_config(opts: &BaseTrainOptions, plan: &BasePlan) -> serde_json::Value {
    let mut u = json!({
        "depth": plan.config.n_layer,
        "max_seq_len": opts.seq_len,
        "num_iterations": plan.total_steps,
        "device_batch_size": opts.batch_size,
        "total_batch_size": plan.total_batch_size,
        "eval_tokens": opts.eval_tokens,
        "eval_every": if opts.eval_every == 0 { -1 } else { opts.eval_every as i64 },
        "save_every": if opts.save_every == 0 { -1 } else { opts.save_every as i64 },
        "resume_from_step": opts.resume_from_step.map_or(-1, |s| s as i64),
    });
    if let Some(tag) = &opts.model_tag {
        u["model_tag"] = json!(tag);
    }
    if opts.recipe == Architecture::Head {
        let h = &opts.head;
        for (k, v) in [
            ("aspect_ratio", json!(h.aspect_ratio)),
            ("head_dim", json!(h.head_dim)),
            ("window_pattern", json!(h.window_pattern)),
            ("embedding_lr", json!(h.embedding_lr)),
            ("unembedding_lr", json!(h.unembedding_lr)),
            ("matrix_lr", json!(h.matrix_lr)),
            ("scalar_lr", json!(h.scalar_lr)),
            ("weight_decay", json!(h.weight_decay)),
        ] {
            u[k] = v;
        }
        if let Schedules::Head(s) = &plan.schedule {
            u["warmup_steps"] = json!(s.warmup_steps);
            u["warmdown_ratio"] = json!(s.warmdown_ratio);
            u["final_lr_frac"] = json!(s.final_lr_frac);
        }
    }
    u
}

/// The [`TrainConfig`] of a base run: batch, horizon, optimizer, schedules, checkpoint folder
/// and what its metas record of the run.
fn train_config(
    opts: &BaseTrainOptions,
    plan: &BasePlan,
    paths: &Paths,
    tok_dir: &std::path::Path,
    tag: &str,
    device: &Device,
) -> TrainConfig {
    let config = &plan.config;
    let (b, t) = (opts.batch_size, opts.seq_len);
    let mut cfg = TrainConfig {
        phase: Phase::Base,
        root: paths.model_root.clone(),
        model_tag: tag.to_string(),
        batch_size: b,
        seq_len: t,
        total_batch_size: plan.total_batch_size,
        total_steps: plan.total_steps,
        optim: plan.optim,
        schedule: plan.schedule,
        eval_every: opts.eval_every,
        save_every: opts.save_every,
        sample_prompts: vec![
            "Call me".into(),
            "To be, or not to be".into(),
            "The whale".into(),
        ],
        tokenizer_record: paths.record_tokenizer(tok_dir),
        tokenizer_path: tok_dir.to_path_buf(),
        compute_dtype: opts.dtype,
        run: json!({
            "command": "base-train", "recipe": opts.recipe.name(), "depth": config.n_layer,
            "batch_size": b, "seq_len": t, "total_batch_size": plan.total_batch_size,
            "total_steps": plan.total_steps, "lr": opts.lr, "dtype": opts.dtype.name(),
            "device": device.to_string(), "seed": opts.seed,
            "inputs": opts.inputs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        }),
    };
    if let Schedules::Head(schedule) = plan.schedule {
        // What HEAD's SFT inherits (nanochat's `user_config`: the flags before the batch
        // scale) and the schedule that gives the optimizer's last weight decay.
        let h = &opts.head;
        cfg.run["user_config"] = json!({
            "embedding_lr": h.embedding_lr, "unembedding_lr": h.unembedding_lr,
            "matrix_lr": h.matrix_lr, "scalar_lr": h.scalar_lr, "weight_decay": h.weight_decay,
        });
        cfg.run["schedule"] = json!(schedule);
        // The rates MuonAdamW was built with (after the batch scale): its groups'
        // `initial_lr`, which an export to nanochat's optimizer file records.
        if let OptimSettings::Head(c) = &plan.optim {
            cfg.run["optim_rates"] = json!({
                "unembedding_lr": c.unembedding_lr, "embedding_lr": c.embedding_lr,
                "matrix_lr": c.matrix_lr, "scalar_lr": c.scalar_lr, "weight_decay": c.weight_decay,
            });
        }
    }
    cfg
}

/// Training sources, the validation source and a label per input (training ones first): the
/// bundled corpus split 95/5 when `inputs` is empty, else the files with the last one for
/// validation (base-train's `--input`; base-eval's bpb splits). Errors:
/// [`CoreError::InvalidArgument`] for a single file.
pub fn data_sources(inputs: &[PathBuf]) -> Result<(Vec<Source>, Source, Vec<String>)> {
    if inputs.is_empty() {
        let (train, val) = split_train_val(bundled_documents()?, 0.95, 0.05)?;
        return Ok((
            vec![Source::Docs(Arc::new(train))],
            Source::Docs(Arc::new(val)),
            vec![
                "bundled corpus (its first 95%)".to_string(),
                "bundled corpus (its last 5%)".into(),
            ],
        ));
    }
    let Some((val, train)) = inputs.split_last().filter(|(_, train)| !train.is_empty()) else {
        return Err(CoreError::invalid(
            "--input",
            "1 file",
            "at least two files: the last one is the validation split",
        ));
    };
    Ok((
        train.iter().cloned().map(Source::File).collect(),
        Source::File(val.clone()),
        inputs.iter().map(|p| p.display().to_string()).collect(),
    ))
}

/// What a base-training run reads of each input: documents, characters and the share used
/// (training: `total_steps` x the tokens per step; validation: `n_val_batches` batches, i.e.
/// `eval_tokens` rounded up to whole batches). Each input's line, and a warning naming the flag
/// when training or validation leaves more than 1% of its text unused
/// ([`unused_warning`]), go to `notes`. `labels`: the training inputs, then validation.
/// Returns a row per input for the summary.
pub fn account_inputs(
    opts: &BaseTrainOptions,
    plan: &BasePlan,
    labels: &[String],
    train: &mut DataLoader,
    val: &mut DataLoader,
    n_val_batches: usize,
    notes: &mut dyn FnMut(String),
) -> Result<serde_json::Value> {
    let (b, t) = (opts.batch_size, opts.seq_len);
    let per_step = plan.total_batch_size;
    let train_tokens = (plan.total_steps as usize).saturating_mul(per_step);
    let train_use = train.source_usage(train_tokens.saturating_add(1))?;
    let val_use = val.source_usage(n_val_batches * b * t + 1)?;
    let mut rows = Vec::new();
    let split = labels.len().saturating_sub(1);
    for (role, usage, labels) in [
        ("training", &train_use, &labels[..split]),
        ("validation", &val_use, &labels[split..]),
    ] {
        for (u, label) in usage.iter().zip(labels) {
            notes(format!(
                "base-train {role} input {label}: {} documents, {} characters, {:.1}% used",
                u.documents,
                u.chars,
                100.0 * u.share_used()
            ));
            rows.push(
                json!({"input": label, "role": role, "documents": u.documents,
                "chars": u.chars, "used_chars": u.used_chars(), "share_used": u.share_used()}),
            );
        }
    }
    let total = |u: &[SourceUsage]| -> (usize, usize) {
        let chars = u.iter().map(|s| s.chars).sum::<usize>();
        (
            chars,
            chars - u.iter().map(SourceUsage::used_chars).sum::<usize>(),
        )
    };
    let (chars, unused) = total(&train_use);
    let cause = format!("--total-steps {} of {per_step} tokens", plan.total_steps);
    let remedy = "raise --total-steps to train on all of it";
    let warn_train = unused_warning(chars, unused, "training characters", &cause, remedy);
    let (chars, unused) = total(&val_use);
    let cause = format!("--eval-tokens {}", opts.eval_tokens);
    let remedy = "raise --eval-tokens to measure on all of it";
    let warn_val = unused_warning(chars, unused, "validation characters", &cause, remedy);
    for w in [warn_train, warn_val].into_iter().flatten() {
        notes(w);
    }
    Ok(json!(rows))
}
