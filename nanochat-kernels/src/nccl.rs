//! NCCL collectives on buffers owned by cubecl's CUDA runtime (CUDA builds only), through
//! cudarc's NCCL bindings: the GPU path of training across ranks, where gradients and
//! parameters never visit the host.
//!
//! As for cuBLASLt (`matmul::cublaslt`), cubecl does not expose its stream, so ordering is kept
//! with host waits: pin every buffer of a call (`get_resource`, which yields its device
//! pointer), drain cubecl's stream, run the collectives (several in one NCCL group) on our own
//! stream in cubecl's context, wait for it, unpin. libnccl is loaded at run time (cudarc's
//! dynamic loading), so a CUDA binary links no NCCL and runs where it is missing until a
//! collective is asked for.

use std::ffi::c_void;

use cubecl::cuda::CudaRuntime;
use cubecl_runtime::runtime::Runtime;
use cudarc::driver::result as drv;
use cudarc::driver::sys as drvs;
use cudarc::nccl::result as nc;
use cudarc::nccl::sys as ncs;

use crate::{Client, DType, Handle, KernelError, Result};

type CudaServer = <CudaRuntime as Runtime>::Server;

const OP: &str = "nccl";

fn err(e: impl std::fmt::Debug) -> KernelError {
    KernelError::runtime(OP, format!("{e:?}"))
}

/// The bytes of an NCCL unique id: made by rank 0 ([`unique_id`]) and sent to every rank
/// (over MPI) before [`NcclComm::new`].
pub type UniqueId = [u8; 128];

fn library() -> Result<()> {
    // SAFETY: only tries to load libnccl by name (its initialisers run); cudarc panics on the
    // first call into a library that is missing, so this comes first.
    if unsafe { ncs::is_culib_present() } {
        Ok(())
    } else {
        Err(KernelError::unsupported(
            OP,
            "libnccl was not found on the loader path (install NCCL, or PyTorch's nvidia-nccl package)",
        ))
    }
}

/// A new NCCL unique id (rank 0 makes it). Errors: no libnccl; NCCL's.
pub fn unique_id() -> Result<UniqueId> {
    library()?;
    let id = nc::get_uniqueid().map_err(err)?;
    Ok(id.internal.map(|c| c as u8))
}

/// One rank's NCCL communicator on one GPU, with its own stream.
pub struct NcclComm {
    ctx: std::sync::Arc<cudarc::driver::CudaContext>,
    stream: drvs::CUstream,
    comm: ncs::ncclComm_t,
    rank: usize,
    world_size: usize,
}

// SAFETY: the raw fields are an NCCL communicator and a CUDA stream. CUDA and NCCL let any
// thread use them, one call at a time, with the owning context current: every method takes
// `&mut self` (so one thread at a time) and binds `ctx` first.
unsafe impl Send for NcclComm {}

/// A collective of one group call ([`NcclComm::group`]), on buffers of f32 or bf16 elements.
#[derive(Clone, Debug)]
pub enum Collective {
    /// In place: every rank's buffer becomes the sum over ranks.
    AllReduceSum {
        /// The buffer.
        buf: Handle,
        /// Its elements.
        count: usize,
    },
    /// In place: rank `root`'s buffer becomes the sum over ranks (the others' are left as
    /// they were).
    ReduceSum {
        /// The buffer.
        buf: Handle,
        /// Its elements.
        count: usize,
        /// The rank that receives the sum.
        root: usize,
    },
    /// In place: every rank's buffer becomes rank `root`'s.
    Broadcast {
        /// The buffer.
        buf: Handle,
        /// Its elements.
        count: usize,
        /// The rank that sends.
        root: usize,
    },
}

impl Collective {
    fn parts(&self) -> (&Handle, usize) {
        match self {
            Collective::AllReduceSum { buf, count }
            | Collective::ReduceSum { buf, count, .. }
            | Collective::Broadcast { buf, count, .. } => (buf, *count),
        }
    }
}

fn nccl_type(dtype: DType) -> ncs::ncclDataType_t {
    match dtype {
        DType::F32 => ncs::ncclDataType_t::ncclFloat32,
        DType::BF16 => ncs::ncclDataType_t::ncclBfloat16,
    }
}

impl NcclComm {
    /// Joins the NCCL world `id` as `rank` of `world_size` on GPU `ordinal` (every rank calls
    /// it with the same id; it returns when all have). Errors: no libnccl; a rank outside the
    /// world; NCCL's (a bad id, a GPU already taken by another rank).
    pub fn new(ordinal: usize, rank: usize, world_size: usize, id: &UniqueId) -> Result<NcclComm> {
        library()?;
        if rank >= world_size {
            return Err(KernelError::runtime(
                OP,
                format!("rank {rank} outside a world of {world_size}"),
            ));
        }
        let ctx = cudarc::driver::CudaContext::new(ordinal).map_err(err)?;
        ctx.bind_to_thread().map_err(err)?;
        let id = ncs::ncclUniqueId {
            internal: id.map(|b| b as core::ffi::c_char),
        };
        let mut comm = std::mem::MaybeUninit::<ncs::ncclComm_t>::uninit();
        // SAFETY: `comm` is written by ncclCommInitRank before it is read; the id is a valid
        // 128-byte value; the context of GPU `ordinal` is current. The stream is a new one,
        // owned by the communicator.
        let (comm, stream) = unsafe {
            nc::comm_init_rank(comm.as_mut_ptr(), world_size as i32, id, rank as i32)
                .map_err(err)?;
            let stream = drv::stream::create(drv::stream::StreamKind::NonBlocking).map_err(err)?;
            (comm.assume_init(), stream)
        };
        Ok(NcclComm {
            ctx,
            stream,
            comm,
            rank,
            world_size,
        })
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.rank
    }

