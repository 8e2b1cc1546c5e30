//! The collectives of one sharded optimizer step (ZeRO-2, as nanochat HEAD's `DistMuonAdamW`,
//! `nanochat/optim.py` at 92d63d4): each rank's gradients are reduce-scattered so that every
//! parameter's owner holds its sum over ranks ([`reduce_scatter_grads`]), the owners update
//! their parameters, and every rank gathers the updated values ([`all_gather_params`]). The
//! optimizer state never leaves its owner but for a checkpoint, where rank 0 gathers it
//! ([`gather_optimizer_state`]) and saves it in the one-process layout: a checkpoint does not
//! depend on the world size, and resumes on any.
//!
//! The buffers are host f32: on the CPU runtime the tensors are host memory already. On CUDA
//! the same split runs on the device through NCCL (`dist::nccl`, CUDA builds).

use crate::optim::OptimizerState;
use crate::{CoreError, DType, Grads, Result, Tensor};

use super::{Communicator, Ownership};

/// Replaces each parameter's gradient in `grads` by its sum over the ranks for the parameters
/// this rank owns (a reduce-scatter) and for the replicated ones (an all-reduce), and drops the
/// others (their owners hold them). A parameter without a gradient on this rank counts as zeros
/// (all its micro-batches may have been elsewhere).
///
/// Errors: [`CoreError::Mismatch`] when `params` and `own` disagree in count; the
/// communicator's.
pub fn reduce_scatter_grads(
    comm: &dyn Communicator,
    own: &Ownership,
    params: &[Tensor],
    grads: &mut Grads,
) -> Result<()> {
    check_count(own, params)?;
    if in_place(params) {
        return reduce_in_place(comm, own, params, grads);
    }
    reduce_by_copy(comm, own, params, grads)
}

/// [`reduce_scatter_grads`] through host copies: one packed reduce-scatter of the owned
/// gradients, one all-reduce of the replicated ones.
pub(crate) fn reduce_by_copy(
    comm: &dyn Communicator,
    own: &Ownership,
    params: &[Tensor],
    grads: &mut Grads,
) -> Result<()> {
    let (world, block) = (comm.world_size(), own.block_len());
    let mut send = vec![0.0f32; world * block];
    for r in 0..world {
        let mut at = r * block;
        for i in own.owned(r) {
            let p = &params[i];
            if let Some(g) = grads.get(p) {
                send[at..at + p.len()].copy_from_slice(&g.to_vec_f32()?);
            }
            at += p.len();
        }
    }
    let mine = if block > 0 {
        comm.reduce_scatter_f32(&send)?
    } else {
        Vec::new()
    };
    let replicated = own.replicated();
    let mut shared = Vec::new();
    for &i in &replicated {
        match grads.get(&params[i]) {
            Some(g) => shared.extend(g.to_vec_f32()?),
            None => shared.resize(shared.len() + params[i].len(), 0.0),
        }
    }
    if !shared.is_empty() {
        comm.all_reduce_f32(&mut shared, super::ReduceOp::Sum)?;
    }
    let rank = comm.rank();
    let (mut at, mut at_shared) = (0, 0);
    for (i, p) in params.iter().enumerate() {
        let g = grads.take(p);
        let values = match own.owner(i) {
            Some(o) if o == rank => {
                at += p.len();
                &mine[at - p.len()..at]
            }
            None => {
                at_shared += p.len();
                &shared[at_shared - p.len()..at_shared]
            }
            Some(_) => continue,
        };
        let dtype = g.as_ref().map_or(p.dtype(), |g| g.dtype());
        grads.accumulate(
            p.id(),
            Tensor::from_f32(p.device(), values, p.shape(), dtype)?,
        )?;
    }
    Ok(())
}

/// Brings every owned parameter to its owner's values: each rank sends the parameters it owns
/// and writes the others' into its own tensors, in place (replicated parameters are already
/// the same everywhere).
///
/// Errors: as [`reduce_scatter_grads`].
pub fn all_gather_params(
    comm: &dyn Communicator,
    own: &Ownership,
    params: &[Tensor],
) -> Result<()> {
    check_count(own, params)?;
    if in_place(params) {
        // Each owned parameter broadcast from its owner, in the runtime's own memory.
        for (i, p) in params.iter().enumerate() {
            if let Some(o) = own.owner(i) {
                with_host_f32(p, |v| comm.broadcast_f32(v, o))?;
            }
        }
        return Ok(());
    }
    gather_by_copy(comm, own, params)
}

/// [`all_gather_params`] through host copies: one packed all-gather.
pub(crate) fn gather_by_copy(
    comm: &dyn Communicator,
    own: &Ownership,
    params: &[Tensor],
) -> Result<()> {
    let (rank, block) = (comm.rank(), own.block_len());
    if block == 0 {
        return Ok(());
    }
    let mut send = Vec::with_capacity(block);
    for i in own.owned(rank) {
        send.extend(params[i].to_vec_f32()?);
    }
    send.resize(block, 0.0);
    let all = comm.all_gather_f32(&send)?;
    for r in (0..comm.world_size()).filter(|&r| r != rank) {
        let mut at = r * block;
        for i in own.owned(r) {
            let p = &params[i];
            p.write_f32(&all[at..at + p.len()])?;
            at += p.len();
        }
    }
    Ok(())
}

