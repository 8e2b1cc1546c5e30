//! The KV cache for incremental decoding: per layer, keys and values of shape
//! (B, capacity, n_kv_head, head_dim), of which the first `len` positions are filled.

use nanochat_kernels::layout::write_rows;
use nanochat_kernels::with_float;

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

    /// A cache of `n` sequences, each a copy of this one-sequence cache (its filled positions
    /// and length): a prompt prefilled once, shared by `n` samples. Copied on the device.
    pub fn replicate(&self, n: usize) -> Result<KvCache> {
        if self.batch != 1 {
            return Err(CoreError::Config(format!(
                "only a cache of one sequence can be replicated, this one holds {}",
                self.batch
            )));
        }
        let copy = |layers: &[Tensor]| -> Result<Vec<Tensor>> {
            layers
                .iter()
                .map(|t| {
                    let (_, cap, heads, dim) = t.dims4()?;
                    let row = heads * dim;
                    let out = Tensor::zeros(t.device(), &[n, cap, heads, dim], t.dtype())?;
                    let c = t.device().client();
                    for i in 0..n {
                        with_float!(t.dtype(), F => write_rows::<F>(c, out.handle(), n * cap, t.handle(), 1, cap, row, i * cap))?;
                    }
                    Ok(out)
                })
                .collect()
        };
        Ok(KvCache {
            k: copy(&self.k)?,
            v: copy(&self.v)?,
            batch: n,
            capacity: self.capacity,
            len: self.len,
        })
    }
}
