//! Continuing a nanochat run (`--resume-from-step` on a step in nanochat's own format), as
//! nanochat's `scripts/base_train.py` resumes (92d63d4 for HEAD, 16788ee for v1; section 9 of
//! the HEAD reference README):
//!
//! - **Model**: the checkpoint's (its `model_config`; the flags' model must agree with it).
//!   Tensors stored in bfloat16 (HEAD's `wte` and value embeddings, saved on a GPU) stay bf16:
//!   nanochat loads with `assign=True`, so their AdamW runs in f32 and writes back into bf16
//!   parameters and moments ([`crate::optim::MuonAdamW::keep_in_bf16`]).
//! - **Optimizer**: built from the flags, then the file's state (AdamW step counts, moments,
//!   Muon buffers). nanochat also restores the groups' `initial_lr`; here they must equal the
//!   flags' (an error names the group otherwise), so the run never mixes two sets of rates.
//! - **Schedules**: recomputed from the new `--num-iterations`, by absolute step.
//! - **Loop state**: `val_bpb`, `min_val_bpb`, `smooth_train_loss` (the EMA nanochat logs,
//!   debiased by the absolute step) and `total_training_time` continue from the meta.
//! - **Data**: nanochat's shards under the base dir (or `--input`, the last file validation),
//!   restarted after the saved row group with an empty buffer ([`NanochatLoader`]).
//! - **Saving**: in nanochat's format into the same folder
//!   ([`crate::checkpoint::nanochat_save::save_nanochat_step`]), so nanochat's own loader finds
//!   the latest step; `metrics.jsonl` goes beside it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::{BatchSource, TrainConfig, Trainer};
use crate::checkpoint::nanochat::{nanochat_model_from, read_state_dict, NANOCHAT_FORMAT};
use crate::checkpoint::nanochat_optim::read_nanochat_initial_lrs;
use crate::checkpoint::nanochat_optim_v1::V1OptimLayout;
use crate::checkpoint::nanochat_save::{nanochat_model_config, py_float};
use crate::checkpoint::{load_optimizer_state, Meta};
use crate::data::{nanochat_shard_paths, Batch, LoaderState, NanochatLoader, ResumePoint};
use crate::model::{Architecture, GPTConfig};
use crate::optim::{Rule, TrainOptimizer};
use crate::paths::Paths;
use crate::tokenizer::Tokenizer;
use crate::torchfile::TorchDType;
use crate::{CoreError, DType, Device, Result};

/// EMA decay of the logged training loss (`ema_beta` in `base_train.py`).
pub const EMA_BETA: f64 = 0.9;

/// What a resumed nanochat run carries to write nanochat's metas: the keys it copies, the
/// tensors kept in bf16, and nanochat's loop state.
#[derive(Clone, Debug, PartialEq)]
pub struct NanochatRun {
    /// The generation whose layout is written.
    pub generation: Architecture,
    /// Parameters stored in bfloat16 (model file and moments).
    pub bf16_params: Vec<String>,
    /// `user_config` of the metas written: the resumed meta's, with this run's flags.
    pub user_config: Value,
    /// `device_batch_size`, `max_seq_len` and (HEAD) `total_batch_size`.
    pub batch_keys: Value,
    /// The best validation bpb so far (`inf` before any).
    pub min_val_bpb: f64,
    /// The EMA of the training loss, not debiased (`smooth_train_loss`).
    pub smooth_train_loss: f64,
    /// Seconds of training after the first ten steps (`total_training_time`).
    pub total_training_time: f64,
    /// Steps this process has taken: its first is not timed (kernels compile and the loader
    /// fills its buffer then, as nanochat leaves out its first ten steps for torch.compile).
    pub steps_taken: u64,
    /// v1: the gradient norm clipped to (`grad_clip`, 1.0); HEAD clips nothing.
    pub grad_clip: Option<f64>,
    /// v1: the layout its optimizer file is written in (the continued file's).
    pub v1_layout: Option<V1OptimLayout>,
}

