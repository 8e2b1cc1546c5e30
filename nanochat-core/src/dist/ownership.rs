//! Which rank updates which parameter: the optimizer's shard of each rank.

use crate::{CoreError, Result};

/// The owner of every parameter (in `named_parameters` order) across `world_size` ranks.
///
/// Whole parameters are dealt out, largest first, each to the rank with the fewest elements so
/// far (ties to the lower rank): deterministic, so every rank computes the same split, and
/// balanced in memory, in the bytes each rank sends, and roughly in Muon's Newton-Schulz work.
/// The result of a step does not depend on the split: each parameter's update reads only its
/// own gradient and state, so any owner computes the same values (nanochat v1's `DistMuon`
/// deals whole matrices round-robin in the same spirit; HEAD's `DistMuonAdamW` slices stacked
/// groups, which needs no change here beyond the unit dealt).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ownership {
    owners: Vec<usize>,
    lens: Vec<usize>,
    world_size: usize,
}

impl Ownership {
    /// Deals parameters of these element counts (in order) to `world_size` ranks.
    ///
    /// Errors: [`CoreError::InvalidArgument`] for a world size of 0.
    pub fn balanced(lens: &[usize], world_size: usize) -> Result<Ownership> {
        if world_size == 0 {
            return Err(CoreError::invalid("world size", 0, "at least 1"));
        }
        let mut order: Vec<usize> = (0..lens.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(lens[i]), i));
        let mut load = vec![0usize; world_size];
        let mut owners = vec![0usize; lens.len()];
        for i in order {
            let r = (0..world_size)
                .min_by_key(|&r| (load[r], r))
                .expect("world_size >= 1");
            owners[i] = r;
            load[r] += lens[i];
        }
        Ok(Ownership {
            owners,
            lens: lens.to_vec(),
            world_size,
        })
    }

    /// The owner of parameter `i`.
    pub fn owner(&self, i: usize) -> usize {
        self.owners[i]
    }

    /// The number of ranks.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Whether `rank` owns each parameter (the optimizer's mask).
    pub fn mask(&self, rank: usize) -> Vec<bool> {
        self.owners.iter().map(|&o| o == rank).collect()
    }

    /// The parameters `rank` owns, in order.
    pub fn owned(&self, rank: usize) -> Vec<usize> {
        (0..self.owners.len())
            .filter(|&i| self.owners[i] == rank)
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