/// The L2 norm of the step's whole gradient: each rank's squared norm of the gradients it
/// owns (after [`reduce_scatter_grads`]; in one process, all), summed over ranks, plus the
/// replicated parameters' once. What `torch.nn.utils.clip_grad_norm_` returns and nanochat v1 logs as `grad_norm`.
/// Computed on the device (one f32 sum of squares per parameter), accumulated in f64.
///
/// Errors: the communicator's; the ops'.
pub fn grad_norm(
    comm: &dyn Communicator,
    own: Option<&Ownership>,
    params: &[Tensor],
    grads: &Grads,
) -> Result<f64> {
    let mut sum = [0.0f64];
    for (i, p) in params.iter().enumerate() {
        // A replicated gradient is on every rank: rank 0 counts it.
        if own.is_some_and(|o| o.owner(i).is_none()) && comm.rank() != 0 {
            continue;
        }
        if let Some(g) = grads.get(p) {
            let sq = crate::ops::sum(None, &crate::ops::square(None, g)?)?;
            sum[0] += sq.to_scalar()? as f64;
        }
    }
    comm.all_reduce_f64(&mut sum, super::ReduceOp::Sum)?;
    Ok(sum[0].sqrt())
}

/// Whether the collectives can work in the tensors' own memory: every parameter f32 on the CPU
/// runtime (the same answer on every rank of a job). Elsewhere the buffers are copied out and
/// back.
fn in_place(params: &[Tensor]) -> bool {
    params
        .iter()
        .all(|p| p.dtype() == DType::F32 && p.device().backend().is_cpu())
}

/// Runs `f` on `t`'s f32 values in the CPU runtime's own memory (pinned for the call, no
/// download or upload); on a copy when the buffer is not aligned for f32.
fn with_host_f32(t: &Tensor, f: impl FnOnce(&mut [f32]) -> Result<()>) -> Result<()> {
    let client = t.device().client();
    let view = nanochat_kernels::host::host_view(client, t.handle(), t.len() * 4)?;
    let Some(mut view) = view else {
        // Not the CPU runtime: through a copy.
        let mut v = t.to_vec_f32()?;
        f(&mut v)?;
        return t.write_f32(&v);
    };
    // SAFETY: the training loop holds the device (`Device::exclusive`) while it reduces, so no
    // kernel touches the buffer, and this is the only view of it while `f` runs.
    match unsafe { view.as_f32_mut() } {
        Some(v) => f(v),
        None => {
            drop(view);
            let mut v = t.to_vec_f32()?;
            f(&mut v)?;
            t.write_f32(&v)
        }
    }
}

/// [`reduce_scatter_grads`] in the runtime's own memory: each owned parameter's gradient summed
/// into its owner's buffer (`MPI_Reduce`), each replicated one all-reduced; no pack or unpack.
fn reduce_in_place(
    comm: &dyn Communicator,
    own: &Ownership,
    params: &[Tensor],
    grads: &mut Grads,
) -> Result<()> {
    let rank = comm.rank();
    for (i, p) in params.iter().enumerate() {
        if grads.get(p).is_none_or(|g| g.dtype() != DType::F32) {
            // No gradient here (all its micro-batches were elsewhere): it sends zeros.
            let g = grads.take(p);
            let zeros = match g {
                Some(g) => Tensor::from_f32(p.device(), &g.to_vec_f32()?, p.shape(), DType::F32)?,
                None => Tensor::zeros(p.device(), p.shape(), DType::F32)?,
            };
            grads.accumulate(p.id(), zeros)?;
        }
        let g = grads
            .get(p)
            .expect("a gradient for every parameter")
            .clone();
        match own.owner(i) {
            Some(o) if o == rank => {
                let mut sum = vec![0.0f32; g.len()];
                with_host_f32(&g, |v| {
                    comm.reduce_f32(v, Some(&mut sum), o)?;
                    v.copy_from_slice(&sum);
                    Ok(())
                })?;
            }
            Some(o) => with_host_f32(&g, |v| comm.reduce_f32(v, None, o))?,
            None => with_host_f32(&g, |v| comm.all_reduce_f32(v, super::ReduceOp::Sum))?,
        }
    }
    for (i, p) in params.iter().enumerate() {
        if own.owner(i).is_some_and(|o| o != rank) {
            grads.take(p);
        }
    }
    Ok(())
}

fn check_count(own: &Ownership, params: &[Tensor]) -> Result<()> {
    let n = own.len();
    if n != params.len() {
        return Err(CoreError::Mismatch {
            op: "dist sync",
            why: format!(
                "an ownership of {n} parameters for {} parameters",
                params.len()
            ),
        });
    }
    Ok(())
}

/// An optimizer state assembled at rank 0 from every rank's share
/// ([`gather_optimizer_state`]): what a checkpoint saves. It only saves: loading into it is
/// refused.
pub struct GatheredState {
    steps: u32,
    tensors: Vec<(String, Tensor)>,
}

