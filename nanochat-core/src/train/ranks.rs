//! A run across ranks: which rank updates which parameter ([`optimizer_ownership`]) and the
//! optimizer sharded accordingly.

use crate::dist::{Dist, Ownership, ShardPolicy};
use crate::model::GPT;
use crate::optim::TrainOptimizer;
use crate::{CoreError, Result};

/// Shards `optim` over the ranks of `dist` (before its state is loaded, so that each rank
/// keeps only its share): `None` for one process.
pub(crate) fn shard_optimizer(
    model: &GPT,
    optim: &mut TrainOptimizer,
    dist: &Dist,
) -> Result<Option<Ownership>> {
    if !dist.is_distributed() {
        return Ok(None);
    }
    if model.config().dropout > 0.0 {
        // Each rank would draw its dropout masks from its own stream: the step would depend on
        // the world size (nanochat's models have no dropout).
        return Err(CoreError::Unsupported {
            op: "training across ranks",
            why: format!(
                "dropout {} draws per-process masks, so the step would depend on the world size; train with dropout 0 (nanochat's models have none) or in one process",
                model.config().dropout
            ),
        });
    }
    shard(model, optim, dist, SHARD_POLICY)
}

/// Shards `optim` over the ranks of `dist` under `policy`: the owners of `model`'s parameters
/// ([`optimizer_ownership`]) and this rank's mask set on the optimizer; `None` (and the
/// optimizer left whole) for one process. Shared by training, `bench train` and chat-rl.
///
/// Errors: [`optimizer_ownership`]'s; the optimizer's mask.
pub(crate) fn shard(
    model: &GPT,
    optim: &mut TrainOptimizer,
    dist: &Dist,
    policy: ShardPolicy,
) -> Result<Option<Ownership>> {
    if !dist.is_distributed() {
        return Ok(None);
    }
    let own = optimizer_ownership(model, optim, dist.world_size(), policy)?;
    optim.set_owned(&own.mask(dist.rank()))?;
    Ok(Some(own))
}

/// How a training run across ranks shards its optimizer: every parameter has one owner (ZeRO-2),
/// which `bench train` measured fastest on the CPU (docs/benchmarks.md).
pub const SHARD_POLICY: ShardPolicy = ShardPolicy::All;

/// The owners of `model`'s parameters over `world_size` ranks under `policy` (the matrices are
/// those `optim` updates with Muon).
///
/// Errors: [`Ownership::balanced_except`]'s.
pub fn optimizer_ownership(
    model: &GPT,
    optim: &TrainOptimizer,
    world_size: usize,
    policy: ShardPolicy,
) -> Result<Ownership> {
    let lens: Vec<usize> = model.parameters().iter().map(|p| p.len()).collect();
    let replicated: Vec<bool> = match policy {
        ShardPolicy::All => vec![false; lens.len()],
        ShardPolicy::Matrices => optim.muon_mask().iter().map(|m| !m).collect(),
        ShardPolicy::None => vec![true; lens.len()],
    };
    Ownership::balanced_except(&lens, &replicated, world_size)
}
