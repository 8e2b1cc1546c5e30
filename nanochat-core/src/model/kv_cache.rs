//! The KV cache for incremental decoding: per layer, keys and values of shape
//! (B, capacity, n_kv_head, head_dim), of which the first `len` positions are filled.

use super::GPTConfig;
use crate::{CoreError, DType, Device, Result, Tensor};

pub struct KvCache {
    pub(crate) k: Vec<Tensor>,
    pub(crate) v: Vec<Tensor>,
    batch: usize,
    capacity: usize,
    len: usize,
}

impl KvCache {
    /// An empty cache for `batch` sequences of up to `capacity` positions.
    pub fn new(
        config: &GPTConfig,
        device: &Device,
        dtype: DType,
        batch: usize,
        capacity: usize,
    ) -> Result<KvCache> {
        if capacity > config.block_size {
            return Err(CoreError::Config(format!(
                "KV cache of {capacity} positions exceeds block_size {}",
                config.block_size
            )));
        }
        let shape = [batch, capacity, config.n_kv_head, config.head_dim()];
        let mk = || {
            (0..config.n_layer)
                .map(|_| Tensor::zeros(device, &shape, dtype))
                .collect::<Result<Vec<_>>>()
        };
        Ok(KvCache {
            k: mk()?,
            v: mk()?,
            batch,
            capacity,
            len: 0,
        })
    }

    /// Positions filled so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Forgets every position (the buffers are reused).
    pub fn reset(&mut self) {
        self.len = 0;
    }

    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
    }
}