    /// The number of ranks.
    pub fn world_size(&self) -> usize {
        self.world_size
    }

    /// Runs `ops` (buffers of `dtype` on `client`'s GPU) as one NCCL group and waits for them.
    /// Every rank must call it with the same sequence of collectives and counts.
    ///
    /// Errors: a buffer smaller than its count, a root outside the world, NCCL's.
    pub fn group(&mut self, client: &Client, dtype: DType, ops: &[Collective]) -> Result<()> {
        let mut pinned = Vec::with_capacity(ops.len());
        for op in ops {
            let (buf, count) = op.parts();
            let need = (count * dtype.size()) as u64;
            if buf.size_in_used() < need {
                return Err(KernelError::runtime(
                    OP,
                    format!(
                        "a buffer of {} bytes for {count} elements",
                        buf.size_in_used()
                    ),
                ));
            }
            if let Collective::ReduceSum { root, .. } | Collective::Broadcast { root, .. } = op {
                if *root >= self.world_size {
                    return Err(KernelError::runtime(
                        OP,
                        format!("root {root} outside a world of {}", self.world_size),
                    ));
                }
            }
            pinned.push(
                client
                    .get_resource::<CudaServer>(buf.clone())
                    .map_err(err)?,
            );
        }
        cubecl::future::block_on(client.sync()).map_err(err)?;
        self.ctx.bind_to_thread().map_err(err)?;
        let t = nccl_type(dtype);
        let stream = self.stream as ncs::cudaStream_t;
        // SAFETY: every pointer is the device pointer of a cubecl buffer pinned in `pinned`
        // (held until after the wait below) of at least `count` elements of `dtype` (checked
        // above), and cubecl's stream was drained, so nothing else touches them. The
        // collectives are in place, which NCCL allows for all three. The communicator and the
        // stream belong to this rank, with its context current. The group is waited for before
        // the buffers are unpinned.
        unsafe {
            nc::group_start().map_err(err)?;
            for (op, res) in ops.iter().zip(&pinned) {
                let p = res.resource().ptr as *mut c_void;
                let sum = ncs::ncclRedOp_t::ncclSum;
                match *op {
                    Collective::AllReduceSum { count, .. } => {
                        nc::all_reduce(p, p, count, t, sum, self.comm, stream)
                    }
                    Collective::ReduceSum { count, root, .. } => {
                        nc::reduce(p, p, count, t, sum, root as i32, self.comm, stream)
                    }
                    Collective::Broadcast { count, root, .. } => {
                        nc::broadcast(p, p, count, t, root as i32, self.comm, stream)
                    }
                }
                .map_err(err)?;
            }
            nc::group_end().map_err(err)?;
            drv::stream::synchronize(self.stream).map_err(err)?;
        }
        drop(pinned);
        Ok(())
    }
}

impl Drop for NcclComm {
    fn drop(&mut self) {
        // SAFETY: the communicator and stream are this rank's and no call is in flight (every
        // group is waited for); they are not used after this.
        unsafe {
            let _ = self.ctx.bind_to_thread();
            let _ = nc::comm_destroy(self.comm);
            let _ = drv::stream::destroy(self.stream);
        }
    }
}

/// The NCCL check of `selftest` (CUDA only; no comparison on another runtime): a world of one
/// rank on this GPU, whose all-reduce, reduce and broadcast must give back the host's values
/// exactly, on odd lengths.
pub(crate) fn checks() -> Vec<crate::check::Check> {
    crate::check::check_list![
        "nccl.world1" => check_world1,
    ]
}

fn check_world1(ctx: &mut crate::check::Ctx) -> Result<()> {
    if crate::DeviceInfo::of(ctx.client).runtime != "cuda" {
        return Ok(());
    }
    let ordinal = ctx.client.service_id().device.index_id as usize;
    let mut comm = NcclComm::new(ordinal, 0, 1, &unique_id()?)?;
    for n in [1usize, 7, 4097] {
        let x = ctx.rand(n, -1.0, 1.0);
        let want: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        for (name, op) in [("all_reduce", 0usize), ("reduce", 1), ("broadcast", 2)] {
            let buf = ctx.upload(&x);
            let c = match op {
                0 => Collective::AllReduceSum {
                    buf: buf.clone(),
                    count: n,
                },
                1 => Collective::ReduceSum {
                    buf: buf.clone(),
                    count: n,
                    root: 0,
                },
                _ => Collective::Broadcast {
                    buf: buf.clone(),
                    count: n,
                    root: 0,
                },
            };
            comm.group(ctx.client, ctx.dtype, &[c])?;
            let got = ctx.download(&buf)?;
            ctx.compare(
                &format!("nccl.{name}"),
                &format!("n={n} world=1"),
                &got,
                &want,
                0.0,
            );
        }
    }
    Ok(())
}