impl OptimizerState for GatheredState {
    fn steps(&self) -> u32 {
        self.steps
    }
    fn state_tensors(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(self.tensors.clone())
    }
    fn load_state(
        &mut self,
        _step: u32,
        _get: &mut dyn FnMut(&str, &Tensor) -> Result<Tensor>,
    ) -> Result<()> {
        Err(CoreError::Unsupported {
            op: "load_state",
            why: "a gathered optimizer state is only saved".into(),
        })
    }
}

type Wire = (u32, Vec<(String, Vec<usize>, Vec<f32>)>);

/// Every rank's optimizer state (its owned parameters', and rank 0's of the replicated ones)
/// at rank 0, in the order of `names`
/// on `device` (the model's parameter names, in `named_parameters` order: the one-process layout, whose
/// tensors are named `<param>.<state>`); `None` on the other ranks. Every rank must call it.
///
/// Errors: the communicator's; [`CoreError::File`] for a share that does not decode.
pub fn gather_optimizer_state(
    comm: &dyn Communicator,
    own: &Ownership,
    optim: &dyn OptimizerState,
    names: &[String],
    device: &crate::Device,
) -> Result<Option<GatheredState>> {
    // The parameter a state tensor (`<param>.<state>`) belongs to.
    let slot = |name: &str| {
        names
            .iter()
            .position(|p| {
                name.strip_prefix(p.as_str())
                    .is_some_and(|s| s.starts_with('.'))
            })
            .unwrap_or(usize::MAX)
    };
    // Each owner sends its parameters' state; a replicated parameter's, rank 0 alone.
    let rank = comm.rank();
    let sends = |name: &str| {
        let i = slot(name);
        match (i < own.len()).then(|| own.owner(i)).flatten() {
            Some(o) => o == rank,
            None => rank == 0,
        }
    };
    let mine: Wire = (
        optim.steps(),
        optim
            .state_tensors()?
            .into_iter()
            .filter(|(n, _)| sends(n))
            .map(|(n, t)| Ok((n, t.shape().to_vec(), t.to_vec_f32()?)))
            .collect::<Result<_>>()?,
    );
    let cfg = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec(&mine, cfg).map_err(|e| CoreError::Mismatch {
        op: "gather optimizer state",
        why: e.to_string(),
    })?;
    let Some(parts) = comm.gather_bytes(&bytes, 0)? else {
        return Ok(None);
    };
    let mut entries = Vec::new();
    for (r, part) in parts.iter().enumerate() {
        let (_, tensors): Wire = bincode::serde::decode_from_slice(part, cfg)
            .map_err(|e| CoreError::file(format!("optimizer state of rank {r}"), e))?
            .0;
        entries.extend(tensors);
    }
    // The one-process order: by parameter, then as each parameter's owner listed its state.
    entries.sort_by_key(|(n, _, _)| slot(n));
    let tensors = entries
        .into_iter()
        .map(|(n, shape, v)| Ok((n, Tensor::from_f32(device, &v, &shape, crate::DType::F32)?)))
        .collect::<Result<_>>()?;
    Ok(Some(GatheredState {
        steps: mine.0,
        tensors,
    }))
}

/// The collectives of a sharded step on one device: NCCL's on a CUDA device (CUDA builds, when
/// several ranks train), else the host communicator's ([`reduce_scatter_grads`],
/// [`all_gather_params`]). What the training loop, `bench train` and chat-rl share.
pub struct StepCollectives {
    comm: super::Dist,
    #[cfg(feature = "cuda")]
    nccl: Option<super::nccl::Nccl>,
}

impl StepCollectives {
    /// The collectives of `comm`'s ranks on `device` (joining NCCL's world there when it is a
    /// CUDA device and several ranks train: every rank must call it).
    ///
    /// Errors: NCCL's initialisation.
    pub fn new(comm: super::Dist, device: &crate::Device) -> Result<StepCollectives> {
        #[cfg(feature = "cuda")]
        let nccl = if comm.is_distributed() && !device.backend().is_cpu() {
            Some(super::nccl::Nccl::init(device, &*comm)?)
        } else {
            None
        };
        #[cfg(not(feature = "cuda"))]
        let _ = device;
        Ok(StepCollectives {
            comm,
            #[cfg(feature = "cuda")]
            nccl,
        })
    }

    /// Each gradient to its owner (summed over ranks): [`reduce_scatter_grads`], or NCCL's.
    pub fn reduce_grads(
        &self,
        own: &Ownership,
        params: &[Tensor],
        grads: &mut Grads,
    ) -> Result<()> {
        #[cfg(feature = "cuda")]
        if let Some(n) = &self.nccl {
            return n.reduce_grads(own, params, grads);
        }
        reduce_scatter_grads(&*self.comm, own, params, grads)
    }

    /// Each updated parameter from its owner: [`all_gather_params`], or NCCL's.
    pub fn gather_params(&self, own: &Ownership, params: &[Tensor]) -> Result<()> {
        #[cfg(feature = "cuda")]
        if let Some(n) = &self.nccl {
            return n.broadcast_params(own, params);
        }
        all_gather_params(&*self.comm, own, params)
    }
}