impl NanochatRun {
    /// After 0-based step `it` took `secs` with loss `loss`: the EMA and the time as
    /// `base_train` keeps them. Returns the debiased EMA nanochat logs.
    pub fn record_step(&mut self, it: u64, loss: Option<f64>, secs: f64) -> f64 {
        if let Some(l) = loss {
            self.smooth_train_loss = EMA_BETA * self.smooth_train_loss + (1.0 - EMA_BETA) * l;
        }
        if it > 10 && self.steps_taken > 0 {
            self.total_training_time += secs;
        }
        self.steps_taken += 1;
        self.smooth_train_loss / (1.0 - EMA_BETA.powi(it as i32 + 1))
    }

    /// A measured validation bpb.
    pub fn record_val_bpb(&mut self, bpb: f64) {
        if bpb < self.min_val_bpb {
            self.min_val_bpb = bpb;
        }
    }

    /// nanochat's meta of step `step`: `step`, `val_bpb`, `model_config`, `user_config`, the
    /// batch keys, `dataloader_state_dict` (`epoch` only for HEAD) and `loop_state`.
    pub fn meta(
        &self,
        step: u64,
        val_bpb: Option<f64>,
        config: &GPTConfig,
        loader: LoaderState,
    ) -> Value {
        let mut loader_state = json!({"pq_idx": loader.source, "rg_idx": loader.offset});
        if self.generation == Architecture::Head {
            loader_state["epoch"] = json!(loader.epoch);
        }
        let mut meta = json!({
            "step": step,
            "val_bpb": val_bpb.map_or(Value::Null, py_float),
            "model_config": nanochat_model_config(config),
            "user_config": self.user_config,
        });
        if let Value::Object(keys) = &self.batch_keys {
            for (k, v) in keys {
                meta[k] = v.clone();
            }
        }
        meta["dataloader_state_dict"] = loader_state;
        meta["loop_state"] = json!({
            "min_val_bpb": py_float(self.min_val_bpb),
            "smooth_train_loss": py_float(self.smooth_train_loss),
            "total_training_time": py_float(self.total_training_time),
        });
        meta
    }
}

impl BatchSource for NanochatLoader {
    fn next_batch(&mut self) -> Result<Batch> {
        NanochatLoader::next_batch(self)
    }
    fn position(&self) -> LoaderState {
        let p = self.state();
        LoaderState {
            epoch: p.epoch as u64,
            source: p.pq_idx,
            offset: p.rg_idx,
        }
    }
    fn restore(&mut self, state: LoaderState) -> Result<()> {
        self.restart(ResumePoint {
            pq_idx: state.source,
            rg_idx: state.offset,
            epoch: state.epoch as usize,
        });
        Ok(())
    }
}

/// The settings a resumed nanochat run takes from its flags.
#[derive(Clone, Debug)]
pub struct NanochatResume {
    /// The step resumed.
    pub step: u64,
    /// The config the flags describe (`None`: v1's flags cannot describe every model, so only
    /// `depth` is checked, when given).
    pub flags_config: Option<GPTConfig>,
    /// `--depth`, when given.
    pub depth: Option<usize>,
    /// Training files (the last for validation); empty: nanochat's shards under the base dir.
    pub inputs: Vec<PathBuf>,
    /// Validation batches measured at each evaluation.
    pub val_batches: usize,
    /// This run's flags in nanochat's names, laid over the meta's `user_config`.
    pub user_config: Value,
}

/// The flag that sets the rate of a HEAD param group, by its first parameter
/// (`GPT.setup_optimizer` at 92d63d4).
fn head_rate_flag(first_param: &str) -> &'static str {
    if first_param.starts_with("lm_head") {
        "--unembedding-lr"
    } else if first_param.starts_with("transformer.wte") || first_param.starts_with("value_embeds")
    {
        "--embedding-lr"
    } else if first_param.starts_with("transformer.h.") {
        "--matrix-lr"
    } else {
        "--scalar-lr"
    }
}

