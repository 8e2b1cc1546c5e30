//! The GPU backend of training across ranks (CUDA builds): NCCL through cudarc
//! ([`nanochat_kernels::nccl`]). Rank 0 makes the NCCL unique id and the host communicator
//! ([`super::Communicator`], MPI) carries it to every rank; a world of one makes it locally.
//! Each rank's communicator is on its own GPU (`cuda:<local rank>`). The collectives of a step
//! ([`Nccl::reduce_grads`], [`Nccl::broadcast_params`]) are the ZeRO-2 split of
//! [`super::sync`] on device buffers: each gradient reduced to its owner (all-reduced when
//! replicated), each updated parameter broadcast from its owner, one NCCL group per call, so
//! gradients and parameters never visit the host.

use std::sync::Mutex;

use nanochat_kernels::nccl::{unique_id, Collective, NcclComm, UniqueId};
use nanochat_kernels::Backend;

use super::{Communicator, Ownership};
use crate::{CoreError, DType, Device, Grads, Result, Tensor};

/// One rank's NCCL communicator on its device.
pub struct Nccl {
    comm: Mutex<NcclComm>,
    device: Device,
}

impl std::fmt::Debug for Nccl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nccl({})", self.device)
    }
}

impl Nccl {
    /// Joins the NCCL world of `host`'s ranks on `device` (a CUDA device; every rank calls it).
    ///
    /// Errors: [`CoreError::Unsupported`] on a CPU device; no libnccl; the collectives'.
    pub fn init(device: &Device, host: &dyn Communicator) -> Result<Nccl> {
        let Backend::Cuda(ordinal) = device.backend() else {
            return Err(CoreError::Unsupported {
                op: "NCCL",
                why: format!("{device} is not a CUDA device"),
            });
        };
        let mut id = if host.rank() == 0 {
            unique_id()?.to_vec()
        } else {
            Vec::new()
        };
        host.broadcast_bytes(&mut id, 0)?;
        let id: UniqueId = id.try_into().map_err(|v: Vec<u8>| CoreError::Mismatch {
            op: "NCCL",
            why: format!("a unique id of {} bytes (128 expected)", v.len()),
        })?;
        let comm = NcclComm::new(ordinal, host.rank(), host.world_size(), &id)?;
        Ok(Nccl {
            comm: Mutex::new(comm),
            device: device.clone(),
        })
    }

    fn group(&self, dtype: DType, ops: &[Collective]) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut comm = self.comm.lock().unwrap_or_else(|e| e.into_inner());
        Ok(comm.group(self.device.client(), dtype, ops)?)
    }

    /// In place: `t` becomes its sum over the ranks.
    pub fn all_reduce_sum(&self, t: &Tensor) -> Result<()> {
        self.group(
            t.dtype(),
            &[Collective::AllReduceSum {
                buf: t.handle().clone(),
                count: t.len(),
            }],
        )
    }

    /// [`super::sync::reduce_scatter_grads`] on the device: each owned parameter's gradient
    /// reduced (summed) to its owner, each replicated one all-reduced; the gradients of
    /// parameters owned elsewhere are dropped afterwards. A parameter without a gradient here
    /// sends zeros.
    ///
    /// Errors: the collectives'.
    pub fn reduce_grads(
        &self,
        own: &Ownership,
        params: &[Tensor],
        grads: &mut Grads,
    ) -> Result<()> {
        for p in params {
            if grads.get(p).is_none() {
                grads.accumulate(p.id(), p.full_like(0.0)?)?;
            }
        }
        let rank = self.comm.lock().unwrap_or_else(|e| e.into_inner()).rank();
        for dtype in [DType::F32, DType::BF16] {
            let mut ops = Vec::new();
            for (i, p) in params.iter().enumerate() {
                let g = grads.require(p, "gradient")?;
                if g.dtype() != dtype {
                    continue;
                }
                let (buf, count) = (g.handle().clone(), g.len());
                ops.push(match own.owner(i) {
                    Some(root) => Collective::ReduceSum { buf, count, root },
                    None => Collective::AllReduceSum { buf, count },
                });
            }
            self.group(dtype, &ops)?;
        }
        for (i, p) in params.iter().enumerate() {
            if own.owner(i).is_some_and(|o| o != rank) {
                grads.take(p);
            }
        }
        Ok(())
    }

    /// [`super::sync::all_gather_params`] on the device: each owned parameter broadcast from
    /// its owner, in place.
    ///
    /// Errors: the collectives'.
    pub fn broadcast_params(&self, own: &Ownership, params: &[Tensor]) -> Result<()> {
        for dtype in [DType::F32, DType::BF16] {
            let ops: Vec<Collective> = params
                .iter()
                .enumerate()
                .filter(|(_, p)| p.dtype() == dtype)
                .filter_map(|(i, p)| {
                    own.owner(i).map(|root| Collective::Broadcast {
                        buf: p.handle().clone(),
                        count: p.len(),
                        root,
                    })
                })
                .collect();
            self.group(dtype, &ops)?;
        }
        Ok(())
    }
}
