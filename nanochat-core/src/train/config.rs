//! The settings of a run ([`TrainConfig`]): its folder, batch, steps, optimizer and schedules.

use std::path::PathBuf;

use crate::checkpoint::{checkpoint_dir, Phase};
use crate::optim::{OptimSettings, Schedules};
use crate::{CoreError, DType, Result};

/// Settings of a run.
#[derive(Clone, Debug)]
pub struct TrainConfig {
    /// The phase being trained (names the checkpoint folder and the report stage).
    pub phase: Phase,
    /// Checkpoints go to `root/{phase}_checkpoints/{model_tag}/`.
    pub root: PathBuf,
    /// The model's tag (the checkpoint folder's name, e.g. `d20`).
    pub model_tag: String,
    /// Rows per micro-batch.
    pub batch_size: usize,
    /// Tokens per row (T).
    pub seq_len: usize,
    /// Tokens per optimizer step (a multiple of batch_size * seq_len).
    pub total_batch_size: usize,
    /// Optimizer steps of the run (nanochat's `num_iterations`).
    pub total_steps: u64,
    /// Optimizer settings: v1's AdamW + Muon, or HEAD's MuonAdamW.
    pub optim: OptimSettings,
    /// The learning-rate multiplier (and Muon's momentum and weight decay) by step.
    pub schedule: Schedules,
    /// Measure validation bpb every this many steps (and at the end); 0: only at the end.
    pub eval_every: u64,
    /// Save a checkpoint every this many steps (and at the end); 0: only at the end.
    pub save_every: u64,
    /// Prompts continued greedily at each evaluation.
    pub sample_prompts: Vec<String>,
    /// The tokenizer trained with (named in errors).
    pub tokenizer_path: PathBuf,
    /// How checkpoints record it ([`crate::paths::Paths::record_tokenizer`]): `None` for the
    /// default `<base dir>/tokenizer`, which loading finds without a record.
    pub tokenizer_record: Option<String>,
    /// Activation and matmul dtype (bf16: mixed precision over f32 master weights).
    pub compute_dtype: DType,
    /// Recorded in the checkpoints' meta.
    pub run: serde_json::Value,
}

impl TrainConfig {
    /// Micro-batches per optimizer step.
    pub fn grad_accum_steps(&self) -> Result<usize> {
        let micro = self.batch_size * self.seq_len;
        if micro == 0
            || !self.total_batch_size.is_multiple_of(micro)
            || self.total_batch_size < micro
        {
            return Err(CoreError::invalid(
                "total batch size",
                self.total_batch_size,
                format!("a positive multiple of batch size x sequence length = {micro}"),
            ));
        }
        Ok(self.total_batch_size / micro)
    }

    /// Micro-batches each of `world_size` ranks computes per step: the step's
    /// [`TrainConfig::grad_accum_steps`] (nanochat's `total_batch_size / (device_batch_size *
    /// max_seq_len * ddp_world_size)`, with `batch_size` rows per rank) shared out evenly.
    /// Errors: [`CoreError::InvalidArgument`] naming the sizes when they do not divide.
    pub fn rank_grad_accum_steps(&self, world_size: usize) -> Result<usize> {
        let accum = self.grad_accum_steps()?;
        if world_size == 0 || !accum.is_multiple_of(world_size) {
            return Err(CoreError::invalid(
                "total batch size",
                self.total_batch_size,
                format!(
                    "a multiple of batch size {} x sequence length {} x world size {world_size} = {} tokens (each rank computes batch size rows per micro-batch)",
                    self.batch_size,
                    self.seq_len,
                    self.batch_size * self.seq_len * world_size
                ),
            ));
        }
        Ok(accum / world_size)
    }

    /// `root/{phase}_checkpoints/{model_tag}/`.
    pub fn checkpoint_dir(&self) -> PathBuf {
        checkpoint_dir(&self.root, self.phase, &self.model_tag)
    }
}