/// The resume point a nanochat meta records (`dataloader_state_dict`). Errors: the key missing
/// or malformed, naming the meta.
fn resume_point(meta: &Meta, path: &std::path::Path) -> Result<ResumePoint> {
    let Some(d) = meta
        .run
        .get("dataloader_state_dict")
        .filter(|v| !v.is_null())
    else {
        return Err(CoreError::file(
            path,
            "key `dataloader_state_dict` is missing: base_train's metas have it (nanochat's own resume would stop with a KeyError)",
        ));
    };
    let field = |k: &str| -> Result<Option<usize>> {
        match d.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(|x| Some(x as usize)).ok_or_else(|| {
                CoreError::file(
                    path,
                    format!("key `dataloader_state_dict.{k}`: {v}, expected a count"),
                )
            }),
        }
    };
    let (Some(pq_idx), Some(rg_idx)) = (field("pq_idx")?, field("rg_idx")?) else {
        return Err(CoreError::file(
            path,
            "key `dataloader_state_dict`: `pq_idx` and `rg_idx` expected",
        ));
    };
    Ok(ResumePoint {
        pq_idx,
        rg_idx,
        epoch: field("epoch")?.unwrap_or(1),
    })
}

/// The first field where the flags' model differs from the checkpoint's, as (field, flags',
/// checkpoint's).
fn config_difference(
    flags: &GPTConfig,
    ckpt: &GPTConfig,
) -> Option<(&'static str, String, String)> {
    let fields: [(&'static str, String, String); 7] = [
        (
            "n_layer (--depth)",
            flags.n_layer.to_string(),
            ckpt.n_layer.to_string(),
        ),
        (
            "n_embd (--aspect-ratio)",
            flags.n_embd.to_string(),
            ckpt.n_embd.to_string(),
        ),
        (
            "n_head (--head-dim)",
            flags.n_head.to_string(),
            ckpt.n_head.to_string(),
        ),
        (
            "n_kv_head",
            flags.n_kv_head.to_string(),
            ckpt.n_kv_head.to_string(),
        ),
        (
            "sequence_len (--max-seq-len)",
            flags.block_size.to_string(),
            ckpt.block_size.to_string(),
        ),
        (
            "vocab_size (the tokenizer)",
            flags.vocab_size.to_string(),
            ckpt.vocab_size.to_string(),
        ),
        (
            "window_pattern (--window-pattern)",
            flags.window_pattern.clone(),
            ckpt.window_pattern.clone(),
        ),
    ];
    fields.into_iter().find(|(_, a, b)| a != b)
}

impl Trainer {
    /// Continues the nanochat run saved at `r.step` in `cfg`'s checkpoint folder (see the
    /// module docs). `cfg` carries the flags' batch, horizon, optimizer rates and schedules.
    ///
    /// Errors: [`CoreError::InvalidArgument`] naming the flag whose model, sequence length or
    /// horizon contradicts the checkpoint, or the group whose rate differs from the file's;
    /// the meta's, the model's, the optimizer file's and the shards' errors (each naming its
    /// file); [`CoreError::Unsupported`] for v1 (not yet continued in its own format).
    pub fn resume_nanochat(
        r: NanochatResume,
        paths: &Paths,
        device: &Device,
        tokenizer: Tokenizer,
        mut cfg: TrainConfig,
    ) -> Result<Trainer> {
        if crate::dist::world().is_distributed() {
            return Err(CoreError::Unsupported {
                op: "resume",
                why: "continuing a run saved in nanochat's own format runs in one process for now (its optimizer shards are per-GPU files); run without mpirun, or continue a nanochat-rs checkpoint".into(),
            });
        }
        let dir = cfg.checkpoint_dir();
        let step = r.step;
        let meta_path = dir.join(format!("meta_{step:06}.json"));
        let meta = crate::checkpoint::read_meta(&dir, step)?;
        debug_assert_eq!(meta.format, NANOCHAT_FORMAT);
        let generation = meta.config.architecture;
        if let Some(flags) = &r.flags_config {
            if let Some((field, ours, theirs)) = config_difference(flags, &meta.config) {
                return Err(CoreError::invalid(
                    field,
                    ours,
                    format!("the checkpoint's model_config value {theirs} ({}): give the flags the run was trained with (its user_config)", meta_path.display()),
                ));
            }
        }
        if let Some(d) = r.depth.filter(|&d| d != meta.config.n_layer) {
            return Err(CoreError::invalid(
                "--depth",
                d,
                format!(
                    "the checkpoint's n_layer, {} ({})",
                    meta.config.n_layer,
                    meta_path.display()
                ),
            ));
        }
        if cfg.seq_len > meta.config.block_size {
            return Err(CoreError::invalid(
                "--max-seq-len",
                cfg.seq_len,
                format!(
                    "at most the checkpoint's sequence_len, {}",
                    meta.config.block_size
                ),
            ));
        }
        if step >= cfg.total_steps {
            return Err(CoreError::invalid(
                "--num-iterations (--total-steps)",
                cfg.total_steps,
                format!("more than the step resumed from, {step}"),
            ));
        }
        cfg.grad_accum_steps()?;
        if tokenizer.vocab_size() != meta.config.vocab_size {
            return Err(CoreError::invalid(
                "tokenizer vocabulary",
                tokenizer.vocab_size(),
                format!(
                    "the checkpoint's vocab_size, {} ({})",
                    meta.config.vocab_size,
                    meta_path.display()
                ),
            ));
        }
        // The model, and which of its tensors nanochat stores in bf16 (the file read once).
        let sd = read_state_dict(&dir, step)?;
        let bf16_params: Vec<String> = sd
            .iter()
            .filter(|(_, t)| t.dtype == TorchDType::BF16)
            .map(|(k, _)| k.clone())
            .collect();
        let mut model = nanochat_model_from(&dir, step, &meta, sd, device, DType::F32)?;
        // The optimizer: the flags' rates, checked against the file's; then its state.
        let mut optim = TrainOptimizer::new(&model, &cfg.optim)?;
        let theirs = read_nanochat_initial_lrs(&dir, step)?;
        // (group, the flag that sets its rate, our initial_lr) in the file's group order.
        let ours: Vec<(String, &'static str, f64)> = match &optim {
            TrainOptimizer::Head(o) => o
                .groups()
                .iter()
                .map(|g| {
                    let first = g.params.first().map_or("", String::as_str);
                    (g.params.join(", "), head_rate_flag(first), g.initial_lr)
                })
                .collect(),
            TrainOptimizer::V1(o) => {
                // [lm_head], [wte], then one Muon group per matrix size.
                let rules: BTreeMap<String, Rule> = o.rules().into_iter().collect();
                let rate = |n: &str| match rules.get(n) {
                    Some(Rule::AdamW(x) | Rule::Muon(x)) => *x as f64,
                    None => f64::NAN,
                };
                let muon = rules.values().find_map(|r| match r {
                    Rule::Muon(x) => Some(*x as f64),
                    Rule::AdamW(_) => None,
                });
                let mut v = vec![
                    ("lm_head.weight".to_string(), "--lr", rate("lm_head.weight")),
                    (
                        "transformer.wte.weight".into(),
                        "--lr",
                        rate("transformer.wte.weight"),
                    ),
                ];
                for _ in 2..theirs.len() {
                    v.push((
                        "the blocks' matrices (Muon)".into(),
                        "--lr",
                        muon.unwrap_or(f64::NAN),
                    ));
                }
                v
            }
        };
        // v1's rates are f32 here.
        let tol = if generation == Architecture::Head {
            1e-9
        } else {
            1e-6
        };
        if theirs.len() != ours.len() {
            return Err(CoreError::file(
                crate::checkpoint::nanochat::pt_optim_path(&dir, step, 0),
                format!(
                    "{} param groups, this model's optimizer has {}",
                    theirs.len(),
                    ours.len()
                ),
            ));
        }
        for (i, ((group, flag, a), b)) in ours.iter().zip(&theirs).enumerate() {
            // NaN (a rate this optimizer lacks) is a mismatch too.
            let same = (a - b).abs() <= tol * b.abs();
            if !same {
                let key = flag.trim_start_matches("--").replace('-', "_");
                let trained = match meta.run["user_config"].get(&key) {
                    Some(v) => format!("the run was trained with {flag}={v} (its user_config)"),
                    None => "give the rate the run was trained with".into(),
                };
                let scale = if generation == Architecture::Head {
                    ", times the batch scale of --total-batch-size"
                } else {
                    ""
                };
                return Err(CoreError::invalid(
                    flag,
                    format!("a rate giving param group {i} ({group}) initial_lr {a}"),
                    format!("the checkpoint's initial_lr {b}{scale}: {trained}"),
                ));
            }
        }
        load_optimizer_state(&dir, &meta, &model, &mut optim, device)?;
        let v1_layout = match generation {
            Architecture::V1 => Some(V1OptimLayout::from_file(
                &crate::checkpoint::nanochat::pt_optim_path(&dir, step, 0),
                &model,
            )?),
            Architecture::Head => None,
        };
        if let TrainOptimizer::Head(o) = &mut optim {
            o.keep_in_bf16(&bf16_params)?;
        }
        model.keep_in_bf16(&bf16_params)?;
        // The data: nanochat's shards (or --input), restarted after the saved row group.
        let (train_paths, val_path) = if r.inputs.is_empty() {
            nanochat_shard_paths(&paths.base_dir, generation)?
        } else {
            let (val, train) = r
                .inputs
                .split_last()
                .filter(|(_, t)| !t.is_empty())
                .ok_or_else(|| {
                    CoreError::invalid(
                        "--input",
                        "1 file",
                        "at least two files: the last one is the validation split",
                    )
                })?;
            (train.to_vec(), val.clone())
        };
        let (b, t) = (cfg.batch_size, cfg.seq_len);
        let resume = resume_point(&meta, &meta_path)?;
        let train = NanochatLoader::new(
            train_paths,
            generation,
            tokenizer.clone(),
            b,
            t,
            Some(resume),
        )?;
        let mut val_loader =
            NanochatLoader::new(vec![val_path], generation, tokenizer.clone(), b, t, None)?;
        let val = (0..r.val_batches.max(1))
            .map(|_| val_loader.next_batch())
            .collect::<Result<Vec<_>>>()?;
        // nanochat's loop state and the keys its metas carry.
        let Some(loop_state) = meta
            .run
            .get("loop_state")
            .filter(|v| v.is_object())
            .cloned()
        else {
            return Err(CoreError::file(
                &meta_path,
                "key `loop_state` is missing: base_train's metas have it (min_val_bpb, smooth_train_loss, total_training_time; nanochat's own resume would stop with a KeyError)",
            ));
        };
        let num = |k: &str, dflt: f64| loop_state.get(k).and_then(Value::as_f64).unwrap_or(dflt);
        let mut user_config = meta.run.get("user_config").cloned().unwrap_or(json!({}));
        if let (Value::Object(u), Value::Object(ours)) = (&mut user_config, &r.user_config) {
            for (k, v) in ours {
                u.insert(k.clone(), v.clone());
            }
        }
        let mut batch_keys = json!({"device_batch_size": b, "max_seq_len": t});
        if generation == Architecture::Head {
            batch_keys["total_batch_size"] = json!(cfg.total_batch_size);
        }
        let run = NanochatRun {
            generation,
            bf16_params,
            user_config,
            batch_keys,
            // Python's `float("inf")` reads back as null here.
            min_val_bpb: num("min_val_bpb", f64::INFINITY),
            smooth_train_loss: num("smooth_train_loss", 0.0),
            total_training_time: num("total_training_time", 0.0),
            steps_taken: 0,
            grad_clip: match generation {
                // v1's base_train: `grad_clip = 1.0` unless the run set another (0: off).
                Architecture::V1 => {
                    let c = meta.run["user_config"]["grad_clip"].as_f64().unwrap_or(1.0);
                    (c > 0.0).then_some(c)
                }
                Architecture::Head => None,
            },
            v1_layout,
        };
        cfg.run["nanochat_resume"] = json!({"from_step": step, "bf16_params": run.bf16_params});
        let mut trainer = Trainer::assemble(
            model,
            optim,
            tokenizer,
            Box::new(train),
            val,
            cfg,
            step,
            meta.val_bpb,
        )?;
        trainer.nanochat = Some(run);
        if generation == Architecture::V1 {
            // v1's rotary tables are bf16 on every device.
            trainer.model.use_bf16_rotary_tables()?;
        }
        Ok(trainer)
    }
}
