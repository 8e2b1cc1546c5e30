//! `nanochat bench train`: training throughput of a model shape on random tokens (forward,
//! backward, nanochat's optimizers), as tokens/s and MFU, with the memory it took.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::peak_flops;
use crate::dist::sync::StepCollectives;
use crate::dist::ShardPolicy;
use crate::model::{Architecture, ForwardOptions, GPTConfig, GPT};
use crate::ops::Reduction;
use crate::optim::{muon_momentum, MuonAdamWConfig, OptimConfig, OptimSettings, TrainOptimizer};
use crate::recipe::HeadScalingArgs;
use crate::{DType, Device, Result, Tape};

/// The shape `nanochat bench train` times ([`bench_train`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BenchTrainOptions {
    /// v1's model and AdamW + Muon, or HEAD's model (`--aspect-ratio` 64, `--head-dim` 128,
    /// `SSSL` windows) and `MuonAdamW` at base_train's rates.
    pub recipe: Architecture,
    /// Model depth (n_layer).
    pub depth: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// Rows per step (B).
    pub batch: usize,
    /// Tokens per row (T).
    pub seq: usize,
    /// Timed steps (after one warm-up step).
    pub steps: usize,
    /// Matmul and activation dtype (bf16 over f32 master weights).
    pub dtype: DType,
    /// Under several ranks ([`crate::dist::world`]): which parameters the optimizer deals out
    /// ([`ShardPolicy`]); one process ignores it.
    pub shard: ShardPolicy,
}

#[derive(Clone, Debug, Serialize)]
/// What `nanochat bench train` prints (JSON): the timing of full training steps (forward with the
/// loss, backward, optimizer) of a random model on a fixed random batch.
pub struct TrainBench {
    /// The recipe (`v1`, `head`): its model and optimizer.
    pub recipe: &'static str,
    /// The device, as `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    /// Compute dtype (`float32`, or `bfloat16` over f32 master weights as in `base-train`).
    pub dtype: &'static str,
    /// Model depth (n_layer).
    pub depth: usize,
    /// Model width (v1: 64 x depth; HEAD: 64 x depth rounded up to whole 128-dim heads).
    pub n_embd: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Rows per step and rank (B).
    pub batch_size: usize,
    /// Ranks training together (each on its own B rows; 1: one process).
    pub world_size: usize,
    /// How the optimizer was sharded over the ranks (`all`, `matrices`, `none`; `none` in one
    /// process).
    pub shard_optimizer: &'static str,
    /// Tokens per row (T).
    pub seq_len: usize,
    /// Number of parameters of the model.
    pub num_params: usize,
    /// Timed steps (after the warm-up step).
    pub steps: usize,
    /// Median seconds per optimizer step (after one warm-up step that compiles the kernels).
    pub step_seconds: f64,
    /// Median seconds of the forward (with the loss), the backward and the optimizer step
    /// (each waited for; they add up to `step_seconds`).
    pub forward_seconds: f64,
    /// Median seconds of the backward pass.
    pub backward_seconds: f64,
    /// Median seconds of the optimizer step (Muon and AdamW, or HEAD's MuonAdamW), the
    /// communication of several ranks included.
    pub optimizer_seconds: f64,
    /// Of those, the median seconds of the collectives (the gradients' reduce-scatter and
    /// all-reduce, the parameters' all-gather); 0 in one process.
    pub communication_seconds: f64,
    /// The loss of the last step (the same random batch every step, so it falls); checked
    /// finite, so a failed launch cannot pass for speed.
    pub final_loss: f32,
    /// Training throughput: B * T tokens times the world size over the median step time.
    pub tokens_per_s: f64,
    /// Model FLOPs (nanochat's estimate) per second over the peak `peak_flops`.
    pub mfu: f64,
    /// The device's assumed peak FLOP/s that `mfu` divides by.
    pub peak_flops: f64,
    /// Highest resident memory of this process (the CPU runtime's tensors live there).
    pub peak_host_bytes: Option<u64>,
    /// Device memory in use at the end (CUDA).
    pub device_bytes_in_use: Option<u64>,
}

