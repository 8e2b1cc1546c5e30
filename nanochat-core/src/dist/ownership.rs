//! Which rank updates which parameter: the optimizer's shard of each rank.

use crate::{CoreError, Result};

/// Which parameters a sharded optimizer deals out ([`Ownership::balanced`]); the others are
/// replicated: their gradients are all-reduced and every rank updates them itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ShardPolicy {
    /// Every parameter has one owner (ZeRO-2: the default).
    #[default]
    All,
    /// Only Muon's matrices are dealt out (their Newton-Schulz is the optimizer's cost); the
    /// AdamW parameters are replicated.
    Matrices,
    /// Nothing is sharded: every rank updates every parameter (plain data parallelism, for
    /// comparison).
    None,
}

impl ShardPolicy {
    /// The policy of a name: `all`, `matrices` or `none`.
    ///
    /// Errors: [`CoreError::InvalidArgument`] naming the choices.
    pub fn parse(s: &str) -> Result<ShardPolicy> {
        match s {
            "all" => Ok(ShardPolicy::All),
            "matrices" => Ok(ShardPolicy::Matrices),
            "none" => Ok(ShardPolicy::None),
            _ => Err(CoreError::invalid(
                "optimizer sharding",
                s,
                "all, matrices or none",
            )),
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            ShardPolicy::All => "all",
            ShardPolicy::Matrices => "matrices",
            ShardPolicy::None => "none",
        }
    }
}

/// The owner of every parameter (in `named_parameters` order) across `world_size` ranks, or
/// none for a replicated parameter.
///
/// Owned parameters are dealt out whole, largest first, each to the rank with the fewest
/// elements so far (ties to the lower rank): deterministic, so every rank computes the same
/// split, and balanced in memory, in the bytes each rank sends, and roughly in Muon's
/// Newton-Schulz work. The result of a step does not depend on the split: each parameter's
/// update reads only its own gradient and state, so any owner computes the same values
/// (nanochat v1's `DistMuon` deals whole matrices round-robin in the same spirit; HEAD's
/// `DistMuonAdamW` slices stacked groups, which needs no change here beyond the unit dealt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ownership {
    owners: Vec<Option<usize>>,
    lens: Vec<usize>,
    world_size: usize,
}

impl Ownership {
    /// Deals every parameter of these element counts (in order) to `world_size` ranks.
    ///
    /// Errors: [`CoreError::InvalidArgument`] for a world size of 0.
    pub fn balanced(lens: &[usize], world_size: usize) -> Result<Ownership> {
        Ownership::balanced_except(lens, &vec![false; lens.len()], world_size)
    }

    /// As [`Ownership::balanced`], the parameters marked in `replicated` left to every rank.
    ///
    /// Errors: [`CoreError::InvalidArgument`] for a world size of 0 or a mask of another length.
    pub fn balanced_except(
        lens: &[usize],
        replicated: &[bool],
        world_size: usize,
    ) -> Result<Ownership> {
        if world_size == 0 {
            return Err(CoreError::invalid("world size", 0, "at least 1"));
        }
        if replicated.len() != lens.len() {
            return Err(CoreError::invalid(
                "replicated mask",
                replicated.len(),
                format!("one entry per parameter ({})", lens.len()),
            ));
        }
        let mut order: Vec<usize> = (0..lens.len()).filter(|&i| !replicated[i]).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(lens[i]), i));
        let mut load = vec![0usize; world_size];
        let mut owners = vec![None; lens.len()];
        for i in order {
            let r = (0..world_size)
                .min_by_key(|&r| (load[r], r))
                .expect("world_size >= 1");
            owners[i] = Some(r);
            load[r] += lens[i];
        }
        Ok(Ownership {
            owners,
            lens: lens.to_vec(),
            world_size,
        })
    }

    /// The owner of parameter `i` (`None`: replicated).
    pub fn owner(&self, i: usize) -> Option<usize> {
        self.owners[i]
    }

    /// The number of ranks.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// The number of parameters.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// Whether there is no parameter.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }

    /// Whether `rank` updates each parameter (those it owns and the replicated ones): the
    /// optimizer's mask.
    pub fn mask(&self, rank: usize) -> Vec<bool> {
        self.owners
            .iter()
            .map(|&o| o.is_none_or(|o| o == rank))
            .collect()
    }

    /// The parameters `rank` owns, in order.
    pub fn owned(&self, rank: usize) -> Vec<usize> {
        (0..self.owners.len())
            .filter(|&i| self.owners[i] == Some(rank))
            .collect()
    }

    /// The replicated parameters, in order.
    pub fn replicated(&self) -> Vec<usize> {
        (0..self.owners.len())
            .filter(|&i| self.owners[i].is_none())
            .collect()
    }

    /// Elements owned by `rank`.
    pub fn owned_len(&self, rank: usize) -> usize {
        self.owned(rank).iter().map(|&i| self.lens[i]).sum()
    }

    /// The length of one rank's block in a reduce-scatter or all-gather: the largest
    /// [`Ownership::owned_len`] (shorter blocks are padded with zeros).
    pub fn block_len(&self) -> usize {
        (0..self.world_size)
            .map(|r| self.owned_len(r))
            .max()
            .unwrap_or(0)
    }
}
