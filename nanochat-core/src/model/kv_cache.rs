//! The KV cache for incremental decoding (nanochat's `KVCache`): per layer, keys and values of
//! shape (B, capacity, n_kv_head, head_dim), of which the first `len` positions are filled.

use super::GPTConfig;
use crate::{ops, CoreError, DType, Device, Result, Tensor};

/// Keys and values of every layer for `batch` sequences of up to `capacity` positions; a
/// forward with the cache (`ForwardOptions::kv_cache`) runs the next positions and appends
/// theirs.
pub struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    batch: usize,
    capacity: usize,
    len: usize,
    /// HEAD's smear state: the normed, un-smeared embedding of the last position run
    /// (B, 1, C) (nanochat's `KVCache.prev_embedding`).
    prev_embedding: Option<Tensor>,
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
            return Err(CoreError::ContextFull {
                what: "KV cache",
                len: capacity,
                limit: config.block_size,
            });
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
            prev_embedding: None,
        })
    }

    /// Positions filled so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no position is filled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions each sequence can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Sequences held.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Forgets every position (the buffers are reused).
    pub fn reset(&mut self) {
        self.len = 0;
        self.prev_embedding = None;
    }

    /// HEAD's smear state: the normed embedding (B, 1, C) of the last position run, which the
    /// next one-token step mixes in. None before the first forward (and for v1 models).
    pub fn prev_embedding(&self) -> Option<&Tensor> {
        self.prev_embedding.as_ref()
    }

    /// Records [`KvCache::prev_embedding`] (B, 1, C).
    pub(crate) fn set_prev_embedding(&mut self, e: Tensor) {
        self.prev_embedding = Some(e);
    }

    /// Counts `t` more filled positions (after every layer has written them).
    pub(crate) fn advance(&mut self, t: usize) {
        self.len += t;
    }

    /// Writes layer `layer`'s keys and values `k`, `v` (B, T, n_kv_head, head_dim) at positions
    /// `len..len + T` (the length advances once every layer has written: [`KvCache::advance`]);
    /// returns the layer's whole buffers (B, capacity, n_kv_head, head_dim). Nanochat's
    /// `insert_kv`.
    ///
    /// Errors: a layer the cache does not have, shapes that disagree, or no room for T more
    /// positions.
    pub(crate) fn insert_kv(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let (ck, cv) = match (self.k.get(layer), self.v.get(layer)) {
            (Some(ck), Some(cv)) => (ck.clone(), cv.clone()),
            _ => {
                return Err(CoreError::OutOfRange {
                    what: "KV cache layers".into(),
                    index: layer,
                    len: self.k.len(),
                })
            }
        };
        ops::write_rows(&ck, k, self.len)?;
        ops::write_rows(&cv, v, self.len)?;
        Ok((ck, cv))
    }

    /// A cache of `n` sequences, each a copy of this one-sequence cache (its filled positions,
    /// length and smear state): a prompt prefilled once, shared by `n` samples. Copied on the device.
    pub fn replicate(&self, n: usize) -> Result<KvCache> {
        if self.batch != 1 {
            return Err(CoreError::InvalidArgument {
                name: "KV cache sequences",
                value: self.batch.to_string(),
                expected: "1 (only a cache of one sequence can be replicated)".into(),
            });
        }
        let copy = |layers: &[Tensor]| -> Result<Vec<Tensor>> {
            layers
                .iter()
                .map(|t| {
                    let (_, cap, heads, dim) = t.dims4()?;
                    let out = Tensor::zeros(t.device(), &[n, cap, heads, dim], t.dtype())?;
                    // Sequence i is positions i cap .. (i + 1) cap of the (1, n cap, ...) view.
                    let rows = ops::reshape(None, &out, &[1, n * cap, heads, dim])?;
                    for i in 0..n {
                        ops::write_rows(&rows, t, i * cap)?;
                    }
                    Ok(out)
                })
                .collect()
        };
        let prev_embedding = match &self.prev_embedding {
            Some(e) => {
                let c = e.shape()[2];
                Some(ops::add(
                    None,
                    &Tensor::zeros(e.device(), &[n, 1, c], e.dtype())?,
                    e,
                )?)
            }
            None => None,
        };
        Ok(KvCache {
            k: copy(&self.k)?,
            v: copy(&self.v)?,
            batch: n,
            capacity: self.capacity,
            len: self.len,
            prev_embedding,
        })
    }
}