/// The process's peak resident set (Linux `VmHWM`).
pub fn peak_host_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Times `o.steps` training steps of `o.recipe`'s depth-`o.depth` model at batch (`o.batch`,
/// `o.seq`) over random tokens, with matmuls and activations in `o.dtype` (bf16: mixed
/// precision over f32 master weights, as `base-train --dtype bfloat16` and nanochat's autocast),
/// and the recipe's optimizer (v1: AdamW + Muon at nanochat's rates; HEAD: `MuonAdamW` at
/// base_train's rates with its weight decay). MFU is against the device's dense peak for that
/// dtype ([`peak_flops`]: 989 TFLOP/s for bf16 on a GPU, nanochat's H100 figure).
pub fn bench_train(device: &Device, o: &BenchTrainOptions) -> Result<TrainBench> {
    let (depth, vocab, batch, seq, steps, dtype) =
        (o.depth, o.vocab, o.batch, o.seq, o.steps, o.dtype);
    if steps == 0 {
        return Err(crate::CoreError::invalid(
            "--steps",
            0,
            "at least 1 timed step",
        ));
    }
    let (config, settings) = match o.recipe {
        Architecture::V1 => (
            GPTConfig::from_depth(depth, vocab, seq),
            OptimSettings::V1(OptimConfig::default()),
        ),
        Architecture::Head => {
            let args = HeadScalingArgs {
                depth,
                vocab_size: vocab,
                max_seq_len: seq,
                ..HeadScalingArgs::default()
            };
            // base_train's default rates (unscaled) and weight decay.
            let h = super::HeadTrainOptions::default();
            let rates = MuonAdamWConfig {
                unembedding_lr: h.unembedding_lr,
                embedding_lr: h.embedding_lr,
                matrix_lr: h.matrix_lr,
                scalar_lr: h.scalar_lr,
                weight_decay: h.weight_decay,
            };
            (args.model_config(), OptimSettings::Head(rates))
        }
    };
    let mut model = GPT::new(config, device, DType::F32, 0)?;
    model.set_compute_dtype(dtype)?;
    model.train();
    super::check_fits(&model, batch, seq)?;
    let mut optim = TrainOptimizer::new(&model, &settings)?;
    let params = model.parameters();
    // Several ranks: each trains on its own rows, the gradients are reduced to their owners and
    // the updated parameters gathered, as in a training run.
    let dist = crate::dist::world();
    let own = super::ranks::shard(&model, &mut optim, &dist, o.shard)?;
    // Muon's weight decay (HEAD's; v1's optimizer has none).
    let weight_decay = match settings {
        OptimSettings::Head(c) => c.weight_decay,
        OptimSettings::V1(_) => 0.0,
    };
    // On CUDA the collectives are NCCL's, as in a training run.
    let collectives = StepCollectives::new(dist.clone(), device)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(dist.rank() as u64);
    let idx: Vec<u32> = (0..batch * seq)
        .map(|_| rng.random_range(0..vocab as u32))
        .collect();
    let targets: Vec<i32> = (0..batch * seq)
        .map(|_| rng.random_range(0..vocab as i32))
        .collect();
    // Seconds of each timed step: (total, forward, backward, optimizer, communication).
    let mut times: Vec<[f64; 5]> = Vec::new();
    let mut last_loss = f32::NAN;
    for step in 0..=steps {
        let t0 = Instant::now();
        let (t_fwd, t_bwd, comm, loss) =
            device.exclusive(|| -> Result<(Instant, Instant, f64, f32)> {
                let tape = Tape::watching(&params);
                let loss = model.forward(
                    &idx,
                    (batch, seq),
                    ForwardOptions::new()
                        .tape(&tape)
                        .targets(&targets, Reduction::Mean),
                )?;
                device.sync()?;
                let t_fwd = Instant::now();
                let mut grads = tape.backward(&loss)?;
                device.sync()?;
                let t_bwd = Instant::now();
                let mut comm = 0.0;
                if let Some(own) = &own {
                    let t = Instant::now();
                    collectives.reduce_grads(own, &params, &mut grads)?;
                    comm += t.elapsed().as_secs_f64();
                }
                optim.step_with(&grads, 1.0, muon_momentum(step) as f64, weight_decay)?;
                if let Some(own) = &own {
                    device.sync()?;
                    let t = Instant::now();
                    collectives.gather_params(own, &params)?;
                    device.sync()?;
                    comm += t.elapsed().as_secs_f64();
                }
                device.sync()?;
                Ok((t_fwd, t_bwd, comm, loss.to_vec_f32()?[0]))
            })??;
        let end = Instant::now();
        last_loss = loss;
        if step > 0 {
            let secs = |a: Instant, b: Instant| (b - a).as_secs_f64();
            times.push([
                secs(t0, end),
                secs(t0, t_fwd),
                secs(t_fwd, t_bwd),
                secs(t_bwd, end),
                comm,
            ]);
        }
    }
    // A failed launch shows up as a missing or non-finite loss, never as speed.
    if !last_loss.is_finite() {
        return Err(crate::CoreError::Mismatch {
            op: "bench train",
            why: format!("the loss of the last step is {last_loss}"),
        });
    }
    let median = |i: usize| {
        let mut v: Vec<f64> = times.iter().map(|t| t[i]).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let step_seconds = median(0);
    let world = dist.world_size();
    let tokens_per_s = (batch * seq * world) as f64 / step_seconds;
    let peak = peak_flops(device, dtype) * world as f64;
    let device_bytes_in_use = match device.backend() {
        nanochat_kernels::Backend::Cuda(i) => {
            nanochat_kernels::device::cuda_memory(i).map(|(free, total)| total - free)
        }
        nanochat_kernels::Backend::Cpu => None,
    };
    Ok(TrainBench {
        recipe: o.recipe.name(),
        device: device.to_string(),
        dtype: dtype.name(),
        depth,
        n_embd: model.config().n_embd,
        vocab_size: vocab,
        batch_size: batch,
        world_size: world,
        shard_optimizer: if own.is_some() {
            o.shard.name()
        } else {
            "none"
        },
        seq_len: seq,
        num_params: model.num_params(),
        steps,
        step_seconds,
        forward_seconds: median(1),
        backward_seconds: median(2),
        optimizer_seconds: median(3),
        communication_seconds: median(4),
        final_loss: last_loss,
        tokens_per_s,
        mfu: model.estimate_flops() * tokens_per_s / peak,
        peak_flops: peak,
        peak_host_bytes: peak_host_bytes(),
        device_bytes_in_use,
    })
}
